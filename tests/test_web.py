"""The web UI over real HTTP: the API, the live event stream, and the dashboard in headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from tests.conftest import STAFF_PASSWORD, add_account, register_cameras

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def base_url(station) -> str:
    return f"http://127.0.0.1:{station.config.web.port}"


def test_api_health_bays_and_catalogues(config, start_station) -> None:
    station = start_station(serve_web=True)
    with httpx.Client(base_url=base_url(station), timeout=10) as client:
        health = client.get("/api/health").json()
        assert health == {"state": "running", "station": "test-station", "version": health["version"]}
        bays = client.get("/api/bays").json()
        assert [b["number"] for b in bays] == [1, 2, 3, 4] and {b["state"] for b in bays} == {"empty"}
        zh, en = client.get("/api/i18n/zh").json(), client.get("/api/i18n/en").json()
        assert zh.keys() == en.keys()  # every message exists in both languages
        assert zh["bay.state.ready"] == "就绪" and en["bay.state.ready"] == "Ready"
        missing = client.get("/api/i18n/fr")
        assert missing.status_code == 404 and "available: zh, en" in missing.json()["detail"]
        signin = client.get("/")  # the dashboard is for signed-in staff: anyone else is sent to sign in
        assert signin.status_code == 303 and signin.headers["location"] == "/login?next=%2F"
        assert client.get("/login").status_code == 200


def test_event_stream_pushes_bay_changes(world: SimWorld, sim_server: SimServer, config, start_station) -> None:
    world.create_camera("CAMSSE1", fs_type="vfat", size_mib=40, clips=1)
    register_cameras(config, "CAMSSE1")
    station = start_station(serve_web=True)
    states: list[str] = []
    with (
        httpx.Client(base_url=base_url(station), timeout=30) as client,
        client.stream("GET", "/api/events/stream") as stream,
    ):
        event = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "snapshot":
                assert len(json.loads(line[5:])["bays"]) == 4
                sim_server.dock("CAMSSE1", 2)
            elif line.startswith("data:") and event == "bay":
                bay = json.loads(line[5:])
                if bay["number"] == 2:
                    states.append(bay["state"])
                    if bay["state"] == "ready":
                        break
    assert states[0] == "identifying" and states[-1] == "ready" and "offloading" in states


@pytest.fixture
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


def test_dashboard_updates_live_in_chromium(world: SimWorld, sim_server: SimServer, config, start_station, browser):
    world.create_camera("CAMWEB1", fs_type="exfat", size_mib=40, clips=2, battery_pct=42)
    register_cameras(config, "CAMWEB1")
    station = start_station(serve_web=True)
    add_account(station, "supervisor1", "supervisor")
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base_url(station) + "/")
    page.wait_for_selector("#signin")
    page.fill("input[name=username]", "supervisor1")
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("#signin button")
    page.wait_for_selector("#conn[data-state=live]")
    assert page.locator(".bay").count() == 4
    assert page.locator("#bay-1 .badge").inner_text() == "空"
    page.screenshot(path=str(ARTIFACTS / "dashboard-empty-zh.png"))

    sim_server.dock("CAMWEB1", 3)  # no reload from here on: the page must follow by itself
    page.wait_for_selector("#bay-3[data-state=ready]", timeout=60_000)
    tile = page.locator("#bay-3")
    assert tile.locator(".badge").inner_text() == "就绪"
    assert "CAMWEB1" in tile.locator(".camera").inner_text()
    assert "文件 2/2" in tile.locator(".files").inner_text()
    assert tile.locator(".battery span").inner_text().endswith("%")
    page.screenshot(path=str(ARTIFACTS / "dashboard-docked-zh.png"))

    page.click("a.lang")
    page.wait_for_selector("#bay-3[data-state=ready]")
    assert page.locator("#bay-3 .badge").inner_text() == "Ready"
    assert page.locator("h1").inner_text() == "Body-camera docking station"
    page.screenshot(path=str(ARTIFACTS / "dashboard-docked-en.png"))

    sim_server.undock(3)
    page.wait_for_selector("#bay-3[data-state=empty]", timeout=30_000)


def test_badge_swipes_reach_the_kiosk_display_only(tmp_path, world, start_station) -> None:
    from appliance.config import load_config
    from tests.conftest import signed_in, write_config

    # The display is elsewhere here, so this loopback client is just a signed-in member of staff.
    config = load_config(write_config(tmp_path, world, security={"kiosk_clients": ["192.0.2.99"]}))
    station = start_station(serve_web=True, cfg=config)
    add_account(station, "equip1", "equipment")
    url = base_url(station)
    with signed_in(url, "equip1") as staff, staff.stream("GET", "/api/events/stream") as stream:
        seen = []
        for line in stream.iter_lines():
            if line.startswith("event:"):
                seen.append(line.split(":", 1)[1].strip())
                if seen[-1] == "snapshot":
                    bus = station.station.bus
                    bus.publish("badge", {"card": "CARD110001"})
                    bus.publish("checkin", {"assignment": "x", "camera": "CAMX", "bay": 1})
                if seen[-1] == "checkin":
                    break
    assert seen == ["snapshot", "checkin"]  # the swipe between them was not sent
    with httpx.Client(base_url=url) as anonymous:
        assert anonymous.get("/api/events/stream").status_code == 401  # not the display: no board either
