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
import io
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

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


class PendingFile:
    """A file written in pieces (:meth:`write`), put in place atomically by :meth:`finish` only
    when its content differs from what ``path`` holds. While the pieces match the present file
    nothing is written; at the first difference a temporary file beside ``path`` gets the
    matching part and the rest. So an unchanged manifest of 10 000 users is neither held in
    memory nor rewritten (and needs no free space)."""

    def __init__(self, path: Path, mode: int = FILE_MODE) -> None:
        self.path = path
        self.mode = mode
        self._matched = 0  # bytes equal to the present file so far
        self._tmp: str | None = None
        self._handle: BinaryIO | None = None
        try:
            self._present: io.BufferedReader | None = open(path, "rb")  # noqa: SIM115
        except OSError:
            self._present = None
        if self._present is None:
            self._diverge()

    def _diverge(self) -> None:
        """From here on, write: the temporary file starts with the part that matched."""
        ensure_private_dir(self.path.parent)
        try:
            fd, self._tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            os.fchmod(fd, self.mode)
            handle = self._handle = os.fdopen(fd, "wb", buffering=1 << 16)
            if self._present is not None:
                self._present.seek(0)
                remaining = self._matched
                while remaining:
                    block = self._present.read(min(remaining, 1 << 20))
                    handle.write(block)
                    remaining -= len(block)
                self._present.close()
                self._present = None
        except OSError as exc:
            self.abort()
            raise _cannot_write(self.path, exc) from exc

    def write(self, data: bytes) -> None:
        if self._present is not None:
            if self._present.read(len(data)) == data:
                self._matched += len(data)
                return
            self._diverge()
        assert self._handle is not None  # noqa: S101 - set by _diverge
        try:
            self._handle.write(data)
        except OSError as exc:
            self.abort()
            raise _cannot_write(self.path, exc) from exc

    def finish(self) -> bool:
        """Put the file in place (fsynced) unless ``path`` holds the same bytes; True if it did."""
        if self._present is not None:
            longer = self._present.read(1) != b""
            if not longer:
                self._present.close()
                self._present = None
                return False
            self._diverge()  # the present file goes on: the new one is a prefix of it
        assert self._handle is not None and self._tmp is not None  # noqa: S101
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise _cannot_write(self.path, exc) from exc
        fsync_dir(self.path.parent)
        return True

    def abort(self) -> None:
        for handle in (self._present, self._handle):
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
        self._present = self._handle = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None


def scratch_file(prefix: str) -> BinaryIO:
    """An unlinked temporary file (0600, gone when closed or at exit) for data a run keeps on
    disk instead of in memory; never an output."""
    return tempfile.TemporaryFile(prefix=prefix)


def _make_all_durable(folders: Sequence[Path], paths: Sequence[Path]) -> None:
    """:func:`make_durable` (one syncfs for many paths) when ``folders`` are all on one file
    system, else an fsync of each path (:func:`sync`)."""
    if folders and len({os.stat(folder).st_dev for folder in folders}) == 1:
        make_durable(folders[0], paths)
    else:
        sync(paths)


def write_all(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Write every file, or none: files created here are removed again if one write fails.

    Each is written to a temporary file beside it; all of them are made durable together
    (:func:`make_durable`: one syncfs for many files on one file system, else an fsync of
    each), then renamed into place, then their folders are made durable the same way."""
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
        folders = list(dict.fromkeys(path.parent for _tmp, path in temps))
        _make_all_durable(folders, [Path(tmp) for tmp, _path in temps])
        for tmp, path in temps:
            existed = path.exists()
            os.replace(tmp, path)
            if not existed:
                created.append(path)
        _make_all_durable(folders, folders)
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


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read with os-level reads (a batch hashes many); OSError
    when it cannot be read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def file_digests(folder: Path) -> Iterator[tuple[str, str]]:
    """(path relative to ``folder``, SHA-256) of every regular file under it; symlinks are
    neither followed nor listed (never ours), unreadable files are left out."""
    for top, _dirs, names in os.walk(folder):
        for file_name in names:
            path = os.path.join(top, file_name)
            if os.path.isfile(path) and not os.path.islink(path):
                with contextlib.suppress(OSError):
                    yield os.path.relpath(path, folder).replace(os.sep, "/"), file_sha256(path)


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
                if file_sha256(item) not in owned.get(rel, ()):
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
    user_dir = output_dir / name
    if force or not user_dir.exists():
        return
    for existing in existing_outputs(output_dir, name, files):
        if owned is None or not is_owned(user_dir, existing, owned):
            raise OutputError(
                f"{existing}: already exists",
                hint="pass --force to replace it, or choose another --output folder",
            )


def _write_new(
    staging: str, relative: str, data: bytes, mode: int, made: set[str] | None = None
) -> list[str]:
    """Create ``staging/relative`` with ``data`` (and its missing folders, 0700; ``made``
    remembers the folders already there); returns what was created, to be made durable with
    the rest (:func:`make_durable`). Plain strings: a batch creates ten paths per user."""
    made = set() if made is None else made
    created: list[str] = []
    *folders, _file = relative.split("/")
    for depth in range(1, len(folders) + 1):
        folder = "/".join(folders[:depth])
        if folder in made:
            continue
        made.add(folder)
        path = f"{staging}/{folder}"
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue
        if _UMASK & DIR_MODE:
            os.chmod(path, DIR_MODE)  # whatever the umask
        created.append(path)
    path = f"{staging}/{relative}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        if mode & _UMASK:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    created.append(path)
    return created


def _current_umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


_UMASK = _current_umask()

_SYNC_THREADS = 8
_sync_pool: Any = None  # a ThreadPoolExecutor, made at the first use


def _fsync_path(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync(paths: Sequence[str | Path]) -> None:
    """fsync every file and folder in ``paths``, all at once: issued together from threads,
    the file system commits them in one journal transaction instead of one after another."""
    global _sync_pool
    if len(paths) <= 1:
        for path in paths:
            _fsync_path(path)
        return
    if _sync_pool is None:
        from concurrent.futures import ThreadPoolExecutor  # local: most runs never need it

        _sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="ovpn-toolkit-fsync")
    for _ in _sync_pool.map(_fsync_path, paths):  # re-raises the first OSError
        pass


_SYNCFS_FROM = 16  # paths: from this many on, one syncfs(2) is cheaper than one fsync each


_libc_syncfs: Any = None  # syncfs(2) from the C library, looked up once; False: none


def has_syncfs() -> bool:
    """True where the C library has syncfs(2) (Linux): :func:`sync_all` then makes every file
    durable, not only the folders."""
    global _libc_syncfs
    if _libc_syncfs is None:
        try:
            import ctypes

            _libc_syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError, ImportError):
            _libc_syncfs = False
    return _libc_syncfs is not False


def _syncfs(anchor: Path) -> bool:
    """syncfs(2) of the file system holding ``anchor``; False where the C library lacks it."""
    if not has_syncfs():
        return False
    fd = os.open(anchor, os.O_RDONLY)
    try:
        if _libc_syncfs(fd) != 0:
            import ctypes

            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(anchor))
    finally:
        os.close(fd)
    return True


def make_durable(anchor: Path, paths: Sequence[str | Path], *, group: bool = False) -> None:
    """Make ``paths`` (files and folders, all on the file system of ``anchor``) durable: one
    ``syncfs(2)`` for a batch's group, or any :data:`_SYNCFS_FROM` paths or more (Linux: it writes
    back and commits everything dirty on that file system at once, and reports write-back errors
    since Linux 5.8), else an fsync of each, issued together from threads (:func:`sync`)."""
    if not paths:
        return
    if (group or len(paths) >= _SYNCFS_FROM) and _syncfs(anchor):
        return
    sync(paths)


def sync_all(anchor: Path) -> None:
    """Make everything written on the file system of ``anchor`` durable (the end of a batch)."""
    try:
        if not _syncfs(anchor):
            sync([anchor, *(p for p in anchor.iterdir() if p.is_dir())])
    except OSError as exc:
        raise _cannot_write(anchor, exc) from exc


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
    try:  # plain names first: a batch asks this for every user, nearly always for nothing
        marks = (STAGING_PREFIX, OLD_PREFIX)
        found = [n for n in os.listdir(user_dir) if n.startswith(marks)]
    except OSError:
        return done
    leftovers = sorted(user_dir / n for n in found)
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


class StagedWrite:
    """Several users' outputs written at once, all or nothing per user, durable as a group.

    :meth:`stage` writes a user's files into a staging folder (nothing is fsynced yet);
    :meth:`commit` makes every staged file durable in one go (:func:`make_durable`), swaps each
    user's outputs in by rename, makes the renames durable in one go, and cleans up. A user whose
    folder does not exist yet (``group=True``: a batch, which holds the output folder's lock and
    removes ``OUTPUT/.staging-*`` at its start) is staged whole as
    ``OUTPUT/.staging-<token>/<name>`` and swapped in by one rename; otherwise the staging folder
    is ``OUTPUT/<name>/.staging-<token>`` and each target folder is swapped (see the module
    docstring). :meth:`discard` removes whatever was staged and not committed.

    With ``group=True``, where :func:`sync_all` can make every file durable (syncfs(2)), a
    group of whole new users only is not made durable by :meth:`commit` at all (neither their
    files nor the renames): the caller makes its own record of them durable before the swap
    and calls :func:`sync_all` once before it reports any of them written. Until then a crash
    can lose a rename or tear a file of theirs, which the batch's journal detects (the user is
    written again). Nothing they replace can be lost: there was nothing."""

    def __init__(self, output_dir: Path, *, group: bool = False) -> None:
        self.output_dir = output_dir
        self.group = group
        self.token = secrets.token_hex(4)
        self.root = output_dir / f"{STAGING_PREFIX}{self.token}"  # for whole new users
        self.staged: list[_Staged] = []
        self._root_made = False  # self.root exists (made at the first new user)
        self._output_checked = False  # the output folder is a folder (checked once)

    def stage(
        self,
        name: str,
        files: Sequence[PlannedFile],
        *,
        force: bool = False,
        owned: Owned | None = None,
    ) -> None:
        """Check that ``files`` may be written for ``name`` and write them into staging.
        OutputError when something not ours is in the way; WriteError when writing fails
        (nothing of this user is left behind)."""
        user_dir = self.output_dir / name
        exists = os.path.exists(user_dir)
        if exists or not self._output_checked:  # a new user in a checked folder: no checks
            recover_user(self.output_dir, name)
            check_writable(self.output_dir, name, files, force, owned)
            self._output_checked = True
        fresh = self.group and not exists
        if fresh:
            if not self._root_made:
                ensure_private_dir(self.root)
                self._root_made = True
            staging = self.root / name
            created = False
        else:
            created = not exists
            ensure_private_dir(user_dir)
            staging = user_dir / f"{STAGING_PREFIX}{self.token}"
        item = _Staged(
            name, user_dir, staging, self.token, fresh, created, _owned_folders(files), files
        )
        try:
            staging.mkdir(mode=DIR_MODE)
            if _UMASK & DIR_MODE:
                os.chmod(staging, DIR_MODE)
            item.new_paths.append(staging)
            made: set[str] = set()
            base = os.fspath(staging)
            for planned in files:
                item.new_paths.extend(
                    _write_new(base, planned.path, planned.data, planned.mode, made)
                )
        except BaseException as exc:
            item.discard()
            if not isinstance(exc, OSError):
                raise
            raise _write_failed(user_dir, exc) from exc
        self.staged.append(item)

    def fresh(self) -> list[bool]:
        """Per staged user, in staging order: True when its whole folder is new (one rename)."""
        return [item.fresh for item in self.staged]

    def commit(self, before_swap: Callable[[bool], None] | None = None) -> WriteError | None:
        """Swap every staged user in. ``before_swap(durable)`` runs once every staged file is
        written and before the swaps (a batch appends its journal's ``begin`` lines there):
        ``durable`` False, what it writes becomes durable with the staged files; True (a group
        of fresh users only, whose files are left to the caller's final :func:`sync_all`), it
        must make what it writes durable itself. Returns None, or the WriteError that stopped
        the swaps: the users before it are in place, that one and the rest are not (see
        :attr:`committed`)."""
        self.committed: list[str] = []
        failure: WriteError | None = None
        fresh_only = self.group and all(self.fresh()) and has_syncfs()
        try:
            if before_swap is not None:
                before_swap(fresh_only)
            if not fresh_only:
                make_durable(
                    self.output_dir,
                    [p for item in self.staged for p in item.new_paths],
                    group=self.group,
                )
        except (OSError, WriteError) as exc:
            self.discard()
            return exc if isinstance(exc, WriteError) else _write_failed(self.output_dir, exc)
        swapped: list[_Staged] = []
        try:
            for item in self.staged:
                try:
                    item.swap()  # all or nothing for this user: undone on any failure
                except OSError as exc:
                    failure = _write_failed(item.user_dir, exc)
                    break
                swapped.append(item)
        except BaseException:  # Ctrl-C between two users: the group is put back as it was
            for item in reversed(swapped):
                item.undo()
            self.discard()
            raise
        try:
            # the renames: made durable before earlier versions are removed; a group of new
            # users only (nothing removed) leaves it to the caller's final sync_all
            replaced = [i.user_dir for i in swapped if not i.fresh]
            if replaced or not self.group:
                make_durable(self.output_dir, [self.output_dir, *replaced], group=self.group)
        except OSError as exc:
            failure = failure or _write_failed(self.output_dir, exc)
        self.committed = [item.name for item in swapped]
        for item in swapped:
            item.finish()
        done = {id(item) for item in swapped}  # by identity: _Staged compares field by field
        self.staged = [item for item in self.staged if id(item) not in done]
        self.discard()
        return failure

    def discard(self) -> None:
        """Remove everything staged and not committed (each user as it was before)."""
        for item in self.staged:
            item.discard()
        self.staged = []
        if self.group:
            shutil.rmtree(self.root, ignore_errors=True)
            self._root_made = False


@dataclass
class _Staged:
    name: str
    user_dir: Path
    staging: Path
    token: str
    fresh: bool  # the whole user folder is staged: one rename
    created: bool  # the user folder was created for this write (removed if it fails)
    folders: list[str]
    files: Sequence[PlannedFile]
    new_paths: list[str | Path] = field(default_factory=list)  # made durable before the swap
    swapped: list[tuple[Path, Path | None]] = field(default_factory=list)

    def swap(self) -> None:
        """Rename the staged outputs into place; on failure put everything back and raise."""
        try:
            if self.fresh:
                os.rename(self.staging, self.user_dir)  # fails if it appeared meanwhile
                self.swapped.append((self.user_dir, None))
                return
            for folder_name in self.folders:
                final = self.user_dir / folder_name
                previous = None
                if final.exists():
                    previous = self.user_dir / f"{OLD_PREFIX}{folder_name}-{self.token}"
                    os.replace(final, previous)
                self.swapped.append((final, previous))
                os.replace(self.staging / folder_name, final)
            for planned in self.files:
                if not planned.folder:
                    os.replace(self.staging / planned.path, self.user_dir / planned.path)
        except BaseException:  # also Ctrl-C: never leave half-swapped outputs
            self.undo()
            raise

    def undo(self) -> None:
        # each step is one rename, so a crash in here still leaves what recover_user mends
        for index, (final, previous) in enumerate(reversed(self.swapped)):
            with contextlib.suppress(OSError):
                if self.fresh:
                    os.rename(final, self.staging)
                    continue
                if final.exists():
                    os.replace(final, self.staging / f"undone-{index}")
                if previous is not None:
                    os.replace(previous, final)
        self.swapped = []
        self.discard()

    def finish(self) -> None:
        for _final, previous in self.swapped:
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
        if not self.fresh:
            shutil.rmtree(self.staging, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.created:
            shutil.rmtree(self.user_dir, ignore_errors=True)


def _write_failed(user_dir: Path, exc: OSError) -> WriteError:
    return WriteError(
        f"{user_dir}: cannot write the outputs ({exc.strerror or exc})",
        hint="check free space and permissions of the output folder; nothing was changed",
    )


def write_user(
    output_dir: Path,
    name: str,
    files: Sequence[PlannedFile],
    *,
    force: bool = False,
    owned: Owned | None = None,
) -> None:
    """Write every file under ``output_dir/name``; all or nothing (see the module docstring),
    durable on return. What an interrupted earlier write left in the folder is mended first
    (:func:`recover_user`)."""
    writer = StagedWrite(output_dir)
    try:
        writer.stage(name, files, force=force, owned=owned)
        failure = writer.commit()
    finally:
        writer.discard()
    if failure is not None:
        raise failure


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "PUBLIC_MODE",
    "PendingFile",
    "PlannedFile",
    "StagedWrite",
    "append_line",
    "atomic_write",
    "check_writable",
    "ensure_private_dir",
    "exclusive_lock",
    "existing_outputs",
    "file_digests",
    "file_sha256",
    "folder_lock",
    "fsync_dir",
    "is_owned",
    "make_durable",
    "make_private",
    "recover_user",
    "remove_file",
    "remove_tree",
    "scratch_file",
    "sync",
    "sync_all",
    "sync_file",
    "write_all",
    "write_if_changed",
    "write_user",
]
