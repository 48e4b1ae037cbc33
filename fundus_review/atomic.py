"""Atomic file writes: a reader (or a crash) never sees a half-written export."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fundus_review.errors import WriteError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder + ``os.replace``.

    ``durable=False`` skips the fsync: for caches, which must never be half-written but may be
    lost in a power cut (an fsync per thumbnail would slow a first screen of them noticeably).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same folder = same volume, so the final rename is atomic.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise
    return path


def _write_error(path: Path, exc: OSError) -> WriteError:
    # One line a user can act on, instead of an errno traceback naming a temp file.
    reason = exc.strerror or str(exc)
    return WriteError(
        path,
        f"cannot write ({reason}); any earlier file there is unchanged. "
        "Choose a writable folder with free space",
        exc.errno,
    )


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))
