"""Plain OpenVPN 2.x (Linux, Windows): Azure's profile with credentials, nothing else changed."""

from __future__ import annotations

from pathlib import Path

from toolkit.findings import Edit, Finding
from toolkit.output import PlannedFile
from toolkit.profile import Comment, Directive, Profile
from toolkit.targets.base import Target, TargetContext


class OpenVPNTarget(Target):
    name = "openvpn"
    title = "OpenVPN 2.x (Linux, Windows)"
    platform = "Linux/Windows"
    file_label = "linux-windows"

    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        if not ctx.disable_dco or profile.first("disable-dco") is not None:
            return [], []
        reason = "requested with --disable-dco (OpenVPN 2.6 on Windows, per Microsoft)"
        commented = next(
            (c for c in profile.comments() if c.raw.strip().lstrip("#; ") == "disable-dco"),
            None,
        )
        if isinstance(commented, Comment):
            profile.replace(commented, Directive(commented.line, "disable-dco", [], "disable-dco"))
            return [Edit(commented.line, "disable-dco", "changed", "uncommented: " + reason)], []
        anchor = profile.first("client")
        new = Directive.new("disable-dco")
        if anchor is not None:
            profile.insert_after(anchor, new)
        else:
            profile.items.insert(0, new)
        return [Edit(0, "disable-dco", "added", reason)], []

    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        return [PlannedFile(f"{self.name}/{self.file_stem(ctx)}.ovpn", profile.to_bytes())]

    def lint(self, profile: Profile) -> list[Finding]:
        return []

    def next_step(self, file_to_send: Path) -> str:
        return (
            f"Linux/Windows: send {file_to_send}; the user imports it in OpenVPN GUI or "
            "NetworkManager, or runs openvpn --config (docs/how-to/openvpn.md)"
        )
