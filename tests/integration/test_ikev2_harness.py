"""The IKEv2 harness itself, driven by Apple profiles built by hand with plistlib.

The mapping tests (Apple names -> strongSwan proposals, profile reading) run everywhere; the
connect tests need root and strongSwan and are marked ``integration``.
"""

from __future__ import annotations

import plistlib
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from .ikev2_gateway import (
    NETNS_CONFIG_ROOT,
    AppleIKEv2Settings,
    Credential,
    IKEv2ConnectResult,
    IKEv2Endpoint,
    ProfileError,
    SAParameters,
    apple_identity_string,
    apple_ikev2_settings,
    azure_like_ikev2_endpoint,
    azure_like_server_name,
    connect,
    create_root,
    ikev2_unavailable_reason,
    initiator_swanctl_conf,
    issue_client_certificate,
    load_profile_plist,
    namespace_exists,
    process_running,
    requires_ikev2,
)

# charon instances started side by side by two test workers disturb each other: one worker
pytestmark = pytest.mark.xdist_group("strongswan")

PKCS12_PASSWORD = "p12-test-password"
AZURE_LIKE_SA = {
    "EncryptionAlgorithm": "AES-256-GCM",
    "IntegrityAlgorithm": "SHA2-256",
    "DiffieHellmanGroup": 14,
    "LifeTimeInMinutes": 480,
}


# --- fixtures: every key is generated at run time -------------------------------------------


@pytest.fixture(scope="session")
def ikev2_p2s_root() -> Credential:
    """The P2S root an admin uploads to the gateway."""
    return create_root("ovt ikev2 test P2S root")


@pytest.fixture(scope="session")
def dns_client(ikev2_p2s_root: Credential) -> Credential:
    """CN = DNS SAN = alice.example.com (like ``New-SelfSignedCertificate -DnsName``)."""
    return issue_client_certificate(ikev2_p2s_root, "alice.example.com")


@pytest.fixture(scope="session")
def email_client(ikev2_p2s_root: Credential) -> Credential:
    """CN = DNS SAN = bob, plus the e-mail SAN bob@example.com."""
    return issue_client_certificate(ikev2_p2s_root, "bob", email="bob@example.com")


@pytest.fixture(scope="session")
def cn_only_client(ikev2_p2s_root: Credential) -> Credential:
    """CN = carol, no subjectAltName at all."""
    return issue_client_certificate(ikev2_p2s_root, "carol", dns_san=False)


@pytest.fixture(scope="session")
def ikev2_foreign_client() -> Credential:
    """A client of a root the gateway does not know (same root name as the real one)."""
    return issue_client_certificate(create_root("ovt ikev2 test P2S root"), "alice.example.com")


@pytest.fixture(scope="session")
def server_name() -> str:
    return azure_like_server_name()


def apple_pkcs12(client: Credential, password: str) -> bytes:
    """PKCS#12 with the legacy algorithms Apple imports (PBE-SHA1-3DES, SHA-1 MAC)."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - Apple imports only a SHA-1 MAC
        .build(password.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        b"client", client.key, client.cert, None, encryption
    )


def hand_built_profile(
    client: Credential,
    *,
    remote_address: str,
    remote_identifier: str | None = None,
    local_identifier: str | None = None,
    ike: dict[str, Any] | None = None,
    child: dict[str, Any] | None = None,
    password: str = PKCS12_PASSWORD,
    **ikev2_extra: Any,
) -> bytes:
    """A ``.mobileconfig`` following Apple's schema (``apple/device-management``)."""
    cert_uuid = str(uuid.uuid4()).upper()
    ikev2: dict[str, Any] = {
        "RemoteAddress": remote_address,
        "RemoteIdentifier": remote_identifier or remote_address,
        "LocalIdentifier": local_identifier or common_name(client),
        "AuthenticationMethod": "Certificate",
        "ExtendedAuthEnabled": 0,
        "PayloadCertificateUUID": cert_uuid,
        **ikev2_extra,
    }
    if ike is not None:
        ikev2["IKESecurityAssociationParameters"] = ike
    if child is not None:
        ikev2["ChildSecurityAssociationParameters"] = child
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": "com.example.ovt.test",
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": "ovt IKEv2 test",
        "PayloadContent": [
            {
                "PayloadType": "com.apple.security.pkcs12",
                "PayloadVersion": 1,
                "PayloadIdentifier": "com.example.ovt.test.identity",
                "PayloadUUID": cert_uuid,
                "PayloadDisplayName": "client identity",
                "PayloadCertificateFileName": "client.p12",
                "PayloadContent": apple_pkcs12(client, password),
            },
            {
                "PayloadType": "com.apple.vpn.managed",
                "PayloadVersion": 1,
                "PayloadIdentifier": "com.example.ovt.test.vpn",
                "PayloadUUID": str(uuid.uuid4()).upper(),
                "PayloadDisplayName": "Azure VPN",
                "UserDefinedName": "Azure VPN",
                "VPNType": "IKEv2",
                "IKEv2": ikev2,
            },
        ],
    }
    return plistlib.dumps(profile)


def common_name(credential: Credential) -> str:
    (attribute,) = credential.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def settings_of(profile: bytes, password: str | None = PKCS12_PASSWORD) -> AppleIKEv2Settings:
    return apple_ikev2_settings(load_profile_plist(profile), password)


def assert_tunnel_up(result: IKEv2ConnectResult) -> None:
    assert result.child_sa_up, result.describe()
    assert result.ping_ok, result.describe()
    assert result.failure is None
    assert result.virtual_ip is not None and result.virtual_ip.startswith("198.19.202.")
    packets_in, packets_out = result.child_sa_packets()
    assert packets_in >= 1 and packets_out >= 1, "the ping must cross the CHILD_SA"


def assert_rejected(result: IKEv2ConnectResult) -> None:
    assert result.child_sa_up is False, result.describe()
    assert result.ping_ok is False
    assert result.failure is not None


# --- mapping (no root needed) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "ike", "esp", "esp_pfs"),
    [
        pytest.param(
            None, "aes256-sha256-prfsha256-modp2048", "aes256-sha256", "aes256-sha256-modp2048",
            id="apple-defaults",
        ),
        pytest.param(
            AZURE_LIKE_SA, "aes256gcm16-prfsha256-modp2048", "aes256gcm16", "aes256gcm16-modp2048",
            id="gcm-uses-integrity-as-prf",
        ),
        pytest.param(
            {"EncryptionAlgorithm": "AES-256", "IntegrityAlgorithm": "SHA2-384",
             "DiffieHellmanGroup": 20},
            "aes256-sha384-prfsha384-ecp384", "aes256-sha384", "aes256-sha384-ecp384", id="ecp384",
        ),
        pytest.param(
            {"EncryptionAlgorithm": "AES-128", "IntegrityAlgorithm": "SHA1-96",
             "DiffieHellmanGroup": 19},
            "aes128-sha1-prfsha1-ecp256", "aes128-sha1", "aes128-sha1-ecp256", id="ecp256",
        ),
        pytest.param(
            {"EncryptionAlgorithm": "ChaCha20Poly1305", "IntegrityAlgorithm": "SHA2-512",
             "DiffieHellmanGroup": 31},
            "chacha20poly1305-prfsha512-curve25519", "chacha20poly1305",
            "chacha20poly1305-curve25519", id="chacha-curve25519",
        ),
        pytest.param(
            {"DiffieHellmanGroup": 24}, "aes256-sha256-prfsha256-modp2048s256", "aes256-sha256",
            "aes256-sha256-modp2048s256", id="group24",
        ),
    ],
)  # fmt: skip
def test_apple_sa_parameters_map_to_strongswan_proposals(
    values: dict[str, Any] | None, ike: str, esp: str, esp_pfs: str
) -> None:
    params = SAParameters.from_apple(values, "IKESecurityAssociationParameters")
    assert params.ike_proposal() == ike
    assert params.esp_proposal(pfs=False) == esp
    assert params.esp_proposal(pfs=True) == esp_pfs


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        pytest.param(
            {"EncryptionAlgorithm": "AES-192"}, "EncryptionAlgorithm 'AES-192'", id="cipher"
        ),
        pytest.param({"IntegrityAlgorithm": "MD5"}, "IntegrityAlgorithm 'MD5'", id="integrity"),
        pytest.param({"DiffieHellmanGroup": 99}, "DiffieHellmanGroup 99", id="group"),
        pytest.param({"DiffieHellmanGroup": "14"}, "DiffieHellmanGroup '14'", id="group-string"),
        pytest.param({"LifeTimeInMinutes": 5}, "LifeTimeInMinutes", id="lifetime"),
        pytest.param({"Encryption": "AES-256"}, "unknown keys ['Encryption']", id="misspelt"),
    ],
)
def test_bad_sa_parameters_are_rejected(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ProfileError, match=f"^Child.*{re.escape(fragment)}"):
        SAParameters.from_apple(values, "ChildSecurityAssociationParameters")


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("alice.example.com", "fqdn:alice.example.com"),
        ("alice", "fqdn:alice"),
        ("bob@example.com", "email:bob@example.com"),
        ("CN=alice", "fqdn:CN=alice"),
        ("198.18.0.1", "ipv4:198.18.0.1"),
        ("2001:db8::1", "ipv6:2001:db8::1"),
    ],
)
def test_identifiers_are_typed_like_apple_sends_them(identifier: str, expected: str) -> None:
    assert apple_identity_string(identifier) == expected


def test_profile_values_reach_the_initiator_config(dns_client: Credential) -> None:
    profile = hand_built_profile(
        dns_client,
        remote_address="gw.example.net",
        remote_identifier="id.example.net",
        ike=AZURE_LIKE_SA,
        child={"EncryptionAlgorithm": "AES-256", "IntegrityAlgorithm": "SHA2-256",
               "LifeTimeInMinutes": 60},
        EnablePFS=1,
    )  # fmt: skip
    settings = settings_of(profile)
    assert settings.identity.cert == dns_client.cert
    assert settings.identity.key.public_key() == dns_client.key.public_key()
    conf = initiator_swanctl_conf(settings, cert_file="client.pem")
    assert "remote_addrs = gw.example.net\n" in conf
    assert 'id = "fqdn:id.example.net"' in conf
    assert 'id = "fqdn:alice.example.com"' in conf
    assert "proposals = aes256gcm16-prfsha256-modp2048\n" in conf
    assert "rekey_time = 480m" in conf
    assert "esp_proposals = aes256-sha256-modp2048\n" in conf
    assert "rekey_time = 60m" in conf
    assert "send_certreq = no" in conf
    assert "PRIVATE KEY" not in conf


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({}, ["mobike = yes", "send_certreq = no"], id="apple-defaults"),
        pytest.param(
            {"DisableMOBIKE": 1, "ServerCertificateIssuerCommonName": "Some Public CA"},
            ["mobike = no", "send_certreq = yes"],
            id="no-mobike-certreq",
        ),
    ],
)
def test_apple_behaviour_switches(
    dns_client: Credential, extra: dict[str, Any], expected: list[str]
) -> None:
    settings = settings_of(hand_built_profile(dns_client, remote_address="gw", **extra))
    conf = initiator_swanctl_conf(settings, cert_file="client.pem")
    for line in expected:
        assert f"        {line}\n" in conf


def test_child_sa_takes_the_ike_parameters_when_absent(dns_client: Credential) -> None:
    settings = settings_of(
        hand_built_profile(dns_client, remote_address="gw.example.net", ike=AZURE_LIKE_SA)
    )
    assert settings.child == settings.ike == SAParameters.from_apple(AZURE_LIKE_SA, "x")


def test_pkcs12_password_from_the_payload_when_none_is_given(dns_client: Credential) -> None:
    plist = plistlib.loads(hand_built_profile(dns_client, remote_address="gw.example.net"))
    plist["PayloadContent"][0]["Password"] = PKCS12_PASSWORD
    assert apple_ikev2_settings(plist, None).identity.cert == dns_client.cert


def test_wrong_pkcs12_password_is_a_profile_error(dns_client: Credential) -> None:
    profile = hand_built_profile(dns_client, remote_address="gw.example.net")
    with pytest.raises(ProfileError, match="wrong password"):
        settings_of(profile, "not the password")


def test_certificate_uuid_must_name_the_pkcs12_payload(dns_client: Credential) -> None:
    plist = plistlib.loads(hand_built_profile(dns_client, remote_address="gw.example.net"))
    plist["PayloadContent"][1]["IKEv2"]["PayloadCertificateUUID"] = str(uuid.uuid4())
    with pytest.raises(ProfileError, match=re.escape("names 0 com.apple.security.pkcs12 payloads")):
        apple_ikev2_settings(plist, PKCS12_PASSWORD)


def test_signed_profile_needs_unwrap(dns_client: Credential) -> None:
    inner = hand_built_profile(dns_client, remote_address="gw.example.net")
    wrapped = b"\x30\x82fake-cms" + inner
    with pytest.raises(ProfileError, match="pass unwrap="):
        load_profile_plist(wrapped)
    unwrapped = load_profile_plist(wrapped, unwrap=lambda data: data[len(b"\x30\x82fake-cms") :])
    assert unwrapped["PayloadType"] == "Configuration"


def test_skip_reason_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert ikev2_unavailable_reason.__wrapped__() == "needs root (network namespaces, tun devices)"


def test_skip_reason_when_charon_systemd_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(
        "shutil.which", lambda name, path=None: None if name == "charon-systemd" else "/bin/x"
    )
    reason = ikev2_unavailable_reason.__wrapped__()
    assert reason == "'charon-systemd' is not installed (Debian package charon-systemd)"


# --- connects (root + strongSwan) -----------------------------------------------------------


SHA384_IKE = {"EncryptionAlgorithm": "AES-256", "IntegrityAlgorithm": "SHA2-384",
              "DiffieHellmanGroup": 20}  # fmt: skip
SHA256_CHILD = {"EncryptionAlgorithm": "AES-256", "IntegrityAlgorithm": "SHA2-256",
                "DiffieHellmanGroup": 19}  # fmt: skip


@pytest.mark.integration
@requires_ikev2
@pytest.mark.parametrize(
    ("client_fixture", "local_identifier", "ike", "child", "extra"),
    [
        pytest.param("dns_client", None, AZURE_LIKE_SA, None, {}, id="dns-san-gcm"),
        pytest.param("dns_client", None, None, None, {}, id="dns-san-apple-defaults"),
        pytest.param("email_client", "bob@example.com", AZURE_LIKE_SA, None, {}, id="email-san"),
        pytest.param(
            "dns_client", None, SHA384_IKE, SHA256_CHILD, {"EnablePFS": 1},
            id="ecp384-sha384-ike-sha256-child-pfs",
        ),
    ],
)  # fmt: skip
def test_hand_built_profile_connects_and_pings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    ikev2_p2s_root: Credential,
    server_name: str,
    client_fixture: str,
    local_identifier: str | None,
    ike: dict[str, Any] | None,
    child: dict[str, Any] | None,
    extra: dict[str, Any],
) -> None:
    client: Credential = request.getfixturevalue(client_fixture)
    profile = hand_built_profile(
        client, remote_address=server_name, local_identifier=local_identifier, ike=ike,
        child=child, **extra,
    )  # fmt: skip

    result = connect(profile, PKCS12_PASSWORD, ikev2_p2s_root.cert_pem, workdir=tmp_path)

    assert_tunnel_up(result)
    expected_id = local_identifier or common_name(client)
    assert f"authentication of '{expected_id}' with RSA" in result.responder_log
    assert "IKE_SA p2s[1] established" in result.responder_log
    assert "CHILD_SA p2s{1} established" in result.responder_log
    # The server is authenticated by the device's trust store and its DNS SAN.
    assert f"authentication of '{server_name}' with RSA" in result.initiator_log
    assert 'using trusted ca certificate "CN=ovt stand-in public root"' in result.initiator_log
    assert list(tmp_path.iterdir()) == [], "the harness leaves no files (keys) behind"


@pytest.mark.integration
@requires_ikev2
def test_one_endpoint_serves_several_profiles(
    tmp_path: Path, ikev2_p2s_root: Credential, dns_client: Credential, email_client: Credential
) -> None:
    seen: list[IKEv2Endpoint] = []
    with azure_like_ikev2_endpoint(tmp_path, [ikev2_p2s_root.cert_pem]) as endpoint:
        seen.append(endpoint)
        assert namespace_exists(endpoint.responder_ns) and namespace_exists(endpoint.initiator_ns)
        first = endpoint.connect(
            hand_built_profile(dns_client, remote_address=endpoint.server_name), PKCS12_PASSWORD
        )
        second = endpoint.connect(
            hand_built_profile(
                email_client, remote_address=endpoint.server_name,
                local_identifier="bob@example.com", ike=AZURE_LIKE_SA,
            ),
            PKCS12_PASSWORD,
        )  # fmt: skip

    assert_tunnel_up(first)
    assert_tunnel_up(second)
    (endpoint,) = seen
    assert endpoint.responder.pid is not None and not process_running(endpoint.responder.pid)
    assert endpoint.initiator_pids and not any(map(process_running, endpoint.initiator_pids))
    assert not namespace_exists(endpoint.responder_ns)
    assert not namespace_exists(endpoint.initiator_ns)
    assert not (NETNS_CONFIG_ROOT / endpoint.initiator_ns).exists()


@pytest.mark.integration
@requires_ikev2
def test_client_from_another_root_is_rejected(
    tmp_path: Path, ikev2_p2s_root: Credential, ikev2_foreign_client: Credential, server_name: str
) -> None:
    profile = hand_built_profile(
        ikev2_foreign_client, remote_address=server_name, ike=AZURE_LIKE_SA
    )

    result = connect(profile, PKCS12_PASSWORD, ikev2_p2s_root.cert_pem, workdir=tmp_path)

    assert_rejected(result)
    assert result.failure == "[IKE] received AUTHENTICATION_FAILED notify error"
    assert 'no issuer certificate found for "CN=alice.example.com"' in result.responder_log
    assert "no trusted RSA public key found for 'alice.example.com'" in result.responder_log


@pytest.mark.integration
@requires_ikev2
def test_wrong_remote_identifier_is_rejected(
    tmp_path: Path, ikev2_p2s_root: Credential, dns_client: Credential, server_name: str
) -> None:
    """The gateway sees an IDr that is not its name and finds no config for it."""
    wrong = azure_like_server_name()
    profile = hand_built_profile(
        dns_client, remote_address=server_name, remote_identifier=wrong, ike=AZURE_LIKE_SA
    )

    result = connect(
        profile, PKCS12_PASSWORD, ikev2_p2s_root.cert_pem, workdir=tmp_path,
        server_name=server_name,
    )  # fmt: skip

    assert_rejected(result)
    assert f'id = "fqdn:{wrong}"' in result.initiator_config
    assert result.failure == "[IKE] received AUTHENTICATION_FAILED notify error"
    assert f"[{wrong}]...198.18.0.2[alice.example.com]" in result.responder_log
    assert "no matching peer config found" in result.responder_log


@pytest.mark.integration
@requires_ikev2
def test_server_certificate_without_the_remote_identifier_is_rejected(
    tmp_path: Path, ikev2_p2s_root: Credential, dns_client: Credential, server_name: str
) -> None:
    """The device's own check: the server certificate must confirm RemoteIdentifier."""
    profile = hand_built_profile(dns_client, remote_address=server_name, ike=AZURE_LIKE_SA)

    with azure_like_ikev2_endpoint(
        tmp_path, ikev2_p2s_root.cert_pem, server_name=server_name,
        server_certificate_name="other.vpn.azure.com",
    ) as endpoint:  # fmt: skip
        result = endpoint.connect(profile, PKCS12_PASSWORD)

    assert_rejected(result)
    assert f"no trusted RSA public key found for '{server_name}'" in result.initiator_log
    assert "IKE_SA p2s[1] established" in result.responder_log, "the gateway accepted alice"


@pytest.mark.integration
@requires_ikev2
@pytest.mark.parametrize("local_identifier", ["carol", "CN=carol"])
def test_local_identifier_not_in_the_certificate_is_rejected(
    tmp_path: Path,
    ikev2_p2s_root: Credential,
    cn_only_client: Credential,
    server_name: str,
    local_identifier: str,
) -> None:
    """CN=carol without a SAN: 'carol' (or 'CN=carol') goes out as a DNS name, which the
    certificate does not confirm. This is why a generated profile's LocalIdentifier must be a
    subjectAltName of its certificate."""
    profile = hand_built_profile(
        cn_only_client, remote_address=server_name, local_identifier=local_identifier,
        ike=AZURE_LIKE_SA,
    )  # fmt: skip

    result = connect(profile, PKCS12_PASSWORD, ikev2_p2s_root.cert_pem, workdir=tmp_path)

    assert_rejected(result)
    assert result.failure == "[IKE] received AUTHENTICATION_FAILED notify error"
    assert f"no trusted RSA public key found for '{local_identifier}'" in result.responder_log


@pytest.mark.integration
@requires_ikev2
@pytest.mark.parametrize(
    ("ike", "child", "expected", "responder_says"),
    [
        pytest.param(
            {"EncryptionAlgorithm": "AES-128"}, None,
            "[IKE] received NO_PROPOSAL_CHOSEN notify error", "received proposals unacceptable",
            id="aes128-ike",
        ),
        pytest.param(
            SHA384_IKE, None, "[IKE] failed to establish CHILD_SA, keeping IKE_SA",
            "no acceptable proposal found", id="sha384-child-inherited-from-ike",
        ),
    ],
)  # fmt: skip
def test_proposals_outside_azure_policy_are_rejected(
    tmp_path: Path,
    ikev2_p2s_root: Credential,
    dns_client: Credential,
    server_name: str,
    ike: dict[str, Any],
    child: dict[str, Any] | None,
    expected: str,
    responder_says: str,
) -> None:
    """AES-128 is outside Azure's IKE list. Azure's ESP list has no AES-256/SHA2-384: without
    its own Child dictionary the Child SA inherits SHA2-384 from the IKE parameters, so the
    IKE_SA comes up but no CHILD_SA does."""
    profile = hand_built_profile(dns_client, remote_address=server_name, ike=ike, child=child)

    result = connect(profile, PKCS12_PASSWORD, ikev2_p2s_root.cert_pem, workdir=tmp_path)

    assert_rejected(result)
    assert result.failure == expected, result.describe()
    assert responder_says in result.responder_log


@pytest.mark.integration
@requires_ikev2
def test_everything_is_removed_even_when_the_test_fails(
    tmp_path: Path, ikev2_p2s_root: Credential
) -> None:
    seen: list[IKEv2Endpoint] = []
    with (
        pytest.raises(RuntimeError, match="test body failed"),
        azure_like_ikev2_endpoint(tmp_path, ikev2_p2s_root.cert_pem) as endpoint,
    ):
        seen.append(endpoint)
        assert (NETNS_CONFIG_ROOT / endpoint.initiator_ns / "hosts").is_file()
        raise RuntimeError("test body failed")

    (endpoint,) = seen
    assert endpoint.responder.pid is not None and not process_running(endpoint.responder.pid)
    assert not namespace_exists(endpoint.responder_ns)
    assert not namespace_exists(endpoint.initiator_ns)
    assert not (NETNS_CONFIG_ROOT / endpoint.initiator_ns).exists()
    assert list(tmp_path.iterdir()) == []
