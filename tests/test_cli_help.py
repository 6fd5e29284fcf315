"""`--help` of every command reads as people expect: PATH/FILE metavars, bare flags.

typer 0.27+ renders '<path>', '{package}' and '<bool>' instead; pyproject bounds typer and sets
explicit metavars, and this test fails on any of those forms.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from toolkit.cli import app

BAD_FORMS = re.compile(r"<bool>|<list\[|<path>|<str>|<int>|\{[a-z_]+\}|<[a-z_ ]+>")


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under ``group`` (typer's click group; click itself is not imported:
    typer vendors it in some versions)."""
    found = [prefix]
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            found += _commands(command, (*prefix, name))
        elif command is not None:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def test_every_command_is_reached() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"generate", "inspect", "check", "batch", "demo", "ca init", "ca revoke"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_has_plain_metavars(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Usage: " in text
    bad = BAD_FORMS.findall(text)
    assert not bad, f"{' '.join(command)} --help shows {bad}"


def test_known_metavars() -> None:
    generate = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "200"}).output
    assert "PACKAGE" in generate and "FILE" in generate
    assert re.search(r"--force\s+Replace existing outputs", generate)  # a bare flag
    batch = CliRunner().invoke(app, ["batch", "--help"], env={"COLUMNS": "200"}).output
    assert "USERS.yaml" in batch


def test_the_check_would_catch_typer_0_29_forms() -> None:
    for sample in ("--force  <bool>  Replace", "--chain <list[Path]>", "[OPTIONS] {package}"):
        assert BAD_FORMS.search(sample)
