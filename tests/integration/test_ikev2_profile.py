"""The toolkit's ikev2 profiles against a real IKEv2 responder (strongSwan, set up like Azure's
P2S endpoint by ``ikev2_gateway.py``): the initiator is configured only from the generated
``.mobileconfig``, connects and pings; negative controls: a client certificate of another root,
a wrong remote identity. Needs root and strongSwan; skips with the reason otherwise."""

from __future__ import annotations

import os
import plistlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit import ca
from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.sample import SampleGateway

from .ikev2_gateway import azure_like_ikev2_endpoint, connect, requires_ikev2

pytestmark = [pytest.mark.integration, requires_ikev2]

runner = CliRunner()
P12_PASS = "p12 password for the ikev2 test"


def _generate(
    package: Path, issued: pki.IssuedCertificate, folder: Path, name: str, *extra: str
) -> Path:
    """`ovpn-toolkit generate -t ikev2` for ``issued``; the profile's path."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem())
    out = folder / "out"
    result = runner.invoke(
        app,
        ["generate", str(package), "--cert", str(cert), "--key", str(key), "-n", name,
         "-t", "ikev2", "-o", str(out), "--force", *extra],
        env={"IKEV2_P12": P12_PASS},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / name / "ikev2" / f"{name}-ikev2.mobileconfig"


@pytest.fixture
def package(sample_gateway: SampleGateway, tmp_path: Path) -> Path:
    path = tmp_path / "VNet1GW.zip"
    path.write_bytes(sample_gateway.zip_bytes())
    return path


@pytest.fixture
def dns_client(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    """Made like the toolkit's CA makes them: CN = DNS SAN."""
    return pki.issue_certificate(p2s_root, "alice", dns_names=("alice",))


def test_generated_profile_connects_and_pings(
    package: Path, dns_client: pki.IssuedCertificate, p2s_root: pki.IssuedCertificate,
    tmp_path: Path,
) -> None:  # fmt: skip
    profile = _generate(package, dns_client, tmp_path, "alice")
    password = (profile.parent / "alice-ikev2-password.txt").read_text().strip()
    result = connect(profile.read_bytes(), password, p2s_root.cert_pem, workdir=tmp_path)
    assert result.child_sa_up and result.ping_ok, result.describe()


def test_embedded_password_connects_from_the_profile_alone(
    package: Path, dns_client: pki.IssuedCertificate, p2s_root: pki.IssuedCertificate,
    tmp_path: Path,
) -> None:  # fmt: skip
    profile = _generate(package, dns_client, tmp_path, "alice", "--embed-pkcs12-password")
    result = connect(profile.read_bytes(), None, p2s_root.cert_pem, workdir=tmp_path)
    assert result.child_sa_up and result.ping_ok, result.describe()


def test_negative_controls(
    package: Path,
    dns_client: pki.IssuedCertificate,
    foreign_client: pki.IssuedCertificate,
    p2s_root: pki.IssuedCertificate,
    sample_gateway: SampleGateway,
    tmp_path: Path,
) -> None:
    pass_opt = ("--pkcs12-passphrase-env", "IKEV2_P12")
    good = _generate(package, dns_client, tmp_path / "good", "alice", *pass_opt)
    foreign = _generate(package, foreign_client, tmp_path / "foreign", "mallory", *pass_opt)
    wrong_id = plistlib.loads(good.read_bytes())
    for payload in wrong_id["PayloadContent"]:
        if "IKEv2" in payload:
            payload["IKEv2"]["RemoteIdentifier"] = "azuregateway-other.vpn.azure.com"
    with azure_like_ikev2_endpoint(
        tmp_path, p2s_root.cert_pem, server_name=sample_gateway.remote_host
    ) as endpoint:
        ok = endpoint.connect(good.read_bytes(), P12_PASS)
        assert ok.child_sa_up and ok.ping_ok, ok.describe()
        other_root = endpoint.connect(foreign.read_bytes(), P12_PASS)
        assert not other_root.child_sa_up and not other_root.ping_ok, other_root.describe()
        assert other_root.failure, other_root.describe()
        wrong = endpoint.connect(plistlib.dumps(wrong_id), P12_PASS)
        assert not wrong.child_sa_up and not wrong.ping_ok, wrong.describe()
        assert wrong.failure, wrong.describe()
        print(f"other root: {other_root.failure}\nwrong remote identity: {wrong.failure}")


def test_batch_profiles_of_ca_users_connect(
    sample_gateway: SampleGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA issues the certificates (DNS SAN = name; e-mail SAN when given), the batch makes
    the profiles; each connects, identified by the name and by the e-mail."""
    (tmp_path / "VNet1GW.zip").write_bytes(sample_gateway.zip_bytes())
    ca_pass = "ikev2 batch ca pass"
    ca.init_ca(tmp_path / "pki", "IKEv2 batch P2S Root", passphrase=ca_pass.encode())
    monkeypatch.setenv("IKB_CA_PASS", ca_pass)
    (tmp_path / "users.yaml").write_text(
        "package: VNet1GW.zip\noutput: profiles\nca: {dir: pki, passphrase_env: IKB_CA_PASS}\n"
        "targets: [ikev2]\nusers:\n  - name: frank\n  - name: gina\n"
        "    email: gina@contoso.example\n"
    )
    result = runner.invoke(app, ["batch", str(tmp_path / "users.yaml")])
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    root_pem = (tmp_path / "pki" / "root.pem").read_bytes()
    out = tmp_path / "profiles"
    with azure_like_ikev2_endpoint(
        tmp_path, root_pem, server_name=sample_gateway.remote_host
    ) as endpoint:
        for name in ("frank", "gina"):
            folder = out / name / "ikev2"
            password = (folder / f"{name}-ikev2-password.txt").read_text().strip()
            done = endpoint.connect((folder / f"{name}-ikev2.mobileconfig").read_bytes(), password)
            assert done.child_sa_up and done.ping_ok, f"{name}: {done.describe()}"


def _openssl_unwrap(root: Path, folder: Path) -> Callable[[bytes], bytes]:
    """Verify a signed profile against ``root`` with the openssl CLI; the plist inside."""

    def unwrap(data: bytes) -> bytes:
        signed, content = folder / "signed.der", folder / "content.plist"
        signed.write_bytes(data)
        done = subprocess.run(
            ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signed),
             "-CAfile", str(root), "-purpose", "any", "-out", str(content)],
            capture_output=True, text=True, check=False, env=dict(os.environ),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return content.read_bytes()

    return unwrap


def test_signed_profile_connects(
    package: Path, dns_client: pki.IssuedCertificate, p2s_root: pki.IssuedCertificate,
    tmp_path: Path,
) -> None:  # fmt: skip
    signing_root = pki.create_root("ikev2 test signing root")
    signer = pki.issue_certificate(signing_root, "IT profile signing")
    (tmp_path / "sign.pem").write_bytes(signer.cert_pem)
    (tmp_path / "sign.key").write_bytes(signer.key_pem())
    (tmp_path / "sign-root.pem").write_bytes(signing_root.cert_pem)
    profile = _generate(
        package, dns_client, tmp_path, "alice", "--pkcs12-passphrase-env", "IKEV2_P12",
        "--sign-cert", str(tmp_path / "sign.pem"), "--sign-key", str(tmp_path / "sign.key"),
    )  # fmt: skip
    data = profile.read_bytes()
    assert not data.startswith(b"<?xml")
    unwrap = _openssl_unwrap(tmp_path / "sign-root.pem", tmp_path)
    result = connect(data, P12_PASS, p2s_root.cert_pem, workdir=tmp_path, unwrap=unwrap)
    assert result.child_sa_up and result.ping_ok, result.describe()
