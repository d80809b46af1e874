"""Battery health: capacity per full charge from the dock board's current, a robust trend over a synthetic
history with a known fade, weak batteries flagged, the chart on the camera's page."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from appliance import battery
from appliance.maintenance import EntryRequest
from tests.conftest import register_cameras, register_officers, wait_until
from tests.test_faults import board_config
from tests.test_kiosk import staff, web_up
from web_ui.i18n import catalogue

START = datetime(2023, 1, 1, tzinfo=UTC)
REFERENCE_MAH, FADE_PER_YEAR = 2000.0, 0.12  # a battery losing 12 % of its capacity a year


def synthetic_history(days: int = 400, every: int = 2, seed: int = 7) -> list[dict]:
    """One full charge every ``every`` days: the true capacity fades linearly, each measurement is off by up
    to 3 %, and every 7th is wildly wrong (a charge interrupted and resumed, a board glitch)."""
    rng = random.Random(seed)
    rows = []
    for n, day in enumerate(range(0, days, every)):
        true = REFERENCE_MAH * (1 - FADE_PER_YEAR * day / 365)
        measured = true * (1 + rng.uniform(-0.03, 0.03))
        if n % 7 == 3:
            measured *= rng.choice((0.4, 1.8))
        rows.append(
            {
                "camera": "CAMBAT1",
                "at": (START + timedelta(days=day, hours=18)).isoformat(),
                "start_pct": rng.randint(20, 70),
                "capacity_mah": round(measured, 1),
            }
        )
    return rows


def test_trend_recovers_a_known_fade_despite_outliers() -> None:
    rows = synthetic_history()
    found = battery.estimate(rows, weak_fraction=0.8, min_span_pct=20)
    trend = found["trend"]
    true_slope = -REFERENCE_MAH * FADE_PER_YEAR / 365
    assert trend["slope_mah_per_day"] == pytest.approx(true_slope, rel=0.1)
    assert trend["reference_mah"] == pytest.approx(REFERENCE_MAH, rel=0.02)
    assert trend["fade_pct_per_year"] == pytest.approx(FADE_PER_YEAR * 100, abs=1.5)
    expected_health = 1 - FADE_PER_YEAR * trend["span_days"] / 365  # ~0.87 after 398 days
    assert trend["health"] == pytest.approx(expected_health, abs=0.02)
    assert found["samples"] == len(rows) and found["weak"] is False
    assert battery.estimate(rows, weak_fraction=0.9, min_span_pct=20)["weak"] is True
    # An ordinary least-squares line through the same points is pulled off by the outliers; Theil-Sen is not.
    xs = [(datetime.fromisoformat(r["at"]) - START).days for r in rows]
    ys = [r["capacity_mah"] for r in rows]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    ols = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    assert abs(ols - true_slope) > abs(trend["slope_mah_per_day"] - true_slope)


def test_short_or_shallow_histories_give_no_trend() -> None:
    rows = synthetic_history()
    assert battery.estimate(rows[:3], 0.8, 20)["trend"] is None
    shallow = [{**r, "start_pct": 95} for r in rows]  # topped up from 95 %: too little charge to measure
    assert battery.estimate(shallow, 0.8, 20) == {
        "points": [], "samples": 0, "weak_fraction": 0.8, "trend": None, "weak": False,
    }  # fmt: skip
    replaced = (START + timedelta(days=300)).isoformat()
    assert all(r["at"] > replaced for r in battery.since_last_battery(rows, [replaced]))


def test_monitor_integrates_board_current_to_a_capacity() -> None:
    now = [1000.0]
    recorded: list[dict] = []
    monitor = battery.BatteryMonitor(recorded.append, clock=lambda: now[0], wall=lambda: START)
    monitor.observe("identify", 2, {"camera": "CAMBAT1", "battery_pct": 40})
    for _ in range(36):  # 1000 mA for 36 minutes: 600 mAh for 60 % of the battery
        now[0] += 60
        monitor.observe("charge", 2, {"state": "charging", "current_ma": 1000, "present": True})
    monitor.observe("charge", 2, {"state": "full", "current_ma": 0, "present": True})
    assert recorded == [
        {
            "camera": "CAMBAT1", "bay": 2, "started_at": START.isoformat(), "at": START.isoformat(),
            "start_pct": 40, "minutes_to_full": 36.0, "charge_mah": 600.0, "peak_ma": 1000.0, "capacity_mah": 1000.0,
        }
    ]  # fmt: skip
    monitor.observe("identify", 3, {"camera": "CAMBAT2", "battery_pct": 10})
    monitor.observe("charge", 3, {"state": "charging", "current_ma": 900, "present": True})
    monitor.observe("undock", 3, {})  # taken before full: nothing learnt
    monitor.observe("charge", 3, {"state": "full", "current_ma": 0, "present": False})
    assert len(recorded) == 1


def test_station_records_a_charge_from_the_simulated_board(tmp_path, world, sim_server, start_station) -> None:
    config = board_config(tmp_path, world)
    world.create_camera("CAMBAT3", fs_type="vfat", size_mib=40, battery_pct=60)
    register_cameras(config, "CAMBAT3")
    station = start_station(cfg=config)
    sim_server.dock("CAMBAT3", 1)
    db = station.station.db
    wait_until(lambda: db.call(lambda d: battery.readings(d, "CAMBAT3")), 60, "a full charge")
    (row,) = db.call(lambda d: battery.readings(d, "CAMBAT3"))
    # The simulator adds 1 % every 0.5 s at 450 mA: 0.0625 mAh a percent, a 6.25 mAh "battery". The board is
    # polled every 2 s, so the integral is coarse.
    assert 55 <= row["start_pct"] <= 70 and row["peak_ma"] == 450
    assert row["capacity_mah"] == pytest.approx(6.25, rel=0.5)
    logged = (config.log_dir / "entries.jsonl").read_text()
    assert '"type":"battery_reading"' in logged


def test_camera_page_shows_the_chart_and_flags_a_weak_battery(tmp_path, world, sim_server, start_station) -> None:
    from tests.test_checkout import setup

    config = setup(tmp_path, world, {"CAMBAT1": {"registry": {"model": "DSJ-S1"}}})
    register_officers(config, {"police_no": "220001", "role": "equipment"})
    station = start_station(cfg=config, serve_web=True)
    rows = synthetic_history(days=900, every=10)  # 12 %/year over 2.5 years: well under 80 %
    station.station.db.call(lambda db: db.table(battery.TABLE).insert_multiple(rows))
    web_up(station)
    with staff(station) as http:
        api = http.get("/api/battery/CAMBAT1").json()
        assert api["weak"] is True and api["trend"]["health"] < 0.8
        assert [r["camera"] for r in http.get("/api/battery").json() if r["weak"]] == ["CAMBAT1"]
        for lang in ("zh", "en"):
            page = http.get("/admin/camera/CAMBAT1", params={"lang": lang})
            assert page.status_code == 200
            assert page.text.count('class="point"') == len(rows) and 'class="trend"' in page.text
            assert catalogue(lang)["maint.battery_weak"] in page.text
            assert re.search(r'id="battery" data-weak="true"', page.text)
        assert http.get("/admin/camera/NOSUCH1").status_code == 404

        # A new battery starts a new history: no trend until it has charges of its own.
        station.station.equipment.record(
            EntryRequest("camera", "CAMBAT1", "battery_replacement", "220001", performed_at=START + timedelta(850))
        )
        fresh = http.get("/api/battery/CAMBAT1").json()
        assert fresh["samples"] == 5 and fresh["weak"] is False
