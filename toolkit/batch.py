"""`batch`: profiles for a whole team from one validated user list.

The main process validates everything, then hands one small task per user to worker
processes (key generation and signing are CPU-bound). Each worker loads, plans and writes
that user's files itself and returns a small :class:`UserOutcome`, so memory stays flat
however many users there are. One user's failure never touches another user's files.
Re-runs are idempotent: a user whose inputs are unchanged and whose files are intact is
reported as unchanged and not touched; the manifest is rewritten only when it changes.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from toolkit import __version__
from toolkit.credentials import load_credentials, load_roots
from toolkit.errors import CAError, ToolkitError, UserListError
from toolkit.fsutil import atomic_write, ensure_private_dir
from toolkit.generate import UserPlan, UserRequest, plan_user
from toolkit.package import AzurePackage, load_package
from toolkit.passphrase import PassphraseSource
from toolkit.targets import PlannedFile, TargetPlan
from toolkit.templating import render
from toolkit.userlist import CASettings, UserEntry, UserList
from toolkit.writer import write_plans

MANIFEST_SCHEMA_VERSION = 1
Status = Literal["written", "unchanged", "failed", "planned", "skipped"]


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


@dataclass(frozen=True)
class UserTask:
    user: UserEntry
    settings: BatchSettings
    previous: dict[str, Any] | None  # this user's record in the previous manifest


@dataclass
class UserOutcome:
    name: str
    status: Status
    display_name: str | None = None
    reason: str | None = None
    hint: str | None = None
    certificate: dict[str, Any] | None = None
    targets: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    issued: str | None = None  # "issued" / "renewed" when the CA made a certificate this run
    fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}


@dataclass
class BatchResult:
    outcomes: list[UserOutcome]
    manifest_written: bool
    dropped: list[str] = field(default_factory=list)  # in the old manifest, not in the list

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[UserOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


# --- per user (runs in worker processes) ---------------------------------------------------------
_PACKAGES: dict[Path, AzurePackage] = {}
_AUTHORITIES: dict[Path, Any] = {}  # CA folder -> toolkit.ca.CertificateAuthority


def _package(path: Path) -> AzurePackage:
    if path not in _PACKAGES:
        _PACKAGES[path] = load_package(path)
    return _PACKAGES[path]


def _digest(paths: list[Path | None]) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p else None for p in paths]


def _fingerprint(
    user: UserEntry, settings: BatchSettings, package: AzurePackage, cred_files: list[Path | None]
) -> str:
    """Everything the outputs depend on; passphrases are not (the output key is the same)."""
    data = {
        "tool": __version__,
        "package": package.profile_sha256,
        "package_source": Path(package.source).name,
        "user": {k: v for k, v in asdict(user).items() if k != "line"},
        "credentials": _digest(cred_files),
        "roots": _digest(list(settings.roots)),
        "warn_days": settings.warn_days,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _intact(output: Path, record: dict[str, Any]) -> bool:
    for entry in record.get("files", []):
        path = output / entry["path"]
        try:
            if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
                return False
        except OSError:
            return False
    return bool(record.get("files"))


def _ca_action(current: Any, renew_within: int | None) -> Literal["issued", "renewed"] | None:
    """What the CA must do for a user whose current ledger entry is ``current`` (or None)."""
    if current is None:
        return "issued"
    if renew_within is not None and current.days_left() <= renew_within:
        return "renewed"
    return None


def _ca_credentials(user: UserEntry, settings: BatchSettings) -> tuple[Path, Path, str | None]:
    """Cert and key from the CA's ledger; issue (or renew near expiry) when needed."""
    from toolkit import ca  # local: only batch users with a CA need it

    assert settings.ca is not None  # noqa: S101 - validated before any work
    ca_dir = settings.ca.dir
    current = ca.find_current(ca_dir, user.name)
    action = _ca_action(current, settings.renew_within)
    if action == "issued":
        history = [e for e in ca.read_ledger(ca_dir) if e.name.casefold() == user.name.casefold()]
        latest = max(history, key=lambda e: e.issued_at, default=None)
        if latest is not None and latest.status == "revoked":
            raise CAError(
                f"the certificate of '{user.name}' was revoked; the batch does not issue a new "
                "one by itself",
                hint=f"remove '{user.name}' from the user list, or issue deliberately: "
                f"ovpn-toolkit ca issue --ca {ca_dir} --name {user.name}",
            )
    if action is not None:
        if settings.dry_run:
            raise _DryRunIssue(action)
        authority = _AUTHORITIES.get(ca_dir)
        if authority is None:  # decrypting the CA key is slow: once per worker process
            authority = ca.open_ca(
                ca_dir, PassphraseSource(settings.ca.passphrase_env, settings.ca.passphrase_file)
            )
            _AUTHORITIES[ca_dir] = authority
        if action == "issued":
            result = authority.issue(
                user.name, email=user.email, days=user.days, key_type=user.key_type
            )
        else:
            result = authority.renew(user.name, days=user.days)
        return result.cert_path, result.key_path, action
    assert current is not None  # noqa: S101
    cert, key = current.path(ca_dir, "cert"), current.path(ca_dir, "key")
    if cert is None or key is None or not cert.exists() or not key.exists():
        raise CAError(
            f"{ca_dir}: the ledger names files for '{user.name}' that are missing",
            hint=f"restore them, or revoke and reissue: ovpn-toolkit ca renew --ca {ca_dir} "
            f"{user.name}",
        )
    return cert, key, None


class _DryRunIssue(Exception):
    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


def _guide(plan: UserPlan, package: AzurePackage, *, key_protected: bool) -> PlannedFile:
    remote = package.profile().first("remote")
    files = {t.target: [f.path for f in t.files] for t in plan.targets}
    html = render(
        "install-guide.html.j2",
        display_name=plan.display_name,
        name=plan.name,
        gateway=remote.args[0] if remote and remote.args else "the Azure VPN gateway",
        common_name=plan.certificate.common_name or plan.certificate.subject,
        not_after=plan.certificate.not_after.strftime("%Y-%m-%d"),
        thumbprint=plan.certificate.thumbprint_sha1,
        tunnelblick_zip=next((p for p in files.get("tunnelblick", []) if p.endswith(".zip")), None),
        ios_profile=next(iter(files.get("ios", [])), None),
        openvpn_profile=next(iter(files.get("openvpn", [])), None),
        key_protected=key_protected,
    )
    return PlannedFile("INSTALL.html", html.encode("utf-8"))


def process_user(task: UserTask) -> UserOutcome:
    """Issue (if needed), validate, plan and write one user. Never raises for user errors."""
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
            cert, key, issued = _ca_credentials(user, settings)
            source = PassphraseSource()
            pfx = None
        else:
            cert, key, pfx = user.cert, user.key, user.pfx
            source = PassphraseSource(user.passphrase_env, user.passphrase_file)
        outcome.issued = issued
        fingerprint = _fingerprint(user, settings, package, [cert, key, pfx, *user.chain])
        outcome.fingerprint = fingerprint
        previous = task.previous
        if (
            previous is not None
            and not settings.force
            and previous.get("fingerprint") == fingerprint
            and previous.get("status") in ("written", "unchanged")
            and _intact(settings.output, previous)
        ):
            carried = UserOutcome(**{**_outcome_fields(previous), "status": "unchanged"})
            carried.issued = issued
            return carried
        creds = load_credentials(cert=cert, key=key, pfx=pfx, chain=user.chain, passphrase=source)
        key_passphrase = None
        if user.key_passphrase_env or user.key_passphrase_file:
            key_passphrase = PassphraseSource(
                user.key_passphrase_env, user.key_passphrase_file
            ).resolve("the profile key", ask=False)
        plan = plan_user(
            package,
            creds,
            UserRequest(
                name=user.name,
                display_name=user.display_name,
                targets=user.targets,
                disable_dco=user.disable_dco,
                warn_days=settings.warn_days,
                key_passphrase=key_passphrase,
            ),
            roots=load_roots(list(settings.roots)),
        )
        plans = [
            *plan.targets,
            TargetPlan(
                "guide", "", [_guide(plan, package, key_protected=bool(key_passphrase))], [], []
            ),
        ]
        outcome.display_name = plan.display_name
        outcome.certificate = plan.certificate.to_json()
        outcome.warnings = [w.message for w in plan.warnings]
        outcome.files = [
            {
                "path": f"{plan.name}/{f.path}",
                "sha256": hashlib.sha256(f.data).hexdigest(),
                "mode": f"{f.mode:04o}",
            }
            for p in plans
            for f in p.files
        ]
        if settings.dry_run:
            outcome.status = "planned"
            return outcome
        # outputs recorded in our own manifest are ours to replace; anything else needs --force
        write_plans(settings.output, plan.name, plans, force=settings.force or previous is not None)
        if previous:
            for stale in set(previous.get("targets", [])) - set(user.targets):
                shutil.rmtree(settings.output / plan.name / stale, ignore_errors=True)
        outcome.status = "written"
    except _DryRunIssue as exc:
        outcome.status = "planned"
        outcome.issued = exc.action
        outcome.warnings = [f"a certificate would be {exc.action} from the CA"]
    except ToolkitError as exc:
        outcome.status = "failed"
        outcome.reason = exc.message
        outcome.hint = exc.hint
    except Exception as exc:  # one user's bug must not stop the others
        outcome.status = "failed"
        outcome.reason = f"internal error ({type(exc).__name__})"
        outcome.hint = "run this user alone with 'ovpn-toolkit generate --traceback' and report it"
    return outcome


def _outcome_fields(record: dict[str, Any]) -> dict[str, Any]:
    names = UserOutcome.__dataclass_fields__
    return {k: v for k, v in record.items() if k in names}


# --- the whole batch (main process) --------------------------------------------------------------
def read_manifest(output: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((output / "manifest.json").read_text("utf-8"))
        return {u["name"]: u for u in data.get("users", []) if isinstance(u, dict) and "name" in u}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def preflight(users: UserList, settings: BatchSettings) -> None:
    """Checks that need more than the YAML: package, roots, CA and its passphrase."""
    load_package(settings.package_path)
    load_roots(list(settings.roots))
    if settings.ca is None or settings.dry_run:
        return
    from toolkit import ca

    needs_key = False
    for user in users.users:
        current = ca.find_current(settings.ca.dir, user.name) if user.issued_from_ca else None
        if user.issued_from_ca and _ca_action(current, settings.renew_within) is not None:
            needs_key = True
            break
    if needs_key:
        source = PassphraseSource(settings.ca.passphrase_env, settings.ca.passphrase_file)
        try:
            ca.open_ca(settings.ca.dir, source)
        except ToolkitError as exc:
            raise UserListError(f"{users.source}: ca: {exc.message}", hint=exc.hint) from exc


def _tasks(
    users: UserList, settings: BatchSettings, previous: dict[str, dict[str, Any]]
) -> Iterator[UserTask]:
    for user in users.users:
        yield UserTask(user, settings, previous.get(user.name))


def run_batch(
    users: UserList,
    settings: BatchSettings,
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    on_outcome: Callable[[UserOutcome], None] | None = None,
) -> BatchResult:
    _PACKAGES.clear()  # a package replaced since an earlier run in this process is re-read
    _AUTHORITIES.clear()
    preflight(users, settings)
    if not settings.dry_run:
        ensure_private_dir(settings.output)
    previous = read_manifest(settings.output)
    outcomes: dict[str, UserOutcome] = {}
    order = [u.name for u in users.users]
    stop = False

    def record(outcome: UserOutcome) -> None:
        nonlocal stop
        outcomes[outcome.name] = outcome
        if on_outcome:
            on_outcome(outcome)
        if fail_fast and outcome.status == "failed":
            stop = True

    tasks = _tasks(users, settings, previous)
    if jobs <= 1:
        for task in tasks:
            if stop:
                break
            record(process_user(task))
    else:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            window = jobs * 4  # bounded in-flight work: memory stays flat for long lists
            pending: set[cf.Future[UserOutcome]] = set()
            exhausted = False
            while not exhausted or pending:
                while not exhausted and not stop and len(pending) < window:
                    next_task = next(tasks, None)
                    if next_task is None:
                        exhausted = True
                    else:
                        pending.add(pool.submit(process_user, next_task))
                if stop:
                    exhausted = True
                    for future in pending:
                        future.cancel()
                if not pending:
                    break
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    if not future.cancelled():
                        record(future.result())
    for name in order:
        if name not in outcomes:
            outcomes[name] = UserOutcome(name, "skipped", reason="not run (--fail-fast)")
    ordered = [outcomes[name] for name in order]
    written = False
    if not settings.dry_run:
        written = write_manifest(settings.output, settings, ordered, previous)
    dropped = [name for name in previous if name not in outcomes]
    return BatchResult(ordered, written, dropped)


def _manifest_records(
    ordered: list[UserOutcome], previous: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    records = []
    for outcome in ordered:
        if outcome.status == "skipped" and outcome.name in previous:
            records.append(previous[outcome.name])  # untouched: keep what we knew
            continue
        record = outcome.to_json()
        record.pop("issued", None)  # per run, not state
        if record["status"] == "unchanged":
            record["status"] = "written"  # the manifest describes files, not this run
        records.append(record)
    return records


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
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
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
            ]
        )
    changed = False
    for name, content in (("manifest.json", data), ("manifest.csv", buffer.getvalue().encode())):
        path = output / name
        try:
            same = path.read_bytes() == content
        except OSError:
            same = False
        if not same:
            atomic_write(path, content)
            changed = True
    return changed


def default_jobs() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
