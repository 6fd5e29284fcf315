"""OpenVPN Connect on managed iPhones: an Apple configuration profile (``.mobileconfig``) for
MDM (Intune, Jamf, Apple Configurator) with a ``com.apple.vpn.managed`` payload whose
``VendorConfig`` carries the profile, and a ``com.apple.security.pkcs12`` identity payload.

The VendorConfig format follows how OpenVPN Connect's core reads key/value profiles; OpenVPN Inc.
does not document it and it has not been tried on a device by this project (see docs).
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from toolkit.credentials import export_pkcs12
from toolkit.findings import Edit, Finding
from toolkit.output import PlannedFile
from toolkit.profile import Block, Directive, Profile, quote_arg
from toolkit.targets.base import (
    Target,
    TargetContext,
    bundle_identifier,
    require_credentials,
    stable_uuid,
)
from toolkit.targets.ios import IOSTarget
from toolkit.templating import render

IDENTITY_BLOCKS = ("cert", "key")  # carried by the PKCS#12 payload instead
NOARGS = "NOARGS"


def vendor_config(profile: Profile) -> list[tuple[str, str]]:
    """The profile as VendorConfig pairs: ``remote.1``/``remote.2`` for repeats, ``NOARGS`` for
    bare directives, inline blocks with their lines joined by the two characters ``\\n``."""
    counts: dict[str, int] = {}
    for item in profile.items:
        if isinstance(item, Directive):
            counts[item.name] = counts.get(item.name, 0) + 1
    seen: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    for item in profile.items:
        if isinstance(item, Directive):
            seen[item.name] = seen.get(item.name, 0) + 1
            key = item.name if counts[item.name] == 1 else f"{item.name}.{seen[item.name]}"
            value = " ".join(quote_arg(a) for a in item.args) if item.args else NOARGS
            pairs.append((key, value))
        elif isinstance(item, Block) and item.name not in IDENTITY_BLOCKS:
            pairs.append((item.name, "\\n".join(line.strip() for line in item.body)))
    pairs.append(("vpn-on-demand", "0"))
    return pairs


def _pkcs12(ctx: TargetContext, password: bytes) -> bytes:
    """The identity payload: the loaded credentials, in the form iOS imports."""
    creds = require_credentials(ctx)
    return export_pkcs12(
        creds.private_key,
        creds.certificate,
        creds.chain,
        password,
        friendly_name=ctx.name,
        legacy=True,
    )


class MobileconfigTarget(Target):
    name = "mobileconfig"
    title = "OpenVPN Connect via MDM (.mobileconfig)"
    platform = "MDM"
    file_label = "iphone-mdm"
    templates = ("ios/connect.mobileconfig.j2",)

    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        edits, warnings = IOSTarget().adapt(profile, ctx)
        warnings = [
            *warnings,
            Finding(
                "warning",
                "mobileconfig-unverified",
                "the .mobileconfig follows OpenVPN Connect's key/value format, which OpenVPN Inc. "
                "does not document; try it on one managed device before rolling it out",
            ),
        ]
        return edits, warnings

    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        # with --key-passphrase the user types it at install; else a random one rides along
        password = ctx.key_passphrase or secrets.token_urlsafe(18).encode()
        identifier = bundle_identifier(ctx.gateway_id, ctx.name)
        seed = require_credentials(ctx).summary.thumbprint_sha1
        data = render(
            "ios/connect.mobileconfig.j2",
            identifier=identifier,
            display_name=ctx.display_name,
            name=ctx.name,
            password=None if ctx.key_passphrase else password.decode(),
            pkcs12_base64=base64.b64encode(_pkcs12(ctx, password)).decode(),
            identity_uuid=stable_uuid(identifier, "identity", seed),
            vpn_uuid=stable_uuid(identifier, "vpn"),
            profile_uuid=stable_uuid(identifier, "profile"),
            vendor_config=vendor_config(profile),
        )
        raw = data.encode("utf-8")
        if ctx.signer is not None:
            raw = ctx.signer.sign(raw)
        return [PlannedFile(f"{self.name}/{self.file_stem(ctx)}.mobileconfig", raw)]

    def lint(self, profile: Profile) -> list[Finding]:
        return IOSTarget().lint(profile)

    def next_step(self, file_to_send: Path) -> str:
        return (
            f"MDM: upload {file_to_send} to Intune/Jamf as a custom iOS configuration profile; "
            "test on one device first (docs/how-to/ios.md)"
        )
