"""`batch`: profiles for a whole team from one validated user list.

The main process validates everything (:func:`preflight`), then hands one small task per user
to worker processes (key generation and signing are CPU-bound) through a bounded window, and
writes the manifest at the end (:mod:`toolkit.batch.manifest`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from toolkit.batch import worker
from toolkit.batch.manifest import read_manifest, write_manifest
from toolkit.batch.userlist import UserList
from toolkit.batch.worker import BatchSettings, Status, UserOutcome, UserTask, process_user
from toolkit.credentials import load_roots
from toolkit.errors import OutputError, ToolkitError, UserListError
from toolkit.output import can_sync_filesystem, ensure_private_dir, sync_filesystem
from toolkit.package import check_output_location, load_package
from toolkit.passphrase import PassphraseSource

SYNC_GROUP = 64  # written users made durable by one syncfs(2)


@dataclass
class BatchResult:
    outcomes: list[UserOutcome]
    manifest_written: bool
    dropped: list[str] = field(default_factory=list)  # in the old manifest, not in the list

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
    users: UserList, settings: BatchSettings, previous: dict[str, dict[str, Any]]
) -> Iterator[UserTask]:
    for user in users.users:
        yield UserTask(user, settings, previous.get(user.name))


def run_batch(
    users: UserList,
    settings: BatchSettings,
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    on_outcome: Callable[[UserOutcome], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> BatchResult:
    worker.clear_caches()  # a package replaced since an earlier run in this process is re-read
    preflight(users, settings)
    if not settings.dry_run:
        ensure_private_dir(settings.output)
    previous = read_manifest(settings.output)
    ca_current = None
    if previous and settings.ca is not None:
        from toolkit import ca

        ca_current = ca.current_by_name(ca.read_ledger(settings.ca.dir))
    outcomes: dict[str, UserOutcome] = {}
    order = [u.name for u in users.users]
    stop = False
    # durability by groups: workers write without fsync; one syncfs(2) per group of written
    # users, and only then are they reported (and recorded) as written
    group_sync = not settings.dry_run and can_sync_filesystem()
    if group_sync:
        settings = dataclasses.replace(settings, group_sync=True)
    waiting: list[UserOutcome] = []

    def report(outcome: UserOutcome) -> None:
        nonlocal stop
        outcomes[outcome.name] = outcome
        if on_outcome:
            on_outcome(outcome)
        if fail_fast and outcome.status == "failed":
            stop = True

    def make_durable() -> None:
        if not waiting:
            return
        group = list(waiting)
        waiting.clear()
        try:
            sync_filesystem(settings.output)
        except OutputError as exc:
            for outcome in group:
                outcome.status, outcome.reason, outcome.hint = "failed", exc.message, exc.hint
        for outcome in group:
            report(outcome)

    def record(outcome: UserOutcome) -> None:
        if group_sync and outcome.status == "written":
            waiting.append(outcome)
            if len(waiting) >= SYNC_GROUP:
                make_durable()
        else:
            report(outcome)

    def to_run() -> Iterator[UserTask]:
        """The tasks a worker must do; unchanged users are decided here, without one."""
        for task in _tasks(users, settings, previous):
            if stop:
                return
            carried = worker.carry_unchanged(task, ca_current)
            if carried is None:
                yield task
            else:
                record(carried)

    tasks = to_run()
    if jobs <= 1:
        for task in tasks:
            if stop:
                break
            if on_start:  # in one process the user being worked on is known
                on_start(task.user.name)
            record(process_user(task))
    else:
        context = multiprocessing.get_context("spawn")
        first = next(tasks, None)  # no pool at all when every user is unchanged
        with contextlib.ExitStack() as stack:
            pool = None
            if first is not None:
                pool = stack.enter_context(
                    cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context)
                )
                tasks = itertools.chain([first], tasks)
            window = jobs * 4  # bounded in-flight work: memory stays flat for long lists
            pending: set[cf.Future[UserOutcome]] = set()
            exhausted = pool is None
            while not exhausted or pending:
                while pool is not None and not exhausted and not stop and len(pending) < window:
                    next_task = next(tasks, None)
                    if next_task is None:
                        exhausted = True
                    else:
                        pending.add(pool.submit(process_user, next_task))
                if stop:
                    exhausted = True
                    for future in pending:
                        future.cancel()
                if not pending:
                    break
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    if not future.cancelled():
                        record(future.result())
    make_durable()
    for name in order:
        if name not in outcomes:
            outcomes[name] = UserOutcome(name, "skipped", reason="not run (--fail-fast)")
    ordered = [outcomes[name] for name in order]
    written = False
    if not settings.dry_run:
        written = write_manifest(settings.output, settings, ordered, previous)
    dropped = [name for name in previous if name not in outcomes]
    return BatchResult(ordered, written, dropped)


def default_jobs() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
