"""Revoke a client certificate: mark it in the ledger, return the Azure commands (the CA key is
not needed)."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from toolkit.ca import keys
from toolkit.ca.azure import AzureCommands, revocation_commands
from toolkit.ca.ledger import (
    CAPaths,
    LedgerEntry,
    _ledger_lock,
    _require_ca_folder,
    _same_name,
    _utc,
    normalize_thumbprint,
)
from toolkit.ca.root import _read_info
from toolkit.ca.store import _record_entries, _refresh
from toolkit.errors import CAError


@dataclass(frozen=True)
class RevokeResult:
    entry: LedgerEntry  # as now recorded (status revoked)
    already_revoked: bool
    commands: AzureCommands


def _select_for_revoke(
    paths: CAPaths, entries: Sequence[LedgerEntry], name_or_thumbprint: str
) -> LedgerEntry:
    thumbprint = normalize_thumbprint(name_or_thumbprint)
    if thumbprint is not None:
        match = [e for e in entries if e.thumbprint_sha1 == thumbprint]
        if match:
            return match[-1]
    named = [e for e in entries if _same_name(e, name_or_thumbprint)]
    if not named:
        what = "thumbprint" if thumbprint else "certificate named"
        names = sorted({e.name for e in entries})
        close = difflib.get_close_matches(name_or_thumbprint, names, n=1)
        raise CAError(
            f"no {what} {name_or_thumbprint!r} in the ledger {paths.ledger}",
            hint=f"did you mean {close[0]!r}?"
            if close
            else "`ovpn-toolkit ca list` shows names and thumbprints",
        )
    active = [e for e in named if e.status == "valid"]
    if active:
        return active[-1]
    latest = named[-1]
    if latest.status == "revoked":
        return latest
    raise CAError(
        f"{name_or_thumbprint!r} has no valid certificate in the ledger (only superseded ones)",
        hint="revoke a superseded certificate by its thumbprint (`ovpn-toolkit ca list` shows it)",
    )


def revoke(
    directory: Path,
    name_or_thumbprint: str,
    *,
    gateway: str | None = None,
    resource_group: str | None = None,
    now: dt.datetime | None = None,
) -> RevokeResult:
    """Mark a certificate revoked in the ledger and return the commands that revoke it on Azure.

    By name: that name's valid certificate. By thumbprint: exactly that one (also a superseded
    one, which Azure still accepts until it expires). Revoking twice is harmless.
    The CA key is not needed. ``gateway``/``resource_group`` default to the ones in ca.json.
    """
    paths = CAPaths(Path(directory))
    _require_ca_folder(paths)
    gateway, resource_group = _read_info(paths).azure_target(gateway, resource_group)
    moment = _utc(now or keys.utcnow())
    with _ledger_lock(paths):
        cached = _refresh(paths)
        target = _select_for_revoke(paths, cached.state.entries(), name_or_thumbprint.strip())
        already = target.status == "revoked"
        if not already:
            target = replace(target, status="revoked", revoked_at=moment)
            _record_entries(paths, cached, [target], moment)
    return RevokeResult(
        target,
        already,
        revocation_commands(
            target.azure_revocation_name,
            target.thumbprint_sha1,
            gateway=gateway,
            resource_group=resource_group,
        ),
    )
