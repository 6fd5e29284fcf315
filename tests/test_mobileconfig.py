"""The mobileconfig target: an Apple configuration profile for OpenVPN Connect under MDM."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import ClientFiles
from toolkit.ca import keys as pki
from toolkit.credentials import load_pem_credentials
from toolkit.package import load_package
from toolkit.passphrase import PassphraseSource
from toolkit.plan import UserPlan, UserRequest, plan_user
from toolkit.profile import Block, Directive, Profile, tokenize


def _plan(package_zip: Path, files: ClientFiles, **request: Any) -> UserPlan:
    creds = load_pem_credentials(files.cert, files.key, PassphraseSource())
    return plan_user(
        load_package(package_zip),
        creds,
        UserRequest(name="alice", targets=("mobileconfig", "ios"), **request),
    )


def _file(plan: UserPlan, suffix: str) -> bytes:
    return next(f.data for f in plan.files if f.path.endswith(suffix))


def _payloads(data: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    top = plistlib.loads(data)
    identity, vpn = top["PayloadContent"]
    return top, identity, vpn


def test_structure_and_identity(package_zip: Path, client_files: ClientFiles) -> None:
    plan = _plan(package_zip, client_files, display_name="Alice (Contoso VPN)")
    top, identity, vpn = _payloads(_file(plan, ".mobileconfig"))
    assert top["PayloadType"] == "Configuration" and top["PayloadVersion"] == 1
    assert top["PayloadDisplayName"] == "Alice (Contoso VPN)"
    assert identity["PayloadType"] == "com.apple.security.pkcs12"
    assert vpn["PayloadType"] == "com.apple.vpn.managed"
    assert vpn["VPNType"] == "VPN" and vpn["VPNSubType"] == "net.openvpn.connect.app"
    assert vpn["UserDefinedName"] == "Alice (Contoso VPN)"
    assert vpn["VPN"]["AuthenticationMethod"] == "Certificate"
    assert vpn["VPN"]["PayloadCertificateUUID"] == identity["PayloadUUID"]
    uuids = {top["PayloadUUID"], identity["PayloadUUID"], vpn["PayloadUUID"]}
    assert len(uuids) == 3
    # the PKCS#12 opens with the payload's password and holds this user's certificate and key
    loaded = pkcs12.load_pkcs12(identity["PayloadContent"], identity["Password"].encode())
    assert loaded.cert is not None and loaded.key is not None
    assert loaded.cert.certificate == client_files.issued.certificate
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert loaded.key.public_key().public_bytes(der, spki) == (
        client_files.issued.certificate.public_key().public_bytes(der, spki)
    )


def test_vendor_config_is_the_ios_profile(package_zip: Path, client_files: ClientFiles) -> None:
    """Rebuilding a profile from VendorConfig gives the ios profile's directives and blocks,
    without <cert>/<key> (those come from the identity payload)."""
    plan = _plan(package_zip, client_files)
    _, _, vpn = _payloads(_file(plan, ".mobileconfig"))
    vendor: dict[str, str] = vpn["VendorConfig"]
    assert vendor.pop("vpn-on-demand") == "0"
    ios = Profile.parse(_file(plan, "ios/alice-iphone.ovpn"))
    expected_directives = [(d.name, d.args) for d in ios.directives()]
    expected_blocks = {
        b.name: [line.strip() for line in b.body]
        for b in ios.blocks()
        if b.name not in ("cert", "key")
    }
    rebuilt_directives = []
    rebuilt_blocks = {}
    for key, value in vendor.items():
        assert "\n" not in value  # real newlines break the key/value parser
        name = key.split(".")[0]
        if name in expected_blocks:
            rebuilt_blocks[name] = value.split("\\n")
        else:
            rebuilt_directives.append((name, [] if value == "NOARGS" else tokenize(value)))
    assert rebuilt_directives == expected_directives
    assert rebuilt_blocks == expected_blocks
    assert "cert" not in vendor and "key" not in vendor
    assert any(isinstance(i, Block) and i.name == "tls-auth" for i in ios.items)
    assert all(not isinstance(i, Directive) or i.name != "log" for i in ios.items)


def test_repeated_directives_are_numbered(tmp_path: Path, client_files: ClientFiles) -> None:
    from toolkit.sample import make_gateway

    gateway = make_gateway(extra_directives=("remote backup.example.invalid 443",))
    package = tmp_path / "two-remotes.zip"
    package.write_bytes(gateway.zip_bytes())
    plan = _plan(package, client_files)
    _, _, vpn = _payloads(_file(plan, ".mobileconfig"))
    assert vpn["VendorConfig"]["remote.1"].startswith(gateway.remote_host)
    assert vpn["VendorConfig"]["remote.2"] == "backup.example.invalid 443"
    assert "remote" not in vpn["VendorConfig"]


def test_key_passphrase_means_no_password_in_the_payload(
    package_zip: Path, client_files: ClientFiles
) -> None:
    plan = _plan(package_zip, client_files, key_passphrase=b"typed at install")
    _, identity, _ = _payloads(_file(plan, ".mobileconfig"))
    assert "Password" not in identity  # iOS asks for it when the profile is installed
    loaded = pkcs12.load_pkcs12(identity["PayloadContent"], b"typed at install")
    assert loaded.cert is not None
    assert loaded.cert.certificate == client_files.issued.certificate
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(identity["PayloadContent"], b"wrong")


def test_uuids_are_stable_for_the_same_user(package_zip: Path, client_files: ClientFiles) -> None:
    first = _payloads(_file(_plan(package_zip, client_files), ".mobileconfig"))
    second = _payloads(_file(_plan(package_zip, client_files), ".mobileconfig"))
    assert [p["PayloadUUID"] for p in first] == [p["PayloadUUID"] for p in second]


def test_identity_uuid_changes_with_the_certificate(
    package_zip: Path, client_files: ClientFiles, p2s_root: pki.IssuedCertificate, write_files: Any
) -> None:
    other = write_files(pki.issue_certificate(p2s_root, "alice@contoso.com"), name="alice2")
    first = _payloads(_file(_plan(package_zip, client_files), ".mobileconfig"))
    second = _payloads(_file(_plan(package_zip, other), ".mobileconfig"))
    assert first[0]["PayloadUUID"] == second[0]["PayloadUUID"]  # same profile: replaced
    assert first[1]["PayloadUUID"] != second[1]["PayloadUUID"]  # new identity


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_pkcs12_uses_what_ios_accepts(
    package_zip: Path, client_files: ClientFiles, tmp_path: Path
) -> None:
    """iOS says 'wrong password' for AES/PBKDF2 PKCS#12: it must be 3DES with a SHA-1 MAC."""
    _, identity, _ = _payloads(_file(_plan(package_zip, client_files), ".mobileconfig"))
    p12 = tmp_path / "id.p12"
    p12.write_bytes(identity["PayloadContent"])
    out = subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-info",
            "-noout",
            "-legacy",
            "-in",
            str(p12),
            "-passin",
            "env:P12PASS",
        ],
        env={"P12PASS": identity["Password"], "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    report = out.stdout + out.stderr
    assert "MAC: sha1" in report, report
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in report, report
    assert "AES" not in report
