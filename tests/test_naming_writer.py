"""toolkit.naming (safe names, bundle identifiers) and toolkit.writer (all or nothing, private)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from toolkit import output as writer
from toolkit.errors import OutputError, UsageError
from toolkit.names import (
    MAX_NAME,
    check_name,
    sanitize_name,
)
from toolkit.output import PlannedFile
from toolkit.targets.base import bundle_identifier
from toolkit.targets.tunnelblick.options import TUNNELBLICK_FORBIDDEN
from toolkit.targets.tunnelblick.target import bundle_version

# --- check_name ------------------------------------------------------------------------------
TUNNELBLICK_CHARS = "\\!#&;:~|?'\"<>^[]{}$%*"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param("a" * (MAX_NAME + 1), f"longer than {MAX_NAME}", id="too-long"),
        *(
            pytest.param(f"al{c}ice", f"contains {c!r}", id=f"tunnelblick-{ord(c):02x}")
            for c in TUNNELBLICK_CHARS
        ),
        pytest.param("a/b", "contains '/'", id="slash"),
        pytest.param("../etc", "contains '/'", id="traversal"),
        pytest.param("a..b", "'..'", id="dotdot"),
        pytest.param("..", "'..'", id="only-dotdot"),
        pytest.param("alice.", "ends with '.'", id="trailing-dot"),
        pytest.param(".alice", "'.alice'", id="leading-dot"),
        pytest.param(".", "'.'", id="dot"),
        pytest.param("-alice", "'-alice'", id="leading-dash"),
        pytest.param("a\x00b", "contains '\\x00'", id="nul"),
        pytest.param("a\nb", "contains '\\n'", id="newline"),
        pytest.param("a\tb", "contains '\\t'", id="tab"),
        pytest.param("a\x7fb", "contains '\\x7f'", id="del"),
        pytest.param("a\u200bb", "contains '\\u200b'", id="zero-width-space"),
        pytest.param("a\u202eb", "contains '\\u202e'", id="rtl-override"),
        pytest.param("al ice", "'al ice'", id="space"),
        pytest.param("alicé", "'alicé'", id="non-ascii"),
        pytest.param("con", "reserved device name", id="con"),
        pytest.param("NUL", "reserved device name", id="nul-upper"),
        pytest.param("com1", "reserved device name", id="com1"),
        pytest.param("lpt9.alice", "reserved device name", id="lpt9-ext"),
        pytest.param("Aux", "reserved device name", id="aux"),
    ],
)
def test_check_name_rejects(name: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        check_name(name)
    assert fragment in info.value.message
    assert info.value.message.startswith("--name ")
    assert info.value.hint is not None
    assert "letters A-Z, digits" in info.value.hint


@pytest.mark.parametrize(
    "name",
    ["alice", "alice@contoso.com", "a.b-c_d", "A1", "x" * MAX_NAME, "console", "com10", "nul-x"],
)
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


def test_check_name_says_which_option() -> None:
    with pytest.raises(UsageError) as info:
        check_name("a/b", "users.yaml: name")
    assert info.value.message.startswith("users.yaml: name 'a/b'")


# hypothesis: names from an alphabet rich in path tricks
TRICKY = st.lists(
    st.sampled_from([*"aZ09._-@+/\\:~ ", "..", "\x00", "\u2215", "\uff0e", "con", "nul"]),
    min_size=1,
    max_size=20,
).map("".join)


@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(
    st.one_of(TRICKY, st.text(max_size=70), st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z"))
)
def test_accepted_names_stay_inside_the_output_folder(name: str) -> None:
    try:
        check_name(name)
    except UsageError:
        assume(False)
    output = Path("/srv/profiles").resolve()
    for path in (
        output / name,
        output / name / "tunnelblick" / f"{name}-mac.tblk",
        output / name / "ios" / f"{name}-iphone.ovpn",
    ):
        resolved = path.resolve()
        assert resolved.is_relative_to(output)
        assert resolved != output
    assert (output / name).resolve().parent == output  # exactly one level down
    assert len(Path(name).parts) == 1
    assert not set(name) & TUNNELBLICK_FORBIDDEN


@given(st.text(max_size=120))
def test_sanitize_name_output_passes_check_name(text: str) -> None:
    name = sanitize_name(text)
    assert name == "user" or check_name(name) == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice@contoso.com", "alice@contoso.com"),
        ("Alice Smith", "Alice-Smith"),
        ("José Müller", "Jose-Muller"),
        ("../../etc/passwd", "etc-passwd"),
        ("a..b", "a.b"),
        ("", "user"),
        ("日本語", "user"),
        ("@alice", "alice"),
        ("con", "user-con"),
    ],
)
def test_sanitize_name_examples(text: str, expected: str) -> None:
    assert sanitize_name(text) == expected


@pytest.mark.parametrize("text", ["con", "+alice", "@alice", "COM1.contoso", "nul"])
def test_sanitize_name_never_returns_a_refused_name(text: str) -> None:
    name = sanitize_name(text)
    assert check_name(name) == name


# --- bundle identifier and version ---------------------------------------------------------------
@given(st.text(max_size=60), st.text(max_size=60))
def test_bundle_identifier_is_valid_for_tunnelblick(gateway_id: str, name: str) -> None:
    identifier = bundle_identifier(gateway_id, name)
    assert identifier.replace(".", "").replace("-", "").isalnum()
    assert identifier.isascii()
    assert ".." not in identifier
    assert not identifier.startswith(".") and not identifier.endswith(".")
    assert bundle_identifier(gateway_id, name) == identifier


def test_bundle_identifier_distinguishes_users_and_gateways() -> None:
    ids = {
        bundle_identifier(g, n)
        for g in ("gw-1", "gw-2")
        for n in ("alice", "bob", "alice@contoso.com", "alice-contoso.com")
    }
    assert len(ids) == 8  # even names that slug alike


def test_bundle_version_increases_with_time() -> None:
    base = dt.datetime(2025, 1, 31, 23, 59, 59, tzinfo=dt.UTC)
    times = [base + dt.timedelta(seconds=s) for s in (0, 1, 60, 3600, 86400, 400 * 86400)]
    versions = [tuple(int(p) for p in bundle_version(t).split(".")) for t in times]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    other_zone = base.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert bundle_version(other_zone) == bundle_version(base)


# --- writer ----------------------------------------------------------------------------------
def make_plans(tag: str = "v1") -> list[PlannedFile]:
    """Two target folders, like tunnelblick (nested folders) and ios."""
    return [
        PlannedFile(
            "tunnelblick/alice-mac.tblk/Contents/Resources/config.ovpn", f"cfg {tag}".encode()
        ),
        PlannedFile("tunnelblick/alice-mac.tblk/Contents/Info.plist", f"plist {tag}".encode()),
        PlannedFile("tunnelblick/alice-mac.tblk.zip", f"zip {tag}".encode()),
        PlannedFile("ios/alice-iphone.ovpn", f"ios {tag}".encode()),
    ]


def snapshot(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every path under ``root``: kind, content, mode."""
    found: dict[str, tuple[str, bytes | None, int]] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            found[rel] = ("dir", None, mode)
        else:
            found[rel] = ("file", path.read_bytes(), mode)
    return found


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask: private modes must come from the writer, not the environment."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_writes_private_modes(tmp_path: Path, open_umask: None) -> None:
    output = tmp_path / "profiles"
    plans = make_plans()
    writer.write_user(output, "alice", plans)

    user_dir = output / "alice"
    assert stat.S_IMODE(user_dir.stat().st_mode) == 0o700
    tree = snapshot(user_dir)
    assert {k for k, v in tree.items() if v[0] == "file"} == {f.path for f in plans}
    for rel, (kind, _data, mode) in tree.items():
        assert mode == (0o700 if kind == "dir" else 0o600), rel
    assert tree["tunnelblick/alice-mac.tblk/Contents/Info.plist"][1] == b"plist v1"
    # no staging leftovers
    assert not [p for p in user_dir.iterdir() if p.name.startswith(".")]
    # the digests the plan reports (manifest, --json) match what is on disk
    for planned in plans:
        on_disk = user_dir / planned.path
        assert planned.sha256 == hashlib.sha256(on_disk.read_bytes()).hexdigest()
        assert planned.mode == 0o600
        assert planned.size == on_disk.stat().st_size


def test_existing_target_without_force_changes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "profiles"
    writer.write_user(output, "alice", make_plans("v1"))
    before = snapshot(output)

    with pytest.raises(OutputError) as info:
        writer.write_user(output, "alice", make_plans("v2"))
    assert "already exists" in info.value.message
    assert "--force" in (info.value.hint or "")
    assert snapshot(output) == before


def test_only_one_existing_target_still_blocks_all(tmp_path: Path) -> None:
    output = tmp_path / "profiles"
    writer.write_user(output, "alice", make_plans("v1")[3:])  # only ios
    before = snapshot(output)
    with pytest.raises(OutputError, match="ios"):
        writer.write_user(output, "alice", make_plans("v2"))
    assert snapshot(output) == before  # tunnelblick was not written either


def test_force_replaces_and_removes_stale_files(tmp_path: Path, open_umask: None) -> None:
    output = tmp_path / "profiles"
    writer.write_user(output, "alice", make_plans("v1"))
    stale = output / "alice" / "tunnelblick" / "old.tblk" / "Contents" / "Info.plist"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    unrelated = output / "alice" / "README.txt"  # not owned by any target: left alone
    unrelated.write_bytes(b"mine")

    writer.write_user(output, "alice", make_plans("v2"), force=True)

    tree = snapshot(output / "alice")
    assert not stale.exists()
    assert not (output / "alice" / "tunnelblick" / "old.tblk").exists()
    assert tree["ios/alice-iphone.ovpn"][1] == b"ios v2"
    assert tree["tunnelblick/alice-mac.tblk.zip"][1] == b"zip v2"
    assert unrelated.read_bytes() == b"mine"
    for rel, (kind, _data, mode) in tree.items():
        if rel != "README.txt":
            assert mode == (0o700 if kind == "dir" else 0o600), rel
    assert not [p for p in (output / "alice").iterdir() if p.name.startswith(".")]


def failing_on_call(number: int, real: object) -> tuple[list[int], object]:
    calls: list[int] = []

    def fake(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == number:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)  # type: ignore[operator]

    return calls, fake


def test_failure_during_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "profiles"
    output.mkdir()
    (output / "bob").mkdir()  # another user's outputs are not touched
    (output / "bob" / "bob.ovpn").write_bytes(b"bob")
    calls, fake = failing_on_call(3, writer._write_new)
    monkeypatch.setattr(writer, "_write_new", fake)

    with pytest.raises(OutputError) as info:
        writer.write_user(output, "alice", make_plans())
    assert len(calls) == 3
    assert "No space left on device" in info.value.message
    assert "nothing was changed" in (info.value.hint or "")
    assert not (output / "alice").exists()
    assert (output / "bob" / "bob.ovpn").read_bytes() == b"bob"


def test_failure_during_write_with_force_keeps_earlier_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "profiles"
    writer.write_user(output, "alice", make_plans("v1"))
    before = snapshot(output)
    calls, fake = failing_on_call(3, writer._write_new)
    monkeypatch.setattr(writer, "_write_new", fake)

    with pytest.raises(OutputError):
        writer.write_user(output, "alice", make_plans("v2"), force=True)
    assert len(calls) == 3
    assert snapshot(output) == before


def test_failure_while_swapping_folders_restores_earlier_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second target's folder cannot be moved in: the first one is rolled back too."""
    output = tmp_path / "profiles"
    writer.write_user(output, "alice", make_plans("v1"))
    before = snapshot(output)
    # renames: tunnelblick -> .old, staging -> tunnelblick, ios -> .old, staging -> ios (fails)
    calls, fake = failing_on_call(4, os.replace)
    monkeypatch.setattr(writer.os, "replace", fake)

    with pytest.raises(OutputError):
        writer.write_user(output, "alice", make_plans("v2"), force=True)
    monkeypatch.undo()
    assert len(calls) >= 4
    assert snapshot(output) == before


def test_output_that_is_a_file(tmp_path: Path) -> None:
    output = tmp_path / "profiles"
    output.write_bytes(b"not a folder")
    with pytest.raises(OutputError, match="not a folder"):
        writer.write_user(output, "alice", make_plans())
    assert output.read_bytes() == b"not a folder"
