"""Spot checks (004 Art. 22): a reproducible sample stratified by officer, its seed in the signed log, verdicts
in the inspection ledger, and viewing refused until the approval flow exists."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from appliance import spot_checks
from appliance.checkout import ASSIGNMENTS
from appliance.config import StationConfig
from appliance.eventlog import EventLog
from appliance.offload import RECORDINGS
from appliance.spot_checks import ApprovalRequired, SpotCheckError, SpotChecks, allocate, draw_sample
from appliance.state.db import StateDB
from tests.conftest import add_account, register_officers, signed_in
from tests.test_access import events
from tests.test_kiosk import sign_in_page, web_up
from tests.test_web import ARTIFACTS, base_url, browser  # noqa: F401  (browser is a fixture)
from web_ui.i18n import catalogue

SUPERVISOR = "330001"
TZ_DAY = date(2026, 3, 10)
# Officers and how many recordings each made: one busy, two quiet.
MADE = {"110001": 40, "110002": 8, "110003": 2}


def fill(db: StateDB) -> None:
    """Assignments returned on 10 March and the recordings ingested from them, plus one stray file."""
    back = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assignments, recordings = [], []
    for n, (officer, count) in enumerate(MADE.items()):
        camera = f"CAMSPT{n}"
        returned = back + timedelta(minutes=n)
        assignments.append(
            {"id": f"as{n}", "camera": camera, "officers": [{"police_no": officer, "name": officer}],
             "returned_at": returned.isoformat(timespec="seconds"), "issued_at": "2026-03-10T00:00:00+00:00"}
        )  # fmt: skip
        for i in range(count):
            recordings.append(
                {"key": f"{camera}/{i:04d}", "camera_serial": camera, "name": f"{i:04d}.MP4", "status": "verified",
                 "ingested_at": (returned + timedelta(seconds=5 + i)).isoformat(timespec="seconds")}
            )  # fmt: skip
    recordings.append(
        {"key": "CAMSPT9/0001", "camera_serial": "CAMSPT9", "name": "0001.MP4", "status": "uploaded",
         "ingested_at": back.isoformat(timespec="seconds")}
    )  # fmt: skip
    recordings.append(  # not verified yet: not part of any check
        {"key": "CAMSPT0/9999", "camera_serial": "CAMSPT0", "name": "9999.MP4", "status": "copying",
         "ingested_at": back.isoformat(timespec="seconds")}
    )  # fmt: skip
    db.call(
        lambda tdb: (
            tdb.table(ASSIGNMENTS).insert_multiple(assignments),
            tdb.table(RECORDINGS).insert_multiple(recordings),
        )
    )


@pytest.fixture
def checks(config: StationConfig) -> Iterator[SpotChecks]:
    register_officers(config, {"police_no": SUPERVISOR, "role": "admin"}, *({"police_no": o} for o in MADE))
    db = StateDB(config.state_dir / "state.json")
    events = EventLog(config.log_dir)
    fill(db)
    yield SpotChecks(db, events, ZoneInfo("Asia/Shanghai"))
    events.close()
    db.close()


def test_allocation_is_proportional_with_one_per_officer() -> None:
    assert allocate({"a": 40, "b": 8, "c": 2}, 10) == {"a": 7, "b": 2, "c": 1}
    assert sum(allocate({"a": 40, "b": 8, "c": 2}, 10).values()) == 10
    assert allocate({"a": 40, "b": 8, "c": 2}, 100) == {"a": 40, "b": 8, "c": 2}  # everything, no more
    assert allocate({"a": 3, "b": 1}, 2) == {"a": 1, "b": 1}


def test_draw_is_stratified_reproducible_and_logged(checks, config) -> None:
    check = checks.draw(SUPERVISOR, 10, TZ_DAY, TZ_DAY, seed=20260310)
    assert check["population"] == 51 and check["strata"] == {**MADE, "unassigned": 1}
    per_officer = Counter(r["officer"] for r in check["sample"])
    assert len(check["sample"]) == 10 and set(per_officer) == {*MADE, "unassigned"}  # every officer looked at
    assert per_officer["110001"] > per_officer["110002"] >= per_officer["110003"] == 1
    assert all(r["key"] != "CAMSPT0/9999" for r in check["sample"])

    again = checks.draw(SUPERVISOR, 10, TZ_DAY, TZ_DAY, seed=20260310)
    assert [r["key"] for r in again["sample"]] == [r["key"] for r in check["sample"]]
    other = checks.draw(SUPERVISOR, 10, TZ_DAY, TZ_DAY, seed=1)
    assert [r["key"] for r in other["sample"]] != [r["key"] for r in check["sample"]]
    logged = [json.loads(line) for line in (config.log_dir / "entries.jsonl").read_text().splitlines()]
    first = logged[0]["body"]
    assert logged[0]["type"] == "spot_check_drawn" and first["seed"] == 20260310
    assert first["keys"] == [r["key"] for r in check["sample"]]
    # From the log alone an auditor redraws the same sample.
    population = checks.db.call(lambda db: spot_checks.population(db, checks.tz, TZ_DAY, TZ_DAY))
    assert [r["key"] for r in draw_sample(population, first["size"], first["seed"])] == first["keys"]
    unseeded = checks.draw(SUPERVISOR, 5, TZ_DAY, TZ_DAY)
    assert isinstance(unseeded["seed"], int) and len(unseeded["sample"]) == 5


def test_verdicts_go_into_the_ledger_and_viewing_needs_approval(checks, config) -> None:
    check = checks.draw(SUPERVISOR, 3, TZ_DAY, TZ_DAY, seed=7)
    key = check["sample"][0]["key"]
    done = checks.verdict(check["id"], key, SUPERVISOR, "issue", "未全程录音")
    row = next(r for r in done["sample"] if r["key"] == key)
    assert (row["verdict"], row["note"], row["reviewed_by"]) == ("issue", "未全程录音", SUPERVISOR)
    with pytest.raises(SpotCheckError, match="not in spot check"):
        checks.verdict(check["id"], "CAMSPT9/9999", SUPERVISOR, "compliant")
    with pytest.raises(SpotCheckError, match="verdict must be"):
        checks.verdict(check["id"], key, SUPERVISOR, "fine")
    with pytest.raises(ApprovalRequired):
        checks.view(check["id"], key, SUPERVISOR)
    checks.approve_view = lambda check_id, k, viewer: viewer == SUPERVISOR  # what the approval flow will plug in
    checks.view(check["id"], key, SUPERVISOR)
    types = [json.loads(line)["type"] for line in (config.log_dir / "entries.jsonl").read_text().splitlines()]
    assert types == ["spot_check_drawn", "spot_check_result", "spot_check_view", "spot_check_view"]
    with pytest.raises(SpotCheckError, match="no recordings"):
        checks.draw(SUPERVISOR, 3, date(2020, 1, 1), date(2020, 1, 2))
    with pytest.raises(SpotCheckError, match="sample size"):
        checks.draw(SUPERVISOR, 0, TZ_DAY, TZ_DAY)
    with pytest.raises(SpotCheckError, match="no officer"):
        checks.draw("999999", 3, TZ_DAY, TZ_DAY)


def test_spot_check_api(tmp_path, world, sim_server, start_station) -> None:
    from tests.test_checkout import setup

    config = setup(tmp_path, world, {}, central={"kind": "disabled"})  # the synthetic rows are not uploadable
    register_officers(config, {"police_no": SUPERVISOR, "role": "admin"}, *({"police_no": o} for o in MADE))
    station = start_station(cfg=config, serve_web=True)
    fill(station.station.db)
    web_up(station)
    add_account(station, "super1", "supervisor", police_no=SUPERVISOR)
    add_account(station, "super2", "supervisor")  # no police number linked
    body = {"size": 4, "since": "2026-03-10", "until": "2026-03-10", "seed": 99}
    with signed_in(base_url(station), "super1") as http:
        # Another reviewer's number in the body is refused outright; nothing is drawn.
        assert http.post("/api/spot-checks", json={**body, "by": "110001"}).status_code == 422
        assert station.station.db.call(spot_checks.ledger) == []
        drawn = http.post("/api/spot-checks", json=body)
        assert drawn.status_code == 200, drawn.text
        assert drawn.json()["by"] == SUPERVISOR  # the signed-in account's number
        key = drawn.json()["sample"][0]["key"]
        check_id = drawn.json()["id"]
        verdict = {"key": key, "verdict": "compliant"}
        assert http.post(f"/api/spot-checks/{check_id}/verdicts", json={**verdict, "by": "110001"}).status_code == 422
        assert http.post(f"/api/spot-checks/{check_id}/verdicts", json=verdict).status_code == 200
        (row,) = http.get("/api/spot-checks").json()
        assert (row["by"], row["sample"][0]["verdict"], row["sample"][0]["reviewed_by"]) == (
            SUPERVISOR,
            "compliant",
            SUPERVISOR,
        )
        # A number in the query is no longer read: the view is logged under the session's number.
        view = http.get(f"/api/spot-checks/{check_id}/recordings/{key}/view", params={"by": "110001"})
        assert view.status_code == 403 and view.json()["error"] == "approval_required"
        assert http.post("/api/spot-checks", json={**body, "size": 0}).status_code == 422
        empty = http.post("/api/spot-checks", json={**body, "since": "2020-01-01", "until": "2020-01-01"})
        assert empty.status_code == 400 and empty.json()["error"] == "spot_check"
    assert [e["by"] for e in events(station, "spot_check_drawn")] == [SUPERVISOR]
    assert [e["by"] for e in events(station, "spot_check_result")] == [SUPERVISOR]
    assert [e["by"] for e in events(station, "spot_check_view")] == [SUPERVISOR]

    with signed_in(base_url(station), "super2") as http:  # unlinked: draws, judges and views nothing
        for refused in (
            http.post("/api/spot-checks", json=body),
            http.post(f"/api/spot-checks/{check_id}/verdicts", json={**verdict, "verdict": "issue"}),
            http.get(f"/api/spot-checks/{check_id}/recordings/{key}/view"),
        ):
            assert refused.status_code == 403 and refused.json() == {"detail": "auth.error.unlinked"}, refused.text
    (row,) = station.station.db.call(spot_checks.ledger)
    assert row["sample"][0]["verdict"] == "compliant"
    assert [len(events(station, t)) for t in ("spot_check_drawn", "spot_check_result", "spot_check_view")] == [1, 1, 1]


def test_spot_check_panel_in_chromium(tmp_path, world, sim_server, start_station, browser) -> None:  # noqa: F811
    from tests.test_checkout import setup

    config = setup(tmp_path, world, {}, central={"kind": "disabled"})
    register_officers(config, {"police_no": SUPERVISOR, "role": "admin"}, *({"police_no": o} for o in MADE))
    station = start_station(cfg=config, serve_web=True)
    fill(station.station.db)
    web_up(station)
    t = catalogue("zh")
    add_account(station, "super1", "supervisor", police_no=SUPERVISOR)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url(station)}/admin?lang=zh")
    sign_in_page(page, "super1")
    page.wait_for_url("**/admin?lang=zh")
    page.wait_for_selector("#conn[data-state=live]")
    assert page.locator("#spot-form input[name=by]").count() == 0  # the reviewer is the signed-in account
    page.wait_for_selector(f"#spot-actor[data-police-no='{SUPERVISOR}']")
    assert page.locator("#spot-actor").inner_text() == t["spot.by"].format(police_no=SUPERVISOR)
    page.fill("#spot-form input[name=size]", "6")
    page.fill("#spot-form input[name=sample_since]", "2026-03-10")
    page.fill("#spot-form input[name=sample_until]", "2026-03-10")
    page.fill("#spot-form input[name=seed]", "42")
    page.click("#spot-form button[type=submit]")
    page.wait_for_selector("#spot-sample tr[data-key]")
    rows = page.locator("#spot-sample tr[data-key]")
    assert rows.count() == 6 and "42" in page.locator("#spot-result").inner_text()
    population = station.station.db.call(
        lambda db: spot_checks.population(db, ZoneInfo("Asia/Shanghai"), TZ_DAY, TZ_DAY)
    )
    assert [r.get_attribute("data-key") for r in rows.all()] == [r["key"] for r in draw_sample(population, 6, 42)]
    first = rows.first
    first.locator("button[data-verdict=issue]").click()
    page.wait_for_selector("#spot-sample tr[data-verdict=issue]")
    (check,) = station.station.db.call(spot_checks.ledger)
    assert (check["by"], check["sample"][0]["verdict"], check["sample"][0]["reviewed_by"]) == (
        SUPERVISOR,
        "issue",
        SUPERVISOR,
    )
    page.locator("#spot-sample tr[data-key] button[data-action=view]").first.click()
    page.wait_for_function(
        "text => document.getElementById('spot-result').textContent === text", arg=t["spot.approval"]
    )
    page.screenshot(path=str(ARTIFACTS / "admin-spot-check-zh.png"), full_page=True)
    page.close()
