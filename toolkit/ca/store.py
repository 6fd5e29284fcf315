"""How the ledger is stored and read: ``ledger.json`` (a snapshot) plus ``ledger.journal``.

Every change (issue, renew, revoke) appends its entries to the journal, one JSON object per
line, with one ``write(2)`` and one fsync under the ledger lock; the journal is folded into the
snapshot (rewritten atomically) once it outgrows it, so each entry is rewritten O(1) times on
average instead of the whole ledger once per issue. Readers need no lock and read only what
changed since they last looked (a batch worker looks its users up by name).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.ca import keys
from toolkit.ca.ledger import (
    DEFAULT_WARN_DAYS,
    FORMAT_VERSION,
    LEDGER_FORMAT,
    CAPaths,
    LedgerEntry,
    State,
    _current,
    _iso,
    _require_ca_folder,
    _utc,
)
from toolkit.errors import CAError, ToolkitError, UsageError
from toolkit.output import PUBLIC_MODE, append_line, atomic_write, fsync_dir


def _parse_snapshot(paths: CAPaths, raw: bytes) -> list[LedgerEntry]:
    """The entries of ``ledger.json`` (its bytes ``raw``)."""
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


def _parse_journal(paths: CAPaths, data: bytes, first_line: int) -> list[LedgerEntry]:
    """The entries of complete journal lines (``data`` ends with a newline or is empty)."""
    entries = []
    for number, line in enumerate(data.splitlines(), start=first_line):
        try:
            item = json.loads(line.decode("utf-8"))
            if not isinstance(item, dict):
                raise TypeError("not an object")
            entries.append(LedgerEntry.from_json(item))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CAError(
                f"{paths.journal}: line {number} is malformed ({detail})",
                hint="fix the line by hand or restore the CA folder from a backup",
            ) from exc
    return entries


# valid -> superseded -> revoked, never back: merging is order-free (see _State.apply)
_RANK: dict[str, int] = {"valid": 0, "superseded": 1, "revoked": 2}


class _State:
    """The merged ledger: snapshot entries, then journal entries, by serial in issue order.

    A journal line for a serial already known replaces it only when its status is further
    along (valid -> superseded -> revoked): applying a line twice, or a snapshot that already
    holds it, changes nothing, so a reader may see a compaction half done and still be right.
    """

    def __init__(self) -> None:
        self.by_serial: dict[str, LedgerEntry] = {}
        self.by_name: dict[str, list[str]] = {}  # case-folded name -> serials, issue order

    def apply(self, entry: LedgerEntry) -> None:
        old = self.by_serial.get(entry.serial)
        if old is None:
            self.by_serial[entry.serial] = entry
            self.by_name.setdefault(entry.name.casefold(), []).append(entry.serial)
        elif _RANK[entry.status] > _RANK[old.status]:
            self.by_serial[entry.serial] = entry

    def entries(self) -> list[LedgerEntry]:
        return list(self.by_serial.values())

    def history(self, name: str) -> list[LedgerEntry]:
        serials = self.by_name.get(name.casefold(), ())
        return [self.by_serial[s] for s in serials]


def _file_id(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@dataclass
class _Cached:
    """What one process knows of a CA folder's ledger, to read only the new journal lines."""

    state: _State
    snapshot_id: tuple[int, int, int, int, int] | None
    journal_id: tuple[int, int] | None  # device, inode
    offset: int  # journal bytes applied (always just after a newline)
    lines: int  # journal lines applied
    journal_size: int  # the journal's size when last read (> offset: a torn last line)


_CACHE: dict[Path, _Cached] = {}
_CACHE_SIZE = 8
_CACHE_LOCK = threading.RLock()  # one reader or writer of the cache at a time per process


def _stat_id(path: Path) -> tuple[int, int, int, int, int] | None:
    try:
        return _file_id(path.stat())
    except FileNotFoundError:
        return None


def _cannot_read(path: Path, exc: OSError) -> CAError:
    return CAError(
        f"{path}: cannot read the ledger ({exc.strerror})", hint="check the CA folder's permissions"
    )


def _read_fd(fd: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _complete(data: bytes) -> bytes:
    """The complete lines of ``data``: a last line without its newline is being written, or
    was torn by a crash before its fsync returned (so never acknowledged): not applied."""
    return data[: data.rfind(b"\n") + 1]


def _refresh(paths: CAPaths) -> _Cached:
    """The ledger now, reading only what changed since this process last looked.

    No file lock is needed: the journal is opened before the snapshot is read, and a
    compaction writes the snapshot before it empties the journal (a new file), so what is read
    is the old journal with the old or new snapshot, or the new journal with the new one."""
    with _CACHE_LOCK:
        return _refresh_cache(paths)


def _refresh_cache(paths: CAPaths) -> _Cached:
    key = paths.directory.absolute()
    try:
        fd: int | None = os.open(paths.journal, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    except OSError as exc:
        raise _cannot_read(paths.journal, exc) from exc
    try:
        journal_id = None
        if fd is not None:
            st = os.fstat(fd)
            journal_id = (st.st_dev, st.st_ino)
        cached = _CACHE.get(key)
        if (
            cached is not None
            and fd is not None
            and cached.journal_id == journal_id
            and (cached.offset == 0 or os.pread(fd, 1, cached.offset - 1) == b"\n")
        ):
            data = _read_fd(fd, cached.offset)
            if _stat_id(paths.ledger) == cached.snapshot_id:
                new = _complete(data)
                for entry in _parse_journal(paths, new, cached.lines + 1):
                    cached.state.apply(entry)
                cached.offset += len(new)
                cached.lines += new.count(b"\n")
                cached.journal_size = cached.offset + len(data) - len(new)
                return cached
        unchanged = cached is not None and fd is None and cached.journal_id is None
        if unchanged and cached is not None and _stat_id(paths.ledger) == cached.snapshot_id:
            return cached
        data = _read_fd(fd, 0) if fd is not None else b""
        try:
            with paths.ledger.open("rb") as handle:
                snapshot_id = _file_id(os.fstat(handle.fileno()))
                raw = handle.read()
        except FileNotFoundError:
            snapshot_id, raw = None, None
        except OSError as exc:
            raise _cannot_read(paths.ledger, exc) from exc
        state = _State()
        for entry in _parse_snapshot(paths, raw) if raw is not None else ():
            state.apply(entry)
        new = _complete(data)
        for entry in _parse_journal(paths, new, 1):
            state.apply(entry)
        fresh = _Cached(state, snapshot_id, journal_id, len(new), new.count(b"\n"), len(data))
        _CACHE.pop(key, None)
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = fresh
        return fresh
    finally:
        if fd is not None:
            os.close(fd)


def _load_entries(paths: CAPaths) -> list[LedgerEntry]:
    """Every entry of the ledger (snapshot and journal), in issue order."""
    return _refresh(paths).state.entries()


# the journal is folded into ledger.json once it outgrows it (and this floor): each entry is
# rewritten O(1) times on average, instead of once per issue as a whole-file ledger would
COMPACT_MIN_BYTES = 256 * 1024


def _snapshot_bytes(entries: Sequence[LedgerEntry], now: dt.datetime) -> bytes:
    document = {
        "format": LEDGER_FORMAT,
        "version": FORMAT_VERSION,
        "updated": _iso(now),
        "certificates": [entry.to_json() for entry in entries],
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _compact(paths: CAPaths, cached: _Cached, now: dt.datetime) -> None:
    """Fold the journal into ``ledger.json`` (with the lock held). The snapshot is durable
    (file and rename) before the journal is replaced by an empty one: a crash in between
    leaves both, and merging them gives the same ledger."""
    atomic_write(paths.ledger, _snapshot_bytes(cached.state.entries(), now), PUBLIC_MODE)
    fsync_dir(paths.directory)
    atomic_write(paths.journal, b"", PUBLIC_MODE)
    fsync_dir(paths.directory)
    cached.snapshot_id = _stat_id(paths.ledger)
    journal = paths.journal.stat()
    cached.journal_id = (journal.st_dev, journal.st_ino)
    cached.offset = cached.lines = cached.journal_size = 0


def _record_entries(
    paths: CAPaths, cached: _Cached, entries: Sequence[LedgerEntry], now: dt.datetime
) -> None:
    """Record ``entries`` (new ones, and new states of known ones) with one append and one
    fsync. Called with the lock held and ``cached`` refreshed under it; when this returns,
    the entries are on disk."""
    if not entries:
        return
    with _CACHE_LOCK:
        _append(paths, cached, entries, now)


def _append(
    paths: CAPaths, cached: _Cached, entries: Sequence[LedgerEntry], now: dt.datetime
) -> None:
    if cached.journal_id is None or cached.journal_size > cached.offset:
        # no journal yet (a new CA, or one made before the journal), or a torn last line
        # (a crash during an append): start a clean journal, the snapshot holding the rest
        _compact(paths, cached, now)
    data = b"".join(
        json.dumps(e.to_json(), separators=(",", ":")).encode() + b"\n" for e in entries
    )
    append_line(paths.journal, data)
    for entry in entries:
        cached.state.apply(entry)
    cached.offset += len(data)
    cached.lines += len(entries)
    cached.journal_size = cached.offset
    snapshot = cached.snapshot_id[2] if cached.snapshot_id else 0
    if cached.offset > max(COMPACT_MIN_BYTES, snapshot):
        # the entries are on disk already: a compaction that fails leaves a longer journal,
        # not a failed issue (a failed snapshot write changes nothing; a journal not yet
        # emptied merges with the new snapshot to the same ledger)
        with contextlib.suppress(ToolkitError):
            _compact(paths, cached, now)


def read_ledger(directory: Path) -> list[LedgerEntry]:
    """Every certificate the CA in ``directory`` issued, oldest first."""
    paths = CAPaths(Path(directory))
    _require_ca_folder(paths)
    return _load_entries(paths)


def find_current(
    directory: Path,
    name: str,
    *,
    now: dt.datetime | None = None,
    entries: Sequence[LedgerEntry] | None = None,
) -> LedgerEntry | None:
    """The certificate issued for ``name`` that is valid now (not revoked, superseded, expired).

    ``entries``: the ledger already read (:func:`read_ledger`), so it is not parsed again."""
    found = certificate_history(directory, name) if entries is None else entries
    return _current(found, name, _utc(now or keys.utcnow()))


def certificate_history(directory: Path, name: str) -> list[LedgerEntry]:
    """Every certificate issued for ``name`` (compared without case), oldest first.

    Reads only what changed in the ledger since this process last read it, and looks the name
    up without going through the other entries: a batch calls it once per user."""
    paths = CAPaths(Path(directory))
    _require_ca_folder(paths)
    return _refresh(paths).state.history(name)


def current_by_name(
    entries: Sequence[LedgerEntry], *, now: dt.datetime | None = None
) -> dict[str, LedgerEntry]:
    """Each name's (case-folded) certificate valid now, from one read of the ledger."""
    moment = _utc(now or keys.utcnow())
    current: dict[str, LedgerEntry] = {}
    for entry in entries:  # in issue order: the last valid one wins, as in find_current
        if entry.state(moment, warn_days=0) == "valid":
            current[entry.name.casefold()] = entry
    return current


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
    moment = _utc(now or keys.utcnow())
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
