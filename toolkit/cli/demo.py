"""`demo`: the batch flow on built-in synthetic material."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.commands import command_app
from toolkit.cli.common import SCHEMA_VERSION, JsonOpt, guard, print_json
from toolkit.errors import ExitCode

demo_app = command_app()


@demo_app.command("demo")
@guard
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="DIR", help="Output folder.")
    ] = Path("ovpn-toolkit-demo"),
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier demo folder.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Run the batch flow on built-in synthetic material (DEMO): package, CA, users.yaml."""
    from toolkit.batch.worker import STATUSES
    from toolkit.demo import run_demo

    result = run_demo(output, force=force)
    if json_output:
        print_json(
            {
                "schema_version": SCHEMA_VERSION,
                "command": "demo",
                "folder": str(result.folder),
                "package": str(result.package),
                "users_file": str(result.users_file),
                "output": str(result.output),
                "users": [o.to_json() for o in result.batch.outcomes],
                "counts": {s: result.batch.count(s) for s in STATUSES},
            }
        )
        if result.batch.failed:
            raise typer.Exit(int(ExitCode.PARTIAL))
        return
    typer.echo(f"Made in {result.folder} (all DEMO material, see DEMO-README.txt):")
    typer.echo(f"  {result.package.name}   a synthetic Azure P2S package")
    typer.echo("  pki/                  a throwaway P2S certificate authority (ca init)")
    typer.echo("  certs/                alice's PEM pair and bob's PFX (ca issue)")
    typer.echo(f"  {result.users_file.name}            the user list")
    typer.echo(f"Ran: ovpn-toolkit batch {result.users_file}")
    typer.echo(f"Wrote {result.output}:")
    for path in sorted(result.output.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            rel = path.relative_to(result.output)
            typer.echo(f"  {rel}  ({path.stat().st_mode & 0o777:04o})")
    typer.echo("Manifest summary:")
    for outcome in result.batch.outcomes:
        cert = outcome.certificate or {}
        issued = f", certificate {outcome.issued} by the CA" if outcome.issued else ""
        typer.echo(
            f"  {outcome.name:<6} {outcome.status:<9} {cert.get('common_name', '-')}, "
            f"thumbprint {cert.get('thumbprint_sha1', '-')}, expires "
            f"{str(cert.get('not_after', '-'))[:10]}, "
            f"targets {' '.join(outcome.targets)}{issued}"
        )
        if outcome.reason:
            typer.echo(f"         {outcome.reason}")
    typer.echo("Next:")
    typer.echo(f"  - open {result.output}/alice/INSTALL.html: the guide each user gets")
    typer.echo(f"  - run it again: ovpn-toolkit batch {result.users_file}  (nothing changes)")
    typer.echo(
        "  - with your own package: ovpn-toolkit inspect VNet1GW.zip, then "
        "ovpn-toolkit ca init / batch (see README)"
    )
    if result.batch.failed:
        raise typer.Exit(int(ExitCode.PARTIAL))
