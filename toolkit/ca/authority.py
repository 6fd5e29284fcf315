"""An opened CA (:func:`open_ca`): issue and renew client certificates.

Pure core: nothing here prints, exits or prompts by itself (a ``PassphraseSource`` may prompt
through the callable the CLI put in it). Errors are ``ToolkitError`` subclasses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from toolkit.ca import keys
from toolkit.ca.azure import AzureCommands, root_upload_commands
from toolkit.ca.keys import KeyType
from toolkit.ca.ledger import (
    CAPaths,
    LedgerEntry,
    _active,
    _current,
    _iso,
    _ledger_lock,
    _load_entries,
    _same_name,
    _utc,
    _write_entries,
    serial_hex,
)
from toolkit.ca.root import BACKDATE, CAInfo, _read_info, _read_root_certificate
from toolkit.ca.rules import check_days, check_email, check_key_type
from toolkit.credentials import export_pkcs12, load_private_key
from toolkit.errors import CAError, OutputError, ToolkitError
from toolkit.names import check_name
from toolkit.output import FILE_MODE, PUBLIC_MODE, remove_file, write_all
from toolkit.passphrase import PassphraseSource

DEFAULT_CLIENT_DAYS = 365


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


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
class _Signed:
    """A certificate signed before the ledger lock is taken, with its files' bytes."""

    issued: keys.IssuedCertificate = field(repr=False)
    serial: int
    key_pem: bytes = field(repr=False)
    pfx: bytes | None = field(repr=False)
    warnings: tuple[str, ...]
    # what was asked, to sign again under the lock in the (never seen) case of a serial clash
    request: tuple[str, str | None, int, bytes | None, bool] = field(repr=False)


def _already_issued(entry: LedgerEntry) -> CAError:
    return CAError(
        f"{entry.name!r} already has a valid certificate (thumbprint {entry.thumbprint_sha1}, "
        f"expires {_iso(entry.not_after)})",
        hint=f"use `ca renew {entry.name}` to replace it, or `ca revoke {entry.name}` first",
    )


class CertificateAuthority:
    """An opened CA: root certificate and decrypted key in memory. Made by :func:`open_ca`."""

    def __init__(
        self, directory: Path, root: keys.IssuedCertificate, info: CAInfo, *, key_encrypted: bool
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
        return keys.thumbprint_sha1(self._root.certificate)

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
        ledger: Sequence[LedgerEntry] | None = None,
    ) -> IssueResult:
        """Issue a client certificate for ``name`` (CN = ``email`` when given, else ``name``).

        Writes ``<name>.pem``, ``<name>.key`` (0600) and, with ``pfx_password``, ``<name>.pfx``
        into ``output_dir`` (default ``issued/<name>/`` in the CA folder) and records it in the
        ledger. Refuses when ``name`` already has a valid certificate (use :meth:`renew`).
        Safe to call from several processes at once: the ledger update is under a file lock.
        """
        name = check_name(name, "certificate name")
        if email is not None:
            check_email(email)
        days = check_days(days)
        checked_type = check_key_type(key_type)
        moment = _utc(now or keys.utcnow())
        self._check_root(moment)
        # fail fast, before keygen; ``ledger``: the caller's fresh read, not parsed again
        known = list(ledger) if ledger is not None else _load_entries(self.paths)
        current = _current(known, name, moment)
        if current is not None:
            raise _already_issued(current)
        # the slow parts outside the lock (other workers issue meanwhile): key, signature,
        # PKCS#12; under the lock only the ledger's read-check-write and the files
        key = keys.generate_key(checked_type)
        signed = self._sign(known, name, email, days, key, pfx_password, pfx_legacy, moment)
        with _ledger_lock(self.paths):
            entries = _load_entries(self.paths)
            current = _current(entries, name, moment)
            if current is not None:
                raise _already_issued(current)
            return self._record(
                entries,
                signed,
                name=name,
                email=email,
                key_type=checked_type,
                output_dir=output_dir,
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
        name = check_name(name, "certificate name")
        moment = _utc(now or keys.utcnow())
        self._check_root(moment)
        known = _load_entries(self.paths)
        old = self._renewable(known, name)
        lifetime = (old.not_after - old.not_before).total_seconds() / 86400
        new_days = check_days(days if days is not None else max(1, round(lifetime)))
        key = keys.generate_key(old.key_type)
        signed = self._sign(
            known, old.name, old.email, new_days, key, pfx_password, pfx_legacy, moment
        )
        with _ledger_lock(self.paths):
            entries = _load_entries(self.paths)
            latest = self._renewable(entries, name)
            if latest.serial != old.serial:
                raise CAError(
                    f"the certificate of {name!r} changed while renewing (another run?)",
                    hint="run the command again",
                )
            old_cert = latest.path(self.directory, "cert")
            return self._record(
                entries,
                signed,
                name=latest.name,
                email=latest.email,
                key_type=latest.key_type,
                output_dir=output_dir or (old_cert.parent if old_cert else None),
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

    def _sign(
        self,
        entries: Sequence[LedgerEntry],
        name: str,
        email: str | None,
        days: int,
        key: keys.PrivateKey,
        pfx_password: bytes | None,
        pfx_legacy: bool,
        moment: dt.datetime,
    ) -> _Signed:
        """The certificate and the bytes of its files; no lock needed (see :meth:`_record`)."""
        used = {e.serial for e in entries}
        serial = keys.random_serial()
        while serial_hex(serial) in used:  # 2**-126 per pair, but never reuse one
            serial = keys.random_serial()
        warnings: list[str] = []
        not_before = moment - BACKDATE
        not_after = not_before + dt.timedelta(days=days)
        root_end = self.certificate.not_valid_after_utc
        if not_after > root_end:
            not_after = root_end
            warnings.append(
                f"the certificate would outlive the root; it ends with the root on {_iso(root_end)}"
            )
        issued = keys.issue_certificate(
            self._root,
            email or name,
            key=key,
            email=email,
            dns_names=keys.client_dns_names(name),
            serial=serial,
            not_before=not_before,
            not_after=not_after,
        )
        pfx = None
        if pfx_password is not None:
            pfx = export_pkcs12(
                issued.private_key,
                issued.certificate,
                [self.certificate],
                pfx_password,
                friendly_name=email or name,
                legacy=pfx_legacy,
            )
        return _Signed(
            issued,
            serial,
            issued.key_pem(),
            pfx,
            tuple(warnings),
            (name, email, days, pfx_password, pfx_legacy),
        )

    def _record(
        self,
        entries: list[LedgerEntry],
        signed: _Signed,
        *,
        name: str,
        email: str | None,
        key_type: KeyType,
        output_dir: Path | None,
        moment: dt.datetime,
        replaces: Sequence[LedgerEntry],
        renewed_from: str | None,
    ) -> IssueResult:
        """Write the files and the ledger. Called with the ledger lock held, ``entries`` read
        under it: a serial another process took meanwhile (never seen) is signed anew."""
        if serial_hex(signed.serial) in {e.serial for e in entries}:
            _name, _email, days, pfx_password, pfx_legacy = signed.request
            signed = self._sign(
                entries,
                name,
                email,
                days,
                signed.issued.private_key,
                pfx_password,
                pfx_legacy,
                moment,
            )
        issued, serial = signed.issued, signed.serial
        warnings = list(signed.warnings)
        cert = issued.certificate
        folder = Path(output_dir) if output_dir is not None else self.paths.issued / name
        cert_path = folder / f"{name}.pem"
        key_path = folder / f"{name}.key"
        pfx_path = folder / f"{name}.pfx" if signed.pfx is not None else None
        ca_copy = self.paths.certs / f"{serial_hex(serial)}.pem"
        targets = [p for p in (cert_path, key_path, pfx_path) if p is not None]
        self._clean_interrupted_writes(folder, name)
        leftovers = self._interrupted_issue(entries, cert_path, key_path)
        self._refuse_foreign_files(entries, name, targets, leftovers)
        if ca_copy.exists():
            raise OutputError(f"{ca_copy} already exists", hint="the CA folder is inconsistent")

        files: list[tuple[Path, bytes, int]] = [
            (ca_copy, issued.cert_pem, PUBLIC_MODE),
            (cert_path, issued.cert_pem, PUBLIC_MODE),
            (key_path, signed.key_pem, FILE_MODE),
        ]
        if pfx_path is not None and signed.pfx is not None:
            files.append((pfx_path, signed.pfx, FILE_MODE))
        write_all(files)
        stale = folder / f"{name}.pfx"
        owned_stale = stale.exists() and stale.resolve() in self._owned(entries, name)
        # the PKCS#12 of the certificate being replaced: never leave it next to the new pair
        if pfx_path is None and owned_stale and remove_file(stale):
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
            thumbprint_sha1=keys.thumbprint_sha1(cert),
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

    def _clean_interrupted_writes(self, folder: Path, name: str) -> None:
        """Temporary files of an atomic write that was killed (we hold the ledger lock)."""
        leftovers = [
            *folder.glob(f".{name}.*.tmp"),
            *self.paths.certs.glob(".*.pem.*.tmp"),
            *self.directory.glob(f".{self.paths.ledger.name}.*.tmp"),
        ]
        for path in leftovers:
            remove_file(path)

    def _interrupted_issue(
        self, entries: Sequence[LedgerEntry], cert_path: Path, key_path: Path
    ) -> set[Path]:
        """The files an issue killed before its ledger write left at these paths: a
        certificate this CA signed, whose copy is in ``certs/`` but whose serial the ledger
        never recorded, and the key that belongs to it. They are ours to replace."""
        try:
            data = cert_path.read_bytes()
            cert = x509.load_pem_x509_certificate(data)
            serial = serial_hex(cert.serial_number)
            copy = (self.paths.certs / f"{serial}.pem").read_bytes()
        except (OSError, ValueError):
            return set()
        if (
            copy != data
            or cert.issuer != self.certificate.subject
            or serial in {e.serial for e in entries}
        ):
            return set()
        found = {cert_path.resolve()}
        with contextlib.suppress(OSError, ToolkitError):
            key = load_private_key(key_path.read_bytes(), str(key_path), None)
            if _spki(key.public_key()) == _spki(cert.public_key()):
                found.add(key_path.resolve())
        return found

    def _refuse_foreign_files(
        self,
        entries: Sequence[LedgerEntry],
        name: str,
        targets: Sequence[Path],
        leftovers: Iterable[Path] = (),
    ) -> None:
        """Existing files may be replaced only when the ledger records them for this name
        (or an interrupted issue for this name left them: ``leftovers``)."""
        owned = self._owned(entries, name) | set(leftovers)
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
    key = load_private_key(
        key_data,
        str(paths.root_key),
        passphrase,
        what="CA key",
        hint="use --passphrase-env VAR or --passphrase-file FILE (or run in a terminal to be "
        "prompted)",
    )
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CAError(f"{paths.root_key}: unsupported key type (RSA expected)")
    if key.public_key() != cert.public_key():
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
        paths.directory, keys.IssuedCertificate(cert, key), info, key_encrypted=encrypted
    )
