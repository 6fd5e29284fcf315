"""Tunnelblick on macOS: a ``.tblk`` bundle (config.ovpn + Info.plist) and a zip to mail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from toolkit.errors import ProfileError
from toolkit.findings import Edit, Finding
from toolkit.output import PlannedFile
from toolkit.profile import Profile
from toolkit.targets.base import (
    Target,
    TargetContext,
    bundle_identifier,
    file_references,
    lint_directives,
    remove_directives,
    require_credentials,
)
from toolkit.targets.tunnelblick.archive import bundle_zip
from toolkit.targets.tunnelblick.options import (
    TUNNELBLICK_FORBIDDEN,
    TUNNELBLICK_UNSAFE,
    tunnelblick_refusal_reason,
)
from toolkit.templating import render

MAX_FILE_BYTES = 10 * 1024 * 1024


def _config_problems(data: bytes) -> list[str]:
    problems = []
    if len(data) > MAX_FILE_BYTES:
        problems.append(f"config is {len(data)} bytes, over Tunnelblick's 10 MiB limit")
    if b"\x00" in data:
        problems.append("config contains NUL bytes")
    if data.lstrip().startswith(b"{"):
        problems.append("config starts with '{' (Tunnelblick takes it for a .plist)")
    if b"\\" in data:  # rare: only then look at each line
        for number, line in enumerate(data.split(b"\n"), 1):
            if line.rstrip(b"\r").endswith(b"\\"):
                problems.append(f"line {number} ends in a backslash, which Tunnelblick refuses")
    return problems


def bundle_version(issued: dt.datetime) -> str:
    """CFBundleVersion from the certificate's not-before: a newer certificate is a newer version,
    the same inputs always give the same version (idempotent re-runs)."""
    return issued.astimezone(dt.UTC).strftime("%Y%m%d.%H%M%S")


class TunnelblickTarget(Target):
    name = "tunnelblick"
    title = "Tunnelblick (macOS)"
    platform = "Mac"
    # Tunnelblick shows a configuration under its bundle's name: "alice-mac"
    file_label = "mac"
    splits_adapt = True  # nothing of adapt depends on the user
    templates = ("tunnelblick/Info.plist.j2",)

    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        return self.adapt_in_two(profile, ctx)

    def adapt_package(self, profile: Profile) -> tuple[list[Edit], list[Finding]]:
        refs = file_references(profile)
        if refs:
            d = refs[0]
            raise ProfileError(
                f"{profile.source} line {d.line}: '{d.name}' names a file; a Tunnelblick "
                "bundle carries everything inline",
                hint=f"put the file's content in a <{d.name}> block instead",
            )
        warnings: list[Finding] = []
        edits = remove_directives(profile, tunnelblick_refusal_reason)
        for directive in list(profile.directives("disable-dco")):
            profile.remove(directive)
            edits.append(
                Edit(
                    directive.line,
                    "disable-dco",
                    "removed",
                    "macOS has no DCO, OpenVPN 2.5 in Tunnelblick rejects it, and it is not on "
                    "Tunnelblick's safe list",
                )
            )
            warnings.append(
                Finding(
                    "warning",
                    "disable-dco-removed",
                    f"line {directive.line}: active 'disable-dco' removed for Tunnelblick",
                    line=directive.line,
                )
            )
        for directive in profile.directives():
            if directive.name in TUNNELBLICK_UNSAFE:
                warnings.append(
                    Finding(
                        "warning",
                        "tunnelblick-unsafe",
                        f"line {directive.line}: '{directive.name}' is not on Tunnelblick's safe "
                        "list: installing shows 'might TAKE COMPLETE CONTROL' warnings",
                        hint="remove it from the package's profile if the users do not need it",
                        line=directive.line,
                    )
                )
        return edits, warnings

    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        bad = set(ctx.name) & TUNNELBLICK_FORBIDDEN
        if bad or ctx.name.startswith(".") or ".." in ctx.name:
            raise ProfileError(f"name {ctx.name!r} is not allowed in a Tunnelblick bundle")
        config = profile.to_bytes()
        problems = _config_problems(config)
        if problems:
            raise ProfileError(f"{profile.source}: {problems[0]}", hint="fix the package profile")
        plist = render(
            "tunnelblick/Info.plist.j2",
            bundle_identifier=bundle_identifier(ctx.gateway_id, ctx.name),
            bundle_version=bundle_version(
                require_credentials(ctx).certificate.not_valid_before_utc
            ),
        ).encode("utf-8")
        bundle = f"{self.file_stem(ctx)}.tblk"
        zipped = bundle_zip(
            [
                (f"{bundle}/", None),
                (f"{bundle}/Contents/", None),
                (f"{bundle}/Contents/Info.plist", plist),
                (f"{bundle}/Contents/Resources/", None),
                (f"{bundle}/Contents/Resources/config.ovpn", config),
            ]
        )
        folder = self.name
        return [  # the zip first: it is the one file to send
            PlannedFile(f"{folder}/{bundle}.zip", zipped),
            PlannedFile(f"{folder}/{bundle}/Contents/Resources/config.ovpn", config),
            PlannedFile(f"{folder}/{bundle}/Contents/Info.plist", plist),
        ]

    def next_step(self, file_to_send: Path) -> str:
        return (
            f"Mac: send {file_to_send}; the user unzips it and double-clicks the .tblk "
            "(docs/how-to/tunnelblick.md)"
        )

    def lint(self, profile: Profile) -> list[Finding]:
        findings = lint_directives(profile, tunnelblick_refusal_reason)
        findings += [
            Finding(
                "error",
                "file-reference",
                f"line {d.line}: '{d.name}' names a file; use an inline <{d.name}> block",
                line=d.line,
            )
            for d in file_references(profile)
        ]
        findings += [
            Finding(
                "warning",
                "disable-dco",
                f"line {d.line}: 'disable-dco' is not on "
                "Tunnelblick's safe list and OpenVPN 2.5 rejects it",
                line=d.line,
            )
            for d in profile.directives("disable-dco")
        ]
        findings += [
            Finding("error", "tunnelblick-config", problem)
            for problem in _config_problems(profile.to_bytes())
        ]
        return findings
