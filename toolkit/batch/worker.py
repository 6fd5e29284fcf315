"""A batch's users, a chunk at a time, in whichever process takes the chunk: issue (if
needed), plan, stage, commit, report.

Each user of a chunk is planned and staged on its own and reported as a small
:class:`UserOutcome`, so memory stays flat however many users there are; one user's failure
never touches another user's files. Before any of that the main process asks
:func:`unchanged_outcome` for every user: one whose inputs and files are unchanged is reported
unchanged and not touched.

Crash safety (see :mod:`toolkit.batch.journal`): staging mends what an interrupted write left
in the user's folder; the chunk's ``begin`` events, naming the digests about to be swapped in,
are made durable (together with the staged files when a user replaces an earlier version;
alone, with one fsync of the journal, for a chunk of new users, whose files become durable at
the end of the run), then the users are swapped in and their ``done`` events appended.
Existing outputs are replaced only when their digests are ones the journal records for this
user (or with ``--force``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from toolkit import __version__
from toolkit.batch import journal
from toolkit.batch.identity import SignSettings
from toolkit.batch.userlist import CASettings, UserEntry
from toolkit.credentials import load_certificates, read_input
from toolkit.errors import CAError, ToolkitError, WriteError
from toolkit.output import (
    StagedWrite,
    check_writable,
    file_sha256,
    has_syncfs,
    is_owned,
    remove_tree,
)
from toolkit.package import AzurePackage, load_package
from toolkit.passphrase import PassphraseSource

if TYPE_CHECKING:
    from cryptography import x509

    from toolkit.ca import LedgerEntry
    from toolkit.signing import ProfileSigner

Status = Literal["written", "unchanged", "failed", "planned", "skipped"]
STATUSES: tuple[Status, ...] = ("written", "unchanged", "planned", "failed", "skipped")


@dataclass(frozen=True)
class BatchSettings:
    package_path: Path
    output: Path
    roots: tuple[Path, ...] = ()
    ca: CASettings | None = None
    warn_days: int = 30
    force: bool = False
    dry_run: bool = False
    renew_within: int | None = None
    sign: SignSettings | None = None
    guide: bool = True
    # where passphrase_env variables are looked up (the CLI passes the ones the list names)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class UserTask:
    user: UserEntry
    settings: BatchSettings
    previous: dict[str, Any] | None  # this user's last record in the journal
    # digests the toolkit recorded writing, per path under OUTPUT/<name>/ (journal)
    owned: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)  # 10 000 of them stay in the main process until the manifest
class UserOutcome:
    name: str
    status: Status
    display_name: str | None = None
    reason: str | None = None
    hint: str | None = None
    certificate: dict[str, Any] | None = None
    targets: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    send: list[dict[str, str]] = field(default_factory=list)  # per platform: the file to send
    warnings: list[str] = field(default_factory=list)
    issued: str | None = None  # "issued" / "renewed" when the CA made a certificate this run
    # certificates a renewal in this run superseded: {name, thumbprint_sha1, not_after}
    superseded: list[dict[str, str]] = field(default_factory=list)
    fingerprint: str | None = None
    fatal: bool = False  # the output folder cannot be written: the batch stops (not in JSON)

    def to_json(self) -> dict[str, Any]:
        # shallow on purpose (asdict deep-copies): the values are plain JSON data already
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {k: v for k, v in values if v is not None and v != [] and k != "fatal"}

    def record(self) -> dict[str, Any]:
        """What the journal and the manifest keep of a written user."""
        data = self.to_json()
        data.pop("issued", None)  # per run, not state
        data.pop("superseded", None)
        data["status"] = "written"  # the record describes files, not this run
        return data


@contextlib.contextmanager
def _termination_deferred() -> Iterator[None]:
    """SIGTERM (a stopping batch) waits until the user's files are swapped in or rolled back,
    and takes effect right after: a stop arriving mid-cleanup would leave a staging folder.
    Blocked signals stay pending, so none is lost; the write takes milliseconds."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# --- per process caches ---------------------------------------------------------------------------
_PACKAGES: dict[Path, AzurePackage] = {}
_AUTHORITIES: dict[Path, Any] = {}  # CA folder -> toolkit.ca.CertificateAuthority
_SIGNERS: dict[SignSettings, ProfileSigner] = {}
# roots files -> their certificates and digests: read once per process, not once per user
_ROOTS: dict[tuple[Path, ...], tuple[list[x509.Certificate], list[str | None]]] = {}
_SIGN_DIGESTS: dict[SignSettings, list[str | None]] = {}


def clear_caches() -> None:
    """Forget packages, CAs and roots read earlier in this process (a new batch re-reads)."""
    _PACKAGES.clear()
    _AUTHORITIES.clear()
    _ROOTS.clear()
    _SIGNERS.clear()
    _SIGN_DIGESTS.clear()
    _SETTINGS_DIGESTS.clear()


def _package(path: Path) -> AzurePackage:
    if path not in _PACKAGES:
        _PACKAGES[path] = load_package(path)
    return _PACKAGES[path]


def _signer(sign: SignSettings | None) -> ProfileSigner | None:
    if sign is None:
        return None
    if sign not in _SIGNERS:
        from toolkit.signing import load_signer  # local: most batches sign nothing

        _SIGNERS[sign] = load_signer(sign.cert, sign.key)
    return _SIGNERS[sign]


def _digest(paths: list[Path | None]) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p else None for p in paths]


def _sign_digests(sign: SignSettings) -> list[str | None]:
    if sign not in _SIGN_DIGESTS:
        _SIGN_DIGESTS[sign] = _digest([sign.cert, sign.key])
    return _SIGN_DIGESTS[sign]


def _roots(paths: tuple[Path, ...]) -> tuple[list[x509.Certificate], list[str | None]]:
    if paths not in _ROOTS:
        certs: list[x509.Certificate] = []
        digests: list[str | None] = []
        for path in paths:
            data = read_input(path, "root certificate")
            certs.extend(load_certificates(data, str(path)))
            digests.append(hashlib.sha256(data).hexdigest())
        _ROOTS[paths] = (certs, digests)
    return _ROOTS[paths]


def _read_credentials(paths: list[tuple[Path | None, str]]) -> dict[Path, bytes]:
    """Each credential file read once: hashed for the fingerprint, then handed to the loader."""
    return {p: read_input(p, what) for p, what in paths if p is not None}


def _credential_files(
    user: UserEntry, cert: Path | None, key: Path | None, pfx: Path | None
) -> list[tuple[Path | None, str]]:
    return [
        (cert, "certificate"),
        (key, "key"),
        (pfx, "PKCS#12"),
        *((c, "chain") for c in user.chain),
    ]


_USER_FIELDS = tuple(f.name for f in fields(UserEntry) if f.name != "line")
_SETTINGS_DIGESTS: dict[tuple[BatchSettings, str], str] = {}


def _settings_digest(settings: BatchSettings, package: AzurePackage) -> str:
    """The part of every user's fingerprint that is the same for the whole batch (once)."""
    key = (settings, package.content_sha256)
    if key not in _SETTINGS_DIGESTS:
        data = {
            "tool": __version__,
            "package": package.content_sha256,
            "package_source": Path(package.source).name,
            "roots": _roots(settings.roots)[1],
            "sign": _sign_digests(settings.sign) if settings.sign else None,
            "warn_days": settings.warn_days,
            "guide": settings.guide,
        }
        text = json.dumps(data, sort_keys=True, default=str)
        _SETTINGS_DIGESTS[key] = hashlib.sha256(text.encode()).hexdigest()
    return _SETTINGS_DIGESTS[key]


def _fingerprint(
    user: UserEntry,
    settings: BatchSettings,
    package: AzurePackage,
    cred_files: list[tuple[Path | None, str]],
    digests: Mapping[Path, str],
) -> str:
    """Everything the outputs depend on; passphrases are not (the output key is the same).

    A generated PKCS#12 password is not either: it is random at every planning, so an
    unchanged user is skipped before planning, and keeps the password it was given."""
    data = [
        _settings_digest(settings, package),
        [getattr(user, name) for name in _USER_FIELDS],
        [digests[p] if p is not None else None for p, _what in cred_files],
    ]
    return hashlib.sha256(json.dumps(data, default=str).encode()).hexdigest()


def stat_key(path: str | Path) -> list[int] | None:
    """What changes whenever a file's content can have changed: size, mtime and ctime (which
    nobody can set back), inode. None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _intact(output: Path, record: dict[str, Any], stats: Mapping[str, Any] | None = None) -> bool:
    """Every file the record lists is there with the recorded content: hashed, unless its
    :func:`stat_key` is the one recorded right after it was written (``stats``, from the
    journal), as git trusts its index."""
    base = os.fspath(output)
    stats = stats or {}
    for entry in record.get("files", []):
        path = os.path.join(base, entry["path"])
        recorded = stats.get(entry["path"])
        if recorded is not None and recorded == stat_key(path):
            continue
        try:
            if file_sha256(path) != entry["sha256"]:
                return False
        except OSError:
            return False
    return bool(record.get("files"))


def _credential_digests(
    paths: list[tuple[Path | None, str]], known: Mapping[str, Any] | None
) -> dict[Path, str]:
    """The SHA-256 of each credential file: the one recorded (``known``: path -> [digest,
    *stat_key]) when the file's stat is unchanged, else read and hashed."""
    digests: dict[Path, str] = {}
    for path, what in paths:
        if path is None:
            continue
        entry = (known or {}).get(str(path))
        if isinstance(entry, list) and entry[1:] and entry[1:] == stat_key(path):
            digests[path] = str(entry[0])
        else:
            digests[path] = hashlib.sha256(read_input(path, what)).hexdigest()
    return digests


def _ca_action(current: Any, renew_within: int | None) -> Literal["issued", "renewed"] | None:
    """What the CA must do for a user whose current ledger entry is ``current`` (or None)."""
    if current is None:
        return "issued"
    if renew_within is not None and current.days_left() <= renew_within:
        return "renewed"
    return None


def _ca_command(settings: BatchSettings, command: str, *args: str) -> str:
    """An `ovpn-toolkit ca ...` line with the CA folder and its passphrase option, so that it
    runs as the batch would have (quoted for a POSIX shell)."""
    assert settings.ca is not None  # noqa: S101
    parts = ["ovpn-toolkit", "ca", command, "--ca", str(settings.ca.dir), *args]
    if command == "revoke":  # needs no CA key
        pass
    elif settings.ca.passphrase_env:
        parts += ["--passphrase-env", settings.ca.passphrase_env]
    elif settings.ca.passphrase_file:
        parts += ["--passphrase-file", str(settings.ca.passphrase_file)]
    return shlex.join(parts)


def _issue_args(user: UserEntry) -> list[str]:
    """The `ca issue` options that give the certificate the batch would have issued."""
    from toolkit.ca.authority import DEFAULT_CLIENT_DAYS  # local, as in _ca_credentials

    args = ["--name", user.name]
    if user.email:
        args += ["--email", user.email]
    if user.days != DEFAULT_CLIENT_DAYS:
        args += ["--days", str(user.days)]
    if user.key_type != "rsa2048":  # the default of `ca issue --key-type`
        args += ["--key-type", user.key_type]
    return args


Issued = tuple[Literal["issued", "renewed"], Any]  # the action, an IssueResult or ToolkitError


def _ca_decision(
    user: UserEntry, settings: BatchSettings
) -> tuple[Literal["issued", "renewed"] | None, LedgerEntry | None]:
    """Whether ``user`` needs a certificate issued (or renewed), from the CA's ledger, and the
    current entry. Raises for a user the batch must not issue for."""
    from toolkit import ca  # local: only batch users with a CA need it
    from toolkit.ca.rules import check_email

    assert settings.ca is not None  # noqa: S101 - validated before any work
    ca_dir = settings.ca.dir
    # this user's certificates only, from a ledger read incrementally (what changed since this
    # process last read it): the current entry and the history come from it
    history = ca.certificate_history(ca_dir, user.name)
    current = ca.find_current(ca_dir, user.name, entries=history)
    action = _ca_action(current, settings.renew_within)
    if action == "issued" and user.email is not None:
        check_email(user.email)  # before any work, and in --dry-run too
    if action == "issued":
        latest = max(history, key=lambda e: e.issued_at, default=None)
        if latest is not None and latest.status == "revoked":
            raise CAError(
                f"the certificate of '{user.name}' was revoked; the batch does not issue a new "
                "one by itself",
                hint=f"remove '{user.name}' from the user list, or issue deliberately: "
                + _ca_command(settings, "issue", *_issue_args(user)),
            )
    return action, current


def _authority(settings: BatchSettings) -> Any:
    """The opened CA (toolkit.ca.CertificateAuthority): its key decrypted once per process."""
    from toolkit import ca

    assert settings.ca is not None  # noqa: S101
    authority = _AUTHORITIES.get(settings.ca.dir)
    if authority is None:
        authority = ca.open_ca(
            settings.ca.dir,
            PassphraseSource(
                settings.ca.passphrase_env, settings.ca.passphrase_file, environ=settings.environ
            ),
        )
        _AUTHORITIES[settings.ca.dir] = authority
    return authority


def _issue_chunk(chunk: ChunkTask) -> dict[str, Issued]:
    """The certificates a chunk's users need, issued as one group (one CA lock, one write
    round, one ledger append: ``CertificateAuthority.issue_many``), by case-folded name. Users
    whose checks fail are left out: their own turn reports it."""
    settings = chunk.settings
    if settings.ca is None or settings.dry_run:
        return {}
    from toolkit.ca import IssueRequest  # local: only batches with a CA need it

    wanted: list[tuple[UserEntry, Literal["issued", "renewed"]]] = []
    for user, _previous, _owned in chunk.users:
        if not user.issued_from_ca:
            continue
        try:
            action, _current = _ca_decision(user, settings)
        except ToolkitError:
            continue
        if action is not None:
            wanted.append((user, action))
    if len(wanted) < 2:
        return {}  # one user: issued in its own turn, as before
    try:
        authority = _authority(settings)
    except ToolkitError:
        return {}  # a wrong passphrase: every user's own turn reports it
    requests = [
        IssueRequest(user.name, email=user.email, days=user.days, key_type=user.key_type)
        if action == "issued"
        else IssueRequest(user.name, days=user.days, renew=True)
        for user, action in wanted
    ]
    try:
        results: list[Any] = authority.issue_many(requests)
    except ToolkitError as exc:  # the group's write failed: nothing of it recorded
        results = [exc] * len(requests)
    return {
        user.name.casefold(): (action, result)
        for (user, action), result in zip(wanted, results, strict=True)
    }


def _ca_credentials(
    user: UserEntry, settings: BatchSettings, issued: dict[str, Issued] | None = None
) -> tuple[Path, Path, str | None, list[dict[str, str]]]:
    """Cert and key from the CA's ledger; issue (or renew near expiry) when needed. The last
    item lists the certificates a renewal superseded (Azure accepts them until they expire).
    ``issued``: what :func:`_issue_chunk` issued for the chunk (taken from it, not again)."""
    assert settings.ca is not None  # noqa: S101 - validated before any work
    ca_dir = settings.ca.dir
    early = issued.pop(user.name.casefold(), None) if issued else None
    action: Literal["issued", "renewed"] | None
    if early is not None:
        action, result = early
        if isinstance(result, ToolkitError):
            raise result
    else:
        action, current = _ca_decision(user, settings)
        if action is None:
            assert current is not None  # noqa: S101
            cert, key = _ledger_files(current, ca_dir)
            if cert is None or key is None:
                raise CAError(
                    f"{ca_dir}: the ledger names files for '{user.name}' that are missing",
                    hint="restore them, or revoke and reissue: "
                    + _ca_command(settings, "renew", user.name),
                )
            return cert, key, None, []
        if settings.dry_run:
            raise _DryRunIssue(action)
        authority = _authority(settings)
        if action == "issued":
            result = authority.issue(
                user.name, email=user.email, days=user.days, key_type=user.key_type
            )
        else:
            result = authority.renew(user.name, days=user.days)
    superseded = [
        {
            "name": old.name,
            "thumbprint_sha1": old.thumbprint_sha1,
            "not_after": old.not_after.isoformat(),
            "revoke": _ca_command(settings, "revoke", old.thumbprint_sha1),
        }
        for old in result.superseded
    ]
    return result.cert_path, result.key_path, action, superseded


def _ledger_files(entry: LedgerEntry, ca_dir: Path) -> tuple[Path | None, Path | None]:
    """The entry's certificate and key files, or (None, None) when either is missing."""
    cert, key = entry.path(ca_dir, "cert"), entry.path(ca_dir, "key")
    if cert is None or key is None or not cert.exists() or not key.exists():
        return None, None
    return cert, key


def unchanged_outcome(
    user: UserEntry,
    settings: BatchSettings,
    previous: dict[str, Any] | None,
    ledger: Mapping[str, LedgerEntry] | None = None,
    done: Mapping[str, Any] | None = None,
) -> UserOutcome | None:
    """The previous outcome carried over when the inputs and the written files are unchanged;
    None when the user needs a worker (changed, new, to be issued, or anything to report).

    The main process asks this for every user before any worker starts (an unchanged re-run
    starts none). ``ledger``: the CA's current entries by folded name (read once); ``done``:
    the journal's ``done`` event of ``previous``, with the stat keys of its files and inputs."""
    if previous is None or settings.force or previous.get("status") not in ("written", "unchanged"):
        return None
    try:
        if user.issued_from_ca:
            if settings.ca is None or ledger is None:
                return None
            current = ledger.get(user.name.casefold())
            if _ca_action(current, settings.renew_within) is not None:
                return None
            assert current is not None  # noqa: S101 - no action: there is an entry
            cert, key = _ledger_files(current, settings.ca.dir)
            if cert is None or key is None:
                return None
            pfx = None
        else:
            cert, key, pfx = user.cert, user.key, user.pfx
        files = _credential_files(user, cert, key, pfx)
        digests = _credential_digests(files, (done or {}).get("inputs"))
        package = _package(settings.package_path)
        fingerprint = _fingerprint(user, settings, package, files, digests)
    except ToolkitError:
        return None  # the worker reports it
    if previous.get("fingerprint") != fingerprint or not _intact(
        settings.output, previous, (done or {}).get("stat")
    ):
        return None
    return UserOutcome(**{**outcome_fields(previous), "status": "unchanged"})


class _DryRunIssue(Exception):
    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


@dataclass(frozen=True)
class ChunkTask:
    """Several users for one worker: planned one by one, written and made durable together."""

    settings: BatchSettings
    users: tuple[tuple[UserEntry, dict[str, Any] | None, dict[str, list[str]]], ...]

    def tasks(self) -> Iterator[UserTask]:
        for user, previous, owned in self.users:
            yield UserTask(user, self.settings, previous, owned)


def warm_up(settings: BatchSettings, targets: Iterable[str]) -> None:
    """Load in this process what planning these targets needs: the pipeline's modules, the
    package's prepared profiles, the templates, the roots. A batch does it before it forks its
    workers, which then start with it instead of each loading it again. Errors are left for the
    users' planning to report."""
    from toolkit.plan import prepare_package  # local, as in _prepare

    try:
        prepare_package(_package(settings.package_path), tuple(targets), guide=settings.guide)
        _roots(settings.roots)
    except ToolkitError:
        return
    has_syncfs()  # looked up once (ctypes), not in every worker


def process_user(task: UserTask) -> UserOutcome:
    """Issue (if needed), validate, plan and write one user. Never raises for user errors."""
    return process_chunk(ChunkTask(task.settings, ((task.user, task.previous, task.owned),)))[0]


def process_chunk(
    chunk: ChunkTask,
    stop: Callable[[], bool] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> list[UserOutcome]:
    """Every user of ``chunk``: each planned and staged on its own (one user's failure never
    touches another's files), then all staged users committed at once: their journal ``begin``
    lines made durable (with their files, when one replaces an earlier version), swapped in,
    then their ``done`` lines appended. Never raises for user errors. ``stop`` is
    asked before each user (the main process's own chunks): the users staged so far are
    committed and the outcomes end there."""
    settings = chunk.settings
    outcomes: list[UserOutcome] = []
    staged: list[tuple[UserTask, UserOutcome, Any]] = []
    writer = StagedWrite(settings.output, group=True)
    try:
        group = _issue_chunk(chunk)  # the chunk's new certificates: one CA commit
        for task in chunk.tasks():
            if stop is not None and stop():
                break
            if on_start is not None:
                on_start(task.user.name)
            outcome, prepared = _prepare(task, group)
            outcomes.append(outcome)
            if prepared is None:
                continue
            plan, _inputs = prepared
            try:
                writer.stage(plan.name, plan.files, force=settings.force, owned=task.owned)
            except ToolkitError as exc:
                _failed(outcome, exc)
                continue
            staged.append((task, outcome, prepared))
        if staged:
            with _termination_deferred():
                _commit(writer, settings, staged)
    finally:
        writer.discard()  # staged and not committed (a stop, or a bug): as it was before
    for outcome in outcomes:
        if outcome.status == "failed":
            outcome.files = []  # claim only files actually written
    return outcomes


def _commit(
    writer: StagedWrite, settings: BatchSettings, staged: list[tuple[UserTask, UserOutcome, Any]]
) -> None:
    def before_swap(durable: bool) -> None:  # durable: a group of fresh users only
        begins = [
            {"event": "begin", "name": o.name, "files": o.files, **({"fresh": True} if f else {})}
            for (_t, o, _p), f in zip(staged, writer.fresh(), strict=True)
        ]
        journal.append_many(settings.output, begins, durable=durable)

    failure = writer.commit(before_swap=before_swap)
    done: list[dict[str, Any]] = []
    reported = False
    for task, outcome, (plan, inputs) in staged:
        if outcome.name not in writer.committed:
            if not reported:  # the user the error stopped at
                _failed(outcome, failure or WriteError(f"{settings.output}: not written"))
                reported = True
            else:
                outcome.status = "skipped"
                outcome.reason = "not written (the output folder cannot be written)"
            continue
        _remove_stale_targets(task, outcome, plan.name)
        outcome.status = "written"
        # the stat keys as written: a re-run trusts a file's recorded digest while they hold
        base = os.fspath(settings.output)
        stats = {f["path"]: stat_key(os.path.join(base, f["path"])) for f in outcome.files}
        event = {"event": "done", "name": outcome.name, "record": outcome.record()}
        done.append({**event, "stat": stats, "inputs": inputs})
    if done:  # durable with the next group's files, or at the end of the run
        journal.append_many(settings.output, done)


def _remove_stale_targets(task: UserTask, outcome: UserOutcome, name: str) -> None:
    """Target folders of the previous run that this one no longer writes."""
    previous, settings = task.previous, task.settings
    if not previous:
        return
    user_dir = settings.output / name
    for stale in sorted(set(previous.get("targets", [])) - set(task.user.targets)):
        if settings.force or is_owned(user_dir, user_dir / stale, task.owned):
            remove_tree(user_dir / stale)
        elif (user_dir / stale).exists():
            outcome.warnings.append(
                f"{user_dir / stale} was left in place: it holds files the toolkit did not write"
            )


def _failed(outcome: UserOutcome, exc: ToolkitError) -> None:
    outcome.status = "failed"
    outcome.reason = exc.message
    outcome.hint = exc.hint
    outcome.fatal = isinstance(exc, WriteError)


def _prepare(task: UserTask, group: dict[str, Issued] | None = None) -> tuple[UserOutcome, Any]:
    """Issue (if needed), validate and plan one user: its outcome, and the plan to write (None
    when there is nothing to write: failed, or a dry run)."""
    user, settings = task.user, task.settings
    outcome = UserOutcome(
        user.name, "failed", display_name=user.display_name, targets=list(user.targets)
    )
    try:
        package = _package(settings.package_path)
        issued = None
        cert: Path | None
        key: Path | None
        pfx: Path | None
        if user.issued_from_ca:
            cert, key, issued, superseded = _ca_credentials(user, settings, group)
            outcome.superseded = superseded
            source = PassphraseSource()
            pfx = None
        else:
            cert, key, pfx = user.cert, user.key, user.pfx
            source = PassphraseSource(
                user.passphrase_env, user.passphrase_file, environ=settings.environ
            )
        outcome.issued = issued
        files = _credential_files(user, cert, key, pfx)
        before = [(p, stat_key(p)) for p, _what in files if p is not None]  # before reading
        contents = _read_credentials(files)
        digests = {p: hashlib.sha256(data).hexdigest() for p, data in contents.items()}
        outcome.fingerprint = _fingerprint(user, settings, package, files, digests)
        inputs = {str(p): [digests[p], *key] for p, key in before if key is not None}
        # local: only a user that is written needs the pipeline
        from toolkit.plan import CredentialInputs, UserRequest, plan_from_inputs

        key_source = None
        if user.key_passphrase_env or user.key_passphrase_file:
            key_source = PassphraseSource(
                user.key_passphrase_env, user.key_passphrase_file, environ=settings.environ
            )
        pkcs12_source = None
        if user.pkcs12_passphrase_env or user.pkcs12_passphrase_file:
            pkcs12_source = PassphraseSource(
                user.pkcs12_passphrase_env, user.pkcs12_passphrase_file, environ=settings.environ
            )
        signs = {"mobileconfig", "ikev2"} & set(user.targets)
        plan = plan_from_inputs(
            package,
            CredentialInputs(
                cert=cert, key=key, pfx=pfx, chain=user.chain, passphrase=source, contents=contents
            ),
            UserRequest(
                name=user.name,
                display_name=user.display_name,
                targets=user.targets,
                disable_dco=user.disable_dco,
                warn_days=settings.warn_days,
                key_passphrase=key_source,
                guide=settings.guide,
                contact=user.contact,
                pkcs12_passphrase=pkcs12_source,
                embed_pkcs12_password=user.embed_pkcs12_password,
                signer=_signer(settings.sign) if signs else None,
            ),
            roots=_roots(settings.roots)[0],
        )
        outcome.display_name = plan.display_name
        outcome.certificate = plan.certificate.to_json()
        outcome.warnings = [w.message for w in plan.warnings]
        outcome.files = [
            {"path": f"{plan.name}/{f.path}", "sha256": f.sha256, "mode": f"{f.mode:04o}"}
            for f in plan.files
        ]
        outcome.send = plan.send()
        if settings.dry_run:
            # outputs are ours to replace when their digests are ones the journal recorded
            # for this user; anything else needs --force (whatever a manifest says)
            check_writable(settings.output, plan.name, plan.files, settings.force, task.owned)
            outcome.status = "planned"
            return outcome, None
        return outcome, (plan, inputs)
    except _DryRunIssue as exc:
        outcome.status = "planned"
        outcome.issued = exc.action
        outcome.warnings = [f"a certificate would be {exc.action} from the CA"]
    except ToolkitError as exc:
        _failed(outcome, exc)
    except Exception as exc:  # one user's bug must not stop the others
        outcome.status = "failed"
        outcome.reason = f"internal error ({type(exc).__name__})"
        outcome.hint = "run this user alone with 'ovpn-toolkit generate --traceback' and report it"
    return outcome, None


def outcome_fields(record: dict[str, Any]) -> dict[str, Any]:
    names = UserOutcome.__dataclass_fields__
    return {k: v for k, v in record.items() if k in names}
