"""The namespace harness itself, driven by profiles filled in by hand from Azure's template."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from toolkit.ca import keys as pki
from toolkit.sample import SampleGateway

from .gateway import (
    NETNS_CONFIG_ROOT,
    ConnectResult,
    GatewayHandle,
    azure_like_gateway,
    namespace_exists,
    netns_unavailable_reason,
    process_running,
    profile_log_path,
    requires_netns,
)

PASSPHRASE = b"secret"


def hand_filled_profile(
    gateway: SampleGateway, client: pki.IssuedCertificate, *, passphrase: bytes | None = None
) -> str:
    """Azure's ``vpnconfig.ovpn`` with the two placeholders replaced, as a user would by hand."""
    text = gateway.profile_text()
    assert "$CLIENTCERTIFICATE" in text and "$PRIVATEKEY" in text
    return text.replace("$CLIENTCERTIFICATE", client.cert_pem.decode("ascii").strip()).replace(
        "$PRIVATEKEY", client.key_pem(passphrase).decode("ascii").strip()
    )


def write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def wait_for_server_log(handle: GatewayHandle, fragment: str, timeout: float = 3) -> str:
    """The server log once it mentions ``fragment`` (it may trail the client by a moment)."""
    deadline = time.monotonic() + timeout
    while fragment not in (log := handle.server_log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


def assert_tunnel_up(result: ConnectResult) -> None:
    assert result.connected, result.describe()
    assert result.ping_ok, result.describe()
    assert result.failure is None


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        pytest.param("client\nlog openvpn.log\nverb 3\n", "openvpn.log", id="relative"),
        pytest.param("log-append /var/log/x.log\n", "/var/log/x.log", id="absolute-append"),
        pytest.param("<key>\nlog not-a-directive\n</key>\nverb 3\n", None, id="inside-inline"),
        pytest.param("verb 3\n#log commented.log\n", None, id="none"),
        pytest.param("log first.log\nlog second.log\n", "first.log", id="first-wins"),
    ],
)
def test_profile_log_path(tmp_path: Path, profile: str, expected: str | None) -> None:
    found = profile_log_path(profile, tmp_path)
    assert found == (None if expected is None else tmp_path / expected)


def test_skip_reason_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert netns_unavailable_reason.__wrapped__() == "needs root (network namespaces, tun devices)"


def test_skip_reason_when_openvpn_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda name: None if name == "openvpn" else "/bin/x")
    assert netns_unavailable_reason.__wrapped__() == "'openvpn' is not installed"


@pytest.mark.integration
@requires_netns
def test_hand_filled_profile_connects_and_pings(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
) -> None:
    text = hand_filled_profile(sample_gateway, p2s_client)
    profile = write_private(tmp_path / "profile" / "vpnconfig.ovpn", text)
    cwd = tmp_path / "run"

    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as handle:
        result = handle.connect(profile, cwd=cwd)
        server_log = handle.server_log()

    assert_tunnel_up(result)
    assert profile.read_text(encoding="utf-8") == text, "the profile must be used unchanged"
    # The template's `log openvpn.log` wins over the harness's later --log, relative to cwd.
    assert result.log_path == cwd / "openvpn.log"
    assert "VERIFY X509NAME OK: CN=" + sample_gateway.server_name in result.log
    assert "Data Channel: cipher 'AES-256-GCM'" in result.log
    assert "VERIFY OK: depth=0, CN=alice" in server_log
    assert "VERIFY EKU OK" in server_log


@pytest.mark.integration
@requires_netns
def test_client_from_another_root_is_rejected(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    foreign_client: pki.IssuedCertificate,
) -> None:
    profile = write_private(
        tmp_path / "vpnconfig.ovpn", hand_filled_profile(sample_gateway, foreign_client)
    )

    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as handle:
        result = handle.connect(profile, cwd=tmp_path / "run", timeout=15)
        server_log = wait_for_server_log(handle, "VERIFY ERROR")

    assert result.connected is False, result.describe()
    assert result.ping_ok is False
    assert result.failure is not None
    assert "VERIFY ERROR: depth=0, error=unable to get local issuer certificate" in server_log
    assert "CN=mallory" in server_log
    assert "TLS Error: TLS handshake failed" in server_log


@pytest.mark.integration
@requires_netns
def test_any_of_several_p2s_roots_is_accepted(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
) -> None:
    other_root = pki.create_root("ovt test second P2S root", key_type="ec256")
    profile = write_private(
        tmp_path / "vpnconfig.ovpn", hand_filled_profile(sample_gateway, p2s_client)
    )

    with azure_like_gateway(
        tmp_path, sample_gateway, [other_root.cert_pem, p2s_root.cert_pem]
    ) as handle:
        result = handle.connect(profile, cwd=tmp_path / "run")

    assert_tunnel_up(result)


@pytest.mark.integration
@requires_netns
def test_encrypted_key_with_askpass_file(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
) -> None:
    text = hand_filled_profile(sample_gateway, p2s_client, passphrase=PASSPHRASE)
    assert "ENCRYPTED PRIVATE KEY" in text
    profile = write_private(tmp_path / "vpnconfig.ovpn", text)
    askpass = write_private(tmp_path / "secrets" / "askpass.txt", PASSPHRASE.decode() + "\n")

    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as handle:
        missing = handle.connect(profile, cwd=tmp_path / "missing")
        good = handle.connect(profile, cwd=tmp_path / "good", askpass=askpass)
        write_private(askpass, "not the passphrase\n")
        bad = handle.connect(profile, cwd=tmp_path / "bad", askpass=askpass)

    assert_tunnel_up(good)
    assert bad.connected is False, bad.describe()
    assert "private key password verification failed" in bad.log
    # Without --askpass a daemon cannot prompt: it fails at once instead of hanging.
    assert missing.connected is False, missing.describe()
    assert "you need to use --askpass" in missing.log


@pytest.mark.integration
@requires_netns
def test_profile_without_log_directive_uses_harness_log(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
) -> None:
    text = hand_filled_profile(sample_gateway, p2s_client).replace("log openvpn.log\n", "")
    profile = write_private(tmp_path / "vpnconfig.ovpn", text)
    cwd = tmp_path / "run"

    with azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as handle:
        result = handle.connect(profile, cwd=cwd)

    assert_tunnel_up(result)
    assert result.log_path is not None and result.log_path.name == "client.log"
    assert not (cwd / "openvpn.log").exists()


@pytest.mark.integration
@requires_netns
def test_two_gateways_run_side_by_side(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
) -> None:
    profile = write_private(
        tmp_path / "vpnconfig.ovpn", hand_filled_profile(sample_gateway, p2s_client)
    )
    roots = [p2s_root.cert_pem]

    with (
        azure_like_gateway(tmp_path, sample_gateway, roots) as first,
        azure_like_gateway(tmp_path, sample_gateway, roots) as second,
    ):
        assert {first.server_ns, first.client_ns}.isdisjoint({second.server_ns, second.client_ns})
        results = [
            handle.connect(profile, cwd=tmp_path / f"run-{n}")
            for n, handle in enumerate((first, second))
        ]

    for result in results:
        assert_tunnel_up(result)


@pytest.mark.integration
@requires_netns
def test_everything_is_removed_even_when_the_test_fails(
    tmp_path: Path,
    sample_gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    p2s_client: pki.IssuedCertificate,
) -> None:
    profile = write_private(
        tmp_path / "vpnconfig.ovpn", hand_filled_profile(sample_gateway, p2s_client)
    )
    seen: list[GatewayHandle] = []

    with (
        pytest.raises(RuntimeError, match="test body failed"),
        azure_like_gateway(tmp_path, sample_gateway, [p2s_root.cert_pem]) as handle,
    ):
        seen.append(handle)
        assert namespace_exists(handle.server_ns) and namespace_exists(handle.client_ns)
        assert (NETNS_CONFIG_ROOT / handle.client_ns / "hosts").is_file()
        handle.connect(profile, cwd=tmp_path / "run")
        raise RuntimeError("test body failed")

    (handle,) = seen
    assert not namespace_exists(handle.server_ns)
    assert not namespace_exists(handle.client_ns)
    assert not (NETNS_CONFIG_ROOT / handle.client_ns).exists()
    assert handle.server_pid is not None
    assert not process_running(handle.server_pid)
