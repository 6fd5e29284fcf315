"""In-memory certificate primitives: keys, a P2S root, client and server certificates.

Used by the certificate authority, the demo's synthetic package and the tests. Nothing here
touches the file system; callers decide where the bytes go.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from toolkit.validation import fingerprint_sha256, thumbprint_sha1

KeyType = Literal["rsa2048", "rsa3072", "rsa4096"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# The one list of key types the toolkit issues (CA, users.yaml); Azure documents RSA only.
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)


def generate_key(key_type: KeyType | Literal["ec256"] = "rsa2048") -> PrivateKey:
    """A fresh private key of the given type (``ec256`` only for tests of EC handling)."""
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    bits = int(key_type.removeprefix("rsa"))
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def random_serial() -> int:
    """A random positive 128-bit serial number (RFC 5280 allows up to 20 octets)."""
    return secrets.randbits(127) | (1 << 126)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key, both in memory."""

    certificate: x509.Certificate
    private_key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def key_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with the best available (AES) when a passphrase is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def create_root(
    cn: str,
    *,
    days: int = 3650,
    key_type: KeyType = "rsa2048",
    key: PrivateKey | None = None,
    not_before: dt.datetime | None = None,
) -> IssuedCertificate:
    """A self-signed root: CA:TRUE (critical), keyCertSign + cRLSign, SKI, SHA-256."""
    key = key or generate_key(key_type)
    start = not_before or utcnow() - dt.timedelta(minutes=5)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(digital_signature=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(cert, key)


def _ca_key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    """keyCertSign + cRLSign (roots and intermediates)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue_certificate(
    issuer: IssuedCertificate,
    cn: str,
    *,
    days: int = 365,
    key_type: KeyType = "rsa2048",
    key: PrivateKey | None = None,
    eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    is_ca: bool = False,
    email: str | None = None,
    dns_names: tuple[str, ...] = (),
    serial: int | None = None,
) -> IssuedCertificate:
    """A certificate signed by ``issuer``: by default a P2S client certificate as Azure wants it.

    Client Authentication is the first (by default the only) EKU, digitalSignature +
    keyEncipherment, CA:FALSE, SKI/AKI, SHA-256, a random 128-bit serial.
    """
    key = key or generate_key(key_type)
    start = not_before or utcnow() - dt.timedelta(minutes=5)
    end = not_after or start + dt.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial or random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            critical=False,
        )
    )
    if is_ca:
        builder = builder.add_extension(_ca_key_usage(digital_signature=True), critical=True)
    else:
        builder = builder.add_extension(_leaf_key_usage(), critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    if email:
        alt_names.append(x509.RFC822Name(email))
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return IssuedCertificate(builder.sign(issuer.private_key, hashes.SHA256()), key)


def client_dns_names(name: str) -> tuple[str, ...]:
    """The DNS subjectAltName of a P2S client certificate: the user name (the CN, unless an
    e-mail is given, which becomes the CN and an e-mail SAN), as Microsoft's
    ``New-SelfSignedCertificate -DnsName`` makes them. An IKEv2 responder confirms the client's
    identity only from a SAN (macOS/iOS send the profile's LocalIdentifier as a DNS name, or as
    an e-mail identity when it holds ``@``)."""
    return () if "@" in name else (name,)


def issue_server_certificate(
    issuer: IssuedCertificate, hostname: str, *, days: int = 365
) -> IssuedCertificate:
    """A TLS server certificate (EKU serverAuth), e.g. ``<guid>.vpn.azure.com``."""
    return issue_certificate(
        issuer,
        hostname,
        days=days,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        dns_names=(hostname,),
    )


def azure_public_cert_data(cert: x509.Certificate) -> str:
    """The one-line base64 DER that the Azure portal calls "public certificate data"."""
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def generate_tls_auth_key() -> str:
    """An OpenVPN static key V1 (2048 bits, 16 lines of 32 hex digits), as ``openvpn --genkey``."""
    raw = secrets.token_bytes(256).hex()
    lines = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    return (
        "-----BEGIN OpenVPN Static key V1-----\n"
        + "\n".join(lines)
        + "\n-----END OpenVPN Static key V1-----\n"
    )


__all__ = [
    "KEY_TYPES",
    "IssuedCertificate",
    "KeyType",
    "PrivateKey",
    "azure_public_cert_data",
    "create_root",
    "fingerprint_sha256",
    "generate_key",
    "generate_tls_auth_key",
    "issue_certificate",
    "issue_server_certificate",
    "random_serial",
    "thumbprint_sha1",
    "utcnow",
]
