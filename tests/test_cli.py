"""The command line (issue 2, items 9-13): exit codes, JSON reports, errors, no leaked secrets.

In process with typer's CliRunner (stdout and stderr read separately), plus a few runs of the
installed console script in a subprocess. Outputs are parsed back and compared with the real
files and certificates, never with canned text.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import stat
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner, Result

import toolkit
from tests.conftest import ClientFiles
from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.cli.common import SHOW_TRACEBACK
from toolkit.errors import ExitCode
from toolkit.profile import Profile
from toolkit.sample import SampleGateway, make_gateway
from toolkit.targets import TARGETS

PASSPHRASE = "s3cret-Pass-for-tests-4b1e"
WRONG_PASSPHRASE = "not-the-Pass-7c2d"
PASS_ENV = "OVPN_TEST_CLI_PASS"
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_leftover_traceback_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """--traceback sets a module-level switch (one process, one command): reset it per test."""
    monkeypatch.setitem(SHOW_TRACEBACK, "enabled", False)
    monkeypatch.delenv("OVPN_TOOLKIT_TRACEBACK", raising=False)
    monkeypatch.delenv(PASS_ENV, raising=False)


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def assert_one_error(result: Result, code: int, *fragments: str) -> str:
    """Exit ``code``; stderr is exactly 'ERROR: ...' plus 'hint: ...'; nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("ERROR: ")
    assert lines[1].startswith("hint: ")
    assert len(lines[1]) > len("hint: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- material ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Files:
    package: Path
    cert: Path
    key: Path
    root: Path
    out: Path


@pytest.fixture
def files(
    tmp_path: Path, package_zip: Path, client: pki.IssuedCertificate, root_pem: Path
) -> Files:
    cert = tmp_path / "alice.pem"
    key = tmp_path / "alice.key"
    cert.write_bytes(client.cert_pem)
    key.write_bytes(client.key_pem())
    return Files(package_zip, cert, key, root_pem, tmp_path / "out")


@pytest.fixture(scope="session")
def ec_client(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    return pki.issue_certificate(p2s_root, "erin@contoso.com", key_type="ec256")


@pytest.fixture(scope="session")
def chain_gateway() -> SampleGateway:
    return make_gateway(dialect="chain")


def generate_args(f: Files, *extra: object) -> list[object]:
    return [
        "generate",
        f.package,
        "--cert",
        f.cert,
        "--key",
        f.key,
        "--root",
        f.root,
        "--output",
        f.out,
        "--name",
        "alice",
        *extra,
    ]


def tree(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def pem_body_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM (long enough not to match by chance)."""
    return [
        line
        for line in pem.decode().splitlines()
        if line and not line.startswith("-----") and ":" not in line and len(line) >= 16
    ]


def assert_profile_holds(profile_bytes: bytes, issued: pki.IssuedCertificate) -> Profile:
    """Parse a written profile back: <cert> is the client's, <key> is its key."""
    profile = Profile.parse(profile_bytes, "written")
    cert_block = profile.block("cert")
    key_block = profile.block("key")
    assert cert_block is not None and key_block is not None
    assert x509.load_pem_x509_certificate(cert_block.content.encode()) == issued.certificate
    key = serialization.load_pem_private_key(key_block.content.encode(), password=None)
    assert key.public_key().public_bytes(*SPKI) == issued.certificate.public_key().public_bytes(
        *SPKI
    )
    assert "$" not in cert_block.content + key_block.content
    return profile


# --- exit 0 -----------------------------------------------------------------------------------
def test_generate_writes_private_profiles(files: Files, client: pki.IssuedCertificate) -> None:
    result = run(*generate_args(files))
    assert result.exit_code == ExitCode.OK, result.stderr
    assert result.stderr == ""  # a clean certificate: no warnings
    user = files.out / "alice"
    ios = user / "ios" / "alice-iphone.ovpn"
    config = user / "tunnelblick" / "alice-mac.tblk" / "Contents" / "Resources" / "config.ovpn"
    plist = user / "tunnelblick" / "alice-mac.tblk" / "Contents" / "Info.plist"
    bundle_zip = user / "tunnelblick" / "alice-mac.tblk.zip"
    for path in (ios, config, plist, bundle_zip):
        assert path.is_file(), path
        assert f"wrote {path} (0600)" in result.stdout
    assert not (user / "openvpn").exists()  # not a default target
    for path in tree(files.out):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    ios_profile = assert_profile_holds(ios.read_bytes(), client)
    assert ios_profile.first("log") is None
    text = ios.read_text()
    verify_lines = [ln for ln in text.splitlines() if ln.startswith("verify-x509-name")]
    assert len(verify_lines) == 1
    assert "'" not in verify_lines[0]
    tblk_profile = assert_profile_holds(config.read_bytes(), client)
    assert tblk_profile.first("log") is None
    with zipfile.ZipFile(bundle_zip) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {"alice-mac.tblk"}
    assert "Next:" in result.stdout
    assert "private channel" in result.stdout


def test_generate_with_warnings_still_writes(
    files: Files, ec_client: pki.IssuedCertificate
) -> None:
    files.cert.write_bytes(ec_client.cert_pem)
    files.key.write_bytes(ec_client.key_pem())
    result = run(*generate_args(files, "--target", "ios"))
    assert result.exit_code == ExitCode.OK, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert "EC key" in warnings[0]
    assert str(files.cert) in warnings[0]
    assert_profile_holds(
        (files.out / "alice" / "ios" / "alice-iphone.ovpn").read_bytes(), ec_client
    )


def test_generate_openvpn_target_and_default_name_from_cn(files: Files) -> None:
    args = [a for a in generate_args(files, "-t", "openvpn") if a not in ("--name", "alice")]
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    written = files.out / "alice@contoso.com" / "openvpn" / "alice@contoso.com-linux-windows.ovpn"
    assert written.is_file()
    user = files.out / "alice@contoso.com"
    assert tree(user) == [user / "INSTALL.html", written.parent, written]


# --- exit 2: bad input --------------------------------------------------------------------------
def _garbage_package(f: Files) -> list[object]:
    bad = f.package.parent / "garbage.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    return ["generate", bad, "--cert", f.cert, "--key", f.key, "--output", f.out]


def _package_without_openvpn(f: Files) -> list[object]:
    bad = f.package.parent / "ikev2-only.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("Generic/VpnSettings.xml", "<VpnProfile/>")
    return ["generate", bad, "--cert", f.cert, "--key", f.key, "--output", f.out]


def _missing_package(f: Files) -> list[object]:
    return ["generate", f.package.parent / "nope.zip", "--cert", f.cert, "--key", f.key]


def _mismatched_key(f: Files) -> list[object]:
    f.key.write_bytes(pki.generate_key("ec256").private_bytes(*_pkcs8_plain()))
    return generate_args(f)


def _garbage_key(f: Files) -> list[object]:
    f.key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n")
    return generate_args(f)


def _untrusted(f: Files) -> list[object]:
    f.root.write_bytes(pki.create_root("Unrelated Root", key_type="ec256").cert_pem)
    return generate_args(f)


def _pkcs8_plain() -> tuple[
    serialization.Encoding, serialization.PrivateFormat, serialization.NoEncryption
]:
    return (
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


Build = Callable[[Files], list[object]]


def _with_name(name: str) -> Build:
    def build(f: Files) -> list[object]:
        args = generate_args(f)
        args[args.index("--name") + 1] = name
        return args

    return build


def _unknown_target(f: Files) -> list[object]:
    return generate_args(f, "--target", "android")


def _pfx_and_cert(f: Files) -> list[object]:
    pfx = f.package.parent / "alice.pfx"
    pfx.write_bytes(b"whatever")
    return generate_args(f, "--pfx", pfx)


def _no_credentials(f: Files) -> list[object]:
    return ["generate", f.package, "--output", f.out]


def _disable_dco_without_openvpn(f: Files) -> list[object]:
    return generate_args(f, "--target", "ios", "--disable-dco")


INPUT_ERRORS = [
    pytest.param(_garbage_package, "not a zip file", id="package-garbage"),
    pytest.param(_package_without_openvpn, "no OpenVPN/vpnconfig.ovpn", id="package-no-openvpn"),
    pytest.param(_missing_package, "no such file", id="package-missing"),
    pytest.param(_mismatched_key, "does not belong to the certificate", id="credentials-mismatch"),
    pytest.param(_garbage_key, "cannot be parsed", id="credentials-garbage-key"),
    pytest.param(_untrusted, "not issued by any given root", id="credentials-untrusted"),
    pytest.param(_with_name("../x"), "--name '../x'", id="name-dotdot-slash"),
    pytest.param(_with_name("a/b"), "--name 'a/b'", id="name-slash"),
    pytest.param(_with_name(".."), "--name '..'", id="name-dotdot"),
    pytest.param(_with_name("con"), "reserved device name", id="name-windows-device"),
    pytest.param(_unknown_target, "unknown target 'android'", id="unknown-target"),
    pytest.param(_pfx_and_cert, "--pfx cannot be combined", id="pfx-with-cert"),
    pytest.param(_no_credentials, "no client credentials", id="no-credentials"),
    pytest.param(_disable_dco_without_openvpn, "--disable-dco", id="disable-dco-without-openvpn"),
]


@pytest.mark.parametrize(("build", "fragment"), INPUT_ERRORS)
def test_generate_input_errors_exit_2_and_write_nothing(
    build: Build, fragment: str, files: Files
) -> None:
    args = build(files)
    result = run(*args)
    assert_one_error(result, ExitCode.INPUT, fragment)
    assert not files.out.exists()


# --- exit 4: output ---------------------------------------------------------------------------
def test_existing_output_needs_force(files: Files) -> None:
    assert run(*generate_args(files)).exit_code == 0
    before = {p: p.read_bytes() for p in tree(files.out) if p.is_file()}
    second = run(*generate_args(files))
    assert_one_error(second, ExitCode.OUTPUT, "already exists")
    assert "--force" in second.stderr
    assert {p: p.read_bytes() for p in tree(files.out) if p.is_file()} == before
    dry = run(*generate_args(files, "--dry-run"))
    assert_one_error(dry, ExitCode.OUTPUT, "already exists")
    forced = run(*generate_args(files, "--force"))
    assert forced.exit_code == 0, forced.stderr
    assert {p for p in tree(files.out) if p.is_file()} == set(before)


def test_output_path_is_a_file(files: Files) -> None:
    files.out.write_text("I am a file\n")
    result = run(*generate_args(files))
    assert_one_error(result, ExitCode.OUTPUT, "not a folder")
    assert files.out.read_text() == "I am a file\n"


# --- --dry-run and --json -----------------------------------------------------------------------
def test_dry_run_prints_the_plan_and_writes_nothing(files: Files) -> None:
    result = run(*generate_args(files, "--dry-run", "-t", "tunnelblick", "-t", "ios"))
    assert result.exit_code == 0, result.stderr
    assert not files.out.exists()
    user = files.out / "alice"
    for rel in (
        "tunnelblick/alice-mac.tblk/Contents/Resources/config.ovpn",
        "tunnelblick/alice-mac.tblk/Contents/Info.plist",
        "tunnelblick/alice-mac.tblk.zip",
        "ios/alice-iphone.ovpn",
    ):
        assert f"would write {user / rel} (0600)" in result.stdout
    assert "wrote " not in result.stdout
    assert "removed 'log'" in result.stdout
    json_result = run(*generate_args(files, "--dry-run", "--json"))
    assert json_result.exit_code == 0
    document = json.loads(json_result.stdout)
    assert document["dry_run"] is True
    assert not files.out.exists()


def test_json_report_matches_the_written_files(
    files: Files, client: pki.IssuedCertificate, gateway: SampleGateway
) -> None:
    result = run(*generate_args(files, "--json", "-t", "tunnelblick", "-t", "ios", "-t", "openvpn"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    document = json.loads(result.stdout)  # exactly one JSON document: nothing else on stdout
    assert document["schema_version"] == 1
    assert document["command"] == "generate"
    assert document["dry_run"] is False
    assert (
        document["package"]["profile_sha256"]
        == hashlib.sha256(gateway.profile_text().encode()).hexdigest()
    )
    user = document["user"]
    assert user["name"] == "alice"
    # files: every written file is listed with its real sha256 and mode, and nothing else
    listed = {}
    for target in user["targets"]:
        for entry in target["files"]:
            path = files.out / entry["path"]
            listed[path] = entry
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
            assert entry["mode"] == "0600"
            assert mode(path) == 0o600
            assert entry["bytes"] == path.stat().st_size
    guide = files.out / user["guide"]
    assert guide == files.out / "alice" / "INSTALL.html" and guide.is_file()
    assert set(listed) | {guide} == {p for p in tree(files.out) if p.is_file()}
    assert [t["target"] for t in user["targets"]] == ["tunnelblick", "ios", "openvpn"]
    # what to send: one file per platform, named for it, then the guide; all written
    assert [(s["platform"], s["path"]) for s in user["send"]] == [
        ("Mac", "alice/tunnelblick/alice-mac.tblk.zip"),
        ("iPhone", "alice/ios/alice-iphone.ovpn"),
        ("Linux/Windows", "alice/openvpn/alice-linux-windows.ovpn"),
        ("all", "alice/INSTALL.html"),
    ]
    assert {t["send"] for t in user["targets"]} == {s["path"] for s in user["send"][:-1]}
    sent = [Path(s["path"]).name for s in user["send"]]
    assert len(set(sent)) == len(sent)  # no two differ only by folder
    # edits: per target, with line, directive, action, reason
    edits = {t["target"]: t["edits"] for t in user["targets"]}
    ios_edits = {(e["action"], e["directive"]) for e in edits["ios"]}
    assert {("removed", "log"), ("changed", "verify-x509-name")} <= ios_edits
    assert {("filled", "<cert>"), ("filled", "<key>")} <= ios_edits
    assert ("removed", "log") in {(e["action"], e["directive"]) for e in edits["tunnelblick"]}
    assert {e["action"] for e in edits["openvpn"]} == {"filled"}
    log_line = next(
        i + 1
        for i, line in enumerate(gateway.profile_text().splitlines())
        if line == "log openvpn.log"
    )
    assert next(e for e in edits["ios"] if e["directive"] == "log")["line"] == log_line
    for edit in edits["ios"]:
        assert edit["reason"]
    assert user["warnings"] == []
    # certificate: compared with the certificate itself
    cert = client.certificate
    reported = user["certificate"]
    assert reported["subject"] == cert.subject.rfc4514_string()
    assert reported["issuer"] == cert.issuer.rfc4514_string()
    assert reported["not_after"] == cert.not_valid_after_utc.isoformat()
    der = cert.public_bytes(serialization.Encoding.DER)
    assert reported["thumbprint_sha1"] == hashlib.sha1(der).hexdigest().upper()  # noqa: S324


def test_json_report_carries_warnings(files: Files, ec_client: pki.IssuedCertificate) -> None:
    files.cert.write_bytes(ec_client.cert_pem)
    files.key.write_bytes(ec_client.key_pem())
    result = run(*generate_args(files, "--json", "--warn-days", "400"))
    assert result.exit_code == 0
    assert result.stderr == ""  # warnings are in the document, not around it
    warnings = json.loads(result.stdout)["user"]["warnings"]
    assert {w["code"] for w in warnings} == {"ec-key", "expires-soon"}
    assert all(w["level"] == "warning" and w["message"] for w in warnings)


# --- check --------------------------------------------------------------------------------------
def test_check_stock_azure_profile_for_ios_exits_5(tmp_path: Path, gateway: SampleGateway) -> None:
    stock = tmp_path / "vpnconfig.ovpn"
    stock.write_text(gateway.profile_text())
    result = run("check", stock, "--target", "ios", "--json")
    assert result.exit_code == ExitCode.FINDINGS
    document = json.loads(result.stdout)
    assert document["clean"] is False
    codes = {(f["code"], f["level"]) for f in document["findings"]}
    assert ("quoted-verify-x509-name", "error") in codes
    assert ("refused-option", "error") in codes
    placeholders = [f for f in document["findings"] if f["code"] == "placeholder"]
    assert {p["message"].split()[-4] for p in placeholders} == {"$CLIENTCERTIFICATE", "$PRIVATEKEY"}
    human = run("check", stock, "--target", "ios")
    assert human.exit_code == ExitCode.FINDINGS
    errors = [line for line in human.stdout.splitlines() if ": error: " in line]
    assert len(errors) == len([f for f in document["findings"] if f["level"] == "error"])
    assert any("'log'" in line for line in errors)


@pytest.mark.parametrize(
    ("target", "rel"),
    [
        ("ios", "ios/alice-iphone.ovpn"),
        ("tunnelblick", "tunnelblick/alice-mac.tblk/Contents/Resources/config.ovpn"),
        ("openvpn", "openvpn/alice-linux-windows.ovpn"),
    ],
)
def test_check_generated_profile_is_clean(files: Files, target: str, rel: str) -> None:
    assert run(*generate_args(files, "-t", target)).exit_code == 0
    profile = files.out / "alice" / rel
    result = run("check", profile, "--target", target)
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[-1] == f"{profile}: ok for {TARGETS[target].title}"
    assert ": error: " not in result.stdout
    document = json.loads(run("check", profile, "--target", target, "--json").stdout)
    assert document["clean"] is True
    assert [f for f in document["findings"] if f["level"] == "error"] == []


def test_check_finds_a_swapped_key(files: Files, tmp_path: Path) -> None:
    """Negative control for the clean check: the same profile with someone else's key."""
    assert run(*generate_args(files, "-t", "openvpn")).exit_code == 0
    profile = files.out / "alice" / "openvpn" / "alice-linux-windows.ovpn"
    text = profile.read_text()
    start, end = text.index("<key>\n") + 6, text.index("</key>")
    other = pki.generate_key("ec256").private_bytes(*_pkcs8_plain()).decode()
    swapped = tmp_path / "swapped.ovpn"
    swapped.write_text(text[:start] + other + text[end:])
    result = run("check", swapped, "--target", "openvpn", "--json")
    assert result.exit_code == ExitCode.FINDINGS
    codes = [f["code"] for f in json.loads(result.stdout)["findings"] if f["level"] == "error"]
    assert codes == ["key-mismatch"]


def test_check_missing_profile_is_an_input_error(tmp_path: Path) -> None:
    assert_one_error(run("check", tmp_path / "none.ovpn", "--target", "ios"), 2, "none.ovpn")


# --- inspect ------------------------------------------------------------------------------------
def test_inspect_json(package_zip: Path, gateway: SampleGateway) -> None:
    result = run("inspect", package_zip, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema_version"] == 1
    gw = report["gateway"]
    assert gw["host"] == gateway.remote_host
    assert gw["port"] == "443"
    assert gw["proto"] == "tcp"
    assert gw["verify_x509_name"] == gateway.server_name
    assert gw["cipher"] == "AES-256-GCM"
    assert gw["auth"] == "SHA256"
    assert gw["tls_version_min"] == "1.2"
    ca_cert = gateway.public_root.certificate
    assert report["ca"]["subject"] == ca_cert.subject.rfc4514_string()
    assert report["ca"]["not_after"] == ca_cert.not_valid_after_utc.isoformat()
    assert (
        report["ca"]["fingerprint_sha256"] == ca_cert.fingerprint(hashes.SHA256()).hex(":").upper()
    )
    assert report["tls_auth_present"] is True
    assert report["placeholder_dialect"] == "classic"
    assert report["vpn_settings"]["routes"] == ["10.1.0.0/16"]
    targets = report["targets"]
    assert set(targets) == {
        "tunnelblick",
        "ios",
        "ios-keychain",
        "openvpn",
        "mobileconfig",
        "ikev2",
    }
    assert {(e["action"], e["directive"]) for e in targets["tunnelblick"]["edits"]} >= {
        ("removed", "log")
    }
    ios = {(e["action"], e["directive"]) for e in targets["ios"]["edits"]}
    assert {("removed", "log"), ("changed", "verify-x509-name")} <= ios
    assert targets["openvpn"]["edits"] == []
    assert_no_tls_auth(result.stdout + result.stderr, gateway)


def test_inspect_human(package_zip: Path, gateway: SampleGateway) -> None:
    result = run("inspect", package_zip)
    assert result.exit_code == 0, result.stderr
    fields = {}
    for line in result.stdout.splitlines():
        if ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    assert fields["gateway"] == f"{gateway.remote_host} port 443 proto tcp"
    assert fields["verify name"] == gateway.server_name
    assert "cipher AES-256-GCM" in fields["crypto"]
    ca_cert = gateway.public_root.certificate
    assert ca_cert.subject.rfc4514_string() in fields["ca"]
    assert f"{ca_cert.not_valid_after_utc:%Y-%m-%d}" in fields["ca"]
    assert fields["ca sha256"] == ca_cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert fields["tls-auth"] == "present"
    assert fields["placeholders"] == "classic"
    ios_section = result.stdout.split("OpenVPN Connect (iOS):")[1].split("OpenVPN 2.x")[0]
    assert "removed 'log'" in ios_section
    assert "changed 'verify-x509-name'" in ios_section
    assert_no_tls_auth(result.stdout + result.stderr, gateway)


def test_inspect_chain_dialect(tmp_path: Path, chain_gateway: SampleGateway) -> None:
    package = tmp_path / "Chain.zip"
    package.write_bytes(chain_gateway.zip_bytes(backslashes=True, top_folder="Chain"))
    report = json.loads(run("inspect", package, "--json").stdout)
    assert report["placeholder_dialect"] == "chain"
    assert report["gateway"]["verify_x509_name"] == chain_gateway.server_name


def assert_no_tls_auth(output: str, gateway: SampleGateway) -> None:
    hex_lines = [
        line for line in gateway.tls_auth_key.splitlines() if line and not line.startswith("--")
    ]
    assert len(hex_lines) == 16
    for line in hex_lines:
        assert line not in output
    assert "OpenVPN Static key" not in output


# --- errors and tracebacks ----------------------------------------------------------------------
def test_traceback_flag_shows_a_traceback(files: Files) -> None:
    without = run("inspect", files.package.parent / "nope.zip")
    assert "Traceback" not in without.stderr
    result = run("--traceback", "inspect", files.package.parent / "nope.zip")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "ERROR: " in result.stderr


def test_interrupt_exits_130(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("toolkit.package.load_package", interrupted)  # imported lazily
    result = run("inspect", files.package)
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.stderr.strip() == "interrupted"


def test_encrypted_key_without_tty_says_no_passphrase(
    files: Files, client: pki.IssuedCertificate
) -> None:
    """stdin is not a terminal: no prompt, a clear error instead of hanging."""
    files.key.write_bytes(client.key_pem(PASSPHRASE.encode()))
    result = run(*generate_args(files))
    assert_one_error(result, 2, "no passphrase was given", str(files.key))
    assert "--passphrase-env" in result.stderr
    ok = run(*generate_args(files, "--passphrase-env", PASS_ENV), env={PASS_ENV: PASSPHRASE})
    assert ok.exit_code == 0, ok.stderr


# --- no secret ever printed ---------------------------------------------------------------------
@dataclass(frozen=True)
class Secrets:
    lines: list[str]  # base64 lines of every private key PEM the runs below read
    passphrases: list[str]


@pytest.fixture
def leak_setup(
    files: Files, client: pki.IssuedCertificate, tmp_path: Path
) -> tuple[Files, Secrets, dict[str, Path]]:
    plain_pem = client.key_pem()
    encrypted_pem = client.key_pem(PASSPHRASE.encode())
    extra: dict[str, Path] = {}
    extra["enc_key"] = tmp_path / "alice-enc.key"
    extra["enc_key"].write_bytes(encrypted_pem)
    extra["pfx"] = tmp_path / "alice.pfx"
    extra["pfx"].write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"alice",
            client.private_key,
            client.certificate,
            None,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
    )
    extra["truncated_key"] = tmp_path / "truncated.key"
    lines = plain_pem.decode().splitlines()
    extra["truncated_key"].write_text("\n".join(lines[:8] + lines[-1:]) + "\n")
    extra["wrong_pass_file"] = tmp_path / "wrong.pass"
    extra["wrong_pass_file"].write_text(WRONG_PASSPHRASE + "\n")
    extra["other_key"] = tmp_path / "other.key"
    other_pem = pki.generate_key("ec256").private_bytes(*_pkcs8_plain())
    extra["other_key"].write_bytes(other_pem)
    secrets = Secrets(
        lines=pem_body_lines(plain_pem) + pem_body_lines(encrypted_pem) + pem_body_lines(other_pem),
        passphrases=[PASSPHRASE, WRONG_PASSPHRASE],
    )
    assert len(secrets.lines) > 20
    return files, secrets, extra


def _scenarios(
    f: Files, x: dict[str, Path]
) -> Iterator[tuple[str, list[object], dict[str, str], int]]:
    """(id, args, env, expected exit code) for every path that touches a key or passphrase."""
    wrong = {PASS_ENV: WRONG_PASSPHRASE}
    right = {PASS_ENV: PASSPHRASE}
    base = ["generate", f.package, "--output", f.out, "--name", "alice", "--root", f.root]
    pem = [*base, "--cert", f.cert]
    yield "wrong-pass-env", [*pem, "--key", x["enc_key"], "--passphrase-env", PASS_ENV], wrong, 2
    yield (
        "wrong-pass-file",
        [*pem, "--key", x["enc_key"], "--passphrase-file", x["wrong_pass_file"]],
        {},
        2,
    )
    yield "wrong-pass-pfx", [*base, "--pfx", x["pfx"], "--passphrase-env", PASS_ENV], wrong, 2
    yield "no-pass-pfx", [*base, "--pfx", x["pfx"]], {}, 2
    yield "env-not-set", [*pem, "--key", x["enc_key"], "--passphrase-env", PASS_ENV], {}, 2
    yield "mismatched-key", [*pem, "--key", x["other_key"]], {}, 2
    yield "truncated-key", [*pem, "--key", x["truncated_key"]], {}, 2
    yield "key-as-cert", [*base, "--cert", f.key, "--key", f.key], {}, 2
    yield "key-as-root", [*pem, "--key", f.key, "--root", f.key], {}, 2
    yield "key-as-pfx", [*base, "--pfx", f.key, "--passphrase-env", PASS_ENV], right, 2
    yield "key-as-package", ["generate", f.key, "--cert", f.cert, "--key", f.key], {}, 2
    yield "key-as-inspect", ["inspect", x["enc_key"]], {}, 2
    yield "key-as-check", ["check", f.key, "--target", "ios"], {}, 5
    yield (
        "traceback-wrong-pass",
        ["--traceback", *pem, "--key", x["enc_key"], "--passphrase-env", PASS_ENV],
        wrong,
        2,
    )
    yield (
        "dry-run-json",
        [*pem, "--key", x["enc_key"], "--passphrase-env", PASS_ENV, "--dry-run", "--json"],
        right,
        0,
    )
    yield "generate-human", [*pem, "--key", x["enc_key"], "--passphrase-env", PASS_ENV], right, 0
    yield "exists", [*pem, "--key", f.key], {}, 4
    yield (
        "generate-pfx-json",
        [*base, "--pfx", x["pfx"], "--passphrase-env", PASS_ENV, "--json", "--force"],
        right,
        0,
    )
    profile = f.out / "alice" / "ios" / "alice-iphone.ovpn"
    yield "check-generated", ["check", profile, "--target", "ios"], {}, 0
    yield "check-generated-json", ["check", profile, "--target", "ios", "--json"], {}, 0
    yield "inspect-json", ["inspect", f.package, "--json"], {}, 0


def test_no_secret_in_any_output(leak_setup: tuple[Files, Secrets, dict[str, Path]]) -> None:
    files, secrets, extra = leak_setup
    seen = []
    for name, args, env, code in _scenarios(files, extra):
        result = run(*args, env=env)
        assert result.exit_code == code, (name, result.stdout, result.stderr)
        output = result.stdout + result.stderr
        assert "PRIVATE KEY" not in output, name
        for line in secrets.lines:
            assert line not in output, f"{name}: key material in the output"
        for passphrase in secrets.passphrases:
            assert passphrase not in output, f"{name}: a passphrase in the output"
        seen.append(name)
    # the profiles really hold the key: the scan above would have caught a printed profile
    written = (files.out / "alice" / "ios" / "alice-iphone.ovpn").read_text()
    assert "PRIVATE KEY" in written
    assert len(seen) == 21


# --- the installed program ----------------------------------------------------------------------
def console_script() -> str:
    """The script pip installed beside this interpreter (no PATH or activated venv needed)."""
    scripts = Path(sysconfig.get_path("scripts"))
    path = scripts / "ovpn-toolkit"
    assert path.is_file(), f"no ovpn-toolkit in {scripts}: run pip install -e '.[test]' there"
    return str(path)


def test_console_script_version() -> None:
    result = subprocess.run([console_script(), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"ovpn-toolkit {toolkit.__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "toolkit", "--version"], capture_output=True, text=True
    )
    assert module.returncode == 0
    assert module.stdout == result.stdout


def test_console_script_error_is_one_line_and_hint(tmp_path: Path) -> None:
    result = subprocess.run(
        [console_script(), "inspect", str(tmp_path / "missing.zip")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0] == f"ERROR: {tmp_path / 'missing.zip'}: no such file or folder"
    assert lines[1].startswith("hint: ")
    assert "\x1b[" not in result.stderr  # no colour codes when not a terminal
    assert result.stdout == ""


def test_console_script_json_is_utf8_whatever_the_locale(
    package_zip: Path, client_files: ClientFiles, tmp_path: Path
) -> None:
    """--json goes out as UTF-8 bytes even under the C locale: a display name outside ASCII is
    written as it is, and the document parses back."""
    out = tmp_path / "zoe"
    result = subprocess.run(
        [
            *(console_script(), "generate", str(package_zip)),
            *("--cert", str(client_files.cert), "--key", str(client_files.key)),
            *("--name", "zoe", "--display-name", "Zoë ☃", "--output", str(out), "--json"),
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii"},
    )
    assert result.returncode == 0, result.stderr
    assert "Zoë ☃".encode() in result.stdout
    assert json.loads(result.stdout.decode("utf-8"))["user"]["display_name"] == "Zoë ☃"


def test_console_script_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [console_script(), "demo", "--output", str(out)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "DEMO" in result.stdout
    assert mode(out) == 0o700
    profiles = [p for p in out.rglob("*.ovpn")]
    assert profiles
    assert list(out.rglob("*.tblk.zip"))
    assert list(out.rglob("Info.plist"))
    for path in tree(out):
        is_secret = path.is_file() and (
            path.suffix in (".key", ".pfx", ".ovpn", ".pass", ".zip")
            or b"PRIVATE KEY" in path.read_bytes()
        )
        if path.is_dir():
            assert mode(path) == 0o700, path
        elif is_secret:
            assert mode(path) == 0o600, path
    ios = next(p for p in profiles if p.parent.name == "ios")
    profile = Profile.parse(ios.read_bytes(), str(ios))
    cert_block, key_block = profile.block("cert"), profile.block("key")
    assert cert_block is not None and key_block is not None
    cert = x509.load_pem_x509_certificate(cert_block.content.encode())
    key = serialization.load_pem_private_key(key_block.content.encode(), password=None)
    assert key.public_key().public_bytes(*SPKI) == cert.public_key().public_bytes(*SPKI)
    check = subprocess.run(
        [console_script(), "check", str(ios), "--target", "ios"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout


def _read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    data = b""
    while needle not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_hidden_prompt_on_a_terminal(files: Files, client: pki.IssuedCertificate) -> None:
    """stdin is a terminal: the passphrase is asked for, not echoed, and used."""
    files.key.write_bytes(client.key_pem(PASSPHRASE.encode()))
    master, slave = pty.openpty()
    args = [console_script(), *(str(a) for a in generate_args(files, "-t", "ios"))]
    process = subprocess.Popen(  # a new session: no controlling terminal but the pty
        args, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    os.close(slave)
    try:
        assert process.stderr is not None
        prompt = _read_until(process.stderr.fileno(), b": ", time.monotonic() + 30)
        assert f"Passphrase for {files.key}".encode() in prompt
        os.write(master, PASSPHRASE.encode() + b"\n")
        echoed = b""
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                echoed = os.read(master, 4096)
            except OSError:  # the program has already closed the terminal
                echoed = b""
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert PASSPHRASE.encode() not in echoed
    assert process.returncode == 0, stderr
    assert PASSPHRASE.encode() not in stdout + stderr
    assert_profile_holds((files.out / "alice" / "ios" / "alice-iphone.ovpn").read_bytes(), client)


def test_loading_the_cli_imports_no_heavy_module() -> None:
    """`--help` stays fast: the core (cryptography, jinja2, yaml) is imported by the commands."""
    code = (
        "import sys, toolkit.cli.app; "
        "print(' '.join(m for m in ('cryptography', 'jinja2', 'yaml') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_cli_constants_match_the_core() -> None:
    """The help texts' values, kept in toolkit.cli.constants, are the core's values."""
    from toolkit import ca
    from toolkit.ca import authority, azure
    from toolkit.cli import constants
    from toolkit.targets import DEFAULT_TARGETS, TARGETS

    assert tuple(TARGETS) == constants.TARGET_NAMES
    assert constants.DEFAULT_TARGETS == DEFAULT_TARGETS
    assert tuple(ca.KEY_TYPES) == constants.KEY_TYPES
    assert constants.DEFAULT_ROOT_CN == ca.DEFAULT_ROOT_CN
    assert constants.DEFAULT_ROOT_DAYS == ca.DEFAULT_ROOT_DAYS
    assert constants.DEFAULT_CLIENT_DAYS == authority.DEFAULT_CLIENT_DAYS
    assert constants.DEFAULT_WARN_DAYS == ca.DEFAULT_WARN_DAYS
    assert constants.GATEWAY_PLACEHOLDER == azure.GATEWAY_PLACEHOLDER
    assert constants.RG_PLACEHOLDER == azure.RG_PLACEHOLDER
