"""Cameras that stop answering on their control port: time since the last successful control call, per bay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from appliance.health import HealthResult, HealthStatus

CHECK = "camera_unresponsive"


class UnresponsiveCameras:
    """Call ``docked`` when a camera arrives, ``answered`` after each successful control call, ``undocked``
    when it leaves. A camera that never answers after docking counts as silent from the moment it docked.

    Only meaningful if the station talks to docked cameras regularly (e.g. reads the battery level); time
    spent deliberately not talking to a camera must be covered by ``answered`` calls or ``warn_after_s``.
    Thread-safe: control calls finish on worker threads.
    """

    def __init__(
        self,
        warn_after_s: float = 30.0,
        fail_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warn_after_s = warn_after_s
        self.fail_after_s = fail_after_s
        self._clock = clock
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def docked(self, bay: int) -> None:
        with self._lock:
            self._last[bay] = self._clock()

    def answered(self, bay: int) -> None:
        with self._lock:
            self._last[bay] = self._clock()

    def undocked(self, bay: int) -> None:
        with self._lock:
            self._last.pop(bay, None)

    def silent_for(self, bay: int) -> float | None:
        """Seconds since the bay's camera last answered (or docked); None if no camera is tracked there."""
        with self._lock:
            last = self._last.get(bay)
            return None if last is None else self._clock() - last

    def check(self) -> HealthResult:
        with self._lock:
            now = self._clock()
            silent = {bay: now - last for bay, last in sorted(self._last.items())}
        details = {
            "silent_s": {str(bay): round(s, 1) for bay, s in silent.items()},
            "warn_after_s": self.warn_after_s,
            "fail_after_s": self.fail_after_s,
        }
        failing = [b for b, s in silent.items() if self.fail_after_s is not None and s >= self.fail_after_s]
        warning = [b for b, s in silent.items() if s >= self.warn_after_s]
        if failing:
            return HealthResult(CHECK, HealthStatus.FAIL, f"cameras not answering in bays {failing}", details)
        if warning:
            return HealthResult(CHECK, HealthStatus.WARN, f"cameras not answering in bays {warning}", details)
        return HealthResult(CHECK, HealthStatus.OK, "every docked camera answers", details)
