"""Pick the read path for a camera's storage: one call for the kernel and the user-space back ends."""

from __future__ import annotations

from pathlib import Path

from devices.volumes.base import Finding, StationSideError, Volume, VolumeDamaged, VolumeError
from devices.volumes.checked import CheckedVolume, check_structure
from devices.volumes.detect import probe_fs_type
from devices.volumes.directory import DirectoryVolume
from devices.volumes.fat_volume import FatVolume
from devices.volumes.helper import mount_via_helper
from devices.volumes.kernel import mount_kernel
from devices.volumes.userspace import mount_exfat_fuse


def open_volume(device: Path, backend: str, mountpoint: Path) -> Volume:
    """Open ``device`` (a block device, or an image file in simulation) read-only.

    ``backend`` is "kernel" for a station running as root, "helper" for the unprivileged station of the
    image (the kernel mounts through the root mount helper) and "userspace" where the kernel lacks vfat/exfat.
    Every path checks the filesystem's structure first (devices/volumes/fat_walk.py, exfat_walk.py): the
    volume reports per-file findings, and a damaged file is never opened.
    """
    fs_type = probe_fs_type(device)
    if backend == "userspace" and fs_type == "vfat":
        return FatVolume(device)  # the structural walk is the reader itself
    structure = check_structure(device, fs_type)  # the station reads the raw device, as blkid just did
    mounted: DirectoryVolume
    try:
        if backend == "helper":
            mounted = mount_via_helper(device, fs_type, mountpoint)
        elif backend == "kernel":
            mounted = mount_kernel(device, fs_type, mountpoint)
        else:
            mounted = mount_exfat_fuse(device, mountpoint)
    except StationSideError:
        raise
    except VolumeError as exc:
        if not structure.damaged():
            raise
        # The driver refuses a volume the walk found damaged (exfat-fuse will not mount a truncated card):
        # name what the walk found, not only the driver's complaint.
        raise VolumeDamaged([*structure.findings, Finding("", "read_error", f"cannot be mounted: {exc}")]) from exc
    return CheckedVolume(mounted, structure)
