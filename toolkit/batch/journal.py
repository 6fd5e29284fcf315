"""The batch's durable state: ``OUTPUT/journal.jsonl``, an append-only journal.

One JSON object per line, appended with one ``write(2)`` under an flock(2) and fsynced:

- ``{"event": "begin", "name": ..., "files": [{"path", "sha256"}]}`` before a user's files are
  swapped in: from then on those exact bytes, found at those paths, are known to be ours;
- ``{"event": "done", "name": ..., "record": {...}}`` after they are all in place (durable):
  the user's record, as the manifest shows it.

The worker writing a user appends both (so a record is never lost with a killed main
process). ``manifest.json``/``.csv`` are derived from the journal at the end of a run; a
killed run's next run reads the journal, so nothing it finished is lost, and files it
wrote but could not record are recognised by their digests. A torn last line (power loss)
is ignored. At the end of a run the journal is compacted: per user in the list, the last
``done`` record and any ``begin`` after it.

Durability can be grouped: the one ordering that matters is *files durable before the
``begin`` record that claims them is needed*, i.e. a ``begin`` must be durable before the
first rename of that user's swap. A ``done`` record may be fsynced later (``durable=False``
and :meth:`Journal.sync` once per N users or at the end): if it is lost, the ``begin`` still
proves the files ours and the next run rewrites that user.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.output import append_line, atomic_write, sync_file

JOURNAL = "journal.jsonl"
JOURNAL_VERSION = 1


def journal_path(output: Path) -> Path:
    return output / JOURNAL


@dataclass
class JournalState:
    """What the journal says: each user's last record and every digest written per path."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # name -> output-relative path -> digests the toolkit wrote there (begin or done)
    known: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    begins_after: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def owned(self, name: str) -> dict[str, list[str]]:
        """``name``'s digests keyed by path under ``OUTPUT/<name>/`` (for the writer)."""
        prefix = f"{name}/"
        return {
            path[len(prefix) :]: sorted(digests)
            for path, digests in self.known.get(name, {}).items()
            if path.startswith(prefix)
        }

    def _learn(self, name: str, files: Any) -> None:
        paths = self.known.setdefault(name, {})
        for entry in files if isinstance(files, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                paths.setdefault(entry["path"], set()).add(str(entry.get("sha256")))

    def apply(self, event: dict[str, Any]) -> None:
        name = event.get("name")
        if not isinstance(name, str):
            return
        if event.get("event") == "begin":
            self._learn(name, event.get("files"))
            self.begins_after.setdefault(name, []).append(event)
        elif event.get("event") == "done" and isinstance(event.get("record"), dict):
            record = event["record"]
            self._learn(name, record.get("files"))
            self.records[name] = record
            self.begins_after[name] = []


def read_journal(output: Path) -> JournalState | None:
    """The journal's state, or None when there is no journal (a folder of an older version)."""
    try:
        data = journal_path(output).read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return JournalState()
    state = JournalState()
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn line of an interrupted append
        if isinstance(event, dict):
            state.apply(event)
    return state


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps({"v": JOURNAL_VERSION, **event}, separators=(",", ":")) + "\n").encode()


def append(output: Path, event: dict[str, Any], *, durable: bool = True) -> None:
    """Append one event as one line; fsynced unless ``durable`` is False. Several processes
    may append at once; a failed write is truncated away, never left torn."""
    append_line(journal_path(output), _line(event), durable=durable)


def sync(output: Path) -> None:
    """fsync the journal (after appends with ``durable=False``)."""
    sync_file(journal_path(output))


def compact(output: Path, state: JournalState, names: list[str]) -> None:
    """Rewrite the journal with what still matters for the users in ``names``."""
    events: list[dict[str, Any]] = []
    for name in names:
        if name in state.records:
            events.append({"event": "done", "name": name, "record": state.records[name]})
        events.extend(state.begins_after.get(name, []))
    data = b"".join(_line({k: v for k, v in e.items() if k != "v"}) for e in events)
    path = journal_path(output)
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    atomic_write(path, data)
