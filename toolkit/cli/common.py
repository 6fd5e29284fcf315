"""Shared pieces of the command line: error rendering, the error guard, passphrase sources,
the options several commands take, and the JSON documents' schema version.

Only ``toolkit.cli`` imports typer, click or rich (a lint rule enforces it); the core never
prints, exits, or reads the environment or the terminal: this package hands those in.
"""

from __future__ import annotations

import functools
import getpass
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, ParamSpec, TypeVar

import typer

from toolkit.cli.constants import DEFAULT_TARGETS, TARGET_NAMES
from toolkit.errors import ExitCode, ToolkitError, exit_code_for

if TYPE_CHECKING:
    from toolkit.passphrase import PassphraseSource

P = ParamSpec("P")
R = TypeVar("R")

SCHEMA_VERSION = 1  # of every --json document

# set by the root callback's --traceback option
SHOW_TRACEBACK = {"enabled": bool(os.environ.get("OVPN_TOOLKIT_TRACEBACK"))}
# set by the root callback: False with --no-color or a non-empty NO_COLOR (no-color.org)
COLOR = {"enabled": True}


def no_color_requested(flag: bool, environ: Mapping[str, str]) -> bool:
    """--no-color, or NO_COLOR set to anything but the empty string (https://no-color.org)."""
    return flag or bool(environ.get("NO_COLOR"))


def stderr_console() -> Any:
    """A rich console on stderr that follows --no-color / NO_COLOR (for the progress bar)."""
    from rich.console import Console

    return Console(stderr=True, no_color=not COLOR["enabled"])


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
            raise typer.Exit(int(exit_code_for(exc))) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


def _hidden_prompt(label: str) -> str:
    return getpass.getpass(f"{label}: ")


def passphrase_source(env: str | None, file: Path | None) -> PassphraseSource:
    """Env var or file when given; else a hidden prompt, but only when stdin is a terminal."""
    from toolkit.passphrase import PassphraseSource

    prompt = _hidden_prompt if sys.stdin is not None and sys.stdin.isatty() else None
    return PassphraseSource(env=env, file=file, prompt=prompt, environ=os.environ)


def plain_source(env: str | None, file: Path | None) -> PassphraseSource:
    """Env var or file, never a prompt (secrets the user chooses for the outputs)."""
    from toolkit.passphrase import PassphraseSource

    return PassphraseSource(env=env, file=file, environ=os.environ)


def print_json(document: Any) -> None:
    """The document as ``json.dumps(document, indent=2, ensure_ascii=False)`` and a newline, in
    UTF-8 whatever the terminal's encoding, written in pieces: a batch of 10 000 users is never
    held as one string."""
    from toolkit.jsontext import write_indented

    out = sys.stdout
    out.flush()  # what was printed as text before goes first
    raw = getattr(out, "buffer", None)
    if raw is None:  # a text-only stream (tests capturing output)
        write_indented(document, out.write)
        out.write("\n")
        out.flush()
        return
    write_indented(document, lambda text: raw.write(text.encode("utf-8")))
    raw.write(b"\n")
    raw.flush()


PASSPHRASE_ENV_HELP = "Read the passphrase from this environment variable."  # noqa: S105
PASSPHRASE_FILE_HELP = (
    "Read the passphrase from this file (its whole content; one trailing newline is ignored)."  # noqa: S105
)

# --- options several commands share (explicit metavars: PATH, not <path> or {package}) ----------
PackageArg = Annotated[
    Path,
    typer.Argument(
        metavar="PACKAGE",
        help="The Azure P2S client package: the zip, an extracted folder, or vpnconfig.ovpn.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
PassEnvOpt = Annotated[
    str | None,
    typer.Option("--passphrase-env", metavar="VAR", help=PASSPHRASE_ENV_HELP, show_default=False),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file", metavar="FILE", help=PASSPHRASE_FILE_HELP, show_default=False
    ),
]


def complete_target(incomplete: str) -> list[str]:
    """Shell completion of target names (``-t io<Tab>``)."""
    return [name for name in TARGET_NAMES if name.startswith(incomplete)]


TargetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional for list options
    typer.Option(
        "--target",
        "-t",
        metavar="TARGET",
        autocompletion=complete_target,
        help=f"Output target, repeatable: {', '.join(TARGET_NAMES)}. "
        f"Default: {' and '.join(DEFAULT_TARGETS)}.",
        show_default=False,
    ),
]
WarnDaysOpt = Annotated[
    int,
    typer.Option(
        "--warn-days", metavar="DAYS", min=0, help="Warn when the certificate expires within DAYS."
    ),
]
