"""Signed Apple configuration profiles: CMS/PKCS#7 SignedData with the profile embedded.

Apple devices show a signed profile as "Verified" when the signer chains to a root they
trust, and "Unverified" (but still installable) otherwise. The signature is over the exact
profile bytes, which the SignedData carries (not detached): the ``.mobileconfig`` file *is*
the DER SignedData.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from toolkit.credentials import load_certificates, load_private_key
from toolkit.errors import CredentialsError
from toolkit.passphrase import PassphraseSource
from toolkit.validation import describe_cert


@dataclass(frozen=True)
class ProfileSigner:
    """The signing certificate, its key and the intermediates sent along."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    def sign(self, data: bytes) -> bytes:
        """DER SignedData over ``data``, content embedded, SHA-256, signer and chain included."""
        builder = pkcs7.PKCS7SignatureBuilder().set_data(data)
        builder = builder.add_signer(self.certificate, self.key, hashes.SHA256())
        for cert in self.chain:
            builder = builder.add_certificate(cert)
        return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialsError(
            f"{path}: cannot read the {what} ({exc.strerror})", hint="check the path"
        ) from exc


def load_signer(cert: Path, key: Path, passphrase: PassphraseSource | None = None) -> ProfileSigner:
    """The signer from a PEM certificate file (signer first, then intermediates) and a key."""
    certs = load_certificates(_read(cert, "signing certificate"), str(cert))
    private_key = load_private_key(
        _read(key, "signing key"), str(key), passphrase or PassphraseSource()
    )
    if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialsError(
            f"{key}: profiles are signed with an RSA or EC key",
            hint="use the key of an RSA or EC signing certificate",
        )
    leaf = certs[0]
    public = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CredentialsError(
            f"{key}: the signing key does not belong to the certificate {describe_cert(leaf)}",
            hint="pass the key of the signing certificate (the first certificate in --sign-cert)",
        )
    return ProfileSigner(leaf, private_key, tuple(c for c in certs[1:] if c.subject != c.issuer))


__all__ = ["ProfileSigner", "load_signer"]
