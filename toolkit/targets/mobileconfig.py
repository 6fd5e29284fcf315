"""OpenVPN Connect on managed iPhones: an Apple configuration profile (``.mobileconfig``) for
MDM (Intune, Jamf, Apple Configurator) with a ``com.apple.vpn.managed`` payload whose
``VendorConfig`` carries the profile, and a ``com.apple.security.pkcs12`` identity payload.

The VendorConfig format follows how OpenVPN Connect's core reads key/value profiles; OpenVPN Inc.
does not document it and it has not been tried on a device by this project (see docs).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from toolkit.credentials import UsableKey, load_certificates
from toolkit.errors import ProfileError
from toolkit.findings import Edit, Finding
from toolkit.naming import bundle_identifier
from toolkit.profile import Block, Directive, Profile, quote_arg
from toolkit.targets.base import PlannedFile, Target, TargetContext
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


def _uuid(*parts: str) -> str:
    """Stable UUIDs: re-issuing the same user replaces the installed profile."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4)).upper()


def _pkcs12(profile: Profile, name: str, password: bytes, ctx: TargetContext) -> bytes:
    cert_block, key_block = profile.block("cert"), profile.block("key")
    if cert_block is None or key_block is None:
        raise ProfileError(f"{profile.source}: no <cert>/<key> to build the identity from")
    certs = load_certificates(cert_block.content.encode(), "<cert>")
    key_pem = key_block.content.encode()
    encrypted = b"ENCRYPTED" in key_pem
    key = serialization.load_pem_private_key(
        key_pem, password=ctx.key_passphrase if encrypted else None
    )
    if not isinstance(key, UsableKey):  # pragma: no cover - the key was written by us
        raise ProfileError(f"{profile.source}: unsupported key type in <key>")
    # iOS refuses OpenSSL 3's default AES/PBKDF2 PKCS#12 ("wrong password"): 3DES + SHA-1 MAC
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - what iOS accepts
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, certs[0], certs[1:] or None, encryption
    )


class MobileconfigTarget(Target):
    name = "mobileconfig"
    title = "OpenVPN Connect via MDM (.mobileconfig)"

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
        cert_block = profile.block("cert")
        seed = cert_block.content if cert_block else ""
        data = render(
            "ios/connect.mobileconfig.j2",
            identifier=identifier,
            display_name=ctx.display_name,
            name=ctx.name,
            password=None if ctx.key_passphrase else password.decode(),
            pkcs12_base64=base64.b64encode(_pkcs12(profile, ctx.name, password, ctx)).decode(),
            identity_uuid=_uuid(identifier, "identity", seed),
            vpn_uuid=_uuid(identifier, "vpn"),
            profile_uuid=_uuid(identifier, "profile"),
            vendor_config=vendor_config(profile),
        )
        return [PlannedFile(f"{self.name}/{ctx.name}.mobileconfig", data.encode("utf-8"))]

    def lint(self, profile: Profile) -> list[Finding]:
        return IOSTarget().lint(profile)
