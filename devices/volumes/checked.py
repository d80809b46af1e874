"""A mounted camera filesystem (the kernel's vfat/exfat, or exfat-fuse) with a structural check of its raw
device in front: the driver reads the data, the check says which files and directories are damaged.

The drivers follow a looping or cross-linked chain without complaint (docs/camera-filesystems.md), so the
device is walked before the mount and the mounted listing is held against the walk: a damaged directory is
not entered, a damaged file is listed with its finding and never opened, and a file one side sees and the
other does not is a finding too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from devices.volumes.base import FileEntry, Finding, Volume, VolumeError
from devices.volumes.directory import DirectoryVolume
from devices.volumes.exfat_walk import check_exfat
from devices.volumes.fat_walk import check_fat
from devices.volumes.readers import RawDevice
from devices.volumes.structure import Structure


def check_structure(device: Path, fs_type: str) -> Structure:
    """Walk the filesystem on ``device`` (a block device or an image file), read-only."""
    with RawDevice(device) as raw:
        return check_fat(raw) if fs_type == "vfat" else check_exfat(raw)


class CheckedVolume(Volume):
    def __init__(self, mounted: DirectoryVolume, structure: Structure) -> None:
        self.mounted = mounted
        self.fs_type = mounted.fs_type
        self.structure = structure
        mounted.skip = set(structure.skipped)
        self._mismatches: list[Finding] = []

    def entries(self) -> Iterator[FileEntry]:
        self._mismatches = []
        damaged = self.structure.damaged()
        seen: set[str] = set()
        for entry in self.mounted.entries():
            if entry.path in seen:  # a driver reading a looping directory may list a name twice
                continue
            seen.add(entry.path)
            walked = self.structure.files.get(entry.path)
            if walked is None and entry.path not in damaged:
                self._mismatch(entry.path, "listed by the mounted filesystem, not found on the device by the check")
            elif walked is not None and walked.size != entry.size:
                self._mismatch(entry.path, f"the mount gives {entry.size} bytes, its directory entry {walked.size}")
            yield entry
        for path in self.structure.files:
            if path not in seen and path not in damaged:
                self._mismatch(path, "found on the device by the check, not listed by the mounted filesystem")

    def _mismatch(self, path: str, detail: str) -> None:
        self._mismatches.append(Finding(path, "listing_mismatch", detail))

    def findings(self) -> list[Finding]:
        return [*self.structure.findings, *self.mounted.findings(), *self._mismatches]

    def open(self, path: str) -> BinaryIO:
        damage = next((f for f in self.findings() if f.path == path and f.damage), None)
        if damage is not None:
            raise VolumeError(f"{path} is damaged on the camera: {damage.detail}")
        return self.mounted.open(path)

    def close(self) -> None:
        self.mounted.close()
