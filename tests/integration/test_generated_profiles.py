"""The profiles `ovpn-toolkit generate` writes connect, unchanged, to a real OpenVPN 2.6 server
set up like an Azure gateway; a certificate from another root does not (negative control)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.sample import SampleGateway

from .gateway import azure_like_gateway, requires_netns

pytestmark = [pytest.mark.integration, requires_netns]


def _generate(
    tmp_path: Path,
    gateway: SampleGateway,
    client: pki.IssuedCertificate,
    name: str,
    *extra: str,
) -> Path:
    """Run the real CLI on a package zip built like Azure's; return the output folder."""
    package = tmp_path / "VNet1GW.zip"
    package.write_bytes(gateway.zip_bytes())
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(client.cert_pem)
    key.write_bytes(client.key_pem())
    out = tmp_path / "profiles"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            str(package),
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--name",
            name,
            "--target",
            "tunnelblick",
            "--target",
            "openvpn",
            "--target",
            "ios",
            "--output",
            str(out),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return out / name


def _targets(user_dir: Path, name: str) -> dict[str, Path]:
    return {
        "tunnelblick": user_dir / f"tunnelblick/{name}-mac.tblk/Contents/Resources/config.ovpn",
        "openvpn": user_dir / f"openvpn/{name}-linux-windows.ovpn",
        # OpenVPN Connect runs the OpenVPN 3 core, not this binary; connecting with 2.6 still
        # proves the iOS edits (unquoted name, no log, setenv FRIENDLY_NAME) kept it working
        "ios": user_dir / f"ios/{name}-iphone.ovpn",
    }


@pytest.mark.parametrize("target", ["tunnelblick", "openvpn", "ios"])
def test_generated_profile_connects_and_pings(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
    target: str,
) -> None:
    user_dir = _generate(tmp_path, sample_gateway, p2s_client, "alice")
    profile = _targets(user_dir, "alice")[target]
    before = profile.read_bytes()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as gw:
        result = gw.connect(profile, cwd=run_dir)
    assert result.connected, result.describe()
    assert result.ping_ok, result.describe()
    assert profile.read_bytes() == before  # used unchanged


@pytest.mark.parametrize("target", ["tunnelblick", "openvpn"])
def test_certificate_from_another_root_is_refused(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    foreign_client: pki.IssuedCertificate,
    target: str,
) -> None:
    user_dir = _generate(tmp_path, sample_gateway, foreign_client, "mallory")
    profile = _targets(user_dir, "mallory")[target]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as gw:
        result = gw.connect(profile, cwd=run_dir, timeout=15)
    assert not result.connected, result.describe()
    assert not result.ping_ok
    assert "VERIFY ERROR" in result.server_log or "TLS Error" in result.server_log, (
        result.describe()
    )


def test_profile_with_passphrase_protected_key_connects(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--key-passphrase-env: the <key> is encrypted PKCS#8; OpenVPN asks for the passphrase."""
    monkeypatch.setenv("ALICE_PROFILE_PASS", "correct horse battery")
    user_dir = _generate(
        tmp_path, sample_gateway, p2s_client, "alice", "--key-passphrase-env", "ALICE_PROFILE_PASS"
    )
    profile = _targets(user_dir, "alice")["tunnelblick"]
    assert "BEGIN ENCRYPTED PRIVATE KEY" in profile.read_text()
    askpass = tmp_path / "askpass"
    askpass.write_text("correct horse battery\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as gw:
        good = gw.connect(profile, cwd=run_dir, askpass=askpass)
        bad = gw.connect(profile, cwd=run_dir, askpass=wrong, timeout=15)
    assert good.connected and good.ping_ok, good.describe()
    assert not bad.connected, bad.describe()
