"""Load one user's client certificate and key (PEM or PKCS#12) and validate them for Azure.

Private keys live only in :class:`ClientCredentials` and leave it only as PEM bytes for the
profile's ``<key>`` block. Nothing here ever puts key material or a passphrase in a message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from toolkit.errors import CredentialsError, UsageError
from toolkit.findings import Finding
from toolkit.passphrase import PassphraseSource
from toolkit.pki import fingerprint_sha256, thumbprint_sha1

MAX_CREDENTIAL_BYTES = 1024 * 1024
PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
WEAK_HASHES = ("sha1", "md5", "md2", "md4")
PASSPHRASE_HINT = "give it with --passphrase-env VAR or --passphrase-file FILE"  # noqa: S105

UsableKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@dataclass(frozen=True)
class CertificateSummary:
    """How certificates are named everywhere: subject, issuer, expiry, thumbprint."""

    subject: str
    issuer: str
    common_name: str | None
    serial_hex: str
    not_before: dt.datetime
    not_after: dt.datetime
    thumbprint_sha1: str
    fingerprint_sha256: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertificateSummary:
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        cn = cns[0].value if cns else None
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            common_name=cn if isinstance(cn, str) else None,
            serial_hex=f"{cert.serial_number:X}",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            thumbprint_sha1=thumbprint_sha1(cert),
            fingerprint_sha256=fingerprint_sha256(cert),
        )

    def to_json(self) -> dict[str, str | None]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "common_name": self.common_name,
            "serial": self.serial_hex,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "thumbprint_sha1": self.thumbprint_sha1,
            "fingerprint_sha256": self.fingerprint_sha256,
        }


@dataclass(frozen=True)
class ClientCredentials:
    """A user's certificate, its private key and intermediates, loaded and decrypted."""

    certificate: x509.Certificate
    private_key: UsableKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()
    cert_source: str = ""
    key_source: str = ""

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(subject={self.summary.subject!r}, "
            f"thumbprint_sha1={self.summary.thumbprint_sha1!r}, key=<hidden>)"
        )

    @property
    def summary(self) -> CertificateSummary:
        return CertificateSummary.of(self.certificate)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    @property
    def key_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM for the profile's <key> block (the file itself is 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def protected_key_pem(self, passphrase: bytes) -> bytes:
        """PKCS#8 encrypted with AES-256 (PBES2): accepted by Tunnelblick and OpenVPN Connect."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )


# --- reading files ----------------------------------------------------------------------------
def _read(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_CREDENTIAL_BYTES:
            raise CredentialsError(
                f"{path}: {what} file is {size} bytes, too large to be a {what}",
                hint="check that you passed the right file",
            )
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CredentialsError(f"{path}: {what} file not found", hint="check the path") from exc
    except IsADirectoryError as exc:
        raise CredentialsError(
            f"{path}: is a folder, not a {what} file", hint=f"pass the {what} file itself"
        ) from exc
    except OSError as exc:
        raise CredentialsError(
            f"{path}: cannot read the {what} file ({exc.strerror})",
            hint="check the path and its permissions",
        ) from exc
    if not data.strip():
        raise CredentialsError(f"{path}: the {what} file is empty", hint="check the path")
    return data


def load_certificates(data: bytes, label: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one certificate of a DER file."""
    if PEM_CERT_BEGIN in data:
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise CredentialsError(
                f"{label}: a PEM certificate in it cannot be parsed",
                hint="the file is damaged; export the certificate again",
            ) from exc
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CredentialsError(
            f"{label}: no certificate in it (neither PEM nor DER)",
            hint="pass the client certificate as a PEM file (-----BEGIN CERTIFICATE-----) "
            "or use --pfx for a .pfx/.p12 file",
        ) from exc


def _usable_key(key: object, label: str) -> UsableKey:
    if isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        return key
    raise CredentialsError(
        f"{label}: unsupported private key type {type(key).__name__}",
        hint="Azure P2S client certificates use RSA keys (2048 bits or more)",
    )


def _key_is_encrypted(data: bytes) -> bool:
    return b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key(data: bytes, label: str, passphrase: PassphraseSource) -> UsableKey:
    """A PEM private key: plain, encrypted PKCS#8, or encrypted traditional (Proc-Type)."""
    if b"PRIVATE KEY-----" not in data:
        raise CredentialsError(
            f"{label}: no PEM private key in it",
            hint="pass the key as PEM (-----BEGIN PRIVATE KEY-----) or use --pfx",
        )
    password: bytes | None = None
    if _key_is_encrypted(data):
        password = passphrase.resolve(label)
        if password is None:
            raise CredentialsError(
                f"{label}: the private key is encrypted and no passphrase was given",
                hint=PASSPHRASE_HINT,
            )
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # a password for a plain key, or the reverse
        raise CredentialsError(
            f"{label}: the private key is not encrypted but a passphrase was given",
            hint="drop --passphrase-env/--passphrase-file for this key",
        ) from exc
    except ValueError as exc:
        if password is not None:
            raise CredentialsError(
                f"{label}: wrong passphrase for the private key ({passphrase.describe()})",
                hint="check the passphrase; it is never shown",
            ) from exc
        raise CredentialsError(
            f"{label}: the private key cannot be parsed",
            hint="the file is damaged or not a private key",
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise CredentialsError(
            f"{label}: the private key uses an unsupported algorithm or encryption",
            hint="re-export it as PKCS#8: openssl pkcs8 -topk8 -in OLD -out NEW",
        ) from exc
    return _usable_key(key, label)


def _order_chain(
    leaf: x509.Certificate, extras: Iterable[x509.Certificate]
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Split extra certificates into intermediates (ordered from the leaf up) and roots."""
    pool = [c for c in extras if c != leaf]
    roots = [c for c in pool if c.issuer == c.subject]
    intermediates = [c for c in pool if c.issuer != c.subject]
    ordered: list[x509.Certificate] = []
    current = leaf
    while True:
        parent = next((c for c in intermediates if c.subject == current.issuer), None)
        if parent is None or parent in ordered:
            break
        ordered.append(parent)
        current = parent
    ordered.extend(c for c in intermediates if c not in ordered)
    return ordered, roots


def load_pem_credentials(
    cert_path: Path,
    key_path: Path | None,
    passphrase: PassphraseSource,
    chain_paths: Sequence[Path] = (),
) -> ClientCredentials:
    """``--cert`` (+ ``--key``; the key may also sit in the cert file) and ``--chain`` files."""
    cert_data = _read(cert_path, "certificate")
    certs = load_certificates(cert_data, str(cert_path))
    leaf = certs[0]
    if key_path is None:
        if b"PRIVATE KEY-----" not in cert_data:
            raise CredentialsError(
                f"{cert_path}: holds no private key and no --key was given",
                hint="pass the private key with --key FILE",
            )
        key_path, key_data = cert_path, cert_data
    else:
        key_data = _read(key_path, "key")
    key = load_private_key(key_data, str(key_path), passphrase)
    extras = list(certs[1:])
    for path in chain_paths:
        extras.extend(load_certificates(_read(path, "chain"), str(path)))
    chain, _roots = _order_chain(leaf, extras)
    return ClientCredentials(leaf, key, tuple(chain), str(cert_path), str(key_path))


def load_pfx_credentials(
    pfx_path: Path, passphrase: PassphraseSource, chain_paths: Sequence[Path] = ()
) -> ClientCredentials:
    """A PKCS#12 as Windows exports it (3DES/SHA1 or AES/SHA256); its chain certs are used."""
    data = _read(pfx_path, "PKCS#12")
    label = str(pfx_path)
    password = passphrase.resolve(label, ask=False)
    attempts: list[bytes | None] = [password] if password is not None else [None, b""]
    loaded = None
    for attempt in attempts:
        try:
            loaded = pkcs12.load_pkcs12(data, attempt)
            break
        except ValueError:
            continue
        except UnsupportedAlgorithm as exc:
            raise CredentialsError(
                f"{label}: the PKCS#12 uses an unsupported encryption",
                hint="export it again from Windows with 'TripleDES-SHA1' or 'AES256-SHA256'",
            ) from exc
    if loaded is None and password is None and _looks_like_pkcs12(data):
        prompted = passphrase.resolve(label)
        if prompted is None:
            raise CredentialsError(
                f"{label}: the PKCS#12 file is password protected and no passphrase was given",
                hint=PASSPHRASE_HINT,
            )
        try:
            loaded = pkcs12.load_pkcs12(data, prompted)
            password = prompted
        except ValueError:
            loaded = None
    if loaded is None:
        if password is not None and _looks_like_pkcs12(data):
            raise CredentialsError(
                f"{label}: wrong passphrase for the PKCS#12 file ({passphrase.describe()})",
                hint="check the passphrase; it is never shown",
            )
        raise CredentialsError(
            f"{label}: not a PKCS#12 (.pfx/.p12) file, or it is damaged",
            hint="export the certificate again with its private key from certmgr (.pfx)",
        )
    if loaded.cert is None or loaded.key is None:
        missing = "certificate" if loaded.cert is None else "private key"
        raise CredentialsError(
            f"{label}: the PKCS#12 file holds no {missing}",
            hint="export again and choose 'Yes, export the private key'",
        )
    key = _usable_key(loaded.key, label)
    extras = [c.certificate for c in loaded.additional_certs]
    for path in chain_paths:
        extras.extend(load_certificates(_read(path, "chain"), str(path)))
    chain, _roots = _order_chain(loaded.cert.certificate, extras)
    return ClientCredentials(loaded.cert.certificate, key, tuple(chain), label, label)


def _looks_like_pkcs12(data: bytes) -> bool:
    """DER SEQUENCE whose first element is INTEGER 3 (PFX version)."""
    return len(data) > 8 and data[0] == 0x30 and b"\x02\x01\x03" in data[:8]


def load_credentials(
    *,
    cert: Path | None,
    key: Path | None,
    pfx: Path | None,
    chain: Sequence[Path] = (),
    passphrase: PassphraseSource,
) -> ClientCredentials:
    """Dispatch on what the user gave: ``--pfx`` or ``--cert`` (+ ``--key``)."""
    if pfx is not None and (cert is not None or key is not None):
        raise UsageError(
            "--pfx cannot be combined with --cert/--key",
            hint="give either a PKCS#12 file or a PEM certificate and key",
        )
    if pfx is not None:
        return load_pfx_credentials(pfx, passphrase, chain)
    if cert is None:
        raise UsageError(
            "no client credentials given",
            hint="pass --cert FILE --key FILE, or --pfx FILE (see 'ovpn-toolkit ca issue' to "
            "make them)",
        )
    return load_pem_credentials(cert, key, passphrase, chain)


def load_roots(paths: Sequence[Path]) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    for path in paths:
        roots.extend(load_certificates(_read(path, "root certificate"), str(path)))
    return roots


# --- validation -------------------------------------------------------------------------------
def _public_key_matches(cert: x509.Certificate, key: UsableKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt))


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def chains_to(
    leaf: x509.Certificate, chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The root that (via ``chain``) issued ``leaf``, or None. Signatures are checked."""
    current = leaf
    seen: list[x509.Certificate] = []
    for _ in range(len(chain) + 1):
        for root in roots:
            if _issued_by(current, root):
                return root
        parent = next((c for c in chain if c not in seen and _issued_by(current, c)), None)
        if parent is None:
            return None
        seen.append(parent)
        current = parent
    return None


def describe_cert(cert: x509.Certificate) -> str:
    summary = CertificateSummary.of(cert)
    return f"'{summary.common_name or summary.subject}' (thumbprint {summary.thumbprint_sha1})"


def validate_credentials(
    creds: ClientCredentials,
    *,
    roots: Sequence[x509.Certificate] = (),
    targets: Sequence[str] = (),
    warn_days: int = 30,
    now: dt.datetime | None = None,
) -> list[Finding]:
    """Every problem with the credentials, errors first. Nothing is raised here."""
    return validate_certificate(
        creds.certificate,
        creds.private_key,
        chain=creds.chain,
        cert_source=creds.cert_source,
        key_source=creds.key_source,
        roots=roots,
        targets=targets,
        warn_days=warn_days,
        now=now,
    )


def validate_certificate(
    cert: x509.Certificate,
    private_key: UsableKey | None,
    *,
    chain: Sequence[x509.Certificate] = (),
    cert_source: str = "",
    key_source: str = "",
    roots: Sequence[x509.Certificate] = (),
    targets: Sequence[str] = (),
    warn_days: int = 30,
    now: dt.datetime | None = None,
) -> list[Finding]:
    """The checks of :func:`validate_credentials`; the key check only when a key is given."""
    now = now or dt.datetime.now(dt.UTC)
    label = cert_source or "certificate"
    who = describe_cert(cert)
    findings: list[Finding] = []

    def error(code: str, message: str, hint: str | None = None) -> None:
        findings.append(Finding("error", code, message, hint))

    def warning(code: str, message: str, hint: str | None = None) -> None:
        findings.append(Finding("warning", code, message, hint))

    if private_key is not None and not _public_key_matches(cert, private_key):
        error(
            "key-mismatch",
            f"{key_source}: the private key does not belong to the certificate {who} in {label}",
            "pass the key that was generated with this certificate",
        )
    if now > cert.not_valid_after_utc:
        error(
            "expired",
            f"{label}: certificate {who} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            "issue a new client certificate (ovpn-toolkit ca issue / ca renew)",
        )
    elif now < cert.not_valid_before_utc:
        error(
            "not-yet-valid",
            f"{label}: certificate {who} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check the clock of the machine that issued it, or wait until then",
        )
    elif cert.not_valid_after_utc - now < dt.timedelta(days=warn_days):
        days_left = (cert.not_valid_after_utc - now).days
        warning(
            "expires-soon",
            f"{label}: certificate {who} expires in {days_left} days "
            f"({cert.not_valid_after_utc:%Y-%m-%d})",
            "plan a renewal (ovpn-toolkit ca renew)",
        )
    try:
        eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        eku = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        error(
            "no-client-auth",
            f"{label}: certificate {who} has no Client Authentication extended key usage",
            "Azure requires EKU 1.3.6.1.5.5.7.3.2; issue a client certificate "
            "(ovpn-toolkit ca issue)",
        )
    elif eku[0] != ExtendedKeyUsageOID.CLIENT_AUTH:
        warning(
            "client-auth-not-first",
            f"{label}: Client Authentication is not the first extended key usage of {who}",
            "Microsoft asks for it to be the first entry; reissue if the gateway refuses it",
        )
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and algorithm.name in WEAK_HASHES:
        error(
            "weak-signature",
            f"{label}: certificate {who} is signed with {algorithm.name.upper()}",
            "OpenVPN Connect rejects SHA-1 signatures ('ca md too weak'); reissue with SHA-256",
        )
    public_key = cert.public_key()
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
        error(
            "weak-key",
            f"{label}: certificate {who} has an RSA key of {public_key.key_size} bits",
            "use RSA 2048 bits or more",
        )
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        warning(
            "ec-key",
            f"{label}: certificate {who} has an EC key; Azure documents RSA keys only",
            "if the gateway refuses it, reissue with --key-type rsa2048",
        )
    if roots and chains_to(cert, chain, roots) is None:
        names = ", ".join(describe_cert(r) for r in roots)
        error(
            "untrusted-issuer",
            f"{label}: certificate {who} is not issued by any given root ({names})",
            "pass the P2S root uploaded to the gateway with --root, and intermediates with --chain",
        )
    if chain and "ios" in targets:
        warning(
            "ios-intermediates",
            f"{label}: {len(chain)} intermediate certificate(s) go into the ios profile",
            "OpenVPN Connect 3.x needs intermediates uploaded to the gateway instead",
        )
    findings.sort(key=lambda f: f.level != "error")
    return findings


def errors_of(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def raise_for_errors(findings: Sequence[Finding]) -> None:
    """Raise the first error (noting how many more there are)."""
    errors = errors_of(findings)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise CredentialsError(first.message + more, first.hint)


__all__ = [
    "CertificateSummary",
    "ClientCredentials",
    "chains_to",
    "load_pem_credentials",
    "load_pfx_credentials",
    "load_roots",
    "raise_for_errors",
    "validate_credentials",
]
