"""An Azure-like P2S IKEv2 endpoint (real strongSwan) to prove that an Apple profile connects.

How it works
------------
Two network namespaces joined by a veth pair on 198.18.0.0/30 (see
``/work/shared/reference/test-ikev2-gateway.md``):

* the *responder* namespace runs one ``charon-systemd`` set up like Azure's P2S IKEv2 endpoint:
  identity = a ``VpnServer``-style DNS name, server certificate with that DNS subjectAltName and
  the serverAuth + ikeIntermediate EKUs issued by a stand-in public root, always sent; clients
  authenticate with a certificate that must chain to the given P2S root(s) and must confirm the
  identity the client claims (strongSwan's default: full subject DN or a subjectAltName); virtual
  IPs from 198.19.202.0/24; Azure's default P2S IKE/ESP proposals (:data:`AZURE_IKE_PROPOSALS`,
  :data:`AZURE_ESP_PROPOSALS`). Its inner address 198.19.202.1 is what a client pings.
* the *initiator* namespace runs a second ``charon-systemd`` configured **only** from an Apple
  configuration profile: :func:`apple_ikev2_settings` reads the ``com.apple.vpn.managed`` IKEv2
  payload and the ``com.apple.security.pkcs12`` payload it names, opens the PKCS#12 with the
  password, and :func:`initiator_swanctl_conf` turns RemoteAddress, RemoteIdentifier,
  LocalIdentifier and the SA parameter dictionaries (Apple's defaults when absent) into a
  ``swanctl.conf``. Identities are typed the way Apple sends them (``@`` -> e-mail, IP address ->
  address, anything else -> DNS name). Like an Apple device it trusts the stand-in public root
  (its "system trust store"), sends no certificate request unless
  ``ServerCertificateIssuerCommonName`` is set, and asks for all traffic (0.0.0.0/0).
  ``/etc/netns/<ns>/hosts`` maps the server name to the responder, so RemoteAddress is used as
  written.

Each charon has its own ``STRONGSWAN_CONF`` (own log file, own vici socket) and ``SWANCTL_DIR``.
This kernel has no ESP, so both load ``kernel-libipsec`` (ESP in user space on a TUN device),
which only does UDP-encapsulated ESP: both ends force NAT-T (``encap = yes``), so after
IKE_SA_INIT on port 500 everything runs on port 4500.
Retransmits are short, so a failing connect ends within seconds.

Every charon is stopped by its pid and the namespaces, ``/etc/netns/<ns>`` and the harness's
files (keys included) are removed on exit, also when the test body fails. Only addresses inside
these namespaces are ever used.

Usage::

    result = connect(mobileconfig_bytes, "pkcs12 password", [p2s_root_pem], workdir=tmp_path,
                     server_name=remote_address)
    assert result.child_sa_up and result.ping_ok, result.describe()

or, for several clients against one endpoint::

    with azure_like_ikev2_endpoint(tmp_path, [p2s_root_pem]) as endpoint:
        result = endpoint.connect(mobileconfig_bytes, "pkcs12 password")
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import ipaddress
import os
import plistlib
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .gateway import namespace_probe_failure

NETNS_CONFIG_ROOT = Path("/etc/netns")
CHARON = "charon-systemd"
SWANCTL = "swanctl"
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")

LINK = ipaddress.IPv4Network("198.18.0.0/30")
RESPONDER_LINK = LINK.network_address + 1
INITIATOR_LINK = LINK.network_address + 2
POOL = ipaddress.IPv4Network("198.19.202.0/24")
RESPONDER_INNER = POOL.network_address + 1
#: Leases start at .2: .1 is the responder's inner address.
POOL_RANGE = f"{POOL.network_address + 2}-{POOL.broadcast_address - 1}"

IKE_INTERMEDIATE = x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2")

# Azure's default P2S policy ("About Point-to-Site VPN": "What IKE/IPsec policies are configured
# on VPN gateways for P2S?"), one strongSwan proposal per cipher/integrity/PRF combination.
_AZURE_GROUPS = "modp2048s256-modp2048-ecp384-ecp256"  # DH 24, 14, ECP384, ECP256
AZURE_IKE_PROPOSALS = (
    f"aes256gcm16-prfsha384-{_AZURE_GROUPS}",
    f"aes256gcm16-prfsha256-{_AZURE_GROUPS}",
    f"aes256-sha384-prfsha384-{_AZURE_GROUPS}",
    f"aes256-sha256-prfsha256-{_AZURE_GROUPS}",
    "aes256-sha256-prfsha256-modp1024",
)
AZURE_ESP_PROPOSALS = (
    "aes256gcm16",
    f"aes256gcm16-{_AZURE_GROUPS}",
    "aes256-sha256",
    f"aes256-sha256-{_AZURE_GROUPS}",
    "aes256-sha1",
)

# The plugins both charons load (kernel-libipsec before kernel-netlink: it provides the IPsec
# backend, kernel-netlink the routes and addresses). No resolve/updown: nothing touches the host.
_PLUGINS = (
    "random nonce x509 constraints pubkey pkcs1 pkcs7 pkcs8 pkcs12 pem openssl gmp curve25519 "
    "chapoly aes sha1 sha2 hmac gcm kdf kernel-libipsec kernel-netlink socket-default vici"
)
# Plugin file -> the Debian package that ships it (for the skip reason).
_PLUGIN_PACKAGES = {
    "kernel-libipsec": "libcharon-extra-plugins",
    "openssl": "libstrongswan-standard-plugins",
    "gcm": "libstrongswan-standard-plugins",
    "curve25519": "libstrongswan-extra-plugins",
    "vici": "strongswan-libcharon",
    "pkcs12": "libstrongswan",
}

# --- Apple names -> strongSwan proposal keywords ----------------------------------------------

#: ``EncryptionAlgorithm`` -> (strongSwan keyword, is AEAD).
APPLE_ENCRYPTION: Mapping[str, tuple[str, bool]] = {
    "DES": ("des", False),
    "3DES": ("3des", False),
    "AES-128": ("aes128", False),
    "AES-256": ("aes256", False),
    "AES-128-GCM": ("aes128gcm16", True),
    "AES-256-GCM": ("aes256gcm16", True),
    "ChaCha20Poly1305": ("chacha20poly1305", True),
}
#: ``IntegrityAlgorithm`` -> (integrity keyword, PRF keyword). With an AEAD cipher Apple uses
#: the integrity algorithm as the IKE PRF only.
APPLE_INTEGRITY: Mapping[str, tuple[str, str]] = {
    "SHA1-96": ("sha1", "prfsha1"),
    "SHA1-160": ("sha1_160", "prfsha1"),
    "SHA2-256": ("sha256", "prfsha256"),
    "SHA2-384": ("sha384", "prfsha384"),
    "SHA2-512": ("sha512", "prfsha512"),
}
#: ``DiffieHellmanGroup`` (IANA number) -> strongSwan keyword.
APPLE_DH_GROUPS: Mapping[int, str] = {
    1: "modp768",
    2: "modp1024",
    5: "modp1536",
    14: "modp2048",
    15: "modp3072",
    16: "modp4096",
    17: "modp6144",
    18: "modp8192",
    19: "ecp256",
    20: "ecp384",
    21: "ecp521",
    22: "modp1024s160",
    23: "modp2048s224",
    24: "modp2048s256",
    31: "curve25519",
    32: "curve448",
}
VPN_PAYLOAD = "com.apple.vpn.managed"
PKCS12_PAYLOAD = "com.apple.security.pkcs12"


class ProfileError(ValueError):
    """The profile cannot be used by this harness (what is wrong and where)."""


@dataclass(frozen=True)
class SAParameters:
    """One of Apple's ``SecurityAssociationParameters`` dictionaries, defaults filled in."""

    encryption: str = "AES-256"
    integrity: str = "SHA2-256"
    dh_group: int = 14
    lifetime_minutes: int = 1440

    @classmethod
    def from_apple(cls, values: Mapping[str, Any] | None, where: str) -> SAParameters:
        """Read an Apple dictionary; absent keys take Apple's defaults."""
        values = values or {}
        if not isinstance(values, Mapping):
            raise ProfileError(f"{where} must be a dictionary")
        known = {"EncryptionAlgorithm", "IntegrityAlgorithm", "DiffieHellmanGroup"}
        known.add("LifeTimeInMinutes")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ProfileError(f"{where}: unknown keys {unknown}")
        defaults = cls()
        params = cls(
            encryption=values.get("EncryptionAlgorithm", defaults.encryption),
            integrity=values.get("IntegrityAlgorithm", defaults.integrity),
            dh_group=values.get("DiffieHellmanGroup", defaults.dh_group),
            lifetime_minutes=values.get("LifeTimeInMinutes", defaults.lifetime_minutes),
        )
        if params.encryption not in APPLE_ENCRYPTION:
            raise ProfileError(f"{where}.EncryptionAlgorithm {params.encryption!r} is unknown")
        if params.integrity not in APPLE_INTEGRITY:
            raise ProfileError(f"{where}.IntegrityAlgorithm {params.integrity!r} is unknown")
        if type(params.dh_group) is not int or params.dh_group not in APPLE_DH_GROUPS:
            raise ProfileError(f"{where}.DiffieHellmanGroup {params.dh_group!r} is unknown")
        if type(params.lifetime_minutes) is not int or not 10 <= params.lifetime_minutes <= 1440:
            raise ProfileError(f"{where}.LifeTimeInMinutes must be an integer in 10..1440")
        return params

    @property
    def is_aead(self) -> bool:
        return APPLE_ENCRYPTION[self.encryption][1]

    def ike_proposal(self) -> str:
        """The strongSwan IKE proposal (e.g. ``aes256-sha256-prfsha256-modp2048``)."""
        cipher, aead = APPLE_ENCRYPTION[self.encryption]
        integrity, prf = APPLE_INTEGRITY[self.integrity]
        parts = [cipher] if aead else [cipher, integrity]
        return "-".join([*parts, prf, APPLE_DH_GROUPS[self.dh_group]])

    def esp_proposal(self, *, pfs: bool) -> str:
        """The strongSwan ESP proposal; the DH group only with PFS (``EnablePFS``)."""
        cipher, aead = APPLE_ENCRYPTION[self.encryption]
        parts = [cipher] if aead else [cipher, APPLE_INTEGRITY[self.integrity][0]]
        if pfs:
            parts.append(APPLE_DH_GROUPS[self.dh_group])
        return "-".join(parts)


@dataclass(frozen=True)
class AppleIdentity:
    """The identity from the profile's PKCS#12 payload (key never in repr)."""

    cert: x509.Certificate
    key: PrivateKeyTypes = field(repr=False)
    additional_certs: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class AppleIKEv2Settings:
    """What an Apple device takes from an IKEv2 profile to connect."""

    remote_address: str
    remote_identifier: str
    local_identifier: str
    identity: AppleIdentity
    ike: SAParameters
    child: SAParameters
    enable_pfs: bool = False
    disable_mobike: bool = False
    send_certreq: bool = False


def apple_identity_string(value: str) -> str:
    """The strongSwan identity for an Apple Local/RemoteIdentifier, typed as Apple sends it.

    ``@`` anywhere -> e-mail (RFC 822) identity; an IP address -> address identity; anything
    else (also ``CN=...``) -> DNS name (FQDN) identity.
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is not None:
        return f"ipv{address.version}:{address}"
    return f"email:{value}" if "@" in value else f"fqdn:{value}"


def load_profile_plist(
    data: bytes, *, unwrap: Callable[[bytes], bytes] | None = None
) -> dict[str, Any]:
    """Parse a ``.mobileconfig``; ``unwrap`` turns a signed (CMS) profile into its plist first."""
    raw = unwrap(data) if unwrap is not None else data
    try:
        parsed = plistlib.loads(raw)
    except plistlib.InvalidFileException as exc:
        hint = "" if unwrap is not None else " (a signed profile? pass unwrap=)"
        raise ProfileError(f"the profile is not a property list{hint}") from exc
    if not isinstance(parsed, dict):
        raise ProfileError("the profile's top level is not a dictionary")
    return parsed


def apple_ikev2_settings(
    profile: Mapping[str, Any], pkcs12_password: str | bytes | None
) -> AppleIKEv2Settings:
    """Read the IKEv2 VPN payload and its PKCS#12 payload from a parsed profile.

    ``pkcs12_password`` opens the PKCS#12 (None: use the payload's own ``Password`` key, as a
    device does when the profile carries it).
    """
    if profile.get("PayloadType") != "Configuration":
        raise ProfileError("top-level PayloadType must be 'Configuration'")
    payloads = profile.get("PayloadContent")
    if not isinstance(payloads, list) or not all(isinstance(p, dict) for p in payloads):
        raise ProfileError("PayloadContent must be a list of dictionaries")
    vpns = [
        p for p in payloads if p.get("PayloadType") == VPN_PAYLOAD and p.get("VPNType") == "IKEv2"
    ]
    if len(vpns) != 1:
        raise ProfileError(
            f"expected one {VPN_PAYLOAD} payload with VPNType IKEv2, found {len(vpns)}"
        )
    (vpn,) = vpns
    ikev2 = vpn.get("IKEv2")
    if not isinstance(ikev2, dict):
        raise ProfileError(f"{VPN_PAYLOAD}: no IKEv2 dictionary")

    def text(key: str) -> str:
        value = ikev2.get(key)
        if not isinstance(value, str) or not value:
            raise ProfileError(f"IKEv2.{key} must be a non-empty string")
        if any(c in value for c in '"\\\n\r#{}') or value != value.strip():
            raise ProfileError(f"IKEv2.{key} holds characters this harness cannot quote")
        return value

    method = ikev2.get("AuthenticationMethod", "SharedSecret")
    if method != "Certificate":
        raise ProfileError(
            f"IKEv2.AuthenticationMethod is {method!r}; only Certificate is emulated"
        )
    if ikev2.get("ExtendedAuthEnabled", 0) not in (0, False):
        raise ProfileError("IKEv2.ExtendedAuthEnabled must be 0 (EAP is not emulated)")
    cert_uuid = text("PayloadCertificateUUID")
    matches = [
        p
        for p in payloads
        if p.get("PayloadUUID") == cert_uuid and p.get("PayloadType") == PKCS12_PAYLOAD
    ]
    if len(matches) != 1:
        raise ProfileError(
            f"IKEv2.PayloadCertificateUUID {cert_uuid} names {len(matches)} "
            f"{PKCS12_PAYLOAD} payloads"
        )
    identity = _open_pkcs12(matches[0], pkcs12_password)
    ike = SAParameters.from_apple(
        ikev2.get("IKESecurityAssociationParameters"), "IKESecurityAssociationParameters"
    )
    child_values = ikev2.get("ChildSecurityAssociationParameters")
    # Apple: the IKE parameters apply to the Child SA unless its own dictionary is given.
    child = (
        ike
        if child_values is None
        else SAParameters.from_apple(child_values, "ChildSecurityAssociationParameters")
    )
    return AppleIKEv2Settings(
        remote_address=text("RemoteAddress"),
        remote_identifier=text("RemoteIdentifier"),
        local_identifier=text("LocalIdentifier"),
        identity=identity,
        ike=ike,
        child=child,
        enable_pfs=ikev2.get("EnablePFS", 0) in (1, True),
        disable_mobike=ikev2.get("DisableMOBIKE", 0) in (1, True),
        send_certreq=bool(ikev2.get("ServerCertificateIssuerCommonName")),
    )


def _open_pkcs12(payload: Mapping[str, Any], password: str | bytes | None) -> AppleIdentity:
    data = payload.get("PayloadContent")
    if not isinstance(data, bytes):
        raise ProfileError(f"{PKCS12_PAYLOAD}.PayloadContent must be data")
    if password is None:
        password = payload.get("Password")
        if not isinstance(password, str):
            raise ProfileError(f"no PKCS#12 password given and {PKCS12_PAYLOAD} has no Password")
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        loaded = pkcs12.load_pkcs12(data, secret)
    except ValueError as exc:
        raise ProfileError("the PKCS#12 payload cannot be opened (wrong password?)") from exc
    if loaded.key is None or loaded.cert is None:
        raise ProfileError("the PKCS#12 payload holds no identity (certificate and key)")
    return AppleIdentity(
        cert=loaded.cert.certificate,
        key=loaded.key,
        additional_certs=tuple(c.certificate for c in loaded.additional_certs),
    )


def initiator_swanctl_conf(settings: AppleIKEv2Settings, *, cert_file: str) -> str:
    """The initiator's ``swanctl.conf``: only values from the profile plus Apple's behaviour."""
    return f"""\
connections {{
    apple {{
        version = 2
        remote_addrs = {settings.remote_address}
        vips = 0.0.0.0
        encap = yes
        mobike = {"no" if settings.disable_mobike else "yes"}
        send_certreq = {"yes" if settings.send_certreq else "no"}
        proposals = {settings.ike.ike_proposal()}
        rekey_time = {settings.ike.lifetime_minutes}m
        local {{
            auth = pubkey
            certs = {cert_file}
            id = "{apple_identity_string(settings.local_identifier)}"
        }}
        remote {{
            auth = pubkey
            id = "{apple_identity_string(settings.remote_identifier)}"
        }}
        children {{
            apple {{
                remote_ts = 0.0.0.0/0
                esp_proposals = {settings.child.esp_proposal(pfs=settings.enable_pfs)}
                rekey_time = {settings.child.lifetime_minutes}m
            }}
        }}
    }}
}}
"""


def responder_swanctl_conf(server_name: str, root_files: Sequence[str]) -> str:
    """The Azure-like responder's ``swanctl.conf``."""
    return f"""\
connections {{
    p2s {{
        version = 2
        local_addrs = {RESPONDER_LINK}
        pools = p2s
        encap = yes
        send_cert = always
        proposals = {", ".join(AZURE_IKE_PROPOSALS)}
        local {{
            auth = pubkey
            certs = server.pem
            id = "fqdn:{server_name}"
        }}
        remote {{
            auth = pubkey
            cacerts = {", ".join(root_files)}
        }}
        children {{
            p2s {{
                local_ts = {RESPONDER_INNER}/32
                esp_proposals = {", ".join(AZURE_ESP_PROPOSALS)}
            }}
        }}
    }}
}}
pools {{
    p2s {{
        addrs = {POOL_RANGE}
    }}
}}
"""


def _strongswan_conf(log: Path, socket: Path) -> str:
    # charon-systemd reads its own section; the journal logger is off, a file logger on.
    return f"""\
charon-systemd {{
    load = {_PLUGINS}
    install_routes = yes
    retransmit_timeout = 1.0
    retransmit_base = 1.4
    retransmit_tries = 2
    journal {{
        default = -1
    }}
    filelog {{
        harness {{
            path = {log}
            time_format = %T
            default = 1
            ike = 2
            cfg = 2
            flush_line = yes
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{socket}
        }}
    }}
}}
swanctl {{
    socket = unix://{socket}
}}
"""


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A certificate and its private key (generated at run time; key never in repr)."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _builder(
    subject: str, issuer: x509.Name, public_key: rsa.RSAPublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def create_root(common_name: str) -> Credential:
    """A self-signed RSA-2048 root (a stand-in public root or a P2S root)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(common_name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Credential(cert, key)


def _issue(
    issuer: Credential,
    common_name: str,
    sans: Sequence[x509.GeneralName],
    usages: Sequence[x509.ObjectIdentifier],
) -> Credential:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (
        _builder(common_name, issuer.cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return Credential(builder.sign(issuer.key, hashes.SHA256()), key)


def issue_server_certificate(issuer: Credential, server_name: str) -> Credential:
    """The gateway's certificate: DNS SAN = ``server_name``, serverAuth + ikeIntermediate.

    The CN is ``server_name`` when it fits (64 characters), else the wildcard of its parent
    domain (``*.vpn.azure.com``): a ``VpnServer`` name is longer than a CN may be.
    """
    common_name = server_name if len(server_name) <= 64 else "*." + server_name.split(".", 1)[1]
    return _issue(
        issuer,
        common_name,
        [x509.DNSName(server_name)],
        [ExtendedKeyUsageOID.SERVER_AUTH, IKE_INTERMEDIATE],
    )


def issue_client_certificate(
    issuer: Credential, name: str, *, dns_san: bool = True, email: str | None = None
) -> Credential:
    """A P2S client certificate: CN = ``name``, DNS SAN = ``name`` (optional), an optional
    e-mail SAN, clientAuth EKU, RSA-2048/SHA-256 (like ``New-SelfSignedCertificate -DnsName``)."""
    sans: list[x509.GeneralName] = [x509.DNSName(name)] if dns_san else []
    if email is not None:
        sans.append(x509.RFC822Name(email))
    return _issue(issuer, name, sans, [ExtendedKeyUsageOID.CLIENT_AUTH])


def azure_like_server_name() -> str:
    """A ``VpnServer``-style name: ``azuregateway-<guid>-<12 hex>.vpn.azure.com``."""
    guid = str(uuid.uuid4())
    return f"azuregateway-{guid}-{secrets.token_hex(6)}.vpn.azure.com"


# --- availability -------------------------------------------------------------------------------


def _run(
    argv: Sequence[str], *, timeout: float = 15, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
        env=None if env is None else dict(env),
    )


def _find_program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


@functools.cache
def ikev2_unavailable_reason() -> str | None:
    """Why the strongSwan tests cannot run here, or None when they can (probed once)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces, tun devices)"
    for program, package in (
        (CHARON, "charon-systemd"),
        (SWANCTL, "strongswan-swanctl"),
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
    ):
        if _find_program(program) is None:
            return f"'{program}' is not installed (Debian package {package})"
    for plugin, package in _PLUGIN_PACKAGES.items():
        if not (PLUGIN_DIR / f"libstrongswan-{plugin}.so").exists():
            return f"strongSwan plugin '{plugin}' is missing (Debian package {package})"
    return namespace_probe_failure()


def require_ikev2() -> None:
    """Skip the calling test (with the reason) when strongSwan in namespaces cannot run."""
    reason = ikev2_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


#: Marker form of :func:`require_ikev2` (probed when the test module is imported).
requires_ikev2 = pytest.mark.skipif(
    ikev2_unavailable_reason() is not None,
    reason=f"strongSwan IKEv2 tests unavailable: {ikev2_unavailable_reason()}",
)


# --- processes ----------------------------------------------------------------------------------


def process_running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def namespace_exists(name: str) -> bool:
    """Whether ``ip netns list`` shows ``name``."""
    listed = _run(["ip", "netns", "list"])
    return any(line.split()[0] == name for line in listed.stdout.splitlines() if line.strip())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _check(argv: Sequence[str]) -> None:
    done = _run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


# Every credential folder swanctl --load-all opens (empty ones too: no "failed" noise).
_SWANCTL_SUBDIRS = (
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
)  # fmt: skip


@dataclass
class _Charon:
    """One charon-systemd in a namespace with its own strongswan.conf and swanctl directory."""

    namespace: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "charon.log"

    @property
    def socket(self) -> Path:
        # a unix socket path holds at most 107 bytes: pytest's tmp paths (longer still under
        # xdist) do not fit, so the socket lives in /tmp under the namespace's unique name
        return Path(tempfile.gettempdir()) / f"{self.namespace}.vici"

    @property
    def swanctl_dir(self) -> Path:
        return self.directory / "swanctl"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def log(self) -> str:
        return _read_text(self.log_path)

    def prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True)
        for sub in _SWANCTL_SUBDIRS:
            (self.swanctl_dir / sub).mkdir(mode=0o700, parents=True)
        (self.directory / "strongswan.conf").write_text(
            _strongswan_conf(self.log_path, self.socket), encoding="ascii"
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env["STRONGSWAN_CONF"] = str(self.directory / "strongswan.conf")
        env["SWANCTL_DIR"] = str(self.swanctl_dir)
        return env

    def start(self, timeout: float) -> None:
        charon = _find_program(CHARON)
        assert charon is not None
        with (self.directory / "charon.out").open("wb") as out:
            # `ip netns exec` execs the program: the Popen pid is charon's own pid.
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, charon],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"charon in {self.namespace} exited ({self.process.returncode})\n"
                    f"{_read_text(self.directory / 'charon.out')}{self.log()}"
                )
            if self.socket.exists() and self.swanctl("--stats").returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"charon in {self.namespace} not ready after {timeout:g}s\n{self.log()}")

    def swanctl(self, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        swanctl = _find_program(SWANCTL)
        assert swanctl is not None
        return _run(
            [swanctl, *args, "--uri", f"unix://{self.socket}"], timeout=timeout, env=self._env()
        )

    def load_all(self) -> None:
        loaded = self.swanctl("--load-all", "--noprompt")
        if loaded.returncode != 0:
            raise RuntimeError(
                f"swanctl --load-all failed in {self.namespace}:\n{loaded.stdout}{loaded.stderr}"
            )

    def stop(self, grace: float = 5.0) -> None:
        if self.process is None:
            return
        self._stop_process(grace)
        with contextlib.suppress(OSError):
            self.socket.unlink()

    def _stop_process(self, grace: float) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace)


# --- results and the endpoint -------------------------------------------------------------------


@dataclass(frozen=True)
class IKEv2ConnectResult:
    """What one initiator run achieved.

    ``failure`` says why ``child_sa_up`` (or ``ping_ok``) is False. ``initiator_log`` and
    ``responder_log`` are the two charons' logs for this run; ``swanctl_output`` is what
    ``swanctl --initiate`` printed; ``initiator_config`` is the generated ``swanctl.conf``
    (file names only, no key material); ``sas_after_ping`` is ``swanctl --list-sas`` after the
    ping (its CHILD_SA packet counters show the ping crossed the tunnel).
    """

    child_sa_up: bool
    ping_ok: bool
    failure: str | None
    virtual_ip: str | None
    initiator_log: str
    responder_log: str
    swanctl_output: str
    initiator_config: str
    sas_after_ping: str
    seconds: float

    @property
    def connected(self) -> bool:
        return self.child_sa_up and self.ping_ok

    def child_sa_packets(self) -> tuple[int, int]:
        """(packets in, packets out) of the CHILD_SA after the ping; (0, 0) when unknown."""
        found = _PACKETS.findall(self.sas_after_ping)
        return (int(found[0]), int(found[1])) if len(found) >= 2 else (0, 0)

    def describe(self) -> str:
        """A readable dump for assertion messages."""
        return (
            f"child_sa_up={self.child_sa_up} ping_ok={self.ping_ok} failure={self.failure!r} "
            f"virtual_ip={self.virtual_ip} after {self.seconds:.1f}s\n"
            f"--- initiator swanctl.conf ---\n{self.initiator_config}"
            f"--- swanctl --initiate ---\n{self.swanctl_output}"
            f"\n--- initiator log ---\n{self.initiator_log}"
            f"\n--- responder log ---\n{self.responder_log}"
        )


_PACKETS = re.compile(r"(?:in|out)\s+\S+,\s+\d+ bytes,\s+(\d+) packets")
_VIRTUAL_IP = re.compile(r"local\s+'[^']*'\s+@\s+\S+\s+\[(\d+\.\d+\.\d+\.\d+)\]")


@dataclass
class IKEv2Endpoint:
    """A running Azure-like responder plus an (empty) initiator namespace."""

    workdir: Path
    server_name: str
    public_root: Credential
    responder_ns: str
    initiator_ns: str
    responder: _Charon
    initiator_pids: list[int] = field(default_factory=list)
    _runs: int = field(default=0, repr=False)

    @property
    def responder_address(self) -> str:
        return str(RESPONDER_LINK)

    @property
    def responder_inner_address(self) -> str:
        """The responder's address inside the tunnel (pinged after a connect)."""
        return str(RESPONDER_INNER)

    def connect(
        self,
        mobileconfig: bytes,
        pkcs12_password: str | bytes | None,
        *,
        unwrap: Callable[[bytes], bytes] | None = None,
        timeout: float = 10,
    ) -> IKEv2ConnectResult:
        """Configure an initiator from the profile alone, bring the CHILD_SA up, ping, stop.

        Raises :class:`ProfileError` when the profile cannot be read at all (no IKEv2 payload,
        wrong PKCS#12 password, unknown algorithm name); a profile that reads fine but does not
        connect gives a result with ``child_sa_up`` False and the reason in ``failure``.
        """
        started = time.monotonic()
        settings = apple_ikev2_settings(
            load_profile_plist(mobileconfig, unwrap=unwrap), pkcs12_password
        )
        self._runs += 1
        charon = _Charon(self.initiator_ns, self.workdir / f"initiator-{self._runs}")
        responder_offset = len(self.responder.log())
        charon.prepare()
        swan = charon.swanctl_dir
        # The device's trust store holds the (stand-in) public root, nothing from the profile.
        (swan / "x509ca" / "public-root.pem").write_bytes(self.public_root.cert_pem)
        (swan / "x509" / "client.pem").write_bytes(settings.identity.cert_pem)
        _write_private(swan / "private" / "client.pem", settings.identity.key_pem())
        config = initiator_swanctl_conf(settings, cert_file="client.pem")
        (swan / "swanctl.conf").write_text(config, encoding="utf-8")

        child_sa_up = ping_ok = False
        failure: str | None = None
        virtual_ip: str | None = None
        initiated = sas_after_ping = ""
        try:
            charon.start(timeout)
            assert charon.pid is not None
            self.initiator_pids.append(charon.pid)
            charon.load_all()
            done = charon.swanctl(
                "--initiate", "--child", "apple", "--timeout", str(max(1, round(timeout))),
                timeout=timeout + 5,
            )  # fmt: skip
            initiated = done.stdout + done.stderr
            listed = charon.swanctl("--list-sas").stdout
            child_sa_up = done.returncode == 0 and "INSTALLED" in listed
            if child_sa_up:
                match = _VIRTUAL_IP.search(listed)
                virtual_ip = match.group(1) if match else None
                ping_ok = self._ping_inner()
                sas_after_ping = charon.swanctl("--list-sas").stdout
                if not ping_ok:
                    failure = f"no ping reply from {self.responder_inner_address}"
            else:
                failure = _first_failure(initiated) or f"swanctl --initiate: {done.returncode}"
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failure = str(exc).splitlines()[0]
        finally:
            charon.stop()
            initiator_log = charon.log()
            # Keys extracted from the PKCS#12 do not outlive the run.
            shutil.rmtree(charon.directory, ignore_errors=True)
        return IKEv2ConnectResult(
            child_sa_up=child_sa_up,
            ping_ok=ping_ok,
            failure=failure,
            virtual_ip=virtual_ip,
            initiator_log=initiator_log,
            responder_log=self.responder.log()[responder_offset:],
            swanctl_output=initiated,
            initiator_config=config,
            sas_after_ping=sas_after_ping,
            seconds=time.monotonic() - started,
        )

    def _ping_inner(self, attempts: int = 3) -> bool:
        for _ in range(attempts):
            pinged = _run(
                ["ip", "netns", "exec", self.initiator_ns, "ping", "-c1", "-W2",
                 self.responder_inner_address]
            )  # fmt: skip
            if pinged.returncode == 0:
                return True
        return False


# What `swanctl --initiate` prints when the attempt fails, most telling first.
_FAILURE_LINES = tuple(
    re.compile(rf"^.*(?:{pattern}).*$", re.MULTILINE)
    for pattern in (
        r"received \S+ notify error",
        r"no trusted \S+ public key found|constraint check failed|no private key found",
        r"giving up after|establishing \S+ failed|failed|not found",
    )
)


def _first_failure(output: str) -> str | None:
    for pattern in _FAILURE_LINES:
        match = pattern.search(output)
        if match:
            return match.group(0).strip()
    return None


def _split_pem_certs(roots: bytes | Sequence[bytes]) -> list[bytes]:
    bundles = [roots] if isinstance(roots, bytes) else list(roots)
    certs = [
        cert.public_bytes(serialization.Encoding.PEM)
        for bundle in bundles
        for cert in x509.load_pem_x509_certificates(bundle)
    ]
    if not certs:
        raise ValueError("at least one P2S root certificate is needed")
    return certs


@contextlib.contextmanager
def azure_like_ikev2_endpoint(
    workdir: Path,
    p2s_roots: bytes | Sequence[bytes],
    *,
    server_name: str | None = None,
    public_root: Credential | None = None,
    server_certificate_name: str | None = None,
    start_timeout: float = 10,
) -> Iterator[IKEv2Endpoint]:
    """Start an Azure-like P2S IKEv2 responder accepting clients of ``p2s_roots`` (PEM).

    ``server_name`` is the gateway's ``VpnServer`` name (default: a fresh Azure-like one); it
    is the responder's identity and DNS SAN, and the initiator namespace resolves it to the
    responder. ``public_root`` issues the server certificate (default: a fresh stand-in public
    root). ``server_certificate_name`` is the certificate's DNS SAN (default ``server_name``;
    another name is a negative control: a device must reject a certificate that does not carry
    its RemoteIdentifier). Skips the test when the harness cannot run here. Everything is
    removed on exit.
    """
    require_ikev2()
    roots = _split_pem_certs(p2s_roots)
    name = server_name or azure_like_server_name()
    root = public_root or create_root("ovt stand-in public root")
    server = issue_server_certificate(root, server_certificate_name or name)
    tag = secrets.token_hex(4)
    base = workdir.resolve() / f"ikev2-{tag}"
    base.mkdir(parents=True, mode=0o700)
    endpoint = IKEv2Endpoint(
        workdir=base,
        server_name=name,
        public_root=root,
        responder_ns=f"ovt-ikr-{tag}",
        initiator_ns=f"ovt-iki-{tag}",
        responder=_Charon(f"ovt-ikr-{tag}", base / "responder"),
    )
    netns_etc = NETNS_CONFIG_ROOT / endpoint.initiator_ns
    created: list[str] = []
    try:
        for ns in (endpoint.responder_ns, endpoint.initiator_ns):
            _check(["ip", "netns", "add", ns])
            created.append(ns)
            _check(["ip", "-n", ns, "link", "set", "lo", "up"])
        _check(
            [
                "ip",
                "link",
                "add",
                "name",
                "ovt0",
                "netns",
                endpoint.responder_ns,
                "type",
                "veth",
                "peer",
                "name",
                "ovt0",
                "netns",
                endpoint.initiator_ns,
            ]
        )
        for ns, address in (
            (endpoint.responder_ns, RESPONDER_LINK),
            (endpoint.initiator_ns, INITIATOR_LINK),
        ):
            _check(["ip", "-n", ns, "addr", "add", f"{address}/{LINK.prefixlen}", "dev", "ovt0"])
            _check(["ip", "-n", ns, "link", "set", "ovt0", "up"])
        _check(["ip", "-n", endpoint.responder_ns, "addr", "add", f"{RESPONDER_INNER}/32",
                "dev", "lo"])  # fmt: skip
        netns_etc.mkdir(parents=True, mode=0o755)
        (netns_etc / "hosts").write_text(
            f"127.0.0.1 localhost\n{RESPONDER_LINK} {name}\n", encoding="ascii"
        )

        responder = endpoint.responder
        responder.prepare()
        swan = responder.swanctl_dir
        root_files = []
        for index, pem in enumerate(roots):
            root_files.append(f"p2s-root-{index}.pem")
            (swan / "x509ca" / root_files[-1]).write_bytes(pem)
        (swan / "x509" / "server.pem").write_bytes(server.cert_pem)
        _write_private(swan / "private" / "server.pem", server.key_pem())
        (swan / "swanctl.conf").write_text(
            responder_swanctl_conf(name, root_files), encoding="utf-8"
        )
        responder.start(start_timeout)
        responder.load_all()
        yield endpoint
    finally:
        endpoint.responder.stop()
        for pid in endpoint.initiator_pids:
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
        for ns in reversed(created):
            _stop_namespace_processes(ns)
            _run(["ip", "netns", "del", ns])
        shutil.rmtree(netns_etc, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _stop_namespace_processes(ns: str) -> None:
    """Kill what still runs inside ``ns``: only ever called for namespaces created here."""
    listed = _run(["ip", "netns", "pids", ns])
    for word in listed.stdout.split():
        if word.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(word), signal.SIGKILL)


def connect(
    mobileconfig: bytes,
    pkcs12_password: str | bytes | None,
    p2s_roots: bytes | Sequence[bytes],
    *,
    workdir: Path,
    server_name: str | None = None,
    unwrap: Callable[[bytes], bytes] | None = None,
    timeout: float = 10,
) -> IKEv2ConnectResult:
    """One-shot: start an endpoint, connect the profile once, tear everything down.

    ``server_name`` defaults to the profile's ``RemoteAddress`` (the gateway a generated profile
    points at); pass it explicitly to test a profile against a different gateway.
    """
    if server_name is None:
        plist = load_profile_plist(mobileconfig, unwrap=unwrap)
        server_name = apple_ikev2_settings(plist, pkcs12_password).remote_address
    with azure_like_ikev2_endpoint(workdir, p2s_roots, server_name=server_name) as endpoint:
        return endpoint.connect(mobileconfig, pkcs12_password, unwrap=unwrap, timeout=timeout)
