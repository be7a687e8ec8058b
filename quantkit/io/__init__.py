"""Checkpoint files: GGUF (``quantkit.io.gguf``) and safetensors (``quantkit.io.safetensors``) of Packed tensors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary sibling path for a library that writes by path; move it over ``path`` on success.

    The library-writer counterpart of :func:`quantkit.atomic.atomic_open`: a reader sees the old checkpoint or the
    new one, never half of either, and a failed write leaves no temporary file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
