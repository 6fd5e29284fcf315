"""The CA folder's layout and its ledger's entries: every certificate issued, with its status.

How the ledger is stored (``ledger.json`` plus ``ledger.journal``) and read: ``toolkit.ca.store``.
Changes are made under an flock(2) on ``ledger.lock`` (:func:`_ledger_lock`), so several
processes (batch workers) can issue at once. It holds no key material, ever.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from toolkit.ca import keys
from toolkit.ca.azure import azure_resource_name
from toolkit.ca.keys import KEY_TYPES, KeyType
from toolkit.errors import CAError
from toolkit.output import exclusive_lock

CA_FORMAT = "ovpn-toolkit-ca"
LEDGER_FORMAT = "ovpn-toolkit-ca-ledger"
FORMAT_VERSION = 1

Status = Literal["valid", "revoked", "superseded"]
STATUSES: tuple[Status, ...] = get_args(Status)
State = Literal["valid", "expiring", "expired", "not-yet-valid", "revoked", "superseded"]

DEFAULT_WARN_DAYS = 30
LOCK_TIMEOUT = 120.0  # seconds to wait for another process holding the ledger lock
_THUMBPRINT_RE = re.compile(r"^[0-9A-F]{40}$")


def normalize_thumbprint(text: str) -> str | None:
    """``text`` as Azure's thumbprint form (40 upper-case hex digits), or None if it is not one."""
    candidate = re.sub(r"[\s:]", "", text).upper()
    return candidate if _THUMBPRINT_RE.match(candidate) else None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> dt.datetime:
    return _utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


def serial_hex(serial: int) -> str:
    """A serial number as the ledger writes it: upper-case hex, at least 32 digits."""
    return f"{serial:032X}"


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
    def journal(self) -> Path:
        return self.directory / "ledger.journal"

    @property
    def lock(self) -> Path:
        return self.directory / "ledger.lock"

    @property
    def certs(self) -> Path:
        return self.directory / "certs"

    @property
    def issued(self) -> Path:
        return self.directory / "issued"

    @functools.cached_property
    def _resolved(self) -> Path:
        return self.directory.resolve()

    def store(self, path: Path) -> str:
        """``path`` as the ledger records it: relative to the CA folder when inside it."""
        return self.store_resolved(Path(path).resolve())

    def store_resolved(self, absolute: Path) -> str:
        """:meth:`store` for a path already resolved."""
        try:
            return absolute.relative_to(self._resolved).as_posix()
        except ValueError:
            return str(absolute)

    def load(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.directory / path


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
    key_type: KeyType
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
        delta = self.not_after - _utc(now or keys.utcnow())
        return int(delta.total_seconds() // 86400)

    def state(self, now: dt.datetime | None = None, *, warn_days: int = DEFAULT_WARN_DAYS) -> State:
        """The status with time taken into account: expired and expiring are computed."""
        if self.status != "valid":
            return self.status
        moment = _utc(now or keys.utcnow())
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
        if key_type not in KEY_TYPES:
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


@contextlib.contextmanager
def _ledger_lock(paths: CAPaths, timeout: float | None = None) -> Iterator[None]:
    """Exclusive flock(2) on ``ledger.lock`` for a read-modify-write of the ledger."""
    with exclusive_lock(paths.lock, LOCK_TIMEOUT if timeout is None else timeout, holder="CA"):
        yield


def _same_name(entry: LedgerEntry, name: str) -> bool:
    # case-insensitive: issued/<name>/ must not collide on macOS and Windows file systems
    return entry.name.casefold() == name.casefold()


def _current(entries: Sequence[LedgerEntry], name: str, now: dt.datetime) -> LedgerEntry | None:
    live = [e for e in entries if _same_name(e, name) and e.state(now, warn_days=0) == "valid"]
    return live[-1] if live else None  # the ledger is in issue order


def _active(entries: Sequence[LedgerEntry], name: str) -> list[LedgerEntry]:
    """Entries for ``name`` still marked valid in the ledger (expired ones included)."""
    return [e for e in entries if _same_name(e, name) and e.status == "valid"]
