"""The one interface the offload pipeline reads camera storage through."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO


class VolumeError(Exception):
    """Camera storage cannot be read: unknown or broken filesystem, device gone, unsafe entry."""


class StationSideError(VolumeError):
    """The station itself could not get at the storage (no permission on the node, a tool missing): an error
    for the bay and the log, but no fault against the camera."""


# Why a file, a directory or the volume is damaged (labels: volume.damage.<code> in the message catalogues).
DAMAGE_REASONS = (
    "chain_loop",  # the cluster chain comes back to a cluster it already passed
    "cross_link",  # a cluster belongs to two files or directories
    "out_of_range",  # a chain starts or runs outside the volume's clusters
    "bad_fat_entry",  # a free, bad or reserved cluster inside a chain
    "short_chain",  # fewer clusters than the size needs
    "beyond_device",  # data beyond the end of the storage (a truncated card or image)
    "not_allocated",  # exFAT: clusters in use that the allocation bitmap calls free
    "bad_entry",  # a directory entry that does not hold together (LFN or entry-set checksum, name hash, size)
    "bad_name",  # a name that cannot be decoded, escapes its folder, or clashes with another
    "bad_directory",  # a directory that cannot be walked (too large, too deep, unknown critical entry)
    "listing_mismatch",  # the mounted filesystem and the structural check disagree about a file
    "read_error",  # reading failed: an I/O error or fewer bytes than the file's size
)


@dataclass(frozen=True)
class Finding:
    """One thing the structural check (or a read) found. ``path`` is the file or directory concerned, "" for
    the volume as a whole. ``damage`` False is a note: harmless (a chain longer than the size, a dirty flag)."""

    path: str
    reason: str  # a DAMAGE_REASONS code, or a note's own code
    detail: str  # what exactly, in English, for staff and the log
    damage: bool = True

    def as_dict(self, max_detail: int = 200) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "detail": self.detail[:max_detail]}


def describe(findings: list[Finding], limit: int = 5) -> str:
    """One line naming the first ``limit`` damaged paths and why; bounded whatever the count."""
    damaged = [f for f in findings if f.damage]
    named = "; ".join(f"{f.path or '(volume)'}: {f.detail[:160]}" for f in damaged[:limit])
    more = f"; and {len(damaged) - limit} more" if len(damaged) > limit else ""
    return f"{len(damaged)} damaged on the camera's filesystem: {named}{more}"


class VolumeDamaged(VolumeError):
    """The filesystem holds damaged files or directories: what could be read is copied, these stay on the
    camera, and the camera is not freed."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = [f for f in findings if f.damage]
        super().__init__(describe(self.findings))


@dataclass(frozen=True)
class FileEntry:
    """A regular file on the camera. ``path`` is POSIX-style, relative to the volume root."""

    path: str
    size: int
    modified: datetime | None  # the camera's own clock: naive local time as FAT/exFAT store it
    created: datetime | None


def check_entry_name(name: str) -> None:
    """Refuse names no honest camera writes and that could escape a directory or confuse a terminal."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise VolumeError(f"unsafe file name on camera: {name!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise VolumeError(f"file name with control characters on camera: {name!r}")


class Volume(abc.ABC):
    """A mounted (or opened) camera filesystem, read-only. Use as a context manager."""

    fs_type: str

    @abc.abstractmethod
    def entries(self) -> Iterator[FileEntry]:
        """Every regular file, depth first, in a stable order; unsafe names raise VolumeError."""

    @abc.abstractmethod
    def open(self, path: str) -> BinaryIO:
        """Open one file for reading (supports ``readinto``). A read that ends before the file's size, or
        fails, raises VolumeError naming the file, the offset and the reason."""

    def findings(self) -> list[Finding]:
        """What the structural check found (damage and notes), complete once ``entries()`` has been listed.
        A volume with no structural check (a directory given by hand) finds nothing."""
        return []

    @abc.abstractmethod
    def close(self) -> None:
        """Release the filesystem (unmount); safe to call twice."""

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
