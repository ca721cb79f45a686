"""Atomic file output: a file is either the old good one or the complete new one, never half."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from sbc_deploy.errors import ExportError


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, when ``path`` cannot be written (missing or read-only folder)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ExportError("is a directory, expected a file path", where=str(path))
    if not folder.is_dir():
        raise ExportError(f"folder {folder} does not exist", where=str(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"folder {folder} is not writable", where=str(path))
    return path


def prepare_output_dir(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) and check it is writable, before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"cannot create the output folder: {err.strerror}",
                          where=str(folder)) from err
    check_writable(folder / ".probe")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = check_writable(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix,
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the finished file onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
