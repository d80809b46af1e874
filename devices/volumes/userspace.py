"""Machines whose kernel has no vfat/exfat (this build box): exFAT through exfat-fuse, FAT32 through
pyfatfs. Both read the same bytes the kernel would, from the same block device."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from devices.volumes.base import FileEntry, Volume, VolumeError, check_entry_name
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


class PyFatVolume(Volume):
    """FAT32 read by pyfatfs straight from the device or image, opened read-only."""

    fs_type = "vfat"

    def __init__(self, device: Path) -> None:
        from pyfatfs.PyFatFS import PyFatFS  # imported late: it pulls in PyFilesystem2

        try:
            self._fs = PyFatFS(str(device), read_only=True)
        except Exception as exc:  # pyfatfs raises assorted errors for a damaged FAT
            raise VolumeError(f"{device}: FAT filesystem unreadable: {exc}") from exc

    def entries(self) -> Iterator[FileEntry]:
        try:
            yield from self._walk("/")
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(f"FAT directory unreadable: {exc}") from exc

    def _walk(self, folder: str) -> Iterator[FileEntry]:
        for info in sorted(self._fs.scandir(folder, namespaces=["details"]), key=lambda i: i.name):
            check_entry_name(info.name)
            child = f"{folder.rstrip('/')}/{info.name}"
            if info.is_dir:
                yield from self._walk(child)
                continue
            yield FileEntry(
                path=child.lstrip("/"),
                size=info.size,
                modified=_naive(info.modified),
                created=_naive(info.created),
            )

    def open(self, path: str) -> BinaryIO:
        for part in path.split("/"):
            check_entry_name(part)
        try:
            return self._fs.openbin("/" + path, "r")
        except Exception as exc:
            raise VolumeError(f"cannot open {path} on camera: {exc}") from exc

    def close(self) -> None:
        fs, self._fs = getattr(self, "_fs", None), None
        if fs is not None:
            fs.close()


def _naive(value: datetime | None) -> datetime | None:
    # pyfatfs labels FAT's local wall time as UTC; drop the label rather than pretend to know the zone.
    return value.replace(tzinfo=None) if value else None
