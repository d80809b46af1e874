"""Bays that do not charge: current stays at zero while a camera is docked and its battery is not full.

Readings come from the bay's current sensor plus what the station knows of the camera. A short zero is
normal (the charger negotiating after docking, a battery topping off), hence the threshold; current below
``idle_max_ma`` counts as zero because shunt sensors read a few mA of offset with no load.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple

from appliance.health import HealthResult, HealthStatus

CHECK = "charge_current"


class ChargeReading(NamedTuple):
    """``state``: the camera's charge state (``"full"`` is full) or its battery percentage."""

    time: float
    present: bool
    state: str | int
    current_ma: float


def _stalled(reading: ChargeReading, idle_max_ma: float, full_pct: int) -> bool:
    if isinstance(reading.state, int) and not isinstance(reading.state, bool):
        full = reading.state >= full_pct
    else:
        full = str(reading.state).lower() == "full"
    return reading.present and not full and reading.current_ma <= idle_max_ma


def zero_current_for(readings: Iterable[ChargeReading], idle_max_ma: float = 5.0, full_pct: int = 100) -> float:
    """How long, up to the last reading, a present and not-full camera has drawn no current (0 if it does)."""
    start: float | None = None
    last = 0.0
    for reading in readings:
        last = reading.time
        if not _stalled(reading, idle_max_ma, full_pct):
            start = None
        elif start is None:
            start = reading.time
    return 0.0 if start is None else last - start


class ChargeCurrentCheck:
    """Keeps only the running stall per bay, so readings can stream in for months without growing memory.

    Time is the readings' own clock (monotonic seconds); readings per bay must come in time order.
    """

    def __init__(
        self,
        warn_after_s: float = 120.0,
        fail_after_s: float | None = 600.0,
        idle_max_ma: float = 5.0,
        full_pct: int = 100,
    ) -> None:
        self.warn_after_s = warn_after_s
        self.fail_after_s = fail_after_s
        self.idle_max_ma = idle_max_ma
        self.full_pct = full_pct  # some cameras stop charging at 95 %: set this to match
        self._since: dict[int, float] = {}  # bay -> time the zero current began
        self._latest: dict[int, float] = {}
        self._lock = threading.Lock()

    def observe(self, bay: int, reading: ChargeReading) -> None:
        with self._lock:
            self._latest[bay] = reading.time
            if _stalled(reading, self.idle_max_ma, self.full_pct):
                self._since.setdefault(bay, reading.time)
            else:
                self._since.pop(bay, None)

    def observe_all(self, bay: int, readings: Iterable[ChargeReading]) -> None:
        for reading in readings:
            self.observe(bay, reading)

    def stalled_for(self, bay: int) -> float:
        with self._lock:
            since = self._since.get(bay)
            return 0.0 if since is None else self._latest[bay] - since

    def check(self) -> HealthResult:
        with self._lock:
            stalled = {bay: self._latest[bay] - since for bay, since in sorted(self._since.items())}
        details = {
            "stalled_s": {str(bay): round(s, 1) for bay, s in stalled.items()},
            "warn_after_s": self.warn_after_s,
            "fail_after_s": self.fail_after_s,
        }
        failing = [b for b, s in stalled.items() if self.fail_after_s is not None and s >= self.fail_after_s]
        warning = [b for b, s in stalled.items() if s >= self.warn_after_s]
        if failing:
            return HealthResult(CHECK, HealthStatus.FAIL, f"no charge current in bays {failing}", details)
        if warning:
            return HealthResult(CHECK, HealthStatus.WARN, f"no charge current in bays {warning}", details)
        return HealthResult(CHECK, HealthStatus.OK, "every docked camera that needs charge is charging", details)
