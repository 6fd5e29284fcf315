"""What each client does with each OpenVPN option (see docs/reference and shared/reference).

Tables only: the targets decide what to do with a match.
"""

from __future__ import annotations

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

# OpenVPN 3 core (OpenVPN Connect): fatal at connect time.
IOS_NOT_IMPLEMENTED = frozenset(
    [
        "askpass",
        "capath",
        "cd",
        "chroot",
        "client-nat",
        "cryptoapicert",
        "daemon",
        "errors-to-stderr",
        "gremlin",
        "lladdr",
        "log",
        "log-append",
        "management",
        "memstats",
        "msg-channel",
        "ping-timer-rem",
        "single-session",
        "socks-proxy",
        "status",
        "status-version",
        "syslog",
        "tls-server",
        "verify-hash",
        "win-sys",
        "writepid",
        "x509-username-field",
    ]
)
IOS_SERVER_ONLY = frozenset(
    [
        "auth-gen-token",
        "auth-gen-token-secret",
        "auth-user-pass-optional",
        "auth-user-pass-verify",
        "bcast-buffers",
        "ccd-exclusive",
        "client-config-dir",
        "client-connect",
        "client-disconnect",
        "client-to-client",
        "connect-freq",
        "dh",
        "disable",
        "duplicate-cn",
        "hash-size",
        "ifconfig-ipv6-pool",
        "ifconfig-pool",
        "ifconfig-pool-persist",
        "ifconfig-push",
        "ifconfig-push-constraint",
        "iroute",
        "iroute-ipv6",
        "max-clients",
        "max-routes-per-client",
        "push",
        "push-remove",
        "push-reset",
        "server",
        "server-bridge",
        "server-ipv6",
        "stale-routes-check",
        "tls-crypt-v2-verify",
        "username-as-common-name",
        "verify-client-cert",
        "vlan-accept",
        "vlan-pvid",
        "vlan-tagging",
    ]
)
IOS_PUSH_ONLY = frozenset(
    [
        "auth-token",
        "auth-token-user",
        "echo",
        "parameter",
        "ping-exit",
        "key-derivation",
        "peer-id",
        "protocol-flags",
        "ifconfig",
        "ifconfig-ipv6",
        "topology",
        "route-gateway",
    ]
)
IOS_REMOVED = frozenset(
    [
        "mtu-dynamic",
        "no-replay",
        "no-name-remapping",
        "compat-names",
        "ncp-disable",
        "no-iv",
        "fragment",
        "genkey",
        "mktun",
        "rmtun",
        "test-crypto",
    ]
)
# Options that cannot be fixed by removal: the profile would not work without them.
IOS_UNFIXABLE = frozenset({"secret", "pkcs12"})

# Options that name a file instead of an inline block.
FILE_OPTIONS = frozenset(
    {
        "ca",
        "cert",
        "key",
        "tls-auth",
        "tls-crypt",
        "tls-crypt-v2",
        "extra-certs",
        "pkcs12",
        "crl-verify",
        "auth-user-pass",
        "http-proxy-user-pass",
        "dh",
    }
)


def ios_fatal_reason(name: str) -> str | None:
    """Why the OpenVPN 3 core refuses ``name`` (None when it does not)."""
    if name in IOS_NOT_IMPLEMENTED or name.startswith("management"):
        return "OpenVPN Connect 3.x fails at connect: 'UNKNOWN/UNSUPPORTED OPTIONS'"
    if name in IOS_SERVER_ONLY:
        return "server-only option; fatal in OpenVPN Connect"
    if name in IOS_PUSH_ONLY:
        return "pushed by the server only; fatal in an OpenVPN Connect profile"
    if name in IOS_REMOVED or name.startswith("show-"):
        return "removed from OpenVPN 3; fatal in OpenVPN Connect"
    return None


def tunnelblick_refusal_reason(name: str) -> str | None:
    """Why Tunnelblick refuses ``name`` at install (None when it does not)."""
    if name in TUNNELBLICK_REFUSED:
        return f"Tunnelblick refuses it at install ('The '{name}' OpenVPN option is not allowed')"
    if name in TUNNELBLICK_WINDOWS_ONLY:
        return "Windows-only option; Tunnelblick refuses it"
    if name in TUNNELBLICK_RELATIVE_PATHS:
        return "names a file the bundle does not carry; Tunnelblick would comment it out"
    return None
