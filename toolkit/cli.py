"""The `ovpn-toolkit` command line: parse options, call the core, render, map exit codes.

Thin on purpose: everything that decides anything lives in the core modules.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from toolkit import __version__
from toolkit.check import check_profile
from toolkit.cli_common import (
    PASSPHRASE_ENV_HELP,
    PASSPHRASE_FILE_HELP,
    SHOW_TRACEBACK,
    err,
    guard,
    passphrase_source,
    print_json,
    warn,
)
from toolkit.credentials import load_credentials, load_roots
from toolkit.demo import run_demo
from toolkit.errors import ExitCode, ProfileError, UsageError
from toolkit.findings import Finding
from toolkit.generate import UserPlan, UserRequest, plan_user
from toolkit.inspect import inspect_package
from toolkit.naming import sanitize_name
from toolkit.package import load_package
from toolkit.passphrase import PassphraseSource
from toolkit.profile import Profile
from toolkit.targets import DEFAULT_TARGETS, TARGETS
from toolkit.tblk import check_bundle, read_bundle
from toolkit.writer import check_writable, write_plans

SCHEMA_VERSION = 1

app = typer.Typer(
    name="ovpn-toolkit",
    help="Turn an Azure VPN Gateway P2S package into ready-to-import OpenVPN profiles "
    "(Tunnelblick, OpenVPN Connect on iOS, OpenVPN 2.x).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ovpn-toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Show a Python traceback with errors (developers).")
    ] = False,
) -> None:
    """ovpn-toolkit: Azure P2S packages to OpenVPN profiles."""
    SHOW_TRACEBACK["enabled"] = show_traceback or bool(os.environ.get("OVPN_TOOLKIT_TRACEBACK"))


# --- shared option types ------------------------------------------------------------------------
PackageArg = Annotated[
    Path,
    typer.Argument(
        help="The Azure P2S client package: the zip, an extracted folder, or vpnconfig.ovpn.",
        show_default=False,
    ),
]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output folder.")]
TargetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option(
        "--target",
        "-t",
        help=f"Output target, repeatable: {', '.join(TARGETS)}. "
        f"Default: {' and '.join(DEFAULT_TARGETS)}.",
        show_default=False,
    ),
]
PassEnvOpt = Annotated[Optional[str], typer.Option("--passphrase-env", help=PASSPHRASE_ENV_HELP)]  # noqa: UP045
PassFileOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--passphrase-file", help=PASSPHRASE_FILE_HELP, show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _print_warnings(findings: list[Finding]) -> None:
    for finding in findings:
        if finding.level == "warning":
            warn(finding.message + (f" ({finding.hint})" if finding.hint else ""))


def _plan_summary(plan: UserPlan, output: Path, *, dry_run: bool) -> None:
    verb = "would write" if dry_run else "wrote"
    cert = plan.certificate
    typer.echo(
        f"{plan.name}: certificate {cert.common_name or cert.subject} "
        f"(thumbprint {cert.thumbprint_sha1}, expires {cert.not_after:%Y-%m-%d})"
    )
    for target in plan.targets:
        typer.echo(f"  {TARGETS[target.target].title}:")
        for planned in target.files:
            typer.echo(f"    {verb} {output / plan.name / planned.path} ({planned.mode:04o})")
        for edit in target.edits:
            typer.echo(f"    edit {edit.describe()}")


def _next_steps(plan: UserPlan, output: Path) -> list[str]:
    steps = []
    user_dir = output / plan.name
    for target in plan.targets:
        if target.target == "tunnelblick":
            steps.append(
                f"Mac: send {user_dir}/tunnelblick/{plan.name}.tblk.zip; the user unzips it and "
                "double-clicks the .tblk (docs/how-to/tunnelblick.md)"
            )
        elif target.target == "ios":
            steps.append(
                f"iPhone: send {user_dir}/ios/{plan.name}.ovpn; the user opens it with OpenVPN "
                "Connect, taps ADD (docs/how-to/ios.md)"
            )
        elif target.target == "mobileconfig":
            steps.append(
                f"MDM: upload {user_dir}/mobileconfig/{plan.name}.mobileconfig to Intune/Jamf "
                "as a custom iOS configuration profile; test on one device first "
                "(docs/how-to/ios.md)"
            )
        elif target.target == "openvpn":
            steps.append(
                f"Linux/Windows: openvpn --config {user_dir}/openvpn/{plan.name}.ovpn "
                "(docs/how-to/openvpn.md)"
            )
    steps.append("These files hold the user's private key: deliver them over a private channel.")
    return steps


@app.command()
@guard
def generate(
    package: PackageArg,
    cert: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--cert", help="Client certificate (PEM; may also hold the key).", show_default=False
        ),
    ] = None,
    key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--key",
            help="Private key (PEM: plain, encrypted PKCS#8 or traditional).",
            show_default=False,
        ),
    ] = None,
    pfx: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--pfx", help="PKCS#12 (.pfx/.p12) with certificate, key and chain.", show_default=False
        ),
    ] = None,
    chain: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--chain", help="Intermediate certificates (PEM), repeatable.", show_default=False
        ),
    ] = None,
    root_cert: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--root",
            help="The P2S root uploaded to Azure (PEM/DER), repeatable: the certificate must "
            "chain to one of them.",
            show_default=False,
        ),
    ] = None,
    passphrase_env: PassEnvOpt = None,
    passphrase_file: PassFileOpt = None,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--name",
            "-n",
            help="File and bundle name (default: from the certificate CN).",
            show_default=False,
        ),
    ] = None,
    display_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--display-name",
            help="Name shown in OpenVPN Connect (default: 'NAME (GATEWAY)').",
            show_default=False,
        ),
    ] = None,
    target: TargetOpt = None,
    output: OutputOpt = Path("profiles"),
    force: Annotated[bool, typer.Option("--force", help="Replace existing outputs.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the plan; write nothing.")
    ] = False,
    json_output: JsonOpt = False,
    replace_credentials: Annotated[
        bool,
        typer.Option("--replace-credentials", help="Replace credentials already in the profile."),
    ] = False,
    disable_dco: Annotated[
        bool,
        typer.Option(
            "--disable-dco", help="Add 'disable-dco' to the openvpn target (Windows OpenVPN 2.6)."
        ),
    ] = False,
    warn_days: Annotated[
        int,
        typer.Option("--warn-days", help="Warn when the certificate expires within DAYS.", min=0),
    ] = 30,
    key_passphrase_env: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--key-passphrase-env",
            help="Encrypt the key inside the profiles (PKCS#8, AES-256) with the passphrase in "
            "this environment variable; the user types it when connecting.",
            show_default=False,
        ),
    ] = None,
    key_passphrase_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--key-passphrase-file",
            help="Like --key-passphrase-env, reading the passphrase from a file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write one user's profiles: validate the package and credentials first, then write."""
    if disable_dco and "openvpn" not in (target or DEFAULT_TARGETS):
        raise UsageError(
            "--disable-dco applies to the openvpn target only", hint="add --target openvpn"
        )
    source = passphrase_source(passphrase_env, passphrase_file)
    azure = load_package(package)
    creds = load_credentials(cert=cert, key=key, pfx=pfx, chain=chain or [], passphrase=source)
    roots = load_roots(root_cert or [])
    key_passphrase = None
    if key_passphrase_env or key_passphrase_file:
        key_passphrase = PassphraseSource(key_passphrase_env, key_passphrase_file).resolve(
            "the profile key", ask=False
        )
    user = name or sanitize_name(
        creds.summary.common_name or creds.certificate.subject.rfc4514_string()
    )
    plan = plan_user(
        azure,
        creds,
        UserRequest(
            name=user,
            display_name=display_name,
            targets=tuple(target or ()),
            disable_dco=disable_dco,
            replace_credentials=replace_credentials,
            warn_days=warn_days,
            key_passphrase=key_passphrase,
        ),
        roots=roots,
    )
    if dry_run:
        check_writable(output, plan.name, plan.targets, force)
    else:
        write_plans(output, plan.name, plan.targets, force=force)
    if json_output:
        print_json(
            {
                "schema_version": SCHEMA_VERSION,
                "command": "generate",
                "dry_run": dry_run,
                "output": str(output),
                "package": {"source": azure.source, "profile_sha256": azure.profile_sha256},
                "user": plan.to_json(),
            }
        )
        return
    _print_warnings(plan.warnings)
    _plan_summary(plan, output, dry_run=dry_run)
    if not dry_run:
        typer.echo("Next:")
        for step in _next_steps(plan, output):
            typer.echo(f"  - {step}")


@app.command()
@guard
def inspect(
    package: PackageArg,
    json_output: JsonOpt = False,
) -> None:
    """Show what a package holds and what `generate` would change for each target."""
    azure = load_package(package)
    report = inspect_package(azure)
    if json_output:
        print_json({"schema_version": SCHEMA_VERSION, "command": "inspect", **report})
        return
    gw = report["gateway"]
    typer.echo(f"package:      {report['source']} ({report['kind']}, {report['profile_entry']})")
    typer.echo(f"gateway:      {gw['host']} port {gw['port']} proto {gw['proto']}")
    typer.echo(f"verify name:  {gw['verify_x509_name']}")
    typer.echo(
        f"crypto:       cipher {gw['cipher']}, auth {gw['auth']}, "
        f"tls-version-min {gw['tls_version_min']}"
    )
    ca = report["ca"] or {}
    if "subject" in ca:
        typer.echo(f"ca:           {ca['subject']} (expires {ca['not_after'][:10]})")
        typer.echo(f"ca sha256:    {ca['fingerprint_sha256']}")
    typer.echo(f"tls-auth:     {'present' if report['tls_auth_present'] else 'MISSING'}")
    typer.echo(f"placeholders: {report['placeholder_dialect']}")
    settings = report["vpn_settings"]
    if settings:
        typer.echo(
            f"VpnSettings:  server {settings['server']}, type {settings['vpn_type']}, "
            f"routes {', '.join(settings['routes']) or '-'}"
        )
    for target_name, info in report["targets"].items():
        typer.echo(f"{TARGETS[target_name].title}:")
        if not info["ok"]:
            typer.echo(f"  cannot be generated: {info['error']}")
            continue
        if not info["edits"]:
            typer.echo("  no edits besides filling <cert> and <key>")
        for edit in info["edits"]:
            where = f"line {edit['line']}" if edit["line"] else "new line"
            typer.echo(f"  {where}: {edit['action']} '{edit['directive']}': {edit['reason']}")
        for warning in info["warnings"]:
            typer.echo(f"  warning: {warning['message']}")


@app.command()
@guard
def check(
    profile_path: Annotated[
        Path,
        typer.Argument(
            metavar="PROFILE",
            help="A finished .ovpn profile, or a Tunnelblick .tblk folder or .tblk.zip.",
        ),
    ],
    target: Annotated[str, typer.Option("--target", "-t", help=f"One of: {', '.join(TARGETS)}.")],
    passphrase_env: PassEnvOpt = None,
    passphrase_file: PassFileOpt = None,
    warn_days: Annotated[
        int,
        typer.Option("--warn-days", min=0, help="Warn when the certificate expires within DAYS."),
    ] = 30,
    json_output: JsonOpt = False,
) -> None:
    """Lint a finished profile for a client. Exit 0 when clean, 5 with errors."""
    bundle_findings: list[Finding] = []
    if profile_path.is_dir() or profile_path.suffix.lower() == ".zip":
        if target != "tunnelblick":
            raise UsageError(
                f"{profile_path}: a .tblk bundle is checked with --target tunnelblick",
                hint="pass --target tunnelblick, or the .ovpn file for other targets",
            )
        bundle = read_bundle(profile_path)
        bundle_findings = check_bundle(bundle)
        data = bundle.config or b""
    else:
        try:
            data = profile_path.read_bytes()
        except OSError as exc:
            raise ProfileError(
                f"{profile_path}: cannot read ({exc.strerror})", hint="check the path"
            ) from exc
    profile = Profile.parse(data, str(profile_path))
    result = check_profile(
        profile,
        target,
        passphrase=passphrase_source(passphrase_env, passphrase_file),
        warn_days=warn_days,
        extra=bundle_findings,
    )
    if json_output:
        print_json(
            {
                "schema_version": SCHEMA_VERSION,
                "command": "check",
                "profile": result.source,
                "target": result.target,
                "clean": result.clean,
                "findings": [f.to_json() for f in result.findings],
            }
        )
    else:
        for finding in result.findings:
            label = "error" if finding.level == "error" else "warning"
            typer.echo(f"{profile_path}: {label}: {finding.message}")
        if result.clean:
            typer.echo(f"{profile_path}: ok for {TARGETS[result.target].title}")
    if not result.clean:
        raise typer.Exit(int(ExitCode.FINDINGS))


@app.command()
@guard
def demo(
    output: OutputOpt = Path("ovpn-toolkit-demo"),
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier demo folder.")] = False,
) -> None:
    """Run the batch flow on built-in synthetic material (DEMO): package, CA, users.yaml."""
    result = run_demo(output, force=force)
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
            f"{str(cert.get('not_after', '-'))[:10]}, targets {' '.join(outcome.targets)}{issued}"
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


def _mount_subcommands() -> None:
    from toolkit.cli_batch import register
    from toolkit.cli_ca import ca_app

    register(app)
    app.add_typer(ca_app, name="ca")


_mount_subcommands()


def main() -> Any:
    """Console entry point."""
    try:
        return app(prog_name="ovpn-toolkit")
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
