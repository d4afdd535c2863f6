"""What the benchmark scripts share: the package's atomic writer (an interruption never leaves half a file).

Importing ae_course imports torch, so this module first sets what must be set before torch is loaded: on a
shared CPU, OpenMP threads that spin while waiting for a descheduled sibling slow training down by 10-50x;
passive waiting avoids it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ae_course.files import atomic_write  # noqa: E402

__all__ = ["atomic_write"]
