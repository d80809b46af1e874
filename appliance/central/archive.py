"""The embedded central store: a local archive directory ("designated storage", 000 Art. 15).

Used by `make demo` and by small offices with no central server. Objects are written once (temp file,
fsync, rename), made read-only, and never overwritten; keys follow the layout of docs/archive-layout.md.
Each object's retention is recorded beside the tree (``.locks/<key>.json``: retain-until and legal hold,
only ever lengthened), and ``delete`` refuses an object inside its retention or under hold, as an Object
Lock bucket in COMPLIANCE mode would.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from appliance.central.base import CentralStoreError, Lock, Receipt, stronger
from appliance.state.atomic import atomic_write_json, fsync_dir, read_json

LOCKS = ".locks"  # retention records, a tree beside the objects (station ids never start with a dot)

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
        The file is read-only; ``lock`` is recorded and enforced by ``delete``."""
        target = self.path_of(key)
        if target.exists():
            receipt = self.confirm(key, sha256)
            if lock is not None:
                self.relock(key, lock)
            return receipt
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
            if lock is not None:  # the lock first: an object never exists, even briefly, without its retention
                self._record_lock(key, lock)
            os.link(tmp, target)  # fails if the key appeared meanwhile: never overwrite
            fsync_dir(target.parent)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return self.confirm(key, sha256)

    # -- retention
    def _lock_path(self, key: str) -> Path:
        return self.root / LOCKS / (self.path_of(key).relative_to(self.root).as_posix() + ".json")

    def lock_of(self, key: str) -> Lock | None:
        data = read_json(self._lock_path(key))
        if data is None:
            return None
        return Lock(datetime.fromisoformat(data["retain_until"]), bool(data["legal_hold"]))

    def relock(self, key: str, lock: Lock) -> Lock:
        """Record a longer retention (or a hold) for a stored object; never shortens."""
        if not self.path_of(key).exists():
            raise ArchiveError(f"{key}: not in the archive, cannot lock it")
        return self._record_lock(key, lock)

    def _record_lock(self, key: str, lock: Lock) -> Lock:
        target = stronger(self.lock_of(key), lock)
        path = self._lock_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"retain_until": target.retain_until.isoformat(), "legal_hold": target.legal_hold})
        return target

    def delete(self, key: str, now: datetime | None = None) -> None:
        """Remove an object whose retention has ended and that no hold keeps (the bureau's retention sweep)."""
        lock = self.lock_of(key)
        now = now or datetime.now(UTC)
        if lock is not None and (lock.legal_hold or lock.retain_until > now):
            held = "under legal hold" if lock.legal_hold else f"retained until {lock.retain_until.isoformat()}"
            raise ArchiveError(f"{key}: {held}; deletion refused (000 Art. 22)")
        target = self.path_of(key)
        try:
            target.unlink()
        except FileNotFoundError:
            raise ArchiveError(f"{key}: not in the archive") from None
        fsync_dir(target.parent)
        with contextlib.suppress(FileNotFoundError):
            self._lock_path(key).unlink()

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
