"""Cameras that show their storage on the bus only after MSC (many real ones; QEMU's hub camera in make
image-test shows its serial port first too): the station waits for the storage and offloads it, without a
spurious undock, error or fault; one whose storage never shows is an error after devices.storage_timeout_s."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from appliance import faults
from appliance.bays import _storage_appeared
from appliance.config import load_config
from devices.hotplug.base import DockedDevice, UsbIds
from devices.volumes import PartitionsPending, StationSideError, VolumeError, detect
from devices.volumes.detect import probe_fs_type
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


def test_a_disk_seen_before_its_partitions_is_waited_for(tmp_path, world, sim_server, start_station, caplog) -> None:
    """The scan may catch a partitioned disk before the kernel has listed its partitions: probing it finds a
    partition table, not a filesystem. The bay waits for the partition and offloads it, without an error."""
    caplog.set_level(logging.INFO, logger="appliance.bays")
    late_camera(world, "CAMPART")
    camera = world.load("CAMPART")
    camera.partitions_after_s = 2.0
    world.save(camera)
    config = load_config(write_config(tmp_path, world))
    register_cameras(config, "CAMPART")
    station = start_station(cfg=config)
    sim_server.dock("CAMPART", 1)
    wait_until(lambda: station.station.bays.offload_done(1), 60, "bay 1 offloaded and freed")
    assert len(events(station, "ingest")) == 2
    assert [e["bay"] for e in events(station, "dock")] == [1]  # the partition showing is not a re-dock
    assert events(station, "undock") == [] and events(station, "bay_error") == []
    assert "sda: a partitioned disk (dos)" in caplog.text  # the whole disk was probed before the partition showed


def test_a_probe_tells_a_partition_table_from_a_blank_disk(tmp_path) -> None:
    disk = tmp_path / "sda"
    with disk.open("wb") as f:
        f.truncate(8 << 20)
    with pytest.raises(VolumeError, match="no recognisable filesystem") as blank:
        probe_fs_type(disk)
    assert not isinstance(blank.value, PartitionsPending)
    subprocess.run(["sfdisk", "--quiet", str(disk)], input="start=2048, type=c\n", text=True, check=True)
    with pytest.raises(PartitionsPending, match=r"partitioned disk \(dos\)"):
        probe_fs_type(disk)


@pytest.mark.parametrize(
    ("before", "after", "appeared"),
    [
        (None, "/dev/sda1", True),
        (None, "/dev/sda", True),
        ("/dev/sda", "/dev/sda1", True),
        ("/dev/mmcblk0", "/dev/mmcblk0p1", True),
        ("/dev/sda", "/dev/sdb1", False),  # another disk: a re-enumeration, not a partition showing
        ("/dev/sda1", "/dev/sda", False),
        ("/dev/sda", "/dev/sda", False),
        ("/dev/sda1", None, False),
    ],
)
def test_storage_appeared_only_for_new_storage_or_its_partition(before, after, appeared) -> None:
    ids = UsbIds(0x2E8A, 0x0C01, "CAMPART")

    def device(block: str | None) -> DockedDevice:
        return DockedDevice("1-1.1", ids, Path(block) if block else None, "/dev/ttyACM0")

    assert _storage_appeared(device(before), device(after)) is appeared
    reset = DockedDevice("1-1.1", ids, device(after).block_device, "/dev/ttyACM1")  # a new control port
    assert _storage_appeared(device(before), reset) is False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to probe as another user")
def test_a_device_the_station_cannot_open_is_not_called_blank(request, monkeypatch) -> None:
    """blkid answers 2 both for "no filesystem" and for "cannot open": the error must say which. The real
    blkid runs as an unprivileged user on a device only root may read."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own folders are root's alone: blkid could not stat
    disk = folder / "sda"
    with disk.open("wb") as f:
        f.truncate(8 << 20)
    disk.chmod(0o600)
    folder.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(folder))
    run = subprocess.run
    monkeypatch.setattr(detect.subprocess, "run", lambda *args, **kwargs: run(*args, user="nobody", **kwargs))
    with pytest.raises(StationSideError, match="Permission denied") as error:
        probe_fs_type(disk)
    assert "no recognisable filesystem" not in str(error.value)
