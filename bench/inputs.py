"""Synthetic inputs: an Azure-like package, a P2S root, per-user PEM credentials, user lists.

Everything is made at run time in the benchmark's temporary folder; no key material is kept.
Client keys are expensive to make (RSA-2048, ~50-100 ms each) and the assembly benchmark
measures assembly, not key generation, so a few keys are generated and shared round-robin by
the users' certificates. Every user still gets a certificate of its own (own serial and CN,
signed by the root) and its own key file.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from toolkit.sample import make_gateway

PACKAGE_NAME = "VNet1GW.zip"
TEMPLATE_ENTRY = "OpenVPN/vpnconfig.ovpn"
EMAIL_DOMAIN = "bench.example"


@dataclass(frozen=True)
class UserCredential:
    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class Inputs:
    """What every measurement reads: made once per run, shared by the measurements."""

    folder: Path
    package: Path
    template: Path  # vpnconfig.ovpn taken out of the package, for the shell loop
    root_cert: Path
    users: tuple[UserCredential, ...]
    distinct_keys: int
    setup_seconds: float

    def first(self, count: int) -> tuple[UserCredential, ...]:
        if count > len(self.users):
            raise ValueError(f"only {len(self.users)} users were generated, {count} asked for")
        return self.users[:count]


def user_name(index: int) -> str:
    return f"user{index:05d}"


def generate_rsa2048_pem(_: int = 0) -> bytes:
    """One fresh RSA-2048 key as unencrypted PKCS#8 PEM (what ``openssl genpkey`` writes)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_root() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "BENCH P2S Root (synthetic)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


# State of a certificate-signing worker process, set once by _init_signer.
_SIGNER: dict[str, Any] = {}


def _init_signer(root_key_pem: bytes, root_cert_pem: bytes, key_pems: Sequence[bytes]) -> None:
    _SIGNER["root_key"] = serialization.load_pem_private_key(root_key_pem, password=None)
    _SIGNER["root_cert"] = x509.load_pem_x509_certificate(root_cert_pem)
    _SIGNER["key_pems"] = list(key_pems)
    _SIGNER["public_keys"] = [
        serialization.load_pem_private_key(pem, password=None).public_key() for pem in key_pems
    ]


def _client_certificate(index: int) -> tuple[bytes, bytes]:
    """Certificate PEM and key PEM of user ``index`` (the key is one of the shared ones)."""
    root_key = _SIGNER["root_key"]
    root_cert: x509.Certificate = _SIGNER["root_cert"]
    slot = index % len(_SIGNER["key_pems"])
    public_key = _SIGNER["public_keys"][slot]
    now = dt.datetime.now(dt.UTC)
    cn = f"{user_name(index)}@{EMAIL_DOMAIN}"
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _SIGNER["key_pems"][slot]


def _write_client_range(task: tuple[str, int, int]) -> None:
    folder, start, stop = task
    certs = Path(folder)
    for index in range(start, stop):
        cert_pem, key_pem = _client_certificate(index)
        name = user_name(index)
        (certs / f"{name}.pem").write_bytes(cert_pem)
        key_path = certs / f"{name}.key"
        key_path.write_bytes(key_pem)
        key_path.chmod(0o600)


def make_inputs(folder: Path, *, users: int, distinct_keys: int, jobs: int) -> Inputs:
    """Package, root, ``users`` client certificates (PEM) and their keys, under ``folder``."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    package = folder / PACKAGE_NAME
    package.write_bytes(make_gateway().zip_bytes())
    template = folder / "vpnconfig.ovpn"
    with zipfile.ZipFile(package) as archive:
        template.write_bytes(archive.read(TEMPLATE_ENTRY))

    root_key, root = _make_root()
    root_cert = folder / "root.pem"
    root_cert.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    root_key_pem = root_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    certs = folder / "certs"
    certs.mkdir(mode=0o700)
    distinct_keys = max(1, min(distinct_keys, users))
    chunk = max(1, -(-users // (jobs * 4)))
    ranges = [(str(certs), start, min(start + chunk, users)) for start in range(0, users, chunk)]
    with multiprocessing.Pool(jobs) as pool:
        key_pems = pool.map(generate_rsa2048_pem, range(distinct_keys), chunksize=1)
    with multiprocessing.Pool(
        jobs,
        initializer=_init_signer,
        initargs=(root_key_pem, root.public_bytes(serialization.Encoding.PEM), key_pems),
    ) as pool:
        pool.map(_write_client_range, ranges, chunksize=1)

    credentials = tuple(
        UserCredential(user_name(i), certs / f"{user_name(i)}.pem", certs / f"{user_name(i)}.key")
        for i in range(users)
    )
    return Inputs(
        folder=folder,
        package=package,
        template=template,
        root_cert=root_cert,
        users=credentials,
        distinct_keys=distinct_keys,
        setup_seconds=time.perf_counter() - started,
    )


def _dump(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=200), encoding="utf-8")
    return path


def write_assembly_list(path: Path, inputs: Inputs, count: int) -> Path:
    """A users.yaml for ``count`` users with existing PEM credentials, tunnelblick + ios."""
    base = path.parent
    return _dump(
        path,
        {
            "package": os.path.relpath(inputs.package, base),
            "targets": ["tunnelblick", "ios"],
            "roots": [os.path.relpath(inputs.root_cert, base)],
            "users": [
                {
                    "name": user.name,
                    "cert": os.path.relpath(user.cert, base),
                    "key": os.path.relpath(user.key, base),
                }
                for user in inputs.first(count)
            ],
        },
    )


def write_issuance_list(
    path: Path, inputs: Inputs, *, ca_dir: Path, passphrase_env: str, count: int
) -> Path:
    """A users.yaml for ``count`` users without credentials: the CA in ``ca_dir`` issues them."""
    base = path.parent
    return _dump(
        path,
        {
            "package": os.path.relpath(inputs.package, base),
            "targets": ["tunnelblick", "ios"],
            "ca": {"dir": os.path.relpath(ca_dir, base), "passphrase_env": passphrase_env},
            "users": [
                {"name": user_name(i), "email": f"{user_name(i)}@{EMAIL_DOMAIN}"}
                for i in range(count)
            ],
        },
    )
