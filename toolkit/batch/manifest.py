"""The batch's report of what it wrote: ``manifest.json`` and ``manifest.csv``.

Derived from the journal (:mod:`toolkit.batch.journal`, the source of truth) and this run's
outcomes; written atomically, and only when their content changes (idempotent re-runs leave
them alone). :func:`read_manifest` is read only for output folders of an older version that
have no journal yet.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.batch.worker import BatchSettings, UserOutcome
from toolkit.jsontext import write_indented
from toolkit.output import write_if_changed

MANIFEST_SCHEMA_VERSION = 1


def read_manifest(output: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((output / "manifest.json").read_text("utf-8"))
        return {u["name"]: u for u in data.get("users", []) if isinstance(u, dict) and "name" in u}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _manifest_records(
    ordered: list[UserOutcome], previous: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """``previous``: each user's last record in the journal (after this run's appends)."""
    records = []
    for outcome in ordered:
        if outcome.status in ("written", "unchanged", "skipped") and outcome.name in previous:
            records.append(previous[outcome.name])  # what the journal knows is on disk
            continue
        record = outcome.to_json()
        record.pop("issued", None)  # per run, not state
        record.pop("superseded", None)
        if record["status"] == "unchanged":
            record["status"] = "written"
        records.append(record)
    return records


def _indented_json(document: dict[str, Any]) -> bytes:
    """``json.dumps(document, indent=2) + "\\n"`` as UTF-8, built without the two extra full
    copies of the text (10 000 users make about 20 MB of it)."""
    buffer = io.BytesIO()
    write_indented(document, lambda text: buffer.write(text.encode("utf-8")))
    buffer.write(b"\n")
    return buffer.getvalue()


def _holds(path: Path, document: dict[str, Any]) -> bool:
    """Whether ``path`` already holds ``document`` (parsed back: the C parser is fast)."""
    try:
        return bool(json.loads(path.read_bytes()) == document)
    except (OSError, ValueError):
        return False


def write_manifest(
    output: Path,
    settings: BatchSettings,
    ordered: list[UserOutcome],
    previous: dict[str, dict[str, Any]],
) -> bool:
    """Write manifest.json and manifest.csv atomically, only when their content changes."""
    records = _manifest_records(ordered, previous)
    document = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "tool": f"ovpn-toolkit {__version__}",
        "package": str(settings.package_path),
        "users": records,
    }
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
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
    )
    for user in records:
        cert = user.get("certificate") or {}
        writer.writerow(
            [
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
        )
    if _holds(output / "manifest.json", document):
        wrote_json = False  # the same document: skip the (slow, indented) serialisation
    else:
        wrote_json = write_if_changed(output / "manifest.json", _indented_json(document))
    wrote_csv = write_if_changed(output / "manifest.csv", buffer.getvalue().encode())
    return wrote_json or wrote_csv
