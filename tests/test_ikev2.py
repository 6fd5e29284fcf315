"""The ikev2 target: an Apple configuration profile for the built-in IKEv2 client, checked against
Apple's own schema (``tests/data/apple``, vendored from apple/device-management), opened back
with its password, signed profiles verified with the openssl CLI, and the package's Generic/."""

from __future__ import annotations

import datetime as dt
import io
import json
import plistlib
import shutil
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from tests.conftest import ClientFiles
from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.credentials import ClientCredentials, load_pem_credentials
from toolkit.errors import CredentialsError, PackageError, UsageError
from toolkit.package import AzurePackage, load_package
from toolkit.passphrase import PassphraseSource
from toolkit.plan import UserPlan, UserRequest, plan_user
from toolkit.sample import SampleGateway
from toolkit.signing import load_signer
from toolkit.targets.ikev2 import fitness, local_identifier

APPLE = Path(__file__).parent / "data" / "apple"
runner = CliRunner()
MOBILECONFIG = "ikev2/alice-ikev2.mobileconfig"
PASSWORD_FILE = "ikev2/alice-ikev2-password.txt"


# --- Apple's schema ---------------------------------------------------------------------------
@cache
def _schema(name: str) -> list[dict[str, Any]]:
    document = yaml.safe_load((APPLE / f"{name}.yaml").read_text("utf-8"))
    keys: list[dict[str, Any]] = document["payloadkeys"]
    return keys


PLIST_TYPES: Mapping[str, tuple[type, ...]] = {
    "<string>": (str,),
    "<integer>": (int,),
    "<boolean>": (bool,),
    "<data>": (bytes,),
    "<dictionary>": (dict,),
    "<array>": (list,),
    "<real>": (float, int),
    "<date>": (dt.datetime,),
}


def schema_problems(
    value: Mapping[str, Any], keys: Sequence[Mapping[str, Any]], where: str
) -> list[str]:
    """Every way ``value`` breaks the schema ``keys``: unknown keys, missing required keys,
    wrong types, values outside ``rangelist`` or ``range`` (recursing into dictionaries)."""
    problems: list[str] = []
    by_name = {k["key"]: k for k in keys}
    for spec in keys:
        if spec.get("presence") == "required" and spec["key"] not in value and spec["key"] != "ANY":
            problems.append(f"{where}: required key {spec['key']} missing")
    for name, item in value.items():
        spec = by_name.get(name)
        if spec is None:
            problems.append(f"{where}: key {name} is not in Apple's schema")
            continue
        kind = spec["type"]
        expected = PLIST_TYPES.get(kind)
        if expected is not None and (
            not isinstance(item, expected) or (kind == "<integer>" and isinstance(item, bool))
        ):
            problems.append(f"{where}.{name}: {type(item).__name__}, schema says {kind}")
            continue
        if "rangelist" in spec and item not in spec["rangelist"]:
            problems.append(f"{where}.{name}: {item!r} not in {spec['rangelist']}")
        bounds = spec.get("range")
        if bounds and not bounds.get("min", item) <= item <= bounds.get("max", item):
            problems.append(f"{where}.{name}: {item!r} outside {bounds}")
        if kind == "<dictionary>" and spec.get("subkeys"):
            problems += schema_problems(item, spec["subkeys"], f"{where}.{name}")
    return problems


def payload_problems(payload: Mapping[str, Any], schema: str) -> list[str]:
    common = [k for k in _schema("CommonPayloadKeys")]
    return schema_problems(payload, [*common, *_schema(schema)], schema)


def profile_problems(profile: Mapping[str, Any]) -> list[str]:
    top = schema_problems(
        {k: v for k, v in profile.items() if k != "PayloadContent"},
        [k for k in _schema("TopLevel") if k["key"] != "PayloadContent"],
        "TopLevel",
    )
    if profile.get("PayloadType") != "Configuration":
        top.append("TopLevel.PayloadType is not Configuration")
    for payload in profile["PayloadContent"]:
        top += payload_problems(payload, payload["PayloadType"])
    return top


# --- helpers ----------------------------------------------------------------------------------
def _creds(files: ClientFiles) -> ClientCredentials:
    return load_pem_credentials(files.cert, files.key, PassphraseSource())


def _plan(package: Path | AzurePackage, creds: ClientCredentials, **request: Any) -> UserPlan:
    loaded = package if isinstance(package, AzurePackage) else load_package(package)
    request.setdefault("targets", ("ikev2",))
    return plan_user(loaded, creds, UserRequest(name="alice", **request))


def _file(plan: UserPlan, path: str) -> bytes:
    return next(f.data for f in plan.files if f.path == path)


def _profile(plan: UserPlan) -> dict[str, Any]:
    parsed: dict[str, Any] = plistlib.loads(_file(plan, MOBILECONFIG))
    return parsed


def _payload(profile: Mapping[str, Any], kind: str) -> dict[str, Any]:
    (payload,) = [p for p in profile["PayloadContent"] if p["PayloadType"] == kind]
    return dict(payload)


def _generic_only_zip(gateway: SampleGateway, path: Path, *, root: bool = True) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Generic/VpnSettings.xml", gateway.vpn_settings_xml())
        if root:
            archive.writestr("Generic/VpnServerRoot.cer", gateway.public_root.cert_der)
    path.write_bytes(buffer.getvalue())
    return path


# --- the profile ------------------------------------------------------------------------------
def test_profile_follows_apple_schema(
    package_zip: Path, client_files: ClientFiles, gateway: SampleGateway
) -> None:
    plan = _plan(package_zip, _creds(client_files), display_name="Alice (Contoso)")
    profile = _profile(plan)
    assert profile_problems(profile) == []
    vpn = _payload(profile, "com.apple.vpn.managed")
    identity = _payload(profile, "com.apple.security.pkcs12")
    assert vpn["VPNType"] == "IKEv2" and vpn["UserDefinedName"] == "Alice (Contoso)"
    ikev2 = vpn["IKEv2"]
    assert ikev2["RemoteAddress"] == ikev2["RemoteIdentifier"] == gateway.remote_host
    assert ikev2["LocalIdentifier"] == "alice@contoso.com"  # the certificate's e-mail SAN
    assert ikev2["AuthenticationMethod"] == "Certificate"
    assert ikev2["ExtendedAuthEnabled"] == 0
    assert ikev2["PayloadCertificateUUID"] == identity["PayloadUUID"]
    # inside Azure's default P2S policy; a Child SA dictionary of its own
    for params in (
        ikev2["IKESecurityAssociationParameters"],
        ikev2["ChildSecurityAssociationParameters"],
    ):
        assert params["EncryptionAlgorithm"] == "AES-256-GCM"
        assert params["IntegrityAlgorithm"] == "SHA2-256"
        assert params["DiffieHellmanGroup"] == 14
    # the password is not in the profile by default, but in its own file
    assert "Password" not in identity
    password = _file(plan, PASSWORD_FILE).rstrip(b"\n")
    loaded = pkcs12.load_pkcs12(identity["PayloadContent"], password)
    assert loaded.cert is not None and loaded.key is not None
    assert loaded.cert.certificate == client_files.issued.certificate
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert loaded.key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) == client_files.issued.private_key.public_key().public_bytes(serialization.Encoding.DER, spki)
    assert password.decode() not in json.dumps(plan.to_json())
    assert all(f.mode == 0o600 for f in plan.files)


def test_the_schema_check_can_fail(package_zip: Path, client_files: ClientFiles) -> None:
    """Negative control: the checker catches what Apple's schema forbids."""
    profile = _profile(_plan(package_zip, _creds(client_files)))
    vpn = _payload(profile, "com.apple.vpn.managed")
    vpn["IKEv2"] = {**vpn["IKEv2"], "AuthenticationMethod": "Password", "Bogus": 1}
    vpn["IKEv2"]["IKESecurityAssociationParameters"] = {"DiffieHellmanGroup": "14"}
    del vpn["IKEv2"]["LocalIdentifier"]
    problems = payload_problems(vpn, "com.apple.vpn.managed")
    assert any("AuthenticationMethod" in p for p in problems)
    assert any("Bogus" in p for p in problems)
    assert any("LocalIdentifier missing" in p for p in problems)
    assert any("DiffieHellmanGroup: str" in p for p in problems)


def test_embedded_password(package_zip: Path, client_files: ClientFiles, tmp_path: Path) -> None:
    plan = _plan(package_zip, _creds(client_files), embed_pkcs12_password=True)
    assert [f.path for f in plan.files] == [MOBILECONFIG]
    identity = _payload(_profile(plan), "com.apple.security.pkcs12")
    assert pkcs12.load_pkcs12(identity["PayloadContent"], identity["Password"].encode()).key


def test_given_password(package_zip: Path, client_files: ClientFiles, tmp_path: Path) -> None:
    secret = tmp_path / "p12"
    secret.write_text("a chosen password\n")
    plan = _plan(package_zip, _creds(client_files), pkcs12_passphrase=PassphraseSource(file=secret))
    assert [f.path for f in plan.files] == [MOBILECONFIG]
    identity = _payload(_profile(plan), "com.apple.security.pkcs12")
    assert pkcs12.load_pkcs12(identity["PayloadContent"], b"a chosen password").key


def test_identifiers_are_stable_per_gateway_and_user(
    package_zip: Path, client_files: ClientFiles, p2s_root: pki.IssuedCertificate
) -> None:
    creds = _creds(client_files)

    def ids(plan: UserPlan) -> list[str]:
        profile = plistlib.loads(_file(plan, f"ikev2/{plan.name}-ikev2.mobileconfig"))
        return [profile["PayloadIdentifier"], profile["PayloadUUID"]] + [
            v for p in profile["PayloadContent"] for v in (p["PayloadIdentifier"], p["PayloadUUID"])
        ]

    first, again = ids(_plan(package_zip, creds)), ids(_plan(package_zip, creds))
    assert first == again and len(set(first)) == len(first)
    other = plan_user(load_package(package_zip), creds, UserRequest(name="bob", targets=("ikev2",)))
    assert not set(first) & set(ids(other))
    # not the identifier of the OpenVPN Connect .mobileconfig (installing one must not replace
    # the other)
    both = _plan(package_zip, creds, targets=("ikev2", "mobileconfig"))
    openvpn = plistlib.loads(_file(both, "mobileconfig/alice-iphone-mdm.mobileconfig"))
    assert openvpn["PayloadIdentifier"] != _profile(both)["PayloadIdentifier"]
    # a new certificate: the identity payload gets a new UUID, the profile keeps its identifier
    renewed = pki.issue_certificate(p2s_root, "alice@contoso.com", email="alice@contoso.com")
    fresh = ClientCredentials(renewed.certificate, renewed.private_key)
    new_ids = ids(_plan(package_zip, fresh))
    assert new_ids[:2] == first[:2] and new_ids[3] != first[3]


# --- the identity -----------------------------------------------------------------------------
def _cert(
    *,
    cn: str = "alice",
    dns: Sequence[str] = (),
    emails: Sequence[str] = (),
    key_size: int = 2048,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    eku: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    )
    alt = [x509.DNSName(d) for d in dns] + [x509.RFC822Name(e) for e in emails]
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(key, hash_algorithm or hashes.SHA256())


def test_local_identifier_is_a_san_the_certificate_carries() -> None:
    assert local_identifier(_cert(cn="alice", dns=["alice"])) == ("alice", None)
    assert local_identifier(_cert(cn="a@x.org", dns=["a"], emails=["a@x.org"]))[0] == "a@x.org"
    assert local_identifier(_cert(cn="alice", dns=["alice.example.com"]))[0] == "alice.example.com"
    assert local_identifier(_cert(cn="alice", emails=["alice@x.org"]))[0] == "alice@x.org"
    value, finding = local_identifier(_cert(cn="carol"))
    assert value == "carol" and finding is not None and finding.code == "ikev2-no-san"


def test_no_san_is_a_warning_of_the_plan(
    package_zip: Path, p2s_root: pki.IssuedCertificate
) -> None:
    issued = pki.issue_certificate(p2s_root, "carol")
    plan = _plan(package_zip, ClientCredentials(issued.certificate, issued.private_key))
    assert "ikev2-no-san" in {w.code for w in plan.warnings}
    assert _payload(_profile(plan), "com.apple.vpn.managed")["IKEv2"]["LocalIdentifier"] == "carol"


def test_fitness() -> None:
    assert fitness(_cert(dns=["alice"])) == []
    weak = {f.code for f in fitness(_cert(key_size=1024))}
    assert weak == {"ikev2-weak-key"}
    # (this OpenSSL refuses to sign with SHA-1; SHA-224 is below what the check asks for too)
    sha224 = {f.code for f in fitness(_cert(hash_algorithm=hashes.SHA224()))}
    assert sha224 == {"ikev2-weak-signature"}
    server = {f.code for f in fitness(_cert(eku=[ExtendedKeyUsageOID.SERVER_AUTH]))}
    assert server == {"ikev2-no-client-auth"}


def test_unfit_certificate_is_refused_before_writing(
    package_zip: Path, p2s_root: pki.IssuedCertificate
) -> None:
    issued = pki.issue_certificate(p2s_root, "dave", eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    with pytest.raises(CredentialsError, match="Client Authentication"):
        _plan(package_zip, ClientCredentials(issued.certificate, issued.private_key))


# --- the package ------------------------------------------------------------------------------
def test_package_with_only_generic(
    gateway: SampleGateway, client_files: ClientFiles, tmp_path: Path
) -> None:
    package = load_package(_generic_only_zip(gateway, tmp_path / "ikev2-only.zip"))
    assert package.profile_text is None and package.vpn_settings is not None
    plan = _plan(package, _creds(client_files))
    ikev2 = _payload(_profile(plan), "com.apple.vpn.managed")["IKEv2"]
    assert ikev2["RemoteAddress"] == gateway.remote_host
    with pytest.raises(PackageError) as info:
        _plan(package, _creds(client_files), targets=("ikev2", "ios"))
    assert "no OpenVPN/vpnconfig.ovpn" in info.value.message
    assert info.value.hint and "OpenVPN (SSL)" in info.value.hint


def test_same_identifier_from_full_and_generic_only_package(
    gateway: SampleGateway, package_zip: Path, client_files: ClientFiles, tmp_path: Path
) -> None:
    generic = load_package(_generic_only_zip(gateway, tmp_path / "ikev2-only.zip"))
    creds = _creds(client_files)
    full = _profile(_plan(package_zip, creds))
    assert _profile(_plan(generic, creds))["PayloadIdentifier"] == full["PayloadIdentifier"]


def test_package_without_generic(
    gateway: SampleGateway, client_files: ClientFiles, tmp_path: Path
) -> None:
    path = tmp_path / "openvpn-only.zip"
    path.write_bytes(gateway.zip_bytes(with_generic=False))
    with pytest.raises(PackageError) as info:
        _plan(path, _creds(client_files))
    assert "no Generic/VpnSettings.xml" in info.value.message
    assert info.value.hint and "IKEv2" in info.value.hint and "download" in info.value.hint
    # the other targets still work with it
    assert _plan(path, _creds(client_files), targets=("ios",)).targets


def test_inspect_shows_ikev2_facts(
    gateway: SampleGateway, package_zip: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["inspect", str(package_zip)])
    assert result.exit_code == 0, result.output
    assert gateway.remote_host in result.output
    assert "server root:  CN=DEMO stand-in public root" in result.output
    generic = _generic_only_zip(gateway, tmp_path / "g.zip", root=False)
    report = json.loads(runner.invoke(app, ["inspect", str(generic), "--json"]).stdout)
    assert report["has_openvpn_profile"] is False
    assert report["ikev2"] == {
        "vpn_server": gateway.remote_host,
        "routes": ["10.1.0.0/16"],
        "server_root": None,
    }
    assert report["targets"]["ikev2"]["ok"] is True
    assert report["targets"]["ios"]["ok"] is False
    text = runner.invoke(app, ["inspect", str(generic)])
    assert text.exit_code == 0 and "no Generic/VpnServerRoot.cer" in text.output


def test_check_refuses_the_ikev2_target(package_zip: Path, tmp_path: Path) -> None:
    from toolkit.check import check_profile
    from toolkit.profile import Profile

    with pytest.raises(UsageError, match="mobileconfig"):
        check_profile(Profile.parse("client\n", "x.ovpn"), "ikev2")


# --- signed profiles --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signer_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A signing root and a leaf with emailProtection, as PEM files (generated here)."""
    folder = tmp_path_factory.mktemp("signer")
    root = pki.create_root("Test profile-signing root")
    leaf = pki.issue_certificate(
        root, "Contoso IT profile signing", eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,)
    )
    (folder / "root.pem").write_bytes(root.cert_pem)
    (folder / "sign.pem").write_bytes(leaf.cert_pem)
    (folder / "sign.key").write_bytes(leaf.key_pem())
    return folder / "sign.pem", folder / "sign.key", folder / "root.pem"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
@pytest.mark.parametrize(
    ("target", "path"),
    [("ikev2", MOBILECONFIG), ("mobileconfig", "mobileconfig/alice-iphone-mdm.mobileconfig")],
)
def test_signed_profile_verifies_with_openssl(
    package_zip: Path,
    client_files: ClientFiles,
    signer_files: tuple[Path, Path, Path],
    tmp_path: Path,
    target: str,
    path: str,
) -> None:
    cert, key, root = signer_files
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "generate", str(package_zip), "--cert", str(client_files.cert), "--key",
            str(client_files.key), "-n", "alice", "-t", target, "-o", str(out),
            "--sign-cert", str(cert), "--sign-key", str(key),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    signed = out / "alice" / path
    data = signed.read_bytes()
    assert not data.startswith(b"<?xml")  # DER SignedData, not a plain plist
    content = tmp_path / "content.plist"
    for tool in ("smime", "cms"):
        verified = subprocess.run(
            ["openssl", tool, "-verify", "-binary", "-inform", "DER", "-in", str(signed),
             "-CAfile", str(root), "-purpose", "any", "-out", str(content)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr
        assert "Verification successful" in verified.stderr
        profile = plistlib.loads(content.read_bytes())
        assert profile["PayloadType"] == "Configuration"
    # negative controls: another root, and a tampered byte inside the content
    other = tmp_path / "other.pem"
    other.write_bytes(pki.create_root("Not the signer").cert_pem)
    refused = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signed),
         "-CAfile", str(other), "-purpose", "any", "-out", str(content)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    marker = data.index(b"<string>alice")
    tampered = tmp_path / "tampered.mobileconfig"
    tampered.write_bytes(data[:marker] + b"<string>mallo" + data[marker + 13 :])
    broken = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tampered),
         "-CAfile", str(root), "-purpose", "any", "-out", str(content)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert broken.returncode != 0


def test_signer_key_must_match(
    signer_files: tuple[Path, Path, Path], client_files: ClientFiles
) -> None:
    cert, _key, _root = signer_files
    with pytest.raises(CredentialsError, match="does not belong"):
        load_signer(cert, client_files.key)


def test_sign_options_need_a_mobileconfig_target(
    package_zip: Path, client_files: ClientFiles, signer_files: tuple[Path, Path, Path]
) -> None:
    cert, key, _ = signer_files
    base = ["generate", str(package_zip), "--cert", str(client_files.cert), "--key",
            str(client_files.key)]  # fmt: skip
    only_cert = runner.invoke(app, [*base, "-t", "ikev2", "--sign-cert", str(cert)])
    assert only_cert.exit_code == 2 and "go together" in only_cert.output
    no_target = runner.invoke(app, [*base, "--sign-cert", str(cert), "--sign-key", str(key)])
    assert no_target.exit_code == 2 and ".mobileconfig" in no_target.output


def test_install_guide_covers_ikev2(package_zip: Path, client_files: ClientFiles) -> None:
    plan = _plan(package_zip, _creds(client_files), guide=True)
    assert plan.guide is not None
    html = plan.guide.data.decode()
    assert 'id="builtin"' in html and "alice-ikev2.mobileconfig" in html
    assert "type the <strong>password</strong>" in html
    embedded = _plan(package_zip, _creds(client_files), guide=True, embed_pkcs12_password=True)
    assert embedded.guide is not None
    assert "type the <strong>password</strong>" not in embedded.guide.data.decode()
