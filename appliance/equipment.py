"""Equipment management as one service for the station and the web layer: the maintenance log and its
attachments, the schedule, faults (reported and detected), battery health.

Every write (StateDB, fsynced event log) runs on this service's own single worker thread, so listeners
called on the event loop (dock board polls) or on offload threads only hand work over and never block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from tinydb import Query

from appliance import battery, faults, inventory, maintenance, reports
from appliance.alarms import AlarmBoard
from appliance.attachments import AttachmentStore
from appliance.checkout import ASSIGNMENTS
from appliance.config import StationConfig
from appliance.deadlines import WorkCalendar
from appliance.eventlog import EventLog
from appliance.fault_detection import FaultDetector
from appliance.gate import Reading
from appliance.maintenance import EntryRequest, MaintenanceLog
from appliance.policy import PolicyProfile
from appliance.spot_checks import SpotChecks
from appliance.state.db import StateDB

if TYPE_CHECKING:
    from appliance.bays import BayService
    from appliance.checkout import CheckoutService

log = logging.getLogger(__name__)
T = TypeVar("T")


class EquipmentService:
    def __init__(
        self,
        config: StationConfig,
        policy: PolicyProfile,
        db: StateDB,
        events: EventLog,
        alarms: AlarmBoard | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.db = db
        self.events = events
        self.alarms = alarms
        settings = config.maintenance
        self.attachments = AttachmentStore(config.state_dir / "attachments", int(settings.attachment_max_mib * 2**20))
        self.log = MaintenanceLog(db, events, tuple(b.number for b in config.bays), self.attachments.exists)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="equipment")
        self.bays: BayService | None = None
        self.spot_checks = SpotChecks(db, events, ZoneInfo(config.station.timezone))
        self.battery_monitor = battery.BatteryMonitor(lambda row: self.submit(self._store_battery_reading, row))
        self.detector = FaultDetector(
            settings, policy.checkout.max_clock_drift_s.value, self._station_fault, self._camera_in_bay
        )

    def attach(self, bays: BayService, checkout: CheckoutService | None = None) -> None:
        """Watch the bays (dock, errors, charging) and the check-out gate's readings."""
        self.bays = bays
        bays.observers.append(self.detector.observe)
        bays.observers.append(self.battery_monitor.observe)
        bays.observers.append(self._show_lock)
        if checkout is not None:
            checkout.gate_observers.append(self._gate_readings)

    def _show_lock(self, what: str, bay: int, data: dict[str, Any]) -> None:
        if what == "identify":  # a locked camera docks: its bay must not light green
            self.submit(self._refresh_lock, data["camera"])

    def _refresh_lock(self, camera: str) -> None:
        row = self.db.call(lambda db: inventory.camera(db, camera)) or {}
        if self.bays is not None:
            self.bays.set_locked(camera, row.get("lock") is not None)

    def set_lock(self, serial: str, reason: str | None, by: str) -> dict[str, Any]:
        """Lock a camera out of check-out by hand (``reason``) or lift a hand-set lock (None): stored, logged
        with who did it, and shown on its bay's LED at once if it is docked. Worker thread."""
        row = self.db.call(lambda db: inventory.set_camera_lock(db, serial, reason, by))
        if reason is None:
            self.events.append("camera_unlocked", {"camera": serial, "by": by})
        else:
            self.events.append("camera_locked", {"camera": serial, "reason": reason, "by": by})
        self._refresh_lock(serial)
        return row

    def _camera_in_bay(self, bay: int) -> str | None:
        if self.bays is None:
            return None
        view = self.bays.views[bay]
        return None if view.state in ("empty", "unauthorised") else (view.camera or {}).get("serial")

    def _station_fault(self, camera: str, reason: str, detail: dict[str, Any]) -> None:
        try:
            self.submit(self.report_fault, camera, reason, "station", "station", "", detail)
        except RuntimeError:  # the station is stopping (a late timer): the condition is seen again next start
            log.warning("camera %s: %s seen while stopping; not reported", camera, reason)

    def _gate_readings(self, camera: str, readings: list[Reading]) -> None:
        if self.db.call(lambda db: self.detector.gate(db, camera, readings)):
            drift = next((r.value for r in readings if r.check == "clock"), {})
            self._station_fault(camera, "clock_drift", {"clock": drift})

    # -- running work
    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Hand blocking work to the service's worker (from any thread, the loop included)."""
        future = self._worker.submit(fn, *args)
        future.add_done_callback(_log_failure)
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._worker.submit(fn, *args))

    def flush(self) -> None:
        """Wait until the work handed over so far is done (tests, shutdown)."""
        self._worker.submit(lambda: None).result()

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    # -- maintenance log
    def record(self, request: EntryRequest, now: datetime | None = None) -> dict[str, Any]:
        row = self.log.record(request, now)
        camera = row["target_id"]
        if row["faults"] and self.alarms and not self.db.call(lambda db: faults.open_faults(db, camera)):
            self.alarms.clear(f"fault:{camera}")
        if row["faults"]:
            self._refresh_lock(camera)
        return row

    def add_attachment(self, data: bytes) -> dict[str, str | int]:
        return self.attachments.put(data)

    def schedule(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(UTC)
        return self.db.call(
            lambda db: maintenance.schedule(db, self.policy, now, self.config.maintenance.due_soon_days)
        )

    # -- battery health
    def _store_battery_reading(self, row: dict[str, Any]) -> None:
        entry = self.events.append("battery_reading", row)
        self.db.call(lambda db: db.table(battery.TABLE).insert({**row, "seq": entry.seq}))

    def battery_health(self, camera: str) -> dict[str, Any]:
        """The camera's charge readings since its latest battery replacement and their capacity trend."""
        settings = self.config.maintenance

        def read(db: Any) -> dict[str, Any]:
            replaced = [
                r["performed_at"]
                for r in maintenance.effective(db, "camera", camera)
                if r["kind"] == "battery_replacement"
            ]
            rows = battery.since_last_battery(battery.readings(db, camera), replaced)
            return {
                "camera": camera,
                "readings": rows,
                **battery.estimate(rows, settings.battery_weak_fraction, settings.battery_min_span_pct),
            }

        return self.db.call(read)

    def battery_overview(self) -> list[dict[str, Any]]:
        """Every camera's battery trend in short, weak ones first."""
        serials = [c["serial"] for c in self.db.call(inventory.cameras) if c["status"] != "retired"]
        out = []
        for serial in serials:
            health = self.battery_health(serial)
            out.append({k: health[k] for k in ("camera", "samples", "trend", "weak")})
        return sorted(out, key=lambda r: (not r["weak"], r["camera"]))

    # -- monthly report
    def monthly_report(self, year: int, month: int) -> dict[str, Any]:
        """Blocking: reads the event log (refusals) and the state; any worker thread."""
        calendar = WorkCalendar(ZoneInfo(self.config.station.timezone))
        start, end = reports.month_bounds(year, month, ZoneInfo(self.config.station.timezone))
        refusals = reports.gate_refusals(self.events, start, end)
        days = self.config.maintenance.due_soon_days
        return self.db.call(lambda db: reports.monthly_report(db, refusals, self.policy, calendar, year, month, days))

    # -- faults
    def report_at_checkin(self, camera: str, reason: str, text: str = "") -> dict[str, Any]:
        """An officer's report at the kiosk, attributed to the camera's latest assignment."""
        last = self.db.call(lambda db: last_holders(db, camera))
        by = last["officers"][0]["police_no"] if last else ""
        detail = {"assignment": last["id"], "officers": [o["police_no"] for o in last["officers"]]} if last else {}
        return self.report_fault(camera, reason, "officer", by, text, detail)

    def report_fault(
        self, camera: str, reason: str, source: str, by: str, text: str = "", detail: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Open a fault and lock the camera; a condition the station already reported is not reported again."""

        def check(db: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
            row = faults.validate_report(db, camera, reason, source, by, text)
            return row, faults.duplicate(db, camera, reason) if source == "station" else None

        row, existing = self.db.call(check)
        if existing is not None:
            return existing
        opened_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.events.append("fault_opened", {**row, "detail": detail or {}})
        stored = self.db.call(lambda db: faults.store_open(db, row, opened_at, detail or {}))
        if self.alarms is not None:
            self.alarms.raise_(
                f"fault:{camera}",
                "alarm.fault",
                f"camera {camera}: fault {row['id']} ({reason}) reported by {source} {by}; locked until repaired",
                camera=camera,
                fault=row["id"],
            )
        self._refresh_lock(camera)
        log.warning("camera %s: fault %s opened (%s, %s)", camera, row["id"], reason, source)
        return stored


def last_holders(db: Any, camera: str) -> dict[str, Any] | None:
    """The latest assignment of ``camera`` (who had it last): whoever reports a fault at check-in."""
    rows = db.table(ASSIGNMENTS).search(Query().camera == camera)
    return max(rows, key=lambda r: r["issued_at"], default=None)


def _log_failure(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("equipment work failed", exc_info=future.exception())
