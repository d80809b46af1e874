"""Shared by the benchmarks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def drop_caches() -> bool:
    """Flush and drop the page cache so reads come from the device; False where not permitted (a
    container): then every run in a benchmark sees the same warm state, which keeps ratios fair."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    return False
