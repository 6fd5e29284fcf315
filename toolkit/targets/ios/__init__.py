"""OpenVPN Connect on iOS (the OpenVPN 3 core): the target, its keychain variant and its option
tables (imported when first used, as in :mod:`toolkit.targets.tunnelblick`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.targets.ios.keychain import IOSKeychainTarget
    from toolkit.targets.ios.target import IOSTarget

_WHERE = {"IOSKeychainTarget": "keychain", "IOSTarget": "target"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = ["IOSKeychainTarget", "IOSTarget"]
