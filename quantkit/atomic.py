"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Caches, golden files and checkpoints are written to a temporary file in the same directory, flushed to disk,
then moved over the destination with ``os.replace`` (atomic on POSIX and Windows). Several pytest-xdist workers
may write the same path at once; the last ``replace`` wins and every version is complete. The file gets the mode
a plain ``open`` would give (0644 under the usual umask 022), not ``mkstemp``'s private 0600, so published reports
and shared caches stay readable. A write that fails (disk full, no permission, a file where a folder should be)
raises :class:`~quantkit.errors.WriteError` naming the path, and leaves the destination untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from quantkit.errors import QuantkitError, WriteError


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (so other threads never see umask 0)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(path: str | os.PathLike[str], err: OSError) -> WriteError:
    """One line saying which path could not be written and why (with the fix for a full disk)."""
    why = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        why += ": free some space or point the output (or QUANTKIT_CACHE) at another disk"
    return WriteError(f"cannot write {path}: {why}")


def check_writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Create ``path`` if needed and prove a file can be written in it, before any long work starts.

    ``what`` names the folder and how it was chosen in the error, e.g. ``"report folder (--out)"``.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"{what} {folder} is a file, not a folder; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise WriteError(f"{what} {folder} is not writable ({err.strerror or err}); choose another folder") from err
    return folder


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary sibling path to write (for libraries that write by path); on success it is synced and
    moved over ``path``; on failure it is removed and ``path`` is untouched."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~current_umask())
        os.close(fd)
    except OSError as err:
        raise write_error(target, err) from err
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, QuantkitError):
            raise write_error(target, err) from err
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; move it into place only if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    with replacing(path) as tmp, open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
        yield handle


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes, readable diffs)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
