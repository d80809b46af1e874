"""Equipment management over HTTP and in real headless Chromium: the maintenance log and schedule API, the
fault report at check-in on the kiosk (two taps), the gate's fault-lock message, the maintenance due list."""

from __future__ import annotations

import hashlib

import pytest
from markupsafe import escape

from appliance import faults, inventory, maintenance
from devices.sim.server import SimServer
from devices.sim.world import SimWorld
from tests.conftest import add_account, register_officers, signed_in, wait_until
from tests.test_access import events
from tests.test_checkout import A, B, ready, setup
from tests.test_kiosk import BADGE, card_ticket, client, identify_both, kiosk, sign_in_page, web_up
from tests.test_web import ARTIFACTS, base_url, browser  # noqa: F401  (browser is a fixture)
from web_ui.i18n import catalogue

STAFF = "220001"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_api_maintenance_entries_attachments_and_faults(tmp_path, world, sim_server, start_station) -> None:
    config = setup(tmp_path, world, {"CAMWEB1": {"registry": {"model": "DSJ-S1"}}})
    register_officers(config, {"police_no": STAFF, "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    web_up(station)
    add_account(station, "equip1", "equipment", police_no=STAFF)
    with signed_in(base_url(station), "equip1") as http:  # equipment staff, signed in, linked to STAFF
        photo = http.post("/api/maintenance/attachments", content=PNG)
        assert photo.status_code == 200 and photo.json()["sha256"] == hashlib.sha256(PNG).hexdigest()
        bad = http.post("/api/maintenance/attachments", content=b"GIF89a")
        assert bad.status_code == 400 and bad.json()["error"] == "attachment"
        assert http.get(f"/api/maintenance/attachments/{photo.json()['sha256']}").content == PNG
        assert http.get("/api/maintenance/attachments/" + "0" * 64).status_code == 404

        fault = http.post("/api/faults", json={"camera": "CAMWEB1", "reason": "lens", "text": "模糊"})
        assert fault.status_code == 200, fault.text
        assert fault.json()["by"] == STAFF  # the signed-in account's number
        assert [f["id"] for f in http.get("/api/faults").json()] == [fault.json()["id"]]
        entry = {
            "target": "camera",
            "target_id": "CAMWEB1",
            "kind": "repair",
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


def test_the_actor_is_the_signed_in_account_never_the_client(tmp_path, world, sim_server, start_station) -> None:
    """Entries and fault reports carry the signed-in account's police number; a client cannot name another
    (a body with ``by`` is refused before anything is stored), and an account with no number records nothing."""
    config = setup(tmp_path, world, {"CAMACT1": {}})
    register_officers(config, {"police_no": STAFF, "role": "equipment"}, {"police_no": "220002", "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    web_up(station)
    add_account(station, "equip1", "equipment", police_no=STAFF)
    add_account(station, "bare1", "equipment")  # staff role, but no police number linked
    add_account(station, "admin1", "admin")
    add_account(station, "officerish", "equipment", police_no=B)  # linked to an officer who is not staff
    add_account(station, "ghost1", "equipment", police_no="999999")  # linked to no one in the registry
    entry = {"target": "camera", "target_id": "CAMACT1", "kind": "cleaning", "what": "清洁镜头"}
    fault = {"camera": "CAMACT1", "reason": "lens", "text": "模糊"}

    def stored() -> tuple[list, list]:
        db = station.station.db
        return db.call(lambda d: maintenance.history(d)), db.call(faults.all_faults)

    with signed_in(base_url(station), "equip1") as http:
        # Someone else's number in the body: refused outright (StrictBody), nothing stored.
        assert http.post("/api/maintenance/entries", json={**entry, "by": "220002"}).status_code == 422
        assert http.post("/api/faults", json={**fault, "by": "220002"}).status_code == 422
        assert stored() == ([], [])
        made = http.post("/api/maintenance/entries", json=entry)
        assert made.status_code == 200, made.text
        opened = http.post("/api/faults", json=fault)
        assert opened.status_code == 200, opened.text
    (row,), (fault_row,) = stored()
    assert (row["by"], made.json()["by"], fault_row["by"]) == (STAFF, STAFF, STAFF)
    assert [e["by"] for e in events(station, "maintenance")] == [STAFF]
    assert [e["by"] for e in events(station, "fault_opened")] == [STAFF]

    for unlinked in ("bare1", "admin1"):  # the administrator may write, but in no one's name
        with signed_in(base_url(station), unlinked) as http:
            for path, body in (("/api/maintenance/entries", entry), ("/api/faults", fault)):
                refused = http.post(path, json=body)
                assert refused.status_code == 403, (unlinked, path, refused.text)
                assert refused.json() == {"detail": "auth.error.unlinked"}
            page = http.get("/admin/camera/CAMACT1?lang=en")
            assert escape(catalogue("en")["auth.error.unlinked"]) in page.text and 'name="by"' not in page.text
    assert [len(rows) for rows in stored()] == [1, 1]
    assert len(events(station, "maintenance")) == 1 and len(events(station, "fault_opened")) == 1

    # The registry still decides whether the linked number may act: an officer does not close a fault, and a
    # number the registry does not know records nothing.
    with signed_in(base_url(station), "officerish") as http:
        repair = {**entry, "kind": "repair", "faults": [fault_row["id"]]}
        refused = http.post("/api/maintenance/entries", json=repair)
        assert refused.status_code == 400 and refused.json()["field"] == "by", refused.text
    with signed_in(base_url(station), "ghost1") as http:
        refused = http.post("/api/maintenance/entries", json=entry)
        assert refused.status_code == 400 and "999999" in refused.json()["message"], refused.text
        refused = http.post("/api/faults", json=fault)
        assert refused.status_code == 400 and "no officer 999999" in refused.json()["message"], refused.text
    assert [len(rows) for rows in stored()] == [1, 1]


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
    add_account(station, "equip1", "equipment", police_no=STAFF)
    add_account(station, "bare1", "equipment")  # no police number linked: refused, and the page says why
    bare = browser.new_page(viewport={"width": 1280, "height": 900})
    bare.goto(f"{base_url(station)}/admin/camera/CAMFIX1?lang=en")
    sign_in_page(bare, "bare1")
    bare.wait_for_url("**/admin/camera/CAMFIX1?lang=en")
    assert bare.locator("#entry-actor").inner_text() == t["auth.error.unlinked"]
    bare.select_option("#entry-form select[name=kind]", "repair")
    bare.check(f"#entry-form input[value='{fault['id']}']")
    bare.click("#entry-form button[type=submit]")
    bare.wait_for_selector("#entry-error:not([hidden])")
    assert bare.locator("#entry-error").inner_text() == t["maint.form.error"].format(message=t["auth.error.unlinked"])
    bare.close()
    assert station.station.db.call(lambda db: maintenance.history(db)) == []

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url(station)}/admin/camera/CAMFIX1?lang=en")
    sign_in_page(page, "equip1")
    page.wait_for_url("**/admin/camera/CAMFIX1?lang=en")
    assert page.locator("#camera-lock").inner_text() == t["maint.locked"].format(reason=t["fault.reason.lens"])
    assert page.locator("#entry-form input[name=by]").count() == 0  # nobody types who they are
    assert page.locator("#entry-actor").get_attribute("data-police-no") == STAFF
    assert page.locator("#entry-actor").inner_text() == t["maint.form.by"].format(police_no=STAFF)
    page.select_option("#entry-form select[name=kind]", "repair")
    page.check(f"#entry-form input[value='{fault['id']}']")
    page.fill("#entry-form input[name=what]", "镜头更换")
    page.set_input_files("#entry-form input[name=attachment]", str(slip))
    page.click("#entry-form button[type=submit]")
    page.wait_for_selector("#camera-history tr[data-entry]")
    assert page.locator("#camera-lock").count() == 0
    row = page.locator("#camera-history tr[data-entry]")
    assert "镜头更换" in row.inner_text() and t["maint.kind.repair"] in row.inner_text() and STAFF in row.inner_text()
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
