"""The maintenance log (000 Art. 25, 003 Art. 19, 004 Art. 19, 004 Art. 20) and the maintenance schedule.

An entry records who did what to which camera or station component (dock board, bay, station disk), when,
with what result, and the hashes of its attachments. Each entry is first appended to the tamper-evident
event log (type ``maintenance``), then kept in the StateDB table ``maintenance`` for lists. Entries are
never edited: a correction is a new entry whose ``corrects`` names the entry it replaces; both stay.

Side effects on the registry belong to the original entry only: a retirement retires the camera, a repair
sent out puts it in maintenance, a successful repair closes the faults it names (lifting the fault lock)
and puts it back in service. Layout: docs/maintenance.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tinydb import Query, TinyDB

from appliance import faults, inventory
from appliance.attachments import SHA256_HEX
from appliance.eventlog import EventLog
from appliance.policy import PolicyProfile
from appliance.state.db import StateDB

TABLE = "maintenance"
TARGETS = ("camera", "dock", "bay", "disk")
KINDS = (
    "inspection",
    "cleaning",
    "battery_replacement",
    "firmware_update",
    "repair_sent",
    "repair_returned",
    "repair",
    "retirement",
)
RESULTS = ("ok", "attention", "failed")
ROUTINE = ("inspection", "cleaning")  # what resets a camera's maintenance schedule
REPAIRS = ("repair", "repair_returned")  # what may close faults
MAX_TEXT = 500
MAX_ATTACHMENTS = 8
STAFF_ROLES = ("equipment", "admin")
FUTURE_SLACK = timedelta(minutes=5)


class MaintenanceError(ValueError):
    """An entry that cannot be recorded; ``field`` names the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class EntryRequest:
    target: str  # camera, dock, bay, disk
    target_id: str  # camera serial, bay number, dock or disk name
    kind: str
    by: str  # police number of the staff member
    what: str = ""
    result: str = "ok"
    performed_at: datetime | None = None  # when the work was done (default: now)
    attachments: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()  # faults this repair closes
    corrects: str | None = None


class MaintenanceLog:
    """Record and list entries. Blocking (fsync, StateDB): call from a worker thread."""

    def __init__(self, db: StateDB, events: EventLog, bays: tuple[int, ...], attachment_exists: Any) -> None:
        self.db = db
        self.events = events
        self.bays = bays
        self.attachment_exists = attachment_exists

    def record(self, request: EntryRequest, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        row = self.db.call(lambda db: self._validate(db, request, now))
        # Logged before it is listed: the signed history is the authority, the table only serves pages.
        entry = self.events.append("maintenance", {k: v for k, v in row.items() if k != "seq"})
        row["seq"] = entry.seq
        self.db.call(lambda db: self._apply(db, row))
        return row

    def _validate(self, db: TinyDB, req: EntryRequest, now: datetime) -> dict[str, Any]:
        if req.target not in TARGETS:
            raise MaintenanceError("target", f"must be one of {', '.join(TARGETS)}")
        target_id = str(req.target_id).strip()
        if req.target == "camera":
            if inventory.camera(db, target_id) is None:
                raise MaintenanceError("target_id", f"no camera {target_id} in the registry")
        elif req.target == "bay":
            if not target_id.isdigit() or int(target_id) not in self.bays:
                raise MaintenanceError("target_id", f"no bay {target_id} on this station")
        elif not 1 <= len(target_id) <= 32:
            raise MaintenanceError("target_id", "name the component in 1 to 32 characters")
        if req.kind not in KINDS:
            raise MaintenanceError("kind", f"must be one of {', '.join(KINDS)}")
        if req.kind == "retirement" and req.target != "camera":
            raise MaintenanceError("kind", "only a camera is retired")
        if req.result not in RESULTS:
            raise MaintenanceError("result", f"must be one of {', '.join(RESULTS)}")
        staff = inventory.officer(db, req.by.strip())
        if staff is None or not staff["active"]:
            raise MaintenanceError("by", f"no active staff member {req.by.strip()} in the registry")
        what = req.what.strip()
        if len(what) > MAX_TEXT:
            raise MaintenanceError("what", f"at most {MAX_TEXT} characters")
        performed = (req.performed_at or now).astimezone(UTC)
        if performed > now + FUTURE_SLACK:
            raise MaintenanceError("performed_at", "lies in the future")
        if len(req.attachments) > MAX_ATTACHMENTS:
            raise MaintenanceError("attachments", f"at most {MAX_ATTACHMENTS}")
        for digest in req.attachments:
            if not SHA256_HEX.fullmatch(digest) or not self.attachment_exists(digest):
                raise MaintenanceError("attachments", f"{digest[:64]} was not uploaded first")
        if req.corrects is not None:
            old = db.table(TABLE).get(Query().id == req.corrects)
            if old is None:
                raise MaintenanceError("corrects", f"no maintenance entry {req.corrects}")
            if db.table(TABLE).get(Query().corrects == req.corrects) is not None:
                raise MaintenanceError("corrects", "that entry was corrected already: correct the latest version")
            if (old["target"], old["target_id"]) != (req.target, target_id):  # type: ignore[index]
                raise MaintenanceError("corrects", "a correction concerns the same camera or component")
            if req.faults:
                raise MaintenanceError("faults", "a correction cannot close faults: record a new repair")
        closing = list(dict.fromkeys(req.faults))
        if closing:
            if req.kind not in REPAIRS or req.result != "ok":
                raise MaintenanceError("faults", "only a successful repair closes faults")
            if staff["role"] not in STAFF_ROLES:
                raise MaintenanceError("by", "only equipment staff close faults (004 Art. 20)")
            for fault_id in closing:
                fault = faults.get(db, fault_id)
                if fault is None or fault["camera"] != target_id or fault["status"] != "open":
                    raise MaintenanceError("faults", f"{fault_id} is not an open fault of {target_id}")
        return {
            "id": uuid.uuid4().hex[:12],
            "target": req.target,
            "target_id": target_id,
            "kind": req.kind,
            "by": staff["police_no"],
            "what": what,
            "result": req.result,
            "performed_at": _iso(performed),
            "recorded_at": _iso(now),
            "attachments": list(req.attachments),
            "faults": closing,
            "corrects": req.corrects,
        }

    def _apply(self, db: TinyDB, row: dict[str, Any]) -> None:
        db.table(TABLE).insert(row)
        if row["corrects"] is not None or row["target"] != "camera":
            return
        serial = row["target_id"]
        status = (inventory.camera(db, serial) or {}).get("status")
        if row["kind"] == "retirement":
            inventory.upsert_camera(db, serial, status="retired")
        elif row["kind"] == "repair_sent":
            inventory.upsert_camera(db, serial, status="maintenance")
        elif row["kind"] in REPAIRS and row["result"] == "ok" and status == "maintenance":
            inventory.upsert_camera(db, serial, status="in_service")
        if row["faults"]:
            faults.close(db, row["faults"], row["id"], row["by"], row["recorded_at"])


# -- reading
def history(db: TinyDB, target: str | None = None, target_id: str | None = None) -> list[dict[str, Any]]:
    """Every entry, corrections included, oldest first; each says whether a later entry superseded it."""
    rows = [dict(r) for r in db.table(TABLE).all()]
    superseded = {r["corrects"] for r in rows if r["corrects"]}
    out = [
        r | {"superseded": r["id"] in superseded}
        for r in rows
        if (target is None or r["target"] == target) and (target_id is None or r["target_id"] == target_id)
    ]
    return sorted(out, key=lambda r: r["seq"])


def effective(db: TinyDB, target: str | None = None, target_id: str | None = None) -> list[dict[str, Any]]:
    """The entries as they stand after corrections: the latest version of each."""
    return [r for r in history(db, target, target_id) if not r["superseded"]]


def schedule(db: TinyDB, policy: PolicyProfile, now: datetime, due_soon_days: int) -> list[dict[str, Any]]:
    """Each camera not retired with its last routine maintenance, the date the next is due and its state:
    ``overdue`` (past the date), ``due`` (within ``due_soon_days``, or never maintained) or ``ok``."""
    last: dict[str, datetime] = {}
    for row in effective(db, "camera"):
        if row["kind"] in ROUTINE:
            when = datetime.fromisoformat(row["performed_at"])
            last[row["target_id"]] = max(when, last.get(row["target_id"], when))
    out = []
    for cam in inventory.cameras(db):
        if cam["status"] == "retired":
            continue
        days = policy.maintenance.interval_days.days_for(cam.get("model"))
        done = last.get(cam["serial"])
        due_at = done + timedelta(days=days) if done else None
        if due_at is not None and due_at < now:
            state = "overdue"
        elif due_at is None or due_at - timedelta(days=due_soon_days) <= now:
            state = "due"
        else:
            state = "ok"
        out.append(
            {
                "camera": cam["serial"],
                "model": cam.get("model") or "",
                "interval_days": days,
                "last_at": _iso(done) if done else None,
                "due_at": _iso(due_at) if due_at else None,
                "state": state,
                "overdue_days": (now - due_at).days if state == "overdue" and due_at else 0,
            }
        )
    order = {"overdue": 0, "due": 1, "ok": 2}
    return sorted(out, key=lambda r: (order[r["state"]], r["due_at"] or "", r["camera"]))


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")
