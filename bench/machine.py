"""Facts about the machine and the tools, printed with every result."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import cryptography

from bench.baselines import EASYRSA


def _first_line(argv: list[str], *, prefix: str = "") -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    for line in (done.stdout + done.stderr).splitlines():
        if line.strip().startswith(prefix):
            return line.strip().removeprefix(prefix).strip()
    return "unknown"


def _cpu_model() -> str:
    try:
        for line in (
            Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines()
        ):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def _git_commit(repo: Path) -> str:
    return _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])


def python_base() -> str:
    """The installed interpreter behind this one (a venv's base), its build date and whether
    it runs from a shared libpython."""
    base = getattr(sys, "_base_executable", sys.executable)
    try:  # what is loaded, not what sysconfig says (Debian reports shared, runs static)
        with open("/proc/self/maps", encoding="utf-8") as maps:
            shared = "shared libpython" if "libpython" in maps.read() else "static libpython"
    except OSError:
        shared = "libpython: unknown"
    return f"{os.path.realpath(base)} (built {platform.python_build()[1]}, {shared})"


def machine_facts(python: str, repo: Path) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_mib": _memory_total_mib(),
        "load_average": list(os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": python,
        # the interpreter behind the venv: the same toolkit ran 20% slower here under a pyenv
        # build (shared libpython) than under Debian's python3.11 (docs/performance.md)
        "python_base": python_base(),
        "cryptography": cryptography.__version__,
        "openssl": _first_line(["openssl", "version"]),
        "easy_rsa": _first_line([str(EASYRSA), "--version"], prefix="Version:"),
        "bash": _first_line(["bash", "--version"]),
        "toolkit": _first_line([python, "-m", "toolkit", "--version"]),
        "toolkit_commit": _git_commit(repo),
    }
