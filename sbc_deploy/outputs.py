"""The output folder as one consistent set: staged, hashed in a manifest, swapped in whole.

A run never writes into OUTDIR directly. It writes everything into a staging folder beside OUTDIR
(same parent, so the same filesystem), adds ``manifest.json`` (command, versions, input hashes,
settings, and the sha256 of every file of the set), and only then swaps the staging folder in:

    parent/.OUTDIR.sbc-staging-<pid>-<token>/    <- the run writes here
        report.json report.md report.html model.net model.nir model.onnx manifest.json
    rename(staging, OUTDIR)                        (OUTDIR did not exist)
    renameat2(staging, OUTDIR, RENAME_EXCHANGE)    (OUTDIR held a previous set: one atomic swap;
                                                    the old set is now in the staging name and is
                                                    deleted)

So OUTDIR always holds either the previous set, exactly, or the new complete set: an interrupted
(SIGINT, SIGKILL) or failed run leaves OUTDIR as it was and, for SIGINT or an error, removes its
staging folder at once. A SIGKILLed run cannot clean up; its staging folder carries the dead
process's id and is removed by the next run that writes beside it.

An OUTDIR that exists and holds files this tool did not write (no ``manifest.json`` of ours, or
files the manifest does not list) is refused unless ``force=True``; with ``force`` its content is
replaced (deleted) like a previous set.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from sbc_deploy.errors import ConfigError, ExportError, PathError
from sbc_deploy.fileio import confined_to, inside
from sbc_deploy.resources import resource_error
from sbc_deploy.untrusted import shown

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_TOOL = "sbc-deploy"
MANIFEST_SCHEMA = 1
_STAGING = re.compile(r"^\.(?P<name>.+)\.sbc-staging-(?P<pid>\d+)-[0-9a-f]+(-old)?$")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` as a POSIX path relative to it, sorted."""
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            found.append((Path(root) / name).relative_to(folder).as_posix())
    return sorted(found)


def _entries(folder: Path) -> list[tuple[str, str]]:
    """Everything under ``folder`` as (POSIX path relative to it, kind), symbolic links not
    followed; kind is ``"file"`` (regular), ``"dir"``, ``"symlink"`` or ``"other"`` (FIFO,
    socket, device)."""
    found: list[tuple[str, str]] = []

    def scan(path: Path, prefix: str) -> None:
        with os.scandir(path) as it:
            for entry in sorted(it, key=lambda e: e.name):
                name = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    found.append((name, "symlink"))
                elif entry.is_dir(follow_symlinks=False):
                    found.append((name, "dir"))
                    scan(Path(entry.path), f"{name}/")
                elif entry.is_file(follow_symlinks=False):
                    found.append((name, "file"))
                else:
                    found.append((name, "other"))

    scan(folder, "")
    return found


def safe_relative(name: object) -> bool:
    """True for a relative POSIX path made of plain names (no '..', '.', empty part, absolute
    root, backslash or control character): a manifest entry that stays inside its folder."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts) and shown(name) == name


def subfolder(root: str | Path, name: str) -> Path:
    """``root/name`` for a folder named by input (a target's name), refused unless it is one
    plain name that resolves strictly inside ``root``.

    Raises:
        PathError: ``name`` is '..', absolute, holds a separator, or leads out through a link.
    """
    path = Path(root) / name
    if not safe_relative(name) or "/" in name or not inside(root, path):
        raise PathError(f"'{shown(name)}' would lead outside the output folder; refused",
                        where=shown(root))
    return path


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of ``folder`` when it is one this tool wrote, else ``None``."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("tool") != MANIFEST_TOOL or \
            not isinstance(data.get("outputs"), dict):
        return None
    return data


def verify_set(folder: str | Path) -> list[str]:
    """Problems with the output set in ``folder`` (empty list: manifest present, every file
    listed with a matching sha256, no file missing, nothing extra: no unlisted file, no folder
    that holds no listed file, no symbolic link, FIFO or other special file, and no manifest
    entry that points outside the folder)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{shown(folder)}: no sbc-deploy manifest"]
    listed: Mapping[str, Any] = manifest["outputs"]
    bad = [name for name in listed if not safe_relative(name)]
    problems = [f"{shown(name)}: manifest entry is not a path inside the set" for name in bad]
    listed = {name: digest for name, digest in listed.items() if name not in bad}
    parents = {"/".join(name.split("/")[:i]) for name in listed
               for i in range(1, name.count("/") + 1)}
    kinds = dict(_entries(folder))
    for name, kind in kinds.items():
        if name == MANIFEST and kind == "file":
            continue
        if kind == "symlink":
            problems.append(f"{shown(name)}: a symbolic link (a run writes only regular files)")
        elif kind == "other":
            problems.append(f"{shown(name)}: not a regular file (FIFO, socket or device)")
        elif kind == "dir" and name not in parents:
            problems.append(f"{shown(name)}/: a folder the manifest does not expect")
        elif kind == "file" and name not in listed:
            problems.append(f"{shown(name)}: not in the manifest")
    for name, digest in listed.items():
        if kinds.get(name) != "file":
            if name not in kinds:
                problems.append(f"{shown(name)}: listed in the manifest but missing")
        elif sha256_file(folder / name) != digest:
            problems.append(f"{shown(name)}: sha256 differs from the manifest")
    return problems


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(out_dir: str | Path) -> list[Path]:
    """Remove staging folders beside ``out_dir`` left by runs whose process is gone."""
    out_dir = Path(out_dir)
    parent = out_dir.parent
    removed = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        match = _STAGING.match(entry.name)
        if match is None or match["name"] != out_dir.name or not entry.is_dir():
            continue
        if _pid_alive(int(match["pid"])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
        log.info("removed the staging folder of a dead run: %s", entry)
    return removed


def check_output_dir(out_dir: str | Path, *, force: bool = False) -> list[str]:
    """Problems that stop a run from writing its set to ``out_dir`` (nothing is created).

    Refused: a path that is a file; a parent folder that is missing or not writable; the current
    folder, the home folder or a filesystem root; an existing folder holding files this tool did
    not write (unless ``force``).
    """
    try:
        return _check_output_dir(Path(out_dir), force)
    except OSError as err:  # a name too long for the filesystem, a folder we may not list ...
        return [f"{shown(out_dir)}: cannot be used as the output folder: "
                f"{err.strerror or err}"]


def _check_output_dir(out: Path, force: bool) -> list[str]:
    where = shown(out)
    problems = []
    if out.exists() and not out.is_dir():
        return [f"{where}: exists and is not a folder"]
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == resolved.parent or resolved == Path.home().resolve() or \
            resolved == cwd or resolved in cwd.parents:
        return [f"{where}: the output folder is replaced as a whole at the end of a run; "
                "name a folder of its own (such as ./sbc-out), not the current folder or one "
                "above it, the home or the root folder"]
    parent = resolved.parent
    # the nearest existing ancestor must be writable (missing parents are created)
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        problems.append(f"{where}: folder {probe} is not writable")
    if out.is_dir() and not force:
        contents = _files(out)
        if contents:
            manifest = read_manifest(out)
            foreign = [f for f in contents if f != MANIFEST and
                       (manifest is None or f not in manifest["outputs"])]
            if manifest is None or foreign:
                listing = ", ".join(map(shown, foreign[:5])) + (" ..." if len(foreign) > 5
                                                                  else "")
                problems.append(f"{where}: holds files sbc-deploy did not write ({listing}); "
                                "a run replaces the whole folder: pick another -o, or pass "
                                "--force to replace it (those files are deleted)")
    return problems


def prepare(out_dir: str | Path, *, force: bool = False) -> None:
    """Raise :class:`ConfigError` listing every problem of :func:`check_output_dir`."""
    problems = check_output_dir(out_dir, force=force)
    if problems:
        raise ConfigError("; ".join(problems), where="-o/--out")


# --------------------------------------------------------------------------- the atomic swap

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the set is swapped (the swap itself is short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _commit(staging: Path, out: Path) -> None:
    with _no_sigint():
        if out.exists():
            if not _exchange(staging, out):
                # no atomic exchange here: move the old set aside, then the new one in
                aside = staging.with_name(staging.name + "-old")
                os.replace(out, aside)
                os.replace(staging, out)
                staging = aside
            _fsync_dir(out.parent)
            shutil.rmtree(staging, ignore_errors=True)  # now the previous set
        else:
            os.rename(staging, out)
            _fsync_dir(out.parent)


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` records besides the output hashes."""

    command: Sequence[str] = ()
    versions: Mapping[str, str] | None = None
    inputs: Sequence[str | Path] = ()
    settings: Mapping[str, Any] | None = None


def write_manifest(folder: Path, info: Manifest) -> Path:
    """Write ``manifest.json`` into ``folder``, hashing every other file in it.

    Raises:
        PathError: the folder holds something other than regular files and folders (a writer
            left a link or a special file): the set would not verify.
    """
    strange = [name for name, kind in _entries(folder) if kind not in ("file", "dir")]
    if strange:
        raise PathError(f"the output set holds {', '.join(map(shown, strange[:5]))}, which are "
                        "not regular files", where=shown(folder))
    inputs = {}
    for source in info.inputs:
        path = Path(source)
        if path.is_file():
            inputs[str(source)] = sha256_file(path)
        elif path.is_dir():
            inputs[str(source)] = {name: sha256_file(path / name) for name in _files(path)}
    document = {
        "tool": MANIFEST_TOOL,
        "schema": MANIFEST_SCHEMA,
        "command": list(info.command),
        "versions": dict(info.versions or {}),
        "inputs": inputs,
        "settings": dict(info.settings or {}),
        "outputs": {name: sha256_file(folder / name) for name in _files(folder)
                    if name != MANIFEST},
    }
    path = folder / MANIFEST
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, default=str)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


@contextlib.contextmanager
def staged_output(out_dir: str | Path, info: Manifest | None = None, *,
                  force: bool = False) -> Iterator[Path]:
    """Yield a fresh staging folder; on success write the manifest and swap it in as OUTDIR.

    On any exception (KeyboardInterrupt included) the staging folder is removed and OUTDIR is
    left exactly as it was.

    Raises:
        ConfigError: OUTDIR cannot take the set (see :func:`check_output_dir`).
        ExportError: the staging folder cannot be created.
    """
    out = Path(out_dir)
    prepare(out, force=force)
    clean_stale_staging(out)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".{out.name}.sbc-staging-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
    except OSError as err:
        named = resource_error(err, where=str(out))
        if named is not None:
            raise named from err
        raise ExportError(f"cannot create the staging folder: {err.strerror or err}",
                          where=str(out)) from err
    try:
        with confined_to(staging):  # every writer's path is checked to stay inside
            yield staging
        write_manifest(staging, info or Manifest())
        _commit(staging, out.resolve())
    except BaseException as err:
        written = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) \
            if isinstance(err, OSError) else None
        shutil.rmtree(staging, ignore_errors=True)
        named = (resource_error(err, written=written, where=str(out))
                 if isinstance(err, OSError) else None)
        if named is not None:  # a full disk or a file size limit: named, not called a bug
            raise named from err
        raise


__all__ = ["MANIFEST", "Manifest", "check_output_dir", "clean_stale_staging", "prepare",
           "read_manifest", "safe_relative", "sha256_file", "staged_output", "subfolder",
           "verify_set", "write_manifest"]
