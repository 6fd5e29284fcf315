"""An opened CA (:func:`open_ca`): issue and renew client certificates.

Pure core: nothing here prints, exits or prompts by itself (a ``PassphraseSource`` may prompt
through the callable the CLI put in it). Errors are ``ToolkitError`` subclasses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Sequence
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from toolkit.ca import keys
from toolkit.ca.azure import AzureCommands, root_upload_commands
from toolkit.ca.files import (
    clean_ca_temporaries,
    clean_interrupted_writes,
    interrupted_issue,
    missing_folders,
    owned_files,
    refuse_foreign_files,
)
from toolkit.ca.ledger import (
    CAPaths,
    LedgerEntry,
    _active,
    _current,
    _iso,
    _ledger_lock,
    _same_name,
    _utc,
    serial_hex,
)
from toolkit.ca.requests import (
    IssueRequest,
    IssueResult,
    _already_issued,
    _Pending,
    _Planned,
    _Signed,
)
from toolkit.ca.root import BACKDATE, CAInfo, _read_info, _read_root_certificate
from toolkit.ca.rules import check_days, check_email, check_key_type
from toolkit.ca.store import _Cached, _record_entries, _refresh, _State
from toolkit.credentials import export_pkcs12, load_private_key
from toolkit.errors import CAError, OutputError, ToolkitError
from toolkit.names import check_name
from toolkit.output import FILE_MODE, PUBLIC_MODE, fsync_dir, remove_file, write_all
from toolkit.passphrase import PassphraseSource

DEFAULT_CLIENT_DAYS = 365


class CertificateAuthority:
    """An opened CA: root certificate and decrypted key in memory. Made by :func:`open_ca`."""

    def __init__(
        self, directory: Path, root: keys.IssuedCertificate, info: CAInfo, *, key_encrypted: bool
    ) -> None:
        self.paths = CAPaths(Path(directory))
        self._root = root
        self.info = info
        self.key_encrypted = key_encrypted
        self._swept = False  # temporary files of killed writes in certs/: once per process
        self._certs_stored = self.paths.store(self.paths.certs)

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
        ``ledger`` is accepted for compatibility and not needed: the ledger is read
        incrementally (only what changed since this process last read it).
        """
        del ledger
        request = IssueRequest(
            name, email, days, key_type, output_dir, pfx_password, pfx_legacy, renew=False
        )
        return _one(self.issue_many([request], now=now))

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
        request = IssueRequest(
            name, days=days, output_dir=output_dir, pfx_password=pfx_password,
            pfx_legacy=pfx_legacy, renew=True,
        )  # fmt: skip
        return _one(self.issue_many([request], now=now))

    def issue_many(
        self, requests: Sequence[IssueRequest], *, now: dt.datetime | None = None
    ) -> list[IssueResult | ToolkitError]:
        """Issue (or renew) a group of certificates with one lock and one commit.

        Keys, signatures and PKCS#12 files are made first, without the lock; then, under ONE
        acquisition of the ledger lock, each is checked again against the ledger, all their
        files are written and fsynced together, and all their ledger entries are appended with
        one fsync. When this returns, every certificate returned is on disk with its ledger
        entry. Returns one item per request, in order: its :class:`IssueResult`, or the
        :class:`ToolkitError` that refused it (the others go on: a name already issued, a
        foreign file; a failed write fails the whole group). A name asked twice in one group
        is refused the second time."""
        moment = _utc(now or keys.utcnow())
        results: list[IssueResult | ToolkitError | None] = [None] * len(requests)
        pending: list[_Pending] = []
        asked: set[str] = set()
        cached: _Cached | None = None
        for index, request in enumerate(requests):
            try:
                if cached is None:
                    cached = _refresh(self.paths)
                item = self._prepare(index, request, cached.state, moment, asked)
            except ToolkitError as exc:
                results[index] = exc
            else:
                pending.append(item)
        if pending:
            with _ledger_lock(self.paths):
                self._commit(pending, moment, results)
        return [r if r is not None else CAError("not issued") for r in results]

    def _prepare(
        self,
        index: int,
        request: IssueRequest,
        state: _State,
        moment: dt.datetime,
        asked: set[str],
    ) -> _Pending:
        """Check ``request`` against the ledger as last read, make its key and sign it."""
        name = check_name(request.name, "certificate name")
        renewing = None
        if request.renew:
            self._check_root(moment)
            old = self._renewable(state.history(name), name)
            lifetime = (old.not_after - old.not_before).total_seconds() / 86400
            days = check_days(request.days if request.days is not None else max(1, round(lifetime)))
            name, email, key_type, renewing = old.name, old.email, old.key_type, old.serial
        else:
            email = request.email
            if email is not None:
                check_email(email)
            days = check_days(request.days if request.days is not None else DEFAULT_CLIENT_DAYS)
            key_type = check_key_type(request.key_type)
            self._check_root(moment)
            # fail fast, before keygen
            current = _current(state.history(name), name, moment)
            if current is not None:
                raise _already_issued(current)
        if name.casefold() in asked:
            raise CAError(f"{name!r} is asked for twice in one group", hint="ask for it once")
        asked.add(name.casefold())
        # the slow parts outside the lock (other workers issue meanwhile): key, signature,
        # PKCS#12; under the lock only the checks, the files and the ledger's append
        key = keys.generate_key(key_type)
        signed = self._sign(
            state.by_serial, name, email, days, key, request.pfx_password,
            request.pfx_legacy, moment,
        )  # fmt: skip
        return _Pending(index, request, name, email, days, key_type, renewing, signed)

    def _commit(
        self,
        pending: Sequence[_Pending],
        moment: dt.datetime,
        results: list[IssueResult | ToolkitError | None],
    ) -> None:
        """With the lock held: check each pending certificate against the ledger read under
        the lock, write all their files (one sync round), record all entries (one append)."""
        cached = _refresh(self.paths)
        if not self._swept:
            clean_ca_temporaries(self.paths)
            self._swept = True
        planned: list[_Planned] = []
        taken: set[str] = set()  # serials of this group
        for item in pending:
            try:
                plan = self._plan(cached.state, item, moment, taken)
            except ToolkitError as exc:
                results[item.index] = exc
            else:
                planned.append(plan)
                taken.add(plan.result.entry.serial)
        if not planned:
            return
        try:
            write_all([file for plan in planned for file in plan.files])
            for folder in sorted({f for plan in planned for f in plan.new_folders}):
                fsync_dir(folder)  # the new issued/<name>/ entries, before the ledger names them
            done = []
            for plan in planned:
                result = plan.result
                if plan.stale_pfx is not None and remove_file(plan.stale_pfx):
                    note = (
                        f"removed {plan.stale_pfx} (it held the replaced certificate); "
                        "ask for a PKCS#12 again to get a new one"
                    )
                    result = replace(result, warnings=(*result.warnings, note))
                if plan.orphan_copy is not None:
                    remove_file(plan.orphan_copy)  # its serial was never recorded
                done.append((plan.index, result))
            records = [record for plan in planned for record in plan.records]
            _record_entries(self.paths, cached, records, moment)
        except ToolkitError as exc:
            for plan in planned:
                results[plan.index] = exc
            return
        for index, result in done:
            results[index] = result

    def _plan(
        self, state: _State, item: _Pending, moment: dt.datetime, taken: Container[str]
    ) -> _Planned:
        """Check ``item`` under the lock (``state`` read under it): a serial another process
        (or this group) took meanwhile, never seen, is signed anew."""
        name, request = item.name, item.request
        history = state.history(name)
        if item.renewing is None:
            current = _current(history, name, moment)
            if current is not None:
                raise _already_issued(current)
            output_dir = request.output_dir
            renewed_from = None
        else:
            latest = self._renewable(history, name)
            if latest.serial != item.renewing:
                raise CAError(
                    f"the certificate of {name!r} changed while renewing (another run?)",
                    hint="run the command again",
                )
            old_cert = latest.path(self.directory, "cert")
            output_dir = request.output_dir or (old_cert.parent if old_cert else None)
            name = latest.name
            renewed_from = latest.serial
        replaces = _active(history, name)  # with an issue: expired but still marked valid
        signed = item.signed
        if serial_hex(signed.serial) in state.by_serial or serial_hex(signed.serial) in taken:
            signed = self._sign(
                _Either(state.by_serial, taken), name, item.email, item.days,
                signed.issued.private_key, request.pfx_password, request.pfx_legacy, moment,
            )  # fmt: skip
        issued, serial = signed.issued, signed.serial
        warnings = list(signed.warnings)
        cert = issued.certificate
        folder = Path(output_dir) if output_dir is not None else self.paths.issued / name
        cert_path = folder / f"{name}.pem"
        key_path = folder / f"{name}.key"
        pfx_path = folder / f"{name}.pfx" if signed.pfx is not None else None
        ca_copy = self.paths.certs / f"{serial_hex(serial)}.pem"
        targets = [p for p in (cert_path, key_path, pfx_path) if p is not None]
        clean_interrupted_writes(folder, name)
        leftovers, orphan_copy = interrupted_issue(
            self.paths, self.certificate.subject, state.by_serial, cert_path, key_path
        )
        refuse_foreign_files(self.paths, history, name, targets, leftovers)
        if ca_copy.exists():
            raise OutputError(f"{ca_copy} already exists", hint="the CA folder is inconsistent")

        cert_pem = issued.cert_pem
        files: list[tuple[Path, bytes, int]] = [
            (ca_copy, cert_pem, PUBLIC_MODE),
            (cert_path, cert_pem, PUBLIC_MODE),
            (key_path, signed.key_pem, FILE_MODE),
        ]
        if pfx_path is not None and signed.pfx is not None:
            files.append((pfx_path, signed.pfx, FILE_MODE))
        stale = folder / f"{name}.pfx"
        # the PKCS#12 of the certificate being replaced: never leave it next to the new pair
        owned_stale = stale.exists() and stale.resolve() in owned_files(self.paths, history, name)
        stale_pfx = stale if pfx_path is None and owned_stale else None
        # the folder resolved once (the files are about to be replaced by regular files)
        where = folder.resolve()
        record = {
            kind: self.paths.store_resolved(where / path.name)
            for kind, path in (("cert", cert_path), ("key", key_path), ("pfx", pfx_path))
            if path is not None
        }
        entry = LedgerEntry(
            name=name,
            cn=item.email or name,
            email=item.email,
            serial=serial_hex(serial),
            thumbprint_sha1=keys.thumbprint_sha1(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            status="valid",
            key_type=item.key_type,
            issued_at=moment,
            ca_copy=self._certs_stored + "/" + ca_copy.name,
            files=record,
            renewed_from=renewed_from,
        )
        superseded = tuple(
            replace(e, status="superseded", superseded_by=entry.serial) for e in replaces
        )
        result = IssueResult(
            entry, issued, cert_path, key_path, pfx_path, superseded, tuple(warnings)
        )
        return _Planned(
            item.index,
            files,
            [*superseded, entry],
            result,
            stale_pfx,
            orphan_copy,
            missing_folders(folder),
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
        used: Container[str],
        name: str,
        email: str | None,
        days: int,
        key: keys.PrivateKey,
        pfx_password: bytes | None,
        pfx_legacy: bool,
        moment: dt.datetime,
    ) -> _Signed:
        """The certificate and the bytes of its files; no lock needed (see :meth:`_plan`).
        ``used``: the serials known (the ledger's by-serial index)."""
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
        return _Signed(issued, serial, issued.key_pem(), pfx, tuple(warnings))


class _Either:
    """Membership in either of two containers (the ledger's serials, this group's)."""

    def __init__(self, first: Container[str], second: Container[str]) -> None:
        self._first, self._second = first, second

    def __contains__(self, item: object) -> bool:
        return item in self._first or item in self._second


def _one(results: Sequence[IssueResult | ToolkitError]) -> IssueResult:
    (result,) = results
    if isinstance(result, ToolkitError):
        raise result
    return result


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
