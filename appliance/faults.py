"""Camera faults (004 Art. 20): a faulty camera stops being used at once, is reported, and is repaired by
professionals. An open fault locks the camera out of check-out (the gate's lock check); only a successful
repair entry in the maintenance log closes it (appliance/maintenance.py), and the lock lifts with the last
open fault.

Faults come from officers at check-in (a reason from the kiosk's list, plus free text) or from the station
itself (appliance/fault_detection.py). Rows live in the StateDB table ``faults``; ``open_fault`` logs
``fault_opened`` and the maintenance entry that closes a fault is its ``fault_closed`` record.
"""

from __future__ import annotations

import uuid
from typing import Any

from tinydb import Query, TinyDB

from appliance import inventory

TABLE = "faults"
# What an officer can pick at the kiosk (labels: fault.reason.<code> in the message catalogues).
OFFICER_REASONS = ("no_power", "wont_record", "damaged", "battery", "lens", "buttons", "other")
# What the station detects by itself.
STATION_REASONS = (
    "unresponsive",
    "storage_error",
    "filesystem_damaged",
    "no_charge_current",
    "not_full",
    "clock_drift",
)
SOURCES = ("officer", "station", "staff")
MAX_TEXT = 300


class FaultError(ValueError):
    """A fault report that cannot be stored; the message says why."""


def get(db: TinyDB, fault_id: str) -> dict[str, Any] | None:
    return db.table(TABLE).get(Query().id == fault_id)  # type: ignore[return-value]


def open_faults(db: TinyDB, camera: str | None = None) -> list[dict[str, Any]]:
    q = Query()
    cond = q.status == "open" if camera is None else (q.status == "open") & (q.camera == camera)
    return sorted((dict(r) for r in db.table(TABLE).search(cond)), key=lambda r: r["opened_at"])


def all_faults(db: TinyDB) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in db.table(TABLE).all()), key=lambda r: r["opened_at"])


def validate_report(db: TinyDB, camera: str, reason: str, source: str, by: str, text: str) -> dict[str, Any]:
    """A new fault row (not stored yet), or FaultError. Reports are checked against the registry."""
    if inventory.camera(db, camera) is None:
        raise FaultError(f"no camera {camera} in the registry")
    if source not in SOURCES:
        raise FaultError(f"source must be one of {', '.join(SOURCES)}")
    allowed = STATION_REASONS if source == "station" else OFFICER_REASONS
    if reason not in allowed:
        raise FaultError(f"reason must be one of {', '.join(allowed)}")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise FaultError(f"the description is longer than {MAX_TEXT} characters")
    if reason == "other" and not text:
        raise FaultError("describe the fault when the reason is 'other'")
    if source != "station" and by and inventory.officer(db, by) is None:
        raise FaultError(f"no officer {by} in the registry")
    return {"id": uuid.uuid4().hex[:12], "camera": camera, "reason": reason, "source": source, "by": by, "text": text}


def duplicate(db: TinyDB, camera: str, reason: str) -> dict[str, Any] | None:
    """An open fault of the same camera for the same reason: the station reports a condition once."""
    q = Query()
    return db.table(TABLE).get((q.camera == camera) & (q.reason == reason) & (q.status == "open"))  # type: ignore[return-value]


def store_open(db: TinyDB, row: dict[str, Any], opened_at: str, detail: dict[str, Any]) -> dict[str, Any]:
    """Store an already logged fault and lock the camera (keeping a lock staff had set, with its reason)."""
    full = {**row, "detail": detail, "opened_at": opened_at, "status": "open", "closed_at": None, "repair": None}
    db.table(TABLE).insert(full)
    cam = inventory.camera(db, row["camera"])
    assert cam is not None
    lock = cam.get("lock")
    if lock is None:
        lock = {"reason": f"fault.reason.{row['reason']}", "by": row["by"], "since": opened_at, "fault_lock": True}
    lock = {**lock, "faults": [*lock.get("faults", []), row["id"]]}
    inventory.upsert_camera(db, row["camera"], lock=lock)
    return full


def close(db: TinyDB, fault_ids: list[str], repair_id: str, by: str, closed_at: str) -> None:
    """Close faults named by a repair entry; lift the camera's lock when it was ours and none is left open."""
    for fault_id in fault_ids:
        row = get(db, fault_id)
        if row is None or row["status"] != "open":
            continue
        db.table(TABLE).update(
            {"status": "closed", "closed_at": closed_at, "repair": repair_id, "closed_by": by}, Query().id == fault_id
        )
        cam = inventory.camera(db, row["camera"])
        lock = (cam or {}).get("lock")
        if lock is None:
            continue
        left = [f for f in lock.get("faults", []) if f != fault_id and (get(db, f) or {}).get("status") == "open"]
        if left:
            inventory.upsert_camera(db, row["camera"], lock={**lock, "faults": left})
        elif lock.get("fault_lock"):
            inventory.upsert_camera(db, row["camera"], lock=None)
        else:  # a lock staff set by hand stays until they lift it
            inventory.upsert_camera(db, row["camera"], lock={k: v for k, v in lock.items() if k != "faults"})
