"""The certificate authority core (toolkit.ca): everything is generated here and parsed back."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from toolkit import ca
from toolkit.ca import keys as pki
from toolkit.ca.azure import root_upload_commands
from toolkit.credentials import export_pkcs12, load_pem_credentials, load_roots
from toolkit.errors import CAError, CredentialsError, OutputError, UsageError
from toolkit.names import check_name
from toolkit.passphrase import PassphraseSource
from toolkit.validation import validate_credentials

CA_PASS = b"correct horse battery staple"
PFX_PASS = b"pfx password 1"
DAY = dt.timedelta(days=1)


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One encrypted CA shared by the session; tests use their own certificate names."""
    directory = tmp_path_factory.mktemp("ca") / "pki"
    ca.init_ca(directory, "Contoso P2S Root", passphrase=CA_PASS)
    return directory


@pytest.fixture(scope="session")
def authority(ca_dir: Path) -> ca.CertificateAuthority:
    return ca.open_ca(ca_dir, CA_PASS)


@pytest.fixture(scope="session")
def alice(authority: ca.CertificateAuthority) -> ca.IssueResult:
    return authority.issue("alice", email="alice@contoso.com", pfx_password=PFX_PASS)


@pytest.fixture(scope="session")
def alice_legacy(authority: ca.CertificateAuthority) -> ca.IssueResult:
    return authority.issue("alice-legacy", pfx_password=PFX_PASS, pfx_legacy=True)


@pytest.fixture(scope="session")
def fresh_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("template") / "pki"
    ca.init_ca(directory, "Fresh Root", passphrase=None)
    return directory


@pytest.fixture
def fresh_ca(fresh_template: Path, tmp_path: Path) -> ca.CertificateAuthority:
    """A CA of its own (unencrypted key, empty ledger): a copy, RSA generation is slow."""
    directory = tmp_path / "pki"
    shutil.copytree(fresh_template, directory)
    return ca.open_ca(directory)


def root_cert(directory: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sha1_hex(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324


def ledger_document(directory: Path) -> dict[str, object]:
    document = json.loads((directory / "ledger.json").read_text("utf-8"))
    assert isinstance(document, dict)
    return document


# --- the root -------------------------------------------------------------------------------------
def test_root_extensions(ca_dir: Path) -> None:
    root = root_cert(ca_dir)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature and not ku.value.key_encipherment
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(root.public_key())
    assert root.subject == root.issuer
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Contoso P2S Root"
    assert root.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    root.verify_directly_issued_by(root)  # self-signed, signature checks out
    public = root.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert lifetime == dt.timedelta(days=ca.DEFAULT_ROOT_DAYS)


def test_root_files_and_modes(ca_dir: Path) -> None:
    root = root_cert(ca_dir)
    der = root.public_bytes(serialization.Encoding.DER)
    assert (ca_dir / "root.cer").read_bytes() == der
    data = (ca_dir / "root-public-cert-data.txt").read_text("ascii")
    assert data.endswith("\n") and data.count("\n") == 1 and "-----" not in data
    assert base64.b64decode(data.strip(), validate=True) == der
    key_pem = (ca_dir / "root.key").read_bytes()
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_pem, CA_PASS)
    assert key.public_key().public_numbers() == root.public_key().public_numbers()  # type: ignore[union-attr]
    assert mode(ca_dir) == 0o700
    assert mode(ca_dir / "root.key") == 0o600
    info = json.loads((ca_dir / "ca.json").read_text("utf-8"))
    assert info["format"] == "ovpn-toolkit-ca" and info["key_encrypted"] is True
    assert info["thumbprint_sha1"] == sha1_hex(root)
    assert ledger_document(ca_dir)["format"] == "ovpn-toolkit-ca-ledger"


def test_root_upload_commands(ca_dir: Path) -> None:
    root = x509.load_pem_x509_certificate((ca_dir / "root.pem").read_bytes())
    commands = root_upload_commands(root, ca_dir / "root.cer", "Contoso-P2S-Root")
    cer = (ca_dir / "root.cer").resolve()
    assert commands.az == (
        "az network vnet-gateway root-cert create --resource-group <resource-group> "
        f"--gateway-name <gateway> --name Contoso-P2S-Root --public-cert-data {cer}"
    )
    data = (ca_dir / "root-public-cert-data.txt").read_text("ascii").strip()
    assert commands.powershell == (
        "Add-AzVpnClientRootCertificate -VpnClientRootCertificateName Contoso-P2S-Root "
        "-VirtualNetworkGatewayName <gateway> -ResourceGroupName <resource-group> "
        f'-PublicCertData "{data}"'
    )
    assert commands.placeholders
    given = root_upload_commands(
        root, ca_dir / "root.cer", "Contoso-P2S-Root", gateway="VNet1GW", resource_group="rg-vpn"
    )
    assert "--resource-group rg-vpn --gateway-name VNet1GW" in given.az
    assert "-VirtualNetworkGatewayName VNet1GW -ResourceGroupName rg-vpn" in given.powershell
    assert not given.placeholders


def test_init_refuses_to_overwrite(ca_dir: Path) -> None:
    before = (ca_dir / "root.pem").read_bytes()
    with pytest.raises(OutputError, match="already holds a CA") as info:
        ca.init_ca(ca_dir, "Another", passphrase=b"x")
    assert "never overwritten" in (info.value.hint or "")
    assert (ca_dir / "root.pem").read_bytes() == before


def test_init_unencrypted_and_existing_folder_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir(mode=0o755)
    result = ca.init_ca(directory, passphrase=None)
    assert mode(directory) == 0o700
    assert (directory / "root.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert result.info.key_encrypted is False
    assert result.info.cn == ca.DEFAULT_ROOT_CN
    opened = ca.open_ca(directory)
    assert opened.key_encrypted is False
    assert opened.thumbprint_sha1 == result.thumbprint_sha1


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"cn": ""}, UsageError, "1 to 64 characters"),
        ({"cn": "x" * 65}, UsageError, "1 to 64 characters"),
        ({"cn": "a\nb"}, UsageError, "control characters"),
        ({"days": 0}, UsageError, "out of range"),
        ({"days": 40000}, UsageError, "out of range"),
        ({"key_type": "rsa1024"}, UsageError, "not supported"),
        ({"key_type": "ec256"}, UsageError, "not supported"),
        ({"passphrase": b""}, CredentialsError, "empty"),
    ],
    ids=["empty-cn", "long-cn", "control-cn", "zero-days", "too-many-days", "rsa1024", "ec", "pw"],
)
def test_init_rejects(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], fragment: str
) -> None:
    args: dict[str, object] = {"passphrase": None, **kwargs}
    with pytest.raises(error, match=fragment):
        ca.init_ca(tmp_path / "pki", **args)  # type: ignore[arg-type]
    assert not (tmp_path / "pki").exists()


def test_key_type_typo_gets_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        ca.init_ca(tmp_path / "pki", passphrase=None, key_type="rsa2049")
    assert "did you mean 'rsa2048'" in (info.value.hint or "")


# --- opening the CA -------------------------------------------------------------------------------
def test_open_with_passphrase_source(ca_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVT_TEST_CA_PASS", CA_PASS.decode())
    opened = ca.open_ca(ca_dir, PassphraseSource(env="OVT_TEST_CA_PASS", environ=os.environ))
    assert opened.key_encrypted and opened.info.cn == "Contoso P2S Root"
    assert "PRIVATE" not in repr(opened)


def test_wrong_ca_passphrase(ca_dir: Path) -> None:
    with pytest.raises(CredentialsError, match="wrong passphrase") as info:
        ca.open_ca(ca_dir, b"not the passphrase")
    assert "not the passphrase" not in f"{info.value} {info.value.hint}"
    assert "root.key" in str(info.value)


def test_missing_ca_passphrase(ca_dir: Path) -> None:
    with pytest.raises(CredentialsError, match="encrypted and no passphrase"):
        ca.open_ca(ca_dir, PassphraseSource())


def test_not_a_ca_folder(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="no such CA folder"):
        ca.open_ca(tmp_path / "missing")
    with pytest.raises(CAError, match=r"not a CA folder \(no ca.json\)"):
        ca.open_ca(tmp_path)
    with pytest.raises(CAError, match="not a CA folder"):
        ca.read_ledger(tmp_path)


def test_missing_or_foreign_root_key(fresh_ca: ca.CertificateAuthority) -> None:
    directory = fresh_ca.directory
    other = pki.create_root("other")
    (directory / "root.key").write_bytes(other.key_pem())
    with pytest.raises(CAError, match="does not belong to"):
        ca.open_ca(directory)
    (directory / "root.key").unlink()
    with pytest.raises(CAError, match="cannot read the CA key"):
        ca.open_ca(directory)


def test_corrupt_ledger(fresh_ca: ca.CertificateAuthority) -> None:
    ledger = fresh_ca.directory / "ledger.json"
    ledger.write_text('{"format": "ovpn-toolkit-ca-ledger",\n "version": 1,\n "certificates": [')
    with pytest.raises(CAError, match=r"not valid JSON \(line 3"):
        ca.read_ledger(fresh_ca.directory)
    with pytest.raises(CAError, match="not valid JSON"):
        fresh_ca.issue("zed")
    ledger.write_text('{"format": "ovpn-toolkit-ca-ledger", "version": 1, "certificates": [{}]}')
    with pytest.raises(CAError, match="certificate #1 is malformed"):
        ca.read_ledger(fresh_ca.directory)


# --- issued client certificates -------------------------------------------------------------------
def test_client_extensions(alice: ca.IssueResult, ca_dir: Path) -> None:
    cert = x509.load_pem_x509_certificate(alice.cert_path.read_bytes())
    root = root_cert(ca_dir)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert next(iter(eku)) == ExtendedKeyUsageOID.CLIENT_AUTH
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_encipherment
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.content_commitment)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "alice@contoso.com"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@contoso.com"]
    # the user name as DNS SAN (an IKEv2 responder confirms a Local ID only from a SAN)
    assert san.get_values_for_type(x509.DNSName) == [alice.entry.name]
    assert cert.issuer == root.subject


def test_client_validity_and_serial(alice: ca.IssueResult, alice_legacy: ca.IssueResult) -> None:
    cert = alice.certificate
    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert now - cert.not_valid_before_utc < dt.timedelta(minutes=10)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=365)
    # a random positive 128-bit serial: 16 content octets in DER, top bits random
    assert 0 < cert.serial_number < 2**127
    assert cert.serial_number.bit_length() == 127
    assert len(cert.serial_number.to_bytes(16, "big")) == 16
    assert cert.serial_number != alice_legacy.certificate.serial_number
    assert alice.entry.serial == f"{cert.serial_number:032X}"


def test_cn_is_the_name_without_email(alice_legacy: ca.IssueResult) -> None:
    cert = alice_legacy.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice-legacy"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # a DNS SAN equal to the CN, as New-SelfSignedCertificate -DnsName makes it; no e-mail SAN
    assert san.get_values_for_type(x509.DNSName) == ["alice-legacy"]
    assert san.get_values_for_type(x509.RFC822Name) == []
    assert alice_legacy.entry.email is None and alice_legacy.entry.cn == "alice-legacy"


def test_chain_verifies_to_the_root(alice: ca.IssueResult, ca_dir: Path) -> None:
    root = root_cert(ca_dir)
    cert = alice.certificate
    cert.verify_directly_issued_by(root)
    public = root.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and cert.signature_hash_algorithm is not None
    public.verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )
    # full RFC 5280 path validation, client-auth policy (checks the EKU too)
    verifier = (
        verification.PolicyBuilder().store(verification.Store([root])).build_client_verifier()
    )
    verified = verifier.verify(cert, [])
    assert verified.chain[-1] == root
    # negative control: a different root with the same name does not verify it
    impostor = pki.create_root("Contoso P2S Root").certificate
    with pytest.raises((ValueError, InvalidSignature)):
        cert.verify_directly_issued_by(impostor)
    bad = verification.PolicyBuilder().store(verification.Store([impostor]))
    with pytest.raises(verification.VerificationError):
        bad.build_client_verifier().verify(cert, [])


def test_key_file_matches_and_modes(alice: ca.IssueResult, ca_dir: Path) -> None:
    assert alice.key_path == ca_dir / "issued" / "alice" / "alice.key"
    key = serialization.load_pem_private_key(alice.key_path.read_bytes(), None)
    assert key.public_key().public_numbers() == alice.certificate.public_key().public_numbers()  # type: ignore[union-attr]
    assert mode(alice.key_path) == 0o600
    assert alice.pfx_path is not None and mode(alice.pfx_path) == 0o600
    assert mode(alice.key_path.parent) == 0o700
    assert mode(ca_dir / "issued") == 0o700
    assert "PRIVATE" not in repr(alice)


def test_passes_the_projects_credential_validation(alice: ca.IssueResult, ca_dir: Path) -> None:
    creds = load_pem_credentials(alice.cert_path, alice.key_path, PassphraseSource())
    roots = load_roots([ca_dir / "root.pem"])
    findings = validate_credentials(creds, roots=roots, targets=["tunnelblick", "ios"])
    assert findings == []


# --- PKCS#12 --------------------------------------------------------------------------------------
def _openssl_info(path: Path, *extra: str) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    env = {**os.environ, "OVT_PFX_PASS": PFX_PASS.decode()}
    argv = ["openssl", "pkcs12", "-info", "-nokeys", "-noout", *extra]
    run = subprocess.run(
        [*argv, "-in", str(path), "-passin", "env:OVT_PFX_PASS"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout + run.stderr


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
def test_pkcs12_round_trip(
    legacy: bool, alice: ca.IssueResult, alice_legacy: ca.IssueResult, ca_dir: Path
) -> None:
    result = alice_legacy if legacy else alice
    assert result.pfx_path is not None
    data = result.pfx_path.read_bytes()
    loaded = pkcs12.load_pkcs12(data, PFX_PASS)
    assert loaded.cert is not None and loaded.key is not None
    assert loaded.cert.certificate == result.certificate
    assert loaded.cert.friendly_name == result.entry.cn.encode()
    assert loaded.key.public_key().public_numbers() == (  # type: ignore[union-attr]
        result.certificate.public_key().public_numbers()  # type: ignore[union-attr]
    )
    assert [c.certificate for c in loaded.additional_certs] == [root_cert(ca_dir)]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(data, b"wrong")
    if legacy:
        info = _openssl_info(result.pfx_path, "-legacy")
        assert "pbeWithSHA1And3-KeyTripleDES-CBC" in info
        assert "MAC: sha1" in info
    else:
        info = _openssl_info(result.pfx_path)
        assert "AES-256-CBC" in info and "PBKDF2" in info
        assert "MAC: sha256" in info


def test_pkcs12_needs_a_password(alice: ca.IssueResult) -> None:
    with pytest.raises(CredentialsError, match="empty"):
        export_pkcs12(alice.issued.private_key, alice.certificate, [], b"", friendly_name="x")


# --- ledger ---------------------------------------------------------------------------------------
def test_ledger_records_the_certificate(alice: ca.IssueResult, ca_dir: Path) -> None:
    entries = {e.serial: e for e in ca.read_ledger(ca_dir)}
    entry = entries[alice.entry.serial]
    cert = alice.certificate
    assert entry.name == "alice" and entry.cn == "alice@contoso.com"
    assert entry.thumbprint_sha1 == sha1_hex(cert)
    assert entry.not_before == cert.not_valid_before_utc
    assert entry.not_after == cert.not_valid_after_utc
    assert entry.status == "valid" and entry.key_type == "rsa2048"
    assert entry.files == {
        "cert": "issued/alice/alice.pem",
        "key": "issued/alice/alice.key",
        "pfx": "issued/alice/alice.pfx",
    }
    copy = entry.path(ca_dir, "ca_copy")
    assert copy is not None and copy.read_bytes() == alice.cert_path.read_bytes()
    raw = (ca_dir / "ledger.json").read_text("utf-8")
    assert "PRIVATE KEY" not in raw
    assert mode(ca_dir / "ledger.json") == 0o644
    recorded = entry.path(ca_dir, "cert")
    assert recorded is not None
    assert x509.load_pem_x509_certificate(recorded.read_bytes()) == cert


def test_find_current(alice: ca.IssueResult, ca_dir: Path) -> None:
    assert ca.find_current(ca_dir, "alice") == alice.entry
    assert ca.find_current(ca_dir, "ALICE") == alice.entry
    assert ca.find_current(ca_dir, "nobody") is None
    later = alice.entry.not_after + DAY
    assert ca.find_current(ca_dir, "alice", now=later) is None


def test_issue_refuses_a_second_valid_certificate(
    alice: ca.IssueResult, authority: ca.CertificateAuthority, ca_dir: Path
) -> None:
    before = (ca_dir / "ledger.json").read_bytes()
    for name in ("alice", "Alice"):
        with pytest.raises(CAError, match="already has a valid certificate") as info:
            authority.issue(name)
        assert "ca renew" in (info.value.hint or "")
    assert (ca_dir / "ledger.json").read_bytes() == before


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "a/b", "a b", "../x", "x" * 65, "-x", "_x", "a..b", "é", "a\nb", "a+b"],
    ids=lambda n: repr(n)[:12],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="certificate name") as info:
        check_name(name, "certificate name")
    assert "digits" in (info.value.hint or "")


def test_issue_checks_the_name_first(authority: ca.CertificateAuthority) -> None:
    before = (authority.directory / "ledger.json").read_bytes()
    with pytest.raises(UsageError, match=r"certificate name '\.\./x'"):
        authority.issue("../x")
    assert (authority.directory / "ledger.json").read_bytes() == before
    assert not (authority.directory / "issued" / "..").resolve().joinpath("x.pem").exists()


@pytest.mark.parametrize("name", ["alice", "alice@contoso.com", "a_b-c.d", "x" * 64, "7"])
def test_safe_names(name: str) -> None:
    assert check_name(name, "certificate name") == name


@pytest.mark.parametrize(
    ("email", "fragment"),
    [("not-an-email", "not valid"), ("a@b", "not valid"), (f"{'a' * 60}@contoso.com", "64")],
)
def test_bad_email(email: str, fragment: str, authority: ca.CertificateAuthority) -> None:
    with pytest.raises(UsageError, match=fragment):
        authority.issue("erin", email=email)


def test_foreign_files_are_never_overwritten(
    fresh_ca: ca.CertificateAuthority, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "carol.pem").write_text("someone else's file")
    with pytest.raises(OutputError, match="not a file of 'carol'"):
        fresh_ca.issue("carol", output_dir=out)
    assert (out / "carol.pem").read_text() == "someone else's file"
    assert not (out / "carol.key").exists()
    assert ca.read_ledger(fresh_ca.directory) == []


def test_custom_output_folder(fresh_ca: ca.CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "dave"
    result = fresh_ca.issue("dave", output_dir=out)
    assert result.cert_path == out / "dave.pem" and mode(out) == 0o700
    entry = ca.read_ledger(fresh_ca.directory)[0]
    assert entry.files["cert"] == str((out / "dave.pem").resolve())
    assert entry.path(fresh_ca.directory, "key") == (out / "dave.key").resolve()


@pytest.mark.parametrize("key_type", ["rsa3072", pytest.param("rsa4096", marks=pytest.mark.slow)])
def test_client_key_sizes(key_type: str, fresh_ca: ca.CertificateAuthority) -> None:
    result = fresh_ca.issue("frank", key_type=key_type)
    public = result.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == int(key_type.removeprefix("rsa"))
    assert result.entry.key_type == key_type


def test_validity_is_clamped_to_the_root(tmp_path: Path) -> None:
    ca.init_ca(tmp_path / "short", "Short Root", days=30, passphrase=None)
    authority = ca.open_ca(tmp_path / "short")
    result = authority.issue("gina", days=365)
    assert result.certificate.not_valid_after_utc == authority.certificate.not_valid_after_utc
    assert any("outlive the root" in w for w in result.warnings)


def test_expired_root_refuses_to_issue(tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    ca.init_ca(tmp_path / "old", "Old Root", days=10, passphrase=None, now=past)
    with pytest.raises(CAError, match="expired"):
        ca.open_ca(tmp_path / "old").issue("hank")


def test_lock_held_elsewhere_times_out(
    fresh_ca: ca.CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ca.ledger, "LOCK_TIMEOUT", 0.2)
    fd = os.open(fresh_ca.directory / "ledger.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(CAError, match="locked by another process"):
            fresh_ca.issue("ivan")
    finally:
        os.close(fd)
    assert ca.read_ledger(fresh_ca.directory) == []
    assert fresh_ca.issue("ivan").entry.name == "ivan"  # released: works again


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from toolkit import ca
    from toolkit.errors import CAError

    directory, go, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    authority = ca.open_ca(directory, b"worker pass")
    while not go.exists():
        time.sleep(0.005)
    done = []
    for name in names:
        try:
            done.append(authority.issue(name).entry.serial)
        except CAError as exc:
            done.append("refused: " + exc.message)
    print(json.dumps(done))
    """
)


@pytest.mark.slow
def test_concurrent_issuers_keep_the_ledger_whole(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    ca.init_ca(directory, "Busy Root", passphrase=b"worker pass")
    go = tmp_path / "go"
    names = {
        worker: [f"w{worker}-{n}" for n in range(10)] + [f"shared-{n}" for n in range(3)]
        for worker in (1, 2)
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory), str(go), *names[worker]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in (1, 2)
    ]
    go.touch()
    outputs = []
    for proc in procs:
        out, errors = proc.communicate(timeout=120)
        assert proc.returncode == 0, errors
        outputs.append(json.loads(out))

    document = ledger_document(directory)  # valid JSON after 26 racing writes
    entries = ca.read_ledger(directory)
    serials = [e.serial for e in entries]
    assert len(serials) == len(set(serials)) == 20 + 3
    assert sorted(e.name for e in entries) == sorted(
        {*names[1], *names[2]}
    )  # each shared name issued exactly once
    refused = [o for out in outputs for o in out if o.startswith("refused:")]
    assert len(refused) == 3 and all("already has a valid certificate" in r for r in refused)
    # every append whole: the snapshot plus one journal line per certificate, none interleaved
    lines = (directory / "ledger.journal").read_text("utf-8").splitlines()
    assert isinstance(document["certificates"], list)
    assert len(document["certificates"]) + len([json.loads(line) for line in lines]) == 23
    for entry in entries:
        cert = x509.load_pem_x509_certificate((directory / entry.ca_copy).read_bytes())
        assert f"{cert.serial_number:032X}" == entry.serial
        assert sha1_hex(cert) == entry.thumbprint_sha1
        assert (directory / entry.files["key"]).exists()


# --- list -----------------------------------------------------------------------------------------
def test_list_states_and_expiring_filter(fresh_ca: ca.CertificateAuthority) -> None:
    directory = fresh_ca.directory
    fresh_ca.issue("long", days=365)
    short = fresh_ca.issue("short", days=10)
    gone = fresh_ca.issue("gone", days=5)
    ca.revoke(directory, "gone")

    states = {r.entry.name: r.state for r in ca.list_certificates(directory)}
    assert states == {"long": "valid", "short": "expiring", "gone": "revoked"}

    rows = ca.list_certificates(directory, expiring_within=20)
    assert [(r.entry.name, r.state) for r in rows] == [("short", "expiring")]
    assert rows[0].days_left in (9, 10)
    assert ca.list_certificates(directory, expiring_within=5) == []

    later = short.entry.not_after + DAY
    rows = ca.list_certificates(directory, expiring_within=0, now=later)
    assert [(r.entry.name, r.state, r.days_left < 0) for r in rows] == [("short", "expired", True)]
    assert gone.entry.serial not in {r.entry.serial for r in rows}
    assert rows[0].to_json()["state"] == "expired"

    with pytest.raises(UsageError):
        ca.list_certificates(directory, expiring_within=-1)


# --- revoke ---------------------------------------------------------------------------------------
def test_revoke_by_name_prints_exact_commands(authority: ca.CertificateAuthority) -> None:
    issued = authority.issue("rob", email="rob@contoso.com")
    thumbprint = sha1_hex(issued.certificate)
    result = ca.revoke(authority.directory, "rob", gateway="VNet1GW", resource_group="rg-vpn")
    assert not result.already_revoked
    assert result.entry.status == "revoked" and result.entry.revoked_at is not None
    name = f"rob-{thumbprint[:8]}"
    assert result.commands.az == (
        "az network vnet-gateway revoked-cert create --resource-group rg-vpn "
        f"--gateway-name VNet1GW --name {name} --thumbprint {thumbprint}"
    )
    assert result.commands.powershell == (
        f"Add-AzVpnClientRevokedCertificate -VpnClientRevokedCertificateName {name} "
        f"-VirtualNetworkGatewayName VNet1GW -ResourceGroupName rg-vpn -Thumbprint {thumbprint}"
    )
    assert ca.find_current(authority.directory, "rob") is None
    recorded = {e.serial: e for e in ca.read_ledger(authority.directory)}[issued.entry.serial]
    assert recorded.status == "revoked"


def test_revoke_by_thumbprint_twice_and_placeholders(
    authority: ca.CertificateAuthority,
) -> None:
    issued = authority.issue("tess")
    thumbprint = sha1_hex(issued.certificate)
    spaced = ":".join(thumbprint[i : i + 2] for i in range(0, 40, 2)).lower()
    first = ca.revoke(authority.directory, spaced)
    assert first.entry.serial == issued.entry.serial and not first.already_revoked
    assert first.commands.placeholders
    assert "--resource-group <resource-group> --gateway-name <gateway>" in first.commands.az
    before = (authority.directory / "ledger.json").read_bytes()
    second = ca.revoke(authority.directory, "tess")
    assert second.already_revoked and second.commands == first.commands
    assert (authority.directory / "ledger.json").read_bytes() == before
    # after revocation the name can be issued again (the files are replaced)
    again = authority.issue("tess")
    assert again.cert_path == issued.cert_path
    assert x509.load_pem_x509_certificate(again.cert_path.read_bytes()) == again.certificate


def test_revoke_unknown(fresh_ca: ca.CertificateAuthority) -> None:
    fresh_ca.issue("uma")
    with pytest.raises(CAError, match="no certificate named 'ums'") as info:
        ca.revoke(fresh_ca.directory, "ums")
    assert "did you mean 'uma'" in (info.value.hint or "")
    with pytest.raises(CAError, match="no thumbprint"):
        ca.revoke(fresh_ca.directory, "AB" * 20)


def test_azure_resource_names() -> None:
    assert ca.azure_resource_name("Contoso P2S Root") == "Contoso-P2S-Root"
    assert ca.azure_resource_name("alice@contoso.com") == "alice-contoso.com"
    assert ca.azure_resource_name("--") == "P2SRoot"


# --- renew ----------------------------------------------------------------------------------------
def test_renew_supersedes(authority: ca.CertificateAuthority) -> None:
    old = authority.issue(
        "rita", email="rita@contoso.com", days=200, key_type="rsa3072", pfx_password=PFX_PASS
    )
    new = authority.renew("rita")
    assert new.entry.serial != old.entry.serial
    assert new.entry.renewed_from == old.entry.serial
    assert new.entry.email == "rita@contoso.com" and new.entry.key_type == "rsa3072"
    public = new.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 3072
    lifetime = new.certificate.not_valid_after_utc - new.certificate.not_valid_before_utc
    assert lifetime == dt.timedelta(days=200)
    assert new.cert_path == old.cert_path and new.key_path == old.key_path
    assert new.issued.key_pem() != old.issued.key_pem()
    assert x509.load_pem_x509_certificate(new.cert_path.read_bytes()) == new.certificate
    # the stale PKCS#12 of the old certificate is gone, with a warning
    assert old.pfx_path is not None and not old.pfx_path.exists()
    assert any("removed" in w for w in new.warnings)

    entries = {e.serial: e for e in ca.read_ledger(authority.directory)}
    assert entries[old.entry.serial].status == "superseded"
    assert entries[old.entry.serial].superseded_by == new.entry.serial
    assert [e.serial for e in new.superseded] == [old.entry.serial]
    copy = entries[old.entry.serial].path(authority.directory, "ca_copy")
    assert copy is not None and copy.exists()  # the old certificate is kept by serial
    assert ca.find_current(authority.directory, "rita") == new.entry
    # by name: the current one; the superseded one is still valid on Azure until it expires,
    # so it can be revoked by thumbprint
    assert ca.revoke(authority.directory, "rita").entry.serial == new.entry.serial
    assert ca.revoke(authority.directory, "rita").already_revoked
    revoked_old = ca.revoke(authority.directory, old.entry.thumbprint_sha1)
    assert revoked_old.entry.serial == old.entry.serial


def test_renew_with_days_and_errors(fresh_ca: ca.CertificateAuthority) -> None:
    with pytest.raises(CAError, match="no valid certificate to renew") as info:
        fresh_ca.renew("vera")
    assert "ca issue" in (info.value.hint or "")
    fresh_ca.issue("vera", days=30)
    renewed = fresh_ca.renew("vera", days=90)
    lifetime = renewed.certificate.not_valid_after_utc - renewed.certificate.not_valid_before_utc
    assert lifetime == dt.timedelta(days=90)
    ca.revoke(fresh_ca.directory, "vera")
    with pytest.raises(CAError, match="no valid certificate to renew") as info:
        fresh_ca.renew("vera")
    assert "revoked or superseded" in (info.value.hint or "")


def test_issue_after_expiry_supersedes_the_expired(fresh_ca: ca.CertificateAuthority) -> None:
    first = fresh_ca.issue("walt", days=5)
    later = first.entry.not_after + DAY
    second = fresh_ca.issue("walt", now=later)
    entries = {e.serial: e for e in ca.read_ledger(fresh_ca.directory)}
    assert entries[first.entry.serial].status == "superseded"
    assert entries[second.entry.serial].status == "valid"
    assert ca.find_current(fresh_ca.directory, "walt", now=later) == second.entry
