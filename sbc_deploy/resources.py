"""Name a resource failure instead of calling it a bug: disk, file size, quota, memory.

The CLI maps what :func:`resource_error` recognises to exit code 4 (``EXIT_RESOURCE``) with one
line saying what ran out, how much was asked where that is known, and what to do:

==========================  ==========================================================
failure                      recognised as
==========================  ==========================================================
``OSError`` ENOSPC           disk full (free space on that filesystem, set size so far)
``OSError`` EFBIG            file size limit (``ulimit -f``; the limit in bytes)
``OSError`` EDQUOT           disk quota used up
``MemoryError``              memory (numpy says how much it tried to allocate)
torch CPU allocator          memory ("DefaultCPUAllocator: can't allocate memory: you
                             tried to allocate N bytes")
torch ``OutOfMemoryError``   GPU memory ("Tried to allocate 2.00 GiB")
==========================  ==========================================================

The exception's chain (``__cause__`` / ``__context__``) is searched too, so a failure wrapped by
another error is still named. Nothing here imports torch.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from sbc_deploy.errors import ResourceError
from sbc_deploy.untrusted import shown

EXIT_RESOURCE = 4

_DISK = {errno.ENOSPC: "disk space", errno.EFBIG: "file size limit",
         getattr(errno, "EDQUOT", -1): "disk quota"}
_TORCH_CPU = re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes")
_TORCH_GPU = re.compile(r"Tried to allocate ([0-9.]+ [KMGT]?i?B)")
_NUMPY = re.compile(r"Unable to allocate ([0-9.]+ [KMGTP]?i?B)")
# the dynamic loader, out of address space while mapping a library (torch's is ~1 GiB)
_LOADER = ("failed to map segment from shared object", "cannot allocate memory")
_MEMORY_HELP = ("give the process more memory (ulimit -v, the container's limit), or pass "
                "--memory-budget below what it may use so that the planner picks "
                "block-diagonal Hessians or refuses before the work, --method magnitude "
                "(no Hessians) or --eval-limit N (fewer evaluation samples in memory)")


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover


def _chain(err: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    while err is not None and err not in found and len(found) < 16:
        found.append(err)
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return found


def _disk(err: OSError, kind: str, written: int | None, where: str | None) -> ResourceError:
    name = err.filename if isinstance(err.filename, (str, Path)) else None
    place = f" writing {shown(name)}" if name else ""
    if kind == "file size limit":
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        limit = "unlimited" if soft == resource.RLIM_INFINITY else _bytes(soft)
        return ResourceError(
            f"a file reached the file size limit ({limit}, ulimit -f){place}", resource=kind,
            where=where,
            hint="raise the limit (ulimit -f), or leave the largest export out (--export "
                 "names the formats to write); the previous output set is left as it was")
    free = None
    if name or where:
        probe = Path(name).parent if name else Path(where or ".")
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            free = None
    facts = []
    if written is not None:
        facts.append(f"{_bytes(written)} of this run's files written so far")
    if free is not None:
        facts.append(f"{_bytes(free)} free")
    what = "no space left on the disk" if kind == "disk space" else "the disk quota is used up"
    return ResourceError(
        f"{what}{place}" + (f" ({', '.join(facts)})" if facts else ""), resource=kind,
        where=where,
        hint="free some space or pick an -o on a disk with room (the output set is written "
             "beside OUTDIR, then swapped in); the previous output set is left as it was")


def resource_error(err: BaseException, *, written: int | None = None,
                   stage: str | None = None, where: str | None = None) -> ResourceError | None:
    """The :class:`ResourceError` that ``err`` (or an exception in its chain) amounts to, or
    ``None`` when it is not a resource failure.

    Args:
        err: the exception that ended the run.
        written: bytes of output written so far (said for a full disk).
        stage: what was running (said for memory failures).
        where: the output folder (said for disk failures).
    """
    during = f" during {shown(stage)}" if stage else ""
    for item in _chain(err):
        if isinstance(item, ResourceError):
            return item
        if isinstance(item, OSError) and item.errno in _DISK:
            return _disk(item, _DISK[item.errno], written, where)
        text = str(item)
        # h5py and protobuf report the errno inside their own message
        for code, kind in _DISK.items():
            if code > 0 and isinstance(item, OSError) and (
                    f"errno = {code}," in text or os.strerror(code) in text):
                return _disk(item, kind, written, where)
        if type(item).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text:
            match = _TORCH_GPU.search(text)
            asked = f" (tried to allocate {match[1]})" if match else ""
            return ResourceError(f"the GPU ran out of memory{during}{asked}",
                                 resource="GPU memory", hint="--device cpu, or " + _MEMORY_HELP)
        if (isinstance(item, OSError) and item.errno == errno.ENOMEM) or (
                isinstance(item, ImportError) and any(k in text.lower() for k in _LOADER)):
            return ResourceError(f"out of memory{during} loading a library or mapping a file "
                                 f"({shown(text)[:160]})", resource="memory", hint=_MEMORY_HELP)
        match = _TORCH_CPU.search(text) if isinstance(item, RuntimeError) else None
        if match or isinstance(item, MemoryError):
            asked = (f" (tried to allocate {_bytes(int(match[1]))})" if match else
                     f" (tried to allocate {m[1]})" if (m := _NUMPY.search(text)) else "")
            return ResourceError(f"out of memory{during}{asked}", resource="memory",
                                 hint=_MEMORY_HELP)
    return None


__all__ = ["EXIT_RESOURCE", "resource_error"]
