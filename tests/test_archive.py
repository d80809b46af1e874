"""The embedded central store: write-once archive, and recordings reaching it from a docked camera."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tinydb import Query

from appliance.central.archive import ArchiveError, ArchiveStore
from appliance.central.base import Lock
from appliance.offload import RECORDINGS
from tests.conftest import register_cameras, sha256_file, wait_until


def test_archive_writes_once_and_confirms(tmp_path: Path) -> None:
    archive = ArchiveStore(tmp_path / "archive")
    src = tmp_path / "rec.mp4"
    src.write_bytes(b"recording bytes")
    sha = sha256_file(src)
    receipt = archive.put("st/2026-03-05/CAM0001/110001/a.MP4", src, sha)
    stored = archive.path_of(receipt.key)
    assert stored.read_bytes() == b"recording bytes" and stored.stat().st_mode & 0o777 == 0o444
    assert archive.put(receipt.key, src, sha) == receipt  # idempotent for the same bytes
    other = tmp_path / "other.mp4"
    other.write_bytes(b"different bytes")
    with pytest.raises(ArchiveError, match="differs"):
        archive.put(receipt.key, other, sha256_file(other))  # never overwritten
    assert stored.read_bytes() == b"recording bytes"
    with pytest.raises(ArchiveError, match="invalid object key"):
        archive.path_of("st/../../etc/passwd")


def test_archive_refuses_a_source_that_no_longer_matches_its_hash(tmp_path: Path) -> None:
    archive = ArchiveStore(tmp_path / "archive")
    src = tmp_path / "rec.mp4"
    src.write_bytes(b"original")
    with pytest.raises(ArchiveError, match="no longer matches"):
        archive.put("st/d/c/o/rec.mp4", src, "0" * 64)
    assert not any(p.is_file() for p in (tmp_path / "archive").rglob("*"))


def test_archive_records_retention_refuses_early_deletion_and_only_lengthens_locks(tmp_path: Path) -> None:
    archive = ArchiveStore(tmp_path / "archive")
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"evidence" * 1000)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    routine = Lock(now + timedelta(days=180), legal_hold=False)
    archive.put("st/2026-11-23/CAM0001/110001/clip.mp4", source, sha256_file(source), routine)
    key = "st/2026-11-23/CAM0001/110001/clip.mp4"
    assert archive.lock_of(key) == routine
    with pytest.raises(ArchiveError, match="retained until 2027-05-22"):
        archive.delete(key, now=now + timedelta(days=179))
    assert archive.path_of(key).exists()

    # Re-classified as long-term: a hold, and an earlier date never shortens what is in force.
    held = archive.relock(key, Lock(now + timedelta(days=30), legal_hold=True))
    assert held == Lock(now + timedelta(days=180), legal_hold=True)
    with pytest.raises(ArchiveError, match="legal hold"):
        archive.delete(key, now=now + timedelta(days=4000))
    with pytest.raises(ArchiveError, match="not in the archive"):
        archive.relock("st/2026-11-23/CAM0001/110001/other.mp4", routine)


def test_archive_deletes_only_after_retention_without_hold(tmp_path: Path) -> None:
    archive = ArchiveStore(tmp_path / "archive")
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"routine" * 100)
    key = "st/2026-01-01/CAM0001/unassigned/clip.mp4"
    until = datetime(2026, 7, 1, tzinfo=UTC)
    archive.put(key, source, sha256_file(source), Lock(until, legal_hold=False))
    archive.delete(key, now=until + timedelta(seconds=1))
    assert not archive.path_of(key).exists() and archive.lock_of(key) is None


def test_docked_recordings_reach_the_archive_with_receipts(world, sim_server, config, start_station) -> None:
    world.create_camera("CAMARC1", fs_type="exfat", size_mib=40, clips=2)
    register_cameras(config, "CAMARC1")
    station = start_station()
    sim_server.dock("CAMARC1", 1)
    station.wait_bay(1, "ready")
    db = station.station.db

    def uploaded() -> list[dict]:
        return db.call(lambda tdb: tdb.table(RECORDINGS).search(Query().status == "uploaded"))

    wait_until(lambda: len(uploaded()) == 2, 30, "upload to the archive")
    receipts = {e.body["key"]: e for e in station.station.events.entries() if e.type == "upload_receipt"}
    for row in uploaded():
        archived = config.archive_dir / row["archive_key"]
        assert sha256_file(archived) == row["sha256"]
        assert row["archive_key"].startswith(f"test-station/{row['camera_mtime'][:10]}/CAMARC1/unassigned/")
        assert receipts[row["archive_key"]].seq == row["receipt_seq"]
        assert archived.stat().st_mode & 0o222 == 0
