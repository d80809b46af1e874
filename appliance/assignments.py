"""Assignments (who had which camera when) as stored in the state: the table the check-out service owns, and
the lookup the offload uses to give each recording its officer pair (manifest, object key: 004 Art. 16)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tinydb import Query, TinyDB

ASSIGNMENTS = "assignments"
OPEN = ("issued", "out")  # issued: latch opened, camera still in the bay; out: taken on duty

# A recording's time is the camera's clock, which the gate set at check-out but may have drifted since.
CLOCK_MARGIN = timedelta(minutes=5)


def covering(db: TinyDB, camera: str, when: datetime, margin: timedelta = CLOCK_MARGIN) -> dict[str, Any] | None:
    """The assignment of ``camera`` during which a recording made at ``when`` (aware) was made, or None: from
    issue to return (or still open). The latest issue wins if clock margins overlap."""
    found: dict[str, Any] | None = None
    for row in db.table(ASSIGNMENTS).search(Query().camera == camera):
        start = datetime.fromisoformat(row["issued_at"]) - margin
        end = datetime.fromisoformat(row["returned_at"]) + margin if row.get("returned_at") else None
        inside = start <= when and (end is None or when <= end)
        if inside and (found is None or row["issued_at"] > found["issued_at"]):
            found = row
    return found


def utc(moment: datetime, tz: Any) -> datetime:
    """A camera's naive local wall time as an aware UTC time (``tz``: the station's ZoneInfo)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(UTC)
