"""The monthly report (004 Art. 23) over a month of known activity: the figures, the CSV, the page with its
charts, and a PDF whose first page renders (pdftoppm) with ink on it and the CJK font embedded."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance import faults, reports
from appliance.checkout import ASSIGNMENTS
from appliance.deadlines import WorkCalendar
from appliance.maintenance import EntryRequest
from appliance.offload import RECORDINGS
from tests.conftest import add_account, register_officers, signed_in
from tests.test_checkout import A, B, C, setup
from tests.test_kiosk import web_up
from tests.test_web import ARTIFACTS, base_url
from web_ui.i18n import catalogue

STAFF = "220001"
TZ = ZoneInfo("Asia/Shanghai")
MARCH = datetime(2026, 3, 2, 9, 0, tzinfo=TZ).astimezone(UTC)  # a Monday


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def fill_march(station) -> None:
    """Five check-outs (one cancelled), three faults (two repaired), uploads on time, late and missing,
    and one assignment from February and one from April that must not count."""
    db, equipment = station.station.db, station.station.equipment
    rows = []
    for n, (camera, pair, status) in enumerate(
        [("CAMRPT1", (A, B), "returned"), ("CAMRPT1", (A, C), "returned"), ("CAMRPT2", (B, C), "returned"),
         ("CAMRPT2", (A, B), "out"), ("CAMRPT1", (B, C), "cancelled")]
    ):  # fmt: skip
        issued = MARCH + timedelta(days=n)
        rows.append(
            {"id": f"as{n}", "camera": camera, "bay": 1, "issued_at": iso(issued), "status": status,
             "due_at": iso(issued + timedelta(hours=12)), "taken_at": iso(issued), "return_bay": None,
             "returned_at": iso(issued + timedelta(hours=8)) if status == "returned" else None,
             "officers": [{"police_no": p, "name": f"警员{p}"} for p in pair]}
        )  # fmt: skip
    rows.append({**rows[0], "id": "feb", "issued_at": iso(MARCH - timedelta(days=5))})
    rows.append({**rows[0], "id": "apr", "issued_at": iso(MARCH + timedelta(days=31))})
    db.call(lambda tdb: tdb.table(ASSIGNMENTS).insert_multiple(rows))

    opened = [equipment.report_fault("CAMRPT1", r, "officer", A) for r in ("lens", "battery")]
    opened.append(equipment.report_fault("CAMRPT2", "unresponsive", "station", "station"))
    times = {opened[0]["id"]: (2, 26), opened[1]["id"]: (3, 5), opened[2]["id"]: (10, None)}  # day, hours to repair
    for fault in opened:
        day, hours = times[fault["id"]]
        start = MARCH + timedelta(days=day)
        update = {"opened_at": iso(start)}
        db.call(lambda tdb, f=fault, u=update: tdb.table(faults.TABLE).update(u, doc_ids=[tdb.table(faults.TABLE).get(
            lambda r, i=f["id"]: r["id"] == i).doc_id]))  # fmt: skip
        if hours is not None:
            equipment.record(
                EntryRequest("camera", fault["camera"], "repair", STAFF, faults=(fault["id"],), performed_at=start)
            )
            closed = {"closed_at": iso(start + timedelta(hours=hours))}
            db.call(lambda tdb, f=fault, c=closed: tdb.table(faults.TABLE).update(c, lambda r, i=f["id"]: r["id"] == i))
    equipment.record(EntryRequest("camera", "CAMRPT2", "cleaning", STAFF, performed_at=MARCH + timedelta(days=4)))

    recordings = []
    # (hours after ingest day 8 09:00: ingested, uploaded, first tagged): tagged 1 h after upload (twice), ten
    # days after (late), never (missed); one never uploaded, so its classification deadline never started.
    for n, (ingested_h, uploaded_h, tagged_h) in enumerate(
        [(0, 2, 3), (0, 20, 260), (24, 30, None), (48, 80, 81), (72, None, None)]
    ):
        ingested = MARCH + timedelta(days=8, hours=ingested_h)
        at = lambda hours: iso(MARCH + timedelta(days=8, hours=hours))  # noqa: E731
        recordings.append(
            {"key": f"CAMRPT1/{n}", "camera_serial": "CAMRPT1", "name": f"{n}.MP4", "ingested_at": iso(ingested),
             "status": "uploaded" if uploaded_h is not None else "verified",
             **({"uploaded_at": at(uploaded_h)} if uploaded_h is not None else {}),
             **({"first_classified_at": at(tagged_h), "classified_at": at(tagged_h)} if tagged_h is not None else {})}
        )  # fmt: skip
    db.call(lambda tdb: tdb.table(RECORDINGS).insert_multiple(recordings))


@pytest.fixture
def march_station(tmp_path, world, sim_server, start_station):
    # No uploader: the synthetic recordings are not in the store.
    config = setup(tmp_path, world, {"CAMRPT1": {}, "CAMRPT2": {}}, central={"kind": "disabled"})
    register_officers(config, {"police_no": STAFF, "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    fill_march(station)
    return station


def test_monthly_figures(march_station) -> None:
    station = march_station
    refusals = Counter({"gate.battery": 3, "gate.lock": 2})
    report = station.station.db.call(
        lambda db: reports.monthly_report(db, refusals, station.station.policy, WorkCalendar(TZ), 2026, 3, 14)
    )
    assert report["checkouts"]["total"] == 4
    assert report["checkouts"]["per_camera"] == {"CAMRPT1": 2, "CAMRPT2": 2}
    assert {p: r["count"] for p, r in report["checkouts"]["per_officer"].items()} == {A: 3, B: 3, C: 2}
    assert report["refusals"] == {"total": 5, "by_reason": {"gate.battery": 3, "gate.lock": 2}}
    f = report["faults"]
    assert (f["opened"], f["repaired"], f["open_at_end"]) == (3, 2, 1)
    assert f["repair_hours"] == {"mean": 15.5, "median": 15.5, "max": 26.0}
    assert f["by_source"] == {"officer": 2, "station": 1}
    # 003's 24 hours from ingest: 2 h and 20 h on time, 30 - 24 = 6 h on time, 80 - 48 = 32 h late, one missing.
    u = report["uploads"]
    assert (u["due"], u["within"], u["late"], u["missed"], u["pending"], u["within_pct"]) == (5, 3, 1, 1, 0, 60.0)
    # 003 Art. 17: 2 working days from the upload (all four deadlines fall in March).
    c = report["classification"]
    assert (c["due"], c["within"], c["late"], c["missed"], c["pending"], c["within_pct"]) == (4, 2, 1, 1, 0, 50.0)
    assert c["deadline"]["cite"] == "003 Art. 17"
    m = report["maintenance"]
    assert m["done"] == 3 and m["by_kind"] == {"repair": 2, "cleaning": 1}
    assert m["overdue"] == [] and m["due"] == ["CAMRPT1"]  # CAMRPT1 never had routine maintenance

    lines = list(csv.reader(io.StringIO(reports.report_csv(report).lstrip("\ufeff"))))
    assert lines[0] == ["section", "item", "value"]
    assert ["checkouts_per_officer", f"{A} 警员{A}", "3"] in lines
    assert ["classification", "within_pct", "50.0"] in lines and ["classification", "missed", "1"] in lines
    assert ["uploads", "within_pct", "60.0"] in lines and ["faults", "repair_hours_max", "26.0"] in lines
    assert reports.report_csv(report) == reports.report_csv(report)  # stable output


def test_report_page_csv_and_pdf_render(march_station) -> None:
    station = march_station
    web_up(station)
    ARTIFACTS.mkdir(exist_ok=True)
    add_account(station, "equip1", "equipment")
    with signed_in(base_url(station), "equip1", timeout=120) as http:
        data = http.get("/api/reports/monthly", params={"month": "2026-03"}).json()
        assert data["checkouts"]["total"] == 4 and data["faults"]["opened"] == 3
        assert http.get("/api/reports/monthly", params={"month": "2026-13"}).status_code == 422
        assert http.get("/api/reports/monthly", params={"month": "March"}).status_code == 422
        exported = http.get("/api/reports/monthly.csv", params={"month": "2026-03"})
        assert exported.headers["content-type"].startswith("text/csv") and "report-2026-03.csv" in exported.headers[
            "content-disposition"]  # fmt: skip
        assert "checkouts,total,4" in exported.text
        page = http.get("/admin/report", params={"month": "2026-03", "lang": "zh"})
        assert page.status_code == 200 and page.text.count('class="bars"') == 4  # no refusals: no chart
        assert catalogue("zh")["report.refusal.battery"] not in page.text  # no refusals logged in March
        assert catalogue("zh")["fault.reason.lens"] in page.text
        line = catalogue("zh")["report.classification_line"]
        assert line.format(due=4, within=2, pct=50.0, late=1, missed=1, pending=0) in page.text

        pdf = http.get("/api/reports/monthly.pdf", params={"month": "2026-03", "lang": "zh"})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    path = ARTIFACTS / "report-2026-03-zh.pdf"
    path.write_bytes(pdf.content)
    assert_page_renders(path)


def assert_page_renders(pdf: Path) -> None:
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm, "pdftoppm (poppler-utils) is needed: make deps"
    subprocess.run([pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf), str(pdf.with_suffix(""))], check=True)
    png = next(pdf.parent.glob(pdf.stem + "-1.png"))
    from PIL import Image

    with Image.open(png) as image:
        grey = image.convert("L")
        ink = grey.histogram()[:128]  # pixels darker than mid-grey
        ink = sum(ink)
        assert ink > 0.005 * grey.width * grey.height, "the first page is blank"
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "Noto-Sans-CJK-SC" in fonts, fonts  # the Chinese text has its font embedded
