"""`generate`, `inspect` and `check`: one user's profiles, a package's report, a profile's lint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from toolkit.cli.commands import command_app
from toolkit.cli.common import (
    SCHEMA_VERSION,
    JsonOpt,
    PackageArg,
    PassEnvOpt,
    PassFileOpt,
    TargetOpt,
    WarnDaysOpt,
    complete_target,
    guard,
    passphrase_source,
    plain_source,
    print_json,
    warn,
)
from toolkit.cli.constants import DEFAULT_TARGETS, TARGET_NAMES
from toolkit.errors import ExitCode, ProfileError, UsageError

# the core is imported inside the commands: `--help` must not load cryptography or jinja2
if TYPE_CHECKING:
    from toolkit.findings import Finding
    from toolkit.plan import UserPlan

OutputOpt = Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Output folder.")]


def _print_warnings(findings: list[Finding]) -> None:
    for finding in findings:
        if finding.level == "warning":
            warn(finding.message + (f" ({finding.hint})" if finding.hint else ""))


def _plan_summary(plan: UserPlan, output: Path, *, dry_run: bool) -> None:
    from toolkit.targets import TARGETS

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
    if plan.guide is not None:
        typer.echo("  Install guide:")
        typer.echo(f"    {verb} {output / plan.name / plan.guide.path} ({plan.guide.mode:04o})")


def _next_steps(plan: UserPlan, output: Path) -> list[str]:
    from toolkit.targets import TARGETS

    user_dir = output / plan.name
    steps = [TARGETS[t.target].next_step(user_dir / t.deliverable.path) for t in plan.targets]
    if plan.guide is not None:
        steps.append(f"Send {user_dir / plan.guide.path} with them: the user's install guide.")
    steps.append(
        "These files hold the user's private key: deliver them over a private channel "
        "(docs/how-to/deliver.md)."
    )
    return steps


generate_app = command_app()
inspect_app = command_app()
check_app = command_app()


@generate_app.command("generate")
@guard
def generate(
    package: PackageArg,
    cert: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--cert",
            metavar="FILE",
            help="Client certificate (PEM; may also hold the key).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--key",
            metavar="FILE",
            help="Private key (PEM: plain, encrypted PKCS#8 or traditional).",
            show_default=False,
        ),
    ] = None,
    pfx: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--pfx",
            metavar="FILE",
            help="PKCS#12 (.pfx/.p12) with certificate, key and chain.",
            show_default=False,
        ),
    ] = None,
    chain: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--chain",
            metavar="FILE",
            help="Intermediate certificates (PEM), repeatable.",
            show_default=False,
        ),
    ] = None,
    root_cert: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--root",
            metavar="FILE",
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
            metavar="NAME",
            help="File and bundle name (default: from the certificate CN).",
            show_default=False,
        ),
    ] = None,
    display_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--display-name",
            metavar="TEXT",
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
            "--disable-dco",
            help="Add 'disable-dco' to the openvpn target (Windows OpenVPN 2.6).",
        ),
    ] = False,
    warn_days: WarnDaysOpt = 30,
    no_guide: Annotated[
        bool, typer.Option("--no-guide", help="Do not write the install guide INSTALL.html.")
    ] = False,
    contact: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--contact",
            metavar="TEXT",
            help="Who the user asks for help, shown in the install guide "
            "(e.g. 'IT desk, it@contoso.com').",
            show_default=False,
        ),
    ] = None,
    key_passphrase_env: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--key-passphrase-env",
            metavar="VAR",
            help="Encrypt the key inside the profiles (PKCS#8, AES-256) with the passphrase in "
            "this environment variable; the user types it when connecting.",
            show_default=False,
        ),
    ] = None,
    key_passphrase_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--key-passphrase-file",
            metavar="FILE",
            help="Like --key-passphrase-env, reading the passphrase from a file.",
            show_default=False,
        ),
    ] = None,
    pkcs12_passphrase_env: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--pkcs12-passphrase-env",
            metavar="VAR",
            help="Password of the PKCS#12 identity (ios-keychain, ikev2) from this "
            "environment variable. Default: a random one per target, in its own 0600 "
            "file beside the identity.",
            show_default=False,
        ),
    ] = None,
    pkcs12_passphrase_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--pkcs12-passphrase-file",
            metavar="FILE",
            help="Like --pkcs12-passphrase-env, reading the password from a file.",
            show_default=False,
        ),
    ] = None,
    embed_pkcs12_password: Annotated[
        bool,
        typer.Option(
            "--embed-pkcs12-password",
            help="Put the identity's password into the ikev2 profile (installs without "
            "typing it, as MDM needs; whoever has the file has the identity).",
        ),
    ] = False,
    sign_cert: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--sign-cert",
            metavar="PEM",
            help="Sign the .mobileconfig outputs (mobileconfig, ikev2) with this certificate "
            "(PEM, intermediates after it).",
            show_default=False,
        ),
    ] = None,
    sign_key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--sign-key",
            metavar="PEM",
            help="The signing certificate's private key (PEM, unencrypted).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write one user's profiles: validate the package and credentials first, then write."""
    from toolkit.credentials import load_roots
    from toolkit.output import check_writable, write_user
    from toolkit.package import check_output_location, load_package
    from toolkit.plan import CredentialInputs, UserRequest, plan_from_inputs
    from toolkit.signing import load_signer

    if disable_dco and "openvpn" not in (target or DEFAULT_TARGETS):
        raise UsageError(
            "--disable-dco applies to the openvpn target only", hint="add --target openvpn"
        )
    chosen = tuple(target or DEFAULT_TARGETS)
    if (sign_cert is None) != (sign_key is None):
        raise UsageError("--sign-cert and --sign-key go together", hint="give both")
    if sign_cert is not None and not {"mobileconfig", "ikev2"} & set(chosen):
        raise UsageError(
            "--sign-cert signs .mobileconfig outputs only",
            hint="add --target ikev2 or --target mobileconfig",
        )
    azure = load_package(package)
    check_output_location(azure, output)
    key_source = None
    if key_passphrase_env or key_passphrase_file:
        key_source = plain_source(key_passphrase_env, key_passphrase_file)
    pkcs12_source = None
    if pkcs12_passphrase_env or pkcs12_passphrase_file:
        pkcs12_source = plain_source(pkcs12_passphrase_env, pkcs12_passphrase_file)
    signer = None
    if sign_cert is not None and sign_key is not None:
        signer = load_signer(sign_cert, sign_key)
    plan = plan_from_inputs(
        azure,
        CredentialInputs(
            cert=cert,
            key=key,
            pfx=pfx,
            chain=tuple(chain or ()),
            passphrase=passphrase_source(passphrase_env, passphrase_file),
        ),
        UserRequest(
            name=name,
            display_name=display_name,
            targets=tuple(target or ()),
            disable_dco=disable_dco,
            replace_credentials=replace_credentials,
            warn_days=warn_days,
            key_passphrase=key_source,
            pkcs12_passphrase=pkcs12_source,
            embed_pkcs12_password=embed_pkcs12_password,
            signer=signer,
            guide=not no_guide,
            contact=contact,
        ),
        roots=load_roots(root_cert or []),
    )
    if dry_run:
        check_writable(output, plan.name, plan.files, force)
    else:
        write_user(output, plan.name, plan.files, force=force)
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


@inspect_app.command("inspect")
@guard
def inspect(
    package: PackageArg,
    json_output: JsonOpt = False,
) -> None:
    """Show what a package holds and what `generate` would change for each target."""
    from toolkit.inspection import inspect_package
    from toolkit.package import load_package
    from toolkit.targets import TARGETS

    azure = load_package(package)
    report = inspect_package(azure)
    if json_output:
        print_json({"schema_version": SCHEMA_VERSION, "command": "inspect", **report})
        return
    gw = report["gateway"]
    entry = report["profile_entry"] or "no OpenVPN profile"
    typer.echo(f"package:      {report['source']} ({report['kind']}, {entry})")
    if report["has_openvpn_profile"]:
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
    else:
        typer.echo("OpenVPN:      none (the gateway's tunnel type has no OpenVPN)")
    settings = report["vpn_settings"]
    if settings:
        typer.echo(
            f"VpnSettings:  server {settings['server']}, type {settings['vpn_type']}, "
            f"routes {', '.join(settings['routes']) or '-'}"
        )
        root = report["ikev2"]["server_root"]
        if root is None:
            typer.echo("server root:  no Generic/VpnServerRoot.cer")
        elif "subject" in root:
            typer.echo(
                f"server root:  {root['subject']} (expires {root['not_after'][:10]}; "
                "the root the gateway's IKEv2 certificate chains to)"
            )
        else:
            typer.echo(f"server root:  Generic/VpnServerRoot.cer is {root['error']}")
    else:
        typer.echo("IKEv2:        no Generic/VpnSettings.xml (the gateway has no IKEv2)")
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


@check_app.command("check")
@guard
def check(
    profile_path: Annotated[
        Path,
        typer.Argument(
            metavar="PROFILE",
            help="A finished .ovpn profile, or a Tunnelblick .tblk folder or .tblk.zip.",
        ),
    ],
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            metavar="TARGET",
            help=f"One of: {', '.join(TARGET_NAMES)}.",
            autocompletion=complete_target,
        ),
    ],
    passphrase_env: PassEnvOpt = None,
    passphrase_file: PassFileOpt = None,
    warn_days: WarnDaysOpt = 30,
    json_output: JsonOpt = False,
) -> None:
    """Lint a finished profile for a client. Exit 0 when clean, 5 with errors."""
    from toolkit.check import check_profile
    from toolkit.profile import Profile
    from toolkit.targets import TARGETS
    from toolkit.targets.tunnelblick import check_bundle, read_bundle

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
