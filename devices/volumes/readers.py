"""Reading camera storage so that nothing short or failed passes for a file: the raw device the structural
checks read, and the file readers every read path hands the offload."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Sequence

from devices.volumes.base import StationSideError, VolumeError


class RawDevice:
    """A camera's block device (or an image file), opened read-only for reading its metadata and data by
    byte offset. ``size`` is what the device really holds, whatever its boot sector claims."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = str(path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError as exc:  # the station's own setup (the bay's node is not readable for it)
            raise StationSideError(f"{self.path}: cannot open the storage for checking: {exc.strerror}") from exc
        except OSError as exc:
            raise VolumeError(f"{self.path}: cannot open the storage: {exc.strerror}") from exc
        try:
            self.size = os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            os.close(self.fd)
            raise VolumeError(f"{self.path}: cannot tell the storage's size: {exc.strerror}") from exc

    def read(self, offset: int, length: int, what: str) -> bytes:
        """Exactly ``length`` bytes at ``offset``; VolumeError naming ``what`` if the device has fewer or fails."""
        if offset < 0 or offset + length > self.size:
            raise VolumeError(
                f"{what}: bytes {offset}..{offset + length} lie beyond the end of the storage ({self.size} bytes)"
            )
        parts = []
        done = 0
        while done < length:
            try:
                chunk = os.pread(self.fd, min(length - done, 1 << 24), offset + done)
            except OSError as exc:
                raise VolumeError(f"{what}: read error at byte {offset + done}: {exc.strerror}") from exc
            if not chunk:
                raise VolumeError(f"{what}: the storage ended at byte {offset + done}, {length - done} bytes short")
            parts.append(chunk)
            done += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> RawDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ExactReader(io.RawIOBase):
    """Common part: the file's ``size`` bytes, then EOF; fewer is a VolumeError naming file and offset."""

    def __init__(self, path: str, size: int) -> None:
        super().__init__()
        self.camera_path = path
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        view = memoryview(buffer).cast("B")[:want]
        try:
            got = self._read_at(view)
        except OSError as exc:
            raise VolumeError(f"{self.camera_path}: read error at offset {self.pos}: {exc.strerror}") from exc
        if got <= 0:
            raise VolumeError(
                f"{self.camera_path}: the read ended at offset {self.pos}, {self.size - self.pos} bytes before "
                f"the file's size of {self.size}"
            )
        self.pos += got
        return got

    def _read_at(self, view: memoryview) -> int:
        raise NotImplementedError


class FileReader(_ExactReader):
    """A file of a mounted camera filesystem (kernel or FUSE), read to the size its directory entry gives."""

    def __init__(self, fd: int, path: str) -> None:
        super().__init__(path, os.fstat(fd).st_size)
        self.fd = fd

    def _read_at(self, view: memoryview) -> int:
        return os.readv(self.fd, [view])

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        super().close()


class ExtentReader(_ExactReader):
    """A file read straight from the device through its validated extents: (byte offset, length) runs."""

    def __init__(self, device: RawDevice, extents: Sequence[tuple[int, int]], path: str, size: int) -> None:
        super().__init__(path, size)
        self.device = device
        self.extents = extents
        self._index = 0  # the extent holding ``pos``
        self._start = 0  # file offset where that extent begins

    def _read_at(self, view: memoryview) -> int:
        while self._index < len(self.extents) and self.pos >= self._start + self.extents[self._index][1]:
            self._start += self.extents[self._index][1]
            self._index += 1
        if self._index == len(self.extents):
            raise OSError(errno.EIO, "no cluster holds this offset")  # the walker gave too short a list: a bug
        offset, length = self.extents[self._index]
        n = min(len(view), self._start + length - self.pos)
        return os.preadv(self.device.fd, [view[:n]], offset + self.pos - self._start)
