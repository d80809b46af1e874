"""Upload scheduling and local copies: deadline order, alerts, breaker, daytime cap, deletion rules."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from tinydb import Query

from appliance.central.archive import ArchiveStore
from appliance.central.backoff import CircuitBreaker
from appliance.central.base import StoreUnavailable
from appliance.central.local_keep import LocalKeeper
from appliance.central.throttle import Throttle, in_window, parse_window
from appliance.central.uploader import Uploader, object_key
from appliance.eventlog import EventLog
from appliance.offload import RECORDINGS
from appliance.policy import load_profile
from appliance.state.db import StateDB
from appliance.store import LocalStore

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)  # a Thursday: 003's 24 clock hours apply anyway


class World:
    def __init__(self, root: Path) -> None:
        self.db = StateDB(root / "state.json")
        self.events = EventLog(root / "log")
        self.store = LocalStore(root / "store")
        self.archive = ArchiveStore(root / "archive")
        self.policy = load_profile("003")
        self.uploader = Uploader("st", self.store, self.archive, self.db, self.events, self.policy)
        self.keeper = LocalKeeper(self.store, self.archive, self.db, self.events, self.policy)

    def recording(self, name: str, ingested: datetime, cls: str = "unclassified", **extra: object) -> dict:
        data = random.Random(name).randbytes(2000)
        stored = self.store.ingest(io.BytesIO(data), len(data))
        row = {
            "key": f"CAM0001:{name}",
            "camera_serial": "CAM0001",
            "camera_path": f"/DCIM/{name}",
            "name": name,
            "size": stored.size,
            "sha256": stored.sha256,
            "camera_mtime": ingested.isoformat(),
            "ingested_at": ingested.isoformat(),
            "retention_class": cls,
            "status": "verified",
            **extra,
        }
        self.db.call(lambda db: db.table(RECORDINGS).insert(row))
        return row

    def row(self, name: str) -> dict:
        return self.db.call(lambda db: db.table(RECORDINGS).get(Query().name == name))

    def close(self) -> None:
        self.events.close()
        self.db.close()


@pytest.fixture
def w(tmp_path: Path):
    world = World(tmp_path)
    yield world
    world.close()


def test_nearest_deadline_first_and_long_term_first_among_equals(w: World) -> None:
    w.recording("late.mp4", NOW - timedelta(hours=1), "routine")
    w.recording("early_routine.mp4", NOW - timedelta(hours=20), "routine")
    w.recording("early_long.mp4", NOW - timedelta(hours=20), "long_term")
    w.recording("middle.mp4", NOW - timedelta(hours=10), "evidence")
    assert [r["name"] for r in w.uploader.pending()] == [
        "early_long.mp4",
        "early_routine.mp4",
        "middle.mp4",
        "late.mp4",
    ]


def test_alert_margin_and_overdue_list(w: World) -> None:
    w.recording("overdue.mp4", NOW - timedelta(hours=30))
    w.recording("close.mp4", NOW - timedelta(hours=21))
    w.recording("fine.mp4", NOW - timedelta(hours=1))
    risky = {r["name"]: r["overdue"] for r in w.uploader.at_risk(NOW)}
    assert risky == {"overdue.mp4": True, "close.mp4": False}
    assert [r["name"] for r in w.uploader.overdue(NOW)] == ["overdue.mp4"]
    w.uploader.run_once()
    assert w.uploader.at_risk(NOW) == []  # uploaded: no longer at risk


def test_night_only_uploads_hold_by_day_except_what_is_near_its_deadline(w: World) -> None:
    """central.upload_on_dock = false: by day only recordings within the alert margin go; at night all."""
    w.recording("fresh.mp4", NOW - timedelta(hours=1))
    w.recording("close.mp4", NOW - timedelta(hours=21))  # 3 h left of 003's 24 h: inside the 4 h margin
    night = parse_window("01:00-05:00")
    clock = {"now": NOW.replace(hour=12)}
    w.uploader.now = lambda: clock["now"]
    w.uploader.hold = lambda: not in_window(clock["now"].time(), night)
    assert w.uploader.run_once() == 1
    assert (w.row("close.mp4")["status"], w.row("fresh.mp4")["status"]) == ("uploaded", "verified")
    clock["now"] = NOW.replace(hour=2)  # the night window
    assert w.uploader.run_once() == 1 and w.row("fresh.mp4")["status"] == "uploaded"


def test_local_copy_goes_only_after_confirmed_upload_and_keep_period(w: World) -> None:
    old = w.recording("old.mp4", NOW - timedelta(days=40))
    w.recording("recent.mp4", NOW - timedelta(days=40))
    w.uploader.run_once()
    uploaded = {"old.mp4": NOW - timedelta(days=31), "recent.mp4": NOW - timedelta(days=2)}
    for name, when in uploaded.items():
        w.db.call(
            lambda db, n=name, t=when: db.table(RECORDINGS).update({"uploaded_at": t.isoformat()}, Query().name == n)
        )
    pending = w.recording("pending.mp4", NOW - timedelta(days=40))  # never uploaded
    assert w.keeper.expire(NOW) == 1
    assert not w.store.has(old["sha256"]) and w.row("old.mp4")["local_deleted"] is True
    assert w.store.has(w.row("recent.mp4")["sha256"]) and w.store.has(pending["sha256"])
    types = [e.type for e in w.events.entries()]
    receipt_seq = w.row("old.mp4")["receipt_seq"]
    delete = next(e for e in w.events.entries() if e.type == "local_delete")
    assert delete.body["receipt_seq"] == receipt_seq < delete.seq and types.count("local_delete") == 1


def test_disk_pressure_takes_only_confirmed_copies_oldest_first(w: World) -> None:
    first = w.recording("first.mp4", NOW - timedelta(hours=3))
    second = w.recording("second.mp4", NOW - timedelta(hours=2))
    w.uploader.run_once()
    unconfirmed = w.recording("unconfirmed.mp4", NOW - timedelta(hours=1))
    # An "uploaded" row the central store does not hold (lost there): its copy must stay.
    lost = w.recording("lost.mp4", NOW - timedelta(hours=4), status="uploaded", receipt_seq=0)
    w.db.call(
        lambda db: db.table(RECORDINGS).update(
            {"archive_key": "st/none/x", "uploaded_at": (NOW - timedelta(days=9)).isoformat()},
            Query().name == "lost.mp4",
        )
    )
    assert w.keeper.relieve_pressure(1) == first["size"]  # one is enough: the oldest confirmed upload
    assert not w.store.has(first["sha256"]) and w.store.has(second["sha256"])
    assert w.keeper.relieve_pressure(10**9) == second["size"]  # everything it may take, and no more
    assert w.store.has(unconfirmed["sha256"]) and w.store.has(lost["sha256"])


def test_breaker_opens_backs_off_with_jitter_and_closes_on_success() -> None:
    now = [0.0]
    breaker = CircuitBreaker(base_s=2, cap_s=60, threshold=3, clock=lambda: now[0], rng=random.Random(5))
    delays = [breaker.failure() for _ in range(8)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(60, 2 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert breaker.open and not breaker.allow()
    now[0] = breaker.retry_at
    assert breaker.allow()
    breaker.success()
    assert not breaker.open and breaker.allow()


def test_uploader_stops_a_pass_when_the_store_is_down_and_waits_for_the_breaker(w: World) -> None:
    w.recording("a.mp4", NOW - timedelta(hours=3))
    w.recording("b.mp4", NOW - timedelta(hours=2))
    calls: list[str] = []

    class Down:
        """Deterministic pacing check; the real gateway outage is in test_s3_upload.py."""

        kind = "down"

        def put(self, key: str, *args: object) -> None:
            calls.append(key)
            raise StoreUnavailable("connection refused")

        put_bytes = put

    now = [0.0]
    w.uploader.central = Down()  # type: ignore[assignment]
    w.uploader.breaker = CircuitBreaker(clock=lambda: now[0], rng=random.Random(1))
    assert w.uploader.run_once() == 0 and len(calls) == 1  # first failure ends the pass
    assert w.uploader.run_once() == 0 and len(calls) == 1  # breaker holds the next attempt back
    now[0] = w.uploader.breaker.retry_at
    w.uploader.central = w.archive
    assert w.uploader.run_once() == 2 and w.uploader.breaker.failures == 0
    for name in ("a.mp4", "b.mp4"):
        row = w.row(name)
        assert row["archive_key"] == object_key("st", row) and w.store.has(row["sha256"])


def test_daytime_cap_paces_and_the_night_window_does_not() -> None:
    slept: list[float] = []
    mono = [0.0]

    def sleep(s: float) -> None:
        slept.append(s)
        mono[0] += s

    hour = [14]
    throttle = Throttle(
        1000, parse_window("01:00-05:00"), lambda: datetime(2026, 3, 5, hour[0], tzinfo=UTC), lambda: mono[0], sleep
    )
    for _ in range(5):
        throttle.consume(500)
    assert sum(slept) == pytest.approx(2.5)  # 2500 bytes at 1000 B/s, no burst saved up at start
    hour[0] = 2
    slept.clear()
    for _ in range(5):
        throttle.consume(10_000)
    assert slept == []
    assert in_window(time(23, 0), parse_window("22:00-06:00")) and not in_window(
        time(12, 0), parse_window("22:00-06:00")
    )
    with pytest.raises(ValueError, match="01:00-05:00"):
        parse_window("1am")
