"""Output targets: one per client, each with everything about that client, one interface."""

from __future__ import annotations

from toolkit.errors import UsageError
from toolkit.targets.base import Target, TargetContext, TargetPlan
from toolkit.targets.ikev2 import IKEv2Target
from toolkit.targets.ios import IOSKeychainTarget, IOSTarget
from toolkit.targets.mobileconfig import MobileconfigTarget
from toolkit.targets.openvpn import OpenVPNTarget
from toolkit.targets.tunnelblick import TunnelblickTarget

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        TunnelblickTarget(),
        IOSTarget(),
        IOSKeychainTarget(),
        OpenVPNTarget(),
        MobileconfigTarget(),
        IKEv2Target(),
    )
}
DEFAULT_TARGETS = ("tunnelblick", "ios")


def get_targets(names: list[str] | tuple[str, ...] | None) -> list[Target]:
    """Targets by name, in the order given, without duplicates."""
    chosen: list[Target] = []
    for name in names or DEFAULT_TARGETS:
        target = TARGETS.get(name.lower())
        if target is None:
            raise UsageError(
                f"unknown target {name!r}",
                hint=f"choose from: {', '.join(TARGETS)}",
            )
        if target not in chosen:
            chosen.append(target)
    return chosen


__all__ = ["DEFAULT_TARGETS", "TARGETS", "Target", "TargetContext", "TargetPlan", "get_targets"]
