"""The ios-keychain target and the PKCS#12 password shared with ikev2: a .ovpn12 the openssl CLI
opens with the legacy algorithms iOS imports, a keyless profile that `check` accepts, and the
password given or generated into its own 0600 file (never printed)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner

from tests.conftest import ClientFiles
from toolkit.check import check_profile
from toolkit.cli import app
from toolkit.credentials import load_pem_credentials
from toolkit.package import load_package
from toolkit.passphrase import PassphraseSource
from toolkit.plan import UserPlan, UserRequest, plan_user
from toolkit.profile import Profile

runner = CliRunner()
STEM = "ios-keychain/alice-iphone-keychain"


def _plan(package_zip: Path, files: ClientFiles, **request: object) -> UserPlan:
    creds = load_pem_credentials(files.cert, files.key, PassphraseSource())
    return plan_user(
        load_package(package_zip),
        creds,
        UserRequest(name="alice", targets=("ios-keychain",), **request),  # type: ignore[arg-type]
    )


def _file(plan: UserPlan, path: str) -> bytes:
    return next(f.data for f in plan.files if f.path == path)


def test_keyless_profile_and_identity(package_zip: Path, client_files: ClientFiles) -> None:
    plan = _plan(package_zip, client_files)
    (target,) = plan.targets
    assert [f.path for f in target.files] == [
        f"{STEM}.ovpn12",
        f"{STEM}.ovpn",
        f"{STEM}-password.txt",
    ]
    # the identity, then the profile; the password file goes by another channel
    assert [f.path for f in target.deliverables] == [f"{STEM}.ovpn12", f"{STEM}.ovpn"]
    assert target.deliverable.path == f"{STEM}.ovpn12"
    profile = Profile.parse(_file(plan, f"{STEM}.ovpn"), "keychain.ovpn")
    assert profile.block("key") is None and profile.first("key") is None
    assert profile.block("ca") is not None and profile.block("tls-auth") is not None
    cert_block = profile.block("cert")
    assert cert_block is not None and "BEGIN CERTIFICATE" in cert_block.content
    text = profile.serialize()
    assert "PRIVATE KEY" not in text
    assert "EXTERNAL_PKI" not in text and "auth-user-pass" not in text
    assert any(e.directive == "<key>" and e.action == "removed" for e in target.edits)
    password = _file(plan, f"{STEM}-password.txt").rstrip(b"\n")
    assert len(password) >= 32
    assert all(f.mode == 0o600 for f in target.files)
    loaded = pkcs12.load_pkcs12(_file(plan, f"{STEM}.ovpn12"), password)
    assert loaded.cert is not None and loaded.key is not None
    assert loaded.cert.certificate == client_files.issued.certificate
    # the password never appears in the plan's JSON
    assert password.decode() not in json.dumps(plan.to_json())


def test_generated_passwords_differ_per_run(package_zip: Path, client_files: ClientFiles) -> None:
    first = _file(_plan(package_zip, client_files), f"{STEM}-password.txt")
    second = _file(_plan(package_zip, client_files), f"{STEM}-password.txt")
    assert first != second


def test_given_password_writes_no_password_file(
    package_zip: Path, client_files: ClientFiles, tmp_path: Path
) -> None:
    secret = tmp_path / "p12.txt"
    secret.write_text("correct horse battery staple\n")
    plan = _plan(package_zip, client_files, pkcs12_passphrase=PassphraseSource(file=secret))
    assert [f.path for f in plan.files] == [f"{STEM}.ovpn12", f"{STEM}.ovpn"]
    loaded = pkcs12.load_pkcs12(_file(plan, f"{STEM}.ovpn12"), b"correct horse battery staple")
    assert loaded.key is not None
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(_file(plan, f"{STEM}.ovpn12"), b"wrong")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_openssl_cli_sees_the_legacy_algorithms(
    package_zip: Path, client_files: ClientFiles, tmp_path: Path
) -> None:
    """Generate through the CLI, then open the .ovpn12 with `openssl pkcs12 -info -legacy`."""
    out = tmp_path / "out"
    env = {"P12_PASS": "Str0ng-p12-pass"}
    result = runner.invoke(
        app,
        [
            "generate", str(package_zip), "--cert", str(client_files.cert), "--key",
            str(client_files.key), "-n", "alice", "-t", "ios-keychain", "-o", str(out),
            "--pkcs12-passphrase-env", "P12_PASS",
        ],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Str0ng-p12-pass" not in result.output
    identity = out / "alice" / f"{STEM}.ovpn12"
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    assert not (out / "alice" / f"{STEM}-password.txt").exists()
    info = subprocess.run(
        ["openssl", "pkcs12", "-info", "-legacy", "-noout", "-in", str(identity),
         "-passin", "env:P12_PASS"],
        capture_output=True, text=True, env={**os.environ, **env}, check=False,
    )  # fmt: skip
    assert info.returncode == 0, info.stderr
    report = info.stdout + info.stderr
    assert "MAC: sha1" in report
    assert report.count("pbeWithSHA1And3-KeyTripleDES-CBC") >= 2  # certificate and key bags
    assert "AES" not in report and "PBKDF2" not in report
    wrong = subprocess.run(
        ["openssl", "pkcs12", "-info", "-legacy", "-noout", "-in", str(identity),
         "-passin", "pass:wrong"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0


def test_check_accepts_the_keyless_profile(
    package_zip: Path, client_files: ClientFiles, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "generate", str(package_zip), "--cert", str(client_files.cert), "--key",
            str(client_files.key), "-n", "alice", "-t", "ios-keychain", "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    password_file = out / "alice" / f"{STEM}-password.txt"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.read_text().strip() not in result.output
    keyless = out / "alice" / f"{STEM}.ovpn"
    for target in ("ios", "ios-keychain"):
        checked = runner.invoke(app, ["check", str(keyless), "-t", target, "--json"])
        assert checked.exit_code == 0, checked.output
        report = json.loads(checked.stdout)
        assert report["clean"] is True
        codes = {f["code"] for f in report["findings"]}
        assert ("no-key" in codes) == (target == "ios")
    # a client that needs the key still refuses it
    assert runner.invoke(app, ["check", str(keyless), "-t", "tunnelblick"]).exit_code == 5


def test_check_ios_keychain_refuses_external_pki_meta(
    package_zip: Path, client_files: ClientFiles
) -> None:
    plan = _plan(package_zip, client_files)
    text = _file(plan, f"{STEM}.ovpn").decode()
    profile = Profile.parse("# OVPN_ACCESS_SERVER_EXTERNAL_PKI=1\n" + text, "meta.ovpn")
    result = check_profile(profile, "ios-keychain")
    assert [f.code for f in result.errors] == ["external-pki-meta"]
    # and a profile with a key gets a warning for this target
    with_key = Profile.parse(text + "<key>\nx\n</key>\n", "key.ovpn")
    assert "key-in-keychain-profile" in {
        f.code for f in check_profile(with_key, "ios-keychain").findings
    }


def test_send_list_guide_and_next_step_name_both_files_but_not_the_password(
    package_zip: Path, client_files: ClientFiles, tmp_path: Path
) -> None:
    def generate(out: Path, *extra: str) -> str:
        result = runner.invoke(
            app,
            [
                "generate", str(package_zip), "--cert", str(client_files.cert), "--key",
                str(client_files.key), "-n", "alice", "-t", "ios-keychain", "-o", str(out),
                *extra,
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.stdout

    document = json.loads(generate(tmp_path / "json", "--json"))
    user = document["user"]
    assert [(s["target"], s["platform"], s["path"]) for s in user["send"]] == [
        ("ios-keychain", "iPhone", f"alice/{STEM}.ovpn12"),
        ("ios-keychain", "iPhone", f"alice/{STEM}.ovpn"),
        ("guide", "all", "alice/INSTALL.html"),
    ]
    folder = tmp_path / "json" / "alice"
    assert (folder / f"{STEM}-password.txt").is_file()  # written, but not in the send list
    password = (folder / f"{STEM}-password.txt").read_text().strip()
    guide = (folder / "INSTALL.html").read_text("utf-8")
    assert password not in guide
    identity = '<code class="file">alice-iphone-keychain.ovpn12</code>'
    profile = '<code class="file">alice-iphone-keychain.ovpn</code>'
    assert identity in guide and profile in guide
    assert "password.txt" not in guide
    section = guide.split('<section id="iphone-keychain">')[1].split("</section>")[0]
    # step 1 the identity with its password, step 2 the profile and the certificate to pick
    first, second = section.index("Step 1"), section.index("Step 2")
    assert first < section.index(identity) < section.index("type the <strong>password") < second
    display = user["display_name"]  # the identity's friendly name, shown in the picker
    assert second < section.index(profile) < section.index(f"pick <strong>{display}</strong>")
    assert identity not in section[second:].split("Good to know")[0]
    assert "Delete Profile" in section  # the old profile
    assert "password</strong> your administrator gives you separately" in section

    text = generate(tmp_path / "text")
    folder = tmp_path / "text" / "alice"
    (step,) = [line for line in text.splitlines() if "iPhone (keychain)" in line]
    assert f"send {folder / STEM}.ovpn12 and {folder / STEM}.ovpn;" in step
    assert f"({folder / STEM}-password.txt unless you chose one) by another channel" in step
