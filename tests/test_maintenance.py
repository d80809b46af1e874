"""The maintenance log: entries per camera and station component in the signed event log, attachments stored
by content, corrections that never edit an earlier entry, the schedule per camera model from the policy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance import inventory, maintenance
from appliance.attachments import AttachmentError
from appliance.config import StationConfig
from appliance.equipment import EquipmentService
from appliance.eventlog import EventLog
from appliance.maintenance import EntryRequest, MaintenanceError
from appliance.policy import load_profile
from appliance.state.db import StateDB
from tests.conftest import register_cameras, register_officers

STAFF, OFFICER = "220001", "110001"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 4  # a JPEG header is what is checked


@pytest.fixture
def equipment(config: StationConfig) -> Iterator[EquipmentService]:
    register_cameras(config, "CAMMNT1", model="DSJ-S1")
    register_cameras(config, "CAMMNT2", model="DSJ-X9")
    register_officers(config, {"police_no": STAFF, "role": "equipment"}, {"police_no": OFFICER})
    db = StateDB(config.state_dir / "state.json")
    events = EventLog(config.log_dir)
    service = EquipmentService(config, load_profile("004"), db, events)
    yield service
    service.close()
    events.close()
    db.close()


def log_lines(config: StationConfig) -> list[bytes]:
    return (config.log_dir / "entries.jsonl").read_bytes().splitlines()


def test_entries_for_cameras_and_components_are_signed_events(equipment, config) -> None:
    photo = equipment.add_attachment(JPEG)
    assert photo == {"sha256": hashlib.sha256(JPEG).hexdigest(), "media_type": "image/jpeg", "size": len(JPEG)}
    assert equipment.add_attachment(JPEG) == photo  # same content, one copy
    stored = config.state_dir / "attachments" / photo["sha256"][:2] / photo["sha256"]
    assert stored.read_bytes() == JPEG

    sent = equipment.record(
        EntryRequest("camera", "CAMMNT1", "repair_sent", STAFF, "屏幕碎裂，送厂维修", attachments=(photo["sha256"],))
    )
    bay = equipment.record(EntryRequest("bay", "2", "cleaning", STAFF, "contacts cleaned"))
    disk = equipment.record(EntryRequest("disk", "store", "inspection", STAFF, "SMART ok", result="ok"))
    logged = [json.loads(line) for line in log_lines(config)]
    assert [e["type"] for e in logged] == ["maintenance"] * 3
    assert logged[0]["body"]["attachments"] == [photo["sha256"]] and logged[0]["body"]["id"] == sent["id"]
    assert [e["seq"] for e in logged] == [sent["seq"], bay["seq"], disk["seq"]]
    # A camera sent for repair is out of service until it comes back repaired.
    assert equipment.db.call(lambda db: inventory.camera(db, "CAMMNT1"))["status"] == "maintenance"
    equipment.record(EntryRequest("camera", "CAMMNT1", "repair_returned", STAFF, "new screen"))
    assert equipment.db.call(lambda db: inventory.camera(db, "CAMMNT1"))["status"] == "in_service"
    equipment.record(EntryRequest("camera", "CAMMNT2", "retirement", STAFF, "end of life"))
    assert equipment.db.call(lambda db: inventory.camera(db, "CAMMNT2"))["status"] == "retired"
    assert [r["kind"] for r in equipment.db.call(lambda db: maintenance.history(db, "camera", "CAMMNT1"))] == [
        "repair_sent",
        "repair_returned",
    ]


def test_correction_is_a_new_entry_and_never_edits(equipment, config) -> None:
    original = equipment.record(EntryRequest("camera", "CAMMNT1", "inspection", STAFF, "lens scratched", "attention"))
    before_log = log_lines(config)
    before_row = equipment.db.call(lambda db: db.table(maintenance.TABLE).get(doc_id=1))

    fixed = equipment.record(
        EntryRequest("camera", "CAMMNT1", "inspection", STAFF, "lens clean (smudge)", "ok", corrects=original["id"])
    )
    after_log = log_lines(config)
    assert after_log[: len(before_log)] == before_log  # the earlier entry's bytes are untouched
    assert json.loads(after_log[-1])["body"]["corrects"] == original["id"]
    assert equipment.db.call(lambda db: db.table(maintenance.TABLE).get(doc_id=1)) == before_row
    history = equipment.db.call(lambda db: maintenance.history(db, "camera", "CAMMNT1"))
    assert [(r["id"], r["superseded"]) for r in history] == [(original["id"], True), (fixed["id"], False)]
    assert [r["what"] for r in equipment.db.call(lambda db: maintenance.effective(db, "camera"))] == [
        "lens clean (smudge)"
    ]
    with pytest.raises(MaintenanceError, match="corrected already"):
        equipment.record(EntryRequest("camera", "CAMMNT1", "inspection", STAFF, "x", corrects=original["id"]))
    with pytest.raises(MaintenanceError, match="same camera"):
        equipment.record(EntryRequest("camera", "CAMMNT2", "inspection", STAFF, "x", corrects=fixed["id"]))
    assert len(log_lines(config)) == len(after_log)  # refused corrections leave no trace


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (EntryRequest("camera", "NOSUCH1", "inspection", STAFF), "target_id"),
        (EntryRequest("bay", "9", "inspection", STAFF), "target_id"),
        (EntryRequest("dock", "", "inspection", STAFF), "target_id"),
        (EntryRequest("camera", "CAMMNT1", "polishing", STAFF), "kind"),
        (EntryRequest("bay", "1", "retirement", STAFF), "kind"),
        (EntryRequest("camera", "CAMMNT1", "inspection", STAFF, result="fine"), "result"),
        (EntryRequest("camera", "CAMMNT1", "inspection", "999999"), "by"),
        (EntryRequest("camera", "CAMMNT1", "inspection", STAFF, "x" * 501), "what"),
        (EntryRequest("camera", "CAMMNT1", "inspection", STAFF, attachments=("ab" * 32,)), "attachments"),
        (
            EntryRequest("camera", "CAMMNT1", "inspection", STAFF, performed_at=datetime.now(UTC) + timedelta(1)),
            "performed_at",
        ),
        (EntryRequest("camera", "CAMMNT1", "inspection", STAFF, faults=("abc",)), "faults"),
        (EntryRequest("camera", "CAMMNT1", "inspection", STAFF, corrects="nosuch"), "corrects"),
    ],
)
def test_bad_entries_are_refused_and_leave_nothing(equipment, config, request_, field) -> None:
    with pytest.raises(MaintenanceError) as caught:
        equipment.record(request_)
    assert caught.value.field == field
    assert not (config.log_dir / "entries.jsonl").read_bytes()
    assert equipment.db.call(lambda db: maintenance.history(db)) == []


def test_attachment_checks(equipment, tmp_path: Path) -> None:
    with pytest.raises(AttachmentError, match="JPEG or PNG"):
        equipment.add_attachment(b"MZ\x90\x00 an executable")
    with pytest.raises(AttachmentError, match="empty"):
        equipment.add_attachment(b"")
    with pytest.raises(AttachmentError, match="larger"):
        equipment.add_attachment(b"%PDF-" + b"\0" * (10 * 2**20))
    pdf = equipment.add_attachment(b"%PDF-1.4 repair slip")
    data, kind = equipment.attachments.get(pdf["sha256"])
    assert (data, kind) == (b"%PDF-1.4 repair slip", "application/pdf")
    path = equipment.attachments.directory / pdf["sha256"][:2] / pdf["sha256"]
    path.chmod(0o644)
    path.write_bytes(b"%PDF-1.4 forged slip")
    with pytest.raises(AttachmentError, match="damaged"):
        equipment.attachments.get(pdf["sha256"])


def test_schedule_per_model_due_and_overdue(equipment, config) -> None:
    policy = load_profile("004").model_copy(deep=True)
    interval = policy.maintenance.interval_days.model_copy(update={"by_model": {"DSJ-X9": 30}})
    rules = policy.maintenance.model_copy(update={"interval_days": interval})
    equipment.policy = policy.model_copy(update={"maintenance": rules})
    now = datetime(2026, 6, 1, tzinfo=UTC)
    never = {r["camera"]: r for r in equipment.schedule(now)}
    assert never["CAMMNT1"]["state"] == "due" and never["CAMMNT1"]["due_at"] is None  # never maintained
    assert never["CAMMNT2"]["interval_days"] == 30 and never["CAMMNT1"]["interval_days"] == 90

    equipment.record(EntryRequest("camera", "CAMMNT1", "cleaning", STAFF, performed_at=now - timedelta(days=100)), now)
    equipment.record(EntryRequest("camera", "CAMMNT2", "inspection", STAFF, performed_at=now - timedelta(days=5)), now)
    rows = equipment.schedule(now)
    assert [(r["camera"], r["state"]) for r in rows] == [("CAMMNT1", "overdue"), ("CAMMNT2", "ok")]
    assert rows[0]["overdue_days"] == 10 and rows[0]["due_at"] == "2026-05-22T00:00:00+00:00"
    # Within the due-soon window (14 days before): due.
    assert {r["camera"]: r["state"] for r in equipment.schedule(now + timedelta(days=12))}["CAMMNT2"] == "due"
    # A battery replacement is not routine maintenance: the camera stays overdue.
    equipment.record(EntryRequest("camera", "CAMMNT1", "battery_replacement", STAFF), now)
    assert equipment.schedule(now)[0]["state"] == "overdue"
