"""The batch with PKCS#12 identities (ios-keychain, ikev2): passwords from the list or generated
into 0600 files, never in the output or manifest, and unchanged users (with their generated
passwords) left alone on a re-run; `sign:` signs the .mobileconfig."""

from __future__ import annotations

import hashlib
import json
import plistlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner, Result

from toolkit import ca
from toolkit.batch.userlist import load_user_list
from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.errors import UserListError
from toolkit.sample import SampleGateway

CA_PASS = b"ca-pass-for-identity-batch"
CHOSEN = "a password chosen for gina"

USERS_YAML = """\
package: VNet1GW.zip
output: profiles
ca:
  dir: pki
  passphrase_env: IDB_CA_PASS
targets: [ios-keychain, ikev2]
users:
  - name: frank
  - name: gina
    email: gina@contoso.example
    pkcs12_passphrase_file: secrets/gina.p12pass
"""


@pytest.fixture
def team(tmp_path: Path, gateway: SampleGateway, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "VNet1GW.zip").write_bytes(gateway.zip_bytes())
    ca.init_ca(tmp_path / "pki", "Identity Batch P2S Root", passphrase=CA_PASS)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "gina.p12pass").write_text(CHOSEN + "\n")
    (tmp_path / "users.yaml").write_text(USERS_YAML)
    monkeypatch.setenv("IDB_CA_PASS", CA_PASS.decode())
    return tmp_path


def run(folder: Path, *args: str) -> Result:
    result = CliRunner().invoke(app, ["batch", str(folder / "users.yaml"), *args])
    assert result.exit_code == 0, f"{result.stdout}\n{result.stderr}"
    return result


def digests(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_ino,
            stat.S_IMODE(p.stat().st_mode),
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_batch_identities_and_idempotent_rerun(team: Path) -> None:
    first = run(team, "--json")
    out = team / "profiles"
    frank_password_file = out / "frank/ikev2/frank-ikev2-password.txt"
    keychain_password_file = out / "frank/ios-keychain/frank-iphone-keychain-password.txt"
    for path in (frank_password_file, keychain_password_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    frank_password = frank_password_file.read_text().strip()
    # generated per target, and never shown or recorded
    assert frank_password != keychain_password_file.read_text().strip()
    manifest = (out / "manifest.json").read_text()
    for text in (first.stdout, first.stderr, manifest):
        assert frank_password not in text and CHOSEN not in text
    # gina chose hers: no password files, the identities open with it
    assert not list((out / "gina").rglob("*password*"))
    profile = plistlib.loads((out / "gina/ikev2/gina-ikev2.mobileconfig").read_bytes())
    identity = next(
        p for p in profile["PayloadContent"] if p["PayloadType"] == "com.apple.security.pkcs12"
    )
    assert "Password" not in identity
    assert pkcs12.load_pkcs12(identity["PayloadContent"], CHOSEN.encode()).key is not None
    vpn = next(p for p in profile["PayloadContent"] if p["PayloadType"] == "com.apple.vpn.managed")
    assert vpn["IKEv2"]["LocalIdentifier"] == "gina@contoso.example"
    frank = plistlib.loads((out / "frank/ikev2/frank-ikev2.mobileconfig").read_bytes())
    frank_vpn = next(p for p in frank["PayloadContent"] if "IKEv2" in p)
    assert frank_vpn["IKEv2"]["LocalIdentifier"] == "frank"  # the CA's DNS SAN
    keychain = (out / "frank/ios-keychain/frank-iphone-keychain.ovpn12").read_bytes()
    assert pkcs12.load_pkcs12(keychain, keychain_password_file.read_text().strip().encode()).key

    # a second run touches nothing: the generated passwords stay what the users were sent
    before = digests(out)
    second = run(team, "--json")
    assert {u["name"]: u["status"] for u in json.loads(second.stdout)["users"]} == {
        "frank": "unchanged",
        "gina": "unchanged",
    }
    assert digests(out) == before
    # --force regenerates: a new generated password, the chosen one stays
    run(team, "--force")
    assert frank_password_file.read_text().strip() != frank_password
    assert not list((out / "gina").rglob("*password*"))


def test_defaults_and_sign(team: Path, tmp_path: Path) -> None:
    root = pki.create_root("Batch signing root")
    signer = pki.issue_certificate(root, "IT profile signing")
    (team / "sign.pem").write_bytes(signer.cert_pem)
    (team / "sign.key").write_bytes(signer.key_pem())
    (team / "users.yaml").write_text(
        USERS_YAML.replace(
            "users:\n",
            "sign: {cert: sign.pem, key: sign.key}\n"
            "defaults:\n  embed_pkcs12_password: true\nusers:\n",
        )
    )
    run(team)
    signed = (team / "profiles/frank/ikev2/frank-ikev2.mobileconfig").read_bytes()
    assert not signed.startswith(b"<?xml") and b"<plist" in signed  # DER with the plist inside
    # embedded: no password file for ikev2 (the keychain target still has its own)
    assert not (team / "profiles/frank/ikev2/frank-ikev2-password.txt").exists()
    assert (team / "profiles/frank/ios-keychain/frank-iphone-keychain-password.txt").exists()


def test_user_list_refuses_both_password_sources(team: Path) -> None:
    (team / "users.yaml").write_text(
        USERS_YAML.replace(
            "    pkcs12_passphrase_file: secrets/gina.p12pass\n",
            "    pkcs12_passphrase_file: secrets/gina.p12pass\n    pkcs12_passphrase_env: X\n",
        )
    )
    with pytest.raises(UserListError) as info:
        load_user_list(team / "users.yaml")
    assert "pkcs12_passphrase_env or pkcs12_passphrase_file" in "\n".join(info.value.details)


def test_defaults_password_applies_unless_the_user_has_one(team: Path) -> None:
    (team / "users.yaml").write_text(
        USERS_YAML.replace("users:\n", "defaults:\n  pkcs12_passphrase_env: TEAM_P12\nusers:\n")
    )
    users = {u.name: u for u in load_user_list(team / "users.yaml").users}
    assert users["frank"].pkcs12_passphrase_env == "TEAM_P12"
    assert users["gina"].pkcs12_passphrase_env is None
    assert users["gina"].pkcs12_passphrase_file == team / "secrets" / "gina.p12pass"
    assert "TEAM_P12" in load_user_list(team / "users.yaml").env_names()
