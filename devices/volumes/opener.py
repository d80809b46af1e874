"""Pick the read path for a camera's storage: one call for the kernel and the user-space back ends."""

from __future__ import annotations

from pathlib import Path

from devices.volumes.base import Volume
from devices.volumes.detect import probe_fs_type
from devices.volumes.helper import mount_via_helper
from devices.volumes.kernel import mount_kernel
from devices.volumes.userspace import PyFatVolume, mount_exfat_fuse


def open_volume(device: Path, backend: str, mountpoint: Path) -> Volume:
    """Open ``device`` (a block device, or an image file in simulation) read-only.

    ``backend`` is "kernel" for a station running as root, "helper" for the unprivileged station of the
    image (the kernel mounts through the root mount helper) and "userspace" where the kernel lacks vfat/exfat.
    """
    fs_type = probe_fs_type(device)
    if backend == "helper":
        return mount_via_helper(device, fs_type, mountpoint)
    if backend == "kernel":
        return mount_kernel(device, fs_type, mountpoint)
    if fs_type == "exfat":
        return mount_exfat_fuse(device, mountpoint)
    return PyFatVolume(device)
