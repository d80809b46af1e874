"""The local store: one-pass copy with hashing, verified by reading back from disk."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from appliance.store import LocalStore, StoreError, StoreFull


def test_ingest_copies_hashes_and_verifies(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", buffer_size=64 * 1024)
    data = os.urandom(3 * 2**20 + 17)
    seen: list[int] = []
    stored = store.ingest(io.BytesIO(data), len(data), seen.append)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.path.read_bytes() == data
    assert sum(seen) == len(data)
    assert stored.path.stat().st_mode & 0o777 == 0o444  # evidence is never rewritten in place
    assert list(store.tmp.iterdir()) == []


def test_short_source_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(StoreError, match="delivered 10 bytes"):
        store.ingest(io.BytesIO(b"0123456789"), 11)
    assert list(store.tmp.iterdir()) == [] and not any(p.is_file() for p in store.objects.rglob("*"))


def test_corrupted_copy_fails_verification(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    stored = store.ingest(io.BytesIO(b"recording"), 9)
    os.chmod(stored.path, 0o644)
    stored.path.write_bytes(b"recordinG")
    with pytest.raises(StoreError, match="does not verify"):
        store.verify(stored.sha256, 9)


def test_reserve_is_never_eaten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", reserve_bytes=store_free(tmp_path) + 1)
    with pytest.raises(StoreFull, match="reserve"):
        store.ingest(io.BytesIO(b"x"), 1)


def test_partial_copies_from_a_crash_are_cleared_on_open(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    (store.tmp / "ingest-123-abc").write_bytes(b"half a recording")
    LocalStore(tmp_path / "store")
    assert list(store.tmp.iterdir()) == []


def store_free(path: Path) -> int:
    import shutil

    return shutil.disk_usage(path).free
