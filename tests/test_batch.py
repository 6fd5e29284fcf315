"""`ovpn-toolkit batch`: per-user isolation, idempotent re-runs, manifest, install guide.

Every test builds its own small team folder (a P2S CA, users with a PEM pair, an encrypted key,
a PKCS#12, and users the batch issues from the CA) and runs the real CLI on it. Re-run checks
compare inode, mtime and sha256 of every file under the output folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import stat
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from toolkit import ca
from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.cli import batch as batch_cli
from toolkit.sample import SampleGateway

CA_PASS = b"ca passphrase for tests"
ALICE_PASS = b"alice key passphrase"
BOB_PASS = b"bob pfx password"
OLD_NS = 1_000_000_000 * 10**9  # 2001-09-09: any rewrite gets a newer mtime than this

USERS_YAML = """\
package: VNet1GW.zip
output: profiles
targets: [tunnelblick, ios]
roots: [pki/root.pem]
ca: {dir: pki, passphrase_env: P2S_CA_PASS}
defaults: {days: 365, warn_days: 30}
users:
  - name: alice
    display_name: Alice (Contoso VPN)
    cert: certs/alice.pem
    key: certs/alice.key
    passphrase_env: ALICE_KEY_PASS
  - name: bob
    pfx: certs/bob.pfx
    passphrase_file: secrets/bob.pass
  - name: carol
    email: carol@contoso.example
    targets: [ios]
  - name: dave
    email: dave@contoso.example
    targets: [tunnelblick, ios, openvpn]
  - name: erin
    cert: certs/erin.pem
    key: certs/erin.key
"""
NAMES = ["alice", "bob", "carol", "dave", "erin"]
CA_USERS = ["carol", "dave"]


@dataclass
class Team:
    folder: Path
    gateway: SampleGateway

    @property
    def users_yaml(self) -> Path:
        return self.folder / "users.yaml"

    @property
    def out(self) -> Path:
        return self.folder / "profiles"

    @property
    def ca_dir(self) -> Path:
        return self.folder / "pki"

    def batch(self, *args: str, jobs: int = 1) -> Result:
        return CliRunner().invoke(app, ["batch", str(self.users_yaml), "--jobs", str(jobs), *args])

    def ok(self, *args: str, jobs: int = 1, code: int = 0) -> Result:
        result = self.batch(*args, jobs=jobs)
        assert result.exit_code == code, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        return result

    def manifest(self) -> dict[str, dict[str, Any]]:
        data = json.loads((self.out / "manifest.json").read_text())
        return {u["name"]: u for u in data["users"]}

    def ledger(self) -> list[ca.LedgerEntry]:
        return ca.read_ledger(self.ca_dir)

    def edit_yaml(self, old: str, new: str) -> None:
        text = self.users_yaml.read_text()
        assert old in text
        self.users_yaml.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="session")
def team_template(tmp_path_factory: pytest.TempPathFactory, gateway: SampleGateway) -> Path:
    """The team folder made once per session (a CA and three users' credentials: RSA keys are
    slow); each test gets a copy. Everything is issued inside the folder, so the ledger's paths
    are relative and stay true in a copy."""
    folder = tmp_path_factory.mktemp("team-template") / "team"
    folder.mkdir()
    (folder / "VNet1GW.zip").write_bytes(gateway.zip_bytes())
    ca.init_ca(folder / "pki", "Batch Test P2S Root", passphrase=CA_PASS)
    authority = ca.open_ca(folder / "pki", CA_PASS)
    certs = folder / "certs"
    certs.mkdir(mode=0o700)
    alice = authority.issue("alice", email="alice@contoso.example")
    bob = authority.issue("bob", email="bob@contoso.example", pfx_password=BOB_PASS)
    erin = authority.issue("erin")
    (certs / "alice.pem").write_bytes(alice.cert_path.read_bytes())
    (certs / "alice.key").write_bytes(alice.issued.key_pem(ALICE_PASS))
    assert bob.pfx_path is not None
    (certs / "bob.pfx").write_bytes(bob.pfx_path.read_bytes())
    (certs / "erin.pem").write_bytes(erin.cert_path.read_bytes())
    (certs / "erin.key").write_bytes(erin.key_path.read_bytes())
    (folder / "secrets").mkdir()
    (folder / "secrets" / "bob.pass").write_bytes(BOB_PASS + b"\n")
    (folder / "users.yaml").write_text(USERS_YAML)
    return folder


@pytest.fixture
def team(
    tmp_path: Path, team_template: Path, gateway: SampleGateway, monkeypatch: pytest.MonkeyPatch
) -> Team:
    folder = tmp_path / "team"
    shutil.copytree(team_template, folder)
    monkeypatch.setenv("P2S_CA_PASS", CA_PASS.decode())
    monkeypatch.setenv("ALICE_KEY_PASS", ALICE_PASS.decode())
    return Team(folder, gateway)


# --- helpers -------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every file and folder under ``root``: inode, mtime, mode and sha256 (files)."""
    found: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            found[rel + "/"] = (info.st_ino, stat.S_IMODE(info.st_mode))
        else:
            found[rel] = (info.st_ino, info.st_mtime_ns, stat.S_IMODE(info.st_mode), sha256(path))
    return found


def age(root: Path) -> None:
    """Set every file's mtime far into the past, so a rewrite cannot hide in the same tick."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(OLD_NS, OLD_NS))


def user_part(snap: dict[str, tuple[Any, ...]], name: str) -> dict[str, tuple[Any, ...]]:
    return {k: v for k, v in snap.items() if k == f"{name}/" or k.startswith(f"{name}/")}


def content(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (mode, sha256): what two runs must agree on byte for byte."""
    return {
        p.relative_to(root).as_posix(): (stat.S_IMODE(p.stat().st_mode), sha256(p))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def summary_lines(result: Result) -> dict[str, str]:
    lines = {}
    for line in result.stdout.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and name in NAMES:
            lines[name] = rest
    return lines


def pem_block(profile: str, tag: str) -> str:
    match = re.search(rf"<{tag}>\n(.*?)</{tag}>", profile, re.S)
    assert match, f"no <{tag}> in the profile"
    return match.group(1)


def expected_files(name: str, targets: list[str]) -> set[str]:
    files = {f"{name}/INSTALL.html"}
    if "tunnelblick" in targets:
        files |= {
            f"{name}/tunnelblick/{name}-mac.tblk.zip",
            f"{name}/tunnelblick/{name}-mac.tblk/Contents/Info.plist",
            f"{name}/tunnelblick/{name}-mac.tblk/Contents/Resources/config.ovpn",
        }
    if "ios" in targets:
        files.add(f"{name}/ios/{name}-iphone.ovpn")
    if "openvpn" in targets:
        files.add(f"{name}/openvpn/{name}-linux-windows.ovpn")
    return files


TARGETS = {
    "alice": ["tunnelblick", "ios"],
    "bob": ["tunnelblick", "ios"],
    "carol": ["ios"],
    "dave": ["tunnelblick", "ios", "openvpn"],
    "erin": ["tunnelblick", "ios"],
}


def source_certificate(team: Team, name: str) -> x509.Certificate:
    """The certificate the user's profile must carry, from where the user list says it is."""
    if name == "bob":
        from cryptography.hazmat.primitives.serialization import pkcs12

        loaded = pkcs12.load_pkcs12((team.folder / "certs/bob.pfx").read_bytes(), BOB_PASS)
        assert loaded.cert is not None
        return loaded.cert.certificate
    if name in CA_USERS:
        entry = ca.find_current(team.ca_dir, name)
        assert entry is not None
        path = entry.path(team.ca_dir, "cert")
        assert path is not None
        return x509.load_pem_x509_certificate(path.read_bytes())
    return x509.load_pem_x509_certificate((team.folder / f"certs/{name}.pem").read_bytes())


# --- a first run ---------------------------------------------------------------------------------
def test_first_run_writes_every_user_with_their_own_certificate(team: Team) -> None:
    result = team.ok()
    lines = summary_lines(result)
    assert lines == {
        "alice": "written",
        "bob": "written",
        "carol": "written (certificate issued)",
        "dave": "written (certificate issued)",
        "erin": "written",
    }
    assert "5 users: 5 written" in result.stdout
    assert "(updated)" in result.stdout
    on_disk = {p.relative_to(team.out).as_posix() for p in team.out.rglob("*") if p.is_file()}
    expected = {"manifest.json", "manifest.csv", "journal.jsonl"}
    for name, targets in TARGETS.items():
        expected |= expected_files(name, targets)
    assert on_disk == expected
    for name in NAMES:
        profile = (team.out / f"{name}/ios/{name}-iphone.ovpn").read_text()
        cert = x509.load_pem_x509_certificate(pem_block(profile, "cert").encode())
        assert cert == source_certificate(team, name)
        assert "ENCRYPTED" not in pem_block(profile, "key")
    issued = {e.name: e for e in team.ledger() if e.status == "valid"}
    assert set(CA_USERS) <= set(issued)
    assert issued["carol"].cn == "carol@contoso.example"


def test_files_are_private_everywhere_under_output(team: Team) -> None:
    team.ok()
    team.edit_yaml("display_name: Alice (Contoso VPN)", "display_name: Alice (new)")
    team.ok()  # an update goes through the staging/swap path
    assert stat.S_IMODE(team.out.stat().st_mode) == 0o700
    checked = 0
    for path in team.out.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert not path.is_symlink()
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o}"
        assert not path.name.startswith((".staging-", ".old-", ".manifest")), path
        checked += 1
    assert checked > 25


# --- partial failure -----------------------------------------------------------------------------
def _garbage_key(team: Team) -> None:
    (team.folder / "certs/erin.key").write_text("this is not a key\n")


def _unset_passphrase(team: Team) -> None:
    del os.environ["ALICE_KEY_PASS"]  # monkeypatch restores it


@pytest.mark.parametrize(
    ("breaker", "bad", "why"),
    [(_garbage_key, "erin", "erin.key"), (_unset_passphrase, "alice", "ALICE_KEY_PASS")],
    ids=["garbage-key", "passphrase-env-unset"],
)
@pytest.mark.parametrize("jobs", [1, 2])
def test_partial_failure_isolates_the_bad_user(
    team: Team, breaker: Callable[[Team], None], bad: str, why: str, jobs: int
) -> None:
    breaker(team)
    result = team.ok(jobs=jobs, code=3)
    lines = summary_lines(result)
    assert lines[bad].startswith("failed: ")
    assert why in lines[bad]
    assert all(lines[n].startswith("written") for n in NAMES if n != bad), lines
    assert "5 users: 4 written, 1 failed" in result.stdout
    assert not (team.out / bad).exists()
    on_disk = {p.relative_to(team.out).as_posix() for p in team.out.rglob("*") if p.is_file()}
    for name in NAMES:
        if name != bad:
            assert expected_files(name, TARGETS[name]) <= on_disk
    assert not any(p.startswith(f"{bad}/") for p in on_disk)
    record = team.manifest()[bad]
    assert record["status"] == "failed"
    assert why in record["reason"]
    assert "files" not in record
    streams = result.stdout + result.stderr
    assert ALICE_PASS.decode() not in streams and CA_PASS.decode() not in streams
    assert not re.search(r"PRIVATE KEY-----\s*\n", streams)  # a hint may name the format


def test_a_failed_user_is_written_once_fixed(team: Team) -> None:
    good_key = (team.folder / "certs/erin.key").read_bytes()
    _garbage_key(team)
    team.ok(code=3)
    before = snapshot(team.out)
    (team.folder / "certs/erin.key").write_bytes(good_key)
    result = team.ok()
    assert summary_lines(result)["erin"] == "written"
    after = snapshot(team.out)
    assert expected_files("erin", TARGETS["erin"]) <= set(after)
    for name in ("alice", "bob", "carol", "dave"):
        assert user_part(after, name) == user_part(before, name)


def test_certificate_from_another_root_fails_with_roots_set(team: Team) -> None:
    foreign_root = pki.create_root("Batch Test P2S Root")  # same CN, other key
    mallory = pki.issue_certificate(foreign_root, "mallory@contoso.example")
    (team.folder / "certs/mallory.pem").write_bytes(mallory.cert_pem)
    (team.folder / "certs/mallory.key").write_bytes(mallory.key_pem())
    with team.users_yaml.open("a") as handle:
        handle.write("  - name: mallory\n    cert: certs/mallory.pem\n    key: certs/mallory.key\n")
    result = team.ok(code=3)
    line = summary_lines_with(result, "mallory")
    assert line.startswith("failed: ")
    assert "root" in line.lower() or "chain" in line.lower(), line
    assert not (team.out / "mallory").exists()
    assert team.manifest()["mallory"]["status"] == "failed"
    assert all(team.manifest()[n]["status"] == "written" for n in NAMES)


def summary_lines_with(result: Result, name: str) -> str:
    for line in result.stdout.splitlines():
        if line.startswith(f"{name}: "):
            return line.removeprefix(f"{name}: ")
    raise AssertionError(f"{name} not in the summary:\n{result.stdout}")


def test_fail_fast_stops_and_reports_the_rest_as_skipped(team: Team) -> None:
    _unset_passphrase(team)  # alice, the first user, fails
    result = team.ok("--fail-fast", code=3)
    lines = summary_lines(result)
    assert lines["alice"].startswith("failed: ") and "ALICE_KEY_PASS" in lines["alice"]
    for name in NAMES[1:]:
        assert lines[name] == "skipped: not run (--fail-fast)"
        assert not (team.out / name).exists()
    assert "5 users: 1 failed, 4 skipped" in result.stdout
    assert not any(e.name in CA_USERS for e in team.ledger())  # nobody was issued
    assert not [p for p in team.out.rglob("*") if p.is_dir()]


def test_fail_fast_with_jobs_reports_every_user(team: Team) -> None:
    _unset_passphrase(team)
    result = team.ok("--fail-fast", jobs=2, code=3)
    lines = summary_lines(result)
    assert set(lines) == set(NAMES)
    assert lines["alice"].startswith("failed: ")
    for name in NAMES[1:]:
        assert lines[name].startswith(("written", "skipped: not run (--fail-fast)")), lines
        if lines[name].startswith("skipped"):
            assert not (team.out / name).exists()


# --- idempotence ---------------------------------------------------------------------------------
def test_second_run_writes_nothing(team: Team) -> None:
    team.ok()
    age(team.out)
    ledger_before = sha256(team.ca_dir / "ledger.json")
    before = snapshot(team.out)
    result = team.ok()
    assert summary_lines(result) == dict.fromkeys(NAMES, "unchanged")
    assert "5 users: 5 unchanged" in result.stdout
    assert "manifest.csv (unchanged)" in result.stdout
    assert snapshot(team.out) == before
    assert sha256(team.ca_dir / "ledger.json") == ledger_before


def test_second_run_from_another_cwd_and_spelling_writes_nothing(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(team.folder)
    assert CliRunner().invoke(app, ["batch", "users.yaml", "-j", "1"]).exit_code == 0
    age(team.out)
    before = snapshot(team.out)
    monkeypatch.chdir(team.folder.parent)
    result = CliRunner().invoke(app, ["batch", "team/../team/users.yaml", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert summary_lines(result) == dict.fromkeys(NAMES, "unchanged")
    assert snapshot(team.out) == before


def test_reissued_certificate_rewrites_only_that_user(team: Team) -> None:
    team.ok()
    old = team.manifest()["erin"]["certificate"]["thumbprint_sha1"]
    age(team.out)
    before = snapshot(team.out)
    authority = ca.open_ca(team.ca_dir, CA_PASS)
    renewed = authority.renew("erin", output_dir=team.folder / "renewed")
    for suffix in ("pem", "key"):
        os.replace(team.folder / f"renewed/erin.{suffix}", team.folder / f"certs/erin.{suffix}")
    result = team.ok()
    assert summary_lines(result) == {**dict.fromkeys(NAMES, "unchanged"), "erin": "written"}
    assert "(updated)" in result.stdout
    after = snapshot(team.out)
    for name in NAMES:
        if name != "erin":
            assert user_part(after, name) == user_part(before, name), name
    erin_before, erin_after = user_part(before, "erin"), user_part(after, "erin")
    assert set(erin_before) == set(erin_after)
    for path in erin_after:
        if not path.endswith("/"):
            assert erin_after[path][1] != OLD_NS, f"{path} was not rewritten"
    new = team.manifest()["erin"]["certificate"]["thumbprint_sha1"]
    assert new == renewed.thumbprint_sha1 != old
    for profile in (
        "erin/ios/erin-iphone.ovpn",
        "erin/tunnelblick/erin-mac.tblk/Contents/Resources/config.ovpn",
    ):
        text = (team.out / profile).read_text()
        cert = x509.load_pem_x509_certificate(pem_block(text, "cert").encode())
        assert cert == renewed.certificate


def test_changed_setting_rewrites_only_that_user(team: Team) -> None:
    team.ok()
    age(team.out)
    before = snapshot(team.out)
    team.edit_yaml("display_name: Alice (Contoso VPN)", "display_name: Alice (Fabrikam VPN)")
    result = team.ok()
    assert summary_lines(result) == {**dict.fromkeys(NAMES, "unchanged"), "alice": "written"}
    after = snapshot(team.out)
    for name in NAMES[1:]:
        assert user_part(after, name) == user_part(before, name), name
    assert after["alice/ios/alice-iphone.ovpn"][3] != before["alice/ios/alice-iphone.ovpn"][3]
    ios = (team.out / "alice/ios/alice-iphone.ovpn").read_text()
    assert 'setenv FRIENDLY_NAME "Alice (Fabrikam VPN)"' in ios.splitlines()
    assert "Contoso" not in ios
    assert "Alice (Fabrikam VPN)" in (team.out / "alice/INSTALL.html").read_text()
    assert team.manifest()["alice"]["display_name"] == "Alice (Fabrikam VPN)"


def test_dropped_target_is_removed_and_only_that_user_changes(team: Team) -> None:
    team.ok()
    before = snapshot(team.out)
    team.edit_yaml("targets: [tunnelblick, ios, openvpn]", "targets: [ios]")
    result = team.ok()
    assert summary_lines(result)["dave"] == "written"
    assert not (team.out / "dave/tunnelblick").exists()
    assert not (team.out / "dave/openvpn").exists()
    files = {p.relative_to(team.out).as_posix() for p in (team.out / "dave").rglob("*")}
    assert {f for f in files if not f.endswith(("ios", "dave"))} == expected_files("dave", ["ios"])
    assert team.manifest()["dave"]["targets"] == ["ios"]
    after = snapshot(team.out)
    for name in ("alice", "bob", "carol", "erin"):
        assert user_part(after, name) == user_part(before, name)


def test_force_rewrites_everyone_without_reissuing(team: Team) -> None:
    team.ok()
    entries = len(team.ledger())
    age(team.out)
    before = snapshot(team.out)
    result = team.ok("--force")
    assert summary_lines(result) == dict.fromkeys(NAMES, "written")
    after = snapshot(team.out)
    assert set(after) == set(before)
    for path, info in after.items():
        # the journal is state, not output: it records the rewritten files' stat keys
        if not path.endswith("/") and not path.startswith(("manifest.", "journal.")):
            assert info[1] != OLD_NS, f"{path} was not rewritten"
            assert info[3] == before[path][3], f"{path}: same inputs must give the same bytes"
    assert len(team.ledger()) == entries


def test_ca_users_are_not_reissued_and_renew_within_renews_them(team: Team) -> None:
    team.ok()
    first = {e.name: e for e in team.ledger() if e.status == "valid"}
    count = len(team.ledger())
    team.ok()
    assert len(team.ledger()) == count  # nothing re-issued
    age(team.out)
    before = snapshot(team.out)
    result = team.ok("--renew-within", "400")
    lines = summary_lines(result)
    assert lines == {
        **dict.fromkeys(NAMES, "unchanged"),
        "carol": "written (certificate renewed)",
        "dave": "written (certificate renewed)",
    }
    ledger = team.ledger()
    assert len(ledger) == count + 2
    # as `ca renew` does: each superseded certificate with the command that cuts it off now
    for name in CA_USERS:
        thumbprint = first[name].thumbprint_sha1
        assert (
            f"Superseded {thumbprint} (expires {first[name].not_after:%Y-%m-%d}); Azure accepts "
            f"it until then. To cut it off now: ovpn-toolkit ca revoke --ca {team.ca_dir} "
            f"{thumbprint}"
        ) in result.stdout
    manifest = team.manifest()
    for name in CA_USERS:
        old = next(e for e in ledger if e.serial == first[name].serial)
        new = ca.find_current(team.ca_dir, name)
        assert new is not None and new.serial != old.serial
        assert old.status == "superseded" and old.superseded_by == new.serial
        assert new.renewed_from == old.serial
        record = manifest[name]["certificate"]
        assert record["thumbprint_sha1"] == new.thumbprint_sha1 != old.thumbprint_sha1
        assert record["serial"] == new.serial
    after = snapshot(team.out)
    for name in ("alice", "bob", "erin"):  # not issued by the batch: never renewed by it
        assert user_part(after, name) == user_part(before, name)
    # renewed once: the next plain run is quiet again
    result = team.ok()
    assert summary_lines(result) == dict.fromkeys(NAMES, "unchanged")
    assert len(team.ledger()) == count + 2


def test_renew_within_a_short_window_renews_nothing(team: Team) -> None:
    team.ok()
    count = len(team.ledger())
    result = team.ok("--renew-within", "30")
    assert summary_lines(result) == dict.fromkeys(NAMES, "unchanged")
    assert len(team.ledger()) == count


# --- parallel == sequential ----------------------------------------------------------------------
def test_jobs_1_and_jobs_2_give_the_same_outputs(team: Team) -> None:
    result = team.ok("--output", str(team.folder / "out2"), jobs=2)  # issues carol and dave
    assert "5 users: 5 written" in result.stdout
    time.sleep(2.1)  # past zip's 2-second timestamp resolution: a clock in any output shows
    result = team.ok("--output", str(team.folder / "out1"), jobs=1)  # same certificates
    assert summary_lines(result) == dict.fromkeys(NAMES, "written")
    one, two = content(team.folder / "out1"), content(team.folder / "out2")
    assert set(one) == set(two)
    # the journal is state, not output: it holds each file's stat keys (inode, times)
    assert one.pop("journal.jsonl")[0] == two.pop("journal.jsonl")[0] == 0o600
    assert one == two
    assert len(one) == 2 + sum(len(expected_files(n, t)) for n, t in TARGETS.items())
    with zipfile.ZipFile(team.folder / "out1/alice/tunnelblick/alice-mac.tblk.zip") as archive:
        names = archive.namelist()
        assert "alice-mac.tblk/Contents/Resources/config.ovpn" in names
        assert (
            archive.read("alice-mac.tblk/Contents/Resources/config.ovpn")
            == (
                team.folder / "out1/alice/tunnelblick/alice-mac.tblk/Contents/Resources/config.ovpn"
            ).read_bytes()
        )


# --- manifest ------------------------------------------------------------------------------------
def test_manifest_describes_every_user_and_matches_disk(team: Team) -> None:
    team.edit_yaml("warn_days: 30", "warn_days: 400")  # every 365-day certificate warns
    team.ok()
    document = json.loads((team.out / "manifest.json").read_text())
    assert document["schema_version"] == 1
    assert document["package"] == str(team.folder / "VNet1GW.zip")
    records = {u["name"]: u for u in document["users"]}
    assert list(records) == NAMES
    for name in NAMES:
        record = records[name]
        cert = source_certificate(team, name)
        summary = record["certificate"]
        assert record["status"] == "written"
        assert (
            summary["thumbprint_sha1"]
            == hashlib.sha1(  # noqa: S324 - Azure's thumbprint
                cert.public_bytes(serialization_der())
            )
            .hexdigest()
            .upper()
        )
        assert int(summary["serial"], 16) == cert.serial_number
        assert summary["not_after"] == cert.not_valid_after_utc.isoformat()
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert summary["common_name"] == cn
        assert record["targets"] == TARGETS[name]
        assert {f["path"] for f in record["files"]} == expected_files(name, TARGETS[name])
        for entry in record["files"]:
            assert entry["sha256"] == sha256(team.out / entry["path"])
            assert entry["mode"] == "0600"
        assert record["warnings"] and all("expires in" in w for w in record["warnings"])
        assert "reason" not in record
    assert records["alice"]["display_name"] == "Alice (Contoso VPN)"
    assert records["bob"]["display_name"].startswith("bob")
    assert records["carol"]["certificate"]["common_name"] == "carol@contoso.example"
    for name in CA_USERS:
        entry = ca.find_current(team.ca_dir, name)
        assert entry is not None
        assert records[name]["certificate"]["thumbprint_sha1"] == entry.thumbprint_sha1

    rows = list(csv.DictReader(io.StringIO((team.out / "manifest.csv").read_text())))
    assert [r["name"] for r in rows] == NAMES
    for row in rows:
        record = records[row["name"]]
        cert = record["certificate"]
        assert row["display_name"] == record["display_name"]
        assert row["common_name"] == cert["common_name"]
        assert row["serial"] == cert["serial"]
        assert row["thumbprint_sha1"] == cert["thumbprint_sha1"]
        assert row["not_after"] == cert["not_after"]
        assert row["targets"].split() == record["targets"]
        assert row["status"] == "written"
        assert row["warnings"].split(" | ") == record["warnings"]
        files = dict(item.rsplit(":", 1) for item in row["files"].split())
        assert files == {f["path"]: f["sha256"] for f in record["files"]}
    text = (team.out / "manifest.json").read_text() + (team.out / "manifest.csv").read_text()
    assert not re.search(r"PRIVATE KEY-----\s*\n", text) and CA_PASS.decode() not in text


def serialization_der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_manifest_records_failures_and_keeps_them_in_csv(team: Team) -> None:
    _garbage_key(team)
    team.ok(code=3)
    text = (team.out / "manifest.csv").read_text()
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows["erin"]["status"] == "failed"
    assert "erin.key" in rows["erin"]["reason"]
    assert rows["erin"]["files"] == "" and rows["erin"]["thumbprint_sha1"] == ""
    assert rows["alice"]["status"] == "written"


# --- install guide -------------------------------------------------------------------------------
# links the guide may show (never loaded); anything else with a URL would be an external asset
GUIDE_LINKS = {
    "https://tunnelblick.net/",
    "https://apps.apple.com/app/openvpn-connect/id590379981",
    "https://openvpn.net/community-downloads/",
}


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []  # URLs that would load something
        self.anchors: list[str] = []  # <a href>: followed only when the user taps them

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for key, value in attrs:
            if tag == "a" and key == "href" and value:
                self.anchors.append(value)
            elif key in ("src", "href", "srcset", "data", "action", "poster") and value:
                self.links.append(value)


def test_install_guide_names_the_users_files_gateway_and_expiry(team: Team) -> None:
    team.ok()
    manifest = team.manifest()
    for name in NAMES:
        html = (team.out / f"{name}/INSTALL.html").read_text()
        record = manifest[name]
        assert record["display_name"] in html.replace("&#39;", "'").replace("&amp;", "&")
        assert team.gateway.remote_host in html
        assert record["certificate"]["not_after"][:10] in html
        assert record["certificate"]["thumbprint_sha1"] in html
        assert f"{name}-iphone.ovpn" in html  # every user has the ios target here
        if "tunnelblick" in TARGETS[name]:
            assert f"{name}-mac.tblk.zip" in html and "On your Mac" in html
        else:
            assert "tblk" not in html and "On your Mac" not in html
        assert ("openvpn --config" in html) == ("openvpn" in TARGETS[name])


def test_install_guide_has_no_secrets_and_no_external_assets(team: Team) -> None:
    team.ok()
    tls_auth_lines = [
        line
        for line in team.gateway.tls_auth_key.splitlines()
        if re.fullmatch(r"[0-9a-f]{32}", line)
    ]
    assert len(tls_auth_lines) == 16
    for name in NAMES:
        html = (team.out / f"{name}/INSTALL.html").read_text()
        profile = (team.out / f"{name}/ios/{name}-iphone.ovpn").read_text()
        key_lines = [line for line in pem_block(profile, "key").splitlines() if "-----" not in line]
        assert len(key_lines) > 10
        assert "PRIVATE KEY" not in html and "BEGIN" not in html
        assert not any(line in html for line in key_lines)
        assert not any(line in html for line in tls_auth_lines)
        assert CA_PASS.decode() not in html and ALICE_PASS.decode() not in html
        parser = _Assets()
        parser.feed(html)
        assert parser.links == [], parser.links
        assert all(a.startswith("#") or a in GUIDE_LINKS for a in parser.anchors), parser.anchors
        assert not {"script", "link", "img", "iframe", "object", "embed"} & set(parser.tags)
        assert "<style>" in html  # the CSS is inline
        assert not re.search(r"@import|url\(|http://", html, re.I)
        assert set(re.findall(r"https://[^\s\"'<>)]*", html)) <= GUIDE_LINKS


# --- dry run, JSON -------------------------------------------------------------------------------
def test_dry_run_writes_nothing(team: Team) -> None:
    ledger = sha256(team.ca_dir / "ledger.json")
    result = team.ok("--dry-run")
    lines = summary_lines(result)
    assert set(lines) == set(NAMES)
    assert all(line.startswith("planned") for line in lines.values()), lines
    assert "warning: a certificate would be issued from the CA" in result.stdout
    assert not team.out.exists()
    assert sha256(team.ca_dir / "ledger.json") == ledger
    assert not [n for n in CA_USERS if (team.ca_dir / "issued" / n).exists()]
    # and after a real run, a dry run with changes pending touches nothing either
    team.ok()
    age(team.out)
    before = snapshot(team.out)
    team.edit_yaml("display_name: Alice (Contoso VPN)", "display_name: Alice (changed)")
    result = team.ok("--dry-run", "--force")
    assert summary_lines(result)["alice"] == "planned"
    assert snapshot(team.out) == before


def test_json_output_is_one_document(team: Team) -> None:
    _garbage_key(team)
    result = team.ok("--json", code=3)
    document = json.loads(result.stdout)  # nothing else on stdout
    assert document["command"] == "batch" and document["dry_run"] is False
    assert document["counts"] == {
        "written": 4,
        "unchanged": 0,
        "planned": 0,
        "failed": 1,
        "skipped": 0,
    }
    users = {u["name"]: u for u in document["users"]}
    assert list(users) == NAMES
    assert users["erin"]["status"] == "failed" and "erin.key" in users["erin"]["reason"]
    assert users["carol"]["issued"] == "issued"
    assert (
        users["alice"]["certificate"]["thumbprint_sha1"]
        == (team.manifest()["alice"]["certificate"]["thumbprint_sha1"])
    )
    assert result.stderr == ""  # no progress bar, no summary on stderr
    assert not re.search(r"PRIVATE KEY-----\s*\n", result.stdout)
    again = json.loads(team.ok("--json", code=3).stdout)  # erin still fails, nobody else changes
    assert again["counts"]["unchanged"] == 4 and again["counts"]["failed"] == 1


def test_quiet_prints_only_the_count_and_errors(team: Team) -> None:
    _garbage_key(team)
    result = team.ok("--quiet", code=3)
    assert result.stdout == "5 users: 4 written, 1 failed\n"  # the grammar of every mode
    assert result.stderr.startswith("erin: failed: ")
    assert result.stderr.count("\n") == 1


def test_each_failure_is_printed_on_stderr_as_it_happens(team: Team) -> None:
    _unset_passphrase(team)  # alice, the first user, fails
    seen: list[tuple[str, bool]] = []
    original = batch_cli.err

    def spy(text: str) -> None:  # was erin, the last user, already written when it came?
        seen.append((text, (team.out / "erin").exists()))
        original(text)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batch_cli, "err", spy)
        result = team.ok(code=3)
    assert len(seen) == 1
    line, erin_done = seen[0]
    assert line.startswith("alice: failed: ") and "ALICE_KEY_PASS" in line
    assert not erin_done  # printed before the later users ran, not at the end
    assert result.stderr.startswith("alice: failed: ")
    assert "5 users: 4 written, 1 failed" in result.stdout


def test_one_user_is_one_user(team: Team) -> None:
    text = team.users_yaml.read_text()
    team.users_yaml.write_text(text.split("  - name: bob")[0])  # alice only
    assert team.ok().stdout.splitlines()[-2] == "1 user: 1 written"
    assert team.ok("-q").stdout == "1 user: 1 unchanged\n"


def test_the_manifest_and_json_list_exactly_the_files_to_send(team: Team) -> None:
    document = json.loads(team.ok("--json", code=0).stdout)
    users = {u["name"]: u for u in document["users"]}
    manifest = team.manifest()
    for name in NAMES:
        send = users[name]["send"]
        assert manifest[name]["send"] == send
        labels = {"tunnelblick": "mac", "ios": "iphone", "openvpn": "linux-windows"}
        expected = [
            f"{name}/{t}/{name}-{labels[t]}" + (".tblk.zip" if t == "tunnelblick" else ".ovpn")
            for t in TARGETS[name]
        ]
        assert [s["path"] for s in send] == [*expected, f"{name}/INSTALL.html"]
        assert [s["platform"] for s in send][-1] == "all"
        for item in send:
            assert (team.out / item["path"]).is_file()
        names = [Path(s["path"]).name for s in send]
        assert len(set(names)) == len(names)
    with (team.out / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["send"].split() == [s["path"] for s in users["alice"]["send"]]
    text = team.ok().stdout  # the human summary says what to send, per platform
    assert f"send (iPhone): {team.out / 'carol/ios/carol-iphone.ovpn'}" not in text  # unchanged
    team.ok("--force")
    text = team.ok("--force").stdout
    assert f"send (iPhone): {team.out / 'carol/ios/carol-iphone.ovpn'}" in text
    assert f"send (Mac): {team.out / 'dave/tunnelblick/dave-mac.tblk.zip'}" in text


def test_the_manifest_sends_both_keychain_files_but_not_the_password(team: Team) -> None:
    team.edit_yaml("    targets: [ios]\n", "    targets: [ios-keychain]\n")  # carol
    team.ok()
    stem = "carol/ios-keychain/carol-iphone-keychain"
    assert (team.out / f"{stem}-password.txt").is_file()
    expected = [f"{stem}.ovpn12", f"{stem}.ovpn", "carol/INSTALL.html"]
    assert [s["path"] for s in team.manifest()["carol"]["send"]] == expected
    with (team.out / "manifest.csv").open() as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert rows["carol"]["send"].split() == expected
    text = team.ok("--force").stdout
    for path in expected[:2]:
        assert f"send (iPhone): {team.out / path}" in text
    assert "password.txt" not in text


def test_contact_from_the_file_and_per_user_reaches_the_guide(team: Team) -> None:
    text = team.users_yaml.read_text()
    text = text.replace("users:\n", "contact: IT desk <it@contoso.example>\nusers:\n", 1)
    text = text.replace(
        "    targets: [ios]\n", "    targets: [ios]\n    contact: Ines at the Zurich desk\n", 1
    )
    team.users_yaml.write_text(text)
    team.ok()
    alice = (team.out / "alice" / "INSTALL.html").read_text()
    carol = (team.out / "carol" / "INSTALL.html").read_text()
    assert "Ask <strong>IT desk &lt;it@contoso.example&gt;</strong>" in alice
    assert "Ines at the Zurich desk" in carol and "IT desk" not in carol


def test_guide_false_in_the_file_writes_no_guide(team: Team) -> None:
    text = team.users_yaml.read_text().replace("users:\n", "guide: false\nusers:\n", 1)
    team.users_yaml.write_text(text)
    team.ok()
    assert not list(team.out.rglob("INSTALL.html"))
    assert all(s["target"] != "guide" for u in team.manifest().values() for s in u["send"])


# --- a big team ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.slow
def test_forty_users_issued_by_the_batch(team: Team) -> None:
    """Enough users for every worker to issue many, and for serials to be compared at scale;
    the benchmark (bench/run.py) measures hundreds and thousands."""
    names = [f"user{i:03d}" for i in range(40)]
    lines = [USERS_YAML.split("users:\n")[0] + "users:\n"]
    lines += [f"  - name: {n}\n    email: {n}@contoso.example\n" for n in names]
    team.users_yaml.write_text("".join(lines))
    start = time.monotonic()
    result = team.ok(jobs=2)
    first = time.monotonic() - start
    assert "40 users: 40 written" in result.stdout
    manifest = team.manifest()
    assert list(manifest) == names
    thumbprints = {r["certificate"]["thumbprint_sha1"] for r in manifest.values()}
    assert len(thumbprints) == 40  # each user has a certificate of their own
    ledger = [e for e in team.ledger() if e.name in set(names)]
    assert len(ledger) == 40 and len({e.serial for e in ledger}) == 40
    assert {e.thumbprint_sha1 for e in ledger} == thumbprints
    for name in names:
        record = manifest[name]
        assert record["status"] == "written"
        for entry in record["files"]:
            assert entry["sha256"] == sha256(team.out / entry["path"])
    age(team.out)
    before = snapshot(team.out)
    start = time.monotonic()
    result = team.ok(jobs=2)
    second = time.monotonic() - start
    assert "40 users: 40 unchanged" in result.stdout
    assert snapshot(team.out) == before
    assert len([e for e in team.ledger() if e.name in set(names)]) == 40
    print(f"\n40-user batch, --jobs 2: first run {first:.1f} s, second run {second:.1f} s")
    shutil.rmtree(team.out)  # 1000+ files: do not keep them in pytest's tmp dirs


# --- inputs beyond the user list ------------------------------------------------------------------
def test_missing_ca_passphrase_is_an_input_error_before_any_work(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("P2S_CA_PASS")
    result = team.ok(code=2)
    assert "P2S_CA_PASS" in result.stderr
    assert result.stdout == ""
    assert not team.out.exists()
    # once carol and dave are issued, the CA key is not needed any more
    monkeypatch.setenv("P2S_CA_PASS", CA_PASS.decode())
    team.ok()
    monkeypatch.delenv("P2S_CA_PASS")
    result = team.ok()
    assert summary_lines(result) == dict.fromkeys(NAMES, "unchanged")


def test_changed_package_rewrites_everyone(team: Team) -> None:
    from toolkit.sample import make_gateway

    team.ok()
    age(team.out)
    (team.folder / "VNet1GW.zip").write_bytes(make_gateway().zip_bytes())
    result = team.ok()
    assert summary_lines(result) == dict.fromkeys(NAMES, "written")
    for name in NAMES:
        profile = (team.out / f"{name}/ios/{name}-iphone.ovpn").read_text()
        assert f"remote {team.gateway.remote_host} " not in profile
        assert os.stat(team.out / f"{name}/ios/{name}-iphone.ovpn").st_mtime_ns != OLD_NS


def test_deleted_output_is_restored_and_edited_output_kept_without_force(team: Team) -> None:
    team.ok()
    original = (team.out / "bob/ios/bob-iphone.ovpn").read_bytes()
    (team.out / "bob/ios/bob-iphone.ovpn").write_text("edited by hand\n")
    (team.out / "carol/INSTALL.html").unlink()
    age(team.out)
    before = snapshot(team.out)
    result = team.ok(code=3)
    lines = summary_lines(result)
    assert lines == {
        **dict.fromkeys(NAMES, "unchanged"),
        "bob": lines["bob"],
        "carol": "written",
    }
    # bytes the toolkit did not write are never replaced without --force
    assert lines["bob"].startswith("failed: ") and "bob/ios: already exists" in lines["bob"]
    assert (team.out / "bob/ios/bob-iphone.ovpn").read_text() == "edited by hand\n"
    assert (team.out / "carol/INSTALL.html").exists()
    after = snapshot(team.out)
    for name in ("alice", "dave", "erin"):
        assert user_part(after, name) == user_part(before, name)
    team.ok("--force")
    assert (team.out / "bob/ios/bob-iphone.ovpn").read_bytes() == original


def test_revoked_ca_user_is_not_silently_reissued(team: Team) -> None:
    team.ok()
    ca.revoke(team.ca_dir, "carol")
    count = len(team.ledger())
    result = team.ok(code=3)
    lines = summary_lines(result)
    assert lines["carol"].startswith("failed: the certificate of 'carol' was revoked")
    assert all(lines[n] == "unchanged" for n in NAMES if n != "carol")
    assert len(team.ledger()) == count  # nothing issued behind the admin's back
    old = next(e for e in team.ledger() if e.name == "carol")
    # the hint is the deliberate re-issue, with every option the batch would have used
    command = lines["carol"].split("issue deliberately: ", 1)[1].rstrip(")")
    argv = shlex.split(command)
    assert argv[:3] == ["ovpn-toolkit", "ca", "issue"]
    assert argv[argv.index("--email") :][:2] == ["--email", "carol@contoso.example"]
    assert argv[argv.index("--passphrase-env") :][:2] == ["--passphrase-env", "P2S_CA_PASS"]
    issued = CliRunner().invoke(app, argv[1:])  # run it as printed
    assert issued.exit_code == 0, issued.stderr
    new = ca.find_current(team.ca_dir, "carol")
    assert new is not None and new.cn == old.cn == "carol@contoso.example"
    result = team.ok()
    assert summary_lines(result)["carol"] == "written"


def test_a_user_removed_from_the_list_is_reported_and_left_in_place(team: Team) -> None:
    team.ok()
    text = team.users_yaml.read_text()
    start = text.index("  - name: erin")
    team.users_yaml.write_text(text[:start])
    result = team.ok()
    assert "note: erin is no longer in the user list" in result.stdout
    assert (team.out / "erin").is_dir()  # never deleted behind the admin's back
    assert "erin" not in team.manifest()
    data = json.loads(team.ok("--json").stdout)
    assert data["dropped"] == []  # the manifest no longer knows erin


def test_install_guide_mentions_the_key_passphrase_only_when_there_is_one(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERIN_PROFILE_PASS", "erin's own words")
    team.edit_yaml(
        "    cert: certs/erin.pem\n",
        "    cert: certs/erin.pem\n    key_passphrase_env: ERIN_PROFILE_PASS\n",
    )
    team.ok()
    erin = (team.out / "erin" / "INSTALL.html").read_text()
    alice = (team.out / "alice" / "INSTALL.html").read_text()
    assert "key passphrase" in erin and "key passphrase" not in alice
    assert "erin's own words" not in erin and "erin&#39;s own words" not in erin
    profile = (team.out / "erin" / "ios" / "erin-iphone.ovpn").read_text()
    assert "BEGIN ENCRYPTED PRIVATE KEY" in profile
