"""The Azure side of the CA: the exact `az` and PowerShell commands that upload the P2S root
and revoke a client certificate by thumbprint (Azure has no CRL for P2S)."""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from toolkit.ca import keys

RG_PLACEHOLDER = "<resource-group>"
GATEWAY_PLACEHOLDER = "<gateway>"


def azure_resource_name(text: str) -> str:
    """A name Azure accepts for a root or revoked certificate entry (letters, digits, ``._-``)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text)
    cleaned = cleaned.lstrip("._-").rstrip(".-")[:80].rstrip(".-")
    return cleaned or "P2SRoot"


@dataclass(frozen=True)
class AzureCommands:
    """The same gateway change as an Azure CLI line and as an Azure PowerShell line."""

    az: str
    powershell: str
    placeholders: bool  # True when <resource-group> / <gateway> still need filling in

    def to_json(self) -> dict[str, Any]:
        return {"az": self.az, "powershell": self.powershell, "placeholders": self.placeholders}


def _sh(value: str) -> str:
    return value if value in (RG_PLACEHOLDER, GATEWAY_PLACEHOLDER) else shlex.quote(value)


def _ps(value: str) -> str:
    if value in (RG_PLACEHOLDER, GATEWAY_PLACEHOLDER) or re.fullmatch(r"[A-Za-z0-9._-]+", value):
        return value
    return "'" + value.replace("'", "''") + "'"


def _target(gateway: str | None, resource_group: str | None) -> tuple[str, str, bool]:
    return (
        gateway or GATEWAY_PLACEHOLDER,
        resource_group or RG_PLACEHOLDER,
        not (gateway and resource_group),
    )


def root_upload_commands(
    certificate: x509.Certificate,
    der_path: Path,
    name: str,
    *,
    gateway: str | None = None,
    resource_group: str | None = None,
) -> AzureCommands:
    """Upload a P2S root to the gateway.

    ``az`` reads the file given to ``--public-cert-data`` and base64-encodes its bytes itself,
    so it gets the DER ``.cer`` file (not the base64 text file); PowerShell gets the base64.
    """
    gw, rg, placeholders = _target(gateway, resource_group)
    az = (
        f"az network vnet-gateway root-cert create --resource-group {_sh(rg)} "
        f"--gateway-name {_sh(gw)} --name {_sh(name)} "
        f"--public-cert-data {shlex.quote(str(Path(der_path).resolve()))}"
    )
    data = keys.azure_public_cert_data(certificate)
    ps = (
        f"Add-AzVpnClientRootCertificate -VpnClientRootCertificateName {_ps(name)} "
        f"-VirtualNetworkGatewayName {_ps(gw)} -ResourceGroupName {_ps(rg)} "
        f'-PublicCertData "{data}"'
    )
    return AzureCommands(az, ps, placeholders)


def revocation_commands(
    name: str,
    thumbprint_sha1: str,
    *,
    gateway: str | None = None,
    resource_group: str | None = None,
) -> AzureCommands:
    """Revoke one client certificate on the gateway, by thumbprint.

    ``name`` is the Azure entry's name (:attr:`LedgerEntry.azure_revocation_name`:
    ``<name>-<first 8 thumbprint digits>``, so that revoking a user's renewed certificate later
    does not overwrite, and so undo, the earlier revocation).
    """
    gw, rg, placeholders = _target(gateway, resource_group)
    az = (
        f"az network vnet-gateway revoked-cert create --resource-group {_sh(rg)} "
        f"--gateway-name {_sh(gw)} --name {_sh(name)} --thumbprint {thumbprint_sha1}"
    )
    ps = (
        f"Add-AzVpnClientRevokedCertificate -VpnClientRevokedCertificateName {_ps(name)} "
        f"-VirtualNetworkGatewayName {_ps(gw)} -ResourceGroupName {_ps(rg)} "
        f"-Thumbprint {thumbprint_sha1}"
    )
    return AzureCommands(az, ps, placeholders)
