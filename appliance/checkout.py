"""Check-out and check-in of cameras: the pair rule (003 Art. 15), the pre-use gate, the assignment.

Flow at the kiosk: each officer identifies (badge card, or police number + PIN) and gets a short-lived
ticket; a check-out presents the tickets and optionally a bay. The service proposes the best ready camera,
runs the gate on it, and only if every check passes writes the officer record into the camera, logs the
assignment with every reading, opens the bay latch and lights the bay. Docking the camera again closes the
assignment, whoever docks it: check-in is never refused.

Assignments live in the StateDB table ``assignments`` (the usage ledger reads them); the event log holds
the signed history (``checkout``, ``checkout_refused``, ``checkout_taken``, ``checkin``, ``checkout_cancelled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tinydb import Query, TinyDB

from appliance import inventory
from appliance.alarms import AlarmBoard
from appliance.assignments import ASSIGNMENTS, OPEN
from appliance.bays import BayService
from appliance.config import StationConfig
from appliance.deadlines import WorkCalendar
from appliance.eventlog import EventLog
from appliance.gate import Reading, camera_checks, first_failure, registry_checks
from appliance.pins import verify_pin
from appliance.policy import PolicyProfile
from appliance.state.db import StateDB
from devices.camera.model import CameraError, OfficerRecord
from devices.gpio.base import BayIndicators, GpioError

log = logging.getLogger(__name__)

TAKE_WITHIN_S = 300  # an issued camera left in its bay this long is taken back (assignment cancelled)


class CheckoutRefused(Exception):
    """A check-out that cannot go ahead. ``code`` is a message-catalogue key, ``args`` fill its placeholders;
    ``status`` is the HTTP status the API answers with."""

    def __init__(self, code: str, status: int = 409, **args: Any) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.args_ = args
        self.readings: list[dict[str, Any]] = []
        self.alternative: dict[str, Any] | None = None
        self.bay: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": self.code,
            "args": self.args_,
            "bay": self.bay,
            "readings": self.readings,
            "alternative": self.alternative,
        }


@dataclass
class _Ticket:
    police_no: str
    expires: float


class CheckoutService:
    def __init__(
        self,
        config: StationConfig,
        policy: PolicyProfile,
        db: StateDB,
        events: EventLog,
        bays: BayService,
        alarms: AlarmBoard,
        indicators: BayIndicators,
        calendar: WorkCalendar | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.db = db
        self.events = events
        self.bays = bays
        self.alarms = alarms
        self.indicators = indicators
        self.calendar = calendar or WorkCalendar(ZoneInfo(config.station.timezone))
        self._tickets: dict[str, _Ticket] = {}
        self._lock = asyncio.Lock()  # one check-out at a time: the one-camera-per-officer rule needs it
        bays.dock_listeners.append(self.on_dock)
        # Called (worker thread) with the camera's serial and every gate reading taken, passed or not.
        self.gate_observers: list[Callable[[str, list[Reading]], None]] = []
        bays.undock_listeners.append(self.on_undock)

    def _wall_clock(self) -> datetime:
        """Camera clocks keep local wall time (naive) in the station's time zone, whatever the OS zone is."""
        return datetime.now(self.calendar.tz).replace(tzinfo=None)

    @property
    def officers_required(self) -> int:
        return 1 if self.policy.allow_single_officer.value else 2

    # -- identification
    async def identify(self, card: str | None = None, police_no: str | None = None, pin: str | None = None) -> dict:
        """Check one officer's credential; returns a ticket for the check-out and the officer's public row."""
        if card:
            row = await self.db.run(lambda db: inventory.officer_by_card(db, card.strip()))
            if row is None:
                raise CheckoutRefused("checkout.error.unknown_card", 400)
        elif police_no and pin is not None:
            row = await self.db.run(lambda db: inventory.officer(db, police_no.strip()))
            if row is not None and not row.get("pin_hash"):
                raise CheckoutRefused("checkout.error.no_pin", 400)
            loop = asyncio.get_running_loop()
            ok = row is not None and await loop.run_in_executor(None, verify_pin, pin, row.get("pin_hash"))
            if not ok:
                self._log("identify_failed", {"police_no": police_no.strip()[:16]})
                raise CheckoutRefused("checkout.error.bad_pin", 400)
        else:
            raise CheckoutRefused("checkout.error.identify", 400)
        assert row is not None
        if not row["active"]:
            raise CheckoutRefused("checkout.error.inactive", 403, name=row["name"])
        self._expire_tickets()
        ticket = secrets.token_urlsafe(16)
        self._tickets[ticket] = _Ticket(row["police_no"], time.monotonic() + self.config.checkout.ticket_ttl_s)
        holding = await self.db.run(lambda db: _open_for_officer(db, row["police_no"]))
        return {
            "ticket": ticket,
            "officer": inventory.public_officer(row),
            "holding": holding["camera"] if holding else None,
        }

    def officer_of(self, ticket: str) -> str:
        """The police number a live identification ticket stands for (the kiosk's own-recordings page)."""
        self._expire_tickets()
        held = self._tickets.get(ticket)
        if held is None:
            raise CheckoutRefused("checkout.error.ticket", 400)
        return held.police_no

    def revoke(self, tickets: list[str]) -> None:
        """Drop tickets whose kiosk session ended (the officers walked away or signed out)."""
        for ticket in tickets:
            self._tickets.pop(ticket, None)

    def _expire_tickets(self) -> None:
        now = time.monotonic()
        for key in [k for k, t in self._tickets.items() if t.expires < now]:
            del self._tickets[key]

    # -- proposing a camera
    async def candidates(self, exclude: tuple[int, ...] = ()) -> list[dict[str, Any]]:
        """Ready cameras, best first: fully charged first, then by battery, then by free storage."""
        registry = {c["serial"]: c for c in await self.db.run(inventory.cameras)}
        found = []
        for view in self.bays.snapshot():
            serial = (view["camera"] or {}).get("serial")
            row = registry.get(serial or "")
            if (
                view["number"] in exclude
                or row is None
                or view["checkout"] is not None
                or row.get("lock") is not None
                or row.get("status") != "in_service"
                or not self.bays.offload_done(view["number"])
            ):
                continue
            full = (view["charge"] or {}).get("state") == "full" or (view["battery_pct"] or 0) >= 100
            found.append(
                {
                    "bay": view["number"],
                    "serial": serial,
                    "battery_pct": view["battery_pct"],
                    "storage_free": view["storage_free"],
                    "_key": (not full, -(view["battery_pct"] or 0), -(view["storage_free"] or 0), view["number"]),
                }
            )
        found.sort(key=lambda c: c.pop("_key"))
        return found

    def occupied(self) -> list[dict[str, Any]]:
        """Every bay an officer may pick: a registered camera docked and not already checked out. The gate
        decides whether it can go out; a bay that is not ready is offered so the kiosk can say why."""
        return [
            {"bay": v["number"], "serial": v["camera"]["serial"], "state": v["state"], "battery_pct": v["battery_pct"]}
            for v in self.bays.snapshot()
            if v["camera"] and v["state"] not in ("empty", "unauthorised") and v["checkout"] is None
        ]

    # -- check-out
    async def checkout(self, tickets: list[str], bay: int | None = None, exclude: tuple[int, ...] = ()) -> dict:
        async with self._lock:
            officers = await self._officers_for(tickets)
            if bay is None:
                proposals = await self.candidates(exclude)
                if not proposals:
                    raise CheckoutRefused("checkout.error.no_camera")
                bay = proposals[0]["bay"]
            elif bay not in self.bays.views:
                raise CheckoutRefused("checkout.error.no_bay", 400, bay=bay)
            loop = asyncio.get_running_loop()
            try:
                assignment = await loop.run_in_executor(None, self._gate_and_issue, bay, officers)
            except CheckoutRefused as refused:
                refused.bay = bay
                if refused.code.startswith(("gate.", "checkout.error.bay_")):
                    others = await self.candidates((*exclude, bay))
                    refused.alternative = others[0] if others else None
                raise  # the tickets stay valid: the same officers may take the camera offered instead
            for ticket in tickets:
                self._tickets.pop(ticket, None)
            return assignment

    async def _officers_for(self, tickets: list[str]) -> list[dict[str, Any]]:
        self._expire_tickets()
        if any(t not in self._tickets for t in tickets):
            raise CheckoutRefused("checkout.error.ticket", 400)
        numbers = [self._tickets[t].police_no for t in tickets]
        if len(set(numbers)) != len(numbers):
            raise CheckoutRefused("checkout.error.same_officer", 400)
        if not self.officers_required <= len(numbers) <= 2:
            raise CheckoutRefused("checkout.error.need_officers", 400, n=self.officers_required)
        rows = []
        for number in numbers:
            row = await self.db.run(lambda db, n=number: inventory.officer(db, n))
            if row is None or not row["active"]:
                raise CheckoutRefused("checkout.error.inactive", 403, name=(row or {}).get("name", number))
            holding = await self.db.run(lambda db, n=number: _open_for_officer(db, n))
            if holding is not None:
                raise CheckoutRefused("checkout.error.holds_camera", name=row["name"], serial=holding["camera"])
            rows.append(row)
        return rows

    def _gate_and_issue(self, bay: int, officers: list[dict[str, Any]]) -> dict[str, Any]:
        """Worker thread: the gate on the camera in ``bay``, then the hand-out. Nothing is handed out unless
        every check passed and the officer record is on the camera."""
        view = self.bays.views[bay]
        if view.checkout is not None:
            raise CheckoutRefused("checkout.error.bay_taken", bay=bay)
        serial = (view.camera or {}).get("serial")
        camera = self.db.call(lambda db: inventory.camera(db, serial)) if serial else None
        if camera is None or view.state in ("empty", "unauthorised"):
            raise CheckoutRefused("checkout.error.bay_empty", bay=bay)
        readings: list[Reading] = registry_checks(camera, self.bays.offload_done(bay))
        holder = officers[0]
        try:
            with self.bays.control(bay) as (control, _):
                live, battery, storage = camera_checks(
                    control, camera, self.policy.checkout, self.config.checkout.allowed_firmware, self._wall_clock
                )
                readings += live
                self.bays.note_readings(bay, battery, storage.total_bytes, storage.free_bytes)
                failed = first_failure(readings)
                if failed is None:
                    record = OfficerRecord(
                        serial=camera["serial"],
                        police_no=holder["police_no"],
                        name=holder["name"],
                        unit_code=holder["unit_code"],
                        unit_name=holder["unit_name"],
                    )
                    control.write_officer(record)
                    if control.read_officer() != record:
                        raise CameraError("officer record did not stick")
        except CameraError as exc:
            self._log("checkout_refused", self._body(bay, camera, officers, readings, "gate.camera", str(exc)))
            refused = CheckoutRefused("gate.camera")
            refused.readings = [r.as_dict() for r in readings]
            raise refused from None
        for observer in self.gate_observers:
            try:
                observer(camera["serial"], readings)
            except Exception:  # equipment management watching must never stop a check-out
                log.exception("gate observer %r failed", observer)
        if failed is not None:
            self._log("checkout_refused", self._body(bay, camera, officers, readings, failed.message))
            refused = CheckoutRefused(failed.message, **failed.args)
            refused.readings = [r.as_dict() for r in readings]
            raise refused

        issued = datetime.now(UTC)
        assignment = {
            "id": uuid.uuid4().hex[:16],
            "camera": camera["serial"],
            "bay": bay,
            "officers": [{"police_no": o["police_no"], "name": o["name"]} for o in officers],
            "issued_at": _iso(issued),
            "due_at": _iso(self.due(issued)),
            "taken_at": None,
            "returned_at": None,
            "return_bay": None,
            "status": "issued",
        }
        # Logged before the latch opens: no camera leaves without its assignment and readings on record.
        self._log("checkout", {**self._body(bay, camera, officers, readings), "assignment": assignment["id"]})
        self.db.call(lambda db: db.table(ASSIGNMENTS).insert(assignment))
        self.bays.set_checkout(
            bay, {"assignment": assignment["id"], "phase": "release", "officers": assignment["officers"]}
        )
        try:
            self.indicators.release_latch(bay, self.config.checkout.latch_pulse_s)
            self.indicators.buzz("ack")
        except GpioError as exc:  # the LED still shows the bay; staff can open it by hand
            log.warning("bay %s: latch did not open: %s", bay, exc)
        return {**assignment, "readings": [r.as_dict() for r in readings]}

    def _body(
        self,
        bay: int,
        camera: dict[str, Any],
        officers: list[dict[str, Any]],
        readings: list[Reading],
        failed: str | None = None,
        detail: str = "",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "bay": bay,
            "camera": camera["serial"],
            "officers": [o["police_no"] for o in officers],
            "policy": self.policy.id,
            "readings": [{"check": r.check, "ok": r.ok, "value": r.value, "limit": r.limit} for r in readings],
        }
        if failed:
            body["failed"] = failed
        if detail:
            body["detail"] = detail
        return body

    def due(self, issued: datetime) -> datetime:
        """When the camera must be back: the policy's hours, or the end of the working day if sooner."""
        by_hours = issued + timedelta(hours=self.policy.checkout.return_within_hours.value)
        return min(by_hours, self.calendar.end_of_working_day(issued).astimezone(UTC))

    # -- camera leaves / comes back
    async def on_undock(self, bay: int, serial: str | None) -> None:
        if serial is None:
            return
        now = _iso(datetime.now(UTC))

        def taken(db: TinyDB) -> dict[str, Any] | None:
            q = Query()
            row = db.table(ASSIGNMENTS).get((q.camera == serial) & (q.status == "issued") & (q.bay == bay))
            if row is not None:
                db.table(ASSIGNMENTS).update({"status": "out", "taken_at": now}, doc_ids=[row.doc_id])  # type: ignore[union-attr]
            return row  # type: ignore[return-value]

        row = await self.db.run(taken)
        if row is not None:
            self._log("checkout_taken", {"assignment": row["id"], "camera": serial, "bay": bay})
            self.bays.set_checkout(bay, {"assignment": row["id"], "phase": "out", "officers": row["officers"]})

    async def on_dock(self, bay: int, camera: dict[str, Any]) -> None:
        """Check-in: a camera with an open assignment is back, whoever docked it and in whichever bay."""
        serial = camera["serial"]
        now = datetime.now(UTC)

        def close(db: TinyDB) -> dict[str, Any] | None:
            q = Query()
            row = db.table(ASSIGNMENTS).get((q.camera == serial) & q.status.one_of(OPEN))
            if row is not None:
                db.table(ASSIGNMENTS).update(
                    {"status": "returned", "returned_at": _iso(now), "return_bay": bay},
                    doc_ids=[row.doc_id],  # type: ignore[union-attr]
                )
            return row  # type: ignore[return-value]

        row = await self.db.run(close)
        if row is None:
            return
        late = now > datetime.fromisoformat(row["due_at"])
        self._log(
            "checkin",
            {"assignment": row["id"], "camera": serial, "bay": bay, "issued_bay": row["bay"], "late": late},
        )
        for number in {row["bay"], bay}:
            if (self.bays.views[number].checkout or {}).get("assignment") == row["id"]:
                self.bays.set_checkout(number, None)
        self.alarms.clear(f"overdue:{serial}")
        self.bays.bus.publish("checkin", {"assignment": row["id"], "camera": serial, "bay": bay})

    # -- overdue cameras
    def check_overdue(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Raise an alarm for each camera out past its due time; take back issued cameras left in their bay.
        Worker thread or tests. Returns the overdue assignments."""
        now = now or datetime.now(UTC)
        rows = self.db.call(lambda db: db.table(ASSIGNMENTS).search(Query().status.one_of(OPEN)))
        overdue = []
        for row in rows:
            if row["status"] == "issued" and now - datetime.fromisoformat(row["issued_at"]) > timedelta(
                seconds=TAKE_WITHIN_S
            ):
                self._cancel(row)
            elif row["status"] == "out" and now > datetime.fromisoformat(row["due_at"]):
                overdue.append(dict(row))
                names = ", ".join(f"{o['name']} ({o['police_no']})" for o in row["officers"])
                self.alarms.raise_(
                    f"overdue:{row['camera']}",
                    "alarm.overdue",
                    f"camera {row['camera']} with {names} was due back at {row['due_at']}",
                    assignment=row["id"],
                    camera=row["camera"],
                )
        return overdue

    def _cancel(self, row: dict[str, Any]) -> None:
        self.db.call(lambda db: db.table(ASSIGNMENTS).update({"status": "cancelled"}, Query().id == row["id"]))
        self._log("checkout_cancelled", {"assignment": row["id"], "camera": row["camera"], "bay": row["bay"]})
        if (self.bays.views[row["bay"]].checkout or {}).get("assignment") == row["id"]:
            self.bays.set_checkout(row["bay"], None)

    async def watch(self, stop: asyncio.Event) -> None:
        """Restore the bays' on-duty marks after a restart, then look for overdue cameras periodically."""
        rows = await self.db.run(lambda db: db.table(ASSIGNMENTS).search(Query().status == "out"))
        for row in rows:
            self.bays.set_checkout(row["bay"], {"assignment": row["id"], "phase": "out", "officers": row["officers"]})
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await loop.run_in_executor(None, self.check_overdue)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.checkout.overdue_check_s)

    def _log(self, type_: str, body: dict[str, Any]) -> None:
        self.events.append(type_, body)


def _open_for_officer(db: TinyDB, police_no: str) -> dict[str, Any] | None:
    q = Query()
    return db.table(ASSIGNMENTS).get(q.status.one_of(OPEN) & q.officers.any(Query().police_no == police_no))  # type: ignore[return-value]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")
