"""The batch's durable state: ``OUTPUT/journal.jsonl``, an append-only journal.

One JSON object per line, appended under an flock(2) (several workers append at once):

- ``{"event": "begin", "name": ..., "files": [{"path", "sha256"}]}`` before a user's files are
  swapped in: from then on those exact bytes, found at those paths, are known to be ours.
  ``"fresh": true`` when ``OUTPUT/<name>`` did not exist: the whole folder is this batch's, so
  until a settled ``done`` follows, whatever it holds is ours (a power loss before the run's
  final ``syncfs`` can tear the files it wrote);
- ``{"event": "done", "name": ..., "record": {...}, "stat": {...}, "inputs": {...}}`` after
  they are all in place: the user's record, as the manifest shows it, and the stat keys (size,
  mtime, ctime, inode) of its files and credential inputs as they were, so that a re-run hashes
  only what was touched since;
- ``{"event": "settled"}`` once everything above it is durable (after the batch's final
  ``syncfs``): only a ``done`` above the last one has stat keys a re-run may trust (a power
  loss before it can leave a file's size and times in place with its bytes lost).

The worker writing a user appends both (so a record is never lost with a killed main
process). ``manifest.json``/``.csv`` are derived from the journal at the end of a run; a
killed run's next run reads the journal, so nothing it finished is lost, and files it
wrote but could not record are recognised by their digests. A torn line (power loss) is
ignored. At the end of a run the journal is compacted: per user in the list, the last
``done`` record and any ``begin`` after it.

Durability is grouped (:mod:`toolkit.batch.worker` writes a chunk of users at once): the one
ordering that matters is *a ``begin`` durable before the first rename of that user's swap*. A
user replacing an earlier version has its files made durable with it (the earlier version is
removed after the swap); a fresh user's files become durable at the end of the run, before the
batch reports anyone written (until then a crash can tear them, and the fresh ``begin`` lets
the next run write them again). A ``done`` line may become durable later (with the next group,
or at the end of the run): if it is lost, the ``begin`` still proves the files ours and the next
run rewrites that user.

A ``{"event": "manifest", "source": ..., "json": ..., "csv": ...}`` line records what the
manifest was last made from (the digest of the users' lines) and the digests of the two files,
so an unchanged re-run need not rebuild it to find it unchanged.

Memory: :class:`JournalState` keeps only where each user's lines are in the file (offsets), and
parses a line when it is asked for, so 10 000 users cost a few hundred kilobytes here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.jsontext import dumps_line, loads
from toolkit.output import PendingFile, append_line, file_digests, sync_file

JOURNAL = "journal.jsonl"
JOURNAL_VERSION = 1


def journal_path(output: Path) -> Path:
    return output / JOURNAL


@dataclass
class _UserLines:
    spans: list[tuple[int, int]] = field(default_factory=list)  # (offset, length), in order
    last_done: int = -1  # index into spans of the last "done", -1 when none


class JournalState:
    """What the journal says, per user: the last record and every digest written per path.

    Lines stay in the file; the state holds their offsets (and, for a folder of an older
    version without a journal, records given in memory by :meth:`apply`)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._users: dict[str, _UserLines] = {}
        self._memory: list[bytes] = []  # lines given by apply(): negative offsets -1, -2, ...
        self._fd: int | None = None  # the journal, opened at the first read
        self._manifest: tuple[int, int] | None = None  # the last "manifest" line
        self._settled = 0  # offset just past the last "settled" line: lines before it are durable
        self._end = 0  # offset just past the last user line

    # --- building ----------------------------------------------------------------------------
    def _add(self, name: str, event: str, span: tuple[int, int]) -> None:
        lines = self._users.setdefault(name, _UserLines())
        lines.spans.append(span)
        if event == "done":
            lines.last_done = len(lines.spans) - 1

    def apply(self, event: dict[str, Any]) -> None:
        """Add one event held in memory (a folder of an older version: its manifest)."""
        name, kind = event.get("name"), event.get("event")
        if isinstance(name, str) and kind in ("begin", "done"):
            self._memory.append(_line(event))
            self._add(name, str(kind), (-len(self._memory), 0))

    # --- reading -----------------------------------------------------------------------------
    def _raw(self, span: tuple[int, int]) -> bytes:
        offset, length = span
        if offset < 0:
            return self._memory[-offset - 1].rstrip(b"\n")
        if self._fd is None:
            assert self._path is not None  # noqa: S101 - offsets only come from a file
            self._fd = os.open(self._path, os.O_RDONLY)
        return os.pread(self._fd, length, offset)

    def _read(self, span: tuple[int, int]) -> dict[str, Any]:
        event = loads(self._raw(span))
        return event if isinstance(event, dict) else {}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def settled(self) -> bool:
        """True when every user line is above the last ``settled`` line (durable)."""
        return self._end <= self._settled

    def names(self) -> list[str]:
        return list(self._users)

    def __contains__(self, name: object) -> bool:
        return name in self._users and self._users[name].last_done >= 0

    def last_done(self, name: str) -> dict[str, Any] | None:
        """``name``'s last ``done`` event (its ``record``, and the ``stat`` keys of the files
        and ``inputs`` as they were written), or None. The files' ``stat`` keys are left out
        of a ``done`` not yet settled (see the module docstring): its files get hashed."""
        lines = self._users.get(name)
        if lines is None or lines.last_done < 0:
            return None
        span = lines.spans[lines.last_done]
        event = self._read(span)
        if span[0] >= self._settled:
            event.pop("stat", None)
        return event

    def record(self, name: str) -> dict[str, Any] | None:
        """``name``'s last ``done`` record, or None."""
        event = self.last_done(name)
        record = event.get("record") if event is not None else None
        return record if isinstance(record, dict) else None

    def owned(self, name: str) -> dict[str, list[str]]:
        """``name``'s digests keyed by path under ``OUTPUT/<name>/`` (for the writer): every
        digest a ``begin`` or ``done`` of that user recorded, and, after a fresh ``begin`` not
        yet settled by a ``done``, those of the files its folder holds."""
        lines = self._users.get(name)
        if lines is None:
            return {}
        prefix = f"{name}/"
        known: dict[str, set[str]] = {}
        # a fresh begin with no settled done after it: whatever the folder holds is ours (a
        # power loss before the run's final syncfs can tear its files, done line or not)
        fresh = False
        for span in lines.spans:
            event = self._read(span)
            kind = event.get("event")
            files = event.get("files") if kind == "begin" else None
            if kind == "done" and isinstance(event.get("record"), dict):
                files = event["record"].get("files")
            if kind == "begin":
                fresh = event.get("fresh") is True
            elif span[0] < self._settled:
                fresh = False
            for entry in files if isinstance(files, list) else []:
                path = entry.get("path") if isinstance(entry, dict) else None
                if isinstance(path, str) and path.startswith(prefix):
                    known.setdefault(path[len(prefix) :], set()).add(str(entry.get("sha256")))
        if fresh and self._path is not None:
            for path, digest in file_digests(self._path.parent / name):
                known.setdefault(path, set()).add(digest)
        return {path: sorted(digests) for path, digests in known.items()}

    def manifest_event(self) -> dict[str, Any] | None:
        """The last ``manifest`` line: what the manifest was last made from (see
        :func:`toolkit.batch.manifest.manifest_is_current`)."""
        return self._read(self._manifest) if self._manifest is not None else None

    def source_digest(self, names: list[str]) -> str:
        """SHA-256 over the lines compaction keeps for ``names``, in that order (no parsing)."""
        digest = hashlib.sha256()
        for name in names:
            digest.update(name.encode() + b"\0")
            for line in self.kept_lines(name):
                digest.update(line)
        return digest.hexdigest()

    def kept_lines(self, name: str) -> Iterator[bytes]:
        """The lines compaction keeps for ``name``: its last ``done`` and the ``begin`` after."""
        lines = self._users.get(name)
        if lines is None:
            return
        for span in lines.spans[max(lines.last_done, 0) :]:
            yield self._raw(span) + b"\n"


def _events(data: Iterable[bytes]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    offset = 0
    for raw in data:
        length = len(raw)
        line = raw.rstrip(b"\n")
        if line:
            try:
                event = loads(line)
            except ValueError:
                event = None  # a torn line of an interrupted append
            if isinstance(event, dict):
                yield offset, len(line), event
        offset += length


def read_journal(output: Path) -> JournalState | None:
    """The journal's state, or None when there is no journal (a folder of an older version)."""
    path = journal_path(output)
    state = JournalState(path)
    try:
        with open(path, "rb") as handle:
            for offset, length, event in _events(handle):
                name, kind = event.get("name"), event.get("event")
                if kind == "manifest":
                    state._manifest = (offset, length)
                    continue
                if kind == "settled":
                    state._settled = offset + length + 1
                    continue
                if not isinstance(name, str) or kind not in ("begin", "done"):
                    continue
                if kind == "done" and not isinstance(event.get("record"), dict):
                    continue
                state._add(name, str(kind), (offset, length))
                state._end = offset + length + 1
    except FileNotFoundError:
        return None
    except OSError:
        return JournalState()
    return state


def _line(event: dict[str, Any]) -> bytes:
    return dumps_line({"v": JOURNAL_VERSION, **event})


def append(output: Path, event: dict[str, Any], *, durable: bool = True) -> None:
    """Append one event as one line; fsynced unless ``durable`` is False. Several processes
    may append at once; a failed write is truncated away, never left torn."""
    append_line(journal_path(output), _line(event), durable=durable)


def append_many(output: Path, events: Iterable[dict[str, Any]], *, durable: bool = False) -> None:
    """Append several events with one write; fsynced only when ``durable`` (else the caller
    makes the group durable)."""
    data = b"".join(_line(event) for event in events)
    if data:
        append_line(journal_path(output), data, durable=durable)


SETTLED: dict[str, Any] = {"event": "settled"}


def settle(output: Path) -> None:
    """Record that every line above is durable (call right after a ``syncfs`` of the output's
    file system; this line itself need not be durable: losing it only costs hashing)."""
    append(output, SETTLED, durable=False)


def sync(output: Path) -> None:
    """fsync the journal (after appends with ``durable=False``)."""
    sync_file(journal_path(output))


def compact(output: Path, state: JournalState, names: list[str]) -> None:
    """Rewrite the journal with what still matters for the users in ``names`` (streamed; left
    alone when that is what it holds), settled: call it only once every line is durable."""
    pending = PendingFile(journal_path(output))
    try:
        for name in names:
            for line in state.kept_lines(name):
                pending.write(line)
        pending.write(_line(SETTLED))
        if state._manifest is not None:  # kept last: what the manifest was made from
            pending.write(state._raw(state._manifest) + b"\n")
    except BaseException:
        pending.abort()
        raise
    pending.finish()
