"""Push verified recordings to the central store and record a receipt once the store has confirmed them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from tinydb import Query

from appliance.central.archive import ArchiveError, ArchiveStore
from appliance.eventlog import EventLog
from appliance.offload import RECORDINGS
from appliance.state.db import StateDB
from appliance.store import LocalStore

log = logging.getLogger(__name__)


def object_key(station_id: str, row: dict[str, Any]) -> str:
    """station / date / camera serial / officer / file (004 Art. 16), documented in docs/archive-layout.md."""
    day = (row.get("camera_mtime") or row["ingested_at"])[:10]
    officer = row.get("officer") or "unassigned"
    return "/".join((station_id, day, row["camera_serial"], officer, PurePosixPath(row["camera_path"]).name))


class Uploader:
    def __init__(self, station_id: str, store: LocalStore, archive: ArchiveStore, db: StateDB, events: EventLog):
        self.station_id = station_id
        self.store = store
        self.archive = archive
        self.db = db
        self.events = events
        self.wake = asyncio.Event()
        self.after_pass: Callable[[], None] | None = None  # e.g. free cameras whose uploads are now confirmed

    def pending(self) -> list[dict[str, Any]]:
        return self.db.call(lambda db: db.table(RECORDINGS).search(Query().status == "verified"))

    def upload_one(self, row: dict[str, Any]) -> None:
        key = object_key(self.station_id, row)
        receipt = self.archive.put(key, self.store.object_path(row["sha256"]), row["sha256"])
        entry = self.events.append(
            "upload_receipt",
            {"key": receipt.key, "sha256": receipt.sha256, "size": receipt.size, "target": "archive"},
        )
        update = {
            "status": "uploaded",
            "archive_key": receipt.key,
            "uploaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "receipt_seq": entry.seq,
        }
        self.db.call(lambda db: db.table(RECORDINGS).update(update, Query().key == row["key"]))

    def run_once(self) -> int:
        done = 0
        for row in self.pending():
            try:
                self.upload_one(row)
                done += 1
            except (ArchiveError, OSError) as exc:
                log.error("upload of %s failed: %s", row["camera_path"], exc)
        return done

    async def run(self, interval_s: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(None, self.run_once)
            if self.after_pass is not None:
                await loop.run_in_executor(None, self.after_pass)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval_s)
