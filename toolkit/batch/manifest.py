"""The batch's report of what it wrote: ``manifest.json`` and ``manifest.csv``.

Derived from the journal (:mod:`toolkit.batch.journal`, the source of truth) and this run's
outcomes, streamed one user at a time; written atomically, and only when their content changes
(idempotent re-runs leave them alone). :func:`read_manifest` is read only for output folders
of an older version that have no journal yet.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.batch.worker import BatchSettings, UserOutcome
from toolkit.jsontext import write_indented
from toolkit.output import PendingFile, file_sha256

MANIFEST_SCHEMA_VERSION = 1


def read_manifest(output: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((output / "manifest.json").read_text("utf-8"))
        return {u["name"]: u for u in data.get("users", []) if isinstance(u, dict) and "name" in u}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


CSV_COLUMNS = [
    "name",
    "display_name",
    "common_name",
    "serial",
    "thumbprint_sha1",
    "not_after",
    "targets",
    "status",
    "reason",
    "warnings",
    "files",
    "send",
]


def manifest_record(outcome: UserOutcome, journal_record: dict[str, Any] | None) -> dict[str, Any]:
    """A user's entry: what the journal knows is on disk for a user written, unchanged or
    skipped this run; otherwise this run's outcome (a failed or planned user)."""
    if outcome.status in ("written", "unchanged", "skipped") and journal_record is not None:
        return journal_record
    record = outcome.to_json()
    record.pop("issued", None)  # per run, not state
    record.pop("superseded", None)
    if record["status"] == "unchanged":
        record["status"] = "written"
    return record


def _csv_row(user: dict[str, Any]) -> list[str]:
    cert = user.get("certificate") or {}
    return [
        user["name"],
        user.get("display_name", ""),
        cert.get("common_name", ""),
        cert.get("serial", ""),
        cert.get("thumbprint_sha1", ""),
        cert.get("not_after", ""),
        " ".join(user.get("targets", [])),
        user["status"],
        user.get("reason", ""),
        " | ".join(user.get("warnings", [])),
        " ".join(f"{f['path']}:{f['sha256']}" for f in user.get("files", [])),
        " ".join(s["path"] for s in user.get("send", [])),
    ]


def _file_sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None  # missing: never the digest recorded


def manifest_source(settings: BatchSettings, users_digest: str) -> str:
    """What the manifest is made from when every user is unchanged: the users' journal lines
    (``users_digest``), the package path and the tool version."""
    text = f"{users_digest}\0{settings.package_path}\0{__version__}"
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_is_current(output: Path, source: str, event: dict[str, Any] | None) -> bool:
    """True when the manifest was made from ``source`` and both files are as it wrote them."""
    return (
        event is not None
        and event.get("source") == source
        and event.get("json") == _file_sha256(output / "manifest.json")
        and event.get("csv") == _file_sha256(output / "manifest.csv")
    )


def manifest_event(output: Path, source: str) -> dict[str, Any]:
    """The journal line recording the manifest just written (made from ``source``)."""
    return {
        "event": "manifest",
        "source": source,
        "json": _file_sha256(output / "manifest.json"),
        "csv": _file_sha256(output / "manifest.csv"),
    }


def write_manifest(
    output: Path, settings: BatchSettings, records: Iterable[dict[str, Any]]
) -> bool:
    """Write manifest.json and manifest.csv from ``records`` (the users' entries in list order,
    consumed once, one at a time), atomically, only where the content changes. True when either
    file was written."""
    json_file = PendingFile(output / "manifest.json")
    csv_file = PendingFile(output / "manifest.csv")
    try:
        rows = io.StringIO()
        table = csv.writer(rows, lineterminator="\n")
        table.writerow(CSV_COLUMNS)

        def users() -> Iterator[dict[str, Any]]:
            for record in records:  # the CSV row is written as the JSON entry is
                table.writerow(_csv_row(record))
                if rows.tell() >= 1 << 16:
                    csv_file.write(rows.getvalue().encode())
                    rows.seek(0)
                    rows.truncate()
                yield record

        document = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "tool": f"ovpn-toolkit {__version__}",
            "package": str(settings.package_path),
            "users": users(),
        }
        write_indented(document, lambda text: json_file.write(text.encode("utf-8")))
        json_file.write(b"\n")
        csv_file.write(rows.getvalue().encode())
    except BaseException:
        json_file.abort()
        csv_file.abort()
        raise
    try:
        wrote_json = json_file.finish()
    except BaseException:
        csv_file.abort()
        raise
    return csv_file.finish() or wrote_json
