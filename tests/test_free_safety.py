"""What may free a camera: only recordings copied in its current dock-to-free cycle, each proven present.

Issue 15, holes 6 and 7: a state row that says "verified" is not proof, and a file with the name, size and
time of one freed months ago is not the same recording.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from appliance import cycles
from appliance.cli import main
from appliance.config import load_config
from appliance.eventlog import EventLog
from appliance.offload import RECORDINGS
from appliance.single_offload import offload_once
from appliance.state.db import StateDB
from devices.sim import media
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from devices.volumes import open_volume
from tests.conftest import register_cameras, sha256_file, wait_until, write_config

CLIP_TIME = datetime(2026, 3, 5, 14, 22, 10)
CLIP_PATH = "DCIM/20260305/ZFY_0001.MP4"


def clip(folder: Path, name: str, size: int = 400_000, when: datetime = CLIP_TIME) -> Path:
    """Random bytes of ``size`` stamped with the camera time ``when`` (FAT keeps it to 2 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(os.urandom(size))
    stamp = when.timestamp()
    os.utime(path, (stamp, stamp))
    return path


def log_entries(station, kind: str) -> list:
    return [e for e in station.station.events.entries() if e.type == kind]


def camera_files(world: SimWorld, serial: str, mnt: Path) -> list[str]:
    with open_volume(world.image_path(serial), "userspace", mnt) as volume:
        return [e.path for e in volume.entries()]


def freeing_station(tmp_path: Path, world: SimWorld, start_station, serial: str):
    """Profile 001: the camera is freed as soon as every copy is verified locally."""
    config = load_config(write_config(tmp_path, world, policy={"profile": "001"}, central={"kind": "disabled"}))
    register_cameras(config, serial)
    return start_station(cfg=config)


def test_a_new_recording_with_the_name_size_and_time_of_a_freed_one_is_copied(
    world: SimWorld, sim_server: SimServer, tmp_path: Path, start_station
) -> None:
    """The camera's clock reset and its numbering restarted after it was freed: its new file has the name,
    size and time of the one freed before. It must be copied, and the camera freed only after."""
    world.create_camera("ZFYCYC1", fs_type="vfat", size_mib=40)
    first = clip(tmp_path / "first", "a.MP4")
    media.add_files(world.image_path("ZFYCYC1"), [(CLIP_PATH, first)])
    station = freeing_station(tmp_path, world, start_station, "ZFYCYC1")
    sim_server.dock("ZFYCYC1", 1)
    wait_until(lambda: station.bay(1)["message"] == "bay.ready", 60, "first free")
    assert camera_files(world, "ZFYCYC1", tmp_path / "mnt") == []
    sim_server.undock(1)
    station.wait_bay(1, "empty")

    second = clip(tmp_path / "second", "a.MP4")  # same name, size and camera time; other bytes
    assert sha256_file(second) != sha256_file(first)
    media.add_files(world.image_path("ZFYCYC1"), [(CLIP_PATH, second)])
    sim_server.dock("ZFYCYC1", 2)
    wait_until(lambda: station.bay(2)["message"] == "bay.ready", 60, "second free")

    ingested = {e.body["sha256"] for e in log_entries(station, "ingest")}
    assert ingested == {sha256_file(first), sha256_file(second)}  # the second one was copied, not skipped
    assert station.station.store.has(sha256_file(second))
    freed = log_entries(station, "camera_freed")
    assert [f["sha256"] for f in freed[1].body["files"]] == [sha256_file(second)]
    requested = log_entries(station, cycles.FREE_REQUESTED)
    assert [r.seq for r in requested] == [f.seq - 1 for f in freed]  # each request logged before its free
    rows = station.station.db.call(lambda db: db.table(RECORDINGS).all())
    assert sorted(r["sha256"] for r in rows) == sorted(ingested)  # the first recording's row is kept, too
    assert len({r["key"] for r in rows}) == 2


def test_resuming_within_a_cycle_still_skips_what_was_verified(tmp_path: Path) -> None:
    """The skip that resuming an interrupted offload needs still works: same camera, no free in between."""
    image = tmp_path / "cam.img"
    media.create_image(image, "vfat", 40)
    media.add_files(image, [(CLIP_PATH, clip(tmp_path / "c", "a.MP4"))])
    data = tmp_path / "data"
    assert offload_once(image, data, {"serial": "ZFYRES1"}).copied == [CLIP_PATH]
    again = offload_once(image, data, {"serial": "ZFYRES1"})
    assert again.copied == [] and again.skipped == [CLIP_PATH]


def test_a_cycle_ended_before_a_crash_costs_a_copy_not_a_recording(tmp_path: Path) -> None:
    """The station ended the cycle and died before the camera was freed (or the free's log entry was lost):
    the next offload copies again rather than trust rows from before the request."""
    image = tmp_path / "cam.img"
    media.create_image(image, "vfat", 40)
    media.add_files(image, [(CLIP_PATH, clip(tmp_path / "c", "a.MP4"))])
    data = tmp_path / "data"
    offload_once(image, data, {"serial": "ZFYRES2"})
    db = StateDB(data / "state" / "state.json")
    try:
        db.call(lambda t: cycles.end_cycle(t, "ZFYRES2", 10**9))
    finally:
        db.close()
    again = offload_once(image, data, {"serial": "ZFYRES2"})
    assert again.copied == [CLIP_PATH] and again.skipped == []


def test_cycles_are_derived_from_the_log_on_a_station_that_had_none(tmp_path: Path) -> None:
    """A station updated from a version without cycles: its log says the camera was freed, its state has no
    cycle table. The first start derives the cycle from the log, so rows from before the free are not skipped."""
    image = tmp_path / "cam.img"
    media.create_image(image, "vfat", 40)
    media.add_files(image, [(CLIP_PATH, clip(tmp_path / "c", "a.MP4"))])
    data = tmp_path / "data"
    offload_once(image, data, {"serial": "ZFYOLD1"})
    log = EventLog(data / "log", origin="recterm/standalone/events/e1")
    try:  # what the previous version logged when it freed the camera (and nothing in the state)
        log.append("camera_freed", {"bay": 1, "camera": "ZFYOLD1", "policy": "local_verify", "files": []})
    finally:
        log.close()
    db = StateDB(data / "state" / "state.json")
    try:
        db.call(lambda t: (t.drop_table(cycles.CYCLES), t.table("meta").truncate()))
    finally:
        db.close()
    again = offload_once(image, data, {"serial": "ZFYOLD1"})
    assert again.copied == [CLIP_PATH] and again.skipped == []


def test_the_cli_tells_cameras_apart_by_their_volume_without_a_serial(tmp_path: Path) -> None:
    """Two different cards whose files share names, sizes and times: without --serial the CLI names each
    camera by its volume serial number, so the second card's files are copied, not "already verified"."""
    data = tmp_path / "data"
    images = []
    for n in (1, 2):
        image = tmp_path / f"card{n}.img"
        media.create_image(image, "vfat", 40)
        files = [(f"DCIM/{i:04d}.MP4", clip(tmp_path / f"c{n}", f"{i}.MP4", size=50_000)) for i in range(5)]
        media.add_files(image, files)
        images.append(image)
    outputs = []
    for image in (*images, images[0]):
        result = CliRunner().invoke(main, ["offload", str(image), "--store", str(data)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "offloaded 5 recordings" in outputs[0] and "offloaded 5 recordings" in outputs[1]
    assert "offloaded 0 recordings" in outputs[2] and "5 already verified" in outputs[2]  # the first card again
    lines = (data / "log" / "entries.jsonl").read_text().splitlines()
    cameras = {json.loads(line)["body"]["camera"] for line in lines if json.loads(line)["type"] == "ingest"}
    assert len(cameras) == 2 and all(c.startswith("VOL-vfat-") for c in cameras)


def test_the_cli_refuses_a_plain_folder_without_a_serial(tmp_path: Path) -> None:
    folder = tmp_path / "camera"
    (folder / "DCIM").mkdir(parents=True)
    (folder / "DCIM" / "a.MP4").write_bytes(b"x" * 1000)
    result = CliRunner().invoke(main, ["offload", str(folder), "--store", str(tmp_path / "data")])
    assert result.exit_code != 0 and "--serial" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # a clear message, no traceback


def test_a_verified_recording_missing_from_the_store_keeps_the_camera_and_is_reported(
    world: SimWorld, sim_server: SimServer, tmp_path: Path, start_station
) -> None:
    """The state says verified, the store no longer has the bytes: the camera is not freed, the gap is logged,
    alarmed and shown on the bay, and the next dock copies the recording again and only then frees it."""
    world.create_camera("ZFYGAP1", fs_type="vfat", size_mib=40)
    clips = [clip(tmp_path / "c", f"{i}.MP4", when=CLIP_TIME.replace(minute=i)) for i in range(3)]
    media.add_files(world.image_path("ZFYGAP1"), [(f"DCIM/{i}.MP4", c) for i, c in enumerate(clips)])
    config = load_config(write_config(tmp_path, world, policy={"profile": "001"}, central={"kind": "disabled"}))
    register_cameras(config, "ZFYGAP1")
    # An earlier, interrupted visit copied all three (same data directory, same camera, same cycle) ...
    offload_once(world.image_path("ZFYGAP1"), config.station.data_dir, {"serial": "ZFYGAP1"}, "test-station")
    lost = sha256_file(clips[1])
    store_object = config.store_dir / "objects" / "sha256" / lost[:2] / lost
    store_object.chmod(0o644)
    store_object.unlink()  # ... and one copy is gone since, though its row still says verified

    station = start_station(cfg=config)
    sim_server.dock("ZFYGAP1", 1)
    view = station.wait_bay(1, "error")
    assert view["message"] == "bay.error.unproven" and "DCIM/1.MP4" in view["detail"]
    assert sorted(camera_files(world, "ZFYGAP1", tmp_path / "mnt")) == ["DCIM/0.MP4", "DCIM/1.MP4", "DCIM/2.MP4"]
    assert log_entries(station, "camera_freed") == [] and log_entries(station, cycles.FREE_REQUESTED) == []
    [refused] = log_entries(station, "free_refused")
    assert refused.body["unproven"] == [{"camera_path": "DCIM/1.MP4", "sha256": lost, "reason": "stored copy missing"}]
    assert "unproven:1" in [a["key"] for a in station.station.alarms.active()]
    row = station.station.db.call(lambda db: db.table(RECORDINGS).get(lambda r: r["sha256"] == lost))
    assert row["status"] == "unproven"

    sim_server.undock(1)
    station.wait_bay(1, "empty")
    sim_server.dock("ZFYGAP1", 1)
    wait_until(lambda: station.bay(1)["message"] == "bay.ready", 60, "freed after the copy")
    assert station.station.store.has(lost)
    assert camera_files(world, "ZFYGAP1", tmp_path / "mnt") == []


def test_an_altered_stored_copy_of_a_skipped_recording_is_caught_by_rehashing(
    world: SimWorld, sim_server: SimServer, tmp_path: Path, start_station
) -> None:
    """Skipped recordings were read back in an earlier visit only: before the free they are re-hashed, so
    bytes changed in the store since (same size) keep the camera from being freed."""
    world.create_camera("ZFYGAP2", fs_type="vfat", size_mib=40)
    media.add_files(world.image_path("ZFYGAP2"), [(CLIP_PATH, clip(tmp_path / "c", "a.MP4"))])
    config = load_config(write_config(tmp_path, world, policy={"profile": "001"}, central={"kind": "disabled"}))
    register_cameras(config, "ZFYGAP2")
    offload_once(world.image_path("ZFYGAP2"), config.station.data_dir, {"serial": "ZFYGAP2"}, "test-station")
    [stored] = [p for p in (config.store_dir / "objects").rglob("*") if p.is_file()]
    stored.chmod(0o644)
    with open(stored, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff")

    station = start_station(cfg=config)
    sim_server.dock("ZFYGAP2", 1)
    view = station.wait_bay(1, "error")
    assert view["message"] == "bay.error.unproven" and "does not verify" in view["detail"]
    assert camera_files(world, "ZFYGAP2", tmp_path / "mnt") == [CLIP_PATH]
