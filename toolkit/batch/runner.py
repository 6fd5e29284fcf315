"""`batch`: profiles for a whole team from one validated user list.

The main process validates everything (:func:`preflight`), decides which users are unchanged
(no worker is started for them), then writes the rest in chunks, itself and in as many worker
processes as the work is worth (:mod:`toolkit.batch.pool`), and writes the manifest at the end
(:mod:`toolkit.batch.manifest`) from the journal every process appends to
(:mod:`toolkit.batch.journal`). One batch at a time writes to an output folder.

Interrupts: the CLI installs the signal handlers and passes ``should_stop``; workers ignore
SIGINT (Ctrl-C reaches the whole process group) so no user's write is cut by it, and the
main process stops them with SIGTERM, on which the users being staged are discarded (a chunk
being swapped in finishes first).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.batch import journal, worker
from toolkit.batch.manifest import (
    manifest_event,
    manifest_is_current,
    manifest_record,
    manifest_source,
    read_manifest,
    write_manifest,
)
from toolkit.batch.outcomes import OutcomeLog
from toolkit.batch.userlist import UserList
from toolkit.batch.worker import (
    BatchSettings,
    ChunkTask,
    Status,
    UserOutcome,
    outcome_fields,
    process_chunk,
)
from toolkit.credentials import load_roots
from toolkit.errors import ToolkitError, UserListError, WriteError
from toolkit.output import (
    STAGING_PREFIX,
    folder_lock,
    recover_user,
    remove_file,
    remove_tree,
    sync_all,
)
from toolkit.package import check_output_location
from toolkit.passphrase import PassphraseSource


@dataclass
class BatchResult:
    outcomes: OutcomeLog  # one per user, in the list's order (read back from disk one by one)
    manifest_written: bool
    dropped: list[str] = field(default_factory=list)  # in the old manifest, not in the list
    interrupted: bool = False  # stopped by should_stop (SIGINT/SIGTERM): the rest is skipped

    def count(self, status: Status) -> int:
        return self.outcomes.counts[status]

    @property
    def failed(self) -> list[UserOutcome]:
        return [
            self.outcomes[i]
            for i in range(len(self.outcomes))
            if self.outcomes.status(i) == "failed"
        ]


def preflight(users: UserList, settings: BatchSettings) -> None:
    """Checks that need more than the YAML: package, roots, CA and its passphrase."""
    check_output_location(worker._package(settings.package_path), settings.output)
    load_roots(list(settings.roots))
    if settings.ca is None or settings.dry_run:
        return
    from toolkit import ca

    current = ca.current_by_name(ca.read_ledger(settings.ca.dir))  # one read, not one per user
    needs_key = any(
        user.issued_from_ca
        and worker._ca_action(current.get(user.name.casefold()), settings.renew_within) is not None
        for user in users.users
    )
    if needs_key:
        source = PassphraseSource(
            settings.ca.passphrase_env, settings.ca.passphrase_file, environ=settings.environ
        )
        try:  # kept: the main process issues too, and the CA key is slow to decrypt
            worker._AUTHORITIES[settings.ca.dir] = ca.open_ca(settings.ca.dir, source)
        except ToolkitError as exc:
            raise UserListError(f"{users.source}: ca: {exc.message}", hint=exc.hint) from exc


def _state(settings: BatchSettings) -> journal.JournalState:
    """The journal's state; for a folder of an older version, what its manifest says was
    written (only users it records as written: a failed user's files were never its own)."""
    state = journal.read_journal(settings.output)
    if state is not None:
        return state
    state = journal.JournalState()
    for name, record in read_manifest(settings.output).items():
        if record.get("status") == "written":
            state.apply({"event": "done", "name": name, "record": record})
    return state


def _clean_temporary_files(output: Path) -> None:
    """Temporary files of an interrupted atomic write of the manifest or journal, and the
    staging folders of new users an interrupted run did not swap in (we hold the lock)."""
    for name in ("manifest.json", "manifest.csv", journal.JOURNAL):
        for leftover in output.glob(f".{name}.*.tmp"):
            remove_file(leftover)
    for leftover in output.glob(f"{STAGING_PREFIX}*"):
        remove_tree(leftover)


@contextlib.contextmanager
def _output_lock(output: Path, dry_run: bool) -> Iterator[None]:
    """One batch at a time per output folder."""
    if dry_run:
        yield
        return
    with folder_lock(output, busy="another ovpn-toolkit batch is writing to this folder"):
        yield


def run_batch(
    users: UserList,
    settings: BatchSettings,
    *,
    jobs: int | None = None,
    fail_fast: bool = False,
    on_outcome: Callable[[UserOutcome], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchResult:
    """Run every user. ``should_stop`` is polled (the CLI sets it on SIGINT/SIGTERM): the run
    then stops its workers, records what finished and returns with ``interrupted`` set.

    ``jobs`` processes plan and write: the main process and ``jobs - 1`` workers; None: as
    many as the work is worth (see ``WORKER_COST``), up to the number of CPUs. Users whose
    inputs and files are unchanged are decided here first, so an unchanged re-run starts none."""
    worker.clear_caches()  # a package replaced since an earlier run in this process is re-read
    preflight(users, settings)
    with _output_lock(settings.output, settings.dry_run):
        if not settings.dry_run:
            _clean_temporary_files(settings.output)
        return _Run(users, settings, jobs, fail_fast, on_outcome, on_start, should_stop).run()


# Work is counted in units of one user assembled from existing credentials (a few ms); a
# certificate the CA must issue first (an RSA key) counts ISSUE_COST. A worker process costs
# about WORKER_COST units to start: forked, a copy of this process (a few ms); spawned, an
# interpreter importing the toolkit (a few hundred ms). One is started for each WORKER_COST
# units of work, up to jobs - 1; below that the main process works alone. An explicit
# --jobs N is obeyed (N - 1 workers whenever there are that many users to write).
ISSUE_COST = 25
WORKER_COST = {"fork": 8, "spawn": 64}
# Users per chunk: one group commit per chunk (before its renames, one fsync of the journal for
# new users, one syncfs, ~10-30 ms, when users replace earlier versions). Users
# assembled from existing credentials take a few ms each: chunks of 8 to 64. Users whose
# certificates the CA issues take ~60 ms each (an RSA key): chunks of 1 to 32.
MAX_CHUNK = 64
MIN_CHUNK = 8
MAX_ISSUE_CHUNK = 32


def chunk_size(remaining: int, processes: int, *, issuing: bool = False) -> int:
    """Guided self-scheduling: big chunks while much is left (fewer group commits), smaller
    towards the end (no process idles long waiting for the last big one); never below
    MIN_CHUNK users to assemble (a tail of one-user chunks is one group commit per user)."""
    if issuing:
        return max(1, min(MAX_ISSUE_CHUNK, remaining // (processes * 4)))
    return max(min(MIN_CHUNK, remaining), min(MAX_CHUNK, remaining // (processes * 3)))


class _Run:
    def __init__(
        self,
        users: UserList,
        settings: BatchSettings,
        jobs: int | None,
        fail_fast: bool,
        on_outcome: Callable[[UserOutcome], None] | None,
        on_start: Callable[[str], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.users = users.users
        self.settings = settings
        self.jobs = jobs or default_jobs()
        self.automatic = jobs is None  # else exactly the processes asked for
        self.fail_fast = fail_fast
        self.on_outcome = on_outcome
        self.on_start = on_start
        self.should_stop = should_stop
        self.log = OutcomeLog(len(self.users))
        self.stop = False
        self.interrupted = False
        self.fatal: UserOutcome | None = None
        self.issuing = False  # most pending users need a certificate issued (set by run)

    def stopping(self) -> bool:
        if self.should_stop is not None and self.should_stop():
            self.stop = self.interrupted = True
        return self.stop

    def record(self, index: int, outcome: UserOutcome) -> None:
        self.log.put(index, outcome)
        if self.on_outcome:
            self.on_outcome(outcome)
        if outcome.fatal and self.fatal is None:
            self.fatal, self.stop = outcome, True
        if self.fail_fast and outcome.status == "failed":
            self.stop = True

    def _ledger(self) -> dict[str, Any] | None:
        if self.settings.ca is None:
            return None
        from toolkit import ca

        try:
            return dict(ca.current_by_name(ca.read_ledger(self.settings.ca.dir)))
        except ToolkitError:
            return None  # the workers report it

    def _pending(self, state: journal.JournalState) -> tuple[list[int], int]:
        """Users that need work and what that work costs (units, see ``WORKER_COST``); the
        unchanged ones are recorded on the way."""
        ledger = self._ledger() if any(u.issued_from_ca for u in self.users) else None
        pending: list[int] = []
        cost = 0
        for index, user in enumerate(self.users):
            if self.stopping():
                break
            done = state.last_done(user.name)
            previous = done.get("record") if done is not None else None
            if previous is not None and not self.settings.dry_run:
                recover_user(self.settings.output, user.name)  # an interrupted run's leftovers
            carried = worker.unchanged_outcome(
                user, self.settings, previous if isinstance(previous, dict) else None, ledger, done
            )
            if carried is not None:
                self.record(index, carried)
                continue
            pending.append(index)
            issues = user.issued_from_ca and (
                ledger is None
                or worker._ca_action(ledger.get(user.name.casefold()), self.settings.renew_within)
                is not None
            )
            cost += ISSUE_COST if issues else 1
        return pending, cost

    def chunk(self, state: journal.JournalState, indices: list[int]) -> ChunkTask:
        items = []
        for index in indices:
            user = self.users[index]
            items.append((user, state.record(user.name), state.owned(user.name)))
        return ChunkTask(self.settings, tuple(items))

    def _inline(self, state: journal.JournalState, pending: list[int]) -> None:
        """This process alone, chunk by chunk (each one group commit)."""
        position = 0
        while position < len(pending) and not self.stopping():
            size = chunk_size(len(pending) - position, 1, issuing=self.issuing)
            indices = pending[position : position + size]
            position += len(indices)
            outcomes = process_chunk(
                self.chunk(state, indices), stop=self.stopping, on_start=self.on_start
            )
            for index, outcome in zip(indices, outcomes, strict=False):
                self.record(index, outcome)  # fewer when stopped: the rest not run

    def run(self) -> BatchResult:
        settings = self.settings
        state = _state(settings)
        known_before = state.names()
        pending, cost = self._pending(state)
        self.issuing = cost >= 2 * len(pending) > 0  # mostly certificates to issue
        wanted = cost // WORKER_COST[start_method()] if self.automatic else len(pending) - 1
        workers = min(self.jobs - 1, wanted)
        if pending and not self.stop:
            if workers < 1:
                self._inline(state, pending)
            else:
                self._parallel(state, pending, workers)
        worked = bool(pending)
        # this run's files (and an interrupted run's), durable before anyone is reported:
        # written back from now on, while the journal is read again and the manifest made
        must_sync = not settings.dry_run and (worked or not state.settled())
        syncer = _Syncer(settings.output) if must_sync else None
        try:
            final, written, order = self._finish(state, worked, syncer)
        finally:
            if syncer is not None:
                syncer.wait()  # never left running (an error above is the one raised)
        final.close()
        state.close()
        if self.fatal is not None:
            raise WriteError(
                self.fatal.reason or "the output folder cannot be written", hint=self.fatal.hint
            )
        names = set(order)
        dropped = [name for name in known_before if name not in names]
        return BatchResult(self.log, written, dropped, interrupted=self.interrupted)

    def _finish(
        self, state: journal.JournalState, worked: bool, syncer: _Syncer | None
    ) -> tuple[journal.JournalState, bool, list[str]]:
        """Outcomes for the users not run, the manifest, the journal compacted: the state
        after this run, whether the manifest was written, the users' names in list order."""
        settings = self.settings
        why = "--fail-fast" if self.fail_fast else "the output folder cannot be written"
        why = "interrupted" if self.interrupted else why
        final = state
        if worked and not settings.dry_run:  # with the appends of this run
            state.close()
            final = _state(settings)
        for index, user in enumerate(self.users):
            if self.log.has(index):
                continue
            record = final.record(user.name)
            if record is not None and record != state.record(user.name):
                # written by a worker stopped before it could report (the journal has it)
                self.log.put(index, UserOutcome(**{**outcome_fields(record), "status": "written"}))
            else:
                self.log.put(index, UserOutcome(user.name, "skipped", reason=f"not run ({why})"))
        written = False
        order = [u.name for u in self.users]
        if settings.dry_run:
            return final, written, order
        try:
            complete = not self.interrupted and self.fatal is None
            # every user unchanged and the manifest made from these very lines: as it is
            unchanged = self.log.counts["unchanged"] == len(self.users)
            source = manifest_source(settings, final.source_digest(order))
            remade = not (complete and unchanged) or not manifest_is_current(
                settings.output, source, final.manifest_event()
            )
            if remade:
                written = write_manifest(
                    settings.output,
                    settings,
                    (manifest_record(o, final.record(o.name)) for o in self.log),
                )
            if syncer is not None:
                syncer.join()
            if complete:  # everything in it is durable now: compacted, settled
                journal.compact(settings.output, final, order)
            elif syncer is not None:
                journal.settle(settings.output)
            # made from the journal alone (no failed, planned or skipped user): recorded
            done = self.log.counts["written"] + self.log.counts["unchanged"]
            if remade and complete and done == len(self.users):
                journal.append(
                    settings.output, manifest_event(settings.output, source), durable=False
                )
        except WriteError:
            if self.fatal is None:
                raise
        return final, written, order

    def _parallel(self, state: journal.JournalState, pending: list[int], workers: int) -> None:
        """``workers`` worker processes and this one take chunks of ``pending`` in turn."""
        from toolkit.batch.pool import run_parallel  # local: an unchanged run needs no pool

        run_parallel(self, state, pending, workers)


class _Syncer:
    """:func:`~toolkit.output.sync_all` of ``output``'s file system, in a thread started at
    once: it waits on the disk while this process works on."""

    def __init__(self, output: Path) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(output,), name="ovpn-toolkit-sync")
        self._thread.start()

    def _run(self, output: Path) -> None:
        try:
            sync_all(output)
        except BaseException as exc:  # raised by join, in the main thread
            self._error = exc

    def join(self) -> None:
        """Wait until every file written so far is durable; its error raised (once)."""
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        self._thread.join()


def start_method() -> str:
    """How worker processes start: ``fork`` on Linux while this process runs no other thread
    (a thread holding a lock at the fork would leave it locked forever in the child), else
    ``spawn`` (macOS, where fork is unsafe for the system's frameworks; or threads running)."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def default_jobs() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
