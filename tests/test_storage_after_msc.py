"""Cameras that show their storage on the bus only after MSC (many real ones; QEMU's hub camera in make
image-test shows its serial port first too): the station waits for the storage and offloads it, without a
spurious undock, error or fault; one whose storage never shows is an error after devices.storage_timeout_s."""

from __future__ import annotations

import json

from appliance import faults
from appliance.config import load_config
from tests.conftest import register_cameras, wait_until, write_config


def events(station, type_: str) -> list[dict]:
    lines = (station.config.log_dir / "entries.jsonl").read_text().splitlines()
    return [e["body"] for e in map(json.loads, lines) if e["type"] == type_]


def late_camera(world, serial: str, fault: str | None = None) -> None:
    world.create_camera(serial, fs_type="vfat", size_mib=40, clips=2)
    camera = world.load(serial)
    camera.storage_after_msc, camera.fault = True, fault
    world.save(camera)


def test_storage_that_shows_after_msc_is_offloaded(tmp_path, world, sim_server, start_station) -> None:
    late_camera(world, "CAMMSC1")
    config = load_config(write_config(tmp_path, world))
    register_cameras(config, "CAMMSC1")
    station = start_station(cfg=config)
    sim_server.dock("CAMMSC1", 1)
    wait_until(lambda: station.station.bays.offload_done(1), 60, "bay 1 offloaded and freed")
    assert len(events(station, "ingest")) == 2
    assert [e["bay"] for e in events(station, "dock")] == [1]  # the storage showing is not a re-dock
    assert events(station, "undock") == [] and events(station, "bay_error") == []
    assert station.station.db.call(lambda db: faults.open_faults(db, "CAMMSC1")) == []


def test_storage_that_never_shows_is_an_error_after_the_timeout(tmp_path, world, sim_server, start_station) -> None:
    late_camera(world, "CAMMSC2", fault="no_storage")
    config = load_config(write_config(tmp_path, world, devices={"storage_timeout_s": 2}))
    register_cameras(config, "CAMMSC2")
    station = start_station(cfg=config)
    sim_server.dock("CAMMSC2", 1)
    wait_until(lambda: station.bay(1)["message"] == "bay.waiting_storage", 30, "waiting for the storage")
    assert events(station, "bay_error") == []  # waiting is not an error yet
    station.wait_bay(1, "error", timeout=30)
    [error] = events(station, "bay_error")
    assert error["error"] == "bay.error.storage" and "no storage 2 s after MSC" in error["detail"]
    assert events(station, "ingest") == []
