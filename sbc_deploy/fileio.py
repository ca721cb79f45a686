"""Atomic file output: a file is either the old good one or the complete new one, never half.

Every writer checks its path with :func:`check_writable`. Inside :func:`confined_to` (the
pipeline's staging folder, see :mod:`sbc_deploy.outputs`) that check also refuses any path that
would land outside the folder, after resolving ``..`` and symbolic links.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from sbc_deploy.errors import ExportError, PathError
from sbc_deploy.untrusted import shown

_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar("sbc_write_root",
                                                                     default=None)


@contextlib.contextmanager
def confined_to(folder: str | Path) -> Iterator[Path]:
    """Within this block every :func:`check_writable` path must resolve inside ``folder``."""
    root = Path(folder).resolve()
    token = _ROOT.set(root)
    try:
        yield root
    finally:
        _ROOT.reset(token)


def inside(folder: str | Path, path: str | Path) -> bool:
    """True when ``path`` resolves (``..`` and symbolic links followed) strictly inside
    ``folder``."""
    root = Path(folder).resolve()
    return root in Path(path).resolve().parents


def check_writable(path: str | Path) -> Path:
    """Fail early, before any work, when ``path`` cannot be written (missing or read-only folder,
    or outside the folder of an enclosing :func:`confined_to`)."""
    path = Path(path)
    root = _ROOT.get()
    if root is not None and not inside(root, path):
        raise PathError(f"would be written outside the output folder {shown(root)}; refused",
                        where=shown(path))
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
