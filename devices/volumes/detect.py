"""Which filesystem a camera's block device holds, probed by libblkid (util-linux)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devices.volumes.base import StationSideError, VolumeError

SUPPORTED = ("vfat", "exfat")


class PartitionsPending(VolumeError):
    """A whole disk that holds a partition table: its partitions are the storage. Seen when a scan catches
    the disk in the moment before the kernel has listed them; they show a moment later."""


def blkid(device: Path) -> dict[str, str]:
    """libblkid's low-level probe of ``device``: its tags (TYPE, UUID, LABEL, PTTYPE...); VolumeError with a clear
    reason when nothing is recognised, StationSideError when the station itself cannot look."""
    try:
        proc = subprocess.run(
            ["blkid", "--probe", "--output", "export", str(device)],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except FileNotFoundError as exc:
        raise StationSideError("blkid (util-linux) is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise VolumeError(f"{device}: probing the filesystem timed out (device not answering)") from exc
    if proc.returncode == 2 and proc.stderr.strip():  # blkid says 2 for "cannot open" too, with the reason
        raise StationSideError(f"{device}: cannot probe filesystem: {proc.stderr.strip()}")
    if proc.returncode == 2:
        raise VolumeError(f"{device}: no recognisable filesystem (blank, corrupted or truncated)")
    if proc.returncode != 0:
        raise VolumeError(f"{device}: cannot probe filesystem: {proc.stderr.strip() or proc.returncode}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def probe_fs_type(device: Path) -> str:
    """Return "vfat" or "exfat"; VolumeError with a clear reason for anything else."""
    fields = blkid(device)
    fs_type = fields.get("TYPE", "")
    if not fs_type and fields.get("PTTYPE"):
        raise PartitionsPending(f"{device}: a partitioned disk ({fields['PTTYPE']}); its partitions hold the storage")
    if fs_type not in SUPPORTED:
        raise VolumeError(f"{device}: filesystem {fs_type or 'unknown'!s} is not FAT32 or exFAT")
    return fs_type
