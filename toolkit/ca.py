"""The P2S certificate authority: a root for the gateway, client certificates, a ledger.

Pure core: nothing here prints, exits or prompts by itself (a ``PassphraseSource`` may prompt
through the callable the CLI put in it). Errors are ``ToolkitError`` subclasses.

A CA folder (made by :func:`init_ca`) holds::

    ca.json                    what this folder is (format marker, root CN, thumbprint)
    root.key                   the root's key, PKCS#8 PEM, encrypted unless asked not to (0600)
    root.pem                   the root certificate, PEM
    root.cer                   the root certificate, DER (the file for ``az --public-cert-data``)
    root-public-cert-data.txt  one line of base64 DER: the portal's "Public certificate data"
    ledger.json                every certificate issued, with its status (written atomically)
    ledger.lock                flock(2) target serialising ledger updates between processes
    certs/<SERIAL>.pem         a copy of every issued certificate (public), by serial
    issued/<name>/             default output of ``issue``: <name>.pem, .key (0600), .pfx

Azure has no CRL for P2S: revocation is by SHA-1 thumbprint on the gateway, so ``revoke`` marks
the ledger and returns the exact ``az`` and PowerShell commands to run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import fcntl
import json
import os
import re
import shlex
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from toolkit import pki
from toolkit.errors import CAError, CredentialsError, OutputError, UsageError
from toolkit.fsutil import DIR_MODE, FILE_MODE, atomic_write, ensure_private_dir
from toolkit.passphrase import PassphraseSource

CA_FORMAT = "ovpn-toolkit-ca"
LEDGER_FORMAT = "ovpn-toolkit-ca-ledger"
FORMAT_VERSION = 1

CAKeyType = Literal["rsa2048", "rsa3072", "rsa4096"]
CA_KEY_TYPES: tuple[CAKeyType, ...] = get_args(CAKeyType)
Status = Literal["valid", "revoked", "superseded"]
STATUSES: tuple[Status, ...] = get_args(Status)
State = Literal["valid", "expiring", "expired", "not-yet-valid", "revoked", "superseded"]

DEFAULT_ROOT_CN = "P2S Root CA"
DEFAULT_ROOT_DAYS = 3650
DEFAULT_CLIENT_DAYS = 365
DEFAULT_WARN_DAYS = 30
MAX_DAYS = 36500
MAX_NAME = 64
MAX_CN = 64  # X.509 upper bound for a common name
LOCK_TIMEOUT = 120.0  # seconds to wait for another process holding the ledger lock
PUBLIC_MODE = 0o644
BACKDATE = dt.timedelta(minutes=5)  # tolerate clients whose clock is slightly behind
PKCS12_MODERN_ROUNDS = 50_000
PKCS12_LEGACY_ROUNDS = 2_048

RG_PLACEHOLDER = "<resource-group>"
GATEWAY_PLACEHOLDER = "<gateway>"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_THUMBPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
NAME_HINT = (
    "use 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit "
    "(e.g. alice or alice@contoso.com)"
)


# --- small checks ---------------------------------------------------------------------------------
def check_cert_name(name: str) -> str:
    """``name`` unchanged if it is a safe certificate name (also a file name), else UsageError."""
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    elif not name[0].isascii() or not name[0].isalnum():
        problem = f"starts with {name[0]!r}"
    elif not _NAME_RE.match(name):
        bad = next((c for c in name if not re.match(r"[A-Za-z0-9._@-]", c)), name[0])
        problem = f"contains {bad!r}"
    elif ".." in name:
        problem = "contains '..'"
    if problem:
        raise UsageError(f"certificate name {name!r} {problem}", hint=NAME_HINT)
    return name


def _check_email(email: str) -> str:
    if not _EMAIL_RE.match(email):
        raise UsageError(
            f"e-mail address {email!r} is not valid",
            hint="give an ASCII address like alice@contoso.com; it becomes the certificate's CN",
        )
    if len(email) > MAX_CN:
        raise UsageError(
            f"e-mail address {email!r} is longer than {MAX_CN} characters (the CN limit)",
            hint="use a shorter address, or leave --email out to use the name as CN",
        )
    return email


def _check_cn(cn: str) -> str:
    if not cn.strip() or len(cn) > MAX_CN:
        raise UsageError(
            f"common name {cn[:80]!r} must have 1 to {MAX_CN} characters",
            hint='e.g. --cn "Contoso P2S Root"',
        )
    if any(unicodedata.category(c).startswith("C") for c in cn):
        raise UsageError("common name holds control characters", hint="use one line of text")
    return cn


def _check_days(days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(
            f"validity of {days} days is out of range", hint=f"use 1 to {MAX_DAYS} days"
        )
    return days


def _check_key_type(key_type: str) -> CAKeyType:
    if key_type not in CA_KEY_TYPES:
        close = difflib.get_close_matches(key_type, CA_KEY_TYPES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(
            f"key type {key_type!r} is not supported",
            hint=hint + "use one of " + ", ".join(CA_KEY_TYPES) + " (Azure documents RSA only)",
        )
    return key_type


def normalize_thumbprint(text: str) -> str | None:
    """``text`` as Azure's thumbprint form (40 upper-case hex digits), or None if it is not one."""
    candidate = re.sub(r"[\s:]", "", text).upper()
    return candidate if _THUMBPRINT_RE.match(candidate) else None


def azure_resource_name(text: str) -> str:
    """A name Azure accepts for a root or revoked certificate entry (letters, digits, ``._-``)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text)
    cleaned = cleaned.lstrip("._-").rstrip(".-")[:80].rstrip(".-")
    return cleaned or "P2SRoot"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> dt.datetime:
    return _utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


def serial_hex(serial: int) -> str:
    """A serial number as the ledger writes it: upper-case hex, at least 32 digits."""
    return f"{serial:032X}"


# --- folder layout --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CAPaths:
    """Where everything lives in a CA folder."""

    directory: Path

    @property
    def metadata(self) -> Path:
        return self.directory / "ca.json"

    @property
    def root_key(self) -> Path:
        return self.directory / "root.key"

    @property
    def root_pem(self) -> Path:
        return self.directory / "root.pem"

    @property
    def root_cer(self) -> Path:
        return self.directory / "root.cer"

    @property
    def public_cert_data(self) -> Path:
        return self.directory / "root-public-cert-data.txt"

    @property
    def ledger(self) -> Path:
        return self.directory / "ledger.json"

    @property
    def lock(self) -> Path:
        return self.directory / "ledger.lock"

    @property
    def certs(self) -> Path:
        return self.directory / "certs"

    @property
    def issued(self) -> Path:
        return self.directory / "issued"

    def store(self, path: Path) -> str:
        """``path`` as the ledger records it: relative to the CA folder when inside it."""
        absolute = Path(path).resolve()
        base = self.directory.resolve()
        try:
            return absolute.relative_to(base).as_posix()
        except ValueError:
            return str(absolute)

    def load(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.directory / path


# --- Azure commands -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AzureCommands:
    """The same gateway change as an Azure CLI line and as an Azure PowerShell line."""

    az: str
    powershell: str
    placeholders: bool  # True when <resource-group> / <gateway> still need filling in

    def to_json(self) -> dict[str, Any]:
        return {"az": self.az, "powershell": self.powershell, "placeholders": self.placeholders}


def _sh(value: str) -> str:
    return value if value in (RG_PLACEHOLDER, GATEWAY_PLACEHOLDER) else shlex.quote(value)


def _ps(value: str) -> str:
    if value in (RG_PLACEHOLDER, GATEWAY_PLACEHOLDER) or re.fullmatch(r"[A-Za-z0-9._-]+", value):
        return value
    return "'" + value.replace("'", "''") + "'"


def _target(gateway: str | None, resource_group: str | None) -> tuple[str, str, bool]:
    return (
        gateway or GATEWAY_PLACEHOLDER,
        resource_group or RG_PLACEHOLDER,
        not (gateway and resource_group),
    )


def root_upload_commands(
    certificate: x509.Certificate,
    der_path: Path,
    name: str,
    *,
    gateway: str | None = None,
    resource_group: str | None = None,
) -> AzureCommands:
    """Upload a P2S root to the gateway.

    ``az`` reads the file given to ``--public-cert-data`` and base64-encodes its bytes itself,
    so it gets the DER ``.cer`` file (not the base64 text file); PowerShell gets the base64.
    """
    gw, rg, placeholders = _target(gateway, resource_group)
    az = (
        f"az network vnet-gateway root-cert create --resource-group {_sh(rg)} "
        f"--gateway-name {_sh(gw)} --name {_sh(name)} "
        f"--public-cert-data {shlex.quote(str(Path(der_path).resolve()))}"
    )
    data = pki.azure_public_cert_data(certificate)
    ps = (
        f"Add-AzVpnClientRootCertificate -VpnClientRootCertificateName {_ps(name)} "
        f"-VirtualNetworkGatewayName {_ps(gw)} -ResourceGroupName {_ps(rg)} "
        f'-PublicCertData "{data}"'
    )
    return AzureCommands(az, ps, placeholders)


def revocation_commands(
    entry: LedgerEntry, *, gateway: str | None = None, resource_group: str | None = None
) -> AzureCommands:
    """Revoke one client certificate on the gateway, by thumbprint.

    The Azure entry is named ``<name>-<first 8 thumbprint digits>`` so that revoking a user's
    renewed certificate later does not overwrite (and so undo) the earlier revocation.
    """
    gw, rg, placeholders = _target(gateway, resource_group)
    name = entry.azure_revocation_name
    az = (
        f"az network vnet-gateway revoked-cert create --resource-group {_sh(rg)} "
        f"--gateway-name {_sh(gw)} --name {_sh(name)} --thumbprint {entry.thumbprint_sha1}"
    )
    ps = (
        f"Add-AzVpnClientRevokedCertificate -VpnClientRevokedCertificateName {_ps(name)} "
        f"-VirtualNetworkGatewayName {_ps(gw)} -ResourceGroupName {_ps(rg)} "
        f"-Thumbprint {entry.thumbprint_sha1}"
    )
    return AzureCommands(az, ps, placeholders)


# --- ledger ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerEntry:
    """One issued certificate as the ledger records it. No key material, ever."""

    name: str
    cn: str
    email: str | None
    serial: str  # upper-case hex
    thumbprint_sha1: str  # Azure's revocation key
    not_before: dt.datetime
    not_after: dt.datetime
    status: Status
    key_type: CAKeyType
    issued_at: dt.datetime
    ca_copy: str  # certs/<SERIAL>.pem, relative to the CA folder
    files: dict[str, str] = field(default_factory=dict)  # cert, key, pfx -> path
    revoked_at: dt.datetime | None = None
    superseded_by: str | None = None
    renewed_from: str | None = None

    @property
    def azure_revocation_name(self) -> str:
        return f"{azure_resource_name(self.name)}-{self.thumbprint_sha1[:8]}"

    def days_left(self, now: dt.datetime | None = None) -> int:
        """Whole days until not-after (negative once expired)."""
        delta = self.not_after - _utc(now or pki.utcnow())
        return int(delta.total_seconds() // 86400)

    def state(self, now: dt.datetime | None = None, *, warn_days: int = DEFAULT_WARN_DAYS) -> State:
        """The status with time taken into account: expired and expiring are computed."""
        if self.status != "valid":
            return self.status
        moment = _utc(now or pki.utcnow())
        if moment >= self.not_after:
            return "expired"
        if moment < self.not_before:
            return "not-yet-valid"
        if self.not_after - moment <= dt.timedelta(days=warn_days):
            return "expiring"
        return "valid"

    def path(self, directory: Path, kind: str = "cert") -> Path | None:
        """The file of ``kind`` (cert, key, pfx, or ca_copy) resolved against the CA folder."""
        stored = self.ca_copy if kind == "ca_copy" else self.files.get(kind)
        return CAPaths(directory).load(stored) if stored else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cn": self.cn,
            "email": self.email,
            "serial": self.serial,
            "thumbprint_sha1": self.thumbprint_sha1,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "status": self.status,
            "key_type": self.key_type,
            "issued_at": _iso(self.issued_at),
            "revoked_at": _iso(self.revoked_at) if self.revoked_at else None,
            "superseded_by": self.superseded_by,
            "renewed_from": self.renewed_from,
            "ca_copy": self.ca_copy,
            "files": dict(self.files),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerEntry:
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        key_type = data["key_type"]
        if key_type not in CA_KEY_TYPES:
            raise ValueError(f"unknown key type {key_type!r}")
        files = data.get("files") or {}
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ValueError("files must map kinds to paths")
        thumbprint = normalize_thumbprint(str(data["thumbprint_sha1"]))
        if thumbprint is None:
            raise ValueError("thumbprint_sha1 is not 40 hex digits")
        revoked_at = data.get("revoked_at")
        return cls(
            name=str(data["name"]),
            cn=str(data["cn"]),
            email=data.get("email"),
            serial=str(data["serial"]).upper(),
            thumbprint_sha1=thumbprint,
            not_before=_parse_iso(data["not_before"]),
            not_after=_parse_iso(data["not_after"]),
            status=status,
            key_type=key_type,
            issued_at=_parse_iso(data["issued_at"]),
            ca_copy=str(data["ca_copy"]),
            files={str(k): v for k, v in files.items()},
            revoked_at=_parse_iso(revoked_at) if revoked_at else None,
            superseded_by=data.get("superseded_by"),
            renewed_from=data.get("renewed_from"),
        )


def _not_a_ca(directory: Path) -> CAError:
    return CAError(
        f"{directory} is not a CA folder (no ca.json)",
        hint="give the folder made by `ovpn-toolkit ca init --output DIR`",
    )


def _require_ca_folder(paths: CAPaths) -> None:
    if not paths.directory.is_dir():
        raise CAError(
            f"{paths.directory}: no such CA folder",
            hint="create one with `ovpn-toolkit ca init --output DIR`, or check --ca",
        )
    if not paths.metadata.is_file():
        raise _not_a_ca(paths.directory)


def _load_entries(paths: CAPaths) -> list[LedgerEntry]:
    try:
        raw = paths.ledger.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CAError(
            f"{paths.ledger}: cannot read the ledger ({exc.strerror})",
            hint="check the CA folder's permissions",
        ) from exc
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CAError(f"{paths.ledger}: the ledger is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise CAError(
            f"{paths.ledger}: the ledger is not valid JSON (line {exc.lineno}: {exc.msg})",
            hint="fix the file by hand or restore it from a backup",
        ) from exc
    if not isinstance(document, dict) or document.get("format") != LEDGER_FORMAT:
        raise CAError(f"{paths.ledger}: not an ovpn-toolkit ledger (format marker missing)")
    if document.get("version") != FORMAT_VERSION:
        raise CAError(
            f"{paths.ledger}: ledger version {document.get('version')!r} is not supported",
            hint="use the ovpn-toolkit version that wrote it",
        )
    items = document.get("certificates")
    if not isinstance(items, list):
        raise CAError(f"{paths.ledger}: 'certificates' must be a list")
    entries = []
    for number, item in enumerate(items, start=1):
        try:
            if not isinstance(item, dict):
                raise TypeError("not an object")
            entries.append(LedgerEntry.from_json(item))
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CAError(
                f"{paths.ledger}: certificate #{number} is malformed ({detail})",
                hint="fix the entry by hand or restore the ledger from a backup",
            ) from exc
    return entries


def _write_entries(paths: CAPaths, entries: Sequence[LedgerEntry], now: dt.datetime) -> None:
    document = {
        "format": LEDGER_FORMAT,
        "version": FORMAT_VERSION,
        "updated": _iso(now),
        "certificates": [entry.to_json() for entry in entries],
    }
    atomic_write(paths.ledger, (json.dumps(document, indent=2) + "\n").encode(), PUBLIC_MODE)


@contextlib.contextmanager
def _ledger_lock(paths: CAPaths, timeout: float | None = None) -> Iterator[None]:
    """Exclusive flock(2) on ``ledger.lock`` for a read-modify-write of the ledger."""
    wait = LOCK_TIMEOUT if timeout is None else timeout
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise CAError(
            f"{paths.lock}: cannot open the ledger lock ({exc.strerror})",
            hint="check the CA folder's permissions",
        ) from exc
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CAError(
                        f"{paths.lock}: the ledger is locked by another process",
                        hint="wait for the other ovpn-toolkit run on this CA to finish",
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_ledger(directory: Path) -> list[LedgerEntry]:
    """Every certificate the CA in ``directory`` issued, oldest first."""
    paths = CAPaths(Path(directory))
    _require_ca_folder(paths)
    return _load_entries(paths)


def _same_name(entry: LedgerEntry, name: str) -> bool:
    # case-insensitive: issued/<name>/ must not collide on macOS and Windows file systems
    return entry.name.casefold() == name.casefold()


def _current(entries: Sequence[LedgerEntry], name: str, now: dt.datetime) -> LedgerEntry | None:
    live = [e for e in entries if _same_name(e, name) and e.state(now, warn_days=0) == "valid"]
    return live[-1] if live else None  # the ledger is in issue order


def _active(entries: Sequence[LedgerEntry], name: str) -> list[LedgerEntry]:
    """Entries for ``name`` still marked valid in the ledger (expired ones included)."""
    return [e for e in entries if _same_name(e, name) and e.status == "valid"]


def find_current(
    directory: Path, name: str, *, now: dt.datetime | None = None
) -> LedgerEntry | None:
    """The certificate issued for ``name`` that is valid now (not revoked, superseded, expired)."""
    return _current(read_ledger(directory), name, _utc(now or pki.utcnow()))


@dataclass(frozen=True)
class CertificateStatus:
    """A ledger entry with its state computed at one moment."""

    entry: LedgerEntry
    state: State
    days_left: int

    def to_json(self) -> dict[str, Any]:
        return {**self.entry.to_json(), "state": self.state, "days_left": self.days_left}


def list_certificates(
    directory: Path,
    *,
    expiring_within: int | None = None,
    warn_days: int = DEFAULT_WARN_DAYS,
    now: dt.datetime | None = None,
) -> list[CertificateStatus]:
    """The ledger with computed states; ``expiring_within`` keeps only the valid certificates
    that expire within that many days (or have already expired) and sets the warning window."""
    moment = _utc(now or pki.utcnow())
    window = warn_days if expiring_within is None else expiring_within
    if window < 0:
        raise UsageError(f"{window} days is negative", hint="give a number of days, e.g. 30")
    rows = [
        CertificateStatus(e, e.state(moment, warn_days=window), e.days_left(moment))
        for e in read_ledger(directory)
    ]
    if expiring_within is not None:
        rows = [r for r in rows if r.state in ("expiring", "expired")]
    return rows


# --- revoke ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RevokeResult:
    entry: LedgerEntry  # as now recorded (status revoked)
    already_revoked: bool
    commands: AzureCommands


def _select_for_revoke(
    paths: CAPaths, entries: Sequence[LedgerEntry], name_or_thumbprint: str
) -> LedgerEntry:
    thumbprint = normalize_thumbprint(name_or_thumbprint)
    if thumbprint is not None:
        match = [e for e in entries if e.thumbprint_sha1 == thumbprint]
        if match:
            return match[-1]
    named = [e for e in entries if _same_name(e, name_or_thumbprint)]
    if not named:
        what = "thumbprint" if thumbprint else "certificate named"
        names = sorted({e.name for e in entries})
        close = difflib.get_close_matches(name_or_thumbprint, names, n=1)
        raise CAError(
            f"no {what} {name_or_thumbprint!r} in the ledger {paths.ledger}",
            hint=f"did you mean {close[0]!r}?"
            if close
            else "`ovpn-toolkit ca list` shows names and thumbprints",
        )
    active = [e for e in named if e.status == "valid"]
    if active:
        return active[-1]
    latest = named[-1]
    if latest.status == "revoked":
        return latest
    raise CAError(
        f"{name_or_thumbprint!r} has no valid certificate in the ledger (only superseded ones)",
        hint="revoke a superseded certificate by its thumbprint (`ovpn-toolkit ca list` shows it)",
    )


def revoke(
    directory: Path,
    name_or_thumbprint: str,
    *,
    gateway: str | None = None,
    resource_group: str | None = None,
    now: dt.datetime | None = None,
) -> RevokeResult:
    """Mark a certificate revoked in the ledger and return the commands that revoke it on Azure.

    By name: that name's valid certificate. By thumbprint: exactly that one (also a superseded
    one, which Azure still accepts until it expires). Revoking twice is harmless.
    The CA key is not needed.
    """
    paths = CAPaths(Path(directory))
    _require_ca_folder(paths)
    moment = _utc(now or pki.utcnow())
    with _ledger_lock(paths):
        entries = _load_entries(paths)
        target = _select_for_revoke(paths, entries, name_or_thumbprint.strip())
        already = target.status == "revoked"
        if not already:
            updated = replace(target, status="revoked", revoked_at=moment)
            entries = [updated if e is target else e for e in entries]
            _write_entries(paths, entries, moment)
            target = updated
    return RevokeResult(
        target,
        already,
        revocation_commands(target, gateway=gateway, resource_group=resource_group),
    )


# --- init -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CAInfo:
    """The contents of ``ca.json``."""

    cn: str
    azure_name: str
    key_type: CAKeyType
    key_encrypted: bool
    thumbprint_sha1: str
    not_before: dt.datetime
    not_after: dt.datetime
    created: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CA_FORMAT,
            "version": FORMAT_VERSION,
            "cn": self.cn,
            "azure_name": self.azure_name,
            "key_type": self.key_type,
            "key_encrypted": self.key_encrypted,
            "thumbprint_sha1": self.thumbprint_sha1,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "created": _iso(self.created),
            "files": {
                "key": "root.key",
                "cert_pem": "root.pem",
                "cert_der": "root.cer",
                "public_cert_data": "root-public-cert-data.txt",
                "ledger": "ledger.json",
            },
        }


def _read_info(paths: CAPaths) -> CAInfo:
    _require_ca_folder(paths)
    try:
        document = json.loads(paths.metadata.read_text("utf-8"))
    except OSError as exc:
        raise CAError(f"{paths.metadata}: cannot read ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CAError(
            f"{paths.metadata}: not valid JSON", hint="restore ca.json from a backup"
        ) from exc
    if not isinstance(document, dict) or document.get("format") != CA_FORMAT:
        raise _not_a_ca(paths.directory)
    if document.get("version") != FORMAT_VERSION:
        raise CAError(f"{paths.metadata}: CA format version {document.get('version')!r} unknown")
    try:
        return CAInfo(
            cn=str(document["cn"]),
            azure_name=str(document["azure_name"]),
            key_type=_check_key_type(str(document["key_type"])),
            key_encrypted=bool(document["key_encrypted"]),
            thumbprint_sha1=str(document["thumbprint_sha1"]),
            not_before=_parse_iso(document["not_before"]),
            not_after=_parse_iso(document["not_after"]),
            created=_parse_iso(document["created"]),
        )
    except (KeyError, TypeError, ValueError, UsageError) as exc:
        raise CAError(f"{paths.metadata}: malformed ({exc})") from exc


def _read_root_certificate(paths: CAPaths) -> x509.Certificate:
    try:
        data = paths.root_pem.read_bytes()
    except OSError as exc:
        raise CAError(
            f"{paths.root_pem}: cannot read the root certificate ({exc.strerror})",
            hint="restore root.pem into the CA folder",
        ) from exc
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CAError(f"{paths.root_pem}: not a PEM certificate") from exc


@dataclass(frozen=True)
class CAInitResult:
    directory: Path
    certificate: x509.Certificate
    info: CAInfo
    files: tuple[Path, ...]

    @property
    def paths(self) -> CAPaths:
        return CAPaths(self.directory)

    @property
    def thumbprint_sha1(self) -> str:
        return self.info.thumbprint_sha1

    @property
    def public_cert_data(self) -> str:
        return pki.azure_public_cert_data(self.certificate)

    def upload_commands(
        self, *, gateway: str | None = None, resource_group: str | None = None
    ) -> AzureCommands:
        return root_upload_commands(
            self.certificate,
            self.paths.root_cer,
            self.info.azure_name,
            gateway=gateway,
            resource_group=resource_group,
        )


def _existing_ca_files(paths: CAPaths) -> list[Path]:
    candidates = (paths.metadata, paths.root_key, paths.root_pem, paths.root_cer, paths.ledger)
    return [p for p in candidates if p.exists()]


def _write_all(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Write every file, or none: files created here are removed again if one write fails."""
    created: list[Path] = []
    try:
        for path, data, mode in files:
            existed = path.exists()
            atomic_write(path, data, mode)
            if not existed:
                created.append(path)
    except BaseException:
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def init_ca(
    directory: Path,
    cn: str = DEFAULT_ROOT_CN,
    *,
    days: int = DEFAULT_ROOT_DAYS,
    key_type: str = "rsa2048",
    passphrase: bytes | None,
    now: dt.datetime | None = None,
) -> CAInitResult:
    """Create a new P2S root CA in ``directory`` (made 0700). ``passphrase=None`` leaves the
    key unencrypted: callers must ask for that explicitly. Never overwrites an existing CA."""
    directory = Path(directory)
    paths = CAPaths(directory)
    cn = _check_cn(cn)
    days = _check_days(days)
    key_type = _check_key_type(key_type)
    if passphrase is not None and not passphrase:
        raise CredentialsError("the passphrase for the CA key is empty")
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory} exists and is not a folder", hint="choose another --output")
    existing = _existing_ca_files(paths)
    if existing:
        raise OutputError(
            f"{directory} already holds a CA ({existing[0].name} exists)",
            hint="a CA is never overwritten: choose another --output folder",
        )
    ensure_private_dir(directory)
    try:
        directory.chmod(DIR_MODE)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot make the folder private ({exc.strerror})") from exc

    moment = _utc(now or pki.utcnow())
    root = pki.create_root(cn, days=days, key_type=key_type, not_before=moment - BACKDATE)
    cert = root.certificate
    info = CAInfo(
        cn=cn,
        azure_name=azure_resource_name(cn),
        key_type=key_type,
        key_encrypted=passphrase is not None,
        thumbprint_sha1=pki.thumbprint_sha1(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        created=moment,
    )
    empty_ledger = {
        "format": LEDGER_FORMAT,
        "version": FORMAT_VERSION,
        "updated": _iso(moment),
        "certificates": [],
    }
    files: list[tuple[Path, bytes, int]] = [
        (paths.root_key, root.key_pem(passphrase), FILE_MODE),
        (paths.root_pem, root.cert_pem, PUBLIC_MODE),
        (paths.root_cer, root.cert_der, PUBLIC_MODE),
        (paths.public_cert_data, (pki.azure_public_cert_data(cert) + "\n").encode(), PUBLIC_MODE),
        (paths.ledger, (json.dumps(empty_ledger, indent=2) + "\n").encode(), PUBLIC_MODE),
        # written last: a folder without ca.json is not a CA, even if a write failed midway
        (paths.metadata, (json.dumps(info.to_json(), indent=2) + "\n").encode(), PUBLIC_MODE),
    ]
    _write_all(files)
    return CAInitResult(directory, cert, info, tuple(path for path, _, _ in files))


def ca_upload_commands(
    directory: Path, *, gateway: str | None = None, resource_group: str | None = None
) -> AzureCommands:
    """The root upload commands for an existing CA folder (no key or passphrase needed)."""
    paths = CAPaths(Path(directory))
    info = _read_info(paths)
    return root_upload_commands(
        _read_root_certificate(paths),
        paths.root_cer,
        info.azure_name,
        gateway=gateway,
        resource_group=resource_group,
    )


# --- open, issue, renew ---------------------------------------------------------------------------
@dataclass(frozen=True)
class IssueResult:
    """What ``issue``/``renew`` made. ``issued`` holds the private key: never print it."""

    entry: LedgerEntry
    issued: pki.IssuedCertificate
    cert_path: Path
    key_path: Path
    pfx_path: Path | None
    superseded: tuple[LedgerEntry, ...] = ()
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"IssueResult(name={self.entry.name!r}, serial={self.entry.serial}, "
            f"thumbprint={self.entry.thumbprint_sha1})"
        )

    @property
    def certificate(self) -> x509.Certificate:
        return self.issued.certificate

    @property
    def thumbprint_sha1(self) -> str:
        return self.entry.thumbprint_sha1

    @property
    def files(self) -> tuple[Path, ...]:
        found = (self.cert_path, self.key_path, self.pfx_path)
        return tuple(p for p in found if p is not None)


def pkcs12_bytes(
    issued: pki.IssuedCertificate,
    password: bytes,
    *,
    friendly_name: str,
    chain: Sequence[x509.Certificate] = (),
    legacy: bool = False,
) -> bytes:
    """A password-protected PKCS#12: AES-256-CBC/PBKDF2 + SHA-256 MAC, or with ``legacy``
    PBE-SHA1-3DES + SHA-1 MAC (older Windows, iOS keychain imports)."""
    if not password:
        raise CredentialsError("the PKCS#12 password is empty", hint="give a non-empty password")
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = (
            builder.kdf_rounds(PKCS12_LEGACY_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - what the legacy format requires
        )
    else:
        builder = (
            builder.kdf_rounds(PKCS12_MODERN_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8"),
        issued.private_key,
        issued.certificate,
        list(chain) or None,
        builder.build(password),
    )


def _already_issued(entry: LedgerEntry) -> CAError:
    return CAError(
        f"{entry.name!r} already has a valid certificate (thumbprint {entry.thumbprint_sha1}, "
        f"expires {_iso(entry.not_after)})",
        hint=f"use `ca renew {entry.name}` to replace it, or `ca revoke {entry.name}` first",
    )


class CertificateAuthority:
    """An opened CA: root certificate and decrypted key in memory. Made by :func:`open_ca`."""

    def __init__(
        self, directory: Path, root: pki.IssuedCertificate, info: CAInfo, *, key_encrypted: bool
    ) -> None:
        self.paths = CAPaths(Path(directory))
        self._root = root
        self.info = info
        self.key_encrypted = key_encrypted

    def __repr__(self) -> str:
        return f"CertificateAuthority({str(self.directory)!r}, cn={self.info.cn!r})"

    @property
    def directory(self) -> Path:
        return self.paths.directory

    @property
    def certificate(self) -> x509.Certificate:
        return self._root.certificate

    @property
    def thumbprint_sha1(self) -> str:
        return pki.thumbprint_sha1(self._root.certificate)

    def upload_commands(
        self, *, gateway: str | None = None, resource_group: str | None = None
    ) -> AzureCommands:
        return root_upload_commands(
            self.certificate,
            self.paths.root_cer,
            self.info.azure_name,
            gateway=gateway,
            resource_group=resource_group,
        )

    def _check_root(self, moment: dt.datetime) -> None:
        if moment >= self.certificate.not_valid_after_utc:
            raise CAError(
                f"the root {self.paths.root_pem} expired on "
                f"{_iso(self.certificate.not_valid_after_utc)}",
                hint="create a new CA with `ca init`, upload it to the gateway, re-issue",
            )

    def issue(
        self,
        name: str,
        *,
        email: str | None = None,
        days: int = DEFAULT_CLIENT_DAYS,
        key_type: str = "rsa2048",
        output_dir: Path | None = None,
        pfx_password: bytes | None = None,
        pfx_legacy: bool = False,
        now: dt.datetime | None = None,
    ) -> IssueResult:
        """Issue a client certificate for ``name`` (CN = ``email`` when given, else ``name``).

        Writes ``<name>.pem``, ``<name>.key`` (0600) and, with ``pfx_password``, ``<name>.pfx``
        into ``output_dir`` (default ``issued/<name>/`` in the CA folder) and records it in the
        ledger. Refuses when ``name`` already has a valid certificate (use :meth:`renew`).
        Safe to call from several processes at once: the ledger update is under a file lock.
        """
        name = check_cert_name(name)
        if email is not None:
            _check_email(email)
        days = _check_days(days)
        checked_type = _check_key_type(key_type)
        moment = _utc(now or pki.utcnow())
        self._check_root(moment)
        current = _current(_load_entries(self.paths), name, moment)  # fail fast, before keygen
        if current is not None:
            raise _already_issued(current)
        key = pki.generate_key(checked_type)  # the slow part, outside the lock
        with _ledger_lock(self.paths):
            entries = _load_entries(self.paths)
            current = _current(entries, name, moment)
            if current is not None:
                raise _already_issued(current)
            return self._sign_and_record(
                entries,
                name=name,
                email=email,
                days=days,
                key_type=checked_type,
                key=key,
                output_dir=output_dir,
                pfx_password=pfx_password,
                pfx_legacy=pfx_legacy,
                moment=moment,
                replaces=_active(entries, name),  # expired but still marked valid
                renewed_from=None,
            )

    def renew(
        self,
        name: str,
        *,
        days: int | None = None,
        output_dir: Path | None = None,
        pfx_password: bytes | None = None,
        pfx_legacy: bool = False,
        now: dt.datetime | None = None,
    ) -> IssueResult:
        """Issue a successor for ``name``'s certificate: same name, e-mail and key type, a new
        key; ``days`` defaults to the old lifetime; files go where the old ones were. The old
        certificate is marked superseded (not revoked: Azure accepts it until it expires)."""
        name = check_cert_name(name)
        moment = _utc(now or pki.utcnow())
        self._check_root(moment)
        old = self._renewable(_load_entries(self.paths), name)
        lifetime = (old.not_after - old.not_before).total_seconds() / 86400
        new_days = _check_days(days if days is not None else max(1, round(lifetime)))
        key = pki.generate_key(old.key_type)
        with _ledger_lock(self.paths):
            entries = _load_entries(self.paths)
            latest = self._renewable(entries, name)
            if latest.serial != old.serial:
                raise CAError(
                    f"the certificate of {name!r} changed while renewing (another run?)",
                    hint="run the command again",
                )
            old_cert = latest.path(self.directory, "cert")
            return self._sign_and_record(
                entries,
                name=latest.name,
                email=latest.email,
                days=new_days,
                key_type=latest.key_type,
                key=key,
                output_dir=output_dir or (old_cert.parent if old_cert else None),
                pfx_password=pfx_password,
                pfx_legacy=pfx_legacy,
                moment=moment,
                replaces=_active(entries, name),
                renewed_from=latest.serial,
            )

    def _renewable(self, entries: Sequence[LedgerEntry], name: str) -> LedgerEntry:
        active = _active(entries, name)
        if not active:
            known = any(_same_name(e, name) for e in entries)
            raise CAError(
                f"{name!r} has no valid certificate to renew in {self.paths.ledger}",
                hint="its certificates are revoked or superseded: use `ca issue` for a new one"
                if known
                else "use `ca issue` to issue a first certificate",
            )
        return active[-1]

    def _sign_and_record(
        self,
        entries: list[LedgerEntry],
        *,
        name: str,
        email: str | None,
        days: int,
        key_type: CAKeyType,
        key: pki.PrivateKey,
        output_dir: Path | None,
        pfx_password: bytes | None,
        pfx_legacy: bool,
        moment: dt.datetime,
        replaces: Sequence[LedgerEntry],
        renewed_from: str | None,
    ) -> IssueResult:
        """Sign, write the files and the ledger. Called with the ledger lock held."""
        used = {e.serial for e in entries}
        serial = pki.random_serial()
        while serial_hex(serial) in used:  # 2**-126 per pair, but never reuse one
            serial = pki.random_serial()
        warnings: list[str] = []
        not_before = moment - BACKDATE
        not_after = not_before + dt.timedelta(days=days)
        root_end = self.certificate.not_valid_after_utc
        if not_after > root_end:
            not_after = root_end
            warnings.append(
                f"the certificate would outlive the root; it ends with the root on {_iso(root_end)}"
            )
        issued = pki.issue_certificate(
            self._root,
            email or name,
            key=key,
            email=email,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )
        cert = issued.certificate
        folder = Path(output_dir) if output_dir is not None else self.paths.issued / name
        cert_path = folder / f"{name}.pem"
        key_path = folder / f"{name}.key"
        pfx_path = folder / f"{name}.pfx" if pfx_password is not None else None
        ca_copy = self.paths.certs / f"{serial_hex(serial)}.pem"
        targets = [p for p in (cert_path, key_path, pfx_path) if p is not None]
        self._refuse_foreign_files(entries, name, targets)
        if ca_copy.exists():
            raise OutputError(f"{ca_copy} already exists", hint="the CA folder is inconsistent")

        files: list[tuple[Path, bytes, int]] = [
            (ca_copy, issued.cert_pem, PUBLIC_MODE),
            (cert_path, issued.cert_pem, PUBLIC_MODE),
            (key_path, issued.key_pem(), FILE_MODE),
        ]
        if pfx_path is not None and pfx_password is not None:
            data = pkcs12_bytes(
                issued,
                pfx_password,
                friendly_name=email or name,
                chain=[self.certificate],
                legacy=pfx_legacy,
            )
            files.append((pfx_path, data, FILE_MODE))
        _write_all(files)
        stale = folder / f"{name}.pfx"
        if pfx_path is None and stale.exists() and stale.resolve() in self._owned(entries, name):
            # the PKCS#12 of the certificate being replaced: never leave it next to the new pair
            with contextlib.suppress(OSError):
                stale.unlink()
                warnings.append(
                    f"removed {stale} (it held the replaced certificate); "
                    "ask for a PKCS#12 again to get a new one"
                )

        record = {"cert": self.paths.store(cert_path), "key": self.paths.store(key_path)}
        if pfx_path is not None:
            record["pfx"] = self.paths.store(pfx_path)
        entry = LedgerEntry(
            name=name,
            cn=email or name,
            email=email,
            serial=serial_hex(serial),
            thumbprint_sha1=pki.thumbprint_sha1(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            status="valid",
            key_type=key_type,
            issued_at=moment,
            ca_copy=self.paths.store(ca_copy),
            files=record,
            renewed_from=renewed_from,
        )
        superseded = tuple(
            replace(e, status="superseded", superseded_by=entry.serial) for e in replaces
        )
        by_serial = {e.serial: e for e in superseded}
        updated = [by_serial.get(e.serial, e) for e in entries]
        _write_entries(self.paths, [*updated, entry], moment)
        return IssueResult(
            entry, issued, cert_path, key_path, pfx_path, superseded, tuple(warnings)
        )

    def _owned(self, entries: Sequence[LedgerEntry], name: str) -> set[Path]:
        return {
            self.paths.load(stored).resolve()
            for e in entries
            if _same_name(e, name)
            for stored in e.files.values()
        }

    def _refuse_foreign_files(
        self, entries: Sequence[LedgerEntry], name: str, targets: Sequence[Path]
    ) -> None:
        """Existing files may be replaced only when the ledger records them for this name."""
        owned = self._owned(entries, name)
        for path in targets:
            if path.exists() and path.resolve() not in owned:
                raise OutputError(
                    f"{path} already exists and is not a file of {name!r} in this CA's ledger",
                    hint="choose another --output folder, or move the file away",
                )


def open_ca(
    directory: Path, passphrase: PassphraseSource | bytes | None = None
) -> CertificateAuthority:
    """Load the root certificate and its key (decrypted with ``passphrase`` when encrypted)."""
    paths = CAPaths(Path(directory))
    info = _read_info(paths)
    cert = _read_root_certificate(paths)
    try:
        key_data = paths.root_key.read_bytes()
    except OSError as exc:
        raise CAError(
            f"{paths.root_key}: cannot read the CA key ({exc.strerror})",
            hint="restore root.key into the CA folder, or check its permissions",
        ) from exc
    encrypted = b"ENCRYPTED" in key_data
    password: bytes | None = None
    if encrypted:
        if isinstance(passphrase, PassphraseSource):
            password = passphrase.resolve(f"the CA key {paths.root_key}")
        else:
            password = passphrase
        if not password:
            raise CredentialsError(
                f"{paths.root_key}: the CA key is encrypted and no passphrase was given",
                hint="use --passphrase-env VAR or --passphrase-file FILE "
                "(or run in a terminal to be prompted)",
            )
    try:
        key = serialization.load_pem_private_key(key_data, password)
    except ValueError as exc:
        if encrypted:
            raise CredentialsError(
                f"{paths.root_key}: wrong passphrase for the CA key",
                hint="check the value of --passphrase-env / --passphrase-file",
            ) from exc
        raise CAError(f"{paths.root_key}: not a readable private key") from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise CAError(f"{paths.root_key}: not a usable private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CAError(f"{paths.root_key}: unsupported key type (RSA expected)")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise CAError(
            f"{paths.root_key} does not belong to {paths.root_pem}",
            hint="restore the matching root.key and root.pem",
        )
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CAError(f"{paths.root_pem} is not a CA certificate (CA:TRUE missing)")
    return CertificateAuthority(
        paths.directory, pki.IssuedCertificate(cert, key), info, key_encrypted=encrypted
    )


def load_issued(
    directory: Path, entry: LedgerEntry, passphrase: PassphraseSource | None = None
) -> pki.IssuedCertificate:
    """The certificate and key files recorded for ``entry`` (for re-using an issued one)."""
    cert_path = entry.path(directory, "cert")
    key_path = entry.path(directory, "key")
    if cert_path is None or key_path is None:
        raise CAError(f"ledger entry {entry.name!r} ({entry.serial}) records no cert/key files")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key_data = key_path.read_bytes()
    except OSError as exc:
        raise CAError(
            f"{exc.filename}: cannot read the issued file of {entry.name!r} ({exc.strerror})",
            hint="re-issue with `ca renew`",
        ) from exc
    except ValueError as exc:
        raise CAError(f"{cert_path}: not a PEM certificate") from exc
    if pki.thumbprint_sha1(cert) != entry.thumbprint_sha1:
        raise CAError(
            f"{cert_path} is not the certificate the ledger records for {entry.name!r}",
            hint="the file was replaced; re-issue with `ca renew`",
        )
    password = (
        passphrase.resolve(str(key_path)) if b"ENCRYPTED" in key_data and passphrase else None
    )
    try:
        key = serialization.load_pem_private_key(key_data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CredentialsError(f"{key_path}: cannot load the private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialsError(f"{key_path}: unsupported key type")
    return pki.IssuedCertificate(cert, key)
