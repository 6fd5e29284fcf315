"""The one module that writes files: atomic, private (0600 files, 0700 folders), all or nothing.

Everything the toolkit puts on disk goes through here: a user's profiles (:func:`write_user`),
manifests and CA files (:func:`atomic_write`, :func:`write_all`), the CA ledger's lock file
(:func:`exclusive_lock`) and the removal of outputs the toolkit owns (:func:`remove_tree`).

A user's outputs: each target owns one folder under ``OUTPUT/<name>/``. Every file is first
written into a staging folder beside it; only when all are written are the target folders
swapped in by rename (loose files such as the install guide by ``os.replace``). A failure,
or Ctrl-C, removes the staging folder and leaves earlier outputs as they were.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from toolkit.errors import LockedError, OutputError

FILE_MODE = 0o600
DIR_MODE = 0o700
PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class PlannedFile:
    """A file to write, relative to ``OUTPUT/<name>/``; its digest is computed once, here."""

    path: str
    data: bytes = field(repr=False)
    mode: int = FILE_MODE
    sha256: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def folder(self) -> str:
        """The top folder of ``path`` ('' for a file directly in the user's folder)."""
        return self.path.split("/", 1)[0] if "/" in self.path else ""


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700 folders; existing folders are left as they are."""
    try:
        missing = []
        current = path
        while not current.exists():
            missing.append(current)
            current = current.parent
        for folder in reversed(missing):
            folder.mkdir(mode=DIR_MODE)
            os.chmod(folder, DIR_MODE)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot create the folder ({exc.strerror})",
            hint="choose another --output folder, or check its permissions",
        ) from exc


def make_private(path: Path) -> None:
    """chmod an existing folder to 0700 (a CA folder must be private even if it existed)."""
    try:
        path.chmod(DIR_MODE)
    except OSError as exc:
        raise OutputError(f"{path}: cannot make the folder private ({exc.strerror})") from exc


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(
            f"{path}: cannot write ({exc.strerror})",
            hint="check free space and permissions of the output folder",
        ) from exc


def write_if_changed(path: Path, data: bytes, mode: int = FILE_MODE) -> bool:
    """:func:`atomic_write` unless ``path`` already holds exactly ``data``; True when written."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write(path, data, mode)
    return True


def write_all(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Write every file, or none: files created here are removed again if one write fails.

    Each is written to a temporary file beside it; all of them are made durable together
    (:func:`sync`), then renamed into place, then their folders are synced."""
    created: list[Path] = []
    temps: list[tuple[str, Path]] = []
    try:
        for path, data, mode in files:
            ensure_private_dir(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(data)
        sync([Path(tmp) for tmp, _path in temps])
        for tmp, path in temps:
            existed = path.exists()
            os.replace(tmp, path)
            if not existed:
                created.append(path)
        sync(list(dict.fromkeys(path.parent for _tmp, path in temps)))
    except BaseException as exc:
        for tmp, _path in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(exc, OSError):
            raise OutputError(
                f"{exc.filename or 'a file'}: cannot write ({exc.strerror})",
                hint="check free space and permissions of the output folder",
            ) from exc
        raise


def remove_tree(path: Path) -> None:
    """Remove a folder the toolkit owns (a dropped target's outputs); missing is fine."""
    shutil.rmtree(path, ignore_errors=True)


def remove_file(path: Path) -> bool:
    """Remove a file the toolkit owns; True when it was removed."""
    try:
        path.unlink()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float, *, holder: str) -> Iterator[None]:
    """An exclusive flock(2) on ``path`` (created 0600), waiting up to ``timeout`` seconds."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot open the lock file ({exc.strerror})",
            hint="check the folder's permissions",
        ) from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockedError(
                        f"{path}: locked by another process",
                        hint=f"wait for the other ovpn-toolkit run on this {holder} to finish",
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- one user's outputs ----------------------------------------------------------------------
def _owned_folders(files: Sequence[PlannedFile]) -> list[str]:
    folders: list[str] = []
    for planned in files:
        if planned.folder and planned.folder not in folders:
            folders.append(planned.folder)
    return folders


def existing_outputs(output_dir: Path, name: str, files: Sequence[PlannedFile]) -> list[Path]:
    """The planned target folders and loose files that already exist."""
    user_dir = output_dir / name
    found = [user_dir / f for f in _owned_folders(files) if (user_dir / f).exists()]
    found += [user_dir / f.path for f in files if not f.folder and (user_dir / f.path).exists()]
    return found


def check_writable(output_dir: Path, name: str, files: Sequence[PlannedFile], force: bool) -> None:
    """Raise OutputError if writing would overwrite something without ``force``."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(
            f"{output_dir}: exists and is not a folder", hint="choose another --output"
        )
    existing = existing_outputs(output_dir, name, files)
    if existing and not force:
        raise OutputError(
            f"{existing[0]}: already exists",
            hint="pass --force to replace it, or choose another --output folder",
        )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data``; made durable afterwards, with the others (:func:`sync`)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)


_SYNC_THREADS = 8
_sync_pool: ThreadPoolExecutor | None = None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync(paths: Sequence[Path]) -> None:
    """fsync every file and folder in ``paths``, all at once: issued together from threads,
    the file system commits them in one journal transaction instead of one after another."""
    global _sync_pool
    if len(paths) <= 1:
        for path in paths:
            _fsync_path(path)
        return
    if _sync_pool is None:
        _sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="ovpn-toolkit-fsync")
    for _ in _sync_pool.map(_fsync_path, paths):  # re-raises the first OSError
        pass


def can_sync_filesystem() -> bool:
    """Whether :func:`sync_filesystem` is available (Linux: syncfs(2))."""
    return _syncfs() is not None


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # local: only a batch needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast("Callable[[int], int]", function)


def sync_filesystem(path: Path) -> None:
    """Everything written so far to the file system that holds ``path`` is on disk: one
    syncfs(2) for a whole group of users written with ``durable=False``. Raises OutputError."""
    import ctypes

    syncfs = _syncfs()
    if syncfs is None:
        raise OutputError("syncfs is not available on this system")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise OutputError(f"{path}: cannot open the folder ({exc.strerror})") from exc
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OutputError(
                f"{path}: the written files could not be made durable ({os.strerror(code)})",
                hint="check the disk and free space of the output folder",
            )
    finally:
        os.close(fd)


def write_user(
    output_dir: Path,
    name: str,
    files: Sequence[PlannedFile],
    *,
    force: bool = False,
    durable: bool = True,
) -> None:
    """Write every file under ``output_dir/name``; all or nothing (see the module docstring).

    ``durable``: every file and folder is fsynced before this returns. ``durable=False`` is for
    a batch, which makes a whole group durable at once (:func:`sync_filesystem`) before it
    reports any of those users written."""
    check_writable(output_dir, name, files, force)
    user_dir = output_dir / name
    created = not user_dir.exists()
    ensure_private_dir(user_dir)
    token = secrets.token_hex(4)
    staging = user_dir / f".staging-{token}"
    folders = _owned_folders(files)
    swapped: list[tuple[Path, Path | None]] = []  # (target folder, its previous version)
    try:
        staging.mkdir(mode=DIR_MODE)
        for planned in files:
            _write_new(staging / planned.path, planned.data, planned.mode)
        new_dirs = [staging]
        for folder in (staging / f for f in folders):
            for sub in [folder, *[d for d in folder.rglob("*") if d.is_dir()]]:
                os.chmod(sub, DIR_MODE)
                new_dirs.append(sub)
        # durable before anything is swapped in: the files' data and the new folders' entries
        if durable:
            sync([*(staging / f.path for f in files), *new_dirs])
        for folder_name in folders:
            final = user_dir / folder_name
            previous = None
            if final.exists():
                previous = user_dir / f".old-{folder_name}-{token}"
                os.replace(final, previous)
            swapped.append((final, previous))
            os.replace(staging / folder_name, final)
        for planned in files:
            if not planned.folder:
                os.replace(staging / planned.path, user_dir / planned.path)
        if durable:
            sync([user_dir, output_dir] if created else [user_dir])  # the renames themselves
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


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "PUBLIC_MODE",
    "PlannedFile",
    "atomic_write",
    "can_sync_filesystem",
    "check_writable",
    "ensure_private_dir",
    "exclusive_lock",
    "existing_outputs",
    "make_private",
    "remove_file",
    "remove_tree",
    "sync",
    "sync_filesystem",
    "write_all",
    "write_if_changed",
    "write_user",
]
