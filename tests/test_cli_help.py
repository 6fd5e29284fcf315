"""`--help` of every command reads as people expect: PATH/FILE metavars, bare flags.

typer 0.27+ renders '<path>', '{package}' and '<bool>' instead; pyproject bounds typer and sets
explicit metavars, and this test fails on any of those forms.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.cli.commands import COMMANDS as TABLE
from toolkit.cli.commands import EXAMPLES

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


# --- the root help, the lazy command table, what --help imports --------------------------------
def _root_help(columns: int = 80) -> str:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_root_help_lists_every_command_by_section_in_80_columns() -> None:
    text = _root_help()
    for name, entry in TABLE.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(entry.summary)}$", text, re.M), name
    for section in {entry.section for entry in TABLE.values()}:
        assert f"\n{section}:\n" in text
    for option in ("--version", "--no-color", "--traceback", "--install-completion", "--help"):
        assert option in text
    assert "Examples:" in text and all(line in text for line in EXAMPLES)
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long
    assert not set(text) & set("╭╮╰╯│─")  # plain text, no rich boxes


def test_the_table_is_the_group() -> None:
    group = typer.main.get_group(app)
    ctx = typer.Context(group)
    assert group.list_commands(ctx) == list(TABLE)
    for name in TABLE:
        command = group.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.help, f"{name} has no help text"
    assert group.get_command(ctx, "nope") is None


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_parses(example: str) -> None:
    """The options and arguments of each example exist (parsed by click, nothing is run)."""
    words = shlex.split(example)
    assert words[0] == "ovpn-toolkit"
    command: Any = typer.main.get_group(app)
    ctx = command.make_context("ovpn-toolkit", [], resilient_parsing=True)
    args = words[1:]
    while hasattr(command, "list_commands"):  # a group: resolve the next word
        name, command, args = command.resolve_command(ctx, args)
        if hasattr(command, "list_commands"):
            ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True)
        else:
            ctx = command.make_context(name, list(args), parent=ctx)
    assert ctx.command.name == (words[2] if words[1] == "ca" else words[1])


def _imported(*argv: str) -> set[str]:
    """The modules ``ovpn-toolkit ARGV`` has imported when it exits (``sys.modules``)."""
    code = (
        "import sys\n"
        f"sys.argv = ['ovpn-toolkit', *{list(argv)!r}]\n"
        "from toolkit.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "print('MODULES', *sorted(sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1].split()
    assert last[0] == "MODULES"
    return set(last[1:])


HEAVY = {"rich", "cryptography", "jinja2", "yaml", "markdown_it", "pygments"}
COMMAND_MODULES = {f"toolkit.cli.{m}" for m in ("profiles", "batch", "ca", "demo")}


def test_help_and_version_import_no_command_and_no_rich() -> None:
    for argv in (["--help"], ["--version"]):
        modules = _imported(*argv)
        assert "toolkit.cli.app" in modules
        assert not modules & (HEAVY | COMMAND_MODULES), (argv, modules & (HEAVY | COMMAND_MODULES))


def test_a_command_loads_only_its_own_module() -> None:
    modules = _imported("inspect", "--help")
    assert "toolkit.cli.profiles" in modules
    assert not modules & (HEAVY | COMMAND_MODULES - {"toolkit.cli.profiles"})
    modules = _imported("batch", "--help")
    assert not modules & (HEAVY | COMMAND_MODULES - {"toolkit.cli.batch"})


def test_a_usage_error_is_one_error_line_with_a_hint() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "batch", "users.yaml", "--jobs", "0"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == ["Error: Invalid value for '--jobs' / '-j': 0 is not in the range x>=1."]
    assert "Try 'ovpn-toolkit batch -h' for help." in lines
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("ovpn-toolkit generate -t io", ["ios", "ios-keychain"]),
        ("ovpn-toolkit check x.ovpn --target m", ["mobileconfig"]),
        ("ovpn-toolkit ba", ["batch"]),
    ],
)
def test_shell_completion_offers_commands_and_target_names(words: str, expected: list[str]) -> None:
    """What bash's completion script asks the program (docs/reference/cli.md)."""
    env = {
        **os.environ,
        "_OVPN_TOOLKIT_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    result = subprocess.run(
        [sys.executable, "-m", "toolkit"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected
