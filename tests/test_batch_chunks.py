"""The batch's scaling machinery: chunks with group commit, the main process deciding unchanged
users (and working), outcomes and journal kept on disk, files rewritten only when they differ.

Real files in tmp_path, a real package, real certificates (one shared key keeps it fast)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from toolkit import output
from toolkit.batch import journal, pool, runner, worker
from toolkit.batch.outcomes import OutcomeLog
from toolkit.batch.userlist import load_user_list
from toolkit.batch.worker import BatchSettings, UserOutcome
from toolkit.ca import keys as pki
from toolkit.errors import WriteError
from toolkit.jsontext import write_indented
from toolkit.output import PendingFile, PlannedFile, StagedWrite
from toolkit.sample import SampleGateway


# --- a team of N users sharing one key -----------------------------------------------------------
@pytest.fixture(scope="module")
def shared_key(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    return pki.issue_certificate(p2s_root, "shared")


def make_team(
    folder: Path,
    gateway: SampleGateway,
    root: pki.IssuedCertificate,
    shared: pki.IssuedCertificate,
    count: int,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "VNet1GW.zip").write_bytes(gateway.zip_bytes())
    (folder / "root.pem").write_bytes(root.cert_pem)
    certs = folder / "certs"
    certs.mkdir(exist_ok=True)
    lines = ["package: VNet1GW.zip", "roots: [root.pem]", "users:"]
    for index in range(count):
        name = f"user{index:03d}"
        cert = pki.issue_certificate(root, name, key=shared.private_key)
        (certs / f"{name}.pem").write_bytes(cert.cert_pem)
        (certs / f"{name}.key").write_bytes(shared.key_pem())
        lines += [f"  - name: {name}", f"    cert: certs/{name}.pem", f"    key: certs/{name}.key"]
    (folder / "users.yaml").write_text("\n".join(lines) + "\n")
    return folder / "users.yaml"


@pytest.fixture
def team12(
    tmp_path: Path,
    gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    shared_key: pki.IssuedCertificate,
) -> Path:
    return make_team(tmp_path / "team", gateway, p2s_root, shared_key, 12)


def run(users_yaml: Path, jobs: int | None = 1, **settings: Any) -> runner.BatchResult:
    users = load_user_list(users_yaml)
    return runner.run_batch(
        users,
        BatchSettings(
            package_path=users.package,
            output=users_yaml.parent / "out",
            roots=users.roots,
            **settings,
        ),
        jobs=jobs,
    )


class PoolCounter:
    """Counts the worker pools a run starts (the real pool still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started: list[int] = []
        real = pool._Pool

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.started.append(int(kwargs["max_workers"]))
            return real(*args, **kwargs)

        monkeypatch.setattr(pool, "_Pool", counting)


def private_tree(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


# --- the runner ----------------------------------------------------------------------------------
def test_unchanged_rerun_starts_no_worker_and_the_main_process_works_too(
    team12: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = PoolCounter(monkeypatch)
    first = run(team12, jobs=2)
    assert first.count("written") == 12
    assert pools.started == [1]  # jobs=2: the main process and one worker
    out = team12.parent / "out"
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]
    private_tree(out)
    again = run(team12, jobs=2)
    assert again.count("unchanged") == 12
    assert pools.started == [1]  # decided in the main process: no second pool
    assert [o.name for o in again.outcomes] == [f"user{i:03d}" for i in range(12)]


def test_a_small_batch_is_written_by_the_main_process_alone(
    team12: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = PoolCounter(monkeypatch)
    monkeypatch.setattr(runner, "default_jobs", lambda: 8)
    monkeypatch.setattr(runner, "start_method", lambda: "spawn")
    result = run(team12, jobs=None)  # 12 users: less work than starting one worker
    assert result.count("written") == 12 and pools.started == []
    monkeypatch.setattr(runner, "WORKER_COST", {"fork": 3, "spawn": 3})
    (team12.parent / "out").rename(team12.parent / "first")
    assert run(team12, jobs=None).count("written") == 12
    assert pools.started == [4]  # 12 units of work: four workers, not seven
    (team12.parent / "out").rename(team12.parent / "second")
    assert run(team12, jobs=3).count("written") == 12  # asked for: obeyed
    assert pools.started == [4, 2]


def test_a_few_changed_users_are_written_without_starting_workers(
    team12: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(team12, jobs=2)
    pools = PoolCounter(monkeypatch)
    (team12.parent / "out" / "user003" / "INSTALL.html").unlink()  # one user's file is gone
    result = run(team12, jobs=4)
    assert (result.count("written"), result.count("unchanged")) == (1, 11)
    assert pools.started == []
    assert (team12.parent / "out" / "user003" / "INSTALL.html").is_file()


def test_jobs_1_and_jobs_2_write_the_same_files(team12: Path, tmp_path: Path) -> None:
    run(team12, jobs=1)
    out = team12.parent / "out"
    one = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and "ios" in p.parts
    }
    out.rename(tmp_path / "one")
    run(team12, jobs=2)
    two = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and "ios" in p.parts
    }
    assert one == two and len(one) == 12


def test_the_journal_records_every_user_once_per_write_and_compacts(team12: Path) -> None:
    run(team12, jobs=2)
    out = team12.parent / "out"
    events = [json.loads(line) for line in (out / "journal.jsonl").read_bytes().splitlines()]
    assert events[-1]["event"] == "manifest"  # what the manifest was made from, last
    assert events[-2]["event"] == "settled"  # compacted after the final syncfs: all durable
    events = events[:-2]
    assert sorted(e["name"] for e in events) == [f"user{i:03d}" for i in range(12)]
    assert {e["event"] for e in events} == {"done"}  # compacted: the begins are gone
    state = journal.read_journal(out)
    assert state is not None
    record = state.record("user005")
    assert record is not None and record["status"] == "written"
    owned = state.owned("user005")
    assert owned["ios/user005-iphone.ovpn"] == [
        f["sha256"] for f in record["files"] if f["path"] == "user005/ios/user005-iphone.ovpn"
    ]
    state.close()


def test_a_failure_in_one_chunk_user_leaves_the_others_written(team12: Path) -> None:
    (team12.parent / "certs" / "user004.pem").write_text("not a certificate\n")
    result = run(team12, jobs=1)
    assert result.count("written") == 11
    (failed,) = result.failed
    assert failed.name == "user004" and failed.files == []
    assert not (team12.parent / "out" / "user004").exists()


def _chunks(remaining: int, issuing: bool) -> list[int]:
    sizes = []
    while remaining:
        size = runner.chunk_size(remaining, 2, issuing=issuing)
        sizes.append(size)
        remaining -= size
    return sizes


def test_chunk_size_shrinks_towards_the_end() -> None:
    sizes = _chunks(1000, issuing=False)
    assert sizes[0] == runner.MAX_CHUNK and sizes == sorted(sizes, reverse=True)
    assert min(sizes[:-1]) == runner.MIN_CHUNK  # no tail of one-user chunks (syncfs each)
    assert len(sizes) < 40
    assert runner.chunk_size(3, 2) == 3  # the rest in one chunk
    issued = _chunks(200, issuing=True)  # ~60 ms per user: a tail of small chunks
    assert issued[0] == min(runner.MAX_ISSUE_CHUNK, 200 // 8) and issued[-1] == 1
    assert issued == sorted(issued, reverse=True)


# --- the group writer ----------------------------------------------------------------------------
def planned(tag: str) -> list[PlannedFile]:
    return [
        PlannedFile("ios/a.ovpn", f"ios {tag}".encode()),
        PlannedFile("tunnelblick/a.tblk/Contents/Resources/config.ovpn", f"tb {tag}".encode()),
        PlannedFile("INSTALL.html", f"guide {tag}".encode()),
    ]


def test_staged_write_commits_new_and_existing_users_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    syncs: list[Path] = []
    real_syncfs = output._syncfs
    monkeypatch.setattr(
        output, "_syncfs", lambda anchor: syncs.append(anchor) or real_syncfs(anchor)
    )
    first = StagedWrite(out, group=True)
    first.stage("alice", planned("v1"))
    asked: list[bool] = []
    assert first.commit(before_swap=asked.append) is None
    # new users only: the caller makes its begin lines durable; files wait for the final syncfs
    assert asked == [output.has_syncfs()] and syncs == []
    owned = {f.path: [f.sha256] for f in planned("v1")}
    group = StagedWrite(out, group=True)
    group.stage("alice", planned("v2"), owned=owned)  # existing: swapped folder by folder
    group.stage("bob", planned("v1"))  # new: one rename
    assert group.fresh() == [False, True]
    lines: list[str] = []
    assert group.commit(before_swap=lambda durable: lines.append(f"begin {durable}")) is None
    # alice's v1 is removed after the swap: her v2 (and bob's) durable before, with the begins
    assert lines == ["begin False"] and group.committed == ["alice", "bob"]
    assert len(syncs) == 2 * output.has_syncfs()  # before the swap, and the renames after
    assert (out / "alice" / "ios" / "a.ovpn").read_bytes() == b"ios v2"
    assert (out / "bob" / "INSTALL.html").read_bytes() == b"guide v1"
    assert sorted(p.name for p in out.iterdir()) == ["alice", "bob"]  # no staging left
    assert sorted(p.name for p in (out / "alice").iterdir()) == [
        "INSTALL.html",
        "ios",
        "tunnelblick",
    ]
    private_tree(out)


def test_staged_write_stops_at_a_failed_swap_and_keeps_the_rest_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    group = StagedWrite(out, group=True)
    for name in ("alice", "bob", "carol"):
        group.stage(name, planned("v1"))
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        if str(dst).endswith("/bob"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    failure = group.commit()
    assert isinstance(failure, WriteError) and "bob" in failure.message
    assert group.committed == ["alice"]
    assert sorted(p.name for p in out.iterdir()) == ["alice"]  # bob, carol: nothing, no staging


# --- files on disk instead of memory -------------------------------------------------------------
def test_pending_file_writes_nothing_when_the_content_is_the_same(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    first = PendingFile(path)
    for piece in (b"abc", b"def"):
        first.write(piece)
    assert first.finish() is True
    before = path.stat()
    same = PendingFile(path)
    for piece in (b"ab", b"cd", b"ef"):
        same.write(piece)
    assert same.finish() is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    for new, expected in ((b"abc", b"abc"), (b"abcdefg", b"abcdefg"), (b"abX", b"abX")):
        pending = PendingFile(path)
        pending.write(new)
        assert pending.finish() is True
        assert path.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary left
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_outcome_log_keeps_order_counts_and_replacements() -> None:
    log = OutcomeLog(3)
    log.put(2, UserOutcome("carol", "failed", reason="bad key", hint="fix it"))
    log.put(0, UserOutcome("alice", "written", files=[{"path": "alice/x", "sha256": "00"}]))
    assert [log.has(i) for i in range(3)] == [True, False, True]
    log.put(1, UserOutcome("bob", "skipped"))
    log.put(1, UserOutcome("bob", "unchanged"))
    assert [o.name for o in log] == ["alice", "bob", "carol"]
    assert (log.counts["unchanged"], log.counts["skipped"], log.counts["failed"]) == (1, 0, 1)
    assert log[2].hint == "fix it" and log[0].files == [{"path": "alice/x", "sha256": "00"}]
    log.close()


def test_journal_state_reads_lines_by_offset_and_skips_torn_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    record = {"name": "alice", "status": "written", "files": [{"path": "alice/a", "sha256": "1"}]}
    journal.append(out, {"event": "begin", "name": "alice", "files": record["files"]})
    journal.append(out, {"event": "done", "name": "alice", "record": record})
    with (out / journal.JOURNAL).open("ab") as handle:
        handle.write(b'{"v":1,"event":"done","name":"bob","rec')  # torn by a crash
    journal.append(
        out, {"event": "begin", "name": "alice", "files": [{"path": "alice/a", "sha256": "2"}]}
    )
    state = journal.read_journal(out)
    assert state is not None
    assert state.record("alice") == record and state.record("bob") is None
    assert state.owned("alice") == {"a": ["1", "2"]}
    journal.compact(out, state, ["alice"])
    state.close()
    kept = [json.loads(x) for x in (out / journal.JOURNAL).read_bytes().splitlines()]
    assert [e["event"] for e in kept] == ["done", "begin", "settled"]


def test_only_settled_done_lines_give_stat_keys_a_rerun_trusts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    record = {"name": "alice", "status": "written", "files": [{"path": "alice/a", "sha256": "1"}]}
    done = {"event": "done", "name": "alice", "record": record, "stat": {"alice/a": [1, 2, 3, 4]}}
    journal.append(out, done)
    state = journal.read_journal(out)
    assert state is not None and not state.settled()
    event = state.last_done("alice")  # its bytes may not be on disk yet: hashed, not trusted
    assert event is not None and "stat" not in event and event["record"] == record
    journal.settle(out)
    state = journal.read_journal(out)
    assert state is not None and state.settled()
    assert (state.last_done("alice") or {}).get("stat") == {"alice/a": [1, 2, 3, 4]}
    journal.append(out, done)  # a later run's line, after the settled one
    state = journal.read_journal(out)
    assert state is not None and not state.settled()
    assert "stat" not in (state.last_done("alice") or {"stat": 0})


def test_a_fresh_begin_without_done_owns_whatever_its_folder_holds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "bob" / "ios").mkdir(parents=True)
    (out / "bob" / "ios" / "bob.ovpn").write_bytes(b"\0" * 100)  # torn by a power loss
    (out / "bob" / "link").symlink_to("/etc/passwd")
    files = [{"path": "bob/ios/bob.ovpn", "sha256": "planned"}]
    journal.append(out, {"event": "begin", "name": "bob", "files": files, "fresh": True})
    state = journal.read_journal(out)
    assert state is not None
    torn = hashlib.sha256(b"\0" * 100).hexdigest()
    assert state.owned("bob") == {"ios/bob.ovpn": sorted(["planned", torn])}  # no symlink
    record = {"name": "bob", "status": "written", "files": files}
    journal.append(out, {"event": "done", "name": "bob", "record": record})
    state = journal.read_journal(out)  # a done, durable before the files were: still ours
    assert state is not None
    assert state.owned("bob") == {"ios/bob.ovpn": sorted(["planned", torn])}
    journal.settle(out)
    state = journal.read_journal(out)
    assert state is not None
    assert state.owned("bob") == {"ios/bob.ovpn": ["planned"]}  # settled: only what it recorded


def test_indented_json_streams_an_iterator_as_the_list() -> None:
    document = {"a": [1, {"b": []}], "users": [{"name": "x", "files": []}, {"name": "y"}]}
    pieces: list[str] = []
    write_indented({**document, "users": iter(document["users"])}, pieces.append)
    assert "".join(pieces) == json.dumps(document, indent=2)
    pieces.clear()
    write_indented({"users": iter([])}, pieces.append)
    assert "".join(pieces) == json.dumps({"users": []}, indent=2)
    pieces.clear()
    write_indented({"users": iter([{"name": "x" * 70_000}] * 3)}, pieces.append)
    assert len(pieces) > 1  # handed out in pieces, not as one string
    assert "".join(pieces) == json.dumps({"users": [{"name": "x" * 70_000}] * 3}, indent=2)


def test_unchanged_outcome_needs_the_same_inputs_and_files(team12: Path) -> None:
    run(team12)
    users = load_user_list(team12)
    out = team12.parent / "out"
    settings = BatchSettings(package_path=users.package, output=out, roots=users.roots)
    state = journal.read_journal(out)
    assert state is not None
    user = users.users[0]
    previous = state.record(user.name)
    worker.clear_caches()
    carried = worker.unchanged_outcome(user, settings, previous)
    assert carried is not None and carried.status == "unchanged"
    assert worker.unchanged_outcome(user, settings, None) is None
    forced = BatchSettings(package_path=users.package, output=out, roots=users.roots, force=True)
    assert worker.unchanged_outcome(user, forced, previous) is None
    (out / user.name / "ios" / f"{user.name}-iphone.ovpn").write_text("edited\n")
    assert worker.unchanged_outcome(user, settings, previous) is None
    state.close()


def test_a_chunk_issues_its_users_certificates_as_one_group(
    tmp_path: Path, gateway: SampleGateway
) -> None:
    from toolkit import ca
    from toolkit.batch.userlist import CASettings, UserEntry

    ca_dir = tmp_path / "pki"
    ca.init_ca(ca_dir, "Chunk Test Root", passphrase=b"chunk pass")
    (tmp_path / "VNet1GW.zip").write_bytes(gateway.zip_bytes())
    settings = BatchSettings(
        package_path=tmp_path / "VNet1GW.zip",
        output=tmp_path / "out",
        ca=CASettings(ca_dir, passphrase_env="CHUNK_CA"),
        environ={"CHUNK_CA": "chunk pass"},
    )
    users = [UserEntry(name, line=1, email=f"{name}@contoso.example") for name in ("ann", "ben")]
    calls: list[int] = []
    real = ca.CertificateAuthority.issue_many

    def counting(self: Any, requests: Any, **kwargs: Any) -> Any:
        calls.append(len(requests))
        return real(self, requests, **kwargs)

    worker.clear_caches()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ca.CertificateAuthority, "issue_many", counting)
        chunk = worker.ChunkTask(settings, tuple((u, None, {}) for u in users))
        outcomes = worker.process_chunk(chunk)
    assert [(o.name, o.status, o.issued) for o in outcomes] == [
        ("ann", "written", "issued"),
        ("ben", "written", "issued"),
    ]
    assert calls == [2]  # one group, one CA commit
    entries = ca.read_ledger(ca_dir)
    assert sorted(e.name for e in entries) == ["ann", "ben"]
    assert len({e.serial for e in entries}) == 2
    # the next chunk finds them in the ledger: nothing is issued twice
    again = worker.process_chunk(worker.ChunkTask(settings, tuple((u, None, {}) for u in users)))
    assert [o.issued for o in again] == [None, None]
    assert len(ca.read_ledger(ca_dir)) == 2


def test_an_unchanged_rerun_keeps_the_manifest_and_mends_an_edited_one(team12: Path) -> None:
    run(team12)
    out = team12.parent / "out"
    manifest = out / "manifest.json"
    before = manifest.stat()
    again = run(team12)
    assert again.count("unchanged") == 12 and again.manifest_written is False
    assert (manifest.stat().st_ino, manifest.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
    )
    good = manifest.read_bytes()
    manifest.write_bytes(good.replace(b'"user003"', b'"someone"'))  # edited by hand
    assert run(team12).manifest_written is True
    assert manifest.read_bytes() == good
    (out / "manifest.csv").unlink()
    assert run(team12).manifest_written is True and (out / "manifest.csv").is_file()


# --- how workers start ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_forked_and_spawned_workers_write_the_same_batch(
    team12: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """Forked (Linux, no other thread) and spawned workers (elsewhere) both write the batch;
    a forked one uses the package and templates the main process loaded."""
    monkeypatch.setattr(pool, "start_method", lambda: method)
    pools = PoolCounter(monkeypatch)
    result = run(team12, jobs=2)
    assert result.count("written") == 12 and pools.started == [1]
    out = team12.parent / "out"
    private_tree(out)
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]
    assert run(team12, jobs=2).count("unchanged") == 12


def test_workers_fork_from_a_frozen_heap_and_the_main_process_unfreezes_it(
    team12: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The objects forked workers inherit are frozen out of the cyclic collector (a scan would
    copy every inherited page); frozen for the pool's life only, else they could never be
    freed."""
    import gc

    frozen_at_submit: list[int] = []
    real_submit = pool._Pool.submit

    def submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        frozen_at_submit.append(gc.get_freeze_count())
        return real_submit(self, *args, **kwargs)

    monkeypatch.setattr(pool._Pool, "submit", submit)
    before = gc.get_freeze_count()
    assert run(team12, jobs=2).count("written") == 12
    assert frozen_at_submit and min(frozen_at_submit) > before
    assert gc.get_freeze_count() == before


def _start_method_in_a_fresh_process(code: str) -> str:
    import subprocess
    import sys

    script = f"import threading, time\n{code}\nfrom toolkit.batch.runner import start_method\n"
    script += "print(start_method())\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is chosen on Linux only")
def test_workers_are_forked_unless_another_thread_runs() -> None:
    assert _start_method_in_a_fresh_process("") == "fork"
    thread = "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()"
    assert _start_method_in_a_fresh_process(thread) == "spawn"


def test_warm_up_loads_what_forked_workers_inherit(team12: Path) -> None:
    """Before forking, the main process prepares the package's profiles and compiles the
    templates; an unreadable package is left for the users' planning to report."""
    from toolkit import plan, templating

    users = load_user_list(team12)
    settings = BatchSettings(package_path=users.package, output=team12.parent / "out")
    worker.clear_caches()
    templating._template.cache_clear()
    worker.warm_up(settings, ["tunnelblick", "ios"])
    facts = plan._facts(worker._package(users.package))
    assert set(facts.targets) == {"tunnelblick", "ios"} and all(facts.targets.values())
    compiled = templating._template.cache_info().currsize
    assert compiled == 2  # the guide and Info.plist
    broken = BatchSettings(package_path=team12.parent / "missing.zip", output=team12.parent)
    worker.warm_up(broken, ["ios"])  # no exception: the users' planning reports it
