"""What the benchmark scripts share: writing result files so that an interruption never leaves half a file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO


def atomic_write(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Write `data` (bytes, or a function that writes to a binary file) to a temporary file beside `path`,
    then rename it into place: an interrupted run leaves the old file or none, never a truncated one."""
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        try:
            f.write(data) if isinstance(data, bytes) else data(f)
        except BaseException:
            f.close()
            os.unlink(f.name)
            raise
    os.chmod(f.name, 0o644)  # NamedTemporaryFile creates 0600 files
    os.replace(f.name, path)
