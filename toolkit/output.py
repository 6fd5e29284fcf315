"""The one module that writes files: atomic, private (0600 files, 0700 folders), all or nothing.

Everything the toolkit puts on disk goes through here: a user's profiles (:func:`write_user`),
manifests and CA files (:func:`atomic_write`, :func:`write_all`), the CA ledger's lock file
(:func:`exclusive_lock`) and the removal of outputs the toolkit owns (:func:`remove_tree`).

A user's outputs: each target owns one folder under ``OUTPUT/<name>/``. Every file is first
written into a staging folder beside it; only when all are written are the target folders
swapped in by rename (loose files such as the install guide by ``os.replace``). A failure,
or Ctrl-C, removes the staging folder and leaves earlier outputs as they were. A crash (SIGKILL,
power loss) can leave a ``.staging-*`` folder or a target folder parked as ``.old-*``:
:func:`recover_user` (run before a user is touched again) removes the first and puts the
second back when its replacement never arrived, so every output is the earlier or the new
version, complete.

Existing outputs are replaced only with ``force`` or when every file in them has a digest
the caller recorded for that path (``owned``): files the toolkit did not write are never
replaced behind the user's back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import LockedError, OutputError, WriteError

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
        raise WriteError(
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
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise WriteError(
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


def append_line(path: Path, line: bytes, *, durable: bool = True) -> None:
    """Append one line (ending in a newline) with one ``write(2)`` under an flock(2), so several
    processes may append at once; fsynced unless ``durable`` is False. A failed write is
    truncated away; after a line torn by a crash the new one starts on a line of its own."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        try:
            data = line
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + line
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if durable:
                os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise _cannot_write(path, exc) from exc
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    """fsync ``path`` (after appends with ``durable=False``); a missing file is fine."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    finally:
        os.close(fd)


def _cannot_write(path: Path, exc: OSError) -> WriteError:
    return WriteError(
        f"{path}: cannot write ({exc.strerror or exc})",
        hint="check free space and permissions of the output folder",
    )


@contextlib.contextmanager
def folder_lock(path: Path, *, busy: str) -> Iterator[None]:
    """An exclusive flock(2) on the folder itself (no lock file), not waiting: OutputError
    with ``busy`` when another process holds it."""
    ensure_private_dir(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{path}: {busy}", hint="wait for it to finish, or choose another --output"
            ) from None
        yield
    finally:
        os.close(fd)


# --- one user's outputs ----------------------------------------------------------------------
STAGING_PREFIX = ".staging-"
OLD_PREFIX = ".old-"

Owned = Mapping[str, Collection[str]]  # path under OUTPUT/<name>/ -> sha256 digests we wrote there


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_owned(user_dir: Path, path: Path, owned: Owned) -> bool:
    """True when every file at or under ``path`` holds bytes the toolkit recorded writing there
    (``owned``); a symlink, an unknown file or a changed one makes it not ours."""
    candidates = [path] if not path.is_dir() or path.is_symlink() else sorted(path.rglob("*"))
    try:
        for item in candidates:
            if item.is_symlink() or not (item.is_file() or item.is_dir()):
                return False
            if item.is_file():
                rel = item.relative_to(user_dir).as_posix()
                if _sha256(item) not in owned.get(rel, ()):
                    return False
    except OSError:
        return False
    return True


def check_writable(
    output_dir: Path,
    name: str,
    files: Sequence[PlannedFile],
    force: bool,
    owned: Owned | None = None,
) -> None:
    """Raise OutputError if writing would replace something without ``force`` that is not
    ``owned`` (recorded by the caller as written by the toolkit, digest for digest)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(
            f"{output_dir}: exists and is not a folder", hint="choose another --output"
        )
    if force:
        return
    user_dir = output_dir / name
    for existing in existing_outputs(output_dir, name, files):
        if owned is None or not is_owned(user_dir, existing, owned):
            raise OutputError(
                f"{existing}: already exists",
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


def fsync_dir(path: Path) -> None:
    """Make renames and creations in ``path`` durable (a no-op where folders cannot be synced)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def recover_user(output_dir: Path, name: str) -> list[str]:
    """Clean what an interrupted :func:`write_user` left in ``OUTPUT/<name>/``: staging folders
    go; a target folder parked as ``.old-<folder>-<token>`` goes back in place when its
    replacement is missing, else it goes. Returns what was done, one line each."""
    user_dir = output_dir / name
    done: list[str] = []
    try:
        names = (STAGING_PREFIX, OLD_PREFIX)
        leftovers = sorted(p for p in user_dir.iterdir() if p.name.startswith(names))
    except OSError:
        return done
    for path in leftovers:
        if path.name.startswith(OLD_PREFIX):
            folder = path.name[len(OLD_PREFIX) :].rsplit("-", 1)[0]
            final = user_dir / folder
            if folder and not final.exists():
                try:
                    os.replace(path, final)
                except OSError:
                    continue  # cannot mend now (read-only?): leave it for the next run
                done.append(f"restored {final} (an interrupted write had moved it aside)")
                continue
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path} (left by an interrupted write)")
    if done:
        fsync_dir(user_dir)
    return done


def write_user(
    output_dir: Path,
    name: str,
    files: Sequence[PlannedFile],
    *,
    force: bool = False,
    owned: Owned | None = None,
    durable: bool = True,
) -> None:
    """Write every file under ``output_dir/name``; all or nothing (see the module docstring).

    Durable on return: every file is fsynced before the swap, the folder after it; all of a
    user's files at once (:func:`sync`). ``durable=False`` is for a batch, which makes a whole
    group durable at once (:func:`sync_filesystem`) before it reports any of those users
    written. What an interrupted earlier write left in the folder is mended first
    (:func:`recover_user`)."""
    recover_user(output_dir, name)
    check_writable(output_dir, name, files, force, owned)
    user_dir = output_dir / name
    created = not user_dir.exists()
    ensure_private_dir(user_dir)
    token = secrets.token_hex(4)
    staging = user_dir / f"{STAGING_PREFIX}{token}"
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
                previous = user_dir / f"{OLD_PREFIX}{folder_name}-{token}"
                os.replace(final, previous)
            swapped.append((final, previous))
            os.replace(staging / folder_name, final)
        for planned in files:
            if not planned.folder:
                os.replace(staging / planned.path, user_dir / planned.path)
        if durable:
            fsync_dir(user_dir)  # the renames themselves
            if created:
                fsync_dir(output_dir)
    except BaseException as exc:  # also Ctrl-C: never leave half-swapped outputs
        # each step is one rename, so a crash in here still leaves what recover_user mends
        for index, (final, previous) in enumerate(reversed(swapped)):
            with contextlib.suppress(OSError):
                if final.exists():
                    os.replace(final, staging / f"undone-{index}")
                if previous is not None:
                    os.replace(previous, final)
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(user_dir, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        raise WriteError(
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
    "append_line",
    "atomic_write",
    "check_writable",
    "ensure_private_dir",
    "exclusive_lock",
    "existing_outputs",
    "folder_lock",
    "fsync_dir",
    "is_owned",
    "make_private",
    "recover_user",
    "remove_file",
    "remove_tree",
    "sync",
    "sync_file",
    "write_all",
    "write_if_changed",
    "write_user",
]
