"""Read-only access to a camera's filesystem (FAT12/16/32 or exFAT), by kernel mount or in user space, with
a structural check of every file's clusters (docs/camera-filesystems.md)."""

from devices.volumes.base import FileEntry, Finding, StationSideError, Volume, VolumeDamaged, VolumeError
from devices.volumes.detect import PartitionsPending
from devices.volumes.opener import open_volume

__all__ = [
    "FileEntry",
    "Finding",
    "PartitionsPending",
    "StationSideError",
    "Volume",
    "VolumeDamaged",
    "VolumeError",
    "open_volume",
]
