"""Tunnelblick on macOS: the target, the option tables and the bundle checks of ``check``."""

from toolkit.targets.tunnelblick.bundle import Bundle, check_bundle, check_info_plist, read_bundle
from toolkit.targets.tunnelblick.target import TunnelblickTarget

__all__ = ["Bundle", "TunnelblickTarget", "check_bundle", "check_info_plist", "read_bundle"]
