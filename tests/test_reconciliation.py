"""Per dock, what the camera listed against what arrived: logged, and a gap keeps the camera from being freed."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tinydb import Query

from appliance.eventlog import EventLog, Signer
from appliance.offload import RECORDINGS, Offloader, OffloadProgress
from appliance.single_offload import offload_once
from appliance.state.db import StateDB
from appliance.store import LocalStore
from devices.volumes.directory import DirectoryVolume


def entries(data_dir: Path, kind: str) -> list[dict]:  # data_dir holds log/
    lines = (data_dir / "log" / "entries.jsonl").read_text().splitlines()
    return [e["body"] for e in map(json.loads, lines) if e["type"] == kind]


def camera(tmp_path: Path) -> Path:
    root = tmp_path / "camera"
    (root / "DCIM").mkdir(parents=True)
    (root / "DCIM" / "0001.MP4").write_bytes(os.urandom(300_000))
    (root / "DCIM" / "0002.mp4").write_bytes(os.urandom(200_000))
    (root / "LOG.TXT").write_text("device log")
    (root / "SYS").mkdir()
    (root / "SYS" / "config.bin").write_bytes(b"\x00" * 64)
    return root


def test_reconciliation_counts_what_arrived_and_names_what_is_not_a_recording(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = offload_once(camera(tmp_path), data, {"serial": "CAMREC1"})
    assert result.missing == [] and sorted(result.copied) == ["DCIM/0001.MP4", "DCIM/0002.mp4"]
    [rec] = entries(data, "reconciliation")
    assert rec["listed"] == 4 and rec["recordings"] == 2 and rec["arrived"] == 2 and rec["missing"] == []
    assert sorted(rec["not_recordings"]) == ["LOG.TXT", "SYS/config.bin"] and rec["not_recordings_count"] == 2


def test_a_recording_without_a_verified_row_is_copied_again_on_the_next_dock(tmp_path: Path) -> None:
    """Re-dock after the state lost a row (e.g. restored from an old backup): it is copied again, and the
    reconciliation reads the state afresh, so the second dock's entry shows everything arrived."""
    data = tmp_path / "data"
    source = camera(tmp_path)
    offload_once(source, data, {"serial": "CAMREC2"})
    db = StateDB(data / "state" / "state.json")
    try:
        db.call(lambda t: t.table(RECORDINGS).update({"status": "quarantined"}, doc_ids=[1]))
    finally:
        db.close()
    again = offload_once(source, data, {"serial": "CAMREC2"})
    assert len(again.copied) == 1 and len(again.skipped) == 1  # the unverified one is copied again, not skipped
    assert [r["arrived"] for r in entries(data, "reconciliation")] == [2, 2]


def test_a_copy_that_lost_its_state_row_is_missing_and_the_offload_says_so(tmp_path: Path) -> None:
    """Fault injection through the progress callback: the verified row of the last file disappears before the
    reconciliation runs. The reconciliation reads the state afresh, so it must notice."""
    key = Ed25519PrivateKey.generate()
    db = StateDB(tmp_path / "state.json")
    events = EventLog(tmp_path / "log", origin="test/events", signer=Signer("test", key))
    try:
        offloader = Offloader(LocalStore(tmp_path / "store"), db, events, (".mp4",), "test", key)

        def lose_rows(progress: OffloadProgress) -> None:
            if progress.files_done == progress.files_total:
                db.call(lambda t: t.table(RECORDINGS).remove(Query().camera_path == "DCIM/0002.mp4"))

        volume = DirectoryVolume(camera(tmp_path), "mounted")
        result = offloader.run(volume, {"serial": "CAMREC3"}, 1, threading.Event(), lose_rows)
    finally:
        events.close()
        db.close()
    assert result.missing == ["DCIM/0002.mp4"]
    [rec] = entries(tmp_path, "reconciliation")
    assert rec["recordings"] == 2 and rec["arrived"] == 1 and rec["missing"] == ["DCIM/0002.mp4"]
