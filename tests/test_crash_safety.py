"""Crashes and interruptions (issue 8, item 4): a real `python -m toolkit batch` is killed
(SIGKILL of the whole process group, as a power loss would), interrupted (SIGINT, SIGTERM)
and re-run without --force.

After a kill, every file under a user's folder is one whose digest the journal records for
that path (complete) or is not there (absent); after the plain re-run the job is done, every
file matches the manifest, no leftover of an interrupted write remains and no user has a
second certificate in the CA's ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from typer.testing import CliRunner

from toolkit import ca
from toolkit.cli import app
from toolkit.output import PlannedFile, recover_user, write_user
from toolkit.sample import SampleGateway

# end to end: real batch processes started, killed and re-run (and tmpfs mounts, as root)
pytestmark = pytest.mark.integration

CA_PASS = "ca passphrase for crash tests"
LEFTOVER_MARKS = (".staging-", ".old-")


@dataclass
class Team:
    folder: Path
    names: list[str]  # users with a certificate and key file
    ca_names: list[str]  # users the batch issues from the CA

    @property
    def users_yaml(self) -> Path:
        return self.folder / "users.yaml"

    @property
    def out(self) -> Path:
        return self.folder / "profiles"

    @property
    def ca_dir(self) -> Path:
        return self.folder / "pki"

    @property
    def all_names(self) -> list[str]:
        return self.names + self.ca_names

    def env(self) -> dict[str, str]:
        return {**os.environ, "P2S_CA_PASS": CA_PASS}

    def start(self, *args: str, jobs: int = 2) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "toolkit", "batch", str(self.users_yaml)]
        return subprocess.Popen(
            [*command, "--jobs", str(jobs), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(),
            start_new_session=True,  # its own process group: killpg reaches every worker
        )

    def run(self, *args: str, jobs: int = 1) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "toolkit", "batch", str(self.users_yaml)]
        return subprocess.run(
            [*command, "--jobs", str(jobs), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=300,
        )

    def ok(self, *args: str, jobs: int = 1) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, jobs=jobs)
        assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        return result


def make_team(
    folder: Path, gateway: SampleGateway, users: int, ca_users: int = 0, *, distinct: int = 0
) -> Team:
    """``users`` with pre-issued credentials (``distinct`` > 0: only that many certificates,
    shared round-robin, for lists long enough to be interrupted) and ``ca_users`` to issue."""
    folder.mkdir()
    (folder / "VNet1GW.zip").write_bytes(gateway.zip_bytes())
    ca.init_ca(folder / "pki", "Crash Test P2S Root", passphrase=CA_PASS.encode())
    authority = ca.open_ca(folder / "pki", CA_PASS.encode())
    names = [f"user{i:02d}" for i in range(users)]
    ca_names = [f"issued{i:02d}" for i in range(ca_users)]
    lines = [
        "package: VNet1GW.zip",
        "output: profiles",
        "targets: [tunnelblick, ios]",
        "ca: {dir: pki, passphrase_env: P2S_CA_PASS}",
        "users:",
    ]
    for index, name in enumerate(names):  # pre-issued: issuance is not the point of most tests
        files = names[index % distinct] if distinct else name
        if files == name:
            authority.issue(name, output_dir=folder / "certs")
        lines += [f"  - name: {name}", f"    cert: certs/{files}.pem"]
        lines.append(f"    key: certs/{files}.key")
    for name in ca_names:
        lines += [f"  - name: {name}", f"    email: {name}@contoso.example"]
    (folder / "users.yaml").write_text("\n".join(lines) + "\n")
    return Team(folder, names, ca_names)


@pytest.fixture
def team(tmp_path: Path, gateway: SampleGateway) -> Team:
    return make_team(tmp_path / "team", gateway, users=6)


@pytest.fixture
def ca_team(tmp_path: Path, gateway: SampleGateway) -> Team:
    return make_team(tmp_path / "team", gateway, users=2, ca_users=4)


# --- what the disk must look like -----------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def journal_events(out: Path) -> list[dict[str, Any]]:
    events = []
    try:
        lines = (out / "journal.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        with contextlib.suppress(ValueError):  # a torn last line
            events.append(json.loads(line))
    return events


def done_count(out: Path) -> int:
    return sum(1 for e in journal_events(out) if e.get("event") == "done")


def known_digests(out: Path) -> dict[str, set[str]]:
    known: dict[str, set[str]] = {}
    for event in journal_events(out):
        files = event.get("files") or (event.get("record") or {}).get("files") or []
        for entry in files:
            known.setdefault(entry["path"], set()).add(entry["sha256"])
    return known


def user_files(out: Path, name: str) -> list[Path]:
    """Files in a user's folder, not counting an interrupted write's parked copies."""
    user_dir = out / name
    return sorted(
        p
        for p in user_dir.rglob("*")
        if p.is_file() and not p.relative_to(user_dir).parts[0].startswith(LEFTOVER_MARKS)
    )


def assert_complete_or_absent(team: Team) -> None:
    """Right after a kill: every output file holds bytes the journal records for its path."""
    known = known_digests(team.out)
    for name in team.all_names:
        for path in user_files(team.out, name):
            rel = path.relative_to(team.out).as_posix()
            assert sha256(path) in known.get(rel, set()), f"{rel}: not complete"
    for manifest in ("manifest.json",):
        if (team.out / manifest).exists():
            json.loads((team.out / manifest).read_text())  # complete, never torn


def leftovers(*roots: Path) -> list[Path]:
    return [
        p
        for root in roots
        for p in root.rglob("*")
        if p.name.startswith(LEFTOVER_MARKS) or p.name.endswith(".tmp")
    ]


def assert_job_done(team: Team) -> None:
    """After the plain re-run: the manifest describes every user and the disk matches it."""
    manifest = json.loads((team.out / "manifest.json").read_text())
    records = {u["name"]: u for u in manifest["users"]}
    assert set(records) == set(team.all_names)
    for name in team.all_names:
        record = records[name]
        assert record["status"] == "written", record
        on_disk = {
            p.relative_to(team.out).as_posix(): sha256(p) for p in user_files(team.out, name)
        }
        assert on_disk == {f["path"]: f["sha256"] for f in record["files"]}
    assert leftovers(team.out, team.ca_dir) == []
    per_name: dict[str, int] = {}
    for entry in ca.read_ledger(team.ca_dir):
        per_name[entry.name] = per_name.get(entry.name, 0) + 1
    assert all(count == 1 for count in per_name.values()), per_name  # never a second certificate
    assert set(team.ca_names) <= set(per_name)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> bool:
    """Poll until ``condition`` holds (True) or the process ended (False)."""
    while not condition():
        if process.poll() is not None:
            return condition()
        time.sleep(0.005)
    return True


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    process.communicate(timeout=120)
    wait_group_gone(process.pid)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def wait_group_gone(pgid: int) -> None:
    for _ in range(2000):  # workers of a SIGKILLed group die with it; this only reaps
        if not group_members(pgid):
            return
        time.sleep(0.01)
    raise AssertionError(f"processes of group {pgid} still running: {group_members(pgid)}")


# --- kills ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_after_some_users_then_plain_rerun_completes(team: Team, jobs: int) -> None:
    process = team.start(jobs=jobs)
    reached = wait_until(lambda: done_count(team.out) >= 2, process)
    kill_group(process)
    assert reached, "the batch did not write two users"
    assert_complete_or_absent(team)
    result = team.ok()
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    finished_before = {e["name"] for e in journal_events(team.out) if e.get("event") == "done"}
    assert finished_before >= set(team.names[:1])
    assert any(lines.get(name) == "unchanged" for name in team.names), result.stdout
    assert_job_done(team)


def test_sigkill_of_the_main_process_alone(team: Team) -> None:
    process = team.start(jobs=2)
    reached = wait_until(lambda: done_count(team.out) >= 1, process)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=120)
    wait_group_gone(process.pid)  # orphaned workers notice and end
    assert reached
    assert_complete_or_absent(team)
    team.ok()
    assert_job_done(team)


def test_sigkill_during_issuance_issues_no_second_certificate(ca_team: Team) -> None:
    team = ca_team
    before = len(ca.read_ledger(team.ca_dir))
    process = team.start(jobs=2)
    reached = wait_until(lambda: len(ca.read_ledger(team.ca_dir)) > before, process)
    kill_group(process)
    assert reached
    assert_complete_or_absent(team)
    team.ok()
    assert_job_done(team)


@pytest.mark.slow
def test_random_kills_then_plain_rerun(tmp_path: Path, gateway: SampleGateway) -> None:
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    team = make_team(tmp_path / "team", gateway, users=6, ca_users=3)
    for round_ in range(5):
        if round_ == 2:  # also kill runs that rewrite existing outputs
            text = team.users_yaml.read_text().replace("[tunnelblick, ios]", "[ios, openvpn]")
            team.users_yaml.write_text(text)
        process = team.start(jobs=rng.choice([1, 2]))
        time.sleep(rng.uniform(0.2, 1.6))  # a 6-user batch takes about that long here
        kill_group(process)
        print(f"seed {seed}, round {round_}")  # to reproduce a failure
        assert_complete_or_absent(team)
    team.ok()
    assert_job_done(team)
    assert team.ok().stdout.count(": unchanged") == len(team.all_names)


# --- deterministic states a kill can leave --------------------------------------------------------
def test_issued_but_not_written_reuses_the_recorded_certificate(ca_team: Team) -> None:
    """The state of a kill after the CA recorded the certificate, before the files."""
    team = ca_team
    name = team.ca_names[0]
    ca.open_ca(team.ca_dir, CA_PASS.encode()).issue(name, email=f"{name}@contoso.example")
    result = team.ok()
    assert f"{name}: written\n" in result.stdout  # no "(certificate issued)"
    assert_job_done(team)


def test_an_issue_killed_before_its_ledger_write_is_redone(ca_team: Team) -> None:
    """The CA wrote the certificate and key files, the ledger never recorded them."""
    team = ca_team
    name = team.ca_names[0]
    ledger_files = [team.ca_dir / "ledger.json", team.ca_dir / "ledger.journal"]
    saved = {path: path.read_bytes() for path in ledger_files if path.exists()}
    ca.open_ca(team.ca_dir, CA_PASS.encode()).issue(name, email=f"{name}@contoso.example")
    orphan = (team.ca_dir / "issued" / name / f"{name}.pem").read_bytes()
    for path in ledger_files:  # as if killed between the files and the ledger's append
        if path in saved:
            path.write_bytes(saved[path])
        else:
            path.unlink()
    (team.ca_dir / "issued" / name / f".{name}.pem.x1y2.tmp").write_bytes(b"half")
    result = team.ok()
    assert f"{name}: written (certificate issued)" in result.stdout
    assert (team.ca_dir / "issued" / name / f"{name}.pem").read_bytes() != orphan
    orphan_serial = f"{x509.load_pem_x509_certificate(orphan).serial_number:032X}"
    assert not (team.ca_dir / "certs" / f"{orphan_serial}.pem").exists()  # no orphan copy
    assert_job_done(team)


def test_a_foreign_file_in_the_ca_folder_is_still_refused(ca_team: Team) -> None:
    team = ca_team
    name = team.ca_names[0]
    folder = team.ca_dir / "issued" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.pem").write_text("someone else's file\n")
    result = team.run()
    assert result.returncode == 3
    assert "is not a file of" in result.stdout
    assert (folder / f"{name}.pem").read_text() == "someone else's file\n"


def test_recover_user_puts_a_parked_folder_back_and_drops_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = [PlannedFile("ios/a.ovpn", b"old"), PlannedFile("INSTALL.html", b"guide")]
    write_user(out, "a", files)
    user = out / "a"
    os.replace(user / "ios", user / ".old-ios-1a2b3c4d")  # killed between the two renames
    (user / ".staging-1a2b3c4d" / "ios").mkdir(parents=True)
    (user / ".staging-1a2b3c4d" / "ios" / "a.ovpn").write_bytes(b"ne")  # half written
    done = recover_user(out, "a")
    assert len(done) == 2
    assert (user / "ios" / "a.ovpn").read_bytes() == b"old"
    assert sorted(p.name for p in user.iterdir()) == ["INSTALL.html", "ios"]
    # a parked copy whose replacement arrived is simply removed
    shutil.copytree(user / "ios", user / ".old-ios-99887766")
    recover_user(out, "a")
    assert sorted(p.name for p in user.iterdir()) == ["INSTALL.html", "ios"]


def test_a_torn_journal_line_is_ignored_and_not_glued_to(team: Team) -> None:
    team.ok()
    journal = team.out / "journal.jsonl"
    with journal.open("ab") as handle:
        handle.write(b'{"v":1,"event":"done","name":"user00","rec')  # power loss mid-append
    next((team.out / "user01" / "ios").glob("*.ovpn")).unlink()
    result = team.ok()
    assert "user01: written" in result.stdout
    for line in journal.read_bytes().splitlines():
        json.loads(line)  # compacted: no torn line left
    assert_job_done(team)


# --- signals --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigint-main", "sigterm-main", "ctrl-c-group"],
)
def test_interrupt_stops_workers_records_and_exits_130(
    tmp_path: Path, gateway: SampleGateway, sig: int, group: bool
) -> None:
    # long enough that the signal comes while most users are still to do, however fast the
    # machine (12 users used to finish first, and the test skipped)
    team = make_team(tmp_path / "team", gateway, users=400, distinct=12)
    process = team.start(jobs=2)
    reached = wait_until(lambda: done_count(team.out) >= 1, process)
    assert reached
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(process.pid, sig)
    stdout, stderr = process.communicate(timeout=120)  # a bound, not a timing assertion
    if process.returncode == 0:
        pytest.skip("the batch finished before the signal arrived")
    assert process.returncode == 130, stderr.decode()
    assert "interrupted" in stderr.decode()
    assert b"Traceback" not in stderr
    wait_group_gone(process.pid)  # no worker left running
    assert leftovers(team.out) == []
    manifest = json.loads((team.out / "manifest.json").read_text())
    statuses = {u["name"]: u["status"] for u in manifest["users"]}
    done = {e["name"] for e in journal_events(team.out) if e.get("event") == "done"}
    assert done and all(statuses[name] == "written" for name in done)  # what finished is recorded
    assert "skipped: not run (interrupted)" in stdout.decode()
    team.ok()
    assert_job_done(team)


# --- nothing replaced behind the user's back ------------------------------------------------------
def test_files_torn_by_a_power_loss_before_the_final_sync_are_written_again(team: Team) -> None:
    """New users' files become durable at the end of the run (one syncfs), only their journal
    ``begin`` lines before their renames. What a power loss before that syncfs can leave on
    disk: folders in place with files torn (zeros, or cut short), a ``done`` line or not, no
    ``settled`` line. The plain re-run writes them again and keeps the intact ones."""
    team.ok()
    good = {p: p.read_bytes() for name in team.names for p in user_files(team.out, name)}
    lines = [json.loads(x) for x in (team.out / "journal.jsonl").read_bytes().splitlines()]
    assert [e["event"] for e in lines[-2:]] == ["settled", "manifest"]
    torn_done, torn_begun = team.names[1], team.names[2]
    crashed: list[dict[str, Any]] = []
    for event in lines[:-2]:  # as the crashed run left it: every line after the last settled
        begin = {"v": 1, "event": "begin", "name": event["name"], "fresh": True}
        crashed.append({**begin, "files": event["record"]["files"]})
        if event["name"] != torn_begun:  # its done line lost; the others' reached the disk
            crashed.append(event)
    (team.out / "journal.jsonl").write_bytes(
        b"".join(json.dumps(e).encode() + b"\n" for e in crashed)
    )
    first, second = user_files(team.out, torn_done)[:2]
    first.write_bytes(bytes(len(first.read_bytes())))  # same size, its blocks never written
    os.truncate(second, 0)
    os.truncate(user_files(team.out, torn_begun)[0], 0)
    result = team.ok()
    assert f"{torn_done}: written" in result.stdout and f"{torn_begun}: written" in result.stdout
    assert result.stdout.count(": unchanged") == len(team.names) - 2
    assert {p: p.read_bytes() for name in team.names for p in user_files(team.out, name)} == good
    settled = [json.loads(x) for x in (team.out / "journal.jsonl").read_bytes().splitlines()]
    assert [e["event"] for e in settled[-2:]] == ["settled", "manifest"]


def test_files_a_failed_user_did_not_write_are_never_replaced(team: Team, tmp_path: Path) -> None:
    """The data-safety bug: `generate` wrote bob's files; batch must not adopt them."""
    name = team.names[1]
    made = CliRunner().invoke(
        app,
        [
            "generate",
            str(team.folder / "VNet1GW.zip"),
            "--cert",
            str(team.folder / "certs" / f"{name}.pem"),
            "--key",
            str(team.folder / "certs" / f"{name}.key"),
            "--name",
            name,
            "--output",
            str(team.out),
            "--display-name",
            "made by generate",
        ],
    )
    assert made.exit_code == 0, made.stderr
    theirs = {p: p.read_bytes() for p in user_files(team.out, name)}
    for _ in range(2):
        result = team.run()
        assert result.returncode == 3
        assert f"{name}: failed: " in result.stdout and "already exists" in result.stdout
        assert {p: p.read_bytes() for p in user_files(team.out, name)} == theirs
        record = {
            u["name"]: u for u in json.loads((team.out / "manifest.json").read_text())["users"]
        }
        assert "files" not in record[name]
        assert not any(p.startswith(f"{name}/") for p in known_digests(team.out))
    team.ok("--force")


def test_dry_run_reports_the_failures_of_the_real_run(ca_team: Team) -> None:
    team = ca_team
    existing, revoked = team.names[0], team.ca_names[1]
    (team.out / existing / "ios").mkdir(parents=True)
    (team.out / existing / "ios" / f"{existing}.ovpn").write_text("not ours\n")
    authority = ca.open_ca(team.ca_dir, CA_PASS.encode())
    authority.issue(revoked, email=f"{revoked}@contoso.example")
    ca.revoke(team.ca_dir, revoked)
    dry = team.run("--dry-run", "--json")
    real = team.run("--json")
    assert dry.returncode == real.returncode == 3, dry.stderr + real.stderr
    dry_status = {u["name"]: u["status"] for u in json.loads(dry.stdout)["users"]}
    real_status = {u["name"]: u["status"] for u in json.loads(real.stdout)["users"]}
    assert {n for n, s in dry_status.items() if s == "failed"} == {existing, revoked}
    assert {n for n, s in real_status.items() if s == "failed"} == {existing, revoked}
    assert {n for n, s in dry_status.items() if s == "planned"} == {
        n for n, s in real_status.items() if s == "written"
    }
    assert (team.out / existing / "ios" / f"{existing}.ovpn").read_text() == "not ours\n"


def test_dry_run_refuses_an_e_mail_the_ca_would_refuse(ca_team: Team) -> None:
    team = ca_team
    text = team.users_yaml.read_text()
    team.users_yaml.write_text(
        text.replace(f"{team.ca_names[0]}@contoso.example", "josé.garcía@contoso.com")
    )
    dry, real = team.run("--dry-run"), team.run()
    assert dry.returncode == real.returncode == 2
    assert "josé.garcía@contoso.com" in dry.stderr and "josé.garcía@contoso.com" in real.stderr


# --- disk full and unwritable output (item 5) ----------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: real ENOSPC (once filled) and, remounted read-only, real EROFS. Replacing
    users needs room for one chunk's new files beside the old ones (up to 64 users: the team
    here, whole)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int = 4096) -> Path:
    """Take all but ``leave`` bytes of the disk."""
    info = os.statvfs(disk)
    filler = disk / "filler"
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(0, info.f_bavail * info.f_frsize - leave))
    return filler


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "filler"
    }


def one_error(stderr: str, *fragments: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in errors[0], stderr


def output_to(team: Team, out: Path) -> None:
    team.users_yaml.write_text(
        team.users_yaml.read_text().replace("output: profiles", f"output: {out}")
    )


def assert_unchanged_but_journal(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Every output and the manifest as before; the journal only grew by whole lines."""
    old_journal = before.pop("profiles/journal.jsonl", b"")
    new_journal = after.pop("profiles/journal.jsonl", b"")
    assert after == before
    assert new_journal.startswith(old_journal)
    for line in new_journal.splitlines():
        json.loads(line)


def generate(team: Team, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    name = team.names[0]
    certs = team.folder / "certs"
    command = [sys.executable, "-m", "toolkit", "generate", str(team.folder / "VNet1GW.zip")]
    command += ["--cert", str(certs / f"{name}.pem"), "--key", str(certs / f"{name}.key")]
    command += ["--name", name, "--output", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_disk_full_generate_keeps_the_earlier_version(team: Team, small_disk: Path) -> None:
    out = small_disk / "out"
    assert generate(team, out).returncode == 0
    before = tree(small_disk)
    filler = fill(small_disk)
    result = generate(team, out, "--force", "--display-name", "a new name")
    assert result.returncode == 4, result.stderr
    one_error(result.stderr, "No space left on device")
    assert tree(small_disk) == before  # nothing half written, the earlier version intact
    assert leftovers(small_disk) == []
    filler.unlink()
    assert generate(team, out, "--force", "--display-name", "a new name").returncode == 0


def test_disk_full_batch_stops_with_one_error_and_keeps_everything(
    team: Team, small_disk: Path
) -> None:
    out = small_disk / "profiles"
    team.users_yaml.write_text(
        team.users_yaml.read_text().replace("output: profiles", f"output: {out}")
    )
    first = team.run()
    assert first.returncode == 0, first.stderr
    before = tree(small_disk)
    text = team.users_yaml.read_text().replace("[tunnelblick, ios]", "[tunnelblick, ios, openvpn]")
    team.users_yaml.write_text(text)
    filler = fill(small_disk)
    result = team.run(jobs=2)
    assert result.returncode == 4, result.stdout + result.stderr
    one_error(result.stderr, "No space left on device")
    assert_unchanged_but_journal(before, tree(small_disk))  # nothing half written
    assert leftovers(small_disk) == []
    filler.unlink()
    team.ok()
    manifest = json.loads((out / "manifest.json").read_text())
    for record in manifest["users"]:
        assert record["status"] == "written" and "openvpn" in record["targets"]
        for entry in record["files"]:
            assert sha256(out / entry["path"]) == entry["sha256"]


def test_full_disk_during_the_manifest_write(team: Team, small_disk: Path) -> None:
    out = small_disk / "profiles"
    team.users_yaml.write_text(
        team.users_yaml.read_text().replace("output: profiles", f"output: {out}")
    )
    assert team.run().returncode == 0
    (out / "manifest.json").unlink()  # the next run must write it again
    before = tree(small_disk)
    filler = fill(small_disk, leave=0)
    result = team.run()
    assert result.returncode == 4, result.stdout + result.stderr
    one_error(result.stderr, "manifest.json")
    assert tree(small_disk) == before
    assert leftovers(small_disk) == []
    filler.unlink()
    team.ok()
    assert (out / "manifest.json").exists()


def test_read_only_output_is_one_error_exit_4(team: Team, small_disk: Path) -> None:
    out = small_disk / "out"
    assert generate(team, out).returncode == 0
    before = tree(small_disk)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = generate(team, out, "--force")
    assert result.returncode == 4, result.stderr
    one_error(result.stderr, "Read-only file system")
    team.users_yaml.write_text(
        team.users_yaml.read_text().replace("output: profiles", f"output: {out}")
    )
    batch = team.run()
    assert batch.returncode == 4, batch.stdout + batch.stderr
    one_error(batch.stderr, "Read-only file system")
    assert tree(small_disk) == before
