"""CLI for `batch` and `schema`: many users from one YAML list."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from toolkit.cli.commands import command_app
from toolkit.cli.common import SCHEMA_VERSION, JsonOpt, err, guard, print_json, stderr_console
from toolkit.errors import ExitCode, UserListError

# the core is imported inside the commands: `--help` must not load cryptography, jinja2, yaml
if TYPE_CHECKING:
    from toolkit.batch import BatchResult, UserOutcome


def users_count(n: int) -> str:
    """One grammar for the count in every mode: "1 user", "2 users"."""
    return f"{n} user{'' if n == 1 else 's'}"


def count_line(result: BatchResult) -> str:
    """The summary line of every mode (normal and -q): "2 users: 1 written, 1 failed"."""
    from toolkit.batch.worker import STATUSES

    counts = ", ".join(f"{result.count(s)} {s}" for s in STATUSES if result.count(s))
    return f"{users_count(len(result.outcomes))}: {counts}"


def failure_line(outcome: UserOutcome) -> str:
    line = f"{outcome.name}: failed: {outcome.reason}"
    return line + (f" (hint: {outcome.hint})" if outcome.hint else "")


def _superseded(outcome: UserOutcome) -> None:
    from toolkit.cli.ca import superseded_line  # `batch --help` does not load the CA's CLI

    for old in outcome.superseded:
        typer.echo(
            "  " + superseded_line(old["thumbprint_sha1"], old["not_after"][:10], old["revoke"])
        )


def _summary(result: BatchResult, output: Path, *, dry_run: bool) -> None:
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
        _superseded(outcome)
        if outcome.status in ("written", "planned") and outcome.send:
            verb = "would send" if outcome.status == "planned" else "send"
            for item in outcome.send:
                label = "install guide" if item["target"] == "guide" else item["platform"]
                typer.echo(f"  {verb} ({label}): {output / item['path']}")
    for name in result.dropped:
        typer.echo(
            f"note: {name} is no longer in the user list; {output / name} was left in place "
            f"(delete it, and revoke the certificate if the user has left)"
        )
    typer.echo(count_line(result))
    if not dry_run:
        state = "updated" if result.manifest_written else "unchanged"
        typer.echo(f"manifest: {output / 'manifest.json'} and manifest.csv ({state})")


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set ``stop``, which the runner polls: it stops the workers,
    records what finished and returns; the command then exits 130."""

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


batch_app = command_app()
schema_app = command_app()


@batch_app.command("batch")
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
            metavar="N",
            min=1,
            help=(
                "Processes that plan and write, this one included (default: as many as the "
                "work is worth, up to the number of CPUs)."
            ),
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
            metavar="DAYS",
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

    Exit 0 when all users succeeded, 3 when some failed, 2 when the file is invalid, 4 when
    the output cannot be written, 130 when interrupted (run it again to finish)."""
    from toolkit.batch import BatchSettings, run_batch
    from toolkit.batch.userlist import load_user_list
    from toolkit.batch.worker import STATUSES

    # a batch allocates many short-lived objects and hardly any cycles: the cyclic collector
    # runs every 20 000 allocations instead of every 700 (forked workers inherit this)
    gc.set_threshold(20_000, 20, 20)
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
        sign=users.sign,
        guide=users.guide,
        environ={name: os.environ[name] for name in users.env_names() if name in os.environ},
    )
    show_progress = sys.stderr.isatty() and not quiet and not json_output
    stop = threading.Event()  # set by SIGINT/SIGTERM while the batch runs
    run = functools.partial(
        run_batch,
        users,
        settings,
        jobs=jobs,
        fail_fast=fail_fast,
        should_stop=stop.is_set,
    )
    with _stop_on_signals(stop):
        if show_progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            with Progress(
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                transient=True,
                console=stderr_console(),
            ) as progress:
                task = progress.add_task("", total=len(users.users))

                def advance(outcome: UserOutcome) -> None:
                    if outcome.status == "failed":  # at once, above the bar
                        progress.console.print(
                            failure_line(outcome), markup=False, highlight=False, soft_wrap=True
                        )
                    progress.update(task, advance=1, description=outcome.name)

                def starting(name: str) -> None:  # with --jobs 1: the user being worked on
                    progress.update(task, description=name)

                result = run(on_outcome=advance, on_start=starting)
        elif json_output:
            result = run()
        else:

            def report(outcome: UserOutcome) -> None:
                if outcome.status == "failed":
                    err(failure_line(outcome))

            result = run(on_outcome=report)
    if json_output:
        print_json(
            {
                "schema_version": SCHEMA_VERSION,
                "command": "batch",
                "dry_run": dry_run,
                "output": str(out),
                "users": (o.to_json() for o in result.outcomes),  # one at a time
                "dropped": result.dropped,
                "counts": {s: result.count(s) for s in STATUSES},
            }
        )
    elif quiet:
        typer.echo(count_line(result))
    else:
        _summary(result, out, dry_run=dry_run)
    if result.interrupted:
        err("interrupted: the users above marked skipped were not run; run again to finish")
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if result.failed or result.count("skipped"):
        raise typer.Exit(int(ExitCode.PARTIAL))


@schema_app.command("schema")
def schema(
    json_output: Annotated[
        bool, typer.Option("--json", help="Accepted for symmetry: the output is JSON anyway.")
    ] = False,
) -> None:
    """Print the JSON Schema of the batch user list (for editors)."""
    from toolkit.batch.schema import json_schema

    print_json(json_schema())
