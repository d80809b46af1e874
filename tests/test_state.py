"""Station state: atomic TinyDB storage behind one owner thread, and the append-only event log."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from appliance.eventlog import EventLog, EventLogError
from appliance.state import atomic
from appliance.state.db import StateDB


def test_state_db_runs_everything_on_its_one_owner_thread(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.json")
    seen: set[str] = set()

    def insert(i: int) -> None:
        db.call(lambda tdb: (seen.add(threading.current_thread().name), tdb.table("t").insert({"i": i})))

    workers = [threading.Thread(target=insert, args=(i,)) for i in range(20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(seen) == 1 and next(iter(seen)).startswith("statedb")
    assert sorted(r["i"] for r in db.call(lambda tdb: tdb.table("t").all())) == list(range(20))
    db.close()
    reopened = StateDB(tmp_path / "state.json")
    assert len(reopened.call(lambda tdb: tdb.table("t").all())) == 20
    reopened.close()


def test_a_failed_write_leaves_the_previous_state_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = StateDB(tmp_path / "state.json")
    db.call(lambda tdb: tdb.table("bays").insert({"bay": 1}))
    before = (tmp_path / "state.json").read_bytes()

    def power_cut(*args: object) -> None:
        raise OSError("power cut during fsync")

    monkeypatch.setattr(atomic.os, "fsync", power_cut)
    with pytest.raises(OSError):
        db.call(lambda tdb: tdb.table("bays").insert({"bay": 2}))
    monkeypatch.undo()
    assert (tmp_path / "state.json").read_bytes() == before  # old file intact, no temp file left
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert json.loads(before)["bays"] == {"1": {"bay": 1}}
    db.close()


def test_event_log_appends_gap_free_canonical_entries_and_reopens(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    first = log.append("boot", {"b": 2, "a": "采集"})
    second = log.append("dock", {"bay": 1})
    log.close()
    assert (first.seq, second.seq) == (0, 1)
    line = (tmp_path / "entries.jsonl").read_bytes().splitlines()[0]
    assert line.startswith(b'{"body":{"a":"') and b'"b":2}' in line  # RFC 8785: sorted keys, no spaces
    reopened = EventLog(tmp_path)
    assert reopened.size == 2
    assert reopened.append("undock", {}).seq == 2
    assert [e.type for e in reopened.entries()] == ["boot", "dock", "undock"]
    reopened.close()


def test_torn_last_line_is_moved_aside_not_lost(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append("boot", {})
    log.close()
    with open(tmp_path / "entries.jsonl", "ab") as fh:
        fh.write(b'{"body":{"half')  # the power went mid-append
    reopened = EventLog(tmp_path)
    assert reopened.size == 1
    torn = list(tmp_path.glob("torn-*.bin"))
    assert len(torn) == 1 and torn[0].read_bytes() == b'{"body":{"half'
    assert reopened.append("boot", {}).seq == 1
    reopened.close()


def test_dropped_or_edited_entries_refuse_to_open(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    for i in range(3):
        log.append("tick", {"i": i})
    log.close()
    path = tmp_path / "entries.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])  # entry 1 dropped
    with pytest.raises(EventLogError, match="entry 1 has sequence number 2"):
        EventLog(tmp_path)
    path.write_bytes(lines[0] + lines[1].replace(b'"i":1', b'"i": 1') + lines[2])  # re-serialised by hand
    with pytest.raises(EventLogError, match="not in canonical form"):
        EventLog(tmp_path)


def test_append_failure_leaves_no_half_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog(tmp_path)
    log.append("boot", {})
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        return real_write(fd, data[:5])

    monkeypatch.setattr("appliance.eventlog.os.write", disk_full)
    with pytest.raises(EventLogError, match="cannot append"):
        log.append("dock", {"bay": 1})
    monkeypatch.undo()
    assert log.append("dock", {"bay": 1}).seq == 1
    log.close()
    assert EventLog(tmp_path).size == 2
