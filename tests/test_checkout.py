"""Check-out service on a running station with simulated cameras: the gate (each check refuses on its own),
the pair rule, one camera per officer, the hand-out, check-in by docking, overdue alarms, the ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tinydb import Query

from appliance import inventory
from appliance.checkout import CheckoutRefused
from appliance.ledger import fleet_ratio, ledger, ledger_csv
from appliance.offload import RECORDINGS
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from tests.conftest import checkout_config, register_cameras, register_officers, wait_until

A, B, C = "110001", "110002", "110003"


def events(station, type_: str) -> list[dict]:
    lines = (station.config.log_dir / "entries.jsonl").read_text().splitlines()
    return [e["body"] for e in map(json.loads, lines) if e["type"] == type_]


def setup(tmp_path: Path, world: SimWorld, cameras: dict[str, dict], officers=(A, B, C), **overrides):
    config = checkout_config(tmp_path, world, **overrides)
    for serial, attrs in cameras.items():
        registry = attrs.pop("registry", {})
        world.create_camera(serial, fs_type="vfat", size_mib=40, clips=1, **attrs)
        register_cameras(config, serial, **registry)
    register_officers(config, *({"police_no": p} for p in officers))
    return config


def ready(station, sim_server: SimServer, docks: dict[str, int]) -> None:
    for serial, bay in docks.items():
        sim_server.dock(serial, bay)
    for bay in docks.values():
        station.wait_bay(bay, "ready")
        wait_until(lambda b=bay: station.station.bays.offload_done(b), 60, f"bay {bay} freed")


def tickets(station, *police_nos: str) -> list[str]:
    service = station.station.checkout
    return [station.call(service.identify(card=f"CARD{p}"))["ticket"] for p in police_nos]


def refused(station, coro) -> CheckoutRefused:
    with pytest.raises(CheckoutRefused) as caught:
        station.call(coro)
    return caught.value


def test_full_checkout_then_checkin_by_docking(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMOK01": {"battery_pct": 90}})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMOK01": 2})
    service = station.station.checkout

    proposals = station.call(service.candidates())
    assert [p["bay"] for p in proposals] == [2]
    pin_ticket = station.call(service.identify(police_no=B, pin=B[-4:]))
    assignment = station.call(service.checkout([tickets(station, A)[0], pin_ticket["ticket"]]))
    assert assignment["camera"] == "CAMOK01" and assignment["bay"] == 2 and assignment["status"] == "issued"
    assert [o["police_no"] for o in assignment["officers"]] == [A, B]
    assert {r["check"] for r in assignment["readings"]} == {
        "lock", "status", "offload", "identity", "model", "firmware", "battery", "storage_gb", "storage_hours", "clock",
    }  # fmt: skip
    assert all(r["ok"] for r in assignment["readings"])
    # The officer record is on the camera, the bay shows "take it", the event log has every reading.
    assert world.load("CAMOK01").officer == {
        "serial": "CAMOK01", "police_no": A, "name": f"警员{A}", "unit_code": "330100000001", "unit_name": "执法大队",
    }  # fmt: skip
    bay = station.bay(2)
    assert bay["led"] == "take" and bay["checkout"]["assignment"] == assignment["id"]
    logged = events(station, "checkout")
    assert logged[-1]["assignment"] == assignment["id"] and len(logged[-1]["readings"]) == 10

    sim_server.undock(2)  # the officers take it
    station.wait_bay(2, "empty")
    wait_until(lambda: (station.bay(2)["checkout"] or {}).get("phase") == "out", 10, "taken")
    assert station.bay(2)["led"] == "checked_out"

    made = {r.camera_path for r in world.record("CAMOK01", 2)}  # on duty
    sim_server.dock("CAMOK01", 4)  # returned into another bay: check-in, never refused
    wait_until(lambda: station.bay(2)["checkout"] is None, 20, "check-in")
    # The recordings made on duty carry the pair: in the state, the object key part and the signed manifest.
    wait_until(lambda: station.station.bays.offload_done(4), 60, "the returned camera offloaded")
    rows = station.station.db.call(lambda db: db.table(RECORDINGS).search(Query().camera_path.one_of(list(made))))
    assert len(rows) == 2 and {r["assignment"] for r in rows} == {assignment["id"]}
    assert all(r["officers"] == [A, B] and r["officer"] == f"{A}+{B}" for r in rows)
    body = json.loads((station.config.store_dir / rows[0]["manifest"]).read_bytes())
    assert [o["police_no"] for o in body["officers"]] == [A, B]
    rows = station.station.db.call(lambda db: ledger(db, station.station.checkout.calendar.tz))
    assert rows[-1]["status"] == "returned" and rows[-1]["return_bay"] == 4 and rows[-1]["taken_at"]
    assert events(station, "checkin")[-1]["issued_bay"] == 2
    csv_text = ledger_csv(rows, station.station.checkout.calendar.tz)
    assert csv_text.splitlines()[1].split(",")[3] == f"{A};{B}"


GATE_CASES = {
    # name: (camera attrs, config overrides, expected message, expected args subset)
    "battery": ({"battery_pct": 90}, {}, "gate.battery", {"min": "50"}),
    "storage_gb": ({"battery_pct": 90}, {"profile": {"min_free_gib": 1}}, "gate.storage_gb", {"min": "1"}),
    "storage_hours": (
        {"battery_pct": 90, "registry": {"bitrate_mbps": 100}},
        {},
        "gate.storage_hours",
        {"mbps": "100"},
    ),
    "clock": ({"battery_pct": 90, "clock_offset_s": 120, "clock_stuck": True}, {}, "gate.clock", {"max": "5"}),
    "lock": ({"battery_pct": 90}, {}, "gate.lock", {"reason": "lens cracked"}),
    "status": ({"battery_pct": 90, "registry": {"status": "maintenance"}}, {}, "gate.status", {}),
    "model": ({"battery_pct": 90, "registry": {"model": "DSJ-X9"}}, {}, "gate.model", {"model": "DSJ-S1"}),
    "firmware": ({"battery_pct": 90}, {"checkout": {"allowed_firmware": {"DSJ-S1": ["2.0.0"]}}}, "gate.firmware", {}),
    "offload": ({"battery_pct": 90}, {"offload": {"reserve_gib": 1_000_000}}, "gate.offload", {}),
}


@pytest.mark.parametrize("case", list(GATE_CASES))
def test_gate_refuses_each_failed_check(case, tmp_path, world, sim_server, start_station) -> None:
    attrs, overrides, message, args = GATE_CASES[case]
    config = setup(tmp_path, world, {"CAMGATE": dict(attrs)}, **overrides)
    station = start_station(cfg=config)
    sim_server.dock("CAMGATE", 1)
    if case == "offload":  # the store is "full": the camera is never offloaded, so never handed out
        station.wait_bay(1, "error")
    else:
        station.wait_bay(1, "ready")
        wait_until(lambda: station.station.bays.offload_done(1), 60, "freed")
    if case == "battery":
        world.set_battery("CAMGATE", 12)
    if case == "lock":
        station.station.db.call(lambda db: inventory.set_camera_lock(db, "CAMGATE", "lens cracked", by="110012"))
    error = refused(station, station.station.checkout.checkout(tickets(station, A, B), bay=1))
    assert error.code == message and args.items() <= error.args_.items()
    failed = [r["check"] for r in error.readings if not r["ok"]]
    assert failed[0] == case
    assert world.load("CAMGATE").officer is None  # nothing written to the camera
    assert station.bay(1)["checkout"] is None and station.bay(1)["led"] != "take"
    assert events(station, "checkout_refused")[-1]["failed"] == message
    assert events(station, "checkout") == []
    # Refusal keeps the tickets: the same pair may take another camera; they hold none.
    assert station.call(station.station.checkout.candidates((1,))) == []


def test_clock_drift_is_synced_then_passes(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMCLK1": {"battery_pct": 90, "clock_offset_s": -3600}})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMCLK1": 1})
    assignment = station.call(station.station.checkout.checkout(tickets(station, A, B)))
    clock = next(r for r in assignment["readings"] if r["check"] == "clock")
    assert clock["value"]["before_s"] < -3500 and abs(clock["value"]["after_sync_s"]) <= 5


def test_refusal_offers_the_next_best_camera(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMBST1": {"battery_pct": 95}, "CAMBST2": {"battery_pct": 70}})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMBST1": 1, "CAMBST2": 3})
    service = station.station.checkout
    assert [p["serial"] for p in station.call(service.candidates())] == ["CAMBST1", "CAMBST2"]
    world.set_battery("CAMBST1", 5)  # its battery died since it docked: the view still says 95 %
    pair = tickets(station, A, B)
    error = refused(station, service.checkout(pair))
    assert error.code == "gate.battery" and error.bay == 1
    assert error.alternative is not None and error.alternative["bay"] == 3
    assignment = station.call(service.checkout(pair, bay=error.alternative["bay"]))
    assert assignment["camera"] == "CAMBST2"


def test_pair_rule_and_one_camera_per_officer(tmp_path, world, sim_server, start_station) -> None:
    config = setup(
        tmp_path,
        world,
        {"CAMPR01": {"battery_pct": 90}, "CAMPR02": {"battery_pct": 90}},
        officers=(A, B, C, "110004"),
    )
    register_officers(config, {"police_no": "110009", "active": False})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMPR01": 1, "CAMPR02": 2})
    service = station.station.checkout

    assert refused(station, service.checkout(tickets(station, A))).code == "checkout.error.need_officers"
    same = tickets(station, A)[0]
    assert refused(station, service.checkout([same, same])).code == "checkout.error.same_officer"
    assert refused(station, service.checkout(["forged", same])).code == "checkout.error.ticket"
    assert refused(station, service.identify(card="CARD110009")).code == "checkout.error.inactive"
    assert refused(station, service.identify(card="NOSUCHCARD")).code == "checkout.error.unknown_card"
    assert refused(station, service.identify(police_no=A, pin="9999")).code == "checkout.error.bad_pin"

    pair = tickets(station, A, B)
    first = station.call(service.checkout(pair))
    assert refused(station, service.checkout(pair)).code == "checkout.error.ticket"  # used up
    error = refused(station, service.checkout(tickets(station, B, C)))
    assert error.code == "checkout.error.holds_camera" and error.args_["serial"] == first["camera"]
    assert station.call(service.identify(card=f"CARD{A}"))["holding"] == first["camera"]
    second = station.call(service.checkout(tickets(station, C, "110004")))
    assert {first["camera"], second["camera"]} == {"CAMPR01", "CAMPR02"}


def test_single_officer_when_the_profile_allows(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMSGL1": {"battery_pct": 90}})
    profile = config.policy.profile_file
    assert profile is not None
    profile.write_text(
        profile.read_text().replace("[allow_single_officer]\nvalue = false", "[allow_single_officer]\nvalue = true")
    )
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMSGL1": 1})
    assert station.call(station.station.checkout.checkout(tickets(station, A)))["officers"][0]["police_no"] == A


def test_overdue_alarm_until_the_camera_is_back(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMDUE1": {"battery_pct": 90}})
    station = start_station(cfg=config)
    ready(station, sim_server, {"CAMDUE1": 1})
    service = station.station.checkout
    assignment = station.call(service.checkout(tickets(station, A, B)))
    due = datetime.fromisoformat(assignment["due_at"])
    assert due <= datetime.fromisoformat(assignment["issued_at"]) + timedelta(hours=12)
    sim_server.undock(1)
    wait_until(lambda: (station.bay(1)["checkout"] or {}).get("phase") == "out", 10, "taken")
    assert service.check_overdue(due - timedelta(minutes=1)) == []
    late = service.check_overdue(due + timedelta(minutes=1))
    assert [r["id"] for r in late] == [assignment["id"]]
    assert "overdue:CAMDUE1" in {a["key"] for a in station.station.alarms.active()}
    sim_server.dock("CAMDUE1", 1)
    wait_until(lambda: "overdue:CAMDUE1" not in {a["key"] for a in station.station.alarms.active()}, 20, "cleared")


def test_ledger_filters_and_fleet_ratio(tmp_path) -> None:
    from zoneinfo import ZoneInfo

    from appliance.policy import load_profile
    from appliance.state.db import StateDB

    db = StateDB(tmp_path / "state.json")
    tz = ZoneInfo("Asia/Shanghai")
    try:

        def seed(tdb):
            for n in range(1, 6):
                inventory.upsert_officer(tdb, f"11000{n}", name=f"警员{n}", unit_code="1", unit_name="u")
            inventory.upsert_officer(tdb, "110006", name="x", unit_code="1", unit_name="u", active=False)
            inventory.upsert_camera(tdb, "ZFY0001")
            inventory.upsert_camera(tdb, "ZFY0002", status="maintenance")
            base = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
            for day, camera, officers in ((0, "ZFY0001", ["110001", "110002"]), (2, "ZFY0002", ["110003", "110001"])):
                issued = base + timedelta(days=day)
                tdb.table("assignments").insert(
                    {
                        "id": f"a{day}", "camera": camera, "bay": 1,
                        "officers": [{"police_no": p, "name": p} for p in officers],
                        "issued_at": issued.isoformat(), "due_at": (issued + timedelta(hours=12)).isoformat(),
                        "taken_at": issued.isoformat(), "returned_at": (issued + timedelta(hours=3)).isoformat(),
                        "return_bay": 2, "status": "returned",
                    }
                )  # fmt: skip

        db.call(seed)
        assert [r["id"] for r in db.call(lambda t: ledger(t, tz, police_no="110001"))] == ["a0", "a2"]
        assert [r["id"] for r in db.call(lambda t: ledger(t, tz, camera="ZFY0002"))] == ["a2"]
        from datetime import date

        assert [r["id"] for r in db.call(lambda t: ledger(t, tz, since=date(2026, 11, 21)))] == ["a2"]
        assert [r["id"] for r in db.call(lambda t: ledger(t, tz, until=date(2026, 11, 21)))] == ["a0"]
        text = ledger_csv(db.call(lambda t: ledger(t, tz)), tz)
        assert "2026-11-20T09:00:00+08:00" in text and ",180," in text

        ratio = db.call(lambda t: fleet_ratio(t, load_profile("003")))
        assert ratio == {
            "officers": 5, "cameras": 1, "ratio": 5.0, "standard": 2, "cite": "003 Art. 15",
            "meets_standard": False, "cameras_needed": 3, "shortfall": 2,
        }  # fmt: skip
    finally:
        db.close()


def test_latch_opens_and_led_shows_the_bay_on_gpio(tmp_path, world, sim_server, start_station) -> None:
    from gpiozero import Device

    from devices.gpio.base import LedState
    from tests.test_station_devices import PINS

    bays = [
        {"number": n, "port_path": f"1-1.{n}", "gpio": {"red": r, "green": g, "blue": b, "latch": latch}}
        for n, (r, g, b, latch) in PINS.items()
    ]
    config = setup(tmp_path, world, {"CAMGPIO": {"battery_pct": 90}}, bays=bays, devices={"gpio": {"backend": "mock"}})
    station = start_station(cfg=config)
    try:
        ready(station, sim_server, {"CAMGPIO": 3})
        indicators = station.station.indicators
        latch_pin = indicators._latches[3].pin  # gpiozero's mock pin keeps its history
        assert all(s.state == 0 for s in latch_pin.states)
        assert indicators.led_state(3) is not LedState.TAKE
        station.call(station.station.checkout.checkout(tickets(station, A, B)))
        assert 1 in [s.state for s in latch_pin.states]  # the solenoid was energised
        wait_until(lambda: latch_pin.state == 0, 10, "latch pulse over")
        assert indicators.led_state(3) is LedState.TAKE
        assert all(indicators.led_state(n) is not LedState.TAKE for n in (1, 2, 4))  # only that bay
        sim_server.undock(3)
        wait_until(lambda: indicators.led_state(3) is LedState.CHECKED_OUT, 20, "on-duty light")
    finally:
        Device.pin_factory = None
