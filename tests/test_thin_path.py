"""The thin path end to end: dock simulated cameras holding real FAT32 and exFAT images with real MP4s;
the station identifies them over their pty control ports and copies every recording byte for byte."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from appliance.config import load_config
from appliance.offload import RECORDINGS
from devices.sim import media
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from devices.volumes import open_volume
from tests.conftest import register_cameras, sha256_file, wait_until, write_config


def load_camera(world: SimWorld, tmp_path: Path, serial: str, fs_type: str, clips: int) -> dict[str, str]:
    """Make a camera whose recordings we made ourselves: returns camera path -> SHA-256 of our copy."""
    world.create_camera(serial, fs_type=fs_type, size_mib=64)
    local = tmp_path / f"clips-{serial}"
    local.mkdir()
    start = datetime(2026, 3, 5, 14, 22, 10)
    expected: dict[str, str] = {}
    files = []
    for i in range(clips):
        started = start + timedelta(minutes=3 * i)
        camera_path = media.recording_path(serial, started, i + 1)
        clip = local / Path(camera_path).name
        media.make_clip(clip, started, 2.0, f"{serial} #{i + 1}")
        files.append((camera_path, clip))
        expected[camera_path] = sha256_file(clip)
    media.add_files(world.image_path(serial), files)
    return expected


def test_docked_fat32_and_exfat_cameras_arrive_byte_identical(
    world: SimWorld, sim_server: SimServer, config, start_station, tmp_path: Path
) -> None:
    expected = {
        "CAMFAT1": load_camera(world, tmp_path, "CAMFAT1", "vfat", 3),
        "CAMEXF1": load_camera(world, tmp_path, "CAMEXF1", "exfat", 3),
    }
    register_cameras(config, "CAMFAT1", "CAMEXF1")
    station = start_station()

    sim_server.dock("CAMFAT1", 1)
    sim_server.dock("CAMEXF1", 2)
    for bay, serial in ((1, "CAMFAT1"), (2, "CAMEXF1")):
        view = station.wait_bay(bay, "ready")
        assert view["camera"]["serial"] == serial
        assert view["progress"]["files_done"] == view["progress"]["files_total"] == 3
        assert 0 <= view["battery_pct"] <= 100
        assert view["storage_total"] == world.image_path(serial).stat().st_size

    rows = station.station.db.call(lambda db: db.table(RECORDINGS).all())
    by_camera = {(r["camera_serial"], r["camera_path"]): r for r in rows}
    for serial, recordings in expected.items():
        for camera_path, sha in recordings.items():
            row = by_camera[(serial, camera_path)]
            assert row["sha256"] == sha
            stored = station.station.store.object_path(sha)
            assert sha256_file(stored) == sha  # byte-identical: same SHA-256 over every byte
            assert stored.stat().st_size == row["size"]
    assert len(rows) == 6

    ingests = [e for e in station.station.events.entries() if e.type == "ingest"]
    assert sorted((e.body["camera"], e.body["camera_path"], e.body["sha256"]) for e in ingests) == sorted(
        (serial, path, sha) for serial, recs in expected.items() for path, sha in recs.items()
    )


def test_redock_does_not_copy_verified_recordings_again(
    world: SimWorld, sim_server: SimServer, tmp_path: Path, start_station
) -> None:
    # No central store: under policy 003 the camera is not freed, so its recordings are seen again.
    config = load_config(write_config(tmp_path, world, central={"kind": "disabled"}))
    load_camera(world, tmp_path, "CAMEXF2", "exfat", 2)
    register_cameras(config, "CAMEXF2")
    station = start_station(cfg=config)
    sim_server.dock("CAMEXF2", 3)
    station.wait_bay(3, "ready")
    sim_server.undock(3)
    station.wait_bay(3, "empty")
    world.record("CAMEXF2", 1)  # out on duty: one more recording
    sim_server.dock("CAMEXF2", 3)
    view = station.wait_bay(3, "ready")
    assert view["progress"]["skipped"] == 2
    assert view["progress"]["files_done"] == 3
    ingests = [e for e in station.station.events.entries() if e.type == "ingest"]
    assert len(ingests) == 3


def test_unregistered_camera_is_refused_and_alarmed(world: SimWorld, sim_server: SimServer, start_station) -> None:
    world.create_camera("ROGUE01", fs_type="vfat", size_mib=40, clips=1)
    station = start_station()
    sim_server.dock("ROGUE01", 4)
    view = station.wait_bay(4, "unauthorised")
    assert view["message"] == "bay.unauthorised"
    alarms = [e.body for e in station.station.events.entries() if e.type == "alarm"]
    assert any(a["key"] == "unauthorised:4" and a["usb_serial"] == "ROGUE01" for a in alarms)
    assert "unauthorised:4" in [a["key"] for a in station.station.alarms.active()]
    sim_server.undock(4)
    station.wait_bay(4, "empty")
    wait_until(lambda: "unauthorised:4" not in [a["key"] for a in station.station.alarms.active()], 10, "cleared")
    assert station.station.db.call(lambda db: db.table(RECORDINGS).all()) == []


def test_wrong_device_password_is_a_visible_bay_error(
    world: SimWorld, sim_server: SimServer, config, start_station
) -> None:
    world.create_camera("CAMPWD1", fs_type="vfat", size_mib=40, clips=1)
    register_cameras(config, "CAMPWD1", password="999999")
    station = start_station()
    sim_server.dock("CAMPWD1", 1)
    view = station.wait_bay(1, "error")
    assert view["message"] == "bay.error.auth"
    assert "password" in view["detail"]


def test_undock_mid_offload_leaves_a_clean_empty_bay(
    world: SimWorld, sim_server: SimServer, config, start_station, tmp_path: Path
) -> None:
    world.create_camera("CAMBIG1", fs_type="exfat", size_mib=400, clips=1)
    big = tmp_path / "long.MP4"
    with open(big, "wb") as fh:  # a long recording: long enough to pull the camera out mid-copy
        fh.truncate(300 * 2**20)
    media.add_files(world.image_path("CAMBIG1"), [("DCIM/20260305/CAMBIG1_20260305150000_0009.MP4", big)])
    register_cameras(config, "CAMBIG1")
    station = start_station()
    sim_server.dock("CAMBIG1", 2)
    wait_until(lambda: (station.bay(2)["progress"] or {}).get("bytes_done", 0) > 2**20, 30, "copy under way")
    sim_server.undock(2)
    station.wait_bay(2, "empty")
    leftovers = list(station.station.store.tmp.iterdir())
    assert leftovers == []  # no half-written file
    types = [e.type for e in station.station.events.entries()]
    assert "offload_interrupted" in types and "undock" in types
    assert "offload_complete" not in types
    stored_sizes = [p.stat().st_size for p in station.station.store.objects.rglob("*") if p.is_file()]
    assert 300 * 2**20 not in stored_sizes  # the interrupted recording never entered the store


def camera_files(world: SimWorld, serial: str, mnt: Path) -> list[str]:
    with open_volume(world.image_path(serial), "userspace", mnt) as volume:
        return [e.path for e in volume.entries()]


def test_local_verify_policy_frees_the_camera_after_every_copy_verified(
    world: SimWorld, sim_server: SimServer, tmp_path: Path, start_station
) -> None:
    config = load_config(write_config(tmp_path, world, policy={"profile": "001"}))  # 001: free after local verify
    load_camera(world, tmp_path, "CAMFRE1", "vfat", 3)
    register_cameras(config, "CAMFRE1")
    station = start_station(cfg=config)
    sim_server.dock("CAMFRE1", 1)
    wait_until(lambda: station.bay(1)["message"] == "bay.ready", 60, "camera freed")
    assert camera_files(world, "CAMFRE1", tmp_path / "mnt") == []
    entries = list(station.station.events.entries())
    freed = next(e for e in entries if e.type == "camera_freed")
    ingested = {e.body["sha256"]: e.seq for e in entries if e.type == "ingest"}
    assert len(freed.body["files"]) == 3
    for item in freed.body["files"]:  # every freed file was ingested (copied and verified) before
        assert ingested[item["sha256"]] < freed.seq
        assert station.station.store.has(item["sha256"])


def test_central_confirm_policy_frees_only_after_upload_receipts(
    world: SimWorld, sim_server: SimServer, config, start_station, tmp_path: Path
) -> None:
    load_camera(world, tmp_path, "CAMFRE2", "exfat", 2)  # default profile 003: free after central confirms
    register_cameras(config, "CAMFRE2")
    station = start_station()
    sim_server.dock("CAMFRE2", 2)
    wait_until(lambda: station.bay(2)["message"] == "bay.ready", 60, "camera freed")
    assert camera_files(world, "CAMFRE2", tmp_path / "mnt") == []
    entries = list(station.station.events.entries())
    freed = next(e for e in entries if e.type == "camera_freed")
    receipts = {e.body["sha256"]: e.seq for e in entries if e.type == "upload_receipt"}
    assert freed.body["policy"] == "central_confirm"
    assert all(receipts[item["sha256"]] < freed.seq for item in freed.body["files"])
