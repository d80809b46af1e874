"""Mount and unmount helpers shared by the kernel and FUSE back ends."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devices import tools
from devices.volumes.base import VolumeError

log = logging.getLogger(__name__)

# Camera storage is evidence: never writable, never a source of executables or device nodes.
SAFE_OPTIONS = ("ro", "nosuid", "nodev", "noexec")


def run_tool(argv: list[str], what: str, timeout: float = 30) -> str:
    return tools.run_tool(argv, what, error=VolumeError, timeout=timeout)


def is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def unmount(mountpoint: Path, fuse: bool) -> None:
    """Unmount, retrying briefly while a reader lets go; lazy-detach as the last resort so a vanished
    device never leaves the station stuck."""
    argv = ["fusermount", "-u", str(mountpoint)] if fuse and os.geteuid() != 0 else ["umount", str(mountpoint)]
    for attempt in range(10):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode == 0 or not os.path.ismount(mountpoint):
            break
        time.sleep(0.1 * (attempt + 1))
    else:
        log.warning("unmount of %s failed (%s); detaching lazily", mountpoint, proc.stderr.strip())
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)
    with contextlib.suppress(OSError):
        mountpoint.rmdir()


def wait_mounted(mountpoint: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if time.monotonic() > deadline:
            raise VolumeError(f"{mountpoint}: filesystem did not appear")
        time.sleep(0.02)


def cleanup_stale_mounts(mount_root: Path, unmounter: Callable[[Path], None] | None = None) -> list[Path]:
    """Unmount what a killed predecessor left mounted under ``mount_root`` (a crash never reboots the
    kernel: its mounts and FUSE daemons outlive the process). Returns what was cleaned. ``unmounter``
    replaces umount/fusermount (the unprivileged station asks the mount helper)."""
    cleaned = []
    if not mount_root.is_dir():
        return cleaned
    for mountpoint in sorted(mount_root.iterdir()):
        if os.path.ismount(mountpoint):
            log.warning("unmounting %s left mounted by an earlier run", mountpoint)
            if unmounter is not None:
                unmounter(mountpoint)
            else:
                unmount(mountpoint, fuse=True)
            cleaned.append(mountpoint)
        else:
            with contextlib.suppress(OSError):
                mountpoint.rmdir()
    return cleaned
