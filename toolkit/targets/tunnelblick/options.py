"""What Tunnelblick refuses or warns about: OpenVPN options, and characters in bundle names.

Tables only (no imports), so the name check can use them too; the target decides what to do.
"""

from __future__ import annotations

# Tunnelblick's forbidden characters in a .tblk path component (so also in a user's name).
TUNNELBLICK_FORBIDDEN = frozenset("\\!#&;:~|?'\"<>^[]{}$%*/")

# Tunnelblick refuses these at install time.
TUNNELBLICK_REFUSED = frozenset({"log", "log-append", "syslog", "config"})
# Windows-only options Tunnelblick refuses.
TUNNELBLICK_WINDOWS_ONLY = frozenset(
    {
        "allow-nonadmin",
        "cryptoapicert",
        "dhcp-release",
        "dhcp-renew",
        "pause-exit",
        "register-dns",
        "service",
        "show-adapters",
        "show-net",
        "show-net-up",
        "show-valid-subnets",
        "tap-sleep",
        "win-sys",
        "windows-driver",
        "block-outside-dns",
        "ip-win32",
        "route-method",
    }
)
# Tunnelblick comments these out when they name relative paths; a bundle carries no such files.
TUNNELBLICK_RELATIVE_PATHS = frozenset(
    {"status", "writepid", "replay-persist", "ifconfig-pool-persist", "tls-export-cert", "tmp-dir"}
)
# Not on Tunnelblick's safe list: they raise "might TAKE COMPLETE CONTROL" dialogs.
TUNNELBLICK_UNSAFE = frozenset(
    {
        "providers",
        "dns",
        "compat-mode",
        "tun-mtu-max",
        "session-timeout",
        "up",
        "down",
        "route-up",
        "route-pre-down",
        "ipchange",
        "tls-verify",
        "learn-address",
        "plugin",
        "auth-user-pass-verify",
        "client-connect",
        "client-disconnect",
    }
)


def tunnelblick_refusal_reason(name: str) -> str | None:
    """Why Tunnelblick refuses ``name`` at install (None when it does not)."""
    if name in TUNNELBLICK_REFUSED:
        return f"Tunnelblick refuses it at install ('The '{name}' OpenVPN option is not allowed')"
    if name in TUNNELBLICK_WINDOWS_ONLY:
        return "Windows-only option; Tunnelblick refuses it"
    if name in TUNNELBLICK_RELATIVE_PATHS:
        return "names a file the bundle does not carry; Tunnelblick would comment it out"
    return None
