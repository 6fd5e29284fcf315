"""Timing and memory of one command: wall time, peak RSS of its process tree, ru_maxrss.

A command runs in its own session. The main thread blocks in ``os.wait4`` (so the wall time
is not rounded up to a polling interval, and the rusage it returns is that command's own:
``ru_maxrss`` of the largest single process among it and the descendants it waited for). A
sampler thread, when asked, reads ``VmRSS`` (and ``Pss``) of every process in the tree every
``interval`` seconds and keeps the largest sum. A timer kills the whole session at the timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TreeMemory:
    """The largest sums seen over the samples (KiB) and the most processes seen at once."""

    peak_rss_kib: int = 0
    peak_pss_kib: int = 0
    peak_processes: int = 0
    samples: int = 0


@dataclass
class RunResult:
    argv: list[str]
    wall_seconds: float
    returncode: int | None  # None when killed at the timeout
    timed_out: bool
    timeout_seconds: float
    stdout: str
    stderr: str
    maxrss_kib: int  # ru_maxrss from wait4: the largest single process of the tree
    memory: TreeMemory | None = None

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.returncode == 0

    def describe_failure(self) -> str:
        if self.timed_out:
            return f"did not finish within {self.timeout_seconds:g} s"
        tail = (self.stderr.strip() or self.stdout.strip())[-600:]
        return f"exit code {self.returncode}: {tail}"


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a child is listed under the thread that forked it)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def process_tree(root: int) -> list[int]:
    tree: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(_children(pid))
    return tree


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _sample(root: int, memory: TreeMemory, stop: threading.Event, interval: float) -> None:
    while not stop.is_set():
        pids = process_tree(root)
        rss = sum(_status_kib(pid, "VmRSS:") for pid in pids)
        pss = sum(_pss_kib(pid) for pid in pids)
        memory.peak_rss_kib = max(memory.peak_rss_kib, rss)
        memory.peak_pss_kib = max(memory.peak_pss_kib, pss)
        memory.peak_processes = max(memory.peak_processes, len(pids))
        memory.samples += 1
        stop.wait(interval)


def run_measured(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    sample_memory: bool = False,
    interval: float = 0.05,
) -> RunResult:
    """Run ``argv`` once and measure it; stdout and stderr go to temporary files.

    Each command starts with nothing left to write back: ``sync(2)`` first, not timed. A
    command that makes its files durable (the toolkit's ``syncfs``) would otherwise also write
    back what the command before it left in memory (the shell loop's files, the inputs just
    made): the measurements would depend on their order."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        killed = threading.Event()
        os.sync()
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )

        def kill() -> None:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        memory = TreeMemory() if sample_memory else None
        stop = threading.Event()
        sampler: threading.Thread | None = None
        if memory is not None:
            sampler = threading.Thread(
                target=_sample, args=(proc.pid, memory, stop, interval), daemon=True
            )
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        timer.cancel()
        stop.set()
        if sampler is not None:
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        timed_out = killed.is_set()
        return RunResult(
            argv=list(argv),
            wall_seconds=wall,
            returncode=None if timed_out else proc.returncode,
            timed_out=timed_out,
            timeout_seconds=timeout,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            maxrss_kib=usage.ru_maxrss,
            memory=memory,
        )


@dataclass
class Series:
    """Repeated measurements of one quantity (seconds unless ``unit`` says otherwise)."""

    values: list[float] = field(default_factory=list)
    unit: str = "s"

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def to_json(self) -> dict[str, Any]:
        if not self.values:
            return {"unit": self.unit, "runs": []}
        return {
            "unit": self.unit,
            "runs": self.values,
            "median": self.median,
            "min": self.low,
            "max": self.high,
        }
