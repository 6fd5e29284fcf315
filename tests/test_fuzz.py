"""Fuzzing with hypothesis (issue 8, item 7): every reader of outside input either succeeds
or raises the project's own error, never anything else.

- the profile parser: parse succeeds and round-trips, or raises ProfileError;
- the package reader on mutated zips: an AzurePackage that passed every content check, or a
  PackageError;
- the YAML user-list loader on mutated lists: a UserList or a UserListError;
- the name sanitiser: every name it produces stays one level inside the output folder.

``HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py`` runs the long profile (conftest.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.batch.userlist import load_user_list
from toolkit.contents import content_problems
from toolkit.errors import PackageError, ProfileError, UserListError
from toolkit.fill import foreign_placeholders
from toolkit.names import check_name, sanitize_name
from toolkit.package import load_package
from toolkit.profile import Profile, normalize_text
from toolkit.sample import make_gateway

GATEWAY = make_gateway()  # one synthetic package for the whole module (key generation is slow)
PROFILE = GATEWAY.profile_text().encode()
ZIP = GATEWAY.zip_bytes()
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, removed, duplicated or inserted, or cut short."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        if not buf:
            break
        pos = draw(st.integers(0, len(buf) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert", "dup", "truncate"]))
        if action == "flip":
            buf[pos] ^= draw(st.integers(1, 255))
        elif action == "delete":
            del buf[pos : pos + draw(st.integers(1, 64))]
        elif action == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif action == "dup":
            buf[pos:pos] = buf[pos : pos + draw(st.integers(1, 256))]
        else:
            del buf[pos:]
    return bytes(buf)


PROFILE_BYTES = st.one_of(
    st.binary(max_size=512),
    mutated(PROFILE),
    st.lists(
        st.sampled_from([*PROFILE.split(b"\n"), b"<ca>", b"</ca>", b"'", b'"', b"\xff", b"\r"])
    ).map(b"\n".join),
)


@FUZZ
@given(PROFILE_BYTES)
def test_profile_parser_round_trips_or_refuses(data: bytes) -> None:
    try:
        profile = Profile.parse(data, "fuzz.ovpn")
    except ProfileError as exc:
        assert exc.message.startswith("fuzz.ovpn")
        return
    text = normalize_text(data)
    assert profile.serialize() == text
    assert Profile.parse(profile.serialize()).serialize() == text
    content_problems(profile)  # the content checks never raise on a parsed profile
    foreign_placeholders(profile)


@FUZZ
@given(st.one_of(mutated(ZIP), mutated(PROFILE).map(lambda p: _zip_with(p))))
def test_package_reader_on_mutated_zips(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "VNet1GW.zip"
        path.write_bytes(data)
        try:
            package = load_package(path)
        except PackageError as exc:
            assert exc.hint, exc.message  # every refusal says what to do
            return
    profile = package.profile()  # what was accepted is a usable Azure profile
    assert content_problems(profile) == []
    assert profile.block("cert") is not None and profile.block("key") is not None
    assert profile.first("remote") is not None


def _zip_with(profile: bytes) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("OpenVPN/vpnconfig.ovpn", profile)
    return buffer.getvalue()


USERS_YAML = b"""\
package: VNet1GW.zip
output: profiles
targets: [tunnelblick, ios]
defaults: {days: 365, warn_days: 30}
users:
  - name: alice
    display_name: Alice (Contoso VPN)
    cert: alice.pem
    key: alice.key
    passphrase_env: ALICE_KEY_PASS
  - name: bob
    pfx: bob.pfx
    targets: [ios]
"""
YAML_TRICKS = [
    b"&a ",
    b"*a",
    b"!!python/object:os.system ",
    b"\t",
    b"<<: ",
    b"? ",
    b"{",
    b"[",
    b"- ",
    b": ",
    b"'",
    b'"',
    b"%YAML 1.1\n",
    b"---\n",
    b"\xef\xbb\xbf",
    b"../",
    b"CON",
]


@st.composite
def yaml_variants(draw: st.DrawFn) -> bytes:
    data = draw(mutated(USERS_YAML))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.sampled_from(YAML_TRICKS)) + data[pos:]
    return data


@FUZZ
@given(st.one_of(yaml_variants(), st.binary(max_size=256)))
def test_yaml_loader_loads_or_refuses(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name in ("VNet1GW.zip", "alice.pem", "alice.key", "bob.pfx"):
            (root / name).write_bytes(b"x")
        path = root / "users.yaml"
        path.write_bytes(data)
        try:
            users = load_user_list(path)
        except UserListError as exc:
            assert exc.message.startswith(str(path))
            return
        for user in users.users:  # every accepted name is a safe file name
            assert check_name(user.name) == user.name
            assert (root / "out" / user.name).resolve().parent == (root / "out").resolve()


NAME_TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from([*"aZ09._-@+/\\:~ *?<>|\"'", "..", "\x00", "\u2215", "\uff0e", "con"]),
        max_size=24,
    ).map("".join),
)


@FUZZ
@given(NAME_TEXT)
def test_sanitised_names_never_escape_the_output_folder(text: str) -> None:
    name = sanitize_name(text)
    assert check_name(name) == name
    output = Path("/srv/profiles")
    for path in (output / name, output / name / "ios" / f"{name}.ovpn"):
        resolved = path.resolve()
        assert resolved.is_relative_to(output) and resolved != output
    assert (output / name).resolve().parent == output
