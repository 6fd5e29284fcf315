"""The faster paths of planning one user give exactly what the plain code gave
(docs/performance.md, "planning one user")."""

from __future__ import annotations

import datetime as dt
import io
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit import fill, plan
from toolkit.ca import keys as pki
from toolkit.credentials import ClientCredentials
from toolkit.errors import ProfileError, ToolkitError
from toolkit.package import load_package
from toolkit.plan import UserPlan, UserRequest, plan_user
from toolkit.profile import Profile
from toolkit.sample import SampleGateway
from toolkit.targets import TARGETS
from toolkit.targets.ios.target import MAX_LINE_BYTES, _size_problems, _within_limits
from toolkit.targets.tunnelblick import archive
from toolkit.targets.tunnelblick.archive import ZIP_DATE, _with_zipfile, bundle_zip
from toolkit.targets.tunnelblick.target import _config_problems


def _zipfile_reference(entries: list[tuple[str, bytes | None]]) -> bytes:
    """The bundle's zip as the toolkit wrote it before, with zipfile."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3
            if data is None:
                info.external_attr = (0o40700 << 16) | 0x10
                archive.writestr(info, b"")
            else:
                info.external_attr = 0o100600 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    return buffer.getvalue()


names = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x24F, blacklist_characters="/"),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            names,
            st.none()
            | st.binary(max_size=3000)
            | st.text(max_size=3000)
            | st.binary(max_size=40000),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda entry: entry[0],
    )
)
def test_bundle_zip_is_what_zipfile_writes(raw: list[tuple[str, bytes | str | None]]) -> None:
    entries: list[tuple[str, bytes | None]] = []
    for name, data in raw:
        if data is None:
            entries.append((f"{name}/", None))
        else:
            entries.append((name, data.encode("utf-8") if isinstance(data, str) else data))
    made = bundle_zip(entries)
    assert made == _zipfile_reference(entries) == _with_zipfile(entries)
    with zipfile.ZipFile(io.BytesIO(made)) as archive:
        assert archive.testzip() is None
        for (name, data), info in zip(entries, archive.infolist(), strict=True):
            assert info.filename == name
            assert archive.read(info) == (data or b"")


def test_the_small_deflate_window_makes_the_full_window_stream() -> None:
    """bundle_zip sets zlib up with the smallest window that reaches over all the data: the
    same stream as 32 KiB, checked at each window's edge with data that repeats from far back
    (matches near the window's reach) and with text like a profile's."""
    lines = b"".join(b"line %d of a profile, base64 QUJDREVGR0hJSktM\n" % i for i in range(900))
    for bits in range(9, 16):
        edge = (1 << bits) - archive._MIN_LOOKAHEAD
        for size in (edge - 1, edge, edge + 1):
            head = os.urandom(size * 7 // 8)
            for data in (head + head[: size - len(head)], lines[:size]):
                window = -archive._window(data)
                full = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
                small = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, window)
                assert small.compress(data) + small.flush() == full.compress(data) + full.flush()
    assert archive._window(b"") == 9 and archive._window(bytes(6000)) == 13
    assert archive._window(bytes(1 << 20)) == 15


def test_bundle_zip_of_a_real_bundle() -> None:
    bundle = "alice-mac.tblk"
    config = b"client\n<cert>\n" + b"QUJD" * 400 + b"\n</cert>\n"
    entries: list[tuple[str, bytes | None]] = [
        (f"{bundle}/", None),
        (f"{bundle}/Contents/", None),
        (f"{bundle}/Contents/Info.plist", b"<plist/>\n"),
        (f"{bundle}/Contents/Resources/", None),
        (f"{bundle}/Contents/Resources/config.ovpn", config),
    ]
    assert bundle_zip(entries) == _zipfile_reference(entries)


def _variables_reference(profile: Profile) -> list[tuple[int, str]]:
    """The scan as it was: every line outside comments through the regular expression."""
    found: list[tuple[int, str]] = []
    for item in profile.items:
        for offset, raw in enumerate(item.raw_lines):
            if raw.strip().startswith(("#", ";")):
                continue
            for match in fill.TEMPLATE_VARIABLE.finditer(raw):
                found.append((item.line + offset if item.line else 0, match.group(0)))
    return found


line_parts = st.sampled_from(
    [
        "remote gw 443",
        "$CLIENTCERTIFICATE",
        "$PRIVATEKEY",
        "${user}",
        "__NAME__",
        "_ _",
        "$",
        "$1",
        "# $HOME",
        "; __X__",
        "  # x",
        "-----BEGIN CERTIFICATE-----",
        "QUJD+/=",
        "",
    ]
)
profile_lines = st.lists(
    st.one_of(
        st.lists(line_parts, min_size=1, max_size=3).map(" ".join),
        st.sampled_from(["<cert>", "</cert>", "<key>", "</key>", "<ca>", "</ca>"]),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(profile_lines)
def test_variable_scan_is_the_plain_scan(lines: list[str]) -> None:
    try:
        profile = Profile.parse("\n".join(lines) + "\n")
    except ProfileError:  # an unclosed block: not a profile
        return
    assert fill._variables(profile) == _variables_reference(profile)
    assert fill._variables(profile) == _variables_reference(profile)  # from the line cache


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, MAX_LINE_BYTES + 3), max_size=6), st.booleans())
def test_size_fast_path_agrees(lengths: list[int], big: bool) -> None:
    data = b"\n".join(b"x" * n for n in lengths)
    if big:
        data += b"\n" + b"y\n" * 140_000
    assert _within_limits(data) == (_size_problems(data) == [])


@given(st.lists(st.sampled_from([b"verb 3", b"a \\", b"b\\\r", b"\\", b"", b"c \\ d"]), max_size=6))
def test_backslash_lines_are_still_found(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    expected = [
        f"line {n} ends in a backslash, which Tunnelblick refuses"
        for n, line in enumerate(data.split(b"\n"), 1)
        if line.rstrip(b"\r").endswith(b"\\")
    ]
    assert [p for p in _config_problems(data) if "backslash" in p] == expected


# --- the per-package preparation (plan._prepared) plans exactly what planning from scratch does


EXTRA_PROFILE_LINES = [
    "",
    "# an administrator's comment with $HOME",
    "setenv FRIENDLY_NAME 'Old name'",
    "# OVPN_ACCESS_SERVER_PROFILE=Old name",
    "verify-x509-name 'two words' name",
    "up /etc/openvpn/up.sh",
    "disable-dco",
    "log openvpn.log",
    "management 127.0.0.1 7505",
    "route-method exe",
    "setenv USER $USER",
    "tls-auth ta.key 1",
    "dev tap",
    "x" * 600,
    "auth-user-pass __LOGIN__",
    "ping-restart 0 \\",
]


def _outcome(plan: Callable[[], UserPlan]) -> object:
    """What planning gave: every file, edit and warning, or the error."""
    try:
        made = plan()
    except ToolkitError as exc:
        return (type(exc).__name__, exc.message, exc.hint)
    files = [(f.path, f.data, f.mode) for f in made.files]
    return files, [t.edits for t in made.targets], made.warnings, made.to_json()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.lists(st.sampled_from(EXTRA_PROFILE_LINES), max_size=3),
    display=st.sampled_from([None, "Alice (Contoso)", "Bob $HOME", "Carol __X__", "é" * 100]),
    filled=st.booleans(),
    replace=st.booleans(),
    targets=st.sampled_from([("tunnelblick", "ios"), ("ios", "tunnelblick"), ("ios",)]),
)
def test_prepared_planning_is_planning_from_scratch(
    gateway: SampleGateway,
    client: pki.IssuedCertificate,
    p2s_root: pki.IssuedCertificate,
    tmp_path_factory: pytest.TempPathFactory,
    extra: list[str],
    display: str | None,
    filled: bool,
    replace: bool,
    targets: tuple[str, ...],
) -> None:
    text = gateway.profile_text()
    text = text.replace(
        "remote-cert-tls server\n",
        "remote-cert-tls server\n" + "".join(line + "\n" for line in extra),
    )
    if filled:
        text = text.replace("$PRIVATEKEY", client.key_pem().decode("ascii").strip())
    source = tmp_path_factory.mktemp("pkg") / "vpnconfig.ovpn"
    source.write_text(text, encoding="utf-8")
    creds = ClientCredentials(client.certificate, client.private_key)
    request = UserRequest(
        name="alice",
        display_name=display,
        targets=targets,
        guide=True,
        replace_credentials=replace,
    )
    now = client.certificate.not_valid_before_utc + dt.timedelta(days=1)

    def planned() -> UserPlan:
        return plan_user(
            load_package(source), creds, request, roots=[p2s_root.certificate], now=now
        )

    plan._FACTS.clear()
    prepared = _outcome(planned)
    with pytest.MonkeyPatch.context() as patch:
        for target in TARGETS.values():
            patch.setattr(type(target), "splits_adapt", False)
        plan._FACTS.clear()  # equal packages share their facts: none made with the split
        from_scratch = _outcome(planned)
    plan._FACTS.clear()
    assert prepared == from_scratch


def test_prepared_part_is_made_once_per_package(
    gateway: SampleGateway, client: pki.IssuedCertificate, tmp_path: Path
) -> None:
    source = tmp_path / "vpnconfig.ovpn"
    source.write_text(gateway.profile_text(), encoding="utf-8")
    package = load_package(source)
    creds = ClientCredentials(client.certificate, client.private_key)
    first = plan_user(package, creds, UserRequest(name="alice", display_name="A"))
    facts = plan._facts(package)
    prepared = dict(facts.targets)
    assert set(prepared) == {"tunnelblick", "ios"} and all(prepared.values())
    before = {name: p.profile.serialize() for name, p in prepared.items() if p}
    second = plan_user(package, creds, UserRequest(name="bob", display_name="B"))
    assert facts.targets == prepared  # reused, not made again
    # users' profiles share the prepared items (Profile.share): none is changed in place
    assert {name: p.profile.serialize() for name, p in prepared.items() if p} == before
    template = package.profile().serialize()
    assert all(p is not None and p.profile.serialize() != template for p in prepared.values())
    # each user's profile is a copy: the prepared one is never filled or renamed
    assert b"setenv FRIENDLY_NAME A" in first.targets[1].files[0].data
    assert b"setenv FRIENDLY_NAME B" in second.targets[1].files[0].data
    assert all("$PRIVATEKEY" in p.profile.serialize() for p in prepared.values() if p)
