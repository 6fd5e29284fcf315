"""`ovpn-toolkit ca ...` through typer's CliRunner: stdout, stderr and exit codes separately."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner, Result

from toolkit import ca
from toolkit.cli.ca import _new_secret, ca_app
from toolkit.errors import CredentialsError
from toolkit.passphrase import PassphraseSource

CA_PASS = "cli ca passphrase"
PFX_PASS = "cli pfx password"
ENV = {"OVT_CA_PASS": CA_PASS, "OVT_PFX_PASS": PFX_PASS}
SECRETS = (CA_PASS, PFX_PASS, "PRIVATE KEY")


def run(*args: str | Path, color: bool = False) -> Result:
    result = CliRunner().invoke(ca_app, [str(a) for a in args], env=ENV, color=color)
    for secret in SECRETS:  # never any key material or passphrase on either stream
        assert secret not in result.stdout
        assert secret not in result.stderr
    return result


@pytest.fixture(scope="module")
def cli_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "pki"
    result = run(
        "init", "--output", directory, "--cn", "CLI Root", "--passphrase-env", "OVT_CA_PASS"
    )
    assert result.exit_code == 0, result.stderr
    return directory


def thumbprint_of(path: Path) -> str:
    der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - Azure's thumbprint


def issue(directory: Path, name: str, *extra: str) -> Result:
    return run(
        "issue", "--ca", directory, "--name", name, "--passphrase-env", "OVT_CA_PASS", *extra
    )


# --- init -----------------------------------------------------------------------------------------
def test_init_prints_upload_commands(cli_ca: Path) -> None:
    assert (cli_ca / "root.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    result = run(
        "init",
        "--output",
        cli_ca.parent / "second",
        "--cn",
        "Second Root",
        "--passphrase-env",
        "OVT_CA_PASS",
        "--gateway",
        "VNet1GW",
        "--resource-group",
        "rg-vpn",
    )
    assert result.exit_code == 0, result.stderr
    second = cli_ca.parent / "second"
    cer = (second / "root.cer").resolve()
    data = (second / "root-public-cert-data.txt").read_text().strip()
    lines = result.stdout.splitlines()
    assert (
        "  az network vnet-gateway root-cert create --resource-group rg-vpn --gateway-name VNet1GW "
        f"--name Second-Root --public-cert-data {cer}"
    ) in lines
    assert (
        "  Add-AzVpnClientRootCertificate -VpnClientRootCertificateName Second-Root "
        "-VirtualNetworkGatewayName VNet1GW -ResourceGroupName rg-vpn "
        f'-PublicCertData "{data}"'
    ) in lines
    assert "note:" not in result.stderr


def test_init_placeholders_and_json(tmp_path: Path) -> None:
    result = run("init", "-o", tmp_path / "p", "--passphrase-env", "OVT_CA_PASS", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "ca init" and document["schema_version"] == 1
    assert document["root"]["key_encrypted"] is True
    commands = document["azure"]["commands"]
    assert commands["placeholders"] is True
    assert "--resource-group <resource-group> --gateway-name <gateway>" in commands["az"]
    assert document["azure"]["public_cert_data"] in commands["powershell"]
    plain = run("init", "-o", tmp_path / "q", "--passphrase-env", "OVT_CA_PASS")
    assert "replace <resource-group> and <gateway>" in plain.stderr


def test_init_refuses_existing_ca(cli_ca: Path) -> None:
    result = run("init", "--output", cli_ca, "--passphrase-env", "OVT_CA_PASS")
    assert result.exit_code == 4
    assert result.stdout == ""
    assert "ERROR: " in result.stderr and "already holds a CA" in result.stderr
    assert "hint: " in result.stderr


def test_init_needs_a_passphrase_or_explicit_no_passphrase(tmp_path: Path) -> None:
    result = run("init", "--output", tmp_path / "a")  # stdin is not a terminal: no prompt
    assert result.exit_code == 2
    assert "no passphrase for the new CA key" in result.stderr
    assert "--no-passphrase" in result.stderr
    assert not (tmp_path / "a").exists()

    both = run("init", "-o", tmp_path / "b", "--no-passphrase", "--passphrase-env", "OVT_CA_PASS")
    assert both.exit_code == 2 and "contradicts" in both.stderr

    plain = run("init", "-o", tmp_path / "c", "--no-passphrase")
    assert plain.exit_code == 0
    assert "warning: " in plain.stderr and "NOT encrypted" in plain.stderr
    assert (tmp_path / "c" / "root.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


def test_init_bad_key_type(tmp_path: Path) -> None:
    result = run("init", "-o", tmp_path / "k", "--no-passphrase", "--key-type", "rsa1024")
    assert result.exit_code == 2 and "key type 'rsa1024' is not supported" in result.stderr


def test_new_secret_prompts_twice() -> None:
    answers = iter(["one", "one"])
    source = PassphraseSource(prompt=lambda _label: next(answers))
    assert _new_secret(source, "x") == b"one"
    answers = iter(["one", "two"])
    with pytest.raises(CredentialsError, match="differ"):
        _new_secret(PassphraseSource(prompt=lambda _label: next(answers)), "x")


# --- issue ----------------------------------------------------------------------------------------
def test_issue_with_pfx(cli_ca: Path) -> None:
    result = issue(
        cli_ca,
        "alice",
        "--email",
        "alice@contoso.com",
        "--pfx",
        "--pfx-passphrase-env",
        "OVT_PFX_PASS",
    )
    assert result.exit_code == 0, result.stderr
    cert = cli_ca / "issued" / "alice" / "alice.pem"
    assert f"thumbprint  {thumbprint_of(cert)}" in result.stdout
    assert "Issued alice (CN=alice@contoso.com)" in result.stdout
    assert "AES-256" in result.stdout
    loaded = pkcs12.load_pkcs12((cert.parent / "alice.pfx").read_bytes(), PFX_PASS.encode())
    assert loaded.cert is not None
    assert loaded.cert.certificate == x509.load_pem_x509_certificate(cert.read_bytes())
    assert result.stderr == ""


def test_issue_json_and_legacy_pfx(cli_ca: Path, tmp_path: Path) -> None:
    out = tmp_path / "bob-files"
    result = issue(
        cli_ca,
        "bob",
        "--output",
        str(out),
        "--pfx-legacy",
        "--pfx-passphrase-env",
        "OVT_PFX_PASS",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "ca issue"
    assert document["certificate"]["thumbprint_sha1"] == thumbprint_of(out / "bob.pem")
    assert document["files"]["pfx"] == str(out / "bob.pfx")
    assert document["files"]["pfx_encryption"] == "legacy-3des-sha1"
    assert pkcs12.load_pkcs12((out / "bob.pfx").read_bytes(), PFX_PASS.encode()).key is not None


def test_issue_errors(cli_ca: Path) -> None:
    wrong = CliRunner().invoke(
        ca_app,
        ["issue", "--ca", str(cli_ca), "--name", "carol", "--passphrase-env", "WRONG"],
        env={"WRONG": "definitely wrong"},
    )
    assert wrong.exit_code == 2
    assert "wrong passphrase for the CA key" in wrong.stderr
    assert "definitely wrong" not in wrong.stderr + wrong.stdout

    no_pw = issue(cli_ca, "carol", "--pfx")
    assert no_pw.exit_code == 2 and "--pfx needs a password" in no_pw.stderr

    stray = issue(cli_ca, "carol", "--pfx-passphrase-env", "OVT_PFX_PASS")
    assert stray.exit_code == 2 and "without --pfx" in stray.stderr

    bad = issue(cli_ca, "../carol")
    assert bad.exit_code == 2 and "--name '../carol'" in bad.stderr

    missing = issue(cli_ca.parent / "nope", "carol")
    assert missing.exit_code == 2 and "no such CA folder" in missing.stderr
    assert ca.find_current(cli_ca, "carol") is None


def test_issue_twice_is_refused(cli_ca: Path) -> None:
    assert issue(cli_ca, "dan").exit_code == 0
    again = issue(cli_ca, "dan")
    assert again.exit_code == 2
    assert "already has a valid certificate" in again.stderr and "ca renew" in again.stderr


# --- list -----------------------------------------------------------------------------------------
def test_list_highlights_expiring(cli_ca: Path) -> None:
    assert issue(cli_ca, "soon", "--days", "5").exit_code == 0
    table = run("list", "--ca", cli_ca)
    assert table.exit_code == 0
    header = table.stdout.splitlines()[0].split()
    assert header == ["NAME", "CN", "STATUS", "NOT", "AFTER", "DAYS", "THUMBPRINT"]
    soon_line = next(line for line in table.stdout.splitlines() if line.startswith("soon "))
    assert " expiring " in soon_line
    assert thumbprint_of(cli_ca / "issued" / "soon" / "soon.pem") in soon_line

    filtered = run("list", "--ca", cli_ca, "--expiring-within", "30", color=True)
    assert filtered.exit_code == 0
    rows = filtered.stdout.splitlines()[1:-1]
    assert [row.split()[0] for row in rows] == ["soon"]
    assert "\x1b[33m" in rows[0]  # yellow, bold
    assert "renew" in filtered.stderr

    none = run("list", "--ca", cli_ca, "--expiring-within", "1")
    assert "No valid certificate expires within 1 days." in none.stdout


def test_list_json(cli_ca: Path) -> None:
    assert issue(cli_ca, "erin").exit_code == 0
    result = run("list", "--ca", cli_ca, "--json")
    document = json.loads(result.stdout)
    rows = {row["name"]: row for row in document["certificates"]}
    assert rows["erin"]["state"] == "valid" and rows["erin"]["status"] == "valid"
    assert rows["erin"]["days_left"] in (364, 365)
    assert document["warn_days"] == ca.DEFAULT_WARN_DAYS


# --- revoke and renew -----------------------------------------------------------------------------
def test_revoke_prints_exact_commands(cli_ca: Path) -> None:
    assert issue(cli_ca, "frank", "--email", "frank@contoso.com").exit_code == 0
    thumbprint = thumbprint_of(cli_ca / "issued" / "frank" / "frank.pem")
    result = run(
        "revoke", "--ca", cli_ca, "frank", "--gateway", "VNet1GW", "--resource-group", "rg-vpn"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    name = f"frank-{thumbprint[:8]}"
    assert (
        "  az network vnet-gateway revoked-cert create --resource-group rg-vpn "
        f"--gateway-name VNet1GW --name {name} --thumbprint {thumbprint}"
    ) in lines
    assert (
        f"  Add-AzVpnClientRevokedCertificate -VpnClientRevokedCertificateName {name} "
        f"-VirtualNetworkGatewayName VNet1GW -ResourceGroupName rg-vpn -Thumbprint {thumbprint}"
    ) in lines
    again = run("revoke", "--ca", cli_ca, thumbprint.lower(), "--json")
    assert again.exit_code == 0
    assert "already revoked" in again.stderr
    document = json.loads(again.stdout)
    assert document["already_revoked"] is True
    assert document["certificate"]["status"] == "revoked"
    assert f"--thumbprint {thumbprint}" in document["azure"]["commands"]["az"]


def test_revoke_unknown(cli_ca: Path) -> None:
    result = run("revoke", "--ca", cli_ca, "nobody-here")
    assert result.exit_code == 2
    assert "no certificate named 'nobody-here'" in result.stderr


def test_renew_marks_superseded(cli_ca: Path) -> None:
    assert issue(cli_ca, "gail").exit_code == 0
    old = thumbprint_of(cli_ca / "issued" / "gail" / "gail.pem")
    result = run("renew", "gail", "--ca", cli_ca, "--passphrase-env", "OVT_CA_PASS")
    assert result.exit_code == 0, result.stderr
    new = thumbprint_of(cli_ca / "issued" / "gail" / "gail.pem")
    assert new != old
    assert f"thumbprint  {new}" in result.stdout
    assert f"Superseded {old}" in result.stdout
    assert f"ca revoke --ca {cli_ca} {old}" in result.stdout
    listing = json.loads(run("list", "--ca", cli_ca, "--json").stdout)["certificates"]
    states = {row["thumbprint_sha1"]: row["state"] for row in listing if row["name"] == "gail"}
    assert states == {old: "superseded", new: "valid"}

    unknown = run("renew", "nobody", "--ca", cli_ca, "--passphrase-env", "OVT_CA_PASS")
    assert unknown.exit_code == 2 and "no valid certificate to renew" in unknown.stderr


def test_mounted_in_the_main_cli() -> None:
    cli = pytest.importorskip("toolkit.cli")
    result = CliRunner().invoke(cli.app, ["ca", "--help"])
    assert result.exit_code == 0
    for command in ("init", "issue", "list", "revoke", "renew"):
        assert command in result.stdout
