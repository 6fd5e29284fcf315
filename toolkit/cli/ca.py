"""`ovpn-toolkit ca ...`: the certificate authority's command line (thin: the work is in
``toolkit.ca``). The root group loads it on use (``toolkit.cli.commands``)."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from toolkit.cli.commands import PlainGroup
from toolkit.cli.common import (
    PASSPHRASE_ENV_HELP,
    PASSPHRASE_FILE_HELP,
    SCHEMA_VERSION,
    JsonOpt,
    err,
    guard,
    passphrase_source,
    print_json,
    warn,
)
from toolkit.cli.constants import (
    DEFAULT_CLIENT_DAYS,
    DEFAULT_ROOT_CN,
    DEFAULT_ROOT_DAYS,
    DEFAULT_WARN_DAYS,
    GATEWAY_PLACEHOLDER,
    KEY_TYPES,
    RG_PLACEHOLDER,
)
from toolkit.errors import CredentialsError, UsageError

if TYPE_CHECKING:
    from toolkit import ca
    from toolkit.passphrase import PassphraseSource
else:

    class _LazyCA:
        """``toolkit.ca``, imported on first use: `--help` must not load cryptography."""

        def __getattr__(self, name: str) -> Any:
            import toolkit.ca

            return getattr(toolkit.ca, name)

    ca = _LazyCA()


def check_name(name: str, what: str) -> str:
    from toolkit.names import check_name as check

    return check(name, what)


ca_app = typer.Typer(
    name="ca",
    cls=PlainGroup,
    help="A certificate authority for Azure P2S: create the root, issue per-user client "
    "certificates, list, revoke and renew them.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# --- shared options -------------------------------------------------------------------------------
CaDirOpt = Annotated[
    Path, typer.Option("--ca", help="The CA folder made by `ca init`.", show_default=False)
]
PassEnvOpt = Annotated[
    str | None,
    typer.Option("--passphrase-env", help="CA key: " + PASSPHRASE_ENV_HELP, show_default=False),
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="CA key: " + PASSPHRASE_FILE_HELP, show_default=False),
]
KeyTypeOpt = Annotated[
    str, typer.Option("--key-type", help="Key type: " + ", ".join(KEY_TYPES) + ".")
]
GatewayOpt = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        help="Virtual network gateway name, for the printed Azure commands (`ca init` "
        "remembers it in ca.json for every later command).",
        show_default=False,
    ),
]
ResourceGroupOpt = Annotated[
    str | None,
    typer.Option(
        "--resource-group",
        help="The gateway's resource group, for the printed Azure commands (`ca init` "
        "remembers it in ca.json for every later command).",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Folder for NAME.pem, NAME.key and NAME.pfx (default: CA/issued/NAME/).",
        show_default=False,
    ),
]
PfxOpt = Annotated[
    bool, typer.Option("--pfx", help="Also write a password-protected PKCS#12 (NAME.pfx).")
]
PfxLegacyOpt = Annotated[
    bool,
    typer.Option(
        "--pfx-legacy",
        help="PKCS#12 with 3DES + SHA-1 MAC (older Windows, iOS keychain) instead of AES-256 "
        "+ SHA-256; implies --pfx.",
    ),
]
PfxEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--pfx-passphrase-env",
        help="Read the PKCS#12 password from this environment variable.",
        show_default=False,
    ),
]
PfxFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--pfx-passphrase-file",
        help="Read the PKCS#12 password from this file (first line).",
        show_default=False,
    ),
]


# --- helpers --------------------------------------------------------------------------------------
def _date(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d}"


def _new_secret(source: PassphraseSource, what: str) -> bytes | None:
    """A new passphrase: from the env/file source, else asked twice at the hidden prompt."""
    if source.given or source.prompt is None:
        return source.resolve(what)
    first = source.prompt(f"New passphrase for {what}")
    if not first:
        raise CredentialsError(f"the passphrase for {what} is empty", hint="type a passphrase")
    if source.prompt("Repeat it") != first:
        raise CredentialsError("the two passphrases differ", hint="run the command again")
    return first.encode("utf-8")


def _pfx_password(want: bool, env: str | None, file: Path | None, what: str) -> bytes | None:
    """The PKCS#12 password when a .pfx was asked for (``None`` otherwise)."""
    if not want:
        if env or file:
            raise UsageError(
                "--pfx-passphrase-env/--pfx-passphrase-file given without --pfx",
                hint="add --pfx (or --pfx-legacy) to write a PKCS#12",
            )
        return None
    password = _new_secret(passphrase_source(env, file), what)
    if password is None:
        raise UsageError(
            "--pfx needs a password for the PKCS#12 file",
            hint="use --pfx-passphrase-env VAR or --pfx-passphrase-file FILE "
            "(or run in a terminal to be prompted)",
        )
    return password


def _open(directory: Path, env: str | None, file: Path | None) -> ca.CertificateAuthority:
    source = passphrase_source(env, file)
    authority = ca.open_ca(directory, source)
    if not authority.key_encrypted:
        if source.given:
            warn(f"{authority.paths.root_key} is not encrypted; the passphrase was not needed")
        else:
            warn(f"{authority.paths.root_key} is not encrypted (made with --no-passphrase)")
    return authority


def _print_commands(commands: ca.AzureCommands, action: str) -> None:
    typer.echo(f"{action} with the Azure CLI:")
    typer.echo(f"  {commands.az}")
    typer.echo("or with Azure PowerShell:")
    typer.echo(f"  {commands.powershell}")
    if commands.placeholders:
        err(
            f"note: replace {RG_PLACEHOLDER} and {GATEWAY_PLACEHOLDER} in these commands "
            "(or pass --resource-group and --gateway; `ca init` remembers them in ca.json)"
        )


def revoke_hint(
    ca_dir: Path, thumbprint: str, gateway: str | None = None, resource_group: str | None = None
) -> str:
    """The `ca revoke` line for one certificate (gateway and resource group come from ca.json
    unless given here)."""
    parts = ["ovpn-toolkit", "ca", "revoke", "--ca", str(ca_dir), thumbprint]
    if gateway:
        parts += ["--gateway", gateway]
    if resource_group:
        parts += ["--resource-group", resource_group]
    return shlex.join(parts)


def superseded_line(thumbprint: str, not_after: str, command: str) -> str:
    """One wording for a superseded certificate, in `ca renew` and `batch --renew-within`."""
    return (
        f"Superseded {thumbprint} (expires {not_after}); Azure accepts it until then. "
        f"To cut it off now: {command}"
    )


def _pfx_kind(legacy: bool) -> str:
    return "PKCS#12, 3DES + SHA-1 MAC (legacy)" if legacy else "PKCS#12, AES-256 + SHA-256 MAC"


def _issue_json(command: str, result: ca.IssueResult, pfx_legacy: bool) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "certificate": result.entry.to_json(),
        "files": {
            "cert": str(result.cert_path),
            "key": str(result.key_path),
            "pfx": str(result.pfx_path) if result.pfx_path else None,
            "pfx_encryption": (
                ("legacy-3des-sha1" if pfx_legacy else "aes256-sha256") if result.pfx_path else None
            ),
        },
        "superseded": [entry.to_json() for entry in result.superseded],
        "warnings": list(result.warnings),
    }


def _print_issued(verb: str, result: ca.IssueResult, pfx_legacy: bool) -> None:
    entry = result.entry
    typer.echo(f"{verb} {entry.name} (CN={entry.cn})")
    typer.echo(f"  serial      {entry.serial}")
    typer.echo(f"  thumbprint  {entry.thumbprint_sha1}")
    typer.echo(f"  valid       {_date(entry.not_before)} to {_date(entry.not_after)}")
    typer.echo(f"  files       {result.cert_path}")
    typer.echo(f"              {result.key_path} (private key, mode 0600)")
    if result.pfx_path:
        typer.echo(f"              {result.pfx_path} ({_pfx_kind(pfx_legacy)})")


def _next_generate(authority: ca.CertificateAuthority, result: ca.IssueResult) -> None:
    typer.echo(
        f"Next: ovpn-toolkit generate PACKAGE --cert {result.cert_path} --key {result.key_path} "
        f"--root {authority.paths.root_pem} --name {result.entry.name}"
    )


# --- commands -------------------------------------------------------------------------------------
@ca_app.command("init")
@guard
def init_command(
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The new CA folder (made 0700).", show_default=False),
    ],
    cn: Annotated[str, typer.Option("--cn", help="Common name of the root.")] = DEFAULT_ROOT_CN,
    days: Annotated[
        int, typer.Option("--days", help="Validity of the root in days.")
    ] = DEFAULT_ROOT_DAYS,
    key_type: KeyTypeOpt = "rsa2048",
    passphrase_env: PassEnvOpt = None,
    passphrase_file: PassFileOpt = None,
    no_passphrase: Annotated[
        bool,
        typer.Option("--no-passphrase", help="Leave the CA key unencrypted (not recommended)."),
    ] = False,
    gateway: GatewayOpt = None,
    resource_group: ResourceGroupOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Create a P2S root CA and print the commands that upload it to the gateway."""
    key_file = output / "root.key"
    if no_passphrase:
        if passphrase_env or passphrase_file:
            raise UsageError(
                "--no-passphrase contradicts --passphrase-env/--passphrase-file",
                hint="use one or the other",
            )
        passphrase = None
    else:
        passphrase = _new_secret(
            passphrase_source(passphrase_env, passphrase_file), f"the new CA key {key_file}"
        )
        if passphrase is None:
            raise UsageError(
                "no passphrase for the new CA key",
                hint="use --passphrase-env VAR or --passphrase-file FILE, run in a terminal to be "
                "prompted, or --no-passphrase to leave the key unencrypted",
            )
    result = ca.init_ca(
        output,
        cn,
        days=days,
        key_type=key_type,
        passphrase=passphrase,
        gateway=gateway,
        resource_group=resource_group,
    )
    if passphrase is None:
        warn(
            f"{key_file} is NOT encrypted: anyone who can read it can issue certificates "
            "your gateway accepts"
        )
    commands = result.upload_commands(gateway=gateway, resource_group=resource_group)
    paths = result.paths
    info = result.info
    if json_output:
        root = info.to_json()
        print_json(
            {
                "schema_version": SCHEMA_VERSION,
                "command": "ca init",
                "directory": str(output),
                "root": {
                    "subject": result.certificate.subject.rfc4514_string(),
                    **{k: root[k] for k in ("thumbprint_sha1", "not_before", "not_after")},
                    **{k: root[k] for k in ("key_type", "key_encrypted")},
                },
                "files": {
                    "key": str(paths.root_key),
                    "cert_pem": str(paths.root_pem),
                    "cert_der": str(paths.root_cer),
                    "public_cert_data": str(paths.public_cert_data),
                    "ledger": str(paths.ledger),
                    "metadata": str(paths.metadata),
                },
                "azure": {
                    "name": info.azure_name,
                    "gateway": info.gateway,
                    "resource_group": info.resource_group,
                    "public_cert_data": result.public_cert_data,
                    "commands": commands.to_json(),
                },
            }
        )
        return
    typer.echo(f"Created a P2S root CA in {output}")
    typer.echo(f"  subject     CN={info.cn}")
    typer.echo(f"  thumbprint  {info.thumbprint_sha1}")
    typer.echo(f"  valid       {_date(info.not_before)} to {_date(info.not_after)}")
    encrypted = "encrypted" if info.key_encrypted else "NOT encrypted"
    typer.echo(f"  key         {paths.root_key} ({info.key_type}, {encrypted}, mode 0600)")
    typer.echo(f"  root        {paths.root_pem} (PEM), {paths.root_cer} (DER)")
    typer.echo(f"  azure data  {paths.public_cert_data} (one-line base64 for the portal)")
    typer.echo("")
    _print_commands(commands, f"Upload the root to the gateway as {info.azure_name}")
    typer.echo(
        f"or in the portal: the gateway > Point-to-site configuration > Root certificates: "
        f"name {info.azure_name}, public certificate data = the line in {paths.public_cert_data}"
    )


@ca_app.command("issue")
@guard
def issue_command(
    ca_dir: CaDirOpt,
    name: Annotated[
        str,
        typer.Option("--name", "-n", help="Certificate and file name.", show_default=False),
    ],
    email: Annotated[
        str | None,
        typer.Option(
            "--email", help="E-mail address; becomes the CN (name@domain).", show_default=False
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = (DEFAULT_CLIENT_DAYS),
    key_type: KeyTypeOpt = "rsa2048",
    output: OutputOpt = None,
    pfx: PfxOpt = False,
    pfx_legacy: PfxLegacyOpt = False,
    pfx_passphrase_env: PfxEnvOpt = None,
    pfx_passphrase_file: PfxFileOpt = None,
    passphrase_env: PassEnvOpt = None,
    passphrase_file: PassFileOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Issue a client certificate as Azure wants it (clientAuth first, SHA-256, RSA)."""
    check_name(name, "--name")  # before any prompt
    authority = _open(ca_dir, passphrase_env, passphrase_file)
    password = _pfx_password(
        pfx or pfx_legacy, pfx_passphrase_env, pfx_passphrase_file, f"the PKCS#12 of {name}"
    )
    result = authority.issue(
        name,
        email=email,
        days=days,
        key_type=key_type,
        output_dir=output,
        pfx_password=password,
        pfx_legacy=pfx_legacy,
    )
    for message in result.warnings:
        warn(message)
    if json_output:
        print_json(_issue_json("ca issue", result, pfx_legacy))
        return
    _print_issued("Issued", result, pfx_legacy)
    _next_generate(authority, result)


@ca_app.command("renew")
@guard
def renew_command(
    name: Annotated[str, typer.Argument(help="The certificate name to renew.", show_default=False)],
    ca_dir: CaDirOpt,
    days: Annotated[
        int | None,
        typer.Option("--days", help="Validity in days (default: as before).", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Folder for the new files (default: where the old ones are)."
        ),
    ] = None,
    pfx: PfxOpt = False,
    pfx_legacy: PfxLegacyOpt = False,
    pfx_passphrase_env: PfxEnvOpt = None,
    pfx_passphrase_file: PfxFileOpt = None,
    passphrase_env: PassEnvOpt = None,
    passphrase_file: PassFileOpt = None,
    gateway: GatewayOpt = None,
    resource_group: ResourceGroupOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Issue a successor (same name, e-mail and key type); the old one becomes superseded."""
    check_name(name, "certificate name")
    authority = _open(ca_dir, passphrase_env, passphrase_file)
    password = _pfx_password(
        pfx or pfx_legacy, pfx_passphrase_env, pfx_passphrase_file, f"the PKCS#12 of {name}"
    )
    result = authority.renew(
        name, days=days, output_dir=output, pfx_password=password, pfx_legacy=pfx_legacy
    )
    for message in result.warnings:
        warn(message)
    if json_output:
        print_json(_issue_json("ca renew", result, pfx_legacy))
        return
    _print_issued("Renewed", result, pfx_legacy)
    for old in result.superseded:
        typer.echo(
            superseded_line(
                old.thumbprint_sha1,
                _date(old.not_after),
                revoke_hint(ca_dir, old.thumbprint_sha1, gateway, resource_group),
            )
        )
    _next_generate(authority, result)


_STATE_COLOURS = {"expired": "red", "expiring": "yellow", "not-yet-valid": "yellow"}


@ca_app.command("list")
@guard
def list_command(
    ca_dir: CaDirOpt,
    expiring_within: Annotated[
        int | None,
        typer.Option(
            "--expiring-within",
            help="Only valid certificates that expire within DAYS (or have expired).",
            min=0,
            show_default=False,
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Show the ledger; expired and soon-expiring certificates are highlighted."""
    rows = ca.list_certificates(ca_dir, expiring_within=expiring_within)
    if json_output:
        print_json(
            {
                "schema_version": SCHEMA_VERSION,
                "command": "ca list",
                "ca": str(ca_dir),
                "expiring_within": expiring_within,
                "warn_days": DEFAULT_WARN_DAYS if expiring_within is None else expiring_within,
                "certificates": [row.to_json() for row in rows],
            }
        )
        return
    if not rows:
        if expiring_within is None:
            from toolkit.ca.ledger import CAPaths

            typer.echo(f"No certificates issued yet ({CAPaths(ca_dir).ledger}).")
        else:
            typer.echo(f"No valid certificate expires within {expiring_within} days.")
        return
    header = ("NAME", "CN", "STATUS", "NOT AFTER", "DAYS", "THUMBPRINT")
    table = [
        (
            row.entry.name,
            row.entry.cn,
            row.state,
            _date(row.entry.not_after),
            str(row.days_left),
            row.entry.thumbprint_sha1,
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]

    def line(cells: tuple[str, ...], state: str | None = None) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        if state in _STATE_COLOURS:
            padded[2] = typer.style(padded[2], fg=_STATE_COLOURS[state], bold=True)
        return "  ".join(padded).rstrip()

    typer.echo(line(header))
    for cells, row in zip(table, rows, strict=True):
        typer.echo(line(cells, row.state))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    typer.echo(f"{len(rows)} certificate{'s' if len(rows) != 1 else ''}: {summary}")
    if counts.get("expired") or counts.get("expiring"):
        err(f"note: renew with `ovpn-toolkit ca renew --ca {ca_dir} NAME`")


@ca_app.command("revoke")
@guard
def revoke_command(
    name_or_thumbprint: Annotated[
        str,
        typer.Argument(
            metavar="NAME|THUMBPRINT",
            help="A certificate name (its valid certificate) or a SHA-1 thumbprint.",
            show_default=False,
        ),
    ],
    ca_dir: CaDirOpt,
    gateway: GatewayOpt = None,
    resource_group: ResourceGroupOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Mark a certificate revoked and print the commands that revoke it on the gateway."""
    result = ca.revoke(ca_dir, name_or_thumbprint, gateway=gateway, resource_group=resource_group)
    entry = result.entry
    if result.already_revoked and entry.revoked_at:
        warn(
            f"{entry.name} ({entry.thumbprint_sha1}) was already revoked on "
            f"{_date(entry.revoked_at)}; here are the commands again"
        )
    if json_output:
        print_json(
            {
                "schema_version": SCHEMA_VERSION,
                "command": "ca revoke",
                "already_revoked": result.already_revoked,
                "certificate": entry.to_json(),
                "azure": {
                    "name": entry.azure_revocation_name,
                    "commands": result.commands.to_json(),
                },
            }
        )
        return
    verb = "Already revoked:" if result.already_revoked else "Revoked"
    typer.echo(
        f"{verb} {entry.name} (CN={entry.cn}, serial {entry.serial}, "
        f"thumbprint {entry.thumbprint_sha1}) in the ledger."
    )
    _print_commands(
        result.commands, "Azure has no CRL for P2S: block the certificate on the gateway"
    )
