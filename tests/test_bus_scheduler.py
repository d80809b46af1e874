"""The USB bus scheduler: one leader per bus, SRPT/FIFO choice, pacing in fake time, thread safety."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import bus_scheduler
from appliance.bus_scheduler import BusScheduler, make_bus_scheduler, usb_bus_of_port
from appliance.config import load_config
from appliance.eventlog import EventLog, Signer
from appliance.offload import OffloadCancelled, Offloader
from appliance.state.db import StateDB
from appliance.store import LocalStore
from devices.sim.world import SimWorld
from devices.volumes.directory import DirectoryVolume
from tests.conftest import wait_until, write_config

KIB = 1024
TRICKLE = 100 * KIB


class FakeTime:
    """A clock that only moves when the scheduler sleeps: pacing is checked in fake seconds."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds
        self.slept += seconds


def make(buses: dict[int, str], min_ready: int = 2, **kwargs: object) -> tuple[BusScheduler, FakeTime]:
    fake = FakeTime()
    sched = BusScheduler(buses, TRICKLE, min_ready, clock=fake.clock, sleep=fake.sleep, **kwargs)  # type: ignore[arg-type]
    return sched, fake


def leaders(sched: BusScheduler) -> set[int]:
    return {bay for bay, s in sched.snapshot().items() if s.leader}


def test_port_paths_map_to_high_speed_buses() -> None:
    assert usb_bus_of_port("1-1.3.2") == "1-1"  # Pi 4: everything behind the VL805 hub
    assert usb_bus_of_port("3-2.1") == "3-2"  # Pi 5: second controller, second root port
    assert usb_bus_of_port("1-2") == "1-2"
    assert usb_bus_of_port("usb1") is None


def test_one_leader_per_bus_and_the_others_are_paced() -> None:
    sched, _ = make({b: "1-1" for b in range(1, 5)})
    sched.set_ready_count(5)  # FIFO
    for bay in range(1, 5):
        sched.register(bay, 100 * KIB)
    snap = sched.snapshot()
    assert leaders(sched) == {1}
    assert snap[1].paced_rate is None
    assert all(snap[b].paced_rate == TRICKLE and not snap[b].leader for b in (2, 3, 4))
    assert (snap[2].bytes_done, snap[2].bytes_total) == (0, 100 * KIB)


def test_leader_reads_without_sleeping() -> None:
    sched, fake = make({1: "1-1", 2: "1-1"})
    sched.register(1, 10 * 2**20)
    sched.register(2, 20 * 2**20)
    for _ in range(10):
        sched.progress(1, 2**20)
    assert fake.slept == 0
    assert sched.snapshot()[1].bytes_done == 10 * 2**20


def test_srpt_when_few_cameras_are_ready() -> None:
    sched, _ = make({b: "1-1" for b in range(1, 4)}, min_ready=2)
    sched.set_ready_count(1)
    assert sched.policy == "srpt"
    sched.register(1, 900 * KIB)
    sched.register(2, 300 * KIB)  # the camera that can be ready soonest takes over at once
    sched.register(3, 600 * KIB)
    assert leaders(sched) == {2}
    sched.finish(2)
    assert leaders(sched) == {3}


def test_srpt_counts_bytes_left_not_size() -> None:
    sched, _ = make({1: "1-1", 2: "1-1"})
    sched.register(1, 1000 * KIB)
    sched.progress(1, 900 * KIB)  # leader, so no sleep
    sched.register(2, 500 * KIB)
    assert leaders(sched) == {1}  # 100 KiB left beats a fresh 500 KiB camera


def test_fifo_when_enough_cameras_are_ready() -> None:
    sched, _ = make({b: "1-1" for b in range(1, 4)}, min_ready=2)
    sched.set_ready_count(2)
    assert sched.policy == "fifo"
    sched.register(1, 900 * KIB)
    sched.register(2, 300 * KIB)
    sched.register(3, 600 * KIB)
    assert leaders(sched) == {1}  # a small newcomer waits its turn
    sched.finish(1)
    assert leaders(sched) == {2}
    sched.finish(2)
    assert leaders(sched) == {3}


def test_switching_to_srpt_re_elects_but_switching_to_fifo_keeps_the_leader() -> None:
    sched, _ = make({b: "1-1" for b in range(1, 4)}, min_ready=2)
    sched.set_ready_count(3)
    sched.register(1, 900 * KIB)
    sched.register(2, 300 * KIB)
    sched.register(3, 600 * KIB)
    assert leaders(sched) == {1}
    sched.set_ready_count(1)  # officers took cameras: the station needs one soon
    assert leaders(sched) == {2}
    sched.set_ready_count(4)  # FIFO again, but the almost-done camera keeps the bus
    assert leaders(sched) == {2}
    sched.finish(2)
    assert leaders(sched) == {1}  # oldest registration


def test_paced_bay_progress_returns_at_the_trickle_rate() -> None:
    sched, fake = make({1: "1-1", 2: "1-1"})
    sched.register(1, 100 * 2**20)
    sched.register(2, 100 * 2**20)
    start = fake.now
    for _ in range(10):
        sched.progress(2, 50 * KIB)  # every call returns: the bay is slowed, never stopped
    # The bucket starts empty (no burst at docking), so 500 KiB at 100 KiB/s takes 5 fake seconds.
    assert fake.now - start == pytest.approx(5.0, abs=1e-6)
    assert sched.snapshot()[2].bytes_done == 500 * KIB


def test_paced_bay_sleeps_in_small_steps() -> None:
    fake = FakeTime()
    steps: list[float] = []

    def sleep(seconds: float) -> None:
        steps.append(seconds)
        fake.sleep(seconds)

    sched = BusScheduler({1: "1-1", 2: "1-1"}, TRICKLE, clock=fake.clock, sleep=sleep)
    sched.register(1, 2**30)
    sched.register(2, 2**30)
    sched.progress(2, 2**20)
    assert sum(steps) == pytest.approx(10.24)
    assert max(steps) <= 0.05 + 1e-9


def test_time_spent_reading_counts_toward_the_trickle() -> None:
    sched, fake = make({1: "1-1", 2: "1-1"})
    sched.register(1, 2**30)
    sched.register(2, 2**30)
    fake.now += 0.5  # the read itself took half a second: 50 KiB of credit
    sched.progress(2, 50 * KIB)
    assert fake.slept == 0
    fake.now += 60  # a long stall banks at most one second of trickle
    sched.progress(2, 200 * KIB)
    assert fake.slept == pytest.approx(1.0)


def test_leader_finishing_promotes_the_next() -> None:
    sched, fake = make({1: "1-1", 2: "1-1"})
    sched.register(1, 2**20)
    sched.register(2, 2**20)
    sched.finish(1)
    assert leaders(sched) == {2}
    sched.progress(2, 2**20)
    assert fake.slept == 0  # promoted: unpaced


def test_demoted_leader_starts_from_an_empty_bucket() -> None:
    sched, fake = make({1: "1-1", 2: "1-1"})
    sched.register(1, 10 * 2**20)
    fake.now += 100  # a long time as leader banks nothing
    sched.register(2, 10 * KIB)  # SRPT: the small camera takes over
    assert leaders(sched) == {2}
    sched.progress(1, 100 * KIB)
    assert fake.slept == pytest.approx(1.0)


def test_buses_are_independent() -> None:
    sched, fake = make({1: "1-1", 2: "1-1", 3: "1-2", 4: "1-2"})
    sched.set_ready_count(9)
    for bay in (1, 2, 3, 4):
        sched.register(bay, 2**20)
    assert leaders(sched) == {1, 3}
    sched.finish(1)
    assert leaders(sched) == {2, 3}
    sched.progress(3, 2**20)
    sched.progress(2, 2**20)
    assert fake.slept == 0


def test_unknown_bus_is_never_paced() -> None:
    sched, fake = make({1: "1-1"})
    sched.register(1, 2**20)
    sched.register(7, 2**20)  # not in the map: its own bus
    snap = sched.snapshot()
    assert snap[7].leader and snap[7].bus is None and snap[7].paced_rate is None
    assert snap[1].leader
    sched.progress(7, 2**20)
    assert fake.slept == 0


def test_finish_and_progress_of_unknown_bays_are_safe() -> None:
    sched, fake = make({1: "1-1"})
    sched.finish(3)
    sched.progress(3, 2**20)
    sched.register(1, 2**20)
    sched.finish(1)
    sched.finish(1)  # twice: an aborted offload's finally after an explicit finish
    assert sched.snapshot() == {}
    assert fake.slept == 0


def test_re_registering_replaces_the_old_entry() -> None:
    sched, _ = make({1: "1-1", 2: "1-1"})
    sched.set_ready_count(5)
    sched.register(1, 2**20)
    sched.register(2, 2**20)
    sched.register(1, 2**20)  # bay 1 restarted: it goes to the back of the queue
    assert leaders(sched) == {2}
    assert sched.snapshot()[1].bytes_done == 0


def test_two_leaders_per_bus() -> None:
    sched, _ = make({b: "1-1" for b in range(1, 5)}, leaders_per_bus=2)
    sched.set_ready_count(5)
    for bay in range(1, 5):
        sched.register(bay, 2**20)
    assert leaders(sched) == {1, 2}
    sched.finish(2)
    assert leaders(sched) == {1, 3}


def test_cancel_ends_pacing() -> None:
    sched, fake = make({1: "1-1", 2: "1-1"})
    sched.register(1, 2**30)
    sched.register(2, 2**30)
    cancel = threading.Event()
    cancel.set()
    sched.progress(2, 2**20, cancel)
    assert fake.slept == 0


def test_sleeping_bay_wakes_when_promoted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real threads and the Condition: the paced bay owes a day of trickle, and returns once it leads.
    Wait steps of a minute: only the election's notify can end the wait within the test's patience."""
    monkeypatch.setattr(bus_scheduler, "PACE_STEP_S", 60.0)
    sched = BusScheduler({1: "1-1", 2: "1-1"}, trickle_bytes_s=1.0)
    sched.register(1, 2**20)
    sched.register(2, 2**20)
    returned = threading.Event()

    def paced() -> None:
        sched.progress(2, 86_400)
        returned.set()

    thread = threading.Thread(target=paced, daemon=True)
    thread.start()
    assert not returned.wait(0.1)  # still being paced
    sched.finish(1)
    assert returned.wait(5)  # generous: only a lost wake-up would take this long
    assert leaders(sched) == {2}
    sched.finish(2)


def test_threads_smoke() -> None:
    """16 bays on 2 buses, real threads and clock, a fast trickle: everything completes, each bay's bytes
    are all counted, and no bus ever has two leaders."""
    bays = range(16)
    buses = {bay: f"1-{bay % 2 + 1}" for bay in bays}
    sched = BusScheduler(buses, trickle_bytes_s=4 * 2**20)
    total, chunk = 64 * KIB, 8 * KIB
    errors: list[str] = []
    stop = threading.Event()

    def copy(bay: int) -> None:
        sched.register(bay, total)
        try:
            for _ in range(total // chunk):
                sched.progress(bay, chunk)
            if sched.snapshot()[bay].bytes_done != total:
                errors.append(f"bay {bay} lost bytes")
        finally:
            sched.finish(bay)

    def watch() -> None:
        flips = 0
        while not stop.is_set():
            per_bus: dict[str | None, int] = {}
            for s in sched.snapshot().values():
                per_bus[s.bus] = per_bus.get(s.bus, 0) + s.leader
            if any(n > 1 for n in per_bus.values()):
                errors.append(f"two leaders: {per_bus}")
            flips += 1
            sched.set_ready_count(flips % 3)  # flip between SRPT and FIFO under load

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=copy, args=(bay,), daemon=True) for bay in bays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stop.set()
    watcher.join(5)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sched.snapshot() == {}


# -- wired into the offload pipeline: the copy loop really waits for its bus


def paced_offloader(tmp_path: Path, sched: BusScheduler) -> tuple[Offloader, list[StateDB | EventLog]]:
    key = Ed25519PrivateKey.generate()
    db = StateDB(tmp_path / "state.json")
    events = EventLog(tmp_path / "log", origin="test/events", signer=Signer("test", key))
    store = LocalStore(tmp_path / "store", buffer_size=64 * KIB)
    return Offloader(store, db, events, (".mp4",), "test", key, sched), [events, db]


def test_offload_is_held_while_another_bay_leads_and_runs_once_promoted(tmp_path: Path) -> None:
    camera = tmp_path / "camera" / "DCIM"
    camera.mkdir(parents=True)
    (camera / "a.mp4").write_bytes(os.urandom(4 << 20))
    sched = BusScheduler({1: "1-1", 9: "1-1"}, trickle_bytes_s=16 * KIB, min_ready=0)  # FIFO
    sched.register(9, 1 << 30)  # another bay leads the bus with a big camera
    offloader, closers = paced_offloader(tmp_path, sched)
    done = threading.Event()
    result: list[object] = []

    def run() -> None:
        volume = DirectoryVolume(tmp_path / "camera", "mounted")
        result.append(offloader.run(volume, {"serial": "CAM1"}, 1, threading.Event(), lambda p: None))
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_until(lambda: sched.snapshot().get(1, None) is not None and sched.snapshot()[1].bytes_done > 0, 30)
        assert not sched.snapshot()[1].leader and not done.is_set()  # 4 MiB at 16 KiB/s: minutes if paced
        sched.finish(9)  # the leader's camera is done: bay 1 takes the bus
        assert done.wait(60), "promoted bay did not finish"
        assert result[0].copied == ["DCIM/a.mp4"]  # type: ignore[attr-defined]
        assert sched.snapshot() == {}  # finished bays leave the scheduler
    finally:
        sched.finish(9)
        worker.join(60)
        for c in closers:
            c.close()


def test_a_paced_offload_stops_promptly_when_cancelled(tmp_path: Path) -> None:
    camera = tmp_path / "camera"
    camera.mkdir()
    (camera / "b.mp4").write_bytes(os.urandom(4 << 20))
    sched = BusScheduler({1: "1-1", 9: "1-1"}, trickle_bytes_s=16 * KIB, min_ready=0)
    sched.register(9, 1 << 30)
    offloader, closers = paced_offloader(tmp_path, sched)
    cancel = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            offloader.run(DirectoryVolume(camera, "mounted"), {"serial": "CAM2"}, 1, cancel, lambda p: None)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_until(lambda: 1 in sched.snapshot() and sched.snapshot()[1].bytes_done > 0, 30)
        cancel.set()
        worker.join(30)
        assert not worker.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], OffloadCancelled)
        assert 1 not in sched.snapshot()
        stored = [p for p in offloader.store.objects.rglob("*") if p.is_file()]
        assert stored == []  # nothing half-copied was stored, and nothing was taken from the camera
        assert (camera / "b.mp4").stat().st_size == 4 << 20
    finally:
        cancel.set()
        worker.join(30)
        for c in closers:
            c.close()


def test_station_config_maps_bays_to_their_buses(tmp_path: Path, world: SimWorld) -> None:
    bays = [{"number": 1, "port_path": "1-1.2"}, {"number": 2, "port_path": "3-2.1"}]
    sched = make_bus_scheduler(load_config(write_config(tmp_path, world, bays=bays)))
    assert sched is not None
    sched.register(1, 10)
    sched.register(2, 10)
    assert {b: s.bus for b, s in sched.snapshot().items()} == {1: "1-1", 2: "3-2"}
    unpaced = load_config(write_config(tmp_path, world, bays=bays, offload={"bus_pacing": False}))
    assert make_bus_scheduler(unpaced) is None
