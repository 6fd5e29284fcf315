"""Output targets: one per client, each with everything about that client, one interface.

Light to import: the target names are plain data here, and the targets themselves (their
modules load jinja2, plistlib, cryptography) are built when ``TARGETS`` or ``get_targets`` is
first used (PEP 562), so the user-list check and an unchanged batch re-run never load them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from toolkit.errors import UsageError

if TYPE_CHECKING:
    from toolkit.targets.base import Target, TargetContext, TargetPlan

    TARGETS: dict[str, Target]

# name -> (module, class), in the order the help and the docs list them
_CLASSES = {
    "tunnelblick": ("toolkit.targets.tunnelblick.target", "TunnelblickTarget"),
    "ios": ("toolkit.targets.ios.target", "IOSTarget"),
    "ios-keychain": ("toolkit.targets.ios.keychain", "IOSKeychainTarget"),
    "openvpn": ("toolkit.targets.openvpn", "OpenVPNTarget"),
    "mobileconfig": ("toolkit.targets.mobileconfig", "MobileconfigTarget"),
    "ikev2": ("toolkit.targets.ikev2", "IKEv2Target"),
}
TARGET_NAMES: tuple[str, ...] = tuple(_CLASSES)
DEFAULT_TARGETS = ("tunnelblick", "ios")


def _registry() -> dict[str, Target]:
    targets = globals().get("TARGETS")
    if targets is None:
        targets = {}
        for name, (module, cls) in _CLASSES.items():
            target = getattr(importlib.import_module(module), cls)()
            assert target.name == name  # noqa: S101 - the table above names each one right
            targets[name] = target
        globals()["TARGETS"] = targets
    return targets


def __getattr__(name: str) -> Any:
    if name == "TARGETS":
        return _registry()
    if name in ("Target", "TargetContext", "TargetPlan"):
        value = getattr(importlib.import_module("toolkit.targets.base"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_targets(names: list[str] | tuple[str, ...] | None) -> list[Target]:
    """Targets by name, in the order given, without duplicates."""
    registry = _registry()
    chosen: list[Target] = []
    for name in names or DEFAULT_TARGETS:
        target = registry.get(name.lower())
        if target is None:
            raise UsageError(
                f"unknown target {name!r}",
                hint=f"choose from: {', '.join(TARGET_NAMES)}",
            )
        if target not in chosen:
            chosen.append(target)
    return chosen


__all__ = [
    "DEFAULT_TARGETS",
    "TARGETS",
    "TARGET_NAMES",
    "Target",
    "TargetContext",
    "TargetPlan",
    "get_targets",
]
