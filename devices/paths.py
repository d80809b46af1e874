"""Every OS path the device layer touches, under one prefix so tests can run on a fake tree.

Production leaves RECTERM_OS_PREFIX unset. Tests point it at a checked-in fake sysfs/dev tree, so the
USB port-path logic runs unchanged against known data.
"""

from __future__ import annotations

import os
from pathlib import Path


def prefix() -> Path:
    return Path(os.environ.get("RECTERM_OS_PREFIX", "/"))


def sysfs(*parts: str) -> Path:
    return prefix().joinpath("sys", *parts)


def dev(*parts: str) -> Path:
    return prefix().joinpath("dev", *parts)


def proc(*parts: str) -> Path:
    return prefix().joinpath("proc", *parts)


def run(*parts: str) -> Path:
    return prefix().joinpath("run", *parts)
