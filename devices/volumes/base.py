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
        """Open one file for reading (supports ``readinto``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the filesystem (unmount); safe to call twice."""

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
