"""Tunnelblick on macOS: the target, the option tables and the bundle checks of ``check``.

The names below are imported when first used (PEP 562): the option tables (``options``) are
read by the name check of every command, which must not load the target and jinja2 with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.targets.tunnelblick.bundle import (
        Bundle,
        check_bundle,
        check_info_plist,
        read_bundle,
    )
    from toolkit.targets.tunnelblick.target import TunnelblickTarget

_WHERE = {
    "Bundle": "bundle",
    "check_bundle": "bundle",
    "check_info_plist": "bundle",
    "read_bundle": "bundle",
    "TunnelblickTarget": "target",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = ["Bundle", "TunnelblickTarget", "check_bundle", "check_info_plist", "read_bundle"]
