"""Plan one user's outputs: validate credentials, adapt the profile per target, fill it.

Pure: returns a :class:`UserPlan` (files as bytes, edits, warnings); ``toolkit.writer``
puts it on disk. Nothing is written unless every target planned successfully.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from cryptography import x509

from toolkit.credentials import (
    CertificateSummary,
    ClientCredentials,
    chains_to,
    raise_for_errors,
    validate_credentials,
)
from toolkit.findings import Edit, Finding
from toolkit.inject import CredentialPem, fill_credentials
from toolkit.naming import bundle_version, check_display_name, check_name
from toolkit.package import AzurePackage
from toolkit.profile import Profile
from toolkit.targets import PlannedFile, Target, TargetContext, TargetPlan, get_targets


@dataclass(frozen=True)
class UserRequest:
    """What to make for one user."""

    name: str
    display_name: str | None = None
    targets: tuple[str, ...] = ()
    disable_dco: bool = False
    replace_credentials: bool = False
    warn_days: int = 30
    key_passphrase: bytes | None = field(default=None, repr=False)


@dataclass
class UserPlan:
    name: str
    display_name: str
    certificate: CertificateSummary
    targets: list[TargetPlan]
    warnings: list[Finding] = field(default_factory=list)

    @property
    def files(self) -> list[PlannedFile]:
        return [f for plan in self.targets for f in plan.files]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "certificate": self.certificate.to_json(),
            "targets": [
                {
                    "target": plan.target,
                    "files": [
                        {
                            "path": f"{self.name}/{f.path}",
                            "sha256": hashlib.sha256(f.data).hexdigest(),
                            "mode": f"{f.mode:04o}",
                            "bytes": len(f.data),
                        }
                        for f in plan.files
                    ],
                    "edits": [e.to_json() for e in plan.edits],
                }
                for plan in self.targets
            ],
            "warnings": [w.to_json() for w in self.warnings],
        }


def gateway_id(profile: Profile) -> str:
    """The gateway's identity: the GUID from verify-x509-name, else the first remote host."""
    verify = profile.first("verify-x509-name")
    if verify is not None and verify.args:
        return verify.args[0].split(".")[0]
    remote = profile.first("remote")
    if remote is not None and remote.args:
        return remote.args[0]
    return "gateway"


def gateway_label(package: AzurePackage) -> str:
    """A short human name for the gateway: the zip's or folder's name (Azure names the zip
    after the gateway), else 'Azure VPN'."""
    stem = (
        PurePath(package.source).stem if package.kind != "folder" else PurePath(package.source).name
    )
    if package.kind == "ovpn" and stem.lower() == "vpnconfig":
        return "Azure VPN"
    return stem or "Azure VPN"


def default_display_name(name: str, package: AzurePackage) -> str:
    return f"{name} ({gateway_label(package)})"


def preview_target(
    package: AzurePackage, target: Target, ctx: TargetContext
) -> tuple[Profile, list[Edit], list[Finding]]:
    """What a target does to the package's profile, before credentials (used by inspect)."""
    profile = package.profile()
    edits, warnings = target.adapt(profile, ctx)
    return profile, edits, warnings


def plan_user(
    package: AzurePackage,
    creds: ClientCredentials,
    request: UserRequest,
    *,
    roots: Sequence[x509.Certificate] = (),
    now: dt.datetime | None = None,
) -> UserPlan:
    """Validate everything and build every file for one user; raise on the first error."""
    name = check_name(request.name)
    display = check_display_name(request.display_name or default_display_name(name, package))
    targets = get_targets(request.targets)
    findings = validate_credentials(
        creds,
        roots=roots,
        targets=[t.name for t in targets],
        warn_days=request.warn_days,
        now=now,
    )
    raise_for_errors(findings)
    warnings = list(findings)
    root = chains_to(creds.certificate, creds.chain, roots) if roots else None
    key_pem = (
        creds.protected_key_pem(request.key_passphrase) if request.key_passphrase else creds.key_pem
    )
    pem = CredentialPem(creds.cert_pem, key_pem, creds.chain, root)
    template = package.profile()
    ctx = TargetContext(
        name=name,
        display_name=display,
        gateway_id=gateway_id(template),
        bundle_version=bundle_version(creds.certificate.not_valid_before_utc),
        disable_dco=request.disable_dco,
        key_passphrase=request.key_passphrase,
    )
    plans: list[TargetPlan] = []
    for target in targets:
        profile = package.profile()
        edits, target_warnings = target.adapt(profile, ctx)
        edits = fill_credentials(profile, pem, replace=request.replace_credentials) + edits
        edits.sort(key=lambda e: e.line)
        plans.append(target.plan(profile, ctx, edits, target_warnings))
        warnings.extend(target_warnings)
    return UserPlan(name, display, creds.summary, plans, warnings)
