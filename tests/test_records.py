"""An officer's own recordings after a shift: tags set the retention class and are logged, a tag may not
shorten retention, gaps between recordings of one assignment are found from the MP4s and explained."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import tomli_w
from tinydb import Query

from appliance.config import load_config
from appliance.offload import RECORDINGS
from tests.conftest import register_cameras, register_officers, wait_until, write_config, write_test_profile
from tests.test_kiosk import ARTIFACTS, browser, card_ticket, client  # noqa: F401  (browser is a fixture)
from tests.test_web import base_url

A, B, C = "110001", "110002", "110003"
SERIAL = "CAMREC1"
GAP_S = 30  # the test profile's gap threshold: the simulator's clips are close together


def events(station, type_: str) -> list[dict]:
    lines = (station.config.log_dir / "entries.jsonl").read_text().splitlines()
    return [e["body"] for e in map(json.loads, lines) if e["type"] == type_]


def shift_with_a_gap(tmp_path: Path, world, sim_server, start_station):
    """A and B take the camera, record one clip, pause about 100 s (by the camera's clock), record another,
    and dock it again."""
    profile = write_test_profile(tmp_path)
    data = tomllib.loads(profile.read_text())
    data["gap_threshold_s"]["value"] = GAP_S
    profile.write_text(tomli_w.dumps(data))
    config = load_config(write_config(tmp_path, world, policy={"profile_file": str(profile)}))
    world.create_camera(SERIAL, fs_type="vfat", size_mib=40, battery_pct=90)
    register_cameras(config, SERIAL)
    register_officers(config, {"police_no": A}, {"police_no": B}, {"police_no": C})
    station = start_station(cfg=config, serve_web=True)
    sim_server.dock(SERIAL, 1)
    wait_until(lambda: station.station.bays.offload_done(1), 60, "camera ready")
    service = station.station.checkout
    tickets = [station.call(service.identify(card=f"CARD{p}"))["ticket"] for p in (A, B)]
    station.call(service.checkout(tickets))
    sim_server.undock(1)
    camera = world.load(SERIAL)
    camera.clock_offset_s -= 100  # the first clip, then a pause on duty
    world.save(camera)
    world.record(SERIAL, 1)
    camera = world.load(SERIAL)
    camera.clock_offset_s += 100
    world.save(camera)
    world.record(SERIAL, 1)
    sim_server.dock(SERIAL, 2)
    wait_until(lambda: station.station.bays.offload_done(2), 60, "returned camera offloaded")
    return station


def test_officers_tag_their_own_recordings_and_explain_the_gap(tmp_path, world, sim_server, start_station) -> None:
    station = shift_with_a_gap(tmp_path, world, sim_server, start_station)
    with client(station) as http:
        a = card_ticket(http, A)
        mine = http.post("/api/records/mine", json={"ticket": a}).json()
        assert len(mine["recordings"]) == 2 and all(r["classification"] is None for r in mine["recordings"])
        assert all(r["retention_class"] == "unclassified" for r in mine["recordings"])
        [gap] = mine["gaps"]
        assert gap["seconds"] > GAP_S and gap["explanation"] is None

        sha = mine["recordings"][0]["sha256"]
        tag = {"category": "coercive_measure", "place": "人民路 12 号", "description": "带离现场"}
        with client(station) as elsewhere:  # C, not on this shift, at the kiosk later: sees nothing, tags nothing
            other = card_ticket(elsewhere, C)
            assert elsewhere.post("/api/records/mine", json={"ticket": other}).json()["recordings"] == []
            refused = elsewhere.post(f"/api/records/{sha}/tag", json={"ticket": other, **tag})
            assert refused.status_code == 403 and refused.json()["error"] == "records.error.not_yours"
            stolen = elsewhere.post("/api/records/mine", json={"ticket": a})  # A's ticket, another session
            assert stolen.status_code == 400 and stolen.json()["error"] == "checkout.error.ticket"

        missing = http.post(f"/api/records/{sha}/tag", json={"ticket": a, **tag, "place": " "})
        assert missing.status_code == 400 and missing.json() == {
            "error": "records.error.field",
            "args": {"field": "place"},
        }
        # Wait until the central store confirmed it: a tag after upload must re-lock the central copy.
        uploaded = lambda: station.station.db.call(  # noqa: E731
            lambda db: db.table(RECORDINGS).get(Query().sha256 == sha)
        )
        wait_until(lambda: uploaded()["status"] == "uploaded", 60, "upload receipt")
        lock_before = station.station.uploader.central.lock_of(uploaded()["archive_key"])
        assert lock_before is not None and lock_before.legal_hold  # unclassified: held until someone tags it
        tagged = http.post(f"/api/records/{sha}/tag", json={"ticket": a, **tag})
        assert tagged.status_code == 200, tagged.text
        assert tagged.json()["retention_class"] == "long_term"
        shorter = http.post(f"/api/records/{sha}/tag", json={"ticket": a, **tag, "category": "routine_patrol"})
        assert shorter.status_code == 409 and shorter.json()["error"] == "records.error.shorter"
        wait_until(lambda: events(station, "relock"), 30, "the central copy re-locked")
        [relock] = events(station, "relock")
        assert relock["sha256"] == sha and relock["legal_hold"] is True and relock["retention_class"] == "long_term"
        lock_after = station.station.uploader.central.lock_of(uploaded()["archive_key"])
        assert lock_after.legal_hold and lock_after.retain_until >= lock_before.retain_until
        logged = events(station, "classification")[0]
        assert logged["sha256"] == sha and logged["by"] == A and logged["retention_class"] == "long_term"
        assert logged["previous_class"] == "unclassified" and logged["tag"]["category"] == "coercive_measure"

        # The first tag may be the shortest class (untagged is a placeholder, not a promise); then only longer.
        other_sha = mine["recordings"][1]["sha256"]
        routine = {**tag, "category": "routine_patrol"}
        assert http.post(f"/api/records/{other_sha}/tag", json={"ticket": a, **routine}).json()["retention_class"] == (
            "routine"
        )
        # As if that first tag was two days ago: a re-tag now must not move the time the deadline was met.
        earlier = "2026-01-05T08:00:00+00:00"
        station.station.db.call(
            lambda db: db.table(RECORDINGS).update(
                {"classified_at": earlier, "first_classified_at": earlier}, Query().sha256 == other_sha
            )
        )
        case = {**routine, "case_number": "A2026-118"}
        assert http.post(f"/api/records/{other_sha}/tag", json={"ticket": a, **case}).json()["retention_class"] == (
            "evidence"
        )
        row = station.station.db.call(lambda db: db.table(RECORDINGS).get(Query().sha256 == other_sha))
        assert row["first_classified_at"] == earlier and row["classified_at"] > earlier
        assert http.post(f"/api/records/{other_sha}/tag", json={"ticket": a, **routine}).status_code == 409

        b = card_ticket(http, B)  # the other officer of the pair, at the same kiosk: explains the gap
        body = {"ticket": b, "assignment": gap["assignment"], "start": gap["start"], "text": "协助群众，未开机"}
        assert http.post("/api/records/gaps/explain", json=body).status_code == 200
        [note] = events(station, "gap_explanation")
        assert note["by"] == B and note["text"] == "协助群众，未开机" and note["seconds"] == gap["seconds"]
        again = http.post("/api/records/mine", json={"ticket": a}).json()
        assert again["gaps"][0]["explanation"] == "协助群众，未开机"

        wrong = http.post("/api/records/gaps/explain", json={**body, "start": "2000-01-01T00:00:00"})
        assert wrong.status_code == 404 and wrong.json()["error"] == "records.error.no_gap"
        stale = http.post("/api/records/mine", json={"ticket": "not-a-ticket"})
        assert stale.status_code == 400 and stale.json()["error"] == "checkout.error.ticket"
        assert http.post("/api/records/xyz/tag", json={"ticket": a, **tag}).status_code == 422


def test_records_page_in_chromium(tmp_path, world, sim_server, start_station, browser) -> None:  # noqa: F811
    station = shift_with_a_gap(tmp_path, world, sim_server, start_station)
    client(station).close()  # the web server answers
    ARTIFACTS.mkdir(exist_ok=True)
    for lang in ("zh", "en"):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base_url(station)}/kiosk/records?lang={lang}")
        page.fill("#police-no", A)
        page.fill("#pin", A[-4:])
        page.click("#pin-form button[type=submit]")
        page.wait_for_selector("#recordings tr")
        rows = page.locator("#recordings tr")
        assert rows.count() == 2
        if lang == "zh":
            form = rows.nth(0).locator("form")
            form.locator("select[name=category]").select_option("dispute_complaint")
            form.locator("input[name=place]").fill("信访接待室")
            form.locator("input[name=description]").fill("当事人投诉")
            form.locator("button[type=submit]").click()
            page.wait_for_selector("#recordings tr[data-retention=long_term]")
            gap = page.locator("#gaps li").first
            gap.locator("input[name=text]").fill("设备交接")
            gap.locator("button[type=submit]").click()
            page.wait_for_selector("#gaps li p.ok")
            assert "设备交接" in page.locator("#gaps li p.ok").inner_text()
        else:
            assert page.locator("#recordings tr[data-retention=long_term]").count() == 1  # saved in zh
        page.screenshot(path=str(ARTIFACTS / f"records-{lang}.png"), full_page=True)
        page.click("#done")
        page.wait_for_selector("#identify:not([hidden])")
        page.close()


def test_the_audit_holds_each_central_copy_to_the_lock_its_tags_demand(
    tmp_path, world, sim_server, start_station
) -> None:
    """Tags change the class (classification entries), the station re-locks the central copies; the audit
    reads the class from the log: a long-term recording must stay held, a routine one needs no hold."""
    from click.testing import CliRunner

    from appliance.central.archive import ArchiveStore
    from appliance.cli import main
    from appliance.state.atomic import atomic_write_json

    station = shift_with_a_gap(tmp_path, world, sim_server, start_station)
    rows = lambda: station.station.db.call(lambda db: db.table(RECORDINGS).all())  # noqa: E731
    wait_until(lambda: len(rows()) == 2 and all(r["status"] == "uploaded" for r in rows()), 60, "uploads")
    first, second = sorted(rows(), key=lambda r: r["key"])
    where = {"place": "人民路 12 号", "description": "带离现场"}
    station.station.records.tag(A, first["sha256"], {"category": "coercive_measure", **where})  # long_term
    station.station.records.tag(A, second["sha256"], {"category": "routine_patrol", **where})  # routine
    segments = station.config.archive_dir / "test-station" / "log" / "entries"
    wait_until(
        lambda: sum(p.read_bytes().count(b'"type":"relock"') for p in segments.glob("*.jsonl")) == 2,
        60,
        "both re-locks in the archived log",
    )
    station.stop()
    target = str(station.config.archive_dir / "test-station")
    audit = ["audit", target, "--pubkey", str(station.config.keys_dir / "station-signing.pub.pem")]
    result = CliRunner().invoke(main, audit)
    assert result.exit_code == 0, result.output
    assert "ingests: 2 received, 0 pending, 0 missing" in result.output

    archive = ArchiveStore(station.config.archive_dir)
    for row in (first, second):  # someone with the archive's files lifts both holds
        lock = archive.lock_of(row["archive_key"])
        record = {"retain_until": lock.retain_until.isoformat(), "legal_hold": False}
        atomic_write_json(archive._lock_path(row["archive_key"]), record)
    result = CliRunner().invoke(main, audit)
    assert result.exit_code == 1, result.output
    assert f"ERROR {first['archive_key']}: " in result.output and "its class long_term needs" in result.output
    assert second["archive_key"] + ":" not in result.output  # routine: no hold needed
