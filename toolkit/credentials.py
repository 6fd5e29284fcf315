"""Load one user's client certificate and key (PEM or PKCS#12), and export PKCS#12.

The one private-key loader (:func:`load_private_key`) and the one PKCS#12 exporter
(:func:`export_pkcs12`) of the toolkit live here; the CA and the targets use them too.
Private keys live only in :class:`ClientCredentials` and leave it only as PEM or PKCS#12 bytes
for an output. Nothing here ever puts key material or a passphrase in a message.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning

from toolkit.errors import (
    CredentialsError,
    PassphraseRequiredError,
    UsageError,
    WrongPassphraseError,
)
from toolkit.passphrase import PassphraseSource
from toolkit.validation import CertificateSummary, UsableKey

MAX_CREDENTIAL_BYTES = 1024 * 1024
PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
PASSPHRASE_HINT = "give it with --passphrase-env VAR or --passphrase-file FILE"  # noqa: S105
PKCS12_MODERN_ROUNDS = 50_000
PKCS12_LEGACY_ROUNDS = 2_048


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

    @functools.cached_property
    def summary(self) -> CertificateSummary:
        """Made once (subject, thumbprints): validation, the plan and the guide all use it."""
        return CertificateSummary.of(self.certificate)

    @functools.cached_property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

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
def read_input(path: Path, what: str) -> bytes:
    """A credential file's bytes, with the checks and messages of the loaders (size, empty,
    missing); pass them on as ``contents`` so the loaders do not read the file again."""
    return _read(path, what)


def _read(path: Path, what: str, contents: Mapping[Path, bytes] | None = None) -> bytes:
    if contents is not None and path in contents:
        return contents[path]
    try:
        with open(path, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            data = b""
            if 0 < size <= MAX_CREDENTIAL_BYTES:
                data = handle.read()
            elif size == 0:  # a device reports 0 bytes: never read more than a credential can be
                data = handle.read(MAX_CREDENTIAL_BYTES + 1)
            if size > MAX_CREDENTIAL_BYTES or len(data) > MAX_CREDENTIAL_BYTES:
                amount = f"{size} bytes" if size else f"over {MAX_CREDENTIAL_BYTES} bytes"
                raise CredentialsError(
                    f"{path}: {what} file is {amount}, too large to be a {what}",
                    hint="check that you passed the right file",
                )
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


def _parse_certificates(data: bytes, label: str) -> list[x509.Certificate]:
    """PEM bundle or one DER certificate; cryptography's warnings about certificates that
    break RFC 5280 (a negative or zero serial) become errors here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        try:
            if PEM_CERT_BEGIN in data:
                return x509.load_pem_x509_certificates(data)
            return [x509.load_der_x509_certificate(data)]
        except x509.InvalidVersion as exc:
            raise CredentialsError(
                f"{label}: a certificate in it has an invalid X.509 version",
                hint="the file is damaged; export the certificate again",
            ) from exc
        except CryptographyDeprecationWarning as exc:
            raise CredentialsError(
                f"{label}: a certificate in it has a negative or zero serial number, which "
                "RFC 5280 forbids",
                hint="issue a new certificate (ovpn-toolkit ca issue); clients refuse this one",
            ) from exc


def load_certificates(data: bytes, label: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one certificate of a DER file."""
    if PEM_CERT_BEGIN in data:
        try:
            return _parse_certificates(data, label)
        except ValueError as exc:
            raise CredentialsError(
                f"{label}: a PEM certificate in it cannot be parsed",
                hint="the file is damaged; export the certificate again",
            ) from exc
    if b"PRIVATE KEY-----" in data:
        raise CredentialsError(
            f"{label}: holds a private key but no certificate",
            hint="this file holds a private key; are --cert and --key swapped?",
        )
    if _looks_like_pkcs12(data):
        raise CredentialsError(
            f"{label}: is a PKCS#12 (.pfx/.p12) file, not a certificate",
            hint="pass it with --pfx FILE (and its password with --passphrase-env or "
            "--passphrase-file) instead of --cert",
        )
    if b"-----BEGIN PUBLIC KEY-----" in data or b"-----BEGIN RSA PUBLIC KEY-----" in data:
        raise CredentialsError(
            f"{label}: holds a public key, not a certificate",
            hint="pass the client certificate (-----BEGIN CERTIFICATE-----) exported with it",
        )
    try:
        return _parse_certificates(data, label)
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


def load_private_key(
    data: bytes,
    label: str,
    passphrase: PassphraseSource | bytes | None,
    *,
    what: str = "private key",
    hint: str = PASSPHRASE_HINT,
    skip_rsa_validation: bool = False,
) -> UsableKey:
    """A PEM private key: plain, encrypted PKCS#8, or encrypted traditional (Proc-Type).

    ``passphrase`` is a source (resolved, and prompted for, only when the key is encrypted) or
    the passphrase itself (the CA, opened with bytes it already has).

    ``skip_rsa_validation`` skips OpenSSL's check of an RSA key (about 70 ms per 2048-bit key,
    most of a batch's time, nearly all of it primality tests of p and q); the cheap arithmetic
    part is still done here (:func:`_rsa_consistent`). Only for a key the toolkit never signs
    with and whose public half is then checked against its certificate (a user's client key:
    :func:`load_pem_credentials`, then ``validation.validate_credentials``). Never for the CA's
    own key, which signs certificates (``docs/performance.md``)."""
    if b"PRIVATE KEY-----" not in data:
        if PEM_CERT_BEGIN in data:
            raise CredentialsError(
                f"{label}: holds a certificate, not a private key",
                hint="this file holds a certificate; are --cert and --key swapped?",
            )
        if b"PUBLIC KEY-----" in data:
            raise CredentialsError(
                f"{label}: holds a public key, not the private key",
                hint="pass the private key (-----BEGIN PRIVATE KEY-----) that belongs to the "
                "certificate; a public key cannot sign",
            )
        if data[:1] == b"\x30":
            raise CredentialsError(
                f"{label}: holds binary (DER) data, not a PEM private key",
                hint="convert it: openssl pkey -inform DER -in KEY.der -out KEY.pem, or use "
                "--pfx for a .pfx/.p12 file",
            )
        raise CredentialsError(
            f"{label}: no PEM private key in it",
            hint="pass the key as PEM (-----BEGIN PRIVATE KEY-----) or use --pfx",
        )
    password: bytes | None = None
    if _key_is_encrypted(data):
        if isinstance(passphrase, PassphraseSource):
            password = passphrase.resolve(label)
        else:
            password = passphrase or None
        if password is None:
            raise PassphraseRequiredError(
                f"{label}: the {what} is encrypted and no passphrase was given", hint=hint
            )
    try:
        key = serialization.load_pem_private_key(
            data, password=password, unsafe_skip_rsa_key_validation=skip_rsa_validation
        )
    except TypeError as exc:  # a password for a plain key, or the reverse
        raise CredentialsError(
            f"{label}: the {what} is not encrypted but a passphrase was given",
            hint="drop --passphrase-env/--passphrase-file for this key",
        ) from exc
    except ValueError as exc:
        if password is not None:
            source = (
                f" ({passphrase.describe()})" if isinstance(passphrase, PassphraseSource) else ""
            )
            raise WrongPassphraseError(
                f"{label}: wrong passphrase for the {what}{source}",
                hint="check the passphrase; it is never shown",
            ) from exc
        raise CredentialsError(
            f"{label}: the {what} cannot be parsed",
            hint="the file is damaged or not a private key",
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise CredentialsError(
            f"{label}: the {what} uses an unsupported algorithm or encryption",
            hint="re-export it as PKCS#8: openssl pkcs8 -topk8 -in OLD -out NEW",
        ) from exc
    if skip_rsa_validation and isinstance(key, rsa.RSAPrivateKey) and not _rsa_consistent(key):
        raise CredentialsError(
            f"{label}: the {what} is damaged (its RSA values do not agree)",
            hint="export the key again, or issue a new certificate",
        )
    return _usable_key(key, label)


def _rsa_consistent(key: rsa.RSAPrivateKey) -> bool:
    """The arithmetic OpenSSL's check does, without its costly primality tests of p and q:
    n = p*q, the exponents and the CRT values agree (microseconds, not ~70 ms)."""
    numbers = key.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    return (
        p > 1
        and q > 1
        and p * q == n
        and (d * e) % (p - 1) == 1
        and (d * e) % (q - 1) == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and (numbers.iqmp * q) % p == 1
    )


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
    *,
    contents: Mapping[Path, bytes] | None = None,
) -> ClientCredentials:
    """``--cert`` (+ ``--key``; the key may also sit in the cert file) and ``--chain`` files.

    The client key is loaded without OpenSSL's RSA consistency check (see
    :func:`load_private_key`): it is only ever exported into profiles, never used to sign, and
    callers check it against the certificate (``validation.validate_credentials``)."""
    cert_data = _read(cert_path, "certificate", contents)
    certs = load_certificates(cert_data, str(cert_path))
    leaf = certs[0]
    leaves = [c for c in certs if not _is_ca(c)]
    if len(leaves) > 1:
        raise CredentialsError(
            f"{cert_path}: holds {len(leaves)} client certificates; one is expected",
            hint="pass each user's certificate in its own file (intermediates may follow it, "
            "or go in --chain)",
        )
    if key_path is None:
        if b"PRIVATE KEY-----" not in cert_data:
            raise CredentialsError(
                f"{cert_path}: holds no private key and no --key was given",
                hint="pass the private key with --key FILE",
            )
        key_path, key_data = cert_path, cert_data
    else:
        key_data = _read(key_path, "key", contents)
    key = load_private_key(key_data, str(key_path), passphrase, skip_rsa_validation=True)
    extras = list(certs[1:])
    for path in chain_paths:
        extras.extend(load_certificates(_read(path, "chain", contents), str(path)))
    chain, _roots = _order_chain(leaf, extras)
    return ClientCredentials(leaf, key, tuple(chain), str(cert_path), str(key_path))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return cert.issuer == cert.subject


def load_pfx_credentials(
    pfx_path: Path,
    passphrase: PassphraseSource,
    chain_paths: Sequence[Path] = (),
    *,
    contents: Mapping[Path, bytes] | None = None,
) -> ClientCredentials:
    """A PKCS#12 as Windows exports it (3DES/SHA1 or AES/SHA256); its chain certs are used."""
    data = _read(pfx_path, "PKCS#12", contents)
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
            raise PassphraseRequiredError(
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
            raise WrongPassphraseError(
                f"{label}: wrong passphrase for the PKCS#12 file ({passphrase.describe()})",
                hint="check the passphrase; it is never shown",
            )
        raise CredentialsError(
            f"{label}: not a PKCS#12 (.pfx/.p12) file, or it is damaged",
            hint="export the certificate again with its private key from certmgr (.pfx)",
        )
    if loaded.cert is None or loaded.key is None:
        missing = "private key" if loaded.key is None else "certificate"
        raise CredentialsError(
            f"{label}: the PKCS#12 file holds no {missing}",
            hint="export again and choose 'Yes, export the private key'",
        )
    key = _usable_key(loaded.key, label)
    extras = [c.certificate for c in loaded.additional_certs]
    for path in chain_paths:
        extras.extend(load_certificates(_read(path, "chain", contents), str(path)))
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
    contents: Mapping[Path, bytes] | None = None,
) -> ClientCredentials:
    """Dispatch on what the user gave: ``--pfx`` or ``--cert`` (+ ``--key``). ``contents``:
    files already read (:func:`read_input`), by path."""
    if pfx is not None and (cert is not None or key is not None):
        raise UsageError(
            "--pfx cannot be combined with --cert/--key",
            hint="give either a PKCS#12 file or a PEM certificate and key",
        )
    if pfx is not None:
        return load_pfx_credentials(pfx, passphrase, chain, contents=contents)
    if cert is None:
        raise UsageError(
            "no client credentials given",
            hint="pass --cert FILE --key FILE, or --pfx FILE (see 'ovpn-toolkit ca issue' to "
            "make them)",
        )
    return load_pem_credentials(cert, key, passphrase, chain, contents=contents)


def load_roots(paths: Sequence[Path]) -> list[x509.Certificate]:
    roots: list[x509.Certificate] = []
    for path in paths:
        roots.extend(load_certificates(_read(path, "root certificate"), str(path)))
    return roots


def export_pkcs12(
    key: UsableKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: bytes,
    *,
    friendly_name: str,
    legacy: bool = False,
) -> bytes:
    """A password-protected PKCS#12: AES-256-CBC/PBKDF2 + SHA-256 MAC, or with ``legacy``
    PBE-SHA1-3DES + SHA-1 MAC, the only form iOS/macOS import (OpenSSL 3 defaults fail there
    with "wrong password") and older Windows too."""
    if not password:
        raise CredentialsError("the PKCS#12 password is empty", hint="give a non-empty password")
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = (
            builder.kdf_rounds(PKCS12_LEGACY_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - what the legacy format requires
        )
    else:
        builder = (
            builder.kdf_rounds(PKCS12_MODERN_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"),
        key,
        certificate,
        list(chain) or None,
        builder.build(password),
    )


__all__ = [
    "ClientCredentials",
    "UsableKey",
    "export_pkcs12",
    "load_certificates",
    "load_credentials",
    "load_pem_credentials",
    "load_pfx_credentials",
    "load_private_key",
    "load_roots",
    "read_input",
]
