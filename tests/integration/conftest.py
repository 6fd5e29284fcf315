"""Shared fixtures for the namespace tests: one synthetic gateway and P2S roots per session."""

from __future__ import annotations

import pytest

from toolkit.ca import keys as pki
from toolkit.sample import SampleGateway, make_gateway


@pytest.fixture(scope="session")
def sample_gateway() -> SampleGateway:
    """An Azure-like gateway (stand-in public root, server certificate, tls-auth key)."""
    return make_gateway()


@pytest.fixture(scope="session")
def p2s_root() -> pki.IssuedCertificate:
    """The stand-in P2S root uploaded to the gateway: it validates clients."""
    return pki.create_root("ovt test P2S root")


@pytest.fixture(scope="session")
def p2s_client(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    """A client certificate (clientAuth EKU) chaining to :func:`p2s_root`."""
    return pki.issue_certificate(p2s_root, "alice")


@pytest.fixture(scope="session")
def foreign_client() -> pki.IssuedCertificate:
    """A client certificate from a root the gateway does not know (same CN as the real root)."""
    foreign_root = pki.create_root("ovt test P2S root")
    return pki.issue_certificate(foreign_root, "mallory")
