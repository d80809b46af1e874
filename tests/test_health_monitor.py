"""Health checks at work: verdicts become alarms and log entries, from the simulator's own signals."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.alarms import AlarmBoard
from appliance.config import load_config
from appliance.eventlog import EventLog, Signer
from appliance.health.charge_current import ChargeCurrentCheck
from appliance.health.monitor import SIM_KERNEL_LOG, HealthMonitor, file_kernel_log
from appliance.health.unresponsive import UnresponsiveCameras
from devices.dock.base import ChannelStatus, ChargeState
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from tests.conftest import register_cameras, wait_until, write_config
from tests.test_kiosk import staff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def logged(log_dir: Path, kind: str) -> list[dict]:
    lines = (log_dir / "entries.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == kind]


def make_monitor(tmp_path: Path, clock: Clock, kernel_log=None) -> tuple[HealthMonitor, AlarmBoard, EventLog]:
    events = EventLog(tmp_path / "log", origin="test/events", signer=Signer("test", Ed25519PrivateKey.generate()))
    alarms = AlarmBoard(events)
    monitor = HealthMonitor(
        {"1-1.1": 1, "1-1.3": 3},
        events,
        alarms,
        None,
        kernel_log,
        None,
        ChargeCurrentCheck(warn_after_s=60, fail_after_s=300),
        UnresponsiveCameras(warn_after_s=60, fail_after_s=300, clock=clock),
        clock=clock,
    )
    return monitor, alarms, events


def channel(present: bool, state: str, ma: int) -> ChannelStatus:
    return ChannelStatus(channel=1, present=present, charge_state=ChargeState(state), current_ma=ma, usb_power=True)


def test_a_bay_that_stops_charging_raises_an_alarm_and_clears_it_when_charging_resumes(tmp_path: Path) -> None:
    clock = Clock()
    monitor, alarms, events = make_monitor(tmp_path, clock)
    try:
        for _ in range(7):  # a camera at 40 % drawing nothing, polled every minute
            monitor.observe_board([channel(True, "idle", 0)], {1: 1}, {1: 40})
            monitor.run_checks()
            clock.now += 60
        assert {a["key"] for a in alarms.active()} == {"health:charge_current"}
        assert [r["status"] for r in monitor.results() if r["check"] == "charge_current"] == ["fail"]
        monitor.observe_board([channel(True, "charging", 450)], {1: 1}, {1: 41})
        monitor.run_checks()
        assert alarms.active() == []
        # One log entry per change of verdict, not one per run: ok -> warn -> fail -> ok.
        verdicts = [
            e["body"]["status"] for e in logged(tmp_path / "log", "health") if e["body"]["check"] == "charge_current"
        ]
        assert verdicts == ["ok", "warn", "fail", "ok"]
    finally:
        events.close()


def test_a_full_camera_drawing_no_current_is_not_a_fault(tmp_path: Path) -> None:
    clock = Clock()
    monitor, alarms, events = make_monitor(tmp_path, clock)
    try:
        for _ in range(10):
            monitor.observe_board([channel(True, "full", 0)], {1: 1}, {1: None})
            monitor.observe_board([channel(False, "idle", 0)], {2: 2}, {})
            clock.now += 60
        monitor.run_checks()
        assert {r["check"]: r["status"] for r in monitor.results()}["charge_current"] == "ok"
        assert alarms.active() == []
    finally:
        events.close()


def test_repeated_enumeration_failures_in_the_kernel_log_fail_that_bay(tmp_path: Path, world: SimWorld) -> None:
    monitor, alarms, events = make_monitor(tmp_path, Clock(), file_kernel_log(world.root / SIM_KERNEL_LOG))
    try:
        monitor.run_checks()  # no log file yet: nothing wrong
        assert {r["check"]: r["status"] for r in monitor.results()}["usb_enumeration"] == "ok"
        world.worn_contacts(3)
        monitor.run_checks()
        result = next(r for r in monitor.results() if r["check"] == "usb_enumeration")
        assert result["status"] == "warn" and result["details"]["bays"]["3"]["failures"] == 1
        world.worn_contacts(3)
        monitor.run_checks()
        assert next(r for r in monitor.results() if r["check"] == "usb_enumeration")["status"] == "fail"
        assert [a["message"] for a in alarms.active()] == ["alarm.health.usb_enumeration"]
    finally:
        events.close()


def test_a_docked_camera_that_stops_answering_is_reported_by_the_station(
    world: SimWorld, sim_server: SimServer, tmp_path: Path, start_station
) -> None:
    path = write_config(
        tmp_path,
        world,
        devices={"battery_poll_s": 0.1},
        health={"interval_s": 0.2, "camera_silent_warn_s": 8, "camera_silent_fail_s": 12},
    )
    config = load_config(path)
    world.create_camera("CAMHLT1", fs_type="vfat", size_mib=40, clips=1, battery_pct=50)
    register_cameras(config, "CAMHLT1")
    station = start_station(serve_web=True, cfg=config)
    http = staff(station).__enter__()  # equipment staff, signed in to the LAN UI (closed at the end)
    request = http.get

    def health_alarms() -> set[str]:  # other alarms (e.g. the calendar's) are not this test's business
        return {a["key"] for a in request("/api/alarms").json() if a["key"].startswith("health:")}

    sim_server.dock("CAMHLT1", 1)
    station.wait_bay(1, "ready")
    wait_until(
        lambda: (
            {r["check"]: r["status"] for r in request("/api/health/checks").json()}.get("camera_unresponsive") == "ok"
        ),
        20,
        "health verdicts",
    )
    time.sleep(10)  # battery polls every housekeeping pass keep an answering camera fresh past the warn mark
    assert health_alarms() == set()
    camera = world.load("CAMHLT1")
    camera.fault = "mute"
    world.save(camera)
    wait_until(lambda: health_alarms() == {"health:camera_unresponsive"}, 60, "silent camera alarm")
    checks = {r["check"]: r for r in request("/api/health/checks").json()}
    assert checks["camera_unresponsive"]["status"] == "fail"
    assert "1" in checks["camera_unresponsive"]["details"]["silent_s"]
    assert "throttling" not in checks  # a simulated station has no Pi firmware to ask
    sim_server.undock(1)  # the camera leaves: nothing left to be silent
    wait_until(lambda: health_alarms() == set(), 20, "alarm cleared")
    http.__exit__(None, None, None)
