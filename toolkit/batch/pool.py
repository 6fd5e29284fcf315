"""The worker processes of a batch: started with SIGINT ignored, stopped with SIGTERM.

On Linux a worker is forked from the main process (when it runs no other thread): it starts at
once, with the toolkit imported and the package, templates and opened CA it has already loaded.
Elsewhere (macOS, where fork is unsafe for system frameworks, and Windows) or when the main
process runs threads, a worker is spawned: a fresh interpreter that imports the toolkit.

Imported only when a batch has enough users to write to start workers (an unchanged re-run
imports neither this nor :mod:`multiprocessing`). The main process takes chunks too; chunk sizes
shrink towards the end of the list (:func:`toolkit.batch.runner.chunk_size`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import multiprocessing
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from toolkit.batch import journal
from toolkit.batch.runner import chunk_size, start_method
from toolkit.batch.worker import ChunkTask, UserOutcome, process_chunk, warm_up

if TYPE_CHECKING:
    from toolkit.batch.runner import _Run

POLL = 0.2  # seconds between checks of should_stop while workers run
WORKER_GRACE = 5.0  # seconds a stopped worker gets to roll back before SIGKILL
PARENT_POLL = 0.5  # seconds between a worker's checks that its main process is alive


class _Pool(cf.ProcessPoolExecutor):
    """A process pool whose workers are born with SIGINT ignored and SIGTERM held.

    A worker runs the main process's handlers (forked) or none (spawned) until its initializer
    installs its own; a Ctrl-C to the process group in that moment would print a
    KeyboardInterrupt traceback from the worker. SIG_IGN, unlike a Python handler, survives
    exec: the main process ignores SIGINT for the instant of each start (a signal in those few
    milliseconds is not seen by the main process). SIGTERM is blocked for that instant (the
    signal mask survives fork and exec): one sent to the worker waits for its initializer, one
    sent to the main process is handled right after."""

    def _spawn_process(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            super()._spawn_process()  # type: ignore[misc]
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            super()._spawn_process()  # type: ignore[misc]
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            signal.signal(signal.SIGINT, previous)


def _ignore_interrupts(main_pid: int) -> None:
    """Worker initializer: Ctrl-C reaches the whole process group; only the main process acts
    on it. SIGTERM (sent by the main process when stopping) unwinds the current user (the
    writer rolls back) and ends the worker; one that came before this ran ends it here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    if signal.SIGTERM in signal.sigpending():
        os._exit(128 + signal.SIGTERM)  # stopped before it took any work
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
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


def _run_in_worker(task: ChunkTask) -> list[UserOutcome]:
    try:
        return process_chunk(task)
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


def run_parallel(run: _Run, state: journal.JournalState, pending: list[int], workers: int) -> None:
    """``workers`` worker processes and this one take chunks of ``pending`` in turn, each
    chunk as :func:`~toolkit.batch.worker.process_chunk`; outcomes go to ``run.record``."""
    processes = workers + 1
    method = start_method()
    if method == "fork":  # what every process needs, loaded once: the workers inherit it
        targets = dict.fromkeys(t for i in pending for t in run.users[i].targets)
        warm_up(run.settings, targets)
    context = multiprocessing.get_context(method)
    pool = _Pool(
        max_workers=workers,
        mp_context=context,
        initializer=_ignore_interrupts,
        initargs=(os.getpid(),),
    )
    running: dict[cf.Future[list[UserOutcome]], list[int]] = {}
    position = 0
    # what the workers inherit (forked at the first submit) is never scanned by their cyclic
    # collector: a scan would touch, and so copy, every inherited page; and this process's
    # collector skips it too. Until the pool is done.
    gc.freeze()

    def take() -> list[int]:
        nonlocal position
        size = chunk_size(len(pending) - position, processes, issuing=run.issuing)
        indices = pending[position : position + size]
        position += len(indices)
        return indices

    def collect(futures: set[cf.Future[list[UserOutcome]]]) -> None:
        for future in futures:
            indices = running.pop(future)
            if not future.cancelled() and future.exception() is None:
                for index, outcome in zip(indices, future.result(), strict=True):
                    run.record(index, outcome)

    try:
        while position < len(pending) or running:
            # keep every worker busy with one chunk running and one queued
            while position < len(pending) and not run.stopping() and len(running) < 2 * workers:
                indices = take()
                running[pool.submit(_run_in_worker, run.chunk(state, indices))] = indices
            if run.stopping():
                break
            if position < len(pending):  # this process takes a chunk too
                indices = take()
                outcomes = process_chunk(run.chunk(state, indices), stop=run.stopping)
                for index, outcome in zip(indices, outcomes, strict=False):
                    run.record(index, outcome)  # fewer when stopped: the rest not run
                done = {f for f in running if f.done()}
            else:
                done, _ = cf.wait(set(running), timeout=POLL, return_when=cf.FIRST_COMPLETED)
            collect(done)
    finally:
        if run.interrupted or (position < len(pending) and not run.stop):
            _stop_pool(pool)  # a signal, or an error in this loop
        else:  # --fail-fast or a full disk: the users already running finish
            for future in running:
                future.cancel()
            pool.shutdown(wait=True)
        gc.unfreeze()
    # finished while the pool was being stopped
    collect({f for f in running if f.done()})
