"""Read-only access to a camera's filesystem (FAT32 or exFAT), by kernel mount or in user space."""

from devices.volumes.base import FileEntry, StationSideError, Volume, VolumeError
from devices.volumes.detect import PartitionsPending
from devices.volumes.opener import open_volume

__all__ = ["FileEntry", "PartitionsPending", "StationSideError", "Volume", "VolumeError", "open_volume"]
