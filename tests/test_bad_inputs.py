# ruff: noqa: E501 - the table keeps one case per line
"""Bad input, end to end through the real CLI (issue 8, item 6).

Every row is one hostile or broken input as the world sends it. Each asserts: the documented
exit code, a one-line ``ERROR:`` naming the problem plus a ``hint:``, no traceback, no output
files (in a batch: none for that user), and no key material or passphrase anywhere in stdout,
stderr or JSON. Keys and certificates are generated at run time (session-scoped in conftest).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import shutil
import struct
import subprocess
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from typer.testing import CliRunner, Result

from toolkit.ca import keys as pki
from toolkit.cli import app
from toolkit.cli.common import SHOW_TRACEBACK
from toolkit.errors import ExitCode
from toolkit.sample import SampleGateway

PASSPHRASE = "Bad-Input-Pass-91f3"
WRONG = "Not-The-Pass-0a7e"
PASS_ENV = "OVPN_BAD_INPUT_PASS"
INPUT, PARTIAL = int(ExitCode.INPUT), int(ExitCode.PARTIAL)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SHOW_TRACEBACK, "enabled", False)
    monkeypatch.delenv("OVPN_TOOLKIT_TRACEBACK", raising=False)
    monkeypatch.delenv(PASS_ENV, raising=False)


# --- material made once per session --------------------------------------------------------
def _openssl_cert(tmp: Path, name: str, serial: str) -> tuple[bytes, bytes]:
    """A self-signed client certificate with ``serial`` (openssl takes what cryptography
    refuses to build: negative and over-long serials)."""
    key, cert = tmp / f"{name}.key", tmp / f"{name}.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
            "-set_serial", serial, "-addext", "extendedKeyUsage=clientAuth",
            "-addext", "basicConstraints=critical,CA:FALSE",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert.read_bytes(), key.read_bytes()


@dataclass(frozen=True)
class Material:
    gateway: SampleGateway
    root: pki.IssuedCertificate
    client: pki.IssuedCertificate
    second: pki.IssuedCertificate
    weak: pki.IssuedCertificate
    expired: pki.IssuedCertificate
    server_only: pki.IssuedCertificate
    negative: tuple[bytes, bytes]
    huge: tuple[bytes, bytes]

    def secrets(self) -> list[str]:
        """Strings that must never appear in any output."""
        found = [PASSPHRASE, WRONG, "PRIVATE KEY-----\n"]
        for issued in (self.client, self.second, self.weak):
            body = issued.key_pem().decode().splitlines()[1:-1]
            found += [line for line in body[1:4] if len(line) > 20]
        found += [
            line
            for line in self.gateway.tls_auth_key.splitlines()
            if len(line) == 32 and "-" not in line
        ][:4]
        return found


@pytest.fixture(scope="session")
def material(
    gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    client: pki.IssuedCertificate,
    tmp_path_factory: pytest.TempPathFactory,
) -> Material:
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the bad input
    now = pki.utcnow()
    tmp = tmp_path_factory.mktemp("openssl")
    return Material(
        gateway=gateway,
        root=p2s_root,
        client=client,
        second=pki.issue_certificate(p2s_root, "bob@contoso.com"),
        weak=pki.issue_certificate(p2s_root, "weak@contoso.com", key=weak_key),
        expired=pki.issue_certificate(
            p2s_root,
            "old@contoso.com",
            key=client.private_key,
            not_before=now - dt.timedelta(days=400),
            not_after=now - dt.timedelta(days=35),
        ),
        server_only=pki.issue_certificate(
            p2s_root,
            "srv@contoso.com",
            key=client.private_key,
            eku=(x509.ObjectIdentifier("1.3.6.1.5.5.7.3.1"),),
        ),
        negative=_openssl_cert(tmp, "negative", "-5"),
        huge=_openssl_cert(tmp, "huge", "0x7f" + "ab" * 30),
    )


# --- one case's world ----------------------------------------------------------------------
@dataclass
class World:
    tmp: Path
    m: Material
    env: dict[str, str] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def profile(self) -> str:
        return self.m.gateway.profile_text()

    def good_zip(self) -> Path:
        return self.write("VNet1GW.zip", self.m.gateway.zip_bytes())

    def cert(self, issued: pki.IssuedCertificate | None = None) -> Path:
        return self.write("user.pem", (issued or self.m.client).cert_pem)

    def key(self, issued: pki.IssuedCertificate | None = None, pw: bytes | None = None) -> Path:
        return self.write("user.key", (issued or self.m.client).key_pem(pw))

    def generate(self, package: Path, *creds: object) -> list[str]:
        args = creds or ("--cert", self.cert(), "--key", self.key())
        return ["generate", str(package), *map(str, args), "-o", str(self.out)]

    def with_profile(self, text: str | bytes, name: str = "vpnconfig.ovpn") -> list[str]:
        return self.generate(self.write(name, text))

    def creds(self, *creds: object) -> list[str]:
        return self.generate(self.good_zip(), *creds)

    def batch(self, users_yaml: str) -> list[str]:
        self.good_zip()
        self.cert()
        self.key()
        yaml_path = self.write("users.yaml", users_yaml)
        return ["batch", str(yaml_path), "--jobs", "1", "-o", str(self.out)]


Build = Callable[[World], list[str]]


def zip_of(files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in files.items():
                archive.writestr(zipfile.ZipInfo(name.split("\0")[0]), data)
    return buffer.getvalue()


def symlink_zip(target: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("OpenVPN/vpnconfig.ovpn")
        info.create_system = 3
        info.external_attr = (0o120777 << 16) & 0xFFFF0000
        archive.writestr(info, target)
    return buffer.getvalue()


def forge_declared_size(data: bytes, size: int) -> bytes:
    """Rewrite every central-directory uncompressed size to ``size``."""
    buf = bytearray(data)
    pos = buf.find(b"PK\x01\x02")
    while pos != -1:
        struct.pack_into("<I", buf, pos + 24, size)
        pos = buf.find(b"PK\x01\x02", pos + 4)
    return bytes(buf)


def lie_small(data: bytes) -> bytes:
    """Declare 1 KiB for entries that inflate to far more (local and central headers)."""
    buf = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = buf.find(sig)
        while pos != -1:
            struct.pack_into("<I", buf, pos + offset, 1024)
            pos = buf.find(sig, pos + 4)
    return bytes(buf)


def corrupt(data: bytes) -> bytes:
    """Overwrite the middle of the first entry's compressed data (headers stay valid)."""
    buf = bytearray(data)
    name_len, extra_len = struct.unpack_from("<HH", buf, 26)
    size = struct.unpack_from("<I", buf, 18)[0]
    start = 30 + name_len + extra_len + size // 3
    buf[start : start + 40] = b"\xa5" * 40
    return bytes(buf)


def replace_block(text: str, name: str, body: str) -> str:
    start = text.index(f"<{name}>\n") + len(name) + 3
    end = text.index(f"</{name}>")
    return text[:start] + body + "\n" + text[end:]


def edit(old: str, new: str) -> Build:
    def build(w: World) -> list[str]:
        text = w.profile()
        assert old in text, old
        return w.with_profile(text.replace(old, new, 1))

    return build


def block(name: str, body: str) -> Build:
    return lambda w: w.with_profile(replace_block(w.profile(), name, body))


def line_replace(prefix: str, new: str) -> Build:
    def build(w: World) -> list[str]:
        lines = [new if ln.startswith(prefix) else ln for ln in w.profile().split("\n")]
        return w.with_profile("\n".join(lines))

    return build


def zipped(make: Callable[[World], bytes]) -> Build:
    return lambda w: w.generate(w.write("pkg.zip", make(w)))


def pem(w: World) -> bytes:
    return w.profile().encode()


def static_key(lines: int = 16, width: int = 32, line: str | None = None) -> str:
    rows = [line or ("0123456789abcdef" * 4)[:width] for _ in range(lines)]
    return "\n".join(
        ["-----BEGIN OpenVPN Static key V1-----", *rows, "-----END OpenVPN Static key V1-----"]
    )


def pfx(issued: pki.IssuedCertificate, *, with_key: bool = True) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"user",
        issued.private_key if with_key else None,  # type: ignore[arg-type]
        issued.certificate,
        None,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    )


def bad_version(cert_pem: bytes) -> bytes:
    """The certificate with its X.509 version field set to 11 (found by tests/test_fuzz.py)."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert b"\xa0\x03\x02\x01\x02" in der
    der = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x0a", 1)
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join(
        ["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----", ""]
    ).encode()


def users(body: str, head: str = "") -> str:
    return f"package: VNet1GW.zip\ntargets: [tunnelblick, ios]\n{head}users:\n{body}"


ALICE = "  - name: alice\n    cert: user.pem\n    key: user.key\n"


def user_named(name: str) -> Build:
    return lambda w: w.batch(
        users(f"  - name: {json.dumps(name)}\n    cert: user.pem\n    key: user.key\n")
    )


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    fragments: tuple[str, ...]
    code: int = INPUT
    hint: str | None = None  # a fragment the hint line must hold
    ok_users: tuple[str, ...] = ()  # in a batch that goes on: users that are written


COPIED = "download the package again from the portal"
FOREIGN = "another tool's template"
MIID = "-----BEGIN CERTIFICATE-----\nMIID...\n-----END CERTIFICATE-----"

CASES = [
    # --- the zip itself -------------------------------------------------------------------
    Case("zip-truncated", lambda w: w.generate(w.write("t.zip", w.m.gateway.zip_bytes()[:400])), ("not a zip file or the zip is corrupt",)),
    Case("zip-random-bytes", lambda w: w.generate(w.write("r.zip", bytes(range(256)) * 8)), ("not a zip file",)),
    Case("zip-empty-file", lambda w: w.generate(w.write("e.zip", b"")), ("not a zip file",)),
    Case("zip-corrupt-entry", zipped(lambda w: corrupt(zip_of({"OpenVPN/vpnconfig.ovpn": pem(w)}))), ("cannot be read",)),
    Case("zip-bomb-declared", zipped(lambda w: forge_declared_size(w.m.gateway.zip_bytes(), 2**31)), ("declares", "uncompressed bytes"), hint="zip bomb"),
    Case("zip-bomb-actual-profile", zipped(lambda w: zip_of({"OpenVPN/vpnconfig.ovpn": b"#" * (3 * 1024 * 1024)})), ("over the 1048576-byte limit",)),
    Case("zip-bomb-lying-size", zipped(lambda w: lie_small(zip_of({"OpenVPN/vpnconfig.ovpn": pem(w) + b"#" * (4 * 1024 * 1024)}))), ("vpnconfig.ovpn",)),
    Case("zip-dotdot-entry", zipped(lambda w: zip_of({"../OpenVPN/vpnconfig.ovpn": pem(w)})), ("no OpenVPN/vpnconfig.ovpn",)),
    Case("zip-absolute-entry", zipped(lambda w: zip_of({"/OpenVPN/vpnconfig.ovpn": pem(w)})), ("no OpenVPN/vpnconfig.ovpn",)),
    Case("zip-drive-letter-entry", zipped(lambda w: zip_of({"C:/OpenVPN/vpnconfig.ovpn": pem(w)})), ("no OpenVPN/vpnconfig.ovpn",)),
    Case("zip-symlink-entry", zipped(lambda w: symlink_zip(b"/etc/passwd")), ("symbolic link",)),
    Case("zip-duplicate-entries", zipped(lambda w: zip_of({"OpenVPN/vpnconfig.ovpn": pem(w), "OpenVPN/vpnconfig.ovpn\0dup": pem(w)})), ("more than one OpenVPN profile",)),
    Case("zip-two-different-profiles", zipped(lambda w: zip_of({"OpenVPN/vpnconfig.ovpn": pem(w), "openvpn/VPNCONFIG.ovpn": pem(w) + b"verb 4\n"})), ("more than one OpenVPN profile",)),
    Case("zip-no-openvpn-folder", zipped(lambda w: zip_of({"Generic/VpnSettings.xml": w.m.gateway.vpn_settings_xml().encode()})), ("no OpenVPN/vpnconfig.ovpn",), hint="Basic"),
    Case("zip-settings-billion-laughs", zipped(lambda w: zip_of({"OpenVPN/vpnconfig.ovpn": pem(w), "Generic/VpnSettings.xml": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><VpnProfile>&a;</VpnProfile>'})), ("DTD or entity",)),
    Case("package-missing", lambda w: w.generate(w.tmp / "nowhere.zip"), ("no such file or folder",)),
    # --- the profile's text -----------------------------------------------------------------
    Case("profile-nul-bytes", lambda w: w.with_profile(pem(w).replace(b"nobind", b"no\x00bind")), ("NUL bytes",)),
    Case("profile-invalid-utf8", lambda w: w.with_profile(pem(w).replace(b"nobind", b"nob\xffind")), ("not UTF-8",)),
    Case("profile-10mb-line", lambda w: w.with_profile(pem(w) + b"#" + b"x" * (10 * 1024 * 1024) + b"\n"), ("over the 1048576-byte limit",)),
    Case("profile-unterminated-block", lambda w: w.with_profile(w.profile().replace("</tls-auth>", "")), ("<tls-auth> is never closed",)),
    Case("profile-unterminated-quote", edit("verify-x509-name '", "verify-x509-name \"'"), ("unterminated quote",)),
    Case("profile-duplicated-cert", lambda w: w.with_profile(w.profile() + "<cert>\n$CLIENTCERTIFICATE\n</cert>\n"), ("a second <cert> block",)),
    Case("profile-no-client", line_replace("client", "# client"), ("no 'client' directive",)),
    Case("profile-no-remote", line_replace("remote ", "# remote"), ("no 'remote' directive",)),
    Case("profile-dev-tap", edit("dev tun", "dev tap"), ("'dev tap'",)),
    Case("profile-no-ca", lambda w: w.with_profile(w.profile().replace("<ca>", "<!ca>").replace("</ca>", "")), ("<ca>",)),
    Case("profile-no-tls-auth", lambda w: w.with_profile(re.sub(r"<tls-auth>.*</tls-auth>\n", "", w.profile(), flags=re.DOTALL)), ("missing <tls-auth> block",)),
    # --- content copied from a web page (item 1) ----------------------------------------------
    Case("ca-shortened-MIID", block("ca", MIID), ("<ca>", "shortened"), hint=COPIED),
    Case("ca-prose", block("ca", "... provided by azure"), ("<ca> holds a shortened placeholder",), hint=COPIED),
    Case("ca-unicode-ellipses", block("ca", "……"), ("<ca> holds a shortened placeholder",), hint=COPIED),
    Case("ca-garbage-in-armour", block("ca", "-----BEGIN CERTIFICATE-----\nTUlJRA==\n-----END CERTIFICATE-----"), ("cannot be parsed",), hint=COPIED),
    Case("ca-invalid-version", lambda w: w.with_profile(replace_block(w.profile(), "ca", bad_version(w.m.gateway.public_root.cert_pem).decode().strip())), ("the certificate in <ca> cannot be parsed",), hint=COPIED),
    Case("ca-empty", block("ca", ""), ("<ca> holds no PEM certificate",), hint=COPIED),
    Case("tls-auth-shortened", block("tls-auth", "-----BEGIN OpenVPN Static key V1-----\n...\n-----END OpenVPN Static key V1-----"), ("static key is shortened",), hint=COPIED),
    Case("tls-auth-prose", block("tls-auth", "… provided by azure"), ("<tls-auth> holds a shortened placeholder",), hint=COPIED),
    Case("tls-auth-15-lines", block("tls-auth", static_key(15)), ("1920 bits, not 2048",), hint=COPIED),
    Case("tls-auth-not-hex", block("tls-auth", static_key(line="zz" * 16)), ("not hex",), hint=COPIED),
    Case("remote-placeholder", line_replace("remote ", "remote <vpnGatewayname>.ln.vpn.azure.com 443"), ("remote host holds a placeholder",), hint=COPIED),
    Case("remote-wildcard", line_replace("remote ", "remote *.vpn.azure.com 443"), ("wildcard",), hint=COPIED),
    Case("remote-variable", line_replace("remote ", "remote $GATEWAY 443"), ("template variable",), hint=COPIED),
    Case("verify-name-wildcard", line_replace("verify-x509-name", "verify-x509-name '*.vpn.azure.com' name"), ("verify-x509-name value is a wildcard",), hint=COPIED),
    Case("verify-name-spaces", line_replace("verify-x509-name", "verify-x509-name 'my gateway' name"), ("holds spaces",), hint=COPIED),
    # --- placeholders (item 2) ---------------------------------------------------------------
    Case("cert-prose", block("cert", "paste your certificate here"), ("<cert> holds neither a placeholder nor PEM",)),
    Case("foreign-dollar-brace", edit("verb 3", "verb ${verbosity}"), ("${verbosity}", "not an Azure placeholder"), hint=FOREIGN),
    Case("foreign-dunder-in-cert", block("cert", "__CLIENT_CERT__"), ("__CLIENT_CERT__",), hint=FOREIGN),
    Case("foreign-dollar-in-key", block("key", "$USER_KEY"), ("$USER_KEY",), hint=FOREIGN),
    Case("azure-token-outside-blocks", edit("verb 3", "verb $PRIVATEKEY"), ("$PRIVATEKEY",), hint=FOREIGN),
    # --- credentials ------------------------------------------------------------------------
    Case("cert-key-swapped", lambda w: w.creds("--cert", w.key(), "--key", w.cert()), ("holds a private key but no certificate",), hint="are --cert and --key swapped?"),
    Case("cert-given-as-key", lambda w: w.creds("--cert", w.cert(), "--key", w.cert()), ("holds a certificate, not a private key",), hint="swapped"),
    Case("pfx-given-as-cert", lambda w: w.creds("--cert", w.write("u.pfx", pfx(w.m.client)), "--key", w.key()), ("is a PKCS#12",), hint="--pfx"),
    Case("der-key", lambda w: w.creds("--cert", w.cert(), "--key", w.write("k.der", w.m.client.private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))), ("binary (DER)",), hint="openssl pkey"),
    Case("cert-invalid-version", lambda w: w.creds("--cert", w.write("v.pem", bad_version(w.m.client.cert_pem)), "--key", w.key()), ("invalid X.509 version",)),
    Case("der-garbage-cert", lambda w: w.creds("--cert", w.write("c.der", b"\x30\x03\x02\x01\x05"), "--key", w.key()), ("no certificate in it",)),
    Case("several-client-certs", lambda w: w.creds("--cert", w.write("two.pem", w.m.client.cert_pem + w.m.second.cert_pem), "--key", w.key()), ("holds 2 client certificates",)),
    Case("pkcs12-without-key", lambda w: (w.env.update({PASS_ENV: PASSPHRASE}), w.creds("--pfx", w.write("nokey.pfx", pfx(w.m.client, with_key=False)), "--passphrase-env", PASS_ENV))[1], ("holds no private key",)),
    Case("pkcs12-wrong-password", lambda w: (w.env.update({PASS_ENV: WRONG}), w.creds("--pfx", w.write("u.pfx", pfx(w.m.client)), "--passphrase-env", PASS_ENV))[1], ("wrong passphrase for the PKCS#12",)),
    Case("pkcs12-garbage", lambda w: w.creds("--pfx", w.write("g.pfx", b"not a pfx at all")), ("not a PKCS#12",)),
    Case("public-key-as-key", lambda w: w.creds("--cert", w.cert(), "--key", w.write("pub.pem", w.m.client.private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))), ("holds a public key",)),
    Case("key-of-another-cert", lambda w: w.creds("--cert", w.cert(), "--key", w.key(w.m.second)), ("does not belong to the certificate",)),
    Case("serial-negative", lambda w: w.creds("--cert", w.write("n.pem", w.m.negative[0]), "--key", w.write("n.key", w.m.negative[1])), ("negative or zero serial",)),
    Case("serial-huge", lambda w: w.creds("--cert", w.write("h.pem", w.m.huge[0]), "--key", w.write("h.key", w.m.huge[1])), ("serial number of 31 bytes",)),
    Case("rsa-1024", lambda w: w.creds("--cert", w.cert(w.m.weak), "--key", w.key(w.m.weak)), ("RSA key of 1024 bits",)),
    Case("cert-expired", lambda w: w.creds("--cert", w.cert(w.m.expired), "--key", w.key()), ("expired on",)),
    Case("cert-no-client-auth", lambda w: w.creds("--cert", w.cert(w.m.server_only), "--key", w.key()), ("no Client Authentication",)),
    Case("key-encrypted-no-passphrase", lambda w: w.creds("--cert", w.cert(), "--key", w.key(pw=PASSPHRASE.encode())), ("encrypted and no passphrase",)),
    Case("key-wrong-passphrase", lambda w: (w.env.update({PASS_ENV: WRONG}), w.creds("--cert", w.cert(), "--key", w.key(pw=PASSPHRASE.encode()), "--passphrase-env", PASS_ENV))[1], ("wrong passphrase for the private key",)),
    Case("cert-empty-file", lambda w: w.creds("--cert", w.write("empty.pem", b""), "--key", w.key()), ("is empty",)),
    Case("cert-missing-file", lambda w: w.creds("--cert", w.tmp / "none.pem", "--key", w.key()), ("not found",)),
    Case("untrusted-root", lambda w: w.creds("--cert", w.cert(), "--key", w.key(), "--root", w.write("other.pem", pki.create_root("Other", key=w.m.second.private_key).cert_pem)), ("not issued by any given root",)),
    Case("name-dotdot", lambda w: w.creds("--cert", w.cert(), "--key", w.key(), "--name", "../x"), ("'../x'",)),
    Case("name-device", lambda w: w.creds("--cert", w.cert(), "--key", w.key(), "--name", "CON"), ("'CON'",)),
    Case("output-inside-package-folder", lambda w: (w.write("pkgdir/OpenVPN/vpnconfig.ovpn", w.profile()), ["generate", str(w.tmp / "pkgdir"), "--cert", str(w.cert()), "--key", str(w.key()), "-o", str(w.tmp / "pkgdir" / "profiles")])[1], ("inside the package folder",)),
    # --- user lists ---------------------------------------------------------------------------
    Case("yaml-alias-bomb", lambda w: w.batch("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n" + users(ALICE)), ("anchors and aliases are not allowed",)),
    Case("yaml-python-object", lambda w: w.batch(users(ALICE) + "extra: !!python/object/apply:os.system [echo pwned]\n"), ("python/object", "is not allowed")),
    Case("yaml-tabs", lambda w: w.batch("package: VNet1GW.zip\nusers:\n\t- name: alice\n"), ("'\\t'",), hint="YAML indents with spaces, not tabs"),
    Case("yaml-not-a-mapping", lambda w: w.batch("- just\n- a list\n"), ("users.yaml",)),
    Case("yaml-unknown-key", lambda w: w.batch(users("  - name: alice\n    usrname: x\n    cert: user.pem\n    key: user.key\n")), ("usrname",)),
    Case("yaml-literal-password", lambda w: w.batch(users("  - name: alice\n    pfx: user.pem\n    password: hunter2\n")), ("password",)),
    Case("user-name-dotdot", user_named("../x"), ("'../x'",)),
    Case("user-name-slash", user_named("a/b"), ("'a/b'",)),
    Case("user-name-dot", user_named("."), ("'.'",)),
    Case("user-name-con", user_named("CON"), ("'CON'",)),
    Case("user-name-tunnelblick-forbidden", user_named("alice:1"), ("':'",)),
    Case("user-names-differ-in-case", lambda w: w.batch(users(ALICE + "  - name: Alice\n    cert: user.pem\n    key: user.key\n")), ("Alice",)),
    Case("batch-output-inside-package-folder", lambda w: (w.write("pkgdir/OpenVPN/vpnconfig.ovpn", w.profile()), [*w.batch(users(ALICE).replace("VNet1GW.zip", "pkgdir"))[:-2], "-o", str(w.tmp / "pkgdir" / "out")])[1], ("inside the package folder",)),
    Case("batch-bad-package-content", lambda w: (w.write("copied.ovpn", replace_block(w.profile(), "ca", MIID)), w.batch(users(ALICE).replace("VNet1GW.zip", "copied.ovpn")))[1], ("<ca>", "shortened"), hint=COPIED),
    Case("batch-one-user-swapped", lambda w: (w.write("bob.pem", w.m.second.cert_pem), w.write("bob.key", w.m.second.key_pem()), w.batch(users(ALICE + "  - name: bob\n    cert: bob.key\n    key: bob.pem\n")))[2], ("bob.key: holds a private key but no certificate",), code=PARTIAL, hint="are --cert and --key swapped?", ok_users=("alice",)),
]  # fmt: skip


def _one_error(result: Result) -> tuple[str, str]:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR: ")]
    hints = [ln for ln in lines if ln.startswith("hint: ")]
    assert len(errors) == 1, result.stderr
    assert len(hints) == 1 and len(hints[0]) > len("hint: "), result.stderr
    return errors[0], hints[0]


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, material: Material, tmp_path: Path) -> None:
    world = World(tmp_path, material)
    args = case.build(world)
    if args[0] in ("generate", "batch"):
        args.append("--json")  # the JSON document is checked for secrets too
    result = CliRunner().invoke(app, args, env=world.env, catch_exceptions=False)
    text = result.stdout + result.stderr
    assert result.exit_code == case.code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in text
    for secret in material.secrets():
        assert secret not in text, f"secret {secret[:8]}... in the output"
    if case.code == PARTIAL:
        written = {p.relative_to(world.out).parts[0] for p in _files_under(world.out)}
        assert set(case.ok_users) <= written
        users = {u["name"]: u for u in json.loads(result.stdout)["users"]}
        assert "bob" not in written
        assert users["bob"]["status"] == "failed" and "\n" not in users["bob"]["reason"]
        for fragment in case.fragments:
            assert fragment in users["bob"]["reason"]
        if case.hint:
            assert case.hint in users["bob"]["hint"]
        return
    error, hint = _one_error(result)
    # a user list names every problem on its own line under the ERROR line (file:line:col)
    where = result.stderr if "problem in the user list" in error else error
    for fragment in case.fragments:
        assert fragment in where, (fragment, result.stderr)
    if case.hint:
        assert case.hint in hint, (case.hint, hint)
    assert _files_under(world.out) == [] and not (tmp_path / "pkgdir" / "profiles").exists()
    assert not (tmp_path / "pkgdir" / "out").exists()


def test_table_is_large_and_distinct() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


PACKAGE_CASES = [c for c in CASES if c.id.startswith(("ca-", "tls-auth-", "remote-", "verify-"))]


@pytest.mark.parametrize("case", PACKAGE_CASES, ids=[c.id for c in PACKAGE_CASES])
def test_inspect_refuses_copied_content_too(case: Case, material: Material, tmp_path: Path) -> None:
    world = World(tmp_path, material)
    package = case.build(world)[1]
    result = CliRunner().invoke(app, ["inspect", package, "--json"], catch_exceptions=False)
    assert result.exit_code == INPUT and result.stdout == ""
    error, hint = _one_error(result)
    assert all(f in error for f in case.fragments) and COPIED in hint


CHECK_CASES = [(c, "ios") for c in PACKAGE_CASES] + [
    (c, t) for c in PACKAGE_CASES[:1] for t in ("tunnelblick", "openvpn", "mobileconfig")
]


@pytest.mark.parametrize(
    ("case", "target"), CHECK_CASES, ids=[f"{t}-{c.id}" for c, t in CHECK_CASES]
)
def test_check_reports_copied_content(
    case: Case, target: str, material: Material, tmp_path: Path
) -> None:
    """A finished profile with copied content: check finds it, with its line (the clean
    counterpart passes: tests/test_generate_check_agree.py)."""
    world = World(tmp_path, material)
    bad = Path(case.build(world)[1])
    text = bad.read_text().replace("$CLIENTCERTIFICATE", material.client.cert_pem.decode())
    bad.write_text(text.replace("$PRIVATEKEY", material.client.key_pem().decode()))
    result = CliRunner().invoke(
        app, ["check", str(bad), "--target", target, "--json"], catch_exceptions=False
    )
    assert result.exit_code == int(ExitCode.FINDINGS), result.stdout
    findings = json.loads(result.stdout)["findings"]
    ours = [f for f in findings if f["code"].startswith("bad-")]
    assert ours and all(f["level"] == "error" and f["line"] > 0 for f in ours)
    assert any(all(frag in f["message"] for frag in case.fragments) for f in ours), ours
    assert "PRIVATE KEY" not in result.stdout


def test_installed_script_reports_a_bad_package(material: Material, tmp_path: Path) -> None:
    """One case through the console script in a subprocess: same line, same code."""
    script = shutil.which("ovpn-toolkit")
    if script is None:
        pytest.skip("the console script is not installed in this environment")
    world = World(tmp_path, material)
    args = block("ca", "……")(world)
    proc = subprocess.run([script, *args], capture_output=True, text=True, check=False)
    assert proc.returncode == INPUT
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert "<ca> holds a shortened placeholder" in proc.stderr


def test_inspect_reports_each_ca_certificate(material: Material, tmp_path: Path) -> None:
    """The counterpart of the refusals: a real <ca> is reported by subject and expiry."""
    world = World(tmp_path, material)
    result = CliRunner().invoke(app, ["inspect", str(world.good_zip()), "--json"])
    assert result.exit_code == 0, result.stderr
    ca = json.loads(result.stdout)["ca"]
    root = material.gateway.public_root.certificate
    assert ca["subject"] == root.subject.rfc4514_string()
    assert ca["all"] == [
        {
            "subject": root.subject.rfc4514_string(),
            "not_after": root.not_valid_after_utc.isoformat(),
        }
    ]
    human = CliRunner().invoke(app, ["inspect", str(world.good_zip())])
    assert f"(expires {root.not_valid_after_utc:%Y-%m-%d})" in human.stdout
