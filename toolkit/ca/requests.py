"""What an issue is asked for and what it gives: :class:`IssueRequest`, :class:`IssueResult`,
and the stages a request goes through in :meth:`CertificateAuthority.issue_many`
(signed outside the ledger lock, planned under it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from toolkit.ca import keys
from toolkit.ca.keys import KeyType
from toolkit.ca.ledger import LedgerEntry, _iso
from toolkit.errors import CAError


@dataclass(frozen=True)
class IssueResult:
    """What ``issue``/``renew`` made. ``issued`` holds the private key: never print it."""

    entry: LedgerEntry
    issued: keys.IssuedCertificate
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


@dataclass(frozen=True)
class IssueRequest:
    """One certificate for :meth:`CertificateAuthority.issue_many`: a first issue, or with
    ``renew`` a successor for the name's current certificate (then ``email`` and ``key_type``
    are the old certificate's, and ``days`` defaults to its lifetime)."""

    name: str
    email: str | None = None
    days: int | None = None  # default: DEFAULT_CLIENT_DAYS, or the renewed one's lifetime
    key_type: str = "rsa2048"
    output_dir: Path | None = None
    pfx_password: bytes | None = field(default=None, repr=False)
    pfx_legacy: bool = False
    renew: bool = False


@dataclass(frozen=True)
class _Signed:
    """A certificate signed before the ledger lock is taken, with its files' bytes."""

    issued: keys.IssuedCertificate = field(repr=False)
    serial: int
    key_pem: bytes = field(repr=False)
    pfx: bytes | None = field(repr=False)
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Pending:
    """A request checked and signed outside the lock, to be recorded under it."""

    index: int
    request: IssueRequest
    name: str
    email: str | None
    days: int
    key_type: KeyType
    renewing: str | None  # the serial being renewed
    signed: _Signed


@dataclass(frozen=True)
class _Planned:
    """A pending certificate checked under the lock: its files and ledger entries."""

    index: int
    files: list[tuple[Path, bytes, int]]
    records: list[LedgerEntry]  # superseded ones, then the new entry
    result: IssueResult
    stale_pfx: Path | None  # the replaced certificate's PKCS#12, removed after the write
    orphan_copy: Path | None  # certs/<serial>.pem of an interrupted issue being replaced
    new_folders: set[Path]  # folders whose new entries must be synced


def _already_issued(entry: LedgerEntry) -> CAError:
    return CAError(
        f"{entry.name!r} already has a valid certificate (thumbprint {entry.thumbprint_sha1}, "
        f"expires {_iso(entry.not_after)})",
        hint=f"use `ca renew {entry.name}` to replace it, or `ca revoke {entry.name}` first",
    )
