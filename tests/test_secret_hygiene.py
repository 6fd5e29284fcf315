"""Secret hygiene (issue 8, item 8): no private key and no passphrase anywhere but in the files
meant to hold them.

Every command runs its success and failure paths (human and --json output, --traceback)
with real keys and passphrases made here. Then stdout, stderr, the JSON documents, the
manifests, the journal, the CA ledger and every install guide are scanned for PEM private-key
markers, the base64 lines of every private key involved (the plain PEM and, for encrypted
keys, the decrypted PKCS#8 too) and every passphrase value. A positive control shows the
scanner finds the key in a profile, where it belongs.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.sample import SampleGateway

CA_PASS = "correct horse battery staple (CA)"
KEY_PASS = "alice's key passphrase 7f3a"
PFX_PASS = "bob pfx password 91c2"
PROFILE_PASS = "profile key passphrase e4d1"  # encrypts the key inside the profiles
WRONG = "not the passphrase 0b7e"
PASSPHRASES = [CA_PASS, KEY_PASS, PFX_PASS, PROFILE_PASS, WRONG]
ENV = {
    "CA_PASS": CA_PASS,
    "KEY_PASS": KEY_PASS,
    "PFX_PASS": PFX_PASS,
    "PROFILE_PASS": PROFILE_PASS,
    "WRONG_PASS": WRONG,
}
PEM_MARKER = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def pem_lines(pem: bytes) -> set[bytes]:
    """The base64 body lines of a PEM key (long enough never to occur by chance)."""
    return {
        line.strip()
        for line in pem.splitlines()
        if len(line.strip()) >= 40 and not line.startswith((b"-----", b"Proc-Type", b"DEK-Info"))
    }


@dataclass
class Secrets:
    lines: set[bytes] = field(default_factory=set)
    learnt: set[bytes] = field(default_factory=set)  # key files already read (decrypting is slow)

    def learn_keys(self, root: Path) -> None:
        """Every private key under ``root``, as stored and decrypted with the known passphrases.

        Lines that decode to bytes of the public key (an RSA key's encoding holds the modulus,
        which every certificate shows) are not secret and are left out."""
        for path in root.rglob("*"):
            if not path.is_file() or path.suffix not in (".key", ".pem"):
                continue
            data = path.read_bytes()
            if b"PRIVATE KEY-----" not in data or data in self.learnt:
                continue
            self.learnt.add(data)
            lines = pem_lines(data)
            public = b""
            for passphrase in [None, *[p.encode() for p in PASSPHRASES]]:
                try:
                    key = serialization.load_pem_private_key(data, passphrase)
                except (ValueError, TypeError):
                    continue
                for fmt in (
                    serialization.PrivateFormat.PKCS8,
                    serialization.PrivateFormat.TraditionalOpenSSL,
                ):
                    lines |= pem_lines(
                        key.private_bytes(
                            serialization.Encoding.PEM, fmt, serialization.NoEncryption()
                        )
                    )
                public = key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                break
            self.lines |= {line for line in lines if base64.b64decode(line) not in public}

    def leaks(self, data: bytes) -> list[str]:
        found = []
        if PEM_MARKER.search(data):
            found.append("a PEM private-key marker")
        found += ["a key body line" for line in self.lines if line in data][:1]
        found += [f"passphrase {p!r}" for p in PASSPHRASES if p.encode() in data]
        return found


@dataclass
class Work:
    root: Path
    gateway: SampleGateway

    @property
    def package(self) -> Path:
        return self.root / "VNet1GW.zip"


@pytest.fixture
def work(tmp_path: Path, gateway: SampleGateway) -> Work:
    root = tmp_path / "w"
    (root / "in").mkdir(parents=True)
    (root / "VNet1GW.zip").write_bytes(gateway.zip_bytes())
    (root / "in" / "ca.pass").write_text(CA_PASS + "\n")
    (root / "in" / "wrong.pass").write_text(WRONG + "\n")
    (root / "in" / "pfx.pass").write_text(PFX_PASS + "\n")
    return Work(root, gateway)


def scenarios(w: Work) -> Iterator[tuple[str, list[str], int]]:
    """(id, arguments, exit code), in an order where each step can use the earlier ones."""
    r, pkg = w.root, str(w.package)
    pki_dir, pki2 = str(r / "pki"), str(r / "pki2")
    ca_env = ["--passphrase-env", "CA_PASS"]
    yield "ca-init", ["ca", "init", "--output", pki_dir, *ca_env], 0
    yield (
        "ca-init-json",
        ["ca", "init", "--output", pki2, "--passphrase-file", str(r / "in" / "ca.pass"), "--json"],
        0,
    )
    yield "ca-init-exists", ["ca", "init", "--output", pki_dir, *ca_env], 4
    yield (
        "ca-init-env-unset",
        ["ca", "init", "--output", str(r / "pki3"), "--passphrase-env", "UNSET_VAR"],
        2,
    )
    issue = ["ca", "issue", "--ca", pki_dir]
    yield "ca-issue", [*issue, "--name", "alice", "--email", "alice@contoso.com", *ca_env], 0
    yield (
        "ca-issue-pfx-json",
        [*issue, "--name", "bob", "--pfx", "--pfx-passphrase-env", "PFX_PASS", *ca_env, "--json"],
        0,
    )
    yield "ca-issue-carol", [*issue, "--name", "carol", "-o", str(r / "in"), *ca_env], 0
    yield "ca-issue-wrong-pass", [*issue, "--name", "dave", "--passphrase-env", "WRONG_PASS"], 2
    yield (
        "ca-issue-wrong-pass-file-traceback",
        [
            "--traceback",
            *issue,
            "--name",
            "dave",
            "--passphrase-file",
            str(r / "in" / "wrong.pass"),
        ],
        2,
    )
    yield "ca-issue-again", [*issue, "--name", "alice", *ca_env], 2
    yield "ca-issue-bad-email", [*issue, "--name", "erin", "--email", "josé@contoso", *ca_env], 2
    yield "ca-list", ["ca", "list", "--ca", pki_dir], 0
    yield "ca-list-json", ["ca", "list", "--ca", pki_dir, "--json"], 0
    yield "ca-renew", ["ca", "renew", "alice", "--ca", pki_dir, *ca_env], 0
    yield (
        "ca-renew-json",
        [
            "ca",
            "renew",
            "bob",
            "--ca",
            pki_dir,
            "--pfx",
            "--pfx-passphrase-env",
            "PFX_PASS",
            *ca_env,
            "--json",
        ],
        0,
    )
    yield (
        "ca-renew-wrong-pass",
        ["ca", "renew", "alice", "--ca", pki_dir, "--passphrase-env", "WRONG_PASS"],
        2,
    )
    yield "ca-renew-unknown", ["ca", "renew", "zed", "--ca", pki_dir, *ca_env], 2
    yield "ca-revoke-json", ["ca", "revoke", "bob", "--ca", pki_dir, "--json"], 0
    yield "ca-revoke-unknown", ["ca", "revoke", "zed", "--ca", pki_dir], 2

    alice = r / "pki" / "issued" / "alice"
    enc_key = r / "in" / "alice-enc.key"
    pfx = r / "pki" / "issued" / "bob" / "bob.pfx"
    out = str(r / "out")
    gen = ["generate", pkg, "--output", out, "--root", str(r / "pki" / "root.pem")]
    pem = ["--cert", str(alice / "alice.pem"), "--key", str(enc_key)]
    yield "generate", [*gen, *pem, "--passphrase-env", "KEY_PASS", "--name", "alice"], 0
    yield "generate-exists", [*gen, *pem, "--passphrase-env", "KEY_PASS", "--name", "alice"], 4
    yield (
        "generate-json-profile-pass",
        [
            *gen,
            *pem,
            "--passphrase-env",
            "KEY_PASS",
            "--name",
            "alice",
            "--force",
            "--json",
            "--key-passphrase-env",
            "PROFILE_PASS",
        ],
        0,
    )
    yield (
        "generate-dry-run-json",
        [*gen, *pem, "--passphrase-env", "KEY_PASS", "--name", "a2", "--dry-run", "--json"],
        0,
    )
    yield "generate-wrong-pass", [*gen, *pem, "--passphrase-env", "WRONG_PASS", "--name", "a3"], 2
    yield (
        "generate-wrong-pass-traceback",
        [
            "--traceback",
            *gen,
            *pem,
            "--passphrase-file",
            str(r / "in" / "wrong.pass"),
            "--name",
            "a3",
        ],
        2,
    )
    yield "generate-no-pass", [*gen, *pem, "--name", "a3"], 2
    yield (
        "generate-pfx",
        [*gen, "--pfx", str(pfx), "--passphrase-env", "PFX_PASS", "--name", "bob", "-t", "openvpn"],
        0,
    )
    yield (
        "generate-pfx-wrong-json",
        [*gen, "--pfx", str(pfx), "--passphrase-env", "WRONG_PASS", "--name", "b2", "--json"],
        2,
    )
    yield (
        "generate-key-as-cert",
        [*gen, "--cert", str(enc_key), "--key", str(enc_key), "--name", "a4"],
        2,
    )
    yield (
        "generate-other-key",
        [
            *gen,
            "--cert",
            str(alice / "alice.pem"),
            "--key",
            str(r / "in" / "carol.key"),
            "--name",
            "a5",
        ],
        2,
    )

    yield "inspect", ["inspect", pkg], 0
    yield "inspect-json", ["inspect", pkg, "--json"], 0
    yield "inspect-a-key", ["inspect", str(enc_key)], 2
    profile = str(r / "out" / "alice" / "ios" / "alice-iphone.ovpn")  # written by "generate"
    yield "check", ["check", profile, "--target", "ios"], 0
    yield "check-json", ["check", profile, "--target", "ios", "--json"], 0
    yield "check-a-key", ["check", str(enc_key), "--target", "ios", "--json"], 5

    users = r / "users.yaml"
    yield "batch", ["batch", str(users), "--jobs", "1"], 3
    yield "batch-json", ["batch", str(users), "--jobs", "2", "--json", "--force"], 3
    yield "batch-dry-run-json", ["batch", str(users), "--jobs", "1", "--dry-run", "--json"], 3
    yield "batch-traceback", ["--traceback", "batch", str(users), "--jobs", "1", "--quiet"], 3
    bad_ca = r / "users-bad-ca.yaml"
    yield "batch-wrong-ca-pass", ["batch", str(bad_ca), "--jobs", "1"], 2
    yield "batch-wrong-ca-pass-json", ["batch", str(bad_ca), "--jobs", "1", "--json"], 2

    yield "demo", ["demo", "--output", str(r / "demo")], 0
    yield "demo-exists", ["demo", "--output", str(r / "demo")], 4


USERS_YAML = """\
package: VNet1GW.zip
output: profiles
targets: [tunnelblick, ios]
roots: [pki/root.pem]
ca: {{dir: pki, passphrase_env: {ca_env}}}
users:
  - name: alice
    cert: pki/issued/alice/alice.pem
    key: in/alice-enc.key
    passphrase_env: KEY_PASS
  - name: bob2
    pfx: pki/issued/bob/bob.pfx
    passphrase_file: in/pfx.pass
    key_passphrase_env: PROFILE_PASS
  - name: frank
    email: frank@contoso.com
  - name: mallory
    cert: pki/issued/alice/alice.pem
    key: in/alice-enc.key
    passphrase_env: WRONG_PASS
  - name: grace
    email: grace@contoso.com
    targets: [ios, mobileconfig]
"""


def prepare_batch(w: Work) -> None:
    """After `ca issue`: the encrypted key input and the user lists."""
    key = (w.root / "pki" / "issued" / "alice" / "alice.key").read_bytes()
    private = serialization.load_pem_private_key(key, None)
    (w.root / "in" / "alice-enc.key").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASS.encode()),
        )
    )
    (w.root / "users.yaml").write_text(USERS_YAML.format(ca_env="CA_PASS"))
    (w.root / "users-bad-ca.yaml").write_text(
        USERS_YAML.format(ca_env="WRONG_PASS").replace("name: frank", "name: henry")
    )


def written_reports(root: Path) -> Iterator[Path]:
    """Files meant for people and tools, never for keys: scanned like the streams."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and (
            path.name in ("manifest.json", "manifest.csv", "journal.jsonl", "ledger.json")
            or path.name in ("INSTALL.html", "README.md", "README.txt")
            or path.suffix in (".html", ".log", ".txt", ".csv", ".json")
        ):
            yield path


def test_no_secret_in_any_output_of_any_command(work: Work) -> None:
    runner = CliRunner()
    secrets = Secrets()
    seen = []
    old = os.getcwd()
    os.chdir(work.root)  # relative paths in the user list
    try:
        for name, args, code in scenarios(work):
            if name == "generate":
                prepare_batch(work)
            result = runner.invoke(app, args, env=ENV)
            assert result.exit_code == code, (name, result.exit_code, result.stdout, result.stderr)
            secrets.learn_keys(work.root)
            for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                leaks = secrets.leaks(text.encode())
                assert not leaks, f"{name}: {stream} holds {leaks}"
            seen.append(name)
    finally:
        os.chdir(old)
    assert len(seen) == 44
    reports = list(written_reports(work.root))
    names = {p.name for p in reports}
    assert {
        "manifest.json",
        "manifest.csv",
        "journal.jsonl",
        "ledger.json",
        "INSTALL.html",
    } <= names
    for path in reports:
        leaks = secrets.leaks(path.read_bytes())
        assert not leaks, f"{path.relative_to(work.root)} holds {leaks}"
    assert len(secrets.lines) > 100  # several keys learnt, each in several encodings


def test_the_scanner_finds_keys_where_they_belong(work: Work) -> None:
    """Positive control: the profiles and key files really hold what the scan looks for."""
    root = pki.create_root("Hygiene Root")
    client = pki.issue_certificate(root, "alice@contoso.com")
    (work.root / "in" / "a.key").write_bytes(client.key_pem(KEY_PASS.encode()))
    (work.root / "in" / "a.pem").write_bytes(client.cert_pem)
    secrets = Secrets()
    secrets.learn_keys(work.root)
    result = CliRunner().invoke(
        app,
        [
            "generate",
            str(work.package),
            "--cert",
            str(work.root / "in" / "a.pem"),
            "--key",
            str(work.root / "in" / "a.key"),
            "--passphrase-env",
            "KEY_PASS",
            "--output",
            str(work.root / "out"),
            "-t",
            "ios",
            "-t",
            "mobileconfig",
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.stderr
    profile = next((work.root / "out").rglob("*.ovpn")).read_bytes()
    assert secrets.leaks(profile) == ["a PEM private-key marker", "a key body line"]
    assert secrets.leaks(KEY_PASS.encode()) == [f"passphrase {KEY_PASS!r}"]
