"""Shared pieces of the command line: error rendering, the error guard, passphrase sources.

Only CLI modules import this (and typer). The core never prints or exits.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer

from toolkit.errors import ExitCode, ToolkitError
from toolkit.passphrase import PassphraseSource

P = ParamSpec("P")
R = TypeVar("R")

# set by the root callback's --traceback option
SHOW_TRACEBACK = {"enabled": bool(os.environ.get("OVPN_TOOLKIT_TRACEBACK"))}


def err(text: str) -> None:
    typer.echo(text, err=True)


def warn(text: str) -> None:
    err(typer.style("warning: ", fg="yellow", bold=True) + text)


def render_error(exc: ToolkitError) -> None:
    err(typer.style("ERROR: ", fg="red", bold=True) + exc.message)
    if exc.hint:
        err(typer.style("hint: ", fg="cyan") + exc.hint)


def guard(func: Callable[P, R]) -> Callable[P, R]:
    """Turn ToolkitError into a red one-line error plus hint and its exit code; Ctrl-C into 130."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ToolkitError as exc:
            if SHOW_TRACEBACK["enabled"]:
                traceback.print_exc()
            render_error(exc)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


def _hidden_prompt(label: str) -> str:
    return getpass.getpass(f"{label}: ")


def passphrase_source(env: str | None, file: Path | None) -> PassphraseSource:
    """Env var or file when given; else a hidden prompt, but only when stdin is a terminal."""
    prompt = _hidden_prompt if sys.stdin is not None and sys.stdin.isatty() else None
    return PassphraseSource(env=env, file=file, prompt=prompt)


def print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, sort_keys=False))


PASSPHRASE_ENV_HELP = "Read the passphrase from this environment variable."  # noqa: S105
PASSPHRASE_FILE_HELP = (
    "Read the passphrase from this file (its whole content; one trailing newline is ignored)."  # noqa: S105
)
