"""Writing files so that an interruption never leaves half a file: the one atomic writer of the course
(checkpoints, downloads, the benchmarks' results)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[IO[bytes]], None], suffix: str = ".tmp") -> Path:
    """Write `data` (bytes, or a function that writes to a binary file) to a temporary file beside `path`,
    flush it to disk, then rename it into place (``os.replace``, atomic on POSIX and Windows).

    An interrupted or failing write (any exception, KeyboardInterrupt included) removes the temporary file
    and leaves the previous `path`, or none, never a truncated one; the exception propagates. The folder is
    created if needed; the file gets mode 0644. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data) if isinstance(data, bytes) else data(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)               # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
