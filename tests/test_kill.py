"""Fault injection: SIGKILL the station at random points while it offloads and frees cameras, restart it,
and check after every kill that no recording was lost and no camera was freed early; at the end every
recording is in the store and `recterm verify` is clean."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from appliance.config import load_config
from appliance.eventlog import Entry
from devices.sim import media
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from devices.volumes import open_volume
from devices.volumes.mounting import cleanup_stale_mounts
from tests.conftest import register_cameras, wait_until, write_config

KILLS = 12
CAMERAS = {"KILFAT1": ("vfat", 1), "KILEXF1": ("exfat", 2), "KILEXF2": ("exfat", 3)}


def camera_contents(world: SimWorld, serial: str, mnt: Path) -> dict[str, str]:
    with open_volume(world.image_path(serial), "userspace", mnt) as volume:
        out = {}
        for entry in volume.entries():
            with volume.open(entry.path) as fh:
                out[entry.path] = hashlib.sha256(fh.read()).hexdigest()
        return out


def log_entries(data: Path) -> list[Entry]:
    path = data / "log" / "entries.jsonl"
    if not path.exists():
        return []
    return [Entry.parse(line) for line in path.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")]


def check_invariants(
    world: SimWorld, data: Path, expected: dict[str, dict[str, str]], tmp: Path, central: bool
) -> None:
    entries = log_entries(data)
    ingested = {(e.body["camera"], e.body["camera_path"], e.body["sha256"]) for e in entries if e.type == "ingest"}
    receipts = {e.body["sha256"] for e in entries if e.type == "upload_receipt"}
    manifests = {p.name.split("-")[0] for p in (data / "store" / "manifests").rglob("*.json")}
    for serial, files in expected.items():
        on_camera = camera_contents(world, serial, tmp / f"mnt-{serial}")
        for path, sha in files.items():
            if on_camera.get(path) == sha:
                continue  # still on the camera: nothing lost
            # Gone from the camera: it must have been copied, verified and (by policy) confirmed first.
            stored = data / "store" / "objects" / "sha256" / sha[:2] / sha
            assert stored.exists(), f"{serial}:{path} freed from the camera but not in the store"
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha, f"{serial}:{path} stored copy differs"
            assert (serial, path, sha) in ingested, f"{serial}:{path} freed without an ingest entry"
            assert sha in manifests, f"{serial}:{path} freed without a signed manifest"
            if central:
                assert sha in receipts, f"{serial}:{path} freed before the central store confirmed it"


def interrupted_offloads(entries: list[Entry]) -> int:
    """Offloads that started in one run of the station and never completed in it (killed mid-way)."""
    interrupted, open_offloads = 0, set()
    for entry in entries:
        if entry.type == "boot":
            interrupted += len(open_offloads)
            open_offloads = set()
        elif entry.type == "offload_start":
            open_offloads.add(entry.body["camera"])
        elif entry.type == "offload_complete":
            open_offloads.discard(entry.body["camera"])
    return interrupted


def partials(data: Path) -> set[str]:
    tmp = data / "store" / "tmp"
    return {p.name for p in tmp.iterdir()} if tmp.is_dir() else set()


def wait_for_copy(data: Path, entries_before: int, partials_before: set[str], cameras: int) -> None:
    """Until this run is copying (a partial file in the store that the killed run before did not leave) or has
    nothing left to copy (every docked camera's offload complete since its ``boot`` entry): a kill after that
    lands in or after a copy, never in a start-up that a loaded machine makes slow."""

    def ready() -> bool:
        if partials(data) - partials_before:
            return True
        run = log_entries(data)[entries_before:]
        return any(e.type == "boot" for e in run) and sum(e.type == "offload_complete" for e in run) >= cameras

    wait_until(ready, 120, "the station to start copying")


def start(config_path: Path) -> subprocess.Popen[bytes]:
    recterm = Path(sys.executable).with_name("recterm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECTERM_")}
    return subprocess.Popen([str(recterm), "run", "--config", str(config_path)], stderr=subprocess.DEVNULL, env=env)


@pytest.mark.parametrize("profile", ["001", "003"])  # free after local verification / after central confirm
def test_random_sigkills_lose_nothing_and_free_nothing_early(tmp_path: Path, profile: str) -> None:
    world = SimWorld(tmp_path / "sim")
    world.init({n: f"1-1.{n}" for n in range(1, 5)})
    for serial, (fs_type, _) in CAMERAS.items():
        world.create_camera(serial, fs_type=fs_type, size_mib=200, clips=3)
        long_clip = tmp_path / f"{serial}-long.MP4"
        long_clip.write_bytes(random.Random(serial).randbytes(128 * 2**20))  # long enough to be killed mid-copy
        media.add_files(world.image_path(serial), [(f"DCIM/20260305/{serial}_20260305235900_0099.MP4", long_clip)])
    expected = {s: camera_contents(world, s, tmp_path / f"mnt-{s}") for s in CAMERAS}

    config_path = write_config(tmp_path, world, policy={"profile": profile}, offload={"parallel": 2, "buffer_kib": 256})
    config = load_config(config_path)
    register_cameras(config, *CAMERAS)
    port = config.web.port
    sim = SimServer(world, charge_interval_s=0.5)
    sim.start()
    rng = random.Random(int(profile))
    try:
        for serial, (_, bay) in CAMERAS.items():
            sim.dock(serial, bay)
        for _ in range(KILLS):
            before = len(log_entries(config.station.data_dir)), partials(config.station.data_dir)
            proc = start(config_path)
            wait_for_copy(config.station.data_dir, *before, len(CAMERAS))
            time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            check_invariants(world, config.station.data_dir, expected, tmp_path, central=profile == "003")

        proc = start(config_path)
        try:

            def all_freed() -> bool:
                try:
                    bays = httpx.get(f"http://127.0.0.1:{port}/api/bays", timeout=2).json()
                except httpx.HTTPError:
                    return False
                return all(b["message"] == "bay.ready" for b in bays if b["number"] in (1, 2, 3))

            wait_until(all_freed, 120, "every camera offloaded and freed")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    finally:
        sim.stop()

    check_invariants(world, config.station.data_dir, expected, tmp_path, central=profile == "003")
    # The kills must really have landed mid-offload, or this test proves nothing.
    assert interrupted_offloads(log_entries(config.station.data_dir)) >= 3
    store = config.station.data_dir / "store" / "objects" / "sha256"
    for files in expected.values():
        for sha in files.values():
            assert (store / sha[:2] / sha).exists()
    for serial in CAMERAS:  # every camera was emptied in the end
        assert camera_contents(world, serial, tmp_path / f"mnt-{serial}") == {}
    recterm = Path(sys.executable).with_name("recterm")
    verify = subprocess.run([str(recterm), "verify", str(config.station.data_dir)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def verify(data: Path) -> subprocess.CompletedProcess[str]:
    recterm = Path(sys.executable).with_name("recterm")
    return subprocess.run([str(recterm), "verify", str(data)], capture_output=True, text=True)


def test_what_a_sigkill_leaves_verifies(tmp_path: Path) -> None:
    """`recterm verify` on exactly what a killed station left, before any restart tidies it: torn last lines,
    entries past the last checkpoint, ingests without their manifest are crash artefacts, never errors. A tight
    checkpoint policy (every 3 entries or 1 s) puts the kills near checkpoints; the station declares it."""
    world = SimWorld(tmp_path / "sim")
    world.init({n: f"1-1.{n}" for n in range(1, 3)})
    for serial, bay in (("VERFAT1", 1), ("VEREXF1", 2)):
        world.create_camera(serial, fs_type="vfat" if bay == 1 else "exfat", size_mib=170, clips=4)
        long_clip = tmp_path / f"{serial}-long.MP4"
        long_clip.write_bytes(random.Random(serial).randbytes(96 * 2**20))
        media.add_files(world.image_path(serial), [(f"DCIM/20260305/{serial}_20260305235900_0099.MP4", long_clip)])
    config_path = write_config(
        tmp_path,
        world,
        policy={"profile": "003"},
        offload={"parallel": 2, "buffer_kib": 256},
        log={"checkpoint_every": 3, "checkpoint_interval_s": 1},
    )
    config = load_config(config_path)
    register_cameras(config, "VERFAT1", "VEREXF1")
    data = config.station.data_dir
    sim = SimServer(world, charge_interval_s=0.5)
    sim.start()
    rng = random.Random(1515)
    artefacts: set[str] = set()
    try:
        sim.dock("VERFAT1", 1)
        sim.dock("VEREXF1", 2)
        for _ in range(KILLS):
            before = len(log_entries(data)), partials(data)
            proc = start(config_path)
            wait_for_copy(data, *before, 2)
            time.sleep(rng.uniform(0.0, 0.15))  # a copy from a FAT image runs at page-cache speed
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            result = verify(data)
            assert result.returncode == 0, result.stdout + result.stderr
            artefacts |= {kind for kind in ("not yet covered", "torn last line", "ingest") if kind in result.stdout}
    finally:
        sim.stop()
        # The killed stations' exfat-fuse daemons outlive them (a restarted station would unmount them): leave
        # no mount behind, or the temp dirs cannot be removed.
        cleanup_stale_mounts(data / "run" / "mnt")
    assert "boot" in {e.type for e in log_entries(data)}
    assert interrupted_offloads(log_entries(data)) >= 2, "the kills must land mid-offload"
    assert "not yet covered" in artefacts, "no kill left entries past the last checkpoint: the test proves too little"
