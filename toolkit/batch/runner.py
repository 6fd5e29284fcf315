"""`batch`: profiles for a whole team from one validated user list.

The main process validates everything (:func:`preflight`), then hands one small task per user
to worker processes (key generation and signing are CPU-bound) through a bounded window, and
writes the manifest at the end (:mod:`toolkit.batch.manifest`) from the journal the workers
append to (:mod:`toolkit.batch.journal`). One batch at a time writes to an output folder.

Interrupts: the CLI installs the signal handlers and passes ``should_stop``; workers ignore
SIGINT (Ctrl-C reaches the whole process group) so no user's write is cut by it, and the
main process stops them with SIGTERM, on which the user being written is rolled back.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.batch import journal, worker
from toolkit.batch.manifest import read_manifest, write_manifest
from toolkit.batch.userlist import UserList
from toolkit.batch.worker import BatchSettings, Status, UserOutcome, UserTask, process_user
from toolkit.credentials import load_roots
from toolkit.errors import ToolkitError, UserListError, WriteError
from toolkit.output import folder_lock, remove_file
from toolkit.package import check_output_location, load_package
from toolkit.passphrase import PassphraseSource

POLL = 0.2  # seconds between checks of should_stop while workers run
WORKER_GRACE = 5.0  # seconds a stopped worker gets to roll back before SIGKILL
PARENT_POLL = 0.5  # seconds between a worker's checks that its main process is alive


@dataclass
class BatchResult:
    outcomes: list[UserOutcome]
    manifest_written: bool
    dropped: list[str] = field(default_factory=list)  # in the old manifest, not in the list
    interrupted: bool = False  # stopped by should_stop (SIGINT/SIGTERM): the rest is skipped

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[UserOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def preflight(users: UserList, settings: BatchSettings) -> None:
    """Checks that need more than the YAML: package, roots, CA and its passphrase."""
    check_output_location(load_package(settings.package_path), settings.output)
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
        try:
            ca.open_ca(settings.ca.dir, source)
        except ToolkitError as exc:
            raise UserListError(f"{users.source}: ca: {exc.message}", hint=exc.hint) from exc


def _tasks(
    users: UserList, settings: BatchSettings, state: journal.JournalState
) -> Iterator[UserTask]:
    for user in users.users:
        yield UserTask(user, settings, state.records.get(user.name), state.owned(user.name))


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
    """Temporary files of an interrupted atomic write of the manifest or journal."""
    for name in ("manifest.json", "manifest.csv", journal.JOURNAL):
        for leftover in output.glob(f".{name}.*.tmp"):
            remove_file(leftover)


@contextlib.contextmanager
def _output_lock(output: Path, dry_run: bool) -> Iterator[None]:
    """One batch at a time per output folder."""
    if dry_run:
        yield
        return
    with folder_lock(output, busy="another ovpn-toolkit batch is writing to this folder"):
        yield


class _Pool(cf.ProcessPoolExecutor):
    """A process pool whose workers are born with SIGINT ignored.

    A spawned worker imports the toolkit before its initializer runs; a Ctrl-C to the process
    group in that moment would print a KeyboardInterrupt traceback from the worker. SIG_IGN,
    unlike a Python handler, survives exec: the main process ignores SIGINT for the instant of
    each spawn (a signal in those few milliseconds is not seen by the main process)."""

    def _spawn_process(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            super()._spawn_process()  # type: ignore[misc]
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            super()._spawn_process()  # type: ignore[misc]
        finally:
            signal.signal(signal.SIGINT, previous)


def _ignore_interrupts(main_pid: int) -> None:
    """Worker initializer: Ctrl-C reaches the whole process group; only the main process acts
    on it. SIGTERM (sent by the main process when stopping) unwinds the current user (the
    writer rolls back) and ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    # the main process's pid from the main process: it may be gone before this runs
    threading.Thread(target=_watch_parent, args=(main_pid,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    """A worker whose main process was killed (SIGKILL) stops like on SIGTERM, instead of
    waiting forever for work that will not come."""
    # SIGTERM is for the main thread only (it defers it while a user's files are swapped in)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    main = threading.main_thread().ident
    if main is not None:  # to the main thread: its blocking read is interrupted
        signal.pthread_kill(main, signal.SIGTERM)


class _WorkerStopped(SystemExit):
    pass


def _stop_worker(signum: int, frame: object) -> None:
    raise _WorkerStopped(128 + signum)


def _run_in_worker(task: UserTask) -> UserOutcome:
    try:
        return process_user(task)
    except _WorkerStopped:
        os._exit(128 + signal.SIGTERM)  # rolled back; nothing to report to a stopping pool


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Stop now: running workers get SIGTERM (each user's write is rolled back or complete)
    and are waited for; the pool then fails the queued users' futures (never run)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public API
    for process in workers:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            process.terminate()
    for process in workers:
        process.join(WORKER_GRACE)
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=True)


def run_batch(
    users: UserList,
    settings: BatchSettings,
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    on_outcome: Callable[[UserOutcome], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchResult:
    """Run every user. ``should_stop`` is polled (the CLI sets it on SIGINT/SIGTERM): the run
    then stops its workers, records what finished and returns with ``interrupted`` set."""
    worker.clear_caches()  # a package replaced since an earlier run in this process is re-read
    preflight(users, settings)
    with _output_lock(settings.output, settings.dry_run):
        if not settings.dry_run:
            _clean_temporary_files(settings.output)
        return _run_locked(users, settings, jobs, fail_fast, on_outcome, on_start, should_stop)


def _run_locked(
    users: UserList,
    settings: BatchSettings,
    jobs: int,
    fail_fast: bool,
    on_outcome: Callable[[UserOutcome], None] | None,
    on_start: Callable[[str], None] | None,
    should_stop: Callable[[], bool] | None,
) -> BatchResult:
    state = _state(settings)
    known_before = list(state.records)
    outcomes: dict[str, UserOutcome] = {}
    order = [u.name for u in users.users]
    stop = False
    interrupted = False
    fatal: UserOutcome | None = None

    def stopping() -> bool:
        nonlocal stop, interrupted
        if should_stop is not None and should_stop():
            stop = interrupted = True
        return stop

    def record(outcome: UserOutcome) -> None:
        nonlocal stop, fatal
        outcomes[outcome.name] = outcome
        if on_outcome:
            on_outcome(outcome)
        if outcome.fatal and fatal is None:
            fatal, stop = outcome, True
        if fail_fast and outcome.status == "failed":
            stop = True

    tasks = _tasks(users, settings, state)
    if jobs <= 1:
        for task in tasks:
            if stopping():
                break
            if on_start:  # in one process the user being worked on is known
                on_start(task.user.name)
            record(process_user(task))
    else:
        context = multiprocessing.get_context("spawn")
        pool = _Pool(
            max_workers=jobs,
            mp_context=context,
            initializer=_ignore_interrupts,
            initargs=(os.getpid(),),
        )
        pending: set[cf.Future[UserOutcome]] = set()
        exhausted = False
        try:
            window = jobs * 4  # bounded in-flight work: memory stays flat for long lists
            while not exhausted or pending:
                while not exhausted and not stopping() and len(pending) < window:
                    next_task = next(tasks, None)
                    if next_task is None:
                        exhausted = True
                    else:
                        pending.add(pool.submit(_run_in_worker, next_task))
                if stopping():
                    break
                if not pending:
                    break
                done, pending = cf.wait(pending, timeout=POLL, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    if not future.cancelled():
                        record(future.result())
        finally:
            if interrupted or not (stop or exhausted):  # a signal, or an error in this loop
                _stop_pool(pool)
            else:  # --fail-fast or a full disk: the users already running finish
                for future in pending:
                    future.cancel()
                pool.shutdown(wait=True)
        for future in pending:  # finished while the pool was being stopped
            if future.done() and not future.cancelled() and future.exception() is None:
                record(future.result())
    why = "--fail-fast" if fail_fast else "the output folder cannot be written"
    why = "interrupted" if interrupted else why
    final = _state(settings) if not settings.dry_run else state  # with the workers' appends
    for name in order:
        if name in outcomes:
            continue
        if final.records.get(name) is not None and final.records[name] != state.records.get(name):
            # written by a worker stopped before it could report (the journal has it)
            fields = worker._outcome_fields(final.records[name])
            outcomes[name] = UserOutcome(**{**fields, "status": "written"})
        else:
            outcomes[name] = UserOutcome(name, "skipped", reason=f"not run ({why})")
    ordered = [outcomes[name] for name in order]
    written = False
    if not settings.dry_run:
        try:
            if not interrupted and fatal is None:
                journal.compact(settings.output, final, order)
            written = write_manifest(settings.output, settings, ordered, final.records)
        except WriteError:
            if fatal is None:
                raise
    if fatal is not None:
        raise WriteError(fatal.reason or "the output folder cannot be written", hint=fatal.hint)
    dropped = [name for name in known_before if name not in outcomes]
    return BatchResult(ordered, written, dropped, interrupted=interrupted)


def default_jobs() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
