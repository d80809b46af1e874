"""The station's path: the kernel's vfat/exfat drivers, mounted read-only, nosuid, nodev, noexec."""

from __future__ import annotations

from pathlib import Path

from devices.volumes.directory import DirectoryVolume
from devices.volumes.mounting import SAFE_OPTIONS, run_tool, unmount

FS_OPTIONS = {
    # utf8 names; files owned by the station user and not executable whatever the camera says.
    "vfat": ("utf8", "shortname=mixed", "fmask=0133", "dmask=0022", "errors=remount-ro"),
    "exfat": ("iocharset=utf8", "fmask=0133", "dmask=0022", "errors=remount-ro"),
}


def mount_kernel(device: Path, fs_type: str, mountpoint: Path) -> DirectoryVolume:
    options = ",".join((*SAFE_OPTIONS, "noatime", *FS_OPTIONS[fs_type]))
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        run_tool(["mount", "-t", fs_type, "-o", options, str(device), str(mountpoint)], f"mount {device}")
    except Exception:
        mountpoint.rmdir()
        raise
    return DirectoryVolume(mountpoint, fs_type, on_close=lambda: unmount(mountpoint, fuse=False))
