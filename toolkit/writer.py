"""Put a :class:`UserPlan` on disk: all or nothing, private modes, no overwrite without force.

Each target owns one folder under ``OUTPUT/<name>/``. Every file is first written into a
staging folder beside it; only when all are written are the target folders swapped in by
rename. A failure removes the staging folder and leaves earlier outputs as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import OutputError
from toolkit.fsutil import DIR_MODE, ensure_private_dir
from toolkit.targets import TargetPlan


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    sha256: str
    mode: int
    size: int


def _existing(user_dir: Path, plans: list[TargetPlan]) -> list[Path]:
    found = []
    for plan in plans:
        if plan.folder:
            if (user_dir / plan.folder).exists():
                found.append(user_dir / plan.folder)
        else:
            found.extend(user_dir / f.path for f in plan.files if (user_dir / f.path).exists())
    return found


def check_writable(output_dir: Path, name: str, plans: list[TargetPlan], force: bool) -> None:
    """Raise OutputError if writing would overwrite something without ``force``."""
    user_dir = output_dir / name
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(
            f"{output_dir}: exists and is not a folder", hint="choose another --output"
        )
    existing = _existing(user_dir, plans)
    if existing and not force:
        raise OutputError(
            f"{existing[0]}: already exists",
            hint="pass --force to replace it, or choose another --output folder",
        )


def _write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_plans(
    output_dir: Path, name: str, plans: list[TargetPlan], *, force: bool = False
) -> list[WrittenFile]:
    """Write every file of ``plans`` under ``output_dir/name``; all or nothing."""
    check_writable(output_dir, name, plans, force)
    user_dir = output_dir / name
    created = not user_dir.exists()
    ensure_private_dir(user_dir)
    token = secrets.token_hex(4)
    staging = user_dir / f".staging-{token}"
    swapped: list[tuple[Path, Path | None]] = []  # (target folder, its previous version)
    written: list[WrittenFile] = []
    try:
        staging.mkdir(mode=DIR_MODE)
        for plan in plans:
            for planned in plan.files:
                _write_file(staging / planned.path, planned.data, planned.mode)
                written.append(
                    WrittenFile(
                        user_dir / planned.path,
                        hashlib.sha256(planned.data).hexdigest(),
                        planned.mode,
                        len(planned.data),
                    )
                )
        for folder in (staging / p.folder for p in plans if p.folder):
            for sub in [folder, *[d for d in folder.rglob("*") if d.is_dir()]]:
                os.chmod(sub, DIR_MODE)
        for plan in plans:
            if plan.folder:
                final = user_dir / plan.folder
                previous = None
                if final.exists():
                    previous = user_dir / f".old-{plan.folder}-{token}"
                    os.replace(final, previous)
                swapped.append((final, previous))
                os.replace(staging / plan.folder, final)
            else:
                for planned in plan.files:
                    os.replace(staging / planned.path, user_dir / planned.path)
    except BaseException as exc:  # also Ctrl-C: never leave half-swapped outputs
        for final, previous in reversed(swapped):
            with contextlib.suppress(OSError):
                if final.exists():
                    shutil.rmtree(final)
                if previous is not None:
                    os.replace(previous, final)
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(user_dir, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        raise OutputError(
            f"{user_dir}: cannot write the outputs ({exc.strerror or exc})",
            hint="check free space and permissions of the output folder; nothing was changed",
        ) from exc
    for _final, previous in swapped:
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    return written
