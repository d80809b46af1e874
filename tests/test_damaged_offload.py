"""A damaged camera filesystem end to end: the good recordings are copied and signed, the damaged ones are
not, the log names them with the reason, the camera is not freed, a fault opens and locks it, the kiosk and
admin page say so in words; `recterm offload` exits non-zero naming the damaged files, never a traceback."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import faults, inventory
from appliance.eventlog import EventLog, Signer
from appliance.offload import RECORDINGS, Offloader
from appliance.state.db import StateDB
from appliance.store import LocalStore
from devices.volumes import open_volume
from tests.conftest import add_account, wait_until
from tests.fatimages import Exfat, Fat, clusters, entry_set, listed_fat, make_exfat, make_fat, set_fat
from tests.test_checkout import events, setup
from tests.test_web import ARTIFACTS, base_url, browser  # noqa: F401  (browser is a fixture)
from web_ui.i18n import catalogue

RECTERM = str(Path(sys.executable).with_name("recterm"))


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def log_entries(data_dir: Path, kind: str) -> list[dict]:
    lines = (data_dir / "log" / "entries.jsonl").read_text().splitlines()
    return [e["body"] for e in map(json.loads, lines) if e["type"] == kind]


def manifests(data_dir: Path) -> dict[str, dict]:
    """camera_path -> manifest file section, for every signed manifest in the store."""
    found = {}
    for path in (data_dir / "store" / "manifests").rglob("*.json"):
        body = json.loads(path.read_text())
        found[body["file"]["camera_path"]] = body["file"]
    return found


def offload_cli(image: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RECTERM, "offload", str(image), "--store", str(data_dir), "--serial", "CAMCLI1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def looping_image(tmp_path: Path) -> Path:
    """Three recordings; DCIM/B.MP4's chain loops back after 4 clusters (8 MB of one repeated cluster run)."""
    image = tmp_path / "loop.img"
    make_fat(image, 32, 40, {"DCIM/A.MP4": data(50_000, 1), "DCIM/B.MP4": data(60_000, 2), "C.MP4": data(7_000, 3)})
    chain = clusters(image, "DCIM/B.MP4")
    set_fat(image, chain[3], chain[0])
    return image


def test_cli_refuses_to_sign_a_looping_chain_and_names_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = offload_cli(looping_image(tmp_path), data_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "DCIM/B.MP4: the file: the cluster chain comes back to cluster" in done.stderr
    assert "offloaded 2 recordings" in done.stdout  # the good ones
    signed = manifests(data_dir)
    assert sorted(signed) == ["C.MP4", "DCIM/A.MP4"]
    assert signed["DCIM/A.MP4"]["size"] == 50_000
    [error] = log_entries(data_dir, "offload_error")
    assert (
        error["damaged"] == [{"path": "DCIM/B.MP4", "reason": "chain_loop", "detail": error["damaged"][0]["detail"]}]
        and error["damaged_count"] == 1
    )
    [reconciliation] = log_entries(data_dir, "reconciliation")
    assert reconciliation["missing"] == ["DCIM/B.MP4"]
    verify = subprocess.run([RECTERM, "verify", str(data_dir)], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_cli_on_a_truncated_image_is_a_clean_error_naming_the_file(tmp_path: Path) -> None:
    image = tmp_path / "truncated.img"
    make_fat(image, 32, 40, {"DCIM/A.MP4": data(50_000, 1), "DCIM/LAST.MP4": data(300_000, 2)})
    os.truncate(image, Fat.read(image).cluster_offset(clusters(image, "DCIM/LAST.MP4")[10]))
    done = offload_cli(image, tmp_path / "data")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "DCIM/LAST.MP4" in done.stderr and "beyond the end of the storage" in done.stderr
    assert "the volume claims" in done.stderr and "truncated" in done.stderr
    assert sorted(manifests(tmp_path / "data")) == ["DCIM/A.MP4"]


def test_cli_on_a_truncated_exfat_image_names_the_file_though_fuse_refuses_it(tmp_path: Path) -> None:
    """exfat-fuse will not mount a volume larger than its device: the error still names what the walk found."""
    image = tmp_path / "truncated.img"
    make_exfat(image, 8, {"DCIM/A.MP4": data(40_000, 1), "DCIM/B.MP4": data(300_000, 2)})
    os.truncate(image, Exfat.read(image).cluster_offset(entry_set(image, "B.MP4").first_cluster) + 5_000)
    done = offload_cli(image, tmp_path / "data")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "DCIM/B.MP4: the file: cluster" in done.stderr and "beyond the end of the storage" in done.stderr
    assert "cannot be mounted" in done.stderr


def test_cli_keeps_the_name_the_camera_wrote(tmp_path: Path) -> None:
    """-rf.MP4 is a short entry with the lower-case flag: the manifest says -rf.MP4, as the kernel shows it."""
    image = tmp_path / "case.img"
    make_fat(image, 32, 40, {"-rf.MP4": data(3_000, 1), "DCIM/ab.mp4": data(2_000, 2)})
    assert sorted(listed_fat(image)) == ["-rf.MP4", "DCIM/ab.mp4"]
    done = offload_cli(image, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    signed = manifests(tmp_path / "data")
    assert sorted(signed) == ["-rf.MP4", "DCIM/ab.mp4"]
    assert signed["-rf.MP4"]["name"] == "-rf.MP4"


def test_many_damaged_files_make_one_bounded_log_entry(tmp_path: Path) -> None:
    image = tmp_path / "many.img"
    files = {f"DCIM/CLIP{n:03d}.MP4": data(1_500, n) for n in range(60)}
    files["DCIM/GOOD.MP4"] = data(2_000, 99)
    make_fat(image, 32, 40, files)
    target = clusters(image, "DCIM/CLIP000.MP4")[0]
    for n in range(1, 60):  # every clip runs on into the first one's cluster
        set_fat(image, clusters(image, f"DCIM/CLIP{n:03d}.MP4")[-1], target)
    key = Ed25519PrivateKey.generate()
    db = StateDB(tmp_path / "state.json")
    log = EventLog(tmp_path / "log", origin="test/events", signer=Signer("test", key))
    try:
        offloader = Offloader(LocalStore(tmp_path / "store"), db, log, (".mp4",), "test", key)
        with open_volume(image, "userspace", tmp_path / "mnt") as volume:
            result = offloader.run(volume, {"serial": "CAMMANY"}, 1, threading.Event(), lambda p: None)
        rows = db.call(lambda t: t.table(RECORDINGS).all())
    finally:
        log.close()
        db.close()
    assert result.copied == ["DCIM/GOOD.MP4"] and [r["camera_path"] for r in rows] == ["DCIM/GOOD.MP4"]
    assert len(result.damaged) == 60
    line = next(x for x in (tmp_path / "log" / "entries.jsonl").read_text().splitlines() if '"offload_error"' in x)
    assert len(line) < 8_000
    entry = json.loads(line)["body"]
    assert entry["damaged_count"] == 60 and len(entry["damaged"]) == 20 and entry["reasons"] == {"cross_link": 60}


# -- the station -----------------------------------------------------------------------------------


def damaged_camera(tmp_path: Path, world, serial: str) -> tuple[object, list[str]]:
    """A registered FAT32 camera with three real clips, the second of which loops back on itself."""
    config = setup(tmp_path, world, {serial: {"battery_pct": 100}})
    world.record(serial, 2)
    image = world.image_path(serial)
    paths = sorted(listed_fat(image))
    assert len(paths) == 3
    chain = clusters(image, paths[1])
    set_fat(image, chain[2], chain[1])
    return config, paths


def test_station_keeps_a_damaged_recording_on_the_camera_and_opens_a_fault(
    tmp_path, world, sim_server, start_station
) -> None:
    config, paths = damaged_camera(tmp_path, world, "CAMBAD1")
    station = start_station(cfg=config)
    sim_server.dock("CAMBAD1", 2)
    bay = station.wait_bay(2, "error")
    assert bay["message"] == "bay.error.damaged" and paths[1] in bay["detail"]
    wait_until(lambda: station.station.db.call(lambda db: faults.open_faults(db, "CAMBAD1")), 30, "fault")
    [fault] = station.station.db.call(lambda db: faults.open_faults(db, "CAMBAD1"))
    assert fault["reason"] == "filesystem_damaged" and fault["source"] == "station"
    assert fault["detail"]["files"] == [{"path": paths[1], "reason": "chain_loop"}] and fault["detail"]["count"] == 1
    lock = station.station.db.call(lambda db: inventory.camera(db, "CAMBAD1"))["lock"]
    assert lock["faults"] == [fault["id"]]
    rows = station.station.db.call(lambda db: db.table(RECORDINGS).all())
    assert sorted(r["camera_path"] for r in rows) == [paths[0], paths[2]]  # the good ones, verified
    assert all(r["status"] == "verified" for r in rows)
    [error] = events(station, "offload_error")
    assert error["damaged"][0]["path"] == paths[1] and error["damaged"][0]["reason"] == "chain_loop"
    assert events(station, "camera_freed") == []
    assert sorted(listed_fat(world.image_path("CAMBAD1"))) == paths  # nothing deleted from the camera


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_kiosk_and_admin_say_it_in_words(
    lang,
    tmp_path,
    world,
    sim_server,
    start_station,
    browser,  # noqa: F811
) -> None:
    from tests.test_kiosk import sign_in_page, web_up

    config, paths = damaged_camera(tmp_path, world, "CAMBAD2")
    station = start_station(cfg=config, serve_web=True)
    sim_server.dock("CAMBAD2", 1)
    station.wait_bay(1, "error")
    wait_until(lambda: station.station.db.call(lambda db: faults.open_faults(db, "CAMBAD2")), 30, "fault")
    t = catalogue(lang)
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((800, 480), (1280, 800)):
        page = browser.new_page(viewport={"width": width, "height": height}, has_touch=True)
        page.goto(f"{base_url(station)}/kiosk?lang={lang}")
        tile = page.locator("#bay-1 .message")
        tile.wait_for()
        wait_until(lambda tile=tile: tile.inner_text() == t["bay.error.damaged"], 20, "the bay's message")
        assert page.locator("#bay-1 .badge").inner_text() == t["bay.state.error"]
        page.screenshot(path=str(ARTIFACTS / f"kiosk-damaged-{lang}-{width}x{height}.png"), full_page=True)
        page.close()
    web_up(station)
    add_account(station, "equip1", "equipment")
    for width, height in ((800, 480), (1280, 800)):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(f"{base_url(station)}/admin?lang={lang}")
        sign_in_page(page, "equip1")
        page.wait_for_url("**/admin?lang=*")
        row = page.locator("#open-faults tr[data-camera=CAMBAD2]")
        row.wait_for()
        text = row.inner_text()
        assert t["fault.reason.filesystem_damaged"] in text
        assert f"{paths[1]}: {t['volume.damage.chain_loop']}" in text
        page.screenshot(path=str(ARTIFACTS / f"admin-damaged-{lang}-{width}x{height}.png"), full_page=True)
        page.goto(f"{base_url(station)}/admin/camera/CAMBAD2?lang={lang}")
        assert f"{paths[1]}: {t['volume.damage.chain_loop']}" in page.locator("#camera-faults").inner_text()
        page.screenshot(path=str(ARTIFACTS / f"camera-damaged-{lang}-{width}x{height}.png"), full_page=True)
        page.close()
