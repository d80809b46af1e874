"""A camera filesystem that is already a directory tree (kernel mount, or a FUSE mount)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from devices.volumes.base import FileEntry, Volume, VolumeError, check_entry_name


class DirectoryVolume(Volume):
    def __init__(self, root: Path, fs_type: str, on_close: Callable[[], None] | None = None) -> None:
        self.root = root
        self.fs_type = fs_type
        self._on_close = on_close

    def entries(self) -> Iterator[FileEntry]:
        yield from self._walk("")

    def _walk(self, rel: str) -> Iterator[FileEntry]:
        try:
            with os.scandir(self.root / rel) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise VolumeError(f"cannot list {rel or '/'} on camera: {exc.strerror}") from exc
        for item in items:
            check_entry_name(item.name)
            child = f"{rel}/{item.name}" if rel else item.name
            st = item.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                yield from self._walk(child)
            elif stat.S_ISREG(st.st_mode):
                yield FileEntry(
                    path=child,
                    size=st.st_size,
                    # FAT/exFAT keep local wall time; the drivers hand it back unshifted (tz=UTC).
                    modified=datetime.fromtimestamp(st.st_mtime, UTC).replace(tzinfo=None),
                    created=None,
                )
            # Anything else (a symlink or device node on a tampered stick) is not a recording.

    def open(self, path: str) -> BinaryIO:
        parts = path.split("/")
        for part in parts:
            check_entry_name(part)
        target = self.root.joinpath(*parts)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise VolumeError(f"cannot open {path} on camera: {exc.strerror}") from exc
        return os.fdopen(fd, "rb", buffering=0)

    def close(self) -> None:
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback()
