"""The `ovpn-toolkit` typer app: global options; the commands are listed in
:data:`toolkit.cli.commands.COMMANDS` and loaded only when used (``--help`` imports none).

Thin on purpose: each command parses its options, calls one core function, renders the result
(human or ``--json``); :func:`toolkit.cli.common.guard` maps errors to exit codes.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Annotated, Any

import typer

from toolkit import __version__
from toolkit.cli.commands import ToolkitGroup
from toolkit.cli.common import COLOR, SHOW_TRACEBACK, err, no_color_requested
from toolkit.errors import ExitCode

app = typer.Typer(
    name="ovpn-toolkit",
    help="Turn an Azure VPN Gateway P2S package into ready-to-import OpenVPN profiles "
    "(Tunnelblick, OpenVPN Connect on iOS, OpenVPN 2.x).",
    cls=ToolkitGroup,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ovpn-toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    no_color: Annotated[
        bool,
        typer.Option("--no-color", help="No colours in the output (also: NO_COLOR=1)."),
    ] = False,
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Show a Python traceback with errors (developers).")
    ] = False,
) -> None:
    """ovpn-toolkit: Azure P2S packages to OpenVPN profiles."""
    SHOW_TRACEBACK["enabled"] = show_traceback or bool(os.environ.get("OVPN_TOOLKIT_TRACEBACK"))
    COLOR["enabled"] = not no_color_requested(no_color, os.environ)
    if not COLOR["enabled"]:
        ctx.color = False  # typer.echo strips the styles of typer.style in every subcommand


def main() -> Any:
    """Console entry point."""
    try:
        return app(prog_name="ovpn-toolkit")
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    finally:
        # the process ends here: the interpreter's last cyclic collection would walk every
        # object still alive (after a batch of 1000 users: 0.15 s) only to free memory the
        # exit frees anyway; objects are still freed and closed as their modules are cleared
        gc.freeze()
