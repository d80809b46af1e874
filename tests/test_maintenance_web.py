"""Equipment management over HTTP and in real headless Chromium: the maintenance log and schedule API, the
fault report at check-in on the kiosk (two taps), the gate's fault-lock message, the maintenance due list."""

from __future__ import annotations

import hashlib

import pytest

from appliance import faults, inventory
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from tests.conftest import add_account, register_officers, wait_until
from tests.test_checkout import A, B, ready, setup
from tests.test_kiosk import BADGE, card_ticket, client, identify_both, kiosk, sign_in_page, staff, web_up
from tests.test_web import ARTIFACTS, base_url, browser  # noqa: F401  (browser is a fixture)
from web_ui.i18n import catalogue

STAFF = "220001"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_api_maintenance_entries_attachments_and_faults(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMWEB1": {"registry": {"model": "DSJ-S1"}}})
    register_officers(config, {"police_no": STAFF, "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    with staff(station) as http:  # equipment staff, signed in
        photo = http.post("/api/maintenance/attachments", content=PNG)
        assert photo.status_code == 200 and photo.json()["sha256"] == hashlib.sha256(PNG).hexdigest()
        bad = http.post("/api/maintenance/attachments", content=b"GIF89a")
        assert bad.status_code == 400 and bad.json()["error"] == "attachment"
        assert http.get(f"/api/maintenance/attachments/{photo.json()['sha256']}").content == PNG
        assert http.get("/api/maintenance/attachments/" + "0" * 64).status_code == 404

        fault = http.post("/api/faults", json={"camera": "CAMWEB1", "reason": "lens", "by": STAFF, "text": "模糊"})
        assert fault.status_code == 200, fault.text
        assert [f["id"] for f in http.get("/api/faults").json()] == [fault.json()["id"]]
        entry = {
            "target": "camera",
            "target_id": "CAMWEB1",
            "kind": "repair",
            "by": STAFF,
            "what": "镜头更换",
            "attachments": [photo.json()["sha256"]],
            "faults": [fault.json()["id"]],
        }
        made = http.post("/api/maintenance/entries", json=entry)
        assert made.status_code == 200, made.text
        assert http.get("/api/faults").json() == []
        assert http.get("/api/faults", params={"status": "all"}).json()[0]["repair"] == made.json()["id"]
        fix = {**entry, "what": "镜头及保护盖更换", "faults": [], "corrects": made.json()["id"]}
        assert http.post("/api/maintenance/entries", json=fix).status_code == 200
        listed = http.get("/api/maintenance/entries", params={"target_id": "CAMWEB1"}).json()
        assert [e["what"] for e in listed] == ["镜头及保护盖更换"]
        assert len(http.get("/api/maintenance/entries", params={"history": True}).json()) == 2

        refused = http.post("/api/maintenance/entries", json={**entry, "faults": [], "kind": "polishing"})
        assert refused.status_code == 400 and refused.json()["field"] == "kind"
        assert http.post("/api/maintenance/entries", json={**entry, "extra": 1}).status_code == 422
        assert http.post("/api/maintenance/entries", json={**entry, "attachments": ["x"]}).status_code == 422

        schedule = http.get("/api/maintenance/schedule").json()
        assert [(r["camera"], r["state"], r["interval_days"]) for r in schedule] == [("CAMWEB1", "due", 90)]
        assert http.get("/api/maintenance/schedule/CAMWEB1").json()["state"] == "due"
        assert http.get("/api/maintenance/schedule/NOSUCH1").status_code == 404
    with client(station) as kiosk_display:  # the check-in report is the kiosk's
        checkin = kiosk_display.post("/api/faults/checkin", json={"camera": "CAMWEB1", "reason": "unresponsive"})
        assert checkin.status_code == 400 and "reason must be" in checkin.json()["message"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_kiosk_fault_report_at_checkin_locks_the_camera(
    lang,
    tmp_path,
    world: SimWorld,
    sim_server: SimServer,
    start_station,
    browser,  # noqa: F811
) -> None:
    config = setup(tmp_path, world, {"CAMKFL1": {"battery_pct": 100}}, devices=BADGE)
    station = start_station(cfg=config, serve_web=True)
    ready(station, sim_server, {"CAMKFL1": 1})
    with client(station) as http:
        taken = http.post("/api/checkout", json={"tickets": [card_ticket(http, A), card_ticket(http, B)]})
        assert taken.status_code == 200, taken.text
    sim_server.undock(1)
    wait_until(lambda: station.bay(1)["state"] == "empty", 20, "taken")
    ARTIFACTS.mkdir(exist_ok=True)
    t = catalogue(lang)
    page = kiosk(browser, station, lang)

    sim_server.dock("CAMKFL1", 2)  # check-in
    page.wait_for_selector("#checkin:not([hidden])", timeout=20_000)
    assert page.locator("#checkin-ask").inner_text() == t["kiosk.fault.ask"].format(serial="CAMKFL1")
    page.tap("#fault-open")  # tap 1
    reasons = page.locator("#fault-reasons [data-reason]")
    assert reasons.all_inner_texts() == [t[f"fault.reason.{c}"] for c in faults.OFFICER_REASONS]
    page.screenshot(path=str(ARTIFACTS / f"kiosk-fault-reasons-{lang}.png"), full_page=True)
    page.tap("#fault-reasons [data-reason=other]")  # "other" needs a description first
    assert page.locator("#fault-result").inner_text() == t["kiosk.fault.need_text"]
    assert station.station.db.call(faults.open_faults) == []
    page.fill("#fault-text", "屏幕有裂纹")
    page.tap("#fault-reasons [data-reason=damaged]")  # tap 2
    page.wait_for_selector("#fault-result[data-ok=true]")
    assert page.locator("#fault-result").inner_text() == t["kiosk.fault.sent"].format(serial="CAMKFL1")
    page.screenshot(path=str(ARTIFACTS / f"kiosk-fault-sent-{lang}.png"), full_page=True)
    (fault,) = station.station.db.call(faults.open_faults)
    assert (fault["camera"], fault["reason"], fault["text"], fault["by"]) == ("CAMKFL1", "damaged", "屏幕有裂纹", A)
    lock = station.station.db.call(lambda db: inventory.camera(db, "CAMKFL1"))["lock"]
    assert lock["faults"] == [fault["id"]]

    # The next pair is refused with the gate's lock message, the reason in their language.
    wait_until(lambda: station.station.bays.offload_done(2), 60, "freed")
    page.tap("#start-over")
    identify_both(page, sim_server, lang)
    page.tap("#others [data-bay='2']")
    page.wait_for_selector("#flow[data-step=refused]", timeout=30_000)
    reason = page.locator("#refused-reason")
    assert reason.get_attribute("data-code") == "gate.lock"
    assert reason.inner_text() == t["gate.lock"].format(reason=t["fault.reason.damaged"])
    page.close()


def test_kiosk_reminds_when_a_due_camera_is_docked(
    tmp_path,
    world: SimWorld,
    sim_server: SimServer,
    start_station,
    browser,  # noqa: F811
) -> None:
    config = setup(tmp_path, world, {"CAMDUE1": {}}, devices=BADGE)
    station = start_station(cfg=config, serve_web=True)
    page = kiosk(browser, station, "zh")
    sim_server.dock("CAMDUE1", 3)  # never maintained: due
    page.wait_for_selector("#reminders li[data-camera=CAMDUE1]", timeout=20_000)
    assert page.locator("#reminders li").inner_text() == catalogue("zh")["kiosk.fault.due"].format(serial="CAMDUE1")
    sim_server.undock(3)
    page.wait_for_selector("#reminders li", state="detached", timeout=20_000)
    page.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_admin_page_lists_maintenance_due_and_open_faults(
    lang,
    tmp_path,
    world: SimWorld,
    sim_server: SimServer,
    start_station,
    browser,  # noqa: F811
) -> None:
    from datetime import UTC, datetime, timedelta

    from appliance.maintenance import EntryRequest

    config = setup(tmp_path, world, {"CAMOLD1": {}, "CAMNEW1": {}, "CAMNVR1": {}})
    register_officers(config, {"police_no": STAFF, "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    equipment = station.station.equipment
    now = datetime.now(UTC)
    equipment.record(EntryRequest("camera", "CAMOLD1", "cleaning", STAFF, performed_at=now - timedelta(days=100)))
    equipment.record(EntryRequest("camera", "CAMNEW1", "inspection", STAFF, performed_at=now - timedelta(days=1)))
    equipment.report_fault("CAMNEW1", "buttons", "officer", A, "电源键卡住")
    web_up(station)
    t = catalogue(lang)
    add_account(station, "equip1", "equipment")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url(station)}/admin?lang={lang}")
    sign_in_page(page, "equip1")
    page.wait_for_url("**/admin?lang=*")
    page.wait_for_selector("#maintenance-due tr[data-camera=CAMOLD1]")
    due = page.locator("#maintenance-due tbody tr")
    # Overdue first, then never maintained; the camera maintained yesterday is not listed.
    assert [r.get_attribute("data-camera") for r in due.all()] == ["CAMOLD1", "CAMNVR1"]
    assert [r.get_attribute("data-state") for r in due.all()] == ["overdue", "due"]
    assert due.nth(0).locator("td").nth(4).inner_text() == t["maint.state.overdue"]
    assert due.nth(1).locator("td").nth(2).inner_text() == t["maint.never"]
    fault_row = page.locator("#open-faults tr[data-camera=CAMNEW1]")
    assert t["fault.reason.buttons"] in fault_row.inner_text() and "电源键卡住" in fault_row.inner_text()
    page.screenshot(path=str(ARTIFACTS / f"admin-maintenance-{lang}.png"), full_page=True)

    page.click("#maintenance-due a:has-text('CAMOLD1')")  # the camera's own page
    page.wait_for_selector("#camera-history")
    assert page.locator("h1").inner_text() == t["maint.camera_title"].format(serial="CAMOLD1")
    assert page.locator("#camera-history tbody tr").count() == 1
    assert t["maint.kind.cleaning"] in page.locator("#camera-history").inner_text()
    assert page.locator("#battery svg.chart").count() == 0  # no charges yet: no empty chart
    page.goto(f"{base_url(station)}/admin/report?lang={lang}")
    page.wait_for_selector("#report-faults")
    assert page.locator("#report-faults p").first.inner_text() == t["report.faults_line"].format(
        opened=1, repaired=0, open=1
    )
    page.screenshot(path=str(ARTIFACTS / f"admin-report-{lang}.png"), full_page=True)
    page.close()


def test_camera_page_records_a_repair_that_closes_the_fault(
    tmp_path,
    world: SimWorld,
    sim_server: SimServer,
    start_station,
    browser,  # noqa: F811
) -> None:
    config = setup(tmp_path, world, {"CAMFIX1": {}})
    register_officers(config, {"police_no": STAFF, "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    fault = station.station.equipment.report_fault("CAMFIX1", "lens", "officer", A, "画面模糊")
    web_up(station)
    t = catalogue("en")
    slip = tmp_path / "slip.png"
    slip.write_bytes(PNG)
    add_account(station, "equip1", "equipment")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url(station)}/admin/camera/CAMFIX1?lang=en")
    sign_in_page(page, "equip1")
    page.wait_for_url("**/admin/camera/CAMFIX1?lang=en")
    assert page.locator("#camera-lock").inner_text() == t["maint.locked"].format(reason=t["fault.reason.lens"])
    page.select_option("#entry-form select[name=kind]", "repair")
    page.fill("#entry-form input[name=by]", B)  # an ordinary officer may not close a fault
    page.check(f"#entry-form input[value='{fault['id']}']")
    page.click("#entry-form button[type=submit]")
    page.wait_for_selector("#entry-error:not([hidden])")
    assert "equipment staff" in page.locator("#entry-error").inner_text()
    page.fill("#entry-form input[name=by]", STAFF)
    page.fill("#entry-form input[name=what]", "镜头更换")
    page.set_input_files("#entry-form input[name=attachment]", str(slip))
    page.click("#entry-form button[type=submit]")
    page.wait_for_selector("#camera-history tr[data-entry]")
    assert page.locator("#camera-lock").count() == 0
    row = page.locator("#camera-history tr[data-entry]")
    assert "镜头更换" in row.inner_text() and t["maint.kind.repair"] in row.inner_text()
    assert (
        page.locator(
            f"#camera-history a[href='/api/maintenance/attachments/{hashlib.sha256(PNG).hexdigest()}']"
        ).count()
        == 1
    )
    assert page.locator(f"#camera-faults tr[data-fault='{fault['id']}']").get_attribute("data-status") == "closed"
    page.screenshot(path=str(ARTIFACTS / "camera-page-en.png"), full_page=True)
    page.close()
    assert station.station.db.call(lambda db: inventory.camera(db, "CAMFIX1"))["lock"] is None
