"""An Azure-like OpenVPN 2.6 gateway in network namespaces, to prove that a profile connects.

The server is set up as described in ``/work/shared/reference/test-gateway.md``: TCP 443,
``tls-auth`` (server key direction 0), AES-256-GCM, HMAC SHA256, TLS >= 1.2, clients must chain
to the P2S root(s) and carry the Client Authentication EKU. It runs in its own network namespace;
the client runs in a second one, joined by a veth pair. ``/etc/netns/<client-ns>/hosts`` maps the
profile's ``remote`` host to the server, so a profile is used exactly as written.

Only addresses inside the namespaces created here are ever used: the link is a random /30 from
198.18.0.0/16 and the tunnel pool a random /24 from 198.19.0.0/16 (both in the benchmarking range
198.18.0.0/15). Everything is torn down on exit, also when the test body fails.

Usage::

    with azure_like_gateway(tmp_path, gateway, [p2s_root.cert_pem]) as handle:
        result = handle.connect(profile_path, cwd=tmp_path / "client")
    assert result.connected and result.ping_ok, result.log
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from toolkit.sample import SampleGateway

NETNS_CONFIG_ROOT = Path("/etc/netns")
LINK_SPACE = ipaddress.IPv4Network("198.18.0.0/16")
POOL_SPACE = ipaddress.IPv4Network("198.19.0.0/16")
COMPLETED = "Initialization Sequence Completed"

# Lines in a client log that mean this connection attempt is over without a tunnel.
_CLIENT_FAILURE = re.compile(
    r"TLS Error|TLS_ERROR|VERIFY ERROR|AUTH_FAILED|Exiting due to fatal error|"
    r"SIGUSR1\[|SIGTERM\[|SIGHUP\[|Cannot resolve host|RESOLVE: |"
    r"private key password verification failed|Cannot load private key|"
    rf"{COMPLETED} With Errors"
)
# Lines (outside inline blocks) that send OpenVPN's output to a file.
_LOG_DIRECTIVE = re.compile(r"^\s*(?:--)?(log|log-append)\s+(\S+|'[^']*'|\"[^\"]*\")\s*$")


# --- availability -----------------------------------------------------------------------------


def _run(argv: Sequence[str], *, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    # A new session has no controlling terminal: openvpn can never stop to prompt on one.
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )


@functools.cache
def netns_unavailable_reason() -> str | None:
    """Why the namespace tests cannot run here, or None when they can (probed once)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces, tun devices)"
    for program in ("openvpn", "ip", "ss", "ping"):
        if shutil.which(program) is None:
            return f"'{program}' is not installed"
    return namespace_probe_failure()


def namespace_probe_failure() -> str | None:
    """Why a tun device in a new network namespace cannot be had here (None when it can)."""
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing"
    probe = f"ovt-probe-{secrets.token_hex(4)}"
    added = _run(["ip", "netns", "add", probe])
    if added.returncode != 0:
        return f"'ip netns add' failed: {added.stderr.strip() or added.returncode}"
    _run(["ip", "netns", "del", probe])
    return None


def require_netns() -> None:
    """Skip the calling test (with the reason) when network namespaces are not available."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


#: Marker form of :func:`require_netns` (probed when the test module is imported).
requires_netns = pytest.mark.skipif(
    netns_unavailable_reason() is not None,
    reason=f"network namespaces unavailable: {netns_unavailable_reason()}",
)


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectResult:
    """What one client run achieved.

    ``log`` is the client's own log (the file named by the profile's ``log`` directive when it
    has one, else the harness's ``--log`` file); ``server_log`` is what the server logged while
    this client ran; ``failure`` says why ``connected`` is False (or why ``ping_ok`` is).
    """

    connected: bool
    ping_ok: bool
    log: str
    server_log: str
    log_path: Path | None
    seconds: float
    failure: str | None = None

    def describe(self) -> str:
        """A readable dump for assertion messages."""
        return (
            f"connected={self.connected} ping_ok={self.ping_ok} failure={self.failure!r} "
            f"after {self.seconds:.1f}s\n--- client log ({self.log_path}) ---\n{self.log}"
            f"\n--- server log ---\n{self.server_log}"
        )


# --- small process helpers --------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def process_running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting to be reaped counts as gone)."""
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


def _terminate(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Only for pids this harness started."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not process_running(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_for_pid(pidfile: Path, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _read_pid(pidfile)
        if pid is not None:
            return pid
        time.sleep(0.05)
    return None


def profile_log_path(profile_text: str, cwd: Path) -> Path | None:
    """Where the profile's own ``log``/``log-append`` directive sends the output (first wins)."""
    inline_block: str | None = None
    for line in profile_text.splitlines():
        stripped = line.strip()
        if inline_block is not None:
            if stripped == f"</{inline_block}>":
                inline_block = None
            continue
        opening = re.fullmatch(r"<([a-z-]+)>", stripped)
        if opening:
            inline_block = opening.group(1)
            continue
        match = _LOG_DIRECTIVE.match(line)
        if match:
            path = Path(match.group(2).strip("'\""))
            return path if path.is_absolute() else cwd / path
    return None


# --- the gateway ------------------------------------------------------------------------------


@dataclass
class _Addressing:
    server_link: ipaddress.IPv4Address
    client_link: ipaddress.IPv4Address
    link_prefix: int
    pool: ipaddress.IPv4Network

    @classmethod
    def random(cls) -> _Addressing:
        # /30 number 0 and the last are skipped so that no address is a network/broadcast edge.
        slot = secrets.randbelow(LINK_SPACE.num_addresses // 4 - 2) + 1
        base = LINK_SPACE.network_address + 4 * slot
        third = secrets.randbelow(254) + 1
        pool = ipaddress.IPv4Network(f"{POOL_SPACE.network_address + 256 * third}/24")
        return cls(base + 1, base + 2, 30, pool)

    @property
    def server_tunnel(self) -> ipaddress.IPv4Address:
        return self.pool.network_address + 1


@dataclass
class GatewayHandle:
    """A running Azure-like gateway; ``connect`` runs one client profile against it."""

    gateway: SampleGateway
    workdir: Path
    server_ns: str
    client_ns: str
    addressing: _Addressing
    server_log_path: Path
    server_pid: int | None = None
    _client_runs: int = field(default=0, repr=False)
    _started_pids: list[int] = field(default_factory=list, repr=False)

    @property
    def server_address(self) -> str:
        """The server's address on the veth link (what the client's hosts file points at)."""
        return str(self.addressing.server_link)

    @property
    def server_tunnel_address(self) -> str:
        """The server's address inside the tunnel (pinged after a connect)."""
        return str(self.addressing.server_tunnel)

    def server_log(self) -> str:
        return _read_text(self.server_log_path)

    def exec_in_client(
        self, argv: Sequence[str], *, timeout: float = 15
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the client namespace (only for hosts inside these namespaces)."""
        return _run(["ip", "netns", "exec", self.client_ns, *argv], timeout=timeout)

    def connect(
        self,
        profile_path: Path,
        *,
        cwd: Path,
        askpass: Path | None = None,
        timeout: float = 30,
        extra_args: Sequence[str] = (),
    ) -> ConnectResult:
        """Run ``openvpn --config profile_path`` (file untouched) in the client namespace.

        Waits for ``Initialization Sequence Completed`` (or a failure, or ``timeout`` seconds),
        pings the server's tunnel address once if connected, then stops the client.
        ``cwd`` is where the client runs (``--cd``): a relative ``log`` in the profile lands
        there, and relative ``cert``/``key``/``ca`` paths are resolved from there, so for a
        profile that references files next to it pass ``cwd=profile_path.parent``.
        ``askpass`` is a file holding the key's passphrase (``--askpass``); without it an
        encrypted key fails at once (a daemon cannot prompt). ``extra_args`` are appended.
        """
        started = time.monotonic()
        self._client_runs += 1
        run_dir = self.workdir / f"client-run-{self._client_runs}"
        run_dir.mkdir(mode=0o700)
        cwd.mkdir(parents=True, exist_ok=True)
        pidfile = run_dir / "client.pid"
        harness_log = run_dir / "client.log"
        profile_text = _read_text(profile_path)
        profile_log = profile_log_path(profile_text, cwd)
        server_log_offset = len(self.server_log())
        log_path = profile_log if profile_log is not None else harness_log
        # A `log-append` file may hold earlier runs: only what this run adds counts.
        earlier = _read_text(log_path)

        def this_run_log() -> str:
            text = _read_text(log_path)
            return text[len(earlier) :] if earlier and text.startswith(earlier) else text

        # Option order matters: --cd is applied while parsing, so the profile's relative
        # ``log openvpn.log`` is opened inside cwd; the first log/log-append option wins, so
        # --log after --config only takes effect when the profile has no log directive.
        argv = [
            "ip", "netns", "exec", self.client_ns,
            "openvpn", "--cd", str(cwd.resolve()), "--config", str(profile_path.resolve()),
            "--log", str(harness_log), "--daemon", "ovt-client",
            "--writepid", str(pidfile),
        ]  # fmt: skip
        if askpass is not None:
            argv += ["--askpass", str(askpass.resolve())]
        argv += list(extra_args)
        launch_out = run_dir / "launch.out"
        with launch_out.open("wb") as out:
            launched = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )

        connected = False
        failure: str | None = None
        pid: int | None = None
        if launched.returncode != 0:
            failure = f"openvpn exited with status {launched.returncode} before daemonizing"
        else:
            deadline = started + timeout
            pid_deadline = time.monotonic() + 5
            while True:
                if pid is None and (pid := _read_pid(pidfile)) is not None:
                    self._started_pids.append(pid)
                log = this_run_log()
                if re.search(rf"{COMPLETED}$", log, re.MULTILINE):
                    connected = True
                    break
                bad = _CLIENT_FAILURE.search(log)
                if bad:
                    failure = f"client log: {bad.group(0)!r}"
                    break
                if pid is not None and not process_running(pid):
                    failure = "openvpn exited"
                    break
                if pid is None and time.monotonic() > pid_deadline:
                    failure = "openvpn wrote no pid file (or exited at once)"
                    break
                if time.monotonic() > deadline:
                    failure = f"timed out after {timeout:g}s"
                    break
                time.sleep(0.05)

        ping_ok = False
        if connected:
            ping_ok = self._ping_server_tunnel()
            if not ping_ok:
                failure = f"no ping reply from {self.server_tunnel_address}"
        if pid is not None:
            _terminate(pid)
        # Whatever else still runs in the client namespace was started by this run.
        _stop_namespace_processes(self.client_ns)

        log = this_run_log()
        launch_text = _read_text(launch_out)
        if launch_text.strip():
            log = f"{launch_text}{log}"
        return ConnectResult(
            connected=connected,
            ping_ok=ping_ok,
            log=log,
            server_log=self.server_log()[server_log_offset:],
            log_path=log_path if log_path.exists() else None,
            seconds=time.monotonic() - started,
            failure=failure,
        )

    def _ping_server_tunnel(self, attempts: int = 3) -> bool:
        for _ in range(attempts):
            pinged = self.exec_in_client(["ping", "-c1", "-W2", self.server_tunnel_address])
            if pinged.returncode == 0:
                return True
        return False


def _server_config(handle: GatewayHandle, files: Path) -> str:
    pool = handle.addressing.pool
    return (
        "port 443\n"
        "proto tcp-server\n"
        "dev tun\n"
        "topology subnet\n"
        f"server {pool.network_address} {pool.netmask}\n"
        f"ca {files / 'p2s-roots.pem'}\n"
        f"cert {files / 'server.crt'}\n"
        f"key {files / 'server.key'}\n"
        "dh none\n"
        f"tls-auth {files / 'tls-auth.key'} 0\n"
        "data-ciphers AES-256-GCM\n"
        "auth SHA256\n"
        "tls-version-min 1.2\n"
        'remote-cert-eku "TLS Web Client Authentication"\n'
        "keepalive 10 60\n"
        "verb 3\n"
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _check(argv: Sequence[str]) -> None:
    done = _run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


@contextlib.contextmanager
def azure_like_gateway(
    workdir: Path,
    gateway: SampleGateway,
    p2s_roots: Sequence[bytes],
    *,
    start_timeout: float = 15,
) -> Iterator[GatewayHandle]:
    """Start an Azure-like gateway for ``gateway`` that accepts clients of ``p2s_roots`` (PEM).

    Skips the test when namespaces are unavailable. Files go under ``workdir`` (e.g. tmp_path).
    Namespaces, processes and ``/etc/netns/<client-ns>`` are removed on exit, whatever happens.
    """
    require_netns()
    if not p2s_roots:
        raise ValueError("at least one P2S root certificate is needed")
    tag = secrets.token_hex(4)
    workdir = workdir.resolve() / f"gateway-{tag}"
    files = workdir / "server"
    files.mkdir(parents=True, mode=0o700)
    handle = GatewayHandle(
        gateway=gateway,
        workdir=workdir,
        server_ns=f"ovt-s-{tag}",
        client_ns=f"ovt-c-{tag}",
        addressing=_Addressing.random(),
        server_log_path=files / "server.log",
    )
    netns_etc = NETNS_CONFIG_ROOT / handle.client_ns
    created: list[str] = []
    try:
        for ns in (handle.server_ns, handle.client_ns):
            _check(["ip", "netns", "add", ns])
            created.append(ns)
            _check(["ip", "-n", ns, "link", "set", "lo", "up"])
        _check(
            ["ip", "link", "add", "name", "ovt0", "netns", handle.server_ns, "type", "veth",
             "peer", "name", "ovt0", "netns", handle.client_ns]
        )  # fmt: skip
        link = handle.addressing
        for ns, address in (
            (handle.server_ns, link.server_link),
            (handle.client_ns, link.client_link),
        ):
            _check(["ip", "-n", ns, "addr", "add", f"{address}/{link.link_prefix}", "dev", "ovt0"])
            _check(["ip", "-n", ns, "link", "set", "ovt0", "up"])

        netns_etc.mkdir(parents=True, mode=0o755)
        (netns_etc / "hosts").write_text(
            f"127.0.0.1 localhost\n{link.server_link} {gateway.remote_host}\n", encoding="ascii"
        )

        (files / "p2s-roots.pem").write_bytes(b"".join(root.strip() + b"\n" for root in p2s_roots))
        (files / "server.crt").write_bytes(gateway.server.cert_pem)
        _write_private(files / "server.key", gateway.server.key_pem())
        _write_private(files / "tls-auth.key", gateway.tls_auth_key.encode("ascii"))
        config = files / "server.conf"
        config.write_text(_server_config(handle, files), encoding="ascii")
        pidfile = files / "server.pid"
        launched = _run(
            ["ip", "netns", "exec", handle.server_ns, "openvpn", "--cd", str(files),
             "--config", str(config), "--log", str(handle.server_log_path),
             "--daemon", "ovt-server", "--writepid", str(pidfile)],
            timeout=start_timeout,
        )  # fmt: skip
        if launched.returncode != 0:
            raise RuntimeError(
                f"openvpn server did not start ({launched.returncode}): "
                f"{launched.stderr.strip()}\n{handle.server_log()}"
            )
        handle.server_pid = _wait_for_pid(pidfile, start_timeout)
        if handle.server_pid is None:
            raise RuntimeError(f"openvpn server wrote no pid file\n{handle.server_log()}")
        handle._started_pids.append(handle.server_pid)
        _wait_until_listening(handle, start_timeout)
        yield handle
    finally:
        _teardown(handle, created, netns_etc)


def _wait_until_listening(handle: GatewayHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    assert handle.server_pid is not None
    while time.monotonic() < deadline:
        if COMPLETED in handle.server_log():
            listening = _run(
                ["ip", "netns", "exec", handle.server_ns, "ss", "-Hltn", "sport = :443"]
            )
            if listening.returncode == 0 and listening.stdout.strip():
                return
        if not process_running(handle.server_pid):
            raise RuntimeError(f"openvpn server exited\n{handle.server_log()}")
        time.sleep(0.05)
    raise RuntimeError(f"openvpn server not listening after {timeout:g}s\n{handle.server_log()}")


def _teardown(handle: GatewayHandle, namespaces: list[str], netns_etc: Path) -> None:
    """Stop every process this gateway started, then delete its namespaces and hosts file."""
    for pid in reversed(handle._started_pids):
        if process_running(pid):
            _terminate(pid)
    for ns in namespaces:
        _stop_namespace_processes(ns)
        _run(["ip", "netns", "del", ns])
    shutil.rmtree(netns_etc, ignore_errors=True)


def _stop_namespace_processes(ns: str) -> None:
    """Terminate what runs inside ``ns``: only ever called for namespaces created here."""
    listed = _run(["ip", "netns", "pids", ns])
    for word in listed.stdout.split():
        if word.isdigit():
            _terminate(int(word))


def namespace_exists(name: str) -> bool:
    """Whether ``ip netns list`` shows ``name`` (for cleanup checks)."""
    listed = _run(["ip", "netns", "list"])
    return any(line.split()[0] == name for line in listed.stdout.splitlines() if line.strip())
