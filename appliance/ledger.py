"""The usage ledger (004 Art. 16, 004 Art. 23): who had which camera when, from the assignments, filterable by
camera, officer and local date, exportable as CSV; and the fleet ratio report (003 Art. 15)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tinydb import TinyDB

from appliance import inventory
from appliance.assignments import ASSIGNMENTS
from appliance.policy import PolicyProfile

LEDGER_COLUMNS = (
    "assignment",
    "camera",
    "bay",
    "police_no",
    "names",
    "issued_at",
    "taken_at",
    "due_at",
    "returned_at",
    "return_bay",
    "minutes_out",
    "status",
)


def ledger(
    db: TinyDB,
    tz: ZoneInfo,
    camera: str | None = None,
    police_no: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[dict[str, Any]]:
    """Assignments issued between ``since`` and ``until`` (local dates, both included), oldest first."""
    rows = []
    for row in db.table(ASSIGNMENTS).all():
        day = datetime.fromisoformat(row["issued_at"]).astimezone(tz).date()
        if camera and row["camera"] != camera:
            continue
        if police_no and all(o["police_no"] != police_no for o in row["officers"]):
            continue
        if (since and day < since) or (until and day > until):
            continue
        rows.append(dict(row))
    return sorted(rows, key=lambda r: r["issued_at"])


def ledger_csv(rows: list[dict[str, Any]], tz: ZoneInfo) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LEDGER_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        start, end = row.get("taken_at") or row["issued_at"], row.get("returned_at")
        minutes = (
            round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60) if end else ""
        )
        writer.writerow(
            {
                "assignment": row["id"],
                "camera": row["camera"],
                "bay": row["bay"],
                "police_no": ";".join(o["police_no"] for o in row["officers"]),
                "names": ";".join(o["name"] for o in row["officers"]),
                "issued_at": _local(row["issued_at"], tz),
                "taken_at": _local(row.get("taken_at"), tz),
                "due_at": _local(row["due_at"], tz),
                "returned_at": _local(end, tz),
                "return_bay": row.get("return_bay") or "",
                "minutes_out": minutes,
                "status": row["status"],
            }
        )
    return "\ufeff" + out.getvalue()


def fleet_ratio(db: TinyDB, policy: PolicyProfile) -> dict[str, Any]:
    """Active officers per in-service camera against the profile's standard (e.g. 2, 003 Art. 15)."""
    officers = sum(1 for o in inventory.officers(db) if o["active"] and o["role"] == "officer")
    cameras = sum(1 for c in inventory.cameras(db) if c["status"] == "in_service")
    standard = policy.officers_per_camera.value
    ratio = round(officers / cameras, 2) if cameras else None
    needed = -(-officers // standard)  # cameras the standard asks for, rounded up
    return {
        "officers": officers,
        "cameras": cameras,
        "ratio": ratio,
        "standard": standard,
        "cite": policy.officers_per_camera.cite,
        "meets_standard": cameras >= needed,
        "cameras_needed": needed,
        "shortfall": max(0, needed - cameras),
    }


def _local(value: str | None, tz: ZoneInfo) -> str:
    return datetime.fromisoformat(value).astimezone(tz).isoformat(timespec="seconds") if value else ""
