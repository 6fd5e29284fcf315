"""The layering the architecture page promises, checked on the source (ruff's banned-API rule
checks the same in CI; this test names the offending module when it breaks)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TOOLKIT = Path(__file__).resolve().parent.parent / "toolkit"
CLI_ONLY_MODULES = ("typer", "click", "rich", "getpass")
CORE = sorted(p for p in TOOLKIT.rglob("*.py") if "cli" not in p.relative_to(TOOLKIT).parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _calls(path: Path) -> set[str]:
    """Dotted names the module uses: 'print', 'sys.exit', 'os.environ', ..."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return names


def test_there_is_a_core_to_check() -> None:
    assert len(CORE) > 20
    assert TOOLKIT / "plan.py" in CORE and TOOLKIT / "cli" / "app.py" not in CORE


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(TOOLKIT)))
def test_core_module_keeps_to_the_core(path: Path) -> None:
    assert not _imports(path) & set(CLI_ONLY_MODULES), "only toolkit/cli/ may import these"
    used = _calls(path)
    for banned in ("print", "input", "sys.exit", "os.environ", "os.getenv", "sys.stdin"):
        assert banned not in used, f"{path.name} uses {banned}"


def test_the_check_catches_a_violation(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nimport typer\n\nprint(os.environ)\n")
    assert "typer" in _imports(probe)
    assert {"print", "os.environ"} <= _calls(probe)
