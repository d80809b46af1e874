"""The embedded central store: a local archive directory ("designated storage", 000 Art. 15).

Used by `make demo` and by small offices with no central server. Objects are written once (temp file,
fsync, rename), made read-only, and never overwritten; keys follow the layout of docs/archive-layout.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from appliance.central.base import CentralStoreError, Lock, Receipt
from appliance.state.atomic import fsync_dir

__all__ = ["ArchiveError", "ArchiveStore", "Receipt"]


class ArchiveError(CentralStoreError):
    """The archive refused or failed to store an object."""


class ArchiveStore:
    kind = "archive"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts) or key.startswith("/"):
            raise ArchiveError(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, source: Path, sha256: str, lock: Lock | None = None) -> Receipt:
        """Store ``source`` under ``key`` once; re-putting identical bytes is a no-op, different bytes refused.

        ``lock`` is accepted for the CentralStore interface; read-only files are this store's only lock.
        """
        target = self.path_of(key)
        if target.exists():
            return self.confirm(key, sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.partial")
        digest = hashlib.sha256()
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fdatasync(dst.fileno())
            if digest.hexdigest() != sha256:
                raise ArchiveError(f"{key}: local copy no longer matches its hash; not archived")
            os.chmod(tmp, 0o444)
            os.link(tmp, target)  # fails if the key appeared meanwhile: never overwrite
            fsync_dir(target.parent)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return self.confirm(key, sha256)

    def put_bytes(self, key: str, data: bytes, lock: Lock | None = None) -> Receipt:
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".put-") as tmp:
            tmp.write(data)
            tmp.flush()
            return self.put(key, Path(tmp.name), hashlib.sha256(data).hexdigest(), lock)

    def confirm(self, key: str, sha256: str) -> Receipt:
        """Re-read the stored object and check it: an upload counts only once confirmed."""
        target = self.path_of(key)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(target, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            raise ArchiveError(f"{key}: not in the archive") from None
        if digest.hexdigest() != sha256:
            raise ArchiveError(f"{key}: archived object differs from the recording ({digest.hexdigest()[:12]}…)")
        return Receipt(key, size, sha256)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free
