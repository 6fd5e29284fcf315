"""What the OpenVPN 3 core (OpenVPN Connect) does with each OpenVPN option (see
docs/reference/targets.md and shared/reference/openvpn-connect.md). Tables only."""

from __future__ import annotations

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
