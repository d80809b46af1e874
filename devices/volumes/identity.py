"""Which camera a storage volume belongs to, when nobody says: its filesystem's serial number and label.

`recterm offload` outside the station has no control port to ask the camera for its serial. Calling every
such camera the same name would let two different cameras' files with equal names, sizes and times pass for
each other, so the volume itself names the camera: FAT and exFAT write a volume serial number (blkid's UUID)
when the card is formatted, and a label.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from devices.volumes.base import VolumeError
from devices.volumes.detect import blkid


@dataclass(frozen=True)
class VolumeIdentity:
    fs_type: str
    uuid: str
    label: str

    @property
    def camera_serial(self) -> str:
        """A stand-in camera serial: the same card gives the same one, a different card a different one."""
        return f"VOL-{self.fs_type}-{self.uuid}"


def probe_identity(device: Path) -> VolumeIdentity:
    """The volume serial number and label of ``device`` (a block device or an image file)."""
    fields = blkid(device)
    if not fields.get("UUID"):
        raise VolumeError(f"{device}: no volume serial number to tell the camera by; give the camera's --serial")
    return VolumeIdentity(fields.get("TYPE", ""), fields["UUID"], fields.get("LABEL", ""))


def mount_source(directory: Path) -> Path | None:
    """The device mounted at ``directory`` (from /proc/self/mountinfo), if it is a mount point of a device."""
    target = os.path.realpath(directory)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:  # later lines are mounted over earlier ones: the last match is what is visible
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 2 and _unescape(fields[4]) == target and tail[1].startswith("/dev/"):
            found = Path(tail[1])
    return found


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...); nothing else."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)
