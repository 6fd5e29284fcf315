"""The files of an issue in the CA folder: what may be replaced, what an interrupted issue left.

Called with the ledger lock held (``toolkit.ca.authority``), with the ledger read under it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container, Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from toolkit.ca.ledger import CAPaths, LedgerEntry, _same_name, serial_hex
from toolkit.credentials import load_private_key
from toolkit.errors import OutputError, ToolkitError
from toolkit.output import remove_file


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def owned_files(paths: CAPaths, entries: Sequence[LedgerEntry], name: str) -> set[Path]:
    """The files the ledger records for ``name`` (resolved)."""
    return {
        paths.load(stored).resolve()
        for e in entries
        if _same_name(e, name)
        for stored in e.files.values()
    }


def clean_interrupted_writes(folder: Path, name: str) -> None:
    """Temporary files of an atomic write that was killed."""
    if folder.is_dir():
        for path in folder.glob(f".{name}.*.tmp"):
            remove_file(path)


def clean_ca_temporaries(paths: CAPaths) -> None:
    """The same in certs/ and for the ledger's files: once per process, not per issue
    (certs/ grows with every certificate)."""
    leftovers = [
        *paths.certs.glob(".*.pem.*.tmp"),
        *paths.directory.glob(f".{paths.ledger.name}.*.tmp"),
        *paths.directory.glob(f".{paths.journal.name}.*.tmp"),
    ]
    for path in leftovers:
        remove_file(path)


def interrupted_issue(
    paths: CAPaths,
    issuer: x509.Name,
    recorded: Container[str],
    cert_path: Path,
    key_path: Path,
) -> tuple[set[Path], Path | None]:
    """The files an issue killed before its ledger write left at these paths: a certificate
    this CA (``issuer``) signed, whose copy is in ``certs/`` but whose serial the ledger never
    ``recorded``, and the key that belongs to it. They are ours to replace, and the copy in
    ``certs/`` (second item) ours to remove once they are replaced."""
    try:
        data = cert_path.read_bytes()
        cert = x509.load_pem_x509_certificate(data)
        serial = serial_hex(cert.serial_number)
        copy_path = paths.certs / f"{serial}.pem"
        copy = copy_path.read_bytes()
    except (OSError, ValueError):
        return set(), None
    if copy != data or cert.issuer != issuer or serial in recorded:
        return set(), None
    found = {cert_path.resolve()}
    with contextlib.suppress(OSError, ToolkitError):
        key = load_private_key(key_path.read_bytes(), str(key_path), None)
        if _spki(key.public_key()) == _spki(cert.public_key()):
            found.add(key_path.resolve())
    return found, copy_path


def refuse_foreign_files(
    paths: CAPaths,
    entries: Sequence[LedgerEntry],
    name: str,
    targets: Sequence[Path],
    leftovers: Iterable[Path] = (),
) -> None:
    """Existing files may be replaced only when the ledger records them for this name (or an
    interrupted issue for this name left them: ``leftovers``)."""
    owned = owned_files(paths, entries, name) | set(leftovers)
    for path in targets:
        if path.exists() and path.resolve() not in owned:
            raise OutputError(
                f"{path} already exists and is not a file of {name!r} in this CA's ledger",
                hint="choose another --output folder, or move the file away",
            )


def missing_folders(folder: Path) -> set[Path]:
    """The parents of the folders a write will create on the way to ``folder``: their new
    entries are synced before the ledger names the files inside."""
    parents = set()
    current = folder
    while not current.exists():
        parents.add(current.parent)
        current = current.parent
    return parents
