"""The local content-addressed store of recordings.

``objects/sha256/ab/<hex>`` holds each recording once, read-only, named by its SHA-256. A copy is made in
one pass (read from the camera, hash, write), fdatasync'ed, renamed into place, then read back from the
disk (not the page cache) and hashed again before it counts as verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes

from appliance.state.atomic import atomic_write_bytes, fsync_dir

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


class StoreError(Exception):
    """A copy could not be made or did not verify."""


class StoreFull(StoreError):
    """Taking this recording would eat into the disk reserve."""


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size: int
    path: Path
    sm3: str | None = None  # under a 国密 policy, computed in the same pass


class _SM3:
    """SM3 through `cryptography`, shaped like a hashlib object."""

    def __init__(self) -> None:
        self._hash = hashes.Hash(hashes.SM3())

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(bytes(data))

    def hexdigest(self) -> str:
        return self._hash.finalize().hex()


class LocalStore:
    def __init__(self, root: Path, buffer_size: int = 1 << 20, reserve_bytes: int = 0, sm3: bool = False) -> None:
        self.root = root
        self.objects = root / "objects" / "sha256"
        self.tmp = root / "tmp"
        self.buffer_size = buffer_size
        self.reserve_bytes = reserve_bytes
        self.sm3 = sm3
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._clear_tmp()

    def _clear_tmp(self) -> None:
        # Partial copies from before a crash: the source is still on the camera, so they carry nothing.
        for leftover in self.tmp.iterdir():
            log.info("store: removing partial copy %s left by an interrupted offload", leftover.name)
            leftover.unlink()

    def manifest_path(self, sha256: str, log_index: int) -> Path:
        return self.root / "manifests" / sha256[:2] / f"{sha256}-{log_index}.json"

    def put_manifest(self, sha256: str, log_index: int, data: bytes) -> Path:
        """Store a signed manifest beside the object it describes (atomically, read-only)."""
        path = self.manifest_path(sha256, log_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data, mode=0o444)
        return path

    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def remove(self, sha256: str) -> bool:
        """Delete a local object (callers decide when: appliance/central/local_keep.py); False if absent."""
        path = self.object_path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    def has(self, sha256: str) -> bool:
        return self.object_path(sha256).exists()

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def ensure_room(self, size: int) -> None:
        free = self.free_bytes()
        if free - size < self.reserve_bytes:
            raise StoreFull(
                f"store has {free / 2**30:.1f} GiB free; a {size / 2**20:.0f} MiB copy would breach the "
                f"{self.reserve_bytes / 2**30:.1f} GiB reserve"
            )

    def ingest(self, source: BinaryIO, expected_size: int, progress: Progress | None = None) -> StoredObject:
        """Copy ``source`` into the store in one pass while hashing; verify by reading the copy back."""
        self.ensure_room(expected_size)
        digest = hashlib.sha256()
        sm3 = _SM3() if self.sm3 else None
        buffer = bytearray(self.buffer_size)
        view = memoryview(buffer)
        fd = -1
        tmp_path = self.tmp / f"ingest-{os.getpid()}-{id(buffer):x}"
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            copied = 0
            while True:
                n = source.readinto(buffer)
                if not n:
                    break
                chunk = view[:n]
                digest.update(chunk)
                if sm3 is not None:
                    sm3.update(chunk)
                written = 0
                while written < n:
                    written += os.write(fd, chunk[written:])
                copied += n
                if progress:
                    progress(n)
            if copied != expected_size:
                raise StoreError(f"camera delivered {copied} bytes, its directory says {expected_size}")
            os.fdatasync(fd)
            os.close(fd)
            fd = -1
            sha256 = digest.hexdigest()
            final = self.object_path(sha256)
            final.parent.mkdir(exist_ok=True)
            if final.exists():
                tmp_path.unlink()  # the same bytes are already stored (docked twice, or a true duplicate)
            else:
                os.chmod(tmp_path, 0o444)
                os.rename(tmp_path, final)
                fsync_dir(final.parent)
            self.verify(sha256, copied)
            return StoredObject(sha256, copied, final, sm3.hexdigest() if sm3 else None)
        except OSError as exc:
            raise StoreError(f"copy failed: {exc}") from exc
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    def verify(self, sha256: str, size: int) -> None:
        """Re-read the stored copy from the device and compare; StoreError on any mismatch."""
        path = self.object_path(sha256)
        digest = hashlib.sha256()
        buffer = bytearray(self.buffer_size)
        total = 0
        fd = os.open(path, os.O_RDONLY)
        try:
            # Drop the cached pages so the read-back comes from the disk, not from memory.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            with os.fdopen(os.dup(fd), "rb", buffering=0) as fh:
                while n := fh.readinto(buffer):
                    digest.update(memoryview(buffer)[:n])
                    total += n
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        if total != size or digest.hexdigest() != sha256:
            raise StoreError(f"stored copy {sha256[:12]}… does not verify ({total} bytes read back)")
