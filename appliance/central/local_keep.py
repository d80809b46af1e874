"""When the station may delete its own copy of a recording.

Only a recording whose upload the central store confirmed (status "uploaded" with a receipt in the event
log) is ever deleted, and the store is asked again (``confirm``) right before, so a copy is never the last
one. The normal pass waits for the policy's local keep period after the upload (``[local_keep]``); the
disk-pressure pass, run only when free space is below the reserve, may take confirmed copies earlier,
oldest upload first, and stops as soon as enough space is free. Each deletion is logged (``local_delete``,
naming the receipt) before the file goes, so the log never shows a deletion without its receipt.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from tinydb import Query

from appliance.central.base import CentralStore, CentralStoreError
from appliance.classification import _add_months
from appliance.eventlog import EventLog
from appliance.offload import RECORDINGS
from appliance.policy import PolicyProfile
from appliance.state.db import StateDB
from appliance.store import LocalStore

log = logging.getLogger(__name__)


def keep_until(uploaded_at: datetime, profile: PolicyProfile) -> datetime | None:
    """End of the local keep period after a confirmed upload; None when the copy is kept for good."""
    period = profile.local_keep
    match period.unit:
        case "days":
            delta = period.approx_timedelta()
            assert delta is not None
            return uploaded_at + delta
        case "months":
            return _add_months(uploaded_at, period.amount)
        case "years":
            return _add_months(uploaded_at, 12 * period.amount)
    return None


class LocalKeeper:
    def __init__(
        self, store: LocalStore, central: CentralStore, db: StateDB, events: EventLog, policy: PolicyProfile
    ) -> None:
        self.store = store
        self.central = central
        self.db = db
        self.events = events
        self.policy = policy

    def _confirmed(self) -> list[dict[str, Any]]:
        rows = self.db.call(
            lambda db: db.table(RECORDINGS).search(
                (Query().status == "uploaded") & Query().receipt_seq.exists() & ~Query().local_deleted.exists()
            )
        )
        return sorted(rows, key=lambda r: r["uploaded_at"])

    def _still_needed(self, sha256: str, key: str) -> bool:
        """Another row with the same bytes that is not confirmed keeps the shared object."""
        others = self.db.call(lambda db: db.table(RECORDINGS).search((Query().sha256 == sha256) & (Query().key != key)))
        return any(r["status"] != "uploaded" or "receipt_seq" not in r for r in others)

    def _delete(self, row: dict[str, Any], reason: str) -> int:
        if self._still_needed(row["sha256"], row["key"]):
            return 0
        try:
            self.central.confirm(row["archive_key"], row["sha256"])
        except CentralStoreError as exc:
            log.warning("keeping %s: the central store does not confirm it now: %s", row["archive_key"], exc)
            return 0
        size = row["size"]
        self.events.append(
            "local_delete",
            {"key": row["archive_key"], "sha256": row["sha256"], "receipt_seq": row["receipt_seq"], "reason": reason},
        )
        self.store.remove(row["sha256"])
        self.db.call(lambda db: db.table(RECORDINGS).update({"local_deleted": True}, Query().key == row["key"]))
        return size

    def expire(self, now: datetime | None = None) -> int:
        """Delete confirmed copies whose keep period is over; the number deleted."""
        now = now or datetime.now(UTC)
        deleted = 0
        for row in self._confirmed():
            until = keep_until(datetime.fromisoformat(row["uploaded_at"]), self.policy)
            if until is not None and until <= now and self._delete(row, "keep_period"):
                deleted += 1
        return deleted

    def relieve_pressure(self, need_bytes: int) -> int:
        """Free at least ``need_bytes`` from confirmed copies, oldest upload first; the bytes freed."""
        freed = 0
        for row in self._confirmed():
            if freed >= need_bytes:
                break
            freed += self._delete(row, "disk_pressure")
        return freed

    def run_once(self) -> None:
        self.expire()
        shortfall = self.store.reserve_bytes - self.store.free_bytes()
        if shortfall > 0:
            self.relieve_pressure(shortfall)
