"""Officer and camera registries: validation, PIN hashes, CSV import/export with per-row errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import inventory, registry_csv
from appliance.pins import hash_pin, verify_pin
from appliance.state.db import StateDB

OFFICERS_CSV = """police_no,name,unit_code,unit_name,card,role,active,pin
110001,张伟,330100000001,综合行政执法大队,CARD110001,officer,true,0001
110002,王芳,330100000001,综合行政执法大队,CARD110002,equipment,是,2468
110003,李娜,330100000001,综合行政执法大队,,officer,false,
"""

CAMERAS_CSV = """serial,usb_serial,model,vendor,driver,status,bitrate_mbps,password,lock
ZFY0001,ZFY0001,DSJ-S1,SIMCAM,serial,in_service,8,000000,
ZFY0002,USB-0002,DSJ-S2,SIMCAM,scsi:generic_zfy,maintenance,12.5,123456,lens cracked
"""


@pytest.fixture
def db(tmp_path: Path):
    state = StateDB(tmp_path / "state.json")
    yield state
    state.close()


def test_pin_hash_verifies_only_the_right_pin() -> None:
    stored = hash_pin("2468")
    assert stored.startswith("scrypt$14$8$1$") and "2468" not in stored
    assert verify_pin("2468", stored)
    assert not verify_pin("2469", stored)
    assert not verify_pin("2468", None)
    assert not verify_pin("2468", "scrypt$14$8$1$bad$bad")
    assert hash_pin("2468") != stored  # salted


def test_officer_validation_names_the_field(db: StateDB) -> None:
    with pytest.raises(inventory.RegistryError, match="police_no: must be 6"):
        db.call(lambda t: inventory.upsert_officer(t, "12", name="x", unit_code="1", unit_name="u"))
    with pytest.raises(inventory.RegistryError, match="name: at most 32 bytes"):
        db.call(lambda t: inventory.upsert_officer(t, "110001", name="张" * 17, unit_code="1", unit_name="u"))
    with pytest.raises(inventory.RegistryError, match="role: must be one of"):
        db.call(lambda t: inventory.upsert_officer(t, "110001", name="张", unit_code="1", unit_name="u", role="boss"))
    db.call(lambda t: inventory.upsert_officer(t, "110001", name="张伟", unit_code="1", unit_name="u", card="C0001"))
    with pytest.raises(inventory.RegistryError, match="card: already issued to officer 110001"):
        db.call(lambda t: inventory.upsert_officer(t, "110002", name="王", unit_code="1", unit_name="u", card="C0001"))
    assert db.call(lambda t: inventory.officer_by_card(t, "C0001"))["name"] == "张伟"


def test_camera_lock_flag(db: StateDB) -> None:
    db.call(lambda t: inventory.upsert_camera(t, "ZFY0001", model="DSJ-S1"))
    locked = db.call(lambda t: inventory.set_camera_lock(t, "ZFY0001", "lens cracked", by="110012"))
    assert locked["lock"]["reason"] == "lens cracked" and locked["model"] == "DSJ-S1"
    assert db.call(lambda t: inventory.set_camera_lock(t, "ZFY0001", None))["lock"] is None
    with pytest.raises(inventory.RegistryError, match="no camera ZFY9999"):
        db.call(lambda t: inventory.set_camera_lock(t, "ZFY9999", "x"))


def test_csv_round_trip_keeps_every_field_and_pin(db: StateDB) -> None:
    assert db.call(lambda t: registry_csv.import_officers(t, OFFICERS_CSV)) == 3
    assert db.call(lambda t: registry_csv.import_cameras(t, CAMERAS_CSV)) == 2
    officers = db.call(inventory.officers)
    assert [o["police_no"] for o in officers] == ["110001", "110002", "110003"]
    assert officers[1]["role"] == "equipment" and officers[1]["active"] is True and officers[2]["active"] is False
    assert verify_pin("2468", officers[1]["pin_hash"]) and officers[2]["pin_hash"] is None
    cameras = db.call(inventory.cameras)
    assert cameras[1]["lock"]["reason"] == "lens cracked" and cameras[1]["bitrate_mbps"] == 12.5

    officers_out = db.call(registry_csv.export_officers)
    cameras_out = db.call(registry_csv.export_cameras)
    assert officers_out.startswith("\ufeffpolice_no,") and "2468" not in officers_out  # hashes, not PINs

    other = StateDB(db._db.storage.path.with_name("other.json"))  # type: ignore[attr-defined]
    try:
        other.call(lambda t: registry_csv.import_officers(t, officers_out))
        other.call(lambda t: registry_csv.import_cameras(t, cameras_out))
        assert other.call(inventory.officers) == officers
        again = other.call(inventory.cameras)
        assert [{**c, "lock": c["lock"] and c["lock"]["reason"]} for c in again] == [
            {**c, "lock": c["lock"] and c["lock"]["reason"]} for c in cameras
        ]
        assert other.call(registry_csv.export_officers) == officers_out
        assert other.call(registry_csv.export_cameras) == cameras_out
    finally:
        other.close()


def test_reimport_is_idempotent_and_empty_pin_keeps_the_pin(db: StateDB) -> None:
    db.call(lambda t: registry_csv.import_officers(t, OFFICERS_CSV))
    before = db.call(inventory.officers)
    no_pins = OFFICERS_CSV.replace(",0001\n", ",\n").replace(",2468\n", ",\n")
    db.call(lambda t: registry_csv.import_officers(t, no_pins))
    assert db.call(inventory.officers) == before


def test_bad_csv_is_refused_whole_with_an_error_per_row(db: StateDB) -> None:
    bad = (
        "police_no,name,unit_code,unit_name,card,role,active,pin\n"
        "110001,张伟,330100000001,综合行政执法大队,CARD110001,officer,true,0001\n"
        "11,王芳,330100000001,综合行政执法大队,,officer,true,\n"
        "110003,李娜,330100000001,综合行政执法大队,,chief,true,\n"
        "110004,刘洋,330100000001,综合行政执法大队,,officer,maybe,\n"
        "110005,陈静,330100000001,综合行政执法大队,,officer,true,12\n"
        "110001,张伟,330100000001,综合行政执法大队,,officer,true,\n"
        "110006,杨磊,330100000001,综合行政执法大队,CARD110001,officer,true,\n"
    )
    with pytest.raises(registry_csv.CsvImportError) as caught:
        db.call(lambda t: registry_csv.import_officers(t, bad))
    assert caught.value.errors == [
        "row 3: police_no: must be 6 letters or digits",
        "row 4: role: must be one of officer, equipment, admin",
        "row 5: active: must be true or false (是/否)",
        "row 6: pin: PIN must be 4 to 8 digits",
        "row 7: police_no: 110001 already on row 2",
        "row 8: card: CARD110001 already on row 2",
    ]
    assert db.call(inventory.officers) == []  # nothing written, not even the good row


def test_bad_header_and_clash_with_registry(db: StateDB) -> None:
    with pytest.raises(registry_csv.CsvImportError, match="unknown column 'badge'"):
        db.call(lambda t: registry_csv.import_officers(t, "police_no,name,unit_code,unit_name,badge\n"))
    with pytest.raises(registry_csv.CsvImportError, match="missing column 'serial'"):
        db.call(lambda t: registry_csv.import_cameras(t, "model\nDSJ\n"))
    with pytest.raises(registry_csv.CsvImportError, match="file is empty"):
        db.call(lambda t: registry_csv.import_cameras(t, ""))
    db.call(lambda t: inventory.upsert_camera(t, "ZFY0009", usb_serial="USB-0002"))
    with pytest.raises(registry_csv.CsvImportError, match="usb_serial USB-0002 already belongs to ZFY0009"):
        db.call(lambda t: registry_csv.import_cameras(t, CAMERAS_CSV))
    assert [c["serial"] for c in db.call(inventory.cameras)] == ["ZFY0009"]
