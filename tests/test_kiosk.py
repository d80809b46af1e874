"""Check-out over HTTP and in the kiosk page in real headless Chromium: the pair rule, one camera per officer,
the ratio report, the registry CSV round trip; a full check-out by two officers, a refusal per gate with its
message, check-in by docking. Screenshots of the kiosk flow in both languages go to test-artifacts/."""

from __future__ import annotations

import re

import httpx
import pytest

from appliance import inventory
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from tests.conftest import STAFF_PASSWORD, add_account, register_officers, signed_in, wait_until, web_client
from tests.test_checkout import GATE_CASES, A, B, C, ready, setup
from tests.test_web import ARTIFACTS, base_url, browser  # noqa: F401  (browser is a fixture)
from web_ui.i18n import catalogue

BADGE = {"badge": {"backend": "simulated"}}  # the simulator's card reader, as on a kiosk


def web_up(station) -> None:
    """The station reports running as uvicorn starts; wait until it answers (another branch makes the
    station wait for that itself)."""

    def answers() -> bool:
        try:
            return httpx.get(base_url(station) + "/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, 30, "web server")


def client(station) -> httpx.Client:
    """The kiosk display (loopback): officers identify here."""
    web_up(station)
    return web_client(base_url(station))


def staff(station, username: str = "equip1") -> httpx.Client:
    """Equipment staff signed in to the LAN UI."""
    web_up(station)
    add_account(station, username, "equipment")
    return signed_in(base_url(station), username)


def card_ticket(http: httpx.Client, police_no: str) -> str:
    response = http.post("/api/checkout/identify", json={"card": f"CARD{police_no}"})
    assert response.status_code == 200, response.text
    return response.json()["ticket"]


# -- API
def test_api_pair_rule(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMAPI1": {"battery_pct": 90}})
    station = start_station(cfg=config, serve_web=True)
    ready(station, sim_server, {"CAMAPI1": 1})
    with client(station) as http:
        one = card_ticket(http, A)
        alone = http.post("/api/checkout", json={"tickets": [one]})
        assert alone.status_code == 400 and alone.json()["error"] == "checkout.error.need_officers"
        assert alone.json()["args"] == {"n": 2}
        twice = http.post("/api/checkout", json={"tickets": [one, one]})
        assert twice.status_code == 400 and twice.json()["error"] == "checkout.error.same_officer"
        pin = http.post("/api/checkout/identify", json={"police_no": B, "pin": "0000"})
        assert pin.status_code == 400 and pin.json()["error"] == "checkout.error.bad_pin"
        bad = http.post("/api/checkout/identify", json={"card": "X" * 100})
        assert bad.status_code == 422  # validation: nothing reaches the service
        assert http.post("/api/checkout", json={"tickets": [one], "bay": "one"}).status_code == 422
        pair = http.post("/api/checkout", json={"tickets": [one, card_ticket(http, B)]})
        assert pair.status_code == 200, pair.text
        assert pair.json()["camera"] == "CAMAPI1" and [o["police_no"] for o in pair.json()["officers"]] == [A, B]
        with staff(station) as desk:
            assert [a["id"] for a in desk.get("/api/assignments/open").json()] == [pair.json()["id"]]
        assert world.load("CAMAPI1").officer["police_no"] == A


def test_api_one_camera_per_officer_and_ledger(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMONE1": {"battery_pct": 90}, "CAMONE2": {"battery_pct": 90}})
    station = start_station(cfg=config, serve_web=True)
    ready(station, sim_server, {"CAMONE1": 1, "CAMONE2": 2})
    with client(station) as http, staff(station) as desk:
        first = http.post("/api/checkout", json={"tickets": [card_ticket(http, A), card_ticket(http, B)]}).json()
        again = http.post("/api/checkout", json={"tickets": [card_ticket(http, C), card_ticket(http, A)]})
        assert again.status_code == 409
        assert again.json()["error"] == "checkout.error.holds_camera"
        assert again.json()["args"] == {"name": f"警员{A}", "serial": first["camera"]}
        assert http.post("/api/checkout/identify", json={"card": f"CARD{B}"}).json()["holding"] == first["camera"]

        sim_server.undock(first["bay"])
        wait_until(lambda: desk.get("/api/ledger").json()[0]["status"] == "out", 20, "taken")
        sim_server.dock(first["camera"], 3)  # back: A may take a camera again
        wait_until(lambda: desk.get("/api/ledger").json()[0]["status"] == "returned", 20, "check-in")
        station.wait_bay(3, "ready")
        wait_until(lambda: station.station.bays.offload_done(3), 60, "freed")
        second = http.post("/api/checkout", json={"tickets": [card_ticket(http, C), card_ticket(http, A)]})
        assert second.status_code == 200, second.text

        mine = desk.get("/api/ledger", params={"officer": A}).json()
        assert [r["id"] for r in mine] == [first["id"], second.json()["id"]]
        assert [r["id"] for r in desk.get("/api/ledger", params={"officer": C}).json()] == [second.json()["id"]]
        assert desk.get("/api/ledger", params={"since": "2000-01-01", "until": "2000-12-31"}).json() == []
        exported = desk.get("/api/ledger.csv", params={"officer": B})
        assert exported.headers["content-type"].startswith("text/csv")
        lines = exported.text.lstrip("\ufeff").splitlines()
        assert lines[0].startswith("assignment,camera,bay,police_no") and len(lines) == 2
        assert f"{A};{B}" in lines[1] and ",returned" in lines[1]
        assert desk.get("/api/ledger", params={"since": "not-a-date"}).status_code == 422


def test_api_fleet_ratio_report(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMRAT1": {}, "CAMRAT2": {"registry": {"status": "maintenance"}}})
    register_officers(config, {"police_no": "110004"}, {"police_no": "110005", "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    with staff(station) as http:
        ratio = http.get("/api/fleet/ratio").json()
        assert ratio == {
            "officers": 4, "cameras": 1, "ratio": 4.0, "standard": 2, "cite": "003 Art. 15",
            "meets_standard": False, "cameras_needed": 2, "shortfall": 1,
        }  # fmt: skip
        assert http.put("/api/registry/cameras/CAMRAT2", json={"status": "in_service"}).status_code == 200
        ratio = http.get("/api/fleet/ratio").json()
        assert (ratio["ratio"], ratio["meets_standard"], ratio["shortfall"]) == (2.0, True, 0)


def test_api_registry_csv_round_trip_and_edits(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMCSV1": {"registry": {"model": "DSJ-S1"}}})
    station = start_station(cfg=config, serve_web=True)
    with staff(station) as http, client(station) as kiosk_http:
        officers = http.get("/api/registry/officers.csv").text
        cameras = http.get("/api/registry/cameras.csv").text
        before = (http.get("/api/registry/officers").json(), http.get("/api/registry/cameras").json())
        assert all("pin_hash" not in o and o["has_pin"] for o in before[0])
        assert all("password" not in c for c in before[1])

        added = officers + "110099,新警员,330100000001,执法大队,CARD110099,officer,true,4321\r\n"
        response = http.post("/api/registry/officers.csv", content=added.encode(), headers={"content-type": "text/csv"})
        assert response.json() == {"imported": 4}
        assert http.post("/api/registry/cameras.csv", content=cameras.encode()).json() == {"imported": 1}
        after = http.get("/api/registry/officers").json()
        assert after[:3] == before[0] and after[3]["name"] == "新警员"
        assert http.get("/api/registry/cameras").json() == before[1]
        ok = kiosk_http.post("/api/checkout/identify", json={"police_no": "110099", "pin": "4321"})
        assert ok.status_code == 200  # the PIN from the CSV works at the kiosk
        assert http.get("/api/registry/officers.csv").text.count("\r\n") == 5  # header + 4, PINs as hashes

        bad = "police_no,name,unit_code,unit_name,role\n110001,张伟,1,u,officer\nabc,王,1,u,chief\n"
        refused = http.post("/api/registry/officers.csv", content=bad.encode())
        assert refused.status_code == 400
        assert refused.json()["errors"] == [
            "row 3: police_no: must be 6 letters or digits",
        ]
        assert http.get("/api/registry/officers").json() == after  # nothing changed
        latin1 = http.post("/api/registry/cameras.csv", content=b"serial\nCAMCSV1\n\xff")
        assert latin1.status_code == 400 and "UTF-8" in latin1.json()["detail"]

        edit = http.put(f"/api/registry/officers/{A}", json={"active": False})
        assert edit.status_code == 200 and edit.json()["active"] is False
        assert kiosk_http.post("/api/checkout/identify", json={"card": f"CARD{A}"}).json()["error"] == (
            "checkout.error.inactive"
        )
        wrong = http.put(f"/api/registry/officers/{A}", json={"role": "boss"})
        assert wrong.status_code == 400 and wrong.json()["errors"] == ["role: must be one of officer, equipment, admin"]
        locked = http.put("/api/registry/cameras/CAMCSV1/lock", json={"reason": "镜头破裂"})
        assert locked.json()["lock"]["reason"] == "镜头破裂"
        assert station.station.db.call(lambda db: inventory.camera(db, "CAMCSV1"))["lock"]["reason"] == "镜头破裂"
        assert http.delete("/api/registry/cameras/CAMCSV1/lock").json()["lock"] is None
        assert http.put("/api/registry/cameras/NOSUCH1/lock", json={"reason": "x"}).status_code == 400
        spoof = http.put("/api/registry/cameras/CAMCSV1/lock", json={"reason": "x", "by": "110001"})
        assert spoof.status_code == 422  # who locks is the signed-in account, never the client's say


# -- the kiosk in Chromium
def kiosk(browser, station, lang: str):  # noqa: F811
    web_up(station)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, has_touch=True)
    page.goto(f"{base_url(station)}/kiosk?lang={lang}")
    page.wait_for_selector("#conn[data-state=live]")
    return page


def sign_in_page(page, username: str) -> None:
    page.wait_for_selector("#signin")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", STAFF_PASSWORD)
    page.click("#signin button")


def key_in(page, digits: str) -> None:
    for digit in digits:
        page.tap(f".key[data-key='{digit}']")


def identify_both(page, sim_server: SimServer, lang: str, shots: str | None = None) -> None:
    """Officer A swipes a card (the reader's event reaches the page over the live stream); officer B types
    police number and PIN on the on-screen keypad."""
    t = catalogue(lang)
    if shots:
        page.screenshot(path=str(ARTIFACTS / f"kiosk-1-identify-{shots}.png"), full_page=True)
    sim_server.badge.swipe(f"CARD{A}")
    page.wait_for_selector(".chip")
    assert page.locator(".chip").inner_text() == t["kiosk.identified"].format(name=f"警员{A}", police_no=A)
    assert page.locator("#who").inner_text() == t["kiosk.officer_n"].format(n=2)
    key_in(page, B)
    key_in(page, B[-4:])
    if shots:
        page.screenshot(path=str(ARTIFACTS / f"kiosk-2-second-officer-{shots}.png"), full_page=True)
    page.tap("#pin-ok")
    page.wait_for_selector("#flow[data-step=choose]")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_kiosk_full_checkout_and_checkin_by_docking(
    lang,
    tmp_path,
    world: SimWorld,
    sim_server: SimServer,
    start_station,
    browser,  # noqa: F811
) -> None:
    config = setup(tmp_path, world, {"CAMKSK1": {"battery_pct": 95}, "CAMKSK2": {"battery_pct": 70}}, devices=BADGE)
    station = start_station(cfg=config, serve_web=True)
    ready(station, sim_server, {"CAMKSK1": 2, "CAMKSK2": 4})
    ARTIFACTS.mkdir(exist_ok=True)
    t = catalogue(lang)
    page = kiosk(browser, station, lang)
    assert page.locator("h1").inner_text() == t["kiosk.title"]

    identify_both(page, sim_server, lang, shots=lang)
    recommended = page.locator("#recommended")
    assert recommended.get_attribute("data-bay") == "2"  # the best-charged camera
    assert t["kiosk.recommended"].format(bay=2, serial="CAMKSK1") in recommended.inner_text()
    assert page.locator("#others [data-bay='4']").count() == 1
    page.screenshot(path=str(ARTIFACTS / f"kiosk-3-choose-{lang}.png"), full_page=True)

    recommended.tap()
    page.wait_for_selector("#flow[data-step=done]", timeout=30_000)
    assert page.locator("#done-title").inner_text() == t["kiosk.success"].format(bay=2, serial="CAMKSK1")
    page.wait_for_selector("#bay-2[data-checkout=release]")
    assert page.locator("#bay-2 .message").inner_text() == t["bay.take"]
    page.screenshot(path=str(ARTIFACTS / f"kiosk-4-take-{lang}.png"), full_page=True)
    assert world.load("CAMKSK1").officer["police_no"] == A
    assert station.bay(2)["led"] == "take"

    sim_server.undock(2)  # taken on duty
    page.wait_for_selector("#bay-2[data-checkout=out]", timeout=20_000)
    assert page.locator("#bay-2 .message").inner_text() == t["bay.on_duty"]
    page.tap("#start-over")
    page.screenshot(path=str(ARTIFACTS / f"kiosk-5-on-duty-{lang}.png"), full_page=True)

    sim_server.dock("CAMKSK1", 3)  # check-in: any bay, nobody identifies
    page.wait_for_selector("#toast:not([hidden])", timeout=20_000)
    assert page.locator("#toast").inner_text() == t["kiosk.returned"].format(serial="CAMKSK1", bay=3)
    page.wait_for_selector("#bay-2[data-checkout='']")
    page.screenshot(path=str(ARTIFACTS / f"kiosk-6-returned-{lang}.png"), full_page=True)
    row = station.station.db.call(lambda db: db.table("assignments").all())[0]
    assert (row["status"], row["return_bay"]) == ("returned", 3)
    page.close()


def message_pattern(template: str) -> re.Pattern[str]:
    """A catalogue message with its {placeholders} as wildcards."""
    return re.compile("".join(".+?" if i % 2 else re.escape(p) for i, p in enumerate(re.split(r"\{\w+\}", template))))


@pytest.mark.parametrize("case", list(GATE_CASES))
def test_kiosk_refusal_names_the_failed_check(
    case,
    tmp_path,
    world,
    sim_server,
    start_station,
    browser,  # noqa: F811
) -> None:
    attrs, overrides, message, _ = GATE_CASES[case]
    cameras = {"CAMGATE": dict(attrs), "CAMNEXT": {"battery_pct": 80}}
    config = setup(tmp_path, world, cameras, devices=BADGE, **overrides)
    station = start_station(cfg=config, serve_web=True)
    sim_server.dock("CAMGATE", 1)
    if case == "offload":
        station.wait_bay(1, "error")
        overrides_free = False
    else:
        overrides_free = True
        station.wait_bay(1, "ready")
        wait_until(lambda: station.station.bays.offload_done(1), 60, "freed")
    if case != "offload":  # the store is full in that case: no camera gets offloaded
        ready(station, sim_server, {"CAMNEXT": 3})
    if case == "battery":
        world.set_battery("CAMGATE", 12)
    if case == "lock":
        station.station.db.call(lambda db: inventory.set_camera_lock(db, "CAMGATE", "镜头破裂", by="110012"))
    lang = "en" if case == "clock" else "zh"  # one refusal in English too
    t = catalogue(lang)
    page = kiosk(browser, station, lang)
    identify_both(page, sim_server, lang)
    page.tap("#others [data-bay='1']" if page.locator("#others [data-bay='1']").count() else "#recommended")
    page.wait_for_selector("#flow[data-step=refused]", timeout=30_000)
    reason = page.locator("#refused-reason")
    assert reason.get_attribute("data-code") == message
    assert message_pattern(t[message]).fullmatch(reason.inner_text()), reason.inner_text()
    if case == "battery":
        assert 12 <= int(re.findall(r"(\d+)%", reason.inner_text())[0]) < 50  # set to 12 %, charging since
    assert page.locator("#refused-title").inner_text() == t["kiosk.refused"].format(bay=1)
    page.screenshot(path=str(ARTIFACTS / f"kiosk-refused-{case}-{lang}.png"), full_page=True)
    assert world.load("CAMGATE").officer is None
    if overrides_free and case not in ("storage_gb", "firmware"):  # those two refuse every camera alike
        assert page.locator("#refused-next").inner_text() == t["kiosk.alternative"].format(bay=3, serial="CAMNEXT")
        page.tap("#take-alternative")
        page.wait_for_selector("#flow[data-step=done]", timeout=30_000)
        assert world.load("CAMNEXT").officer["police_no"] == A
    page.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_admin_page_shows_ratio_open_cameras_and_ledger(
    lang,
    tmp_path,
    world,
    sim_server,
    start_station,
    browser,  # noqa: F811
) -> None:
    config = setup(tmp_path, world, {"CAMADM1": {"battery_pct": 90}})
    station = start_station(cfg=config, serve_web=True)
    ready(station, sim_server, {"CAMADM1": 1})
    with client(station) as http:
        taken = http.post("/api/checkout", json={"tickets": [card_ticket(http, A), card_ticket(http, B)]})
        assert taken.status_code == 200, taken.text
    add_account(station, "equip1", "equipment")
    t = catalogue(lang)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{base_url(station)}/admin?lang={lang}")
    sign_in_page(page, "equip1")  # the admin page sends an anonymous visitor to sign in, then back
    page.wait_for_url("**/admin?lang=*")
    page.wait_for_selector("#conn[data-state=live]")
    page.wait_for_selector("#open td:has-text('CAMADM1')")
    ratio = page.locator("#ratio")
    assert ratio.get_attribute("data-ok") == "false"  # 3 officers, 1 camera: the standard is 2 per camera
    expected = t["admin.ratio_line"].format(officers=3, cameras=1, ratio=3, standard=2, cite="003 Art. 15")
    assert ratio.inner_text().startswith(expected)
    assert t["admin.ratio_short"].format(shortfall=1) in ratio.inner_text()
    page.wait_for_selector("#ledger td:has-text('CAMADM1')")  # the ledger loads on its own, after #open
    assert page.locator("#ledger td:has-text('CAMADM1')").count() == 1
    page.fill("input[name=since]", "2000-01-01")
    page.fill("input[name=until]", "2000-01-02")
    page.click("#ledger-filter button")
    page.wait_for_selector(f"#ledger td:has-text('{t['admin.none']}')")
    assert "since=2000-01-01" in page.locator("#ledger-csv").get_attribute("href")
    page.screenshot(path=str(ARTIFACTS / f"admin-{lang}.png"), full_page=True)
    page.close()
