"""Share each USB 2.0 bus between the bays' offloads: one leader at full speed, the others trickle.

Why. The source bus, not the CPU, bounds an offload (performance notes, sections 0 and 2): on a Pi 4 every
USB 2.0 camera shares one 480 Mbit/s bus, about 35-41 MB/s for all the docks together; a Pi 5 has four such
root ports (about 140-165 MB/s, but only if the docks are spread over all four). Parallel bulk reads share a
bus roughly equally (USB round-robin), so with 16 docks on a Pi 4 each camera gets 2-2.5 MB/s and *every*
camera finishes at the very end: an 8 GB camera needs about 53 minutes. Served one after another, the first
camera is ready in about 4 minutes, with the same total time (the notes' "time to first finished dock"
reading, and benchmark B4). The station cannot prioritise USB transfers, but it can pace its own reads.

Policy, per bus:

- Exactly one *leader* (``leaders_per_bus``, default 1) reads unpaced and gets nearly the whole bus. Every
  other active bay is paced to ``trickle_bytes_s`` by a token bucket, so it still moves (no starvation: its
  first chunk is never delayed, later ones come at the trickle rate) and its files' progress stays live.
  The bus stays full as long as any bay on it is active, because there is always a leader; with 16 bays and
  the default 512 KiB/s trickle the leader keeps about 80 % of a 38 MB/s bus.
- Which bay leads: while fewer than ``min_ready`` cameras are ready for check-out, the one with the fewest
  bytes left (shortest remaining first: the camera that can be ready soonest); otherwise the oldest
  registration (FIFO: fair, and a bay's wait is bounded by the bays ahead of it).
- When elections happen: when a leader finishes; when a bay registers (in SRPT mode only: a newly docked
  small camera takes over from a big one, which is what true SRPT does at an arrival; in FIFO mode a
  newcomer is last anyway); when ``set_ready_count`` switches to SRPT (the station needs a camera now). A
  switch to FIFO leaves the current leader alone, so an almost-done camera is not sent to the back. Between
  those events the leader keeps the bus, so there is no thrashing.
- A bay whose bus is unknown is its own bus: alone, hence never paced.

Assumption to verify on hardware: one camera alone can fill its bus. The notes guess a camera's own flash
at 20-35 MB/s; if measurements show a single camera well below the bus rate, run two leaders per bus
(``leaders_per_bus=2``) so the bus stays full.

Threading: one copying thread per bay calls ``progress`` after each chunk. State is guarded by one
Condition; a paced bay waits on it in small steps (the wait releases the lock, so no other bay is blocked)
and is woken at once when an election makes it leader.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.config import StationConfig

PACE_STEP_S = 0.05  # longest single wait: bounds how late a paced bay notices cancel or a clock jump
BURST_S = 1.0  # a paced bay may bank at most this much trickle (e.g. after a slow read); keeps pacing smooth

_PORT = re.compile(r"^(\d+-\d+)(?:\.\d+)*$")


def usb_bus_of_port(port_path: str) -> str | None:
    """The high-speed bus a USB port path (``1-1.3.2``, as in the bay config) sits on: its bus number and
    root port (``1-1``). On a Pi 4 every USB 2.0 device is behind the VL805's hub at ``1-1``: one bus. A Pi 5
    has four (``1-1``, ``1-2``, ``3-1``, ``3-2``). None for anything else (then the bay is never paced)."""
    match = _PORT.match(port_path)
    return match.group(1) if match else None


@dataclass(frozen=True)
class BaySnapshot:
    bay: int
    bus: str | None  # None: unknown bus, never paced
    leader: bool
    bytes_done: int
    bytes_total: int
    paced_rate: float | None  # bytes/s this bay is held to; None when it reads unpaced

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Bay:
    bus: str | None
    total: int
    seq: int  # registration order, for FIFO
    done: int = 0
    leader: bool = False
    tokens: float = 0.0  # bytes the bay may still read at the trickle rate; negative = in debt
    refilled: float = 0.0  # clock() of the last refill

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.done)


class BusScheduler:
    """Pace the offloads on each USB bus (see the module docstring). All methods are thread-safe."""

    def __init__(
        self,
        bus_of_bay: Mapping[int, str],
        trickle_bytes_s: float = 512 * 1024,
        min_ready: int = 2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        leaders_per_bus: int = 1,
    ) -> None:
        """``sleep`` is for tests with a fake ``clock``: with the default, a paced bay waits on the Condition
        instead (so a promotion wakes it at once); any other ``sleep`` is called with the lock released."""
        if trickle_bytes_s <= 0:
            raise ValueError("trickle_bytes_s must be positive")
        if leaders_per_bus < 1:
            raise ValueError("leaders_per_bus must be at least 1")
        self._bus_of_bay = dict(bus_of_bay)
        self._trickle = float(trickle_bytes_s)
        self._burst = self._trickle * BURST_S
        self._min_ready = min_ready
        self._leaders = leaders_per_bus
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition(threading.Lock())
        self._bays: dict[int, _Bay] = {}
        self._seq = 0
        self._ready = 0

    # -- the copying threads
    def register(self, bay: int, total_bytes: int) -> None:
        """A camera's offload starts; ``total_bytes`` is what is left to copy (for SRPT). Re-registering a
        bay replaces its earlier entry."""
        with self._cond:
            old = self._bays.pop(bay, None)
            if old is not None and old.leader:
                self._elect(old.bus)
            self._seq += 1
            bus = self._bus_of_bay.get(bay)
            state = _Bay(bus, max(0, total_bytes), self._seq, refilled=self._clock())
            state.leader = bus is None  # its own bus: nobody to share with
            self._bays[bay] = state
            if bus is not None and (self._srpt() or self._leader_count(bus) < self._leaders):
                self._elect(bus)
            self._cond.notify_all()

    def progress(self, bay: int, nbytes: int, cancel: threading.Event | None = None) -> None:
        """Account ``nbytes`` just read by ``bay``; unless it leads its bus, sleep until its token bucket
        allows the next read. Returns early when the bay is promoted, finished, or ``cancel`` is set."""
        with self._cond:
            state = self._bays.get(bay)
            if state is None:
                return
            state.done += nbytes
            if state.leader:
                return
            self._refill(state)
            state.tokens -= nbytes
            # The chunk already went through (the read came first): a new bay's first bytes are never held.
            while self._bays.get(bay) is state and not state.leader:
                if cancel is not None and cancel.is_set():
                    return
                self._refill(state)
                if state.tokens >= 0:
                    return
                self._wait(min(PACE_STEP_S, -state.tokens / self._trickle))

    def finish(self, bay: int) -> None:
        """The bay's offload ended (done, failed or cancelled). Unknown or already finished bays are fine."""
        with self._cond:
            state = self._bays.pop(bay, None)
            if state is not None and state.leader and state.bus is not None:
                self._elect(state.bus)
            self._cond.notify_all()

    # -- the station
    def set_ready_count(self, n: int) -> None:
        """How many cameras are ready for check-out now. Dropping below ``min_ready`` re-elects every bus by
        shortest remaining; rising to it keeps the current leaders (FIFO applies from the next election)."""
        with self._cond:
            was_srpt = self._srpt()
            self._ready = n
            if self._srpt() and not was_srpt:
                for bus in {s.bus for s in self._bays.values() if s.bus is not None}:
                    self._elect(bus)
                self._cond.notify_all()

    @property
    def policy(self) -> str:
        """The rule for the next election: ``srpt`` (shortest remaining first) or ``fifo``."""
        with self._cond:
            return "srpt" if self._srpt() else "fifo"

    def snapshot(self) -> dict[int, BaySnapshot]:
        """Per active bay: its bus, whether it leads, bytes done/total and the rate it is paced to."""
        with self._cond:
            return {
                bay: BaySnapshot(bay, s.bus, s.leader, s.done, s.total, None if s.leader else self._trickle)
                for bay, s in sorted(self._bays.items())
            }

    # -- internals (caller holds the lock)
    def _srpt(self) -> bool:
        return self._ready < self._min_ready

    def _leader_count(self, bus: str) -> int:
        return sum(1 for s in self._bays.values() if s.bus == bus and s.leader)

    def _elect(self, bus: str | None) -> None:
        """Choose the leaders of ``bus``: in SRPT mode afresh (shortest remaining, then oldest); in FIFO mode
        the sitting leaders stay and free seats go to the oldest registrations."""
        if bus is None:
            return
        members = [s for s in self._bays.values() if s.bus == bus]
        if self._srpt():
            chosen = sorted(members, key=lambda s: (s.remaining, s.seq))[: self._leaders]
        else:
            sitting = [s for s in members if s.leader]
            waiting = sorted((s for s in members if not s.leader), key=lambda s: s.seq)
            chosen = sitting + waiting[: self._leaders - len(sitting)]
        now = self._clock()
        for s in members:
            leads = any(s is c for c in chosen)
            if s.leader and not leads:  # demoted: pacing starts from an empty bucket, no banked credit
                s.tokens, s.refilled = 0.0, now
            s.leader = leads

    def _refill(self, state: _Bay) -> None:
        now = self._clock()
        state.tokens = min(self._burst, state.tokens + (now - state.refilled) * self._trickle)
        state.refilled = now

    def _wait(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            self._cond.wait(seconds)  # releases the lock; an election's notify_all ends it early
            return
        self._cond.release()
        try:
            self._sleep(seconds)
        finally:
            self._cond.acquire()


def make_bus_scheduler(config: StationConfig) -> BusScheduler | None:
    """The scheduler for the configured bays, or None when pacing is switched off (``offload.bus_pacing``)."""
    if not config.offload.bus_pacing:
        return None
    buses = {bay.number: bus for bay in config.bays if (bus := usb_bus_of_port(bay.port_path)) is not None}
    return BusScheduler(buses, config.offload.trickle_kib_s * 1024, config.offload.min_ready)
