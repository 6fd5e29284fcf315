"""The only place that writes files: atomic, private (0600 files, 0700 folders)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from toolkit.errors import OutputError

FILE_MODE = 0o600
DIR_MODE = 0o700


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
