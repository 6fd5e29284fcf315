"""Is a certificate fit for Azure P2S and the chosen clients? Checks that report, never raise.

How certificates are named everywhere (subject, SHA-1 thumbprint, expiry) lives here too:
:class:`CertificateSummary`, :func:`thumbprint_sha1`, :func:`describe_cert`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from toolkit.errors import CredentialsError
from toolkit.findings import Finding

if TYPE_CHECKING:
    from toolkit.credentials import ClientCredentials

WEAK_HASHES = ("sha1", "md5", "md2", "md4")
UsableKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def thumbprint_sha1(cert: x509.Certificate, der: bytes | None = None) -> str:
    """Azure's certificate thumbprint: SHA-1 of the DER, upper-case hex, no separators;
    ``der``: the certificate's DER, when the caller has it."""
    der = cert.public_bytes(serialization.Encoding.DER) if der is None else der
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def fingerprint_sha256(cert: x509.Certificate, der: bytes | None = None) -> str:
    der = cert.public_bytes(serialization.Encoding.DER) if der is None else der
    return hashlib.sha256(der).digest().hex(":").upper()


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
        subject = cert.subject  # built anew (in Python) at every access: once here
        cns = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        cn = cns[0].value if cns else None
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(
            subject=subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            common_name=cn if isinstance(cn, str) else None,
            serial_hex=f"{cert.serial_number:X}",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            thumbprint_sha1=thumbprint_sha1(cert, der),
            fingerprint_sha256=fingerprint_sha256(cert, der),
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


def _same_public_key(public: CertificatePublicKeyTypes, key: UsableKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(public.public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt))


# the same signature is checked twice per user (validation, then the root to fill in): the
# result depends only on the two certificates (compared by their DER), so it is remembered
@functools.lru_cache(maxsize=256)
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


def describe_cert(cert: x509.Certificate, summary: CertificateSummary | None = None) -> str:
    """``'CN' (thumbprint ...)``; ``summary``: the certificate's, when the caller has it."""
    summary = summary or CertificateSummary.of(cert)
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
        summary=creds.summary,
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
    summary: CertificateSummary | None = None,
) -> list[Finding]:
    """The checks of :func:`validate_credentials`; the key check only when a key is given.
    ``summary``: the certificate's :class:`CertificateSummary`, when the caller has it."""
    now = now or dt.datetime.now(dt.UTC)
    label = cert_source or "certificate"
    who = describe_cert(cert, summary)
    public_key = cert.public_key()
    findings: list[Finding] = []

    def error(code: str, message: str, hint: str | None = None) -> None:
        findings.append(Finding("error", code, message, hint))

    def warning(code: str, message: str, hint: str | None = None) -> None:
        findings.append(Finding("warning", code, message, hint))

    if private_key is not None and not _same_public_key(public_key, private_key):
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
    serial_octets = (cert.serial_number.bit_length() + 8) // 8  # DER INTEGER, sign bit included
    if cert.serial_number <= 0 or serial_octets > 20:
        error(
            "bad-serial",
            f"{label}: certificate {who} has a serial number of {serial_octets} bytes; "
            "RFC 5280 allows at most 20 (positive)",
            "issue a new client certificate (ovpn-toolkit ca issue); clients refuse this one",
        )
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and algorithm.name in WEAK_HASHES:
        error(
            "weak-signature",
            f"{label}: certificate {who} is signed with {algorithm.name.upper()}",
            "OpenVPN Connect rejects SHA-1 signatures ('ca md too weak'); reissue with SHA-256",
        )
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
    "UsableKey",
    "chains_to",
    "describe_cert",
    "errors_of",
    "fingerprint_sha256",
    "raise_for_errors",
    "thumbprint_sha1",
    "validate_certificate",
    "validate_credentials",
]
