"""Push verified recordings to the central store, nearest deadline first, and record confirmed receipts.

Each recording goes with its signed manifest, under the lock its retention class demands; it counts as
uploaded only once the store has confirmed it and an ``upload_receipt`` entry is in the event log. Then
the log itself (entries since the last upload and a fresh signed checkpoint) goes up under lock too, so
history cannot be rewritten later. An unreachable store is retried with backoff behind a breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from tinydb import Query

from appliance.central.backoff import CircuitBreaker
from appliance.central.base import CentralStore, CentralStoreError, Lock, StoreUnavailable, lock_for
from appliance.deadlines import WorkCalendar
from appliance.eventlog import EventLog
from appliance.evidence.checkpoint import Checkpoint
from appliance.offload import RECORDINGS
from appliance.policy import PolicyProfile
from appliance.state.db import StateDB
from appliance.store import LocalStore

log = logging.getLogger(__name__)

META = "meta"
LOG_UPLOADED = "log_uploaded_size"  # meta row: entries [0, size) of the event log are in the store
# Classes no date frees go first among recordings due at the same moment (the brief's "long-term first").
CLASS_RANK = {"long_term": 0, "evidence": 1, "unclassified": 2, "routine": 3}


def object_key(station_id: str, row: dict[str, Any]) -> str:
    """station / date / camera serial / officer / file (004 Art. 16), documented in docs/archive-layout.md."""
    day = (row.get("camera_mtime") or row["ingested_at"])[:10]
    officer = row.get("officer") or "unassigned"
    return "/".join((station_id, day, row["camera_serial"], officer, PurePosixPath(row["camera_path"]).name))


def manifest_key(key: str) -> str:
    return key + ".manifest.json"


def log_segment_key(station_id: str, start: int, end: int) -> str:
    return f"{station_id}/log/entries/{start:012d}-{end:012d}.jsonl"


def checkpoint_key(station_id: str, size: int) -> str:
    return f"{station_id}/log/checkpoints/{size:012d}.note"


class Uploader:
    def __init__(
        self,
        station_id: str,
        store: LocalStore,
        central: CentralStore,
        db: StateDB,
        events: EventLog,
        policy: PolicyProfile | None = None,
        alert_margin: timedelta = timedelta(hours=4),
        calendar: WorkCalendar | None = None,
    ):
        self.station_id = station_id
        self.store = store
        self.central = central
        self.db = db
        self.events = events
        self.policy = policy
        self.alert_margin = alert_margin
        self.calendar = calendar or WorkCalendar()
        self.breaker = CircuitBreaker()
        self.log_due = True  # the log has entries the store should get (set after uploads, on start)
        self.wake = asyncio.Event()
        self.after_pass: Callable[[], None] | None = None  # e.g. free cameras whose uploads are now confirmed
        self.on_alert: Callable[[list[dict[str, Any]]], None] | None = None  # near/over deadline, for alarms
        self.keeper: Callable[[], None] | None = None  # local copies: keep period, disk pressure (local_keep.py)
        # True while uploads should wait (a site that uploads only in the night window): recordings whose
        # deadline is within the alert margin go anyway, since no schedule may make one late.
        self.hold: Callable[[], bool] | None = None
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    # -- what is due
    def deadline_of(self, row: dict[str, Any]) -> datetime | None:
        if self.policy is None:
            return None
        return self.calendar.deadline(datetime.fromisoformat(row["ingested_at"]), self.policy.upload_deadline)

    def due_now(self) -> list[dict[str, Any]]:
        """What this pass may send: everything pending, or while held only what is near its deadline."""
        rows = self.pending()
        if self.hold is None or not self.hold():
            return rows
        soon = self.now() + self.alert_margin
        return [r for r in rows if (due := self.deadline_of(r)) is not None and due <= soon]

    def pending(self) -> list[dict[str, Any]]:
        """Verified recordings not yet confirmed centrally: nearest deadline first, long-term first among equals."""
        rows = self.db.call(lambda db: db.table(RECORDINGS).search(Query().status == "verified"))
        far = datetime.max.replace(tzinfo=UTC)

        def order(row: dict[str, Any]) -> tuple[datetime, int, str]:
            return (self.deadline_of(row) or far, CLASS_RANK.get(row.get("retention_class", ""), 9), row["key"])

        return sorted(rows, key=order)

    def at_risk(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Pending recordings within the alert margin of their upload deadline, or past it (``overdue``)."""
        now = now or datetime.now(UTC)
        found = []
        for row in self.pending():
            due = self.deadline_of(row)
            if due is not None and due - now <= self.alert_margin:
                found.append(
                    {
                        "key": row["key"],
                        "camera_serial": row["camera_serial"],
                        "name": row.get("name", ""),
                        "deadline": due.isoformat(timespec="seconds"),
                        "overdue": due <= now,
                    }
                )
        return found

    def overdue(self, now: datetime | None = None) -> list[dict[str, Any]]:
        return [r for r in self.at_risk(now) if r["overdue"]]

    # -- uploading
    def lock_of(self, row: dict[str, Any]) -> Lock | None:
        if self.policy is None:
            return None
        return lock_for(
            row.get("retention_class", "unclassified"), datetime.fromisoformat(row["ingested_at"]), self.policy
        )

    def upload_one(self, row: dict[str, Any]) -> None:
        key = object_key(self.station_id, row)
        lock = self.lock_of(row)
        manifest = self.store.root / row["manifest"] if row.get("manifest") else None
        stored_manifest = None
        if manifest is not None:
            stored_manifest = self.central.put_bytes(manifest_key(key), manifest.read_bytes(), lock)
        receipt = self.central.put(key, self.store.object_path(row["sha256"]), row["sha256"], lock)
        body: dict[str, Any] = {
            "key": receipt.key,
            "sha256": receipt.sha256,
            "size": receipt.size,
            "target": self.central.kind,
        }
        if receipt.etag:
            body |= {"etag": receipt.etag, "version_id": receipt.version_id}
        if stored_manifest is not None:
            body["manifest_key"] = stored_manifest.key
        if lock is not None:
            body["lock"] = {"retain_until": lock.retain_until.isoformat(), "legal_hold": lock.legal_hold}
        entry = self.events.append("upload_receipt", body)
        update = {
            "status": "uploaded",
            "archive_key": receipt.key,
            "uploaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "receipt_seq": entry.seq,
        }
        self.db.call(lambda db: db.table(RECORDINGS).update(update, Query().key == row["key"]))

    def relock_changed(self) -> int:
        """Uploaded recordings whose retention class changed since (an officer tagged them): the central copy
        and its manifest get the new class's lock. Only ever lengthened (``stronger``)."""
        rows = self.db.call(lambda db: db.table(RECORDINGS).search(Query().relock == True))  # noqa: E712
        done = 0
        for row in rows:
            lock = self.lock_of(row)
            if lock is None or row.get("status") != "uploaded":
                continue
            key = row.get("archive_key") or object_key(self.station_id, row)
            applied = self.central.relock(key, lock)
            if row.get("manifest"):
                self.central.relock(manifest_key(key), lock)
            self.events.append(
                "relock",
                {
                    "key": key,
                    "sha256": row["sha256"],
                    "retention_class": row.get("retention_class"),
                    "retain_until": applied.retain_until.isoformat(),
                    "legal_hold": applied.legal_hold,
                },
            )
            self.db.call(lambda db, k=row["key"]: db.table(RECORDINGS).update({"relock": False}, Query().key == k))
            done += 1
        return done

    def upload_log(self) -> None:
        """Entries not yet in the store, then a signed checkpoint covering them, both under lock."""
        done = self.db.call(lambda db: (db.table(META).get(doc_id=1) or {}).get(LOG_UPLOADED, 0))
        if self.events.size <= done:
            return
        note = self.events.checkpoint()
        if note is None:
            return  # an unsigned log (tests without a signer) has no checkpoints to anchor it
        size = Checkpoint.parse(note.split("\n\n", 1)[0] + "\n").size
        lines = b"".join(e.canonical() + b"\n" for e in self.events.entries(done) if e.seq < size)
        lock = lock_for("long_term", datetime.now(UTC), self.policy) if self.policy else None
        self.central.put_bytes(log_segment_key(self.station_id, done, size), lines, lock)
        self.central.put_bytes(checkpoint_key(self.station_id, size), note.encode(), lock)

        def record(db: Any) -> None:
            meta = db.table(META)
            if meta.get(doc_id=1) is None:
                meta.insert({LOG_UPLOADED: size})
            else:
                meta.update({LOG_UPLOADED: size}, doc_ids=[1])

        self.db.call(record)

    def run_once(self) -> int:
        """One pass; stops at the first "store unavailable" so the breaker paces the retries."""
        if not self.breaker.allow():
            return 0
        done = 0
        try:
            for row in self.due_now():
                try:
                    self.upload_one(row)
                    done += 1
                except StoreUnavailable:
                    raise
                except (CentralStoreError, OSError) as exc:
                    log.error("upload of %s failed: %s", row["camera_path"], exc)
            try:
                done += self.relock_changed()
            except StoreUnavailable:
                raise
            except (CentralStoreError, OSError) as exc:
                log.error("re-locking re-classified recordings failed: %s", exc)
            if done or self.log_due:
                self.log_due = True
                try:
                    self.upload_log()
                    self.log_due = False
                except StoreUnavailable:
                    raise
                except (CentralStoreError, OSError) as exc:
                    log.error("upload of the event log failed: %s", exc)
        except StoreUnavailable as exc:
            delay = self.breaker.failure()
            log.warning("central store unavailable (%s); next attempt in %.0f s", exc, delay)
            return done
        self.breaker.success()
        return done

    async def run(self, interval_s: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(None, self.run_once)
            if self.on_alert is not None:
                self.on_alert(await loop.run_in_executor(None, self.at_risk))
            if self.after_pass is not None:
                await loop.run_in_executor(None, self.after_pass)
            if self.keeper is not None:
                await loop.run_in_executor(None, self.keeper)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval_s)
