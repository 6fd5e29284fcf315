"""Shared fixtures: every key and certificate is generated here, never committed.

RSA generation is slow, so the expensive objects are session-scoped; tests must not mutate them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from toolkit.ca import keys as pki
from toolkit.sample import SampleGateway, make_gateway

# Hypothesis: "ci" (the default) keeps every property and fuzz test quick and reproducible;
# HYPOTHESIS_PROFILE=long runs many more examples locally (pytest -q tests/test_fuzz.py).
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass(frozen=True)
class ClientFiles:
    """A client certificate written as PEM files, plus the objects behind them."""

    issued: pki.IssuedCertificate
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def gateway() -> SampleGateway:
    """A synthetic Azure-like gateway (stand-in public root, server cert, tls-auth key)."""
    return make_gateway()


@pytest.fixture(scope="session")
def p2s_root() -> pki.IssuedCertificate:
    """The stand-in P2S root an admin would upload to Azure."""
    return pki.create_root("Test P2S Root")


@pytest.fixture(scope="session")
def other_root() -> pki.IssuedCertificate:
    """A root the gateway does not trust (negative controls)."""
    return pki.create_root("Some Other Root")


@pytest.fixture(scope="session")
def client(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    """A valid Azure-style client certificate issued by ``p2s_root``."""
    return pki.issue_certificate(p2s_root, "alice@contoso.com", email="alice@contoso.com")


@pytest.fixture
def write_files(tmp_path: Path) -> Callable[..., ClientFiles]:
    """Write an issued certificate and key to tmp_path (key optionally encrypted)."""

    def write(
        issued: pki.IssuedCertificate, name: str = "alice", passphrase: bytes | None = None
    ) -> ClientFiles:
        cert = tmp_path / f"{name}.pem"
        key = tmp_path / f"{name}.key"
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem(passphrase))
        return ClientFiles(issued, cert, key)

    return write


@pytest.fixture
def client_files(
    client: pki.IssuedCertificate, write_files: Callable[..., ClientFiles]
) -> ClientFiles:
    return write_files(client)


@pytest.fixture
def package_zip(gateway: SampleGateway, tmp_path: Path) -> Path:
    """The gateway's package as Azure's portal serves it."""
    path = tmp_path / "VNet1GW.zip"
    path.write_bytes(gateway.zip_bytes())
    return path


@pytest.fixture
def root_pem(p2s_root: pki.IssuedCertificate, tmp_path: Path) -> Path:
    path = tmp_path / "p2s-root.pem"
    path.write_bytes(p2s_root.cert_pem)
    return path
