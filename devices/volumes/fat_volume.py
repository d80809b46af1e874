"""FAT12/16/32 read in user space (machines whose kernel has no vfat): the strict walk lists the volume, and
each file is read straight from the device through the clusters the walk validated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from devices.volumes.base import FileEntry, Finding, Volume, VolumeError
from devices.volumes.fat_walk import check_fat
from devices.volumes.readers import ExtentReader, RawDevice


class FatVolume(Volume):
    fs_type = "vfat"

    def __init__(self, device: Path) -> None:
        self._device = RawDevice(device)
        try:
            self.structure = check_fat(self._device)
        except BaseException:
            self._device.close()
            raise

    def entries(self) -> Iterator[FileEntry]:
        for walked in self.structure.files.values():
            yield FileEntry(walked.path, walked.size, walked.modified, walked.created)

    def findings(self) -> list[Finding]:
        return list(self.structure.findings)

    def open(self, path: str) -> BinaryIO:
        walked = self.structure.files.get(path)
        if walked is None:
            raise VolumeError(f"cannot open {path} on camera: no such file")
        damage = next((f for f in self.structure.findings if f.path == path and f.damage), None)
        if damage is not None:
            raise VolumeError(f"{path} is damaged on the camera: {damage.detail}")
        return ExtentReader(self._device, walked.extents, path, walked.size)  # type: ignore[return-value]

    def close(self) -> None:
        self._device.close()
