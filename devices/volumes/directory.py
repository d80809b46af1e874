"""A camera filesystem that is already a directory tree (kernel mount, or a FUSE mount)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from devices.volumes.base import FileEntry, Finding, Volume, VolumeError, check_entry_name
from devices.volumes.readers import FileReader


class DirectoryVolume(Volume):
    def __init__(self, root: Path, fs_type: str, on_close: Callable[[], None] | None = None) -> None:
        self.root = root
        self.fs_type = fs_type
        self._on_close = on_close
        self.skip: set[str] = set()  # paths neither listed nor entered (the structural check found them damaged)
        self._findings: list[Finding] = []

    def entries(self) -> Iterator[FileEntry]:
        self._findings = []
        yield from self._walk("")

    def findings(self) -> list[Finding]:
        return list(self._findings)

    def _walk(self, rel: str) -> Iterator[FileEntry]:
        try:
            with os.scandir(self.root / rel) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not rel:
                raise VolumeError(f"cannot list / on camera: {exc.strerror}") from exc
            # A folder the driver cannot read (an I/O error): its files stay on the camera, the rest is copied.
            self._findings.append(Finding(rel, "read_error", f"cannot list the folder: {exc.strerror}"))
            return
        for item in items:
            child = f"{rel}/{item.name}" if rel else item.name
            if child in self.skip:
                continue
            check_entry_name(item.name)
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as exc:
                self._findings.append(Finding(child, "read_error", f"cannot read its directory entry: {exc.strerror}"))
                continue
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
        return FileReader(fd, path)  # type: ignore[return-value]

    def close(self) -> None:
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback()
