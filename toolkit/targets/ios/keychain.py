"""OpenVPN Connect on iOS with the identity in the keychain: a ``.ovpn12`` (PKCS#12) the user
imports first, and the ios target's profile with ``<ca>``, ``<tls-auth>`` and ``<cert>`` but no
``<key>``; the app then asks the user to pick the imported identity (external PKI).

No ``# OVPN_ACCESS_SERVER_EXTERNAL_PKI`` line is added: on its own it makes the app ask for a
username and password (``/work/shared/reference/openvpn-connect.md``, "Keychain identity").
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from toolkit.credentials import export_pkcs12
from toolkit.findings import Edit, Finding
from toolkit.output import PlannedFile
from toolkit.profile import Comment, Profile
from toolkit.targets.base import (
    Target,
    TargetContext,
    TargetPlan,
    password_file,
    pkcs12_password,
    require_credentials,
)
from toolkit.targets.ios.target import IOSTarget

# the meta comment that, without a server-side profile, makes the app ask for a password
EXTERNAL_PKI_META = "OVPN_ACCESS_SERVER_EXTERNAL_PKI"


def _azure_key_comments(profile: Profile) -> list[Comment]:
    """Azure's comment lines right above ``<key>`` (they ask to fill it in)."""
    block = profile.block("key")
    if block is None:
        return []
    index = next(i for i, item in enumerate(profile.items) if item is block)
    found: list[Comment] = []
    for item in reversed(profile.items[:index]):
        if not isinstance(item, Comment):
            break
        found.append(item)
    return [c for c in found if "key" in c.raw.lower()]


class IOSKeychainTarget(Target):
    name = "ios-keychain"
    title = "OpenVPN Connect (iOS), identity in the keychain"
    platform = "iPhone"
    missing_key: ClassVar[Literal["error", "warning"] | None] = None  # keyless by design

    file_label = "iphone-keychain"

    def stem(self, ctx: TargetContext) -> str:
        return f"{self.name}/{self.file_stem(ctx)}"

    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        edits, warnings = IOSTarget().adapt(profile, ctx)
        for item in list(profile.items):
            if isinstance(item, Comment) and EXTERNAL_PKI_META in item.raw:
                profile.remove(item)
                edits.append(
                    Edit(
                        item.line,
                        f"# {EXTERNAL_PKI_META}",
                        "removed",
                        "on its own it makes OpenVPN Connect ask for a username and password",
                    )
                )
        return edits, warnings

    def plan(
        self, profile: Profile, ctx: TargetContext, edits: list[Edit], warnings: list[Finding]
    ) -> TargetPlan:
        key_block = profile.block("key")
        if key_block is not None:
            for comment in _azure_key_comments(profile):
                profile.remove(comment)
            profile.remove(key_block)
            edits = [e for e in edits if e.directive != "<key>"]
            edits.append(
                Edit(
                    key_block.line,
                    "<key>",
                    "removed",
                    "the private key is in the .ovpn12 identity the user imports into the "
                    "app's keychain; the app asks to pick it when connecting",
                )
            )
            edits.sort(key=lambda e: e.line)
        return super().plan(profile, ctx, edits, warnings)

    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        creds = require_credentials(ctx)
        stem = self.stem(ctx)
        password, password_files = pkcs12_password(ctx, stem)
        identity = export_pkcs12(
            creds.private_key,
            creds.certificate,
            creds.chain,
            password,
            friendly_name=ctx.display_name,
            legacy=True,
        )
        (ovpn,) = IOSTarget().render(profile, ctx)
        return [
            PlannedFile(f"{stem}.ovpn12", identity),
            PlannedFile(f"{stem}.ovpn", ovpn.data),
            *password_files,
        ]

    def deliverables(self, files: list[PlannedFile]) -> tuple[PlannedFile, ...]:
        """The identity, then the profile; never the password file (it goes by another channel)."""
        return (files[0], files[1])

    def lint(self, profile: Profile) -> list[Finding]:
        findings = IOSTarget().lint(profile)
        if profile.block("key") is not None or profile.first("key") is not None:
            findings.append(
                Finding(
                    "warning",
                    "key-in-keychain-profile",
                    "the profile carries a <key>; a keychain profile leaves it out and uses "
                    "the identity imported from the .ovpn12",
                )
            )
        findings += [
            Finding(
                "error",
                "external-pki-meta",
                f"line {c.line}: '# {EXTERNAL_PKI_META}' makes OpenVPN Connect ask for a "
                "username and password",
                hint="remove the line",
                line=c.line,
            )
            for c in profile.comments()
            if EXTERNAL_PKI_META in c.raw
        ]
        return findings

    def next_step(self, file_to_send: Path) -> str:
        profile = file_to_send.with_suffix(".ovpn")
        password = file_to_send.with_name(password_file(file_to_send.stem))
        return (
            f"iPhone (keychain): send {file_to_send} and {profile}; the identity's password "
            f"({password} unless you chose one) by another channel, never with the files; "
            "the user opens the .ovpn12 in OpenVPN Connect first, then imports the profile and "
            "picks the certificate (INSTALL.html, docs/how-to/ios.md)"
        )
