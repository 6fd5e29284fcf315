"""The credential matrix (issue 2, items 5 and 6): what loads, what is refused, what warns.

Every certificate and key is generated here (or by the openssl CLI in tmp_path, for the
SHA-1 case that cryptography refuses to sign). Each table row says what it gives the loader
and what must come back; errors must name the offending file and carry a hint.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from toolkit.ca import keys as pki
from toolkit.credentials import ClientCredentials, load_credentials, load_roots
from toolkit.errors import (
    CredentialsError,
    PassphraseRequiredError,
    ToolkitError,
    UsageError,
    WrongPassphraseError,
)
from toolkit.findings import Finding
from toolkit.passphrase import PassphraseSource
from toolkit.validation import raise_for_errors, validate_credentials

PASSPHRASE = "correct horse 7f3a battery"
WRONG_PASSPHRASE = "Wr0ng-Pass-9c1d"
ENV_VAR = "OVPN_TEST_PASSPHRASE"

NEEDS_OPENSSL = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl CLI is not installed"
)


# --- material ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    """Session-wide certificates; every test writes its own files from these."""

    root: pki.IssuedCertificate
    other_root: pki.IssuedCertificate
    client: pki.IssuedCertificate
    intermediate: pki.IssuedCertificate
    via_intermediate: pki.IssuedCertificate


@pytest.fixture(scope="session")
def material(
    p2s_root: pki.IssuedCertificate,
    other_root: pki.IssuedCertificate,
    client: pki.IssuedCertificate,
) -> Pki:
    intermediate = pki.issue_certificate(p2s_root, "Test P2S Intermediate", is_ca=True, eku=())
    via_intermediate = pki.issue_certificate(intermediate, "bob@contoso.com")
    return Pki(p2s_root, other_root, client, intermediate, via_intermediate)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def pem_key(
    issued: pki.IssuedCertificate,
    *,
    traditional: bool = False,
    passphrase: str | None = None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if traditional
        else serialization.PrivateFormat.PKCS8
    )
    return issued.private_key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def pfx_bytes(
    issued: pki.IssuedCertificate,
    *,
    cas: tuple[pki.IssuedCertificate, ...] = (),
    passphrase: str | None = PASSPHRASE,
    legacy: bool = True,
) -> bytes:
    """A PKCS#12 as Windows exports it: legacy 3DES/SHA1, or modern AES-256/SHA256."""
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    elif legacy:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - what Windows writes
            .build(passphrase.encode())
        )
    else:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(passphrase.encode())
        )
    return pkcs12.serialize_key_and_certificates(
        b"client",
        issued.private_key,
        issued.certificate,
        [c.certificate for c in cas] or None,
        encryption,
    )


@dataclass
class Given:
    """What a case hands to the loader (CLI options, as paths) and to the validator."""

    cert: Path | None = None
    key: Path | None = None
    pfx: Path | None = None
    chain: list[Path] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    targets: tuple[str, ...] = ("tunnelblick", "ios")
    warn_days: int = 30
    passphrase: PassphraseSource = field(default_factory=PassphraseSource)

    def load(self) -> ClientCredentials:
        return load_credentials(
            cert=self.cert,
            key=self.key,
            pfx=self.pfx,
            chain=self.chain,
            passphrase=self.passphrase,
        )

    def findings(self) -> list[Finding]:
        return validate_credentials(
            self.load(),
            roots=load_roots(self.roots),
            targets=self.targets,
            warn_days=self.warn_days,
        )

    def load_and_validate(self) -> list[Finding]:
        """What ``generate`` does before writing: load, validate, raise the first error."""
        findings = self.findings()
        raise_for_errors(findings)
        return findings


class Env:
    """Per-test context handed to the case builders."""

    def __init__(self, tmp: Path, pki_: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.pki = pki_
        self.monkeypatch = monkeypatch

    def write(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def cert(self, issued: pki.IssuedCertificate, name: str = "client.pem") -> Path:
        return self.write(name, issued.cert_pem)

    def key(self, issued: pki.IssuedCertificate, name: str = "client.key", **kw: object) -> Path:
        return self.write(name, pem_key(issued, **kw))  # type: ignore[arg-type]

    def root(self, issued: pki.IssuedCertificate | None = None) -> Path:
        return self.write("root.pem", (issued or self.pki.root).cert_pem)

    def env_passphrase(self, value: str = PASSPHRASE) -> PassphraseSource:
        self.monkeypatch.setenv(ENV_VAR, value)
        return PassphraseSource(env=ENV_VAR, environ=os.environ)

    def file_passphrase(self, value: str = PASSPHRASE) -> PassphraseSource:
        return PassphraseSource(file=self.write("passphrase.txt", value.encode() + b"\n"))


@pytest.fixture
def env(tmp_path: Path, material: Pki, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.delenv(ENV_VAR, raising=False)
    return Env(tmp_path, material, monkeypatch)


def run_openssl(args: list[str], cwd: Path, env_vars: dict[str, str] | None = None) -> None:
    """Run the openssl CLI; where the security level forbids SHA-1, retry at SECLEVEL=0."""
    base = {**os.environ, **(env_vars or {})}
    result = subprocess.run(["openssl", *args], cwd=cwd, env=base, capture_output=True)
    if result.returncode == 0:
        return
    conf = cwd / "openssl-seclevel0.cnf"
    conf.write_text(
        "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n"
        "[ssl_sect]\nsystem_default = system_default_sect\n"
        "[system_default_sect]\nCipherString = DEFAULT@SECLEVEL=0\n"
    )
    retry = subprocess.run(
        ["openssl", *args], cwd=cwd, env={**base, "OPENSSL_CONF": str(conf)}, capture_output=True
    )
    assert retry.returncode == 0, (
        f"openssl {args[0]} failed: {result.stderr.decode()} / {retry.stderr.decode()}"
    )


# --- loading: what must be accepted -------------------------------------------------------------
@dataclass(frozen=True)
class LoadCase:
    id: str
    build: Callable[[Env], Given]
    leaf: str = "client"  # attribute of Pki
    chain: tuple[str, ...] = ()
    marks: tuple[pytest.MarkDecorator, ...] = ()


def _plain_pkcs8(e: Env) -> Given:
    return Given(cert=e.cert(e.pki.client), key=e.key(e.pki.client))


def _encrypted_pkcs8_env(e: Env) -> Given:
    key = e.key(e.pki.client, passphrase=PASSPHRASE)
    assert b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in key.read_bytes()
    return Given(cert=e.cert(e.pki.client), key=key, passphrase=e.env_passphrase())


def _encrypted_pkcs8_file(e: Env) -> Given:
    key = e.key(e.pki.client, passphrase=PASSPHRASE)
    return Given(cert=e.cert(e.pki.client), key=key, passphrase=e.file_passphrase())


def _encrypted_traditional(e: Env) -> Given:
    key = e.key(e.pki.client, traditional=True, passphrase=PASSPHRASE)
    data = key.read_bytes()
    assert b"-----BEGIN RSA PRIVATE KEY-----" in data
    assert b"Proc-Type: 4,ENCRYPTED" in data
    return Given(cert=e.cert(e.pki.client), key=key, passphrase=e.file_passphrase())


def _openssl_traditional(cipher: str) -> Callable[[Env], Given]:
    def build(e: Env) -> Given:
        plain = e.key(e.pki.client, name="plain.key")
        e.monkeypatch.setenv(ENV_VAR, PASSPHRASE)
        run_openssl(
            [
                "rsa",
                "-in",
                str(plain),
                f"-{cipher}",
                "-traditional",
                "-out",
                "enc.key",
                "-passout",
                f"env:{ENV_VAR}",
            ],
            e.tmp,
        )
        data = (e.tmp / "enc.key").read_bytes()
        assert b"Proc-Type: 4,ENCRYPTED" in data
        assert b"DEK-Info: " + cipher.upper().encode()[:3] in data
        return Given(
            cert=e.cert(e.pki.client),
            key=e.tmp / "enc.key",
            passphrase=PassphraseSource(env=ENV_VAR, environ=os.environ),
        )

    return build


def _plain_key_with_unused_passphrase(e: Env) -> Given:
    """A passphrase source that is not needed is not read (the variable is even unset)."""
    return Given(
        cert=e.cert(e.pki.client),
        key=e.key(e.pki.client),
        passphrase=PassphraseSource(env=ENV_VAR, environ=os.environ),
    )


def _cert_file_holds_key(e: Env) -> Given:
    both = e.write("client-and-key.pem", e.pki.client.cert_pem + pem_key(e.pki.client))
    return Given(cert=both, key=None)


def _cert_file_holds_encrypted_key(e: Env) -> Given:
    both = e.write(
        "client-and-key.pem", pem_key(e.pki.client, passphrase=PASSPHRASE) + e.pki.client.cert_pem
    )
    return Given(cert=both, key=None, passphrase=e.env_passphrase())


def _der_certificate(e: Env) -> Given:
    return Given(cert=e.write("client.cer", e.pki.client.cert_der), key=e.key(e.pki.client))


def _pfx(legacy: bool, via: str = "file") -> Callable[[Env], Given]:
    def build(e: Env) -> Given:
        data = pfx_bytes(
            e.pki.via_intermediate, cas=(e.pki.intermediate, e.pki.root), legacy=legacy
        )
        source = e.env_passphrase() if via == "env" else e.file_passphrase()
        return Given(pfx=e.write("bob.pfx", data), passphrase=source, targets=("tunnelblick",))

    return build


def _pfx_unencrypted(e: Env) -> Given:
    return Given(pfx=e.write("client.p12", pfx_bytes(e.pki.client, passphrase=None)))


def _chain_file(e: Env) -> Given:
    return Given(
        cert=e.cert(e.pki.via_intermediate),
        key=e.key(e.pki.via_intermediate),
        chain=[e.write("intermediate.pem", e.pki.intermediate.cert_pem)],
        targets=("tunnelblick",),
    )


def _chain_in_cert_file(e: Env) -> Given:
    bundle = e.pki.via_intermediate.cert_pem + e.pki.intermediate.cert_pem
    return Given(
        cert=e.write("fullchain.pem", bundle),
        key=e.key(e.pki.via_intermediate),
        targets=("tunnelblick",),
    )


LOAD_CASES = [
    LoadCase("plain-pkcs8", _plain_pkcs8),
    LoadCase("encrypted-pkcs8-env", _encrypted_pkcs8_env),
    LoadCase("encrypted-pkcs8-file-trailing-newline", _encrypted_pkcs8_file),
    LoadCase("encrypted-traditional-aes256", _encrypted_traditional),
    LoadCase(
        "encrypted-traditional-openssl-aes256",
        _openssl_traditional("aes256"),
        marks=(NEEDS_OPENSSL,),
    ),
    LoadCase(
        "encrypted-traditional-openssl-des3", _openssl_traditional("des3"), marks=(NEEDS_OPENSSL,)
    ),
    LoadCase("plain-key-with-unused-passphrase-source", _plain_key_with_unused_passphrase),
    LoadCase("cert-file-holds-key", _cert_file_holds_key),
    LoadCase("cert-file-holds-encrypted-key", _cert_file_holds_encrypted_key),
    LoadCase("der-certificate", _der_certificate),
    LoadCase(
        "pfx-legacy-3des-sha1-file",
        _pfx(legacy=True),
        leaf="via_intermediate",
        chain=("intermediate",),
    ),
    LoadCase(
        "pfx-legacy-3des-sha1-env",
        _pfx(legacy=True, via="env"),
        leaf="via_intermediate",
        chain=("intermediate",),
    ),
    LoadCase(
        "pfx-modern-aes-sha256",
        _pfx(legacy=False),
        leaf="via_intermediate",
        chain=("intermediate",),
    ),
    LoadCase("pfx-unencrypted", _pfx_unencrypted),
    LoadCase("chain-file", _chain_file, leaf="via_intermediate", chain=("intermediate",)),
    LoadCase(
        "chain-in-cert-file", _chain_in_cert_file, leaf="via_intermediate", chain=("intermediate",)
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in LOAD_CASES])
def test_credentials_load(case: LoadCase, env: Env) -> None:
    given = case.build(env)
    given.roots = [env.root()]
    creds = given.load()
    leaf: pki.IssuedCertificate = getattr(env.pki, case.leaf)
    assert creds.certificate == leaf.certificate
    assert creds.chain == tuple(getattr(env.pki, name).certificate for name in case.chain)
    # the key is the certificate's key, and the PEM for <key> is a plain PKCS#8 of it
    key_pem = creds.key_pem
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    reloaded = serialization.load_pem_private_key(key_pem, password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert reloaded.public_key().public_bytes(*spki) == leaf.certificate.public_key().public_bytes(
        *spki
    )
    assert x509.load_pem_x509_certificate(creds.cert_pem) == leaf.certificate
    # a loadable credential is also a valid one (and chains to the P2S root via its chain)
    assert given.load_and_validate() == []
    # repr never shows key material
    assert "PRIVATE KEY" not in repr(creds)
    assert creds.summary.thumbprint_sha1 in repr(creds)


def test_pfx_fixtures_really_use_the_windows_algorithms(env: Env) -> None:
    """Negative control for the PKCS#12 rows: the two files differ in the way Windows' do."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    env.monkeypatch.setenv(ENV_VAR, PASSPHRASE)
    seen = {}
    for legacy in (True, False):
        path = env.write(f"l{legacy}.pfx", pfx_bytes(env.pki.client, legacy=legacy))
        result = subprocess.run(
            ["openssl", "pkcs12", "-in", str(path), "-info", "-noout", "-passin", f"env:{ENV_VAR}"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        seen[legacy] = result.stderr + result.stdout
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in seen[True]
    assert "MAC: sha1" in seen[True]
    assert "AES-256-CBC" in seen[False]
    assert "MAC: sha256" in seen[False]


# --- errors: what must be refused, naming the file, with a hint -------------------------------
@dataclass(frozen=True)
class ErrorCase:
    id: str
    build: Callable[[Env], tuple[Given, Path]]  # the Given, and the file the message must name
    fragment: str
    code: str | None = None  # the validation finding, for errors found after loading
    error: type[ToolkitError] = CredentialsError
    marks: tuple[pytest.MarkDecorator, ...] = ()


def _with_cert(
    issued: pki.IssuedCertificate, **given: object
) -> Callable[[Env], tuple[Given, Path]]:
    """A PEM pair for ``issued``; the message must name the certificate file."""

    def build(e: Env) -> tuple[Given, Path]:
        cert = e.cert(issued)
        return Given(cert=cert, key=e.key(issued), **given), cert  # type: ignore[arg-type]

    return build


def _mismatch(e: Env) -> tuple[Given, Path]:
    key = e.key(e.pki.other_root, name="someone-else.key")
    return Given(cert=e.cert(e.pki.client), key=key), key


def _issued(e: Env, **kw: object) -> tuple[Given, Path]:
    kw.setdefault("key", e.pki.client.private_key)
    issued = pki.issue_certificate(e.pki.root, "carol@contoso.com", **kw)  # type: ignore[arg-type]
    cert = e.cert(issued)
    return Given(cert=cert, key=e.key(issued)), cert


def _expired(e: Env) -> tuple[Given, Path]:
    return _issued(
        e, not_before=now() - dt.timedelta(days=400), not_after=now() - dt.timedelta(days=1)
    )


def _not_yet_valid(e: Env) -> tuple[Given, Path]:
    return _issued(
        e, not_before=now() + dt.timedelta(days=2), not_after=now() + dt.timedelta(days=400)
    )


def _server_auth_only(e: Env) -> tuple[Given, Path]:
    return _issued(e, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))


def _no_eku(e: Env) -> tuple[Given, Path]:
    return _issued(e, eku=())


def _rsa_1024(e: Env) -> tuple[Given, Path]:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    return _issued(e, key=small)


def _sha1_signed(e: Env) -> tuple[Given, Path]:
    """cryptography refuses to sign with SHA-1: the openssl CLI makes this one."""
    tmp = e.tmp
    run_openssl(
        [
            "req",
            "-x509",
            "-sha1",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=SHA1 Test Root",
            "-days",
            "30",
        ],
        tmp,
    )
    run_openssl(
        [
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "sha1.key",
            "-out",
            "sha1.csr",
            "-subj",
            "/CN=sha1user@contoso.com",
        ],
        tmp,
    )
    (tmp / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    run_openssl(
        [
            "x509",
            "-req",
            "-sha1",
            "-in",
            "sha1.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "4097",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            "sha1.pem",
        ],
        tmp,
    )
    cert = tmp / "sha1.pem"
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    assert loaded.signature_hash_algorithm is not None
    assert loaded.signature_hash_algorithm.name == "sha1"  # the material really is SHA-1
    return Given(cert=cert, key=tmp / "sha1.key"), cert


def _untrusted_root(e: Env) -> tuple[Given, Path]:
    cert = e.cert(e.pki.client)
    return Given(cert=cert, key=e.key(e.pki.client), roots=[e.root(e.pki.other_root)]), cert


def _intermediate_not_given(e: Env) -> tuple[Given, Path]:
    cert = e.cert(e.pki.via_intermediate)
    return Given(cert=cert, key=e.key(e.pki.via_intermediate), roots=[e.root()]), cert


def _files(
    cert: Callable[[Env], bytes | None] | None = None,
    key: Callable[[Env], bytes | None] | None = None,
    named: str = "cert",
) -> Callable[[Env], tuple[Given, Path]]:
    """Cert/key files with given contents (None: the path does not exist)."""

    def build(e: Env) -> tuple[Given, Path]:
        cert_path = e.tmp / "client.pem"
        key_path = e.tmp / "client.key"
        cert_data = cert(e) if cert else e.pki.client.cert_pem
        key_data = key(e) if key else pem_key(e.pki.client)
        if cert_data is not None:
            cert_path.write_bytes(cert_data)
        if key_data is not None:
            key_path.write_bytes(key_data)
        return Given(cert=cert_path, key=key_path), cert_path if named == "cert" else key_path

    return build


def _directory_as_cert(e: Env) -> tuple[Given, Path]:
    folder = e.tmp / "certs"
    folder.mkdir()
    return Given(cert=folder, key=e.key(e.pki.client)), folder


def _unreadable_key(e: Env) -> tuple[Given, Path]:
    key = e.key(e.pki.client)
    key.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the open itself fail as it would
        import builtins

        from toolkit import credentials

        def refusing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            if Path(file) == key:
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return builtins.open(file, *args, **kwargs)

        e.monkeypatch.setattr(credentials, "open", refusing_open, raising=False)
    return Given(cert=e.cert(e.pki.client), key=key), key


def _key_under_a_file(e: Env) -> tuple[Given, Path]:
    cert = e.cert(e.pki.client)
    key = cert / "client.key"  # ENOTDIR: an OSError that is neither missing nor a folder
    return Given(cert=cert, key=key), key


def _missing_chain(e: Env) -> tuple[Given, Path]:
    chain = e.tmp / "missing-intermediate.pem"
    return Given(cert=e.cert(e.pki.client), key=e.key(e.pki.client), chain=[chain]), chain


def _garbage_root(e: Env) -> tuple[Given, Path]:
    root = e.write("root.pem", b"not a certificate at all\n")
    return Given(cert=e.cert(e.pki.client), key=e.key(e.pki.client), roots=[root]), root


def _cert_without_key(e: Env) -> tuple[Given, Path]:
    cert = e.cert(e.pki.client)
    return Given(cert=cert, key=None), cert


def _pfx_file(
    data: Callable[[Env], bytes], passphrase: Callable[[Env], PassphraseSource] | None = None
) -> Callable[[Env], tuple[Given, Path]]:
    def build(e: Env) -> tuple[Given, Path]:
        path = e.write("client.pfx", data(e))
        source = passphrase(e) if passphrase else PassphraseSource()
        return Given(pfx=path, passphrase=source), path

    return build


def _encrypted_key(
    passphrase: Callable[[Env], PassphraseSource], traditional: bool = False
) -> Callable[[Env], tuple[Given, Path]]:
    def build(e: Env) -> tuple[Given, Path]:
        key = e.key(e.pki.client, traditional=traditional, passphrase=PASSPHRASE)
        return Given(cert=e.cert(e.pki.client), key=key, passphrase=passphrase(e)), key

    return build


def _empty_passphrase_file(e: Env) -> tuple[Given, Path]:
    empty = e.write("empty-passphrase.txt", b"\n")
    key = e.key(e.pki.client, passphrase=PASSPHRASE)
    return Given(cert=e.cert(e.pki.client), key=key, passphrase=PassphraseSource(file=empty)), empty


def _unset_env(e: Env) -> PassphraseSource:
    return PassphraseSource(
        env=ENV_VAR, environ=os.environ
    )  # the fixture removed it from the environment


def _wrong_env(e: Env) -> PassphraseSource:
    return e.env_passphrase(WRONG_PASSPHRASE)


def _wrong_file(e: Env) -> PassphraseSource:
    return e.file_passphrase(WRONG_PASSPHRASE)


GARBAGE = b"\x00\x01garbage, not a credential \xff\xfe" * 8
PEM_GARBAGE_CERT = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
PEM_GARBAGE_KEY = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"


ERROR_CASES = [
    # validation (after loading)
    ErrorCase("key-mismatch", _mismatch, "does not belong to the certificate", "key-mismatch"),
    ErrorCase("expired", _expired, "expired on", "expired"),
    ErrorCase("not-yet-valid", _not_yet_valid, "is not valid before", "not-yet-valid"),
    ErrorCase(
        "no-client-auth-eku-server-only",
        _server_auth_only,
        "no Client Authentication",
        "no-client-auth",
    ),
    ErrorCase("no-eku-at-all", _no_eku, "no Client Authentication", "no-client-auth"),
    ErrorCase(
        "sha1-signature",
        _sha1_signed,
        "signed with SHA1",
        "weak-signature",
        marks=(NEEDS_OPENSSL,),
    ),
    ErrorCase("rsa-1024", _rsa_1024, "RSA key of 1024 bits", "weak-key"),
    ErrorCase(
        "not-issued-by-root", _untrusted_root, "not issued by any given root", "untrusted-issuer"
    ),
    ErrorCase(
        "intermediate-without-chain",
        _intermediate_not_given,
        "not issued by any given root",
        "untrusted-issuer",
    ),
    # files
    ErrorCase("cert-missing", _files(cert=lambda e: None), "certificate file not found"),
    ErrorCase("key-missing", _files(key=lambda e: None, named="key"), "key file not found"),
    ErrorCase("cert-empty", _files(cert=lambda e: b""), "the certificate file is empty"),
    ErrorCase("cert-whitespace", _files(cert=lambda e: b" \n\r\n"), "file is empty"),
    ErrorCase("key-empty", _files(key=lambda e: b"", named="key"), "the key file is empty"),
    ErrorCase("cert-garbage", _files(cert=lambda e: GARBAGE), "no certificate in it"),
    ErrorCase("cert-garbage-pem", _files(cert=lambda e: PEM_GARBAGE_CERT), "cannot be parsed"),
    ErrorCase("key-garbage", _files(key=lambda e: GARBAGE, named="key"), "no PEM private key"),
    ErrorCase(
        "key-garbage-pem",
        _files(key=lambda e: PEM_GARBAGE_KEY, named="key"),
        "private key cannot be parsed",
    ),
    ErrorCase(
        "key-is-a-certificate",
        _files(key=lambda e: e.pki.client.cert_pem, named="key"),
        "holds a certificate, not a private key",
    ),
    ErrorCase(
        "cert-too-large",
        _files(cert=lambda e: b"A" * (1024 * 1024 + 1)),
        "too large",
    ),
    ErrorCase("cert-is-a-directory", _directory_as_cert, "is a folder"),
    ErrorCase("key-unreadable", _unreadable_key, "cannot read the key file"),
    ErrorCase("key-path-under-a-file", _key_under_a_file, "cannot read the key file"),
    ErrorCase("chain-missing", _missing_chain, "chain file not found"),
    ErrorCase("root-garbage", _garbage_root, "no certificate in it"),
    ErrorCase("cert-without-key-and-no-key", _cert_without_key, "holds no private key"),
    ErrorCase(
        "pfx-garbage-with-passphrase",
        _pfx_file(lambda e: GARBAGE, lambda e: e.env_passphrase()),
        "not a PKCS#12",
    ),
    ErrorCase("pfx-garbage-without-passphrase", _pfx_file(lambda e: GARBAGE), "not a PKCS#12"),
    ErrorCase(
        "pfx-is-a-pem-certificate",
        _pfx_file(lambda e: e.pki.client.cert_pem, lambda e: e.env_passphrase()),
        "not a PKCS#12",
    ),
    ErrorCase("pfx-empty", _pfx_file(lambda e: b""), "PKCS#12 file is empty"),
    # passphrases
    ErrorCase(
        "wrong-passphrase-pkcs8-env",
        _encrypted_key(_wrong_env),
        "wrong passphrase for the private key",
        error=WrongPassphraseError,
    ),
    ErrorCase(
        "wrong-passphrase-traditional-file",
        _encrypted_key(_wrong_file, traditional=True),
        "wrong passphrase for the private key",
        error=WrongPassphraseError,
    ),
    ErrorCase(
        "wrong-passphrase-pfx-legacy",
        _pfx_file(lambda e: pfx_bytes(e.pki.client, legacy=True), _wrong_env),
        "wrong passphrase for the PKCS#12",
        error=WrongPassphraseError,
    ),
    ErrorCase(
        "wrong-passphrase-pfx-modern",
        _pfx_file(lambda e: pfx_bytes(e.pki.client, legacy=False), _wrong_file),
        "wrong passphrase for the PKCS#12",
        error=WrongPassphraseError,
    ),
    ErrorCase(
        "missing-passphrase-pkcs8",
        _encrypted_key(lambda e: PassphraseSource()),
        "no passphrase was given",
        error=PassphraseRequiredError,
    ),
    ErrorCase(
        "missing-passphrase-traditional",
        _encrypted_key(lambda e: PassphraseSource(), traditional=True),
        "no passphrase was given",
        error=PassphraseRequiredError,
    ),
    ErrorCase(
        "missing-passphrase-pfx",
        _pfx_file(lambda e: pfx_bytes(e.pki.client)),
        "no passphrase was given",
        error=PassphraseRequiredError,
    ),
    ErrorCase(
        "passphrase-env-not-set-key",
        _encrypted_key(_unset_env),
        f"environment variable {ENV_VAR} is not set",
    ),
    ErrorCase(
        "passphrase-env-not-set-pfx",
        _pfx_file(lambda e: pfx_bytes(e.pki.client), _unset_env),
        f"environment variable {ENV_VAR} is not set",
    ),
    ErrorCase("passphrase-file-empty", _empty_passphrase_file, "passphrase file is empty"),
    ErrorCase(
        "passphrase-env-empty",
        _encrypted_key(lambda e: e.env_passphrase("")),
        f"environment variable {ENV_VAR} is empty",
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in ERROR_CASES])
def test_credentials_error(case: ErrorCase, env: Env) -> None:
    given, named = case.build(env)
    with pytest.raises(ToolkitError) as info:
        given.load_and_validate()
    exc = info.value
    assert type(exc) is case.error
    assert str(named) in exc.message, f"the message does not name {named}: {exc.message}"
    assert case.fragment in exc.message
    assert exc.hint, f"no hint for: {exc.message}"
    for secret in (PASSPHRASE, WRONG_PASSPHRASE):
        assert secret not in exc.message
        assert secret not in exc.hint
    if case.code is not None:
        codes = [f.code for f in given.findings() if f.level == "error"]
        assert codes == [case.code], f"expected only {case.code}, got {codes}"


def test_intermediate_is_accepted_with_chain(env: Env) -> None:
    """The positive control of 'intermediate-without-chain': the same files plus --chain."""
    given, _ = _intermediate_not_given(env)
    with pytest.raises(CredentialsError, match="not issued by any given root"):
        given.load_and_validate()
    given.chain = [env.write("intermediate.pem", env.pki.intermediate.cert_pem)]
    given.targets = ("tunnelblick",)
    assert given.load_and_validate() == []


def test_several_problems_are_counted_and_errors_come_first(env: Env) -> None:
    """raise_for_errors reports the first error and how many more there are."""
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    bad = pki.issue_certificate(
        env.pki.root,
        "dave@contoso.com",
        key=small,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        not_before=now() - dt.timedelta(days=10),
        not_after=now() - dt.timedelta(days=1),
    )
    given = Given(
        cert=env.cert(bad), key=env.key(env.pki.client), roots=[env.root(env.pki.other_root)]
    )
    findings = given.findings()
    errors = [f.code for f in findings if f.level == "error"]
    assert errors == ["key-mismatch", "expired", "no-client-auth", "weak-key", "untrusted-issuer"]
    with pytest.raises(CredentialsError, match=r"\(and 4 more problem\(s\)\)"):
        raise_for_errors(findings)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"pfx": "x.pfx", "cert": "x.pem"}, "--pfx cannot be combined", id="pfx+cert"),
        pytest.param({"pfx": "x.pfx", "key": "x.key"}, "--pfx cannot be combined", id="pfx+key"),
        pytest.param({}, "no client credentials given", id="nothing"),
        pytest.param({"key": "x.key"}, "no client credentials given", id="key-only"),
    ],
)
def test_credentials_usage_errors(kwargs: dict[str, str], fragment: str, tmp_path: Path) -> None:
    paths = {k: tmp_path / v for k, v in kwargs.items()}
    with pytest.raises(UsageError) as info:
        load_credentials(
            cert=paths.get("cert"),
            key=paths.get("key"),
            pfx=paths.get("pfx"),
            passphrase=PassphraseSource(),
        )
    assert fragment in info.value.message
    assert info.value.hint


def test_both_passphrase_sources_are_refused(env: Env) -> None:
    key = env.key(env.pki.client, passphrase=PASSPHRASE)
    source = PassphraseSource(env=ENV_VAR, environ=os.environ, file=env.write("p.txt", b"x\n"))
    env.monkeypatch.setenv(ENV_VAR, PASSPHRASE)
    with pytest.raises(CredentialsError, match="both a passphrase variable and a passphrase file"):
        Given(cert=env.cert(env.pki.client), key=key, passphrase=source).load()


def test_prompt_is_used_only_for_encrypted_keys(env: Env) -> None:
    """The hidden prompt (the CLI's, when stdin is a terminal) is asked once, with the file name."""
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return PASSPHRASE

    source = PassphraseSource(prompt=prompt)
    plain = Given(cert=env.cert(env.pki.client), key=env.key(env.pki.client), passphrase=source)
    plain.load()
    assert asked == []
    key = env.key(env.pki.client, name="enc.key", passphrase=PASSPHRASE)
    Given(cert=env.cert(env.pki.client), key=key, passphrase=source).load()
    assert len(asked) == 1
    assert str(key) in asked[0]
    pfx = env.write("c.pfx", pfx_bytes(env.pki.client))
    creds = Given(pfx=pfx, passphrase=source).load()
    assert creds.certificate == env.pki.client.certificate
    assert len(asked) == 2
    assert str(pfx) in asked[1]


def test_passphrase_file_strips_one_line_ending_only(env: Env) -> None:
    """A file with CRLF works; inner spaces are part of the passphrase."""
    key = env.key(env.pki.client, passphrase=PASSPHRASE)
    crlf = env.write("crlf.txt", PASSPHRASE.encode() + b"\r\n")
    creds = Given(
        cert=env.cert(env.pki.client), key=key, passphrase=PassphraseSource(file=crlf)
    ).load()
    assert creds.certificate == env.pki.client.certificate
    two_newlines = env.write("two.txt", PASSPHRASE.encode() + b"\n\n")
    with pytest.raises(CredentialsError, match="wrong passphrase"):
        Given(
            cert=env.cert(env.pki.client), key=key, passphrase=PassphraseSource(file=two_newlines)
        ).load()


# --- warnings: still written, but said ----------------------------------------------------------
@dataclass(frozen=True)
class WarningCase:
    id: str
    build: Callable[[Env], Given]
    codes: tuple[str, ...]  # exactly these warnings (empty: a negative control)


def _expiring(days_left: int, warn_days: int = 30) -> Callable[[Env], Given]:
    def build(e: Env) -> Given:
        issued = pki.issue_certificate(
            e.pki.root,
            "erin@contoso.com",
            key=e.pki.client.private_key,
            not_before=now() - dt.timedelta(days=300),
            not_after=now() + dt.timedelta(days=days_left, hours=1),
        )
        return Given(cert=e.cert(issued), key=e.key(issued), warn_days=warn_days)

    return build


def _ec_key(e: Env) -> Given:
    issued = pki.issue_certificate(e.pki.root, "frank@contoso.com", key_type="ec256")
    return Given(cert=e.cert(issued), key=e.key(issued))


def _client_auth_second(e: Env) -> Given:
    issued = pki.issue_certificate(
        e.pki.root,
        "grace@contoso.com",
        key=e.pki.client.private_key,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    )
    return Given(cert=e.cert(issued), key=e.key(issued))


def _intermediates_for(targets: tuple[str, ...]) -> Callable[[Env], Given]:
    def build(e: Env) -> Given:
        return Given(
            cert=e.cert(e.pki.via_intermediate),
            key=e.key(e.pki.via_intermediate),
            chain=[e.write("intermediate.pem", e.pki.intermediate.cert_pem)],
            targets=targets,
        )

    return build


def _pfx_chain_for_ios(e: Env) -> Given:
    data = pfx_bytes(e.pki.via_intermediate, cas=(e.pki.intermediate,), legacy=False)
    return Given(pfx=e.write("bob.pfx", data), passphrase=e.env_passphrase(), targets=("ios",))


WARNING_CASES = [
    WarningCase("expires-within-warn-days", _expiring(10), ("expires-soon",)),
    WarningCase("expires-after-warn-days", _expiring(10, warn_days=5), ()),
    WarningCase("expires-within-custom-warn-days", _expiring(40, warn_days=60), ("expires-soon",)),
    WarningCase("ec-key", _ec_key, ("ec-key",)),
    WarningCase("client-auth-not-first", _client_auth_second, ("client-auth-not-first",)),
    WarningCase(
        "intermediates-with-ios", _intermediates_for(("tunnelblick", "ios")), ("ios-intermediates",)
    ),
    WarningCase("intermediates-pfx-with-ios", _pfx_chain_for_ios, ("ios-intermediates",)),
    WarningCase("intermediates-without-ios", _intermediates_for(("tunnelblick", "openvpn")), ()),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in WARNING_CASES])
def test_credentials_warning(case: WarningCase, env: Env) -> None:
    given = case.build(env)
    given.roots = [env.root()]
    findings = given.load_and_validate()  # does not raise: warnings still write
    assert all(f.level == "warning" for f in findings)
    assert tuple(f.code for f in findings) == case.codes
    for finding in findings:
        assert str(given.cert or given.pfx) in finding.message
        assert finding.hint


def test_expiry_warning_says_how_many_days(env: Env) -> None:
    given = _expiring(10)(env)
    (finding,) = given.findings()
    assert "expires in 10 days" in finding.message


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_device_is_refused_after_the_size_limit_not_read_forever() -> None:
    from toolkit.credentials import MAX_CREDENTIAL_BYTES, read_input

    with pytest.raises(CredentialsError, match=f"over {MAX_CREDENTIAL_BYTES} bytes"):
        read_input(Path("/dev/zero"), "certificate")
