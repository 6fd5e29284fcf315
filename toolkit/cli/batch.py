"""CLI for `batch` and `schema`: many users from one YAML list."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from toolkit.cli.common import SCHEMA_VERSION, JsonOpt, err, guard, print_json
from toolkit.errors import ExitCode, UserListError

# the core is imported inside the commands: `--help` must not load cryptography, jinja2, yaml
if TYPE_CHECKING:
    from toolkit.batch import BatchResult, UserOutcome


def _summary(result: BatchResult, output: Path, *, dry_run: bool) -> None:
    from toolkit.batch.worker import STATUSES

    for outcome in result.outcomes:
        line = f"{outcome.name}: {outcome.status}"
        if outcome.issued:
            would = "would be " if outcome.status == "planned" else ""
            line += f" (certificate {would}{outcome.issued})"
        if outcome.reason:
            line += f": {outcome.reason}"
            if outcome.hint:
                line += f" (hint: {outcome.hint})"
        typer.echo(line)
        for warning in outcome.warnings:
            typer.echo(f"  warning: {warning}")
    counts = ", ".join(f"{result.count(s)} {s}" for s in STATUSES if result.count(s))
    for name in result.dropped:
        typer.echo(
            f"note: {name} is no longer in the user list; {output / name} was left in place "
            f"(delete it, and revoke the certificate if the user has left)"
        )
    typer.echo(f"{len(result.outcomes)} users: {counts}")
    if not dry_run:
        state = "updated" if result.manifest_written else "unchanged"
        typer.echo(f"manifest: {output / 'manifest.json'} and manifest.csv ({state})")


def register(app: typer.Typer) -> None:
    @app.command()
    @guard
    def batch(
        users_file: Annotated[
            Path,
            typer.Argument(
                metavar="USERS.yaml", help="The user list (see docs/reference/users-yaml.md)."
            ),
        ],
        output: Annotated[
            Optional[Path],  # noqa: UP045
            typer.Option(
                "--output",
                "-o",
                help="Output folder (default: the file's 'output', else ./profiles).",
                show_default=False,
            ),
        ] = None,
        jobs: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option(
                "--jobs",
                "-j",
                min=1,
                help="Worker processes (default: number of CPUs).",
                show_default=False,
            ),
        ] = None,
        fail_fast: Annotated[
            bool, typer.Option("--fail-fast", help="Stop at the first failed user.")
        ] = False,
        force: Annotated[
            bool, typer.Option("--force", help="Rewrite every user, even unchanged ones.")
        ] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Validate and plan; write nothing.")
        ] = False,
        renew_within: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option(
                "--renew-within",
                min=0,
                help="Renew CA-issued certificates expiring within DAYS.",
                show_default=False,
            ),
        ] = None,
        quiet: Annotated[
            bool, typer.Option("--quiet", "-q", help="Only the summary line and errors.")
        ] = False,
        json_output: JsonOpt = False,
    ) -> None:
        """Profiles for every user in a YAML list: validated first, parallel, idempotent.

        Exit 0 when all users succeeded, 3 when some failed, 2 when the file is invalid."""
        from toolkit.batch import BatchSettings, default_jobs, run_batch
        from toolkit.batch.userlist import load_user_list
        from toolkit.batch.worker import STATUSES

        try:
            users = load_user_list(users_file)
        except UserListError as exc:
            for detail in exc.details:
                err(detail)
            raise
        out = output or users.output or Path("profiles")
        settings = BatchSettings(
            package_path=users.package,
            output=out,
            roots=users.roots,
            ca=users.ca,
            warn_days=users.warn_days,
            force=force,
            dry_run=dry_run,
            renew_within=renew_within,
            environ={name: os.environ[name] for name in users.env_names() if name in os.environ},
        )
        show_progress = sys.stderr.isatty() and not quiet and not json_output
        if show_progress:
            from rich.console import Console
            from rich.progress import Progress

            with Progress(transient=True, console=Console(stderr=True)) as progress:
                task = progress.add_task("users", total=len(users.users))

                def advance(outcome: UserOutcome) -> None:
                    progress.update(task, advance=1, description=outcome.name)

                result = run_batch(
                    users,
                    settings,
                    jobs=jobs or default_jobs(),
                    fail_fast=fail_fast,
                    on_outcome=advance,
                )
        else:
            result = run_batch(users, settings, jobs=jobs or default_jobs(), fail_fast=fail_fast)
        if json_output:
            print_json(
                {
                    "schema_version": SCHEMA_VERSION,
                    "command": "batch",
                    "dry_run": dry_run,
                    "output": str(out),
                    "users": [o.to_json() for o in result.outcomes],
                    "dropped": result.dropped,
                    "counts": {s: result.count(s) for s in STATUSES},
                }
            )
        elif quiet:
            for outcome in result.failed:
                err(f"{outcome.name}: failed: {outcome.reason}")
            typer.echo(f"{len(result.outcomes)} users, {len(result.failed)} failed")
        else:
            _summary(result, out, dry_run=dry_run)
        if result.failed or result.count("skipped"):
            raise typer.Exit(int(ExitCode.PARTIAL))

    @app.command()
    def schema() -> None:
        """Print the JSON Schema of the batch user list (for editors)."""
        from toolkit.batch.schema import json_schema

        print_json(json_schema())
