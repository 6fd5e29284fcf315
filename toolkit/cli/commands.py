"""The command table and the root group that loads a command only when it is used.

``ovpn-toolkit --help`` lists every command from :data:`COMMANDS` (name, section, one-line
summary) without importing the modules that define them; ``ovpn-toolkit inspect PKG`` imports
and builds ``inspect`` alone. Each command lives in a one-command ``typer.Typer`` (or, for
``ca``, a sub-app) named here by module and attribute, and ``typer.main.get_command`` turns it
into its click command on first use. Help is click's plain layout (``rich_markup_mode=None``
everywhere): rich is imported only by the commands that draw a progress bar.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup


@dataclass(frozen=True)
class Entry:
    """Where a command lives and how the root help lists it."""

    module: str
    attribute: str  # a typer.Typer in ``module``: one command, or a group (``ca``)
    section: str
    summary: str  # one line, under 68 characters: the root help fits 80 columns


PROFILES = "Profiles, one user at a time"
MANY = "Many users"
CA = "Certificate authority"
TRY = "Try it"

# in the order the root help, the shell completion and docs/reference/cli.md list them
COMMANDS: dict[str, Entry] = {
    "inspect": Entry(
        "toolkit.cli.profiles",
        "inspect_app",
        PROFILES,
        "Show what a package holds and what generate would change",
    ),
    "generate": Entry(
        "toolkit.cli.profiles",
        "generate_app",
        PROFILES,
        "Write one user's profiles (package and credentials checked first)",
    ),
    "check": Entry(
        "toolkit.cli.profiles",
        "check_app",
        PROFILES,
        "Lint a finished profile for a client (exit 5 with errors)",
    ),
    "batch": Entry(
        "toolkit.cli.batch",
        "batch_app",
        MANY,
        "Profiles for every user in a YAML list: parallel, idempotent",
    ),
    "schema": Entry(
        "toolkit.cli.batch",
        "schema_app",
        MANY,
        "Print the JSON Schema of the user list (for editors)",
    ),
    "ca": Entry(
        "toolkit.cli.ca",
        "ca_app",
        CA,
        "The P2S root CA: init, issue, list, revoke and renew certificates",
    ),
    "demo": Entry(
        "toolkit.cli.demo", "demo_app", TRY, "Run the batch flow on built-in synthetic material"
    ),
}

# the root help's examples, in the order of the README (tests/test_cli_help.py parses each one)
EXAMPLES = (
    "ovpn-toolkit demo",
    "ovpn-toolkit inspect VNet1GW.zip",
    "ovpn-toolkit generate VNet1GW.zip --pfx alice.pfx --passphrase-env PFX_PASS",
    "ovpn-toolkit ca init --output pki --passphrase-env CA_PASS",
    "ovpn-toolkit ca issue --ca pki --name alice --passphrase-env CA_PASS",
    "ovpn-toolkit batch users.yaml",
)
MORE = "Run 'ovpn-toolkit COMMAND -h' for the options of a command."


def command_app() -> typer.Typer:
    """The Typer that holds one command of the table (plain help; the root adds completion)."""
    return typer.Typer(rich_markup_mode=None, add_completion=False, pretty_exceptions_enable=False)


def load(name: str) -> Any:
    """The click command for ``name``, built from its module (imported now)."""
    entry = COMMANDS[name]
    holder = getattr(importlib.import_module(entry.module), entry.attribute)
    command = typer.main.get_command(holder)
    command.name = name
    command.short_help = command.short_help or entry.summary
    return command


class LazyCommands(MutableMapping[str, Any]):
    """The root group's ``commands``: every name of :data:`COMMANDS`, each built on first access
    (click and typer look commands up by ``get``, list them by iterating the keys)."""

    def __init__(self, eager: MutableMapping[str, Any]) -> None:
        self._built: dict[str, Any] = dict(eager)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = load(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(1 for name in self._built if name not in COMMANDS)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._built


def _format_params(command: Any, ctx: Any, formatter: Any) -> None:
    """Arguments and options as click lays them out (name column, help, [default: ...])."""
    rows: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None and param.param_type_name in rows:
            rows[param.param_type_name].append(record)
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        if rows[kind]:
            with formatter.section(title):
                formatter.write_dl(rows[kind])


class PlainGroup(TyperGroup):
    """A group whose command list shows each command's whole first paragraph, wrapped (click
    would cut it at about 45 characters with '...')."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            text = command.short_help or inspect.cleandoc(command.help or "").split("\n\n")[0]
            rows.append((name, " ".join(text.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class ToolkitGroup(PlainGroup):
    """The root group: commands from :data:`COMMANDS`, loaded on use; the help lists them by
    section before the global options, then examples (like git and gh)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = LazyCommands(self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names only: nothing is imported

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_commands(ctx, formatter)
        _format_params(self, ctx, formatter)
        with formatter.section("Examples"):
            for line in EXAMPLES:
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
        formatter.write_paragraph()
        formatter.write_text(MORE)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        width = max(len(name) for name in COMMANDS)  # one column for every section
        sections: dict[str, list[tuple[str, str]]] = {}
        for name, entry in COMMANDS.items():
            sections.setdefault(entry.section, []).append((name.ljust(width), entry.summary))
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)
