"""The benchmark's report names the interpreter the toolkit ran under (docs/performance.md)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from bench.machine import python_base


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_python_base_names_the_interpreter_behind_the_venv() -> None:
    text = python_base()
    match = re.fullmatch(r"(\S+) \(built (.+), (static|shared) libpython\)", text)
    assert match, text
    path = match.group(1)
    base = getattr(sys, "_base_executable", sys.executable)
    assert path == os.path.realpath(base)
    assert os.access(path, os.X_OK)
