"""A root from `ca init`, clients from `ca issue` and from `batch`: their profiles connect to a
real OpenVPN 2.6 server set up like an Azure gateway that trusts that root, and ping through it.
Negative control: the same profile against a gateway that trusts another root does not connect.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit import ca
from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.sample import SampleGateway

from .gateway import azure_like_gateway, requires_netns

pytestmark = [pytest.mark.integration, requires_netns]

CA_PASS = "integration CA passphrase"
BOB_PASS = b"bob pfx password"


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def _tblk_config(out: Path, name: str) -> Path:
    return out / name / f"tunnelblick/{name}-mac.tblk/Contents/Resources/config.ovpn"


def test_ca_init_and_issue_via_cli_then_generate_connects(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("P2S_CA_PASS", CA_PASS)
    pki_dir = tmp_path / "pki"
    _cli(
        "ca",
        "init",
        "--output",
        str(pki_dir),
        "--cn",
        "Contoso P2S Root",
        "--passphrase-env",
        "P2S_CA_PASS",
    )
    assert b"ENCRYPTED" in (pki_dir / "root.key").read_bytes()
    issued = json.loads(
        _cli(
            "ca",
            "issue",
            "--ca",
            str(pki_dir),
            "--name",
            "alice",
            "--email",
            "alice@contoso.example",
            "--passphrase-env",
            "P2S_CA_PASS",
            "--json",
        )
    )
    cert, key = Path(issued["files"]["cert"]), Path(issued["files"]["key"])
    assert cert.exists() and key.exists()
    package = tmp_path / "VNet1GW.zip"
    package.write_bytes(sample_gateway.zip_bytes())
    out = tmp_path / "profiles"
    _cli(
        "generate", str(package), "--cert", str(cert), "--key", str(key),
        "--root", str(pki_dir / "root.pem"), "--name", "alice",
        "--target", "tunnelblick", "--output", str(out),
    )  # fmt: skip
    profile = _tblk_config(out, "alice")
    before = profile.read_bytes()
    root_pem = (pki_dir / "root.pem").read_bytes()

    with azure_like_gateway(tmp_path, sample_gateway, [root_pem]) as gw:
        result = gw.connect(profile, cwd=tmp_path / "run")
    assert result.connected, result.describe()
    assert result.ping_ok, result.describe()
    assert profile.read_bytes() == before

    # negative control: a gateway that trusts another root refuses the same profile
    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as gw:
        refused = gw.connect(profile, cwd=tmp_path / "run-refused", timeout=15)
    assert not refused.connected, refused.describe()
    assert not refused.ping_ok
    assert "VERIFY ERROR" in refused.server_log or "TLS Error" in refused.server_log, (
        refused.describe()
    )


def test_batch_made_profiles_connect(
    tmp_path: Path, sample_gateway: SampleGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """carol is issued by the batch from the CA; bob brings a PKCS#12 the CA made earlier."""
    monkeypatch.setenv("P2S_CA_PASS", CA_PASS)
    team = tmp_path / "team"
    team.mkdir()
    (team / "VNet1GW.zip").write_bytes(sample_gateway.zip_bytes())
    ca.init_ca(team / "pki", "Contoso P2S Root", passphrase=CA_PASS.encode())
    authority = ca.open_ca(team / "pki", CA_PASS.encode())
    authority.issue("bob", output_dir=team / "certs", pfx_password=BOB_PASS)
    (team / "certs" / "bob.pem").unlink()
    (team / "certs" / "bob.key").unlink()
    (team / "bob.pass").write_bytes(BOB_PASS + b"\n")
    (team / "users.yaml").write_text(
        "package: VNet1GW.zip\n"
        "output: profiles\n"
        "targets: [tunnelblick, openvpn]\n"
        "roots: [pki/root.pem]\n"
        "ca: {dir: pki, passphrase_env: P2S_CA_PASS}\n"
        "users:\n"
        "  - name: carol\n"
        "    email: carol@contoso.example\n"
        "  - name: bob\n"
        "    pfx: certs/bob.pfx\n"
        "    passphrase_file: bob.pass\n"
    )
    stdout = _cli("batch", str(team / "users.yaml"), "--jobs", "2")
    assert "carol: written (certificate issued)" in stdout
    assert "bob: written" in stdout
    out = team / "profiles"
    carol_entry = ca.find_current(team / "pki", "carol")
    assert carol_entry is not None
    manifest = {u["name"]: u for u in json.loads((out / "manifest.json").read_text())["users"]}
    assert manifest["carol"]["certificate"]["thumbprint_sha1"] == carol_entry.thumbprint_sha1

    profiles = {
        "carol (tunnelblick)": _tblk_config(out, "carol"),
        "bob (openvpn)": out / "bob/openvpn/bob-linux-windows.ovpn",
        "bob (tunnelblick)": _tblk_config(out, "bob"),
    }
    results = {}
    with azure_like_gateway(tmp_path, sample_gateway, [(team / "pki/root.pem").read_bytes()]) as gw:
        for label, profile in profiles.items():
            results[label] = gw.connect(profile, cwd=tmp_path / f"run-{label.split()[0]}")
    for label, result in results.items():
        assert result.connected, f"{label}: {result.describe()}"
        assert result.ping_ok, f"{label}: {result.describe()}"
