"""Machines whose kernel has no vfat/exfat (this build box): exFAT through exfat-fuse on a loop device.
(FAT is read by the station's own reader there: devices/volumes/fat_volume.py.)"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from devices.volumes.base import VolumeError
from devices.volumes.directory import DirectoryVolume
from devices.volumes.mounting import SAFE_OPTIONS, is_block_device, run_tool, unmount, wait_mounted

log = logging.getLogger(__name__)


class LoopDevice:
    """A read-only loop device over an image file (exfat-fuse run as root insists on a block device)."""

    def __init__(self, image: Path) -> None:
        _detach_unused(image)
        self.path = Path(run_tool(["losetup", "--find", "--show", "--read-only", str(image)], "losetup").strip())

    def detach(self) -> None:
        try:
            run_tool(["losetup", "--detach", str(self.path)], "losetup --detach")
        except VolumeError as exc:
            # Already gone (the device vanished with its camera): nothing left to release.
            log.warning("%s", exc)


def _detach_unused(image: Path) -> None:
    """Loop devices over ``image`` left by a killed run. A loop still held open is only marked for
    detach-on-close by the kernel, so this never pulls a device from under a reader."""
    try:
        listing = run_tool(["losetup", "--associated", str(image), "--noheadings", "--output", "NAME"], "losetup")
    except VolumeError:
        return
    for name in listing.split():
        with contextlib.suppress(VolumeError):
            run_tool(["losetup", "--detach", name], "losetup --detach")


def mount_exfat_fuse(device: Path, mountpoint: Path) -> DirectoryVolume:
    loop = None
    if os.geteuid() == 0 and not is_block_device(device):
        loop = LoopDevice(device)
        device = loop.path
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        run_tool(
            ["mount.exfat-fuse", "-o", ",".join(SAFE_OPTIONS), str(device), str(mountpoint)],
            f"mount {device}",
        )
        wait_mounted(mountpoint)
    except Exception:
        if loop:
            loop.detach()
        mountpoint.rmdir()
        raise

    def release() -> None:
        unmount(mountpoint, fuse=True)
        if loop:
            loop.detach()

    return DirectoryVolume(mountpoint, "exfat", on_close=release)
