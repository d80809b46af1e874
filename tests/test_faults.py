"""Faults on a running station with simulated cameras: an open fault locks the camera out of check-out until a
repair entry closes it; the station opens faults from what it measures (a silent camera, unreadable storage,
no charge current, a battery that never gets full, a clock that keeps drifting)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from appliance import faults, inventory
from appliance.config import MaintenanceSection, load_config
from appliance.fault_detection import FaultDetector
from appliance.faults import FaultError
from appliance.maintenance import EntryRequest, MaintenanceError
from devices.volumes import StationSideError, VolumeDamaged, VolumeError
from devices.volumes.base import Finding
from tests.conftest import register_cameras, register_officers, wait_until, write_config, write_test_profile
from tests.test_checkout import A, B, C, events, ready, refused, setup, tickets

STAFF = "220001"


def camera_row(station, serial: str) -> dict:
    return station.station.db.call(lambda db: inventory.camera(db, serial))


def open_faults(station, serial: str) -> list[dict]:
    return station.station.db.call(lambda db: faults.open_faults(db, serial))


def test_open_fault_blocks_checkout_until_a_repair_entry(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMFLT1": {"battery_pct": 100}})
    register_officers(config, {"police_no": STAFF, "role": "equipment"})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMFLT1": 1})
    equipment = station.station.equipment
    service = station.station.checkout

    fault = equipment.report_fault("CAMFLT1", "wont_record", "officer", A, "录像键按下无反应")
    assert fault["status"] == "open" and camera_row(station, "CAMFLT1")["lock"]["faults"] == [fault["id"]]
    assert [e["id"] for e in events(station, "fault_opened")] == [fault["id"]]
    assert station.call(service.candidates()) == []  # a locked camera is never proposed
    caught = refused(station, service.checkout(tickets(station, A, B), bay=1))
    assert caught.code == "gate.lock" and caught.args_ == {"reason": "fault.reason.wont_record"}
    assert {"alarm.fault"} <= {a["message"] for a in station.station.alarms.active()}
    assert station.bay(1)["locked"] is True and station.bay(1)["led"] == "fault"  # never green while faulty
    sim_server.undock(1)  # moved to another bay, it is still locked there
    sim_server.dock("CAMFLT1", 3)
    wait_until(lambda: station.bay(3)["locked"] and station.bay(3)["state"] == "ready", 30, "locked in bay 3")
    assert station.bay(3)["led"] == "fault" and station.bay(1)["locked"] is False
    wait_until(lambda: station.station.bays.offload_done(3), 30, "bay 3 freed")

    # Only a repair entry lifts the lock: not the registry's unlock, not an officer, not an inspection.
    with pytest.raises(inventory.RegistryError, match="open faults"):
        station.station.db.call(lambda db: inventory.set_camera_lock(db, "CAMFLT1", None))
    with pytest.raises(MaintenanceError, match="equipment staff"):
        equipment.record(EntryRequest("camera", "CAMFLT1", "repair", C, "fixed", faults=(fault["id"],)))
    with pytest.raises(MaintenanceError, match="successful repair"):
        equipment.record(EntryRequest("camera", "CAMFLT1", "inspection", STAFF, faults=(fault["id"],)))
    with pytest.raises(MaintenanceError, match="successful repair"):
        equipment.record(EntryRequest("camera", "CAMFLT1", "repair", STAFF, result="failed", faults=(fault["id"],)))
    assert camera_row(station, "CAMFLT1")["lock"] is not None

    repair = equipment.record(EntryRequest("camera", "CAMFLT1", "repair", STAFF, "录像键更换", faults=(fault["id"],)))
    closed = station.station.db.call(lambda db: faults.get(db, fault["id"]))
    assert closed["status"] == "closed" and closed["repair"] == repair["id"] and closed["closed_by"] == STAFF
    assert camera_row(station, "CAMFLT1")["lock"] is None
    assert station.bay(3)["locked"] is False and station.bay(3)["led"] == "ready"
    assert "alarm.fault" not in {a["message"] for a in station.station.alarms.active()}
    assignment = station.call(service.checkout(tickets(station, A, B), bay=3))
    assert assignment["camera"] == "CAMFLT1"


def test_fault_on_a_hand_locked_camera_keeps_the_hand_lock(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMFLT2": {}})
    register_officers(config, {"police_no": STAFF, "role": "equipment"})
    station = start_station(cfg=config)
    db, equipment = station.station.db, station.station.equipment
    db.call(lambda d: inventory.set_camera_lock(d, "CAMFLT2", "待年检", STAFF))
    first = equipment.report_fault("CAMFLT2", "lens", "officer", A)
    second = equipment.report_fault("CAMFLT2", "other", "officer", B, "背夹断裂")
    assert camera_row(station, "CAMFLT2")["lock"]["faults"] == [first["id"], second["id"]]
    assert camera_row(station, "CAMFLT2")["lock"]["reason"] == "待年检"
    equipment.record(EntryRequest("camera", "CAMFLT2", "repair", STAFF, faults=(first["id"],)))
    assert camera_row(station, "CAMFLT2")["lock"]["faults"] == [second["id"]]
    equipment.record(EntryRequest("camera", "CAMFLT2", "repair", STAFF, faults=(second["id"],)))
    assert camera_row(station, "CAMFLT2")["lock"] == {k: v for k, v in camera_row(station, "CAMFLT2")["lock"].items()}
    assert camera_row(station, "CAMFLT2")["lock"]["reason"] == "待年检"  # staff lift their own lock
    assert "faults" not in camera_row(station, "CAMFLT2")["lock"]
    db.call(lambda d: inventory.set_camera_lock(d, "CAMFLT2", None))
    assert camera_row(station, "CAMFLT2")["lock"] is None


def test_a_hand_lock_shows_on_the_docked_bay_at_once_and_is_logged(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMFLT4": {"battery_pct": 100}})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMFLT4": 1})
    equipment = station.station.equipment
    assert station.bay(1)["led"] == "ready"
    equipment.set_lock("CAMFLT4", "待年检", STAFF)
    assert station.bay(1)["locked"] is True and station.bay(1)["led"] == "fault"  # not at the next dock: now
    assert camera_row(station, "CAMFLT4")["lock"]["by"] == STAFF
    equipment.set_lock("CAMFLT4", None, "equipment")
    assert station.bay(1)["locked"] is False and station.bay(1)["led"] == "ready"
    assert events(station, "camera_locked") == [{"camera": "CAMFLT4", "reason": "待年检", "by": STAFF}]
    assert events(station, "camera_unlocked") == [{"camera": "CAMFLT4", "by": "equipment"}]
    with pytest.raises(inventory.RegistryError, match="no camera"):
        equipment.set_lock("NOSUCH1", "x", STAFF)
    assert len(events(station, "camera_locked")) == 1  # a refusal logs nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("NOSUCH1", "lens", "officer", A, ""), "no camera"),
        (("CAMFLT3", "exploded", "officer", A, ""), "reason must be"),
        (("CAMFLT3", "unresponsive", "officer", A, ""), "reason must be"),
        (("CAMFLT3", "other", "officer", A, "  "), "describe"),
        (("CAMFLT3", "lens", "officer", A, "x" * 301), "longer"),
        (("CAMFLT3", "lens", "officer", "999999", ""), "no officer"),
    ],
)
def test_bad_reports_are_refused(tmp_path, world, sim_server, start_station, args, message) -> None:
    config = setup(tmp_path, world, {"CAMFLT3": {}})
    station = start_station(cfg=config)
    with pytest.raises(FaultError, match=message):
        station.station.equipment.report_fault(*args)
    assert open_faults(station, "CAMFLT3") == [] and camera_row(station, "CAMFLT3")["lock"] is None


def station_fault(station, serial: str, reason: str, timeout: float = 30) -> dict:
    wait_until(lambda: any(f["reason"] == reason for f in open_faults(station, serial)), timeout, f"{reason} fault")
    fault = next(f for f in open_faults(station, serial) if f["reason"] == reason)
    assert fault["source"] == "station" and camera_row(station, serial)["lock"]["faults"] == [fault["id"]]
    return fault


def test_station_opens_fault_for_a_silent_camera(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMMUTE": {"fault": "mute"}})
    station = start_station(cfg=config)
    sim_server.dock("CAMMUTE", 2)
    station.wait_bay(2, "error")
    fault = station_fault(station, "CAMMUTE", "unresponsive")
    assert fault["detail"]["bay"] == 2 and "no answer" in fault["detail"]["detail"]
    # It is reported once, however often it fails again while docked.
    station.station.equipment.flush()
    assert len(events(station, "fault_opened")) == 1


def test_no_fault_for_a_camera_pulled_out_mid_identify(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMPULL": {"fault": "mute"}})
    station = start_station(cfg=config)
    sim_server.dock("CAMPULL", 2)
    station.wait_bay(2, "error")
    sim_server.undock(2)  # taken out before the grace period ends: not a silent camera
    station.wait_bay(2, "empty")
    time.sleep(3)
    station.station.equipment.flush()
    assert open_faults(station, "CAMPULL") == []


def test_station_opens_fault_for_unreadable_storage(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMDISK": {}})
    with open(world.image_path("CAMDISK"), "r+b") as fh:  # the root directory's cluster, past the volume
        fh.seek(44)
        fh.write(struct.pack("<I", 0x0FFFFFF0))
    station = start_station(cfg=config)
    sim_server.dock("CAMDISK", 3)
    station.wait_bay(3, "error")
    assert station.bay(3)["message"] == "bay.error.storage"
    station_fault(station, "CAMDISK", "storage_error")


def test_station_opens_fault_for_a_card_whose_clusters_went_bad(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMBADC": {}})
    mark_fat_bad(world.image_path("CAMBADC"))
    station = start_station(cfg=config)
    sim_server.dock("CAMBADC", 3)
    station.wait_bay(3, "error")
    assert station.bay(3)["message"] == "bay.error.damaged"
    fault = station_fault(station, "CAMBADC", "filesystem_damaged")
    assert fault["detail"]["files"] == [{"path": "DCIM", "reason": "bad_fat_entry"}]


def mark_fat_bad(image: Path) -> None:
    """Mark every FAT32 cluster but the root directory's bad: the boot sector and free count still read, the
    folders below the root do not (what failing flash in a camera looks like to the offload)."""
    with open(image, "r+b") as fh:
        bpb = fh.read(64)
        sector, reserved, copies = struct.unpack_from("<H", bpb, 11)[0], struct.unpack_from("<H", bpb, 14)[0], bpb[16]
        fat_sectors = struct.unpack_from("<I", bpb, 36)[0]
        for n in range(copies):
            fh.seek((reserved + n * fat_sectors) * sector + 12)  # entries 0-2: media, end mark, root directory
            fh.write(struct.pack("<I", 0x0FFFFFF7) * ((fat_sectors * sector - 12) // 4))


def board_config(tmp_path: Path, world, **maintenance: float):
    profile = write_test_profile(tmp_path)
    bays = [{"number": n, "port_path": f"1-1.{n}", "dock_channel": n} for n in range(1, 5)]
    return load_config(
        write_config(
            tmp_path,
            world,
            bays=bays,
            devices={"dock_board": {"backend": "simulated"}},
            policy={"profile_file": str(profile)},
            maintenance=maintenance,
        )
    )


def test_station_opens_fault_when_a_bay_draws_no_current(tmp_path, world, sim_server, start_station) -> None:
    config = board_config(tmp_path, world, charge_zero_fault_s=3)
    world.create_camera("CAMNOCH", fs_type="vfat", size_mib=40, battery_pct=40)
    register_cameras(config, "CAMNOCH")
    sim_server.board.charge_ma = 0  # the charger runs but no current flows: a broken contact or cell
    station = start_station(cfg=config)
    sim_server.dock("CAMNOCH", 1)
    fault = station_fault(station, "CAMNOCH", "no_charge_current")
    assert fault["detail"]["bay"] == 1 and fault["detail"]["stalled_s"] >= 3


def test_station_opens_fault_when_battery_never_gets_full(tmp_path, world, sim_server, start_station) -> None:
    config = board_config(tmp_path, world, full_within_h=3 / 3600)  # 3 s: the simulator charges 2 %/s
    world.create_camera("CAMSLOW", fs_type="vfat", size_mib=40, battery_pct=10)
    register_cameras(config, "CAMSLOW")
    station = start_station(cfg=config)
    sim_server.dock("CAMSLOW", 2)
    fault = station_fault(station, "CAMSLOW", "not_full")
    assert fault["detail"]["state"] == "charging" and fault["detail"]["docked_s"] >= 3


def test_station_opens_fault_for_a_clock_that_keeps_drifting(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMRTC1": {"battery_pct": 90, "clock_offset_s": 90.0, "clock_stuck": True}})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMRTC1": 1})
    service = station.station.checkout
    for _ in range(config.maintenance.clock_drift_repeats):
        assert refused(station, service.checkout(tickets(station, A, B), bay=1)).code == "gate.clock"
    fault = station_fault(station, "CAMRTC1", "clock_drift", timeout=10)
    assert abs(fault["detail"]["clock"]["before_s"]) > 5  # logged with the fault
    assert refused(station, service.checkout(tickets(station, A, B), bay=1)).code == "gate.lock"
    watched = json.loads((config.state_dir / "state.json").read_text())["fault_watch"]
    assert [r["clock_drift_in_a_row"] for r in watched.values()] == [4]  # the locked gate still read it


def test_officer_report_at_checkin_names_the_last_holders(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMBACK": {"battery_pct": 100}})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMBACK": 1})
    assignment = station.call(station.station.checkout.checkout(tickets(station, A, B), bay=1))
    sim_server.undock(1)
    sim_server.dock("CAMBACK", 2)
    wait_until(lambda: events(station, "checkin"), 20, "check-in")
    fault = station.station.equipment.report_at_checkin("CAMBACK", "damaged", "摔落，外壳开裂")
    assert fault["by"] == A and fault["detail"] == {"assignment": assignment["id"], "officers": [A, B]}


def test_no_fault_for_a_serial_mismatch(tmp_path, world, sim_server, start_station) -> None:
    """A camera whose identity does not match its registration raises an alarm (possible tampering); it is
    not a silent camera, and the registered camera is not the one to lock."""
    config = setup(tmp_path, world, {})
    world.create_camera("CAMWHO2", fs_type="vfat", size_mib=40)
    register_cameras(config, "CAMWHO1", usb_serial="CAMWHO2")  # the registry says this USB serial is CAMWHO1
    station = start_station(cfg=config)
    sim_server.dock("CAMWHO2", 1)
    station.wait_bay(1, "error")
    assert {"alarm.serial_mismatch"} <= {a["message"] for a in station.station.alarms.active()}
    time.sleep(3)
    station.station.equipment.flush()
    assert station.station.db.call(faults.open_faults) == []


@pytest.mark.parametrize(
    ("exc", "opened"),
    [
        (VolumeError("/dev/sda: no recognisable filesystem (blank, corrupted or truncated)"), "storage_error"),
        (VolumeDamaged([Finding("DCIM/A.MP4", "chain_loop", "the chain comes back")]), "filesystem_damaged"),
        (StationSideError("/dev/sda: cannot probe filesystem: blkid: error: /dev/sda: Permission denied"), None),
        (StationSideError("mount helper at /run/recterm-mount.sock: [Errno 111] Connection refused"), None),
    ],
)
def test_only_the_cameras_own_storage_errors_open_a_fault(exc, opened) -> None:
    """A card that cannot be read, or holds damaged files, is the camera's fault; a node the station may not
    open, or a mount helper that does not answer, is the station's: an error on the bay, no lock-out."""
    reported: list[tuple[str, str, dict]] = []
    detector = FaultDetector(
        MaintenanceSection(), 60.0, lambda camera, reason, detail: reported.append((camera, reason, detail)), {}.get
    )
    detector.observe("identify", 1, {"camera": "CAMDISK"})
    detector.observe("error", 1, {"camera": "CAMDISK", "error": "bay.error.storage", "exception": exc})
    assert [(c, r) for c, r, _ in reported] == ([("CAMDISK", opened)] if opened else [])
    if opened == "filesystem_damaged":
        assert reported[0][2]["files"] == [{"path": "DCIM/A.MP4", "reason": "chain_loop"}]
