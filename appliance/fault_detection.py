"""Faults the station opens by itself from what it measures (004 Art. 20: stop using a faulty device at once):

- ``unresponsive``: the camera stopped answering on its control port while it stayed docked;
- ``storage_error``: its storage could not be read during the offload (the station's own store, or the
  station not being able to open the device node, is not the camera's fault and opens nothing);
- ``filesystem_damaged``: its filesystem holds damaged files or directories (a looping or cross-linked
  cluster chain, a truncated card, a failed read): those recordings stay on it and it is not freed;
- ``no_charge_current``: docked, not full, and the bay draws no current (the ChargeCurrentCheck health check)
  for ``charge_zero_fault_s``;
- ``not_full``: docked ``full_within_h`` hours without the board reporting it full;
- ``clock_drift``: its clock was off by more than the policy's limit at ``clock_drift_repeats`` check-out
  gates in a row (a failing real-time clock).

Inputs arrive as BayService observations and check-out gate readings, on the loop or worker threads; this
class only keeps small per-bay state and hands reports to the equipment service's worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tinydb import Query, TinyDB

from appliance.config import MaintenanceSection
from appliance.gate import Reading
from appliance.health.charge_current import ChargeCurrentCheck, ChargeReading
from devices.camera.model import CameraGone
from devices.volumes import StationSideError, VolumeDamaged, VolumeError

WATCH = "fault_watch"  # StateDB table: per camera, gate clock readings beyond policy in a row
DAMAGED_NAMED = 10  # damaged files named in a fault's detail (the offload_error log entry names more)
UNRESPONSIVE_GRACE_S = 2.0  # an error from a camera being pulled out is not a fault: wait for the undock

Report = Callable[[str, str, dict[str, Any]], None]  # (camera, reason, detail): opens a station fault


class FaultDetector:
    def __init__(
        self,
        settings: MaintenanceSection,
        max_clock_drift_s: float,
        report: Report,
        camera_in_bay: Callable[[int], str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.max_clock_drift_s = max_clock_drift_s
        self.report = report
        self.camera_in_bay = camera_in_bay
        self.clock = clock
        self.charge = ChargeCurrentCheck(warn_after_s=settings.charge_zero_fault_s / 2, fail_after_s=None)
        self._docked: dict[int, tuple[str, float]] = {}  # bay -> (camera, docked at)
        self._reported: set[tuple[int, str]] = set()  # (bay, reason) already reported this docking
        self._lock = threading.Lock()

    # -- bay observations
    def observe(self, what: str, bay: int, data: dict[str, Any]) -> None:
        if what == "identify":
            with self._lock:
                self._docked[bay] = (data["camera"], self.clock())
                self._reported = {r for r in self._reported if r[0] != bay}
        elif what == "undock":
            with self._lock:
                self._docked.pop(bay, None)
                self._reported = {r for r in self._reported if r[0] != bay}
            self.charge.observe(bay, ChargeReading(self.clock(), False, "idle", 0))
        elif what == "error":
            self._error(bay, data)
        elif what == "charge":
            self._charge(bay, data)

    def _error(self, bay: int, data: dict[str, Any]) -> None:
        exc = data.get("exception")
        camera = data["camera"]
        if isinstance(exc, VolumeDamaged):
            named = [{"path": f.path, "reason": f.reason} for f in exc.findings[:DAMAGED_NAMED]]
            detail = {"bay": bay, "count": len(exc.findings), "files": named, "detail": str(exc)[:300]}
            self._once(bay, camera, "filesystem_damaged", detail)
        elif isinstance(exc, VolumeError) and not isinstance(exc, StationSideError):
            self._once(bay, camera, "storage_error", {"bay": bay, "detail": str(exc)[:300]})
        elif isinstance(exc, CameraGone):  # not a wrong password or a serial mismatch: those are alarms
            detail = {"bay": bay, "error": data.get("error", ""), "detail": str(exc)[:300]}

            def still_there() -> None:  # a camera pulled out mid-identify is not a silent camera
                if self.camera_in_bay(bay) == camera:
                    self._once(bay, camera, "unresponsive", detail)

            timer = threading.Timer(UNRESPONSIVE_GRACE_S, still_there)
            timer.daemon = True
            timer.start()

    def _charge(self, bay: int, data: dict[str, Any]) -> None:
        with self._lock:
            docked = self._docked.get(bay)
        now = self.clock()
        state = str(data.get("state") or "unknown")
        if docked is None or data.get("current_ma") is None or state == "unknown":
            return  # no camera identified here, or no board to tell
        self.charge.observe(bay, ChargeReading(now, bool(data.get("present")), state, float(data["current_ma"])))
        camera, since = docked
        stalled = self.charge.stalled_for(bay)
        if stalled >= self.settings.charge_zero_fault_s:
            self._once(bay, camera, "no_charge_current", {"bay": bay, "stalled_s": round(stalled, 1)})
        docked_s = now - since
        if state != "full" and docked_s >= self.settings.full_within_h * 3600:
            self._once(bay, camera, "not_full", {"bay": bay, "docked_s": round(docked_s), "state": state})

    def _once(self, bay: int, camera: str, reason: str, detail: dict[str, Any]) -> None:
        with self._lock:
            if (bay, reason) in self._reported:
                return
            self._reported.add((bay, reason))
        self.report(camera, reason, detail)

    # -- check-out gate readings
    def gate(self, db: TinyDB, camera: str, readings: Sequence[Reading]) -> bool:
        """Count gates in a row where the camera's clock was off beyond policy before the sync; True when
        that reaches ``clock_drift_repeats`` (the caller opens the fault). Runs on the StateDB thread."""
        clock = next((r for r in readings if r.check == "clock"), None)
        if clock is None or not isinstance(clock.value, dict):
            return False
        drift = abs(float(clock.value.get("before_s", 0.0)))
        table = db.table(WATCH)
        row = table.get(Query().camera == camera) or {"camera": camera, "clock_drift_in_a_row": 0}
        count = row["clock_drift_in_a_row"] + 1 if drift > self.max_clock_drift_s else 0  # type: ignore[index]
        table.upsert({"camera": camera, "clock_drift_in_a_row": count}, Query().camera == camera)
        return count >= self.settings.clock_drift_repeats
