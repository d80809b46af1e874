"""Check-out, ledger and registry routes. Handlers validate and delegate to the station's services.

Two routers with their access rules (web_ui/guards.py): ``kiosk`` answers only the station's display, where
officers identify (badge, or police number + PIN) into a short kiosk session holding their check-out tickets;
``equipment`` lets staff read and equipment staff or administrators change the registries.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from appliance import inventory, registry_csv
from appliance.checkout import CheckoutRefused, CheckoutService
from appliance.ledger import fleet_ratio, ledger, ledger_csv
from appliance.security.ratelimit import RateLimiter
from appliance.security.roles import READERS, Role
from appliance.security.sessions import Session
from web_ui.auth_routes import start_kiosk_session, throttle
from web_ui.bodies import StrictBody
from web_ui.guards import current_session, kiosk, linked_police_no, require

if TYPE_CHECKING:
    from appliance.station import Station

MAX_CSV_BYTES = 2 * 2**20


class IdentifyRequest(StrictBody):
    card: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    police_no: Annotated[str, Field(min_length=1, max_length=16)] | None = None
    pin: Annotated[str, Field(min_length=1, max_length=16)] | None = None


class CheckoutRequest(StrictBody):
    tickets: Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=4)]
    bay: Annotated[int, Field(ge=1, le=64)] | None = None
    exclude: Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(max_length=64)] = Field(default_factory=list)


class LockRequest(StrictBody):
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class OfficerEdit(StrictBody):
    name: str | None = None
    unit_code: str | None = None
    unit_name: str | None = None
    card: str | None = None
    role: str | None = None
    active: bool | None = None


class CameraEdit(StrictBody):
    usb_serial: str | None = None
    model: str | None = None
    vendor: str | None = None
    driver: str | None = None
    status: str | None = None
    bitrate_mbps: float | None = None
    password: str | None = None


def refusal(exc: CheckoutRefused) -> JSONResponse:
    return JSONResponse(exc.as_dict(), status_code=exc.status)


def registry_error(exc: inventory.RegistryError | registry_csv.CsvImportError) -> JSONResponse:
    errors = exc.errors if isinstance(exc, registry_csv.CsvImportError) else [str(exc)]
    return JSONResponse({"error": "registry", "errors": errors}, status_code=400)


def build_routers(station: Station) -> tuple[APIRouter, APIRouter]:
    kiosk_router = APIRouter(prefix="/api", dependencies=[kiosk()])
    equipment = APIRouter(prefix="/api", dependencies=[require(*READERS)])
    change = require(Role.EQUIPMENT, Role.ADMIN)  # on top of READERS: the auditor reads, never writes
    identify_limit = RateLimiter(station.config.security.identify_per_minute)
    security = station.config.security

    def service() -> CheckoutService:
        if station.checkout is None:
            raise HTTPException(503, "station is starting")
        return station.checkout

    def tz() -> ZoneInfo:
        return ZoneInfo(station.config.station.timezone)

    # -- kiosk
    @kiosk_router.post("/checkout/identify", response_model=None, dependencies=[throttle(identify_limit)])
    async def identify(body: IdentifyRequest, request: Request, response: Response) -> dict[str, Any] | JSONResponse:
        try:
            found = await service().identify(card=body.card, police_no=body.police_no, pin=body.pin)
        except CheckoutRefused as exc:
            return refusal(exc)
        web, police_no = request.app.state.security, found["officer"]["police_no"]
        start_kiosk_session(web, request, response, police_no, found["ticket"], security.kiosk_idle_s)
        return found

    officer = kiosk(Role.OFFICER)  # an officer identified in this kiosk session

    @kiosk_router.get("/checkout/proposal", dependencies=[officer])
    async def proposal(exclude: Annotated[list[int], Query()] = []) -> dict[str, Any]:  # noqa: B006
        svc = service()
        return {
            "candidates": await svc.candidates(tuple(exclude)),
            "bays": svc.occupied(),
            "officers_required": svc.officers_required,
        }

    @kiosk_router.post("/checkout", response_model=None, dependencies=[officer])
    async def checkout(
        body: CheckoutRequest, request: Request, session: Annotated[Session, Depends(current_session)]
    ) -> dict[str, Any] | JSONResponse:
        if not set(body.tickets) <= set(session.tickets):  # only the officers who identified here
            return refusal(CheckoutRefused("checkout.error.ticket", 400))
        try:
            done = await service().checkout(body.tickets, body.bay, tuple(body.exclude))
        except CheckoutRefused as exc:
            return refusal(exc)
        request.app.state.security.sessions.end(session.id)  # the pair is done: the next pair starts afresh
        return done

    # -- equipment staff
    @equipment.get("/assignments/open")
    async def open_assignments() -> list[dict[str, Any]]:
        return await station.db.run(lambda db: [r for r in ledger(db, tz()) if r["status"] in ("issued", "out")])

    def ledger_rows(camera: str | None, officer: str | None, since: date | None, until: date | None) -> Any:
        return station.db.run(lambda db: ledger(db, tz(), camera=camera, police_no=officer, since=since, until=until))

    @equipment.get("/ledger")
    async def usage_ledger(
        camera: str | None = None, officer: str | None = None, since: date | None = None, until: date | None = None
    ) -> list[dict[str, Any]]:
        return await ledger_rows(camera, officer, since, until)

    @equipment.get("/ledger.csv")
    async def usage_ledger_csv(
        camera: str | None = None, officer: str | None = None, since: date | None = None, until: date | None = None
    ) -> Response:
        rows = await ledger_rows(camera, officer, since, until)
        return _csv(ledger_csv(rows, tz()), "ledger.csv")

    @equipment.get("/fleet/ratio")
    async def ratio() -> dict[str, Any]:
        return await station.db.run(lambda db: fleet_ratio(db, station.policy))

    @equipment.get("/registry/officers")
    async def list_officers() -> list[dict[str, Any]]:
        return [inventory.public_officer(r) for r in await station.db.run(inventory.officers)]

    @equipment.get("/registry/cameras")
    async def list_cameras() -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "password"} for r in await station.db.run(inventory.cameras)]

    @equipment.get("/registry/officers.csv")
    async def export_officers() -> Response:
        return _csv(await station.db.run(registry_csv.export_officers), "officers.csv")

    @equipment.get("/registry/cameras.csv")
    async def export_cameras() -> Response:
        return _csv(await station.db.run(registry_csv.export_cameras), "cameras.csv")

    @equipment.post("/registry/officers.csv", response_model=None, dependencies=[change])
    async def import_officers(request: Request) -> dict[str, int] | JSONResponse:
        text = await _csv_body(request)
        # PINs in the file are hashed with scrypt: off the event loop, and not on the StateDB owner thread
        # (which would block every other state read meanwhile).
        loop = asyncio.get_running_loop()
        try:
            existing = {r["police_no"]: r for r in await station.db.run(inventory.officers)}
            rows = await loop.run_in_executor(None, registry_csv.parse_officers, text, existing.get)
            count = await station.db.run(lambda db: registry_csv.store_officers(db, rows))
        except registry_csv.CsvImportError as exc:
            return registry_error(exc)
        return {"imported": count}

    @equipment.post("/registry/cameras.csv", response_model=None, dependencies=[change])
    async def import_cameras(request: Request) -> dict[str, int] | JSONResponse:
        text = await _csv_body(request)
        try:
            count = await station.db.run(lambda db: registry_csv.import_cameras(db, text))
        except registry_csv.CsvImportError as exc:
            return registry_error(exc)
        return {"imported": count}

    @equipment.put("/registry/officers/{police_no}", response_model=None, dependencies=[change])
    async def edit_officer(police_no: str, body: OfficerEdit) -> dict[str, Any] | JSONResponse:
        fields = body.model_dump(exclude_none=True)
        try:
            row = await station.db.run(lambda db: inventory.upsert_officer(db, police_no, **fields))
        except inventory.RegistryError as exc:
            return registry_error(exc)
        return inventory.public_officer(row)

    @equipment.put("/registry/cameras/{serial}", response_model=None, dependencies=[change])
    async def edit_camera(serial: str, body: CameraEdit) -> dict[str, Any] | JSONResponse:
        fields = body.model_dump(exclude_none=True)
        try:
            row = await station.db.run(lambda db: inventory.upsert_camera(db, serial, **fields))
        except inventory.RegistryError as exc:
            return registry_error(exc)
        return {k: v for k, v in row.items() if k != "password"}

    @equipment.put("/registry/cameras/{serial}/lock", response_model=None, dependencies=[change])
    async def lock_camera(
        serial: str, body: Annotated[LockRequest, Body()], session: Annotated[Session, Depends(current_session)]
    ) -> dict[str, Any] | JSONResponse:
        return await _set_lock(serial, body.reason, session)

    @equipment.delete("/registry/cameras/{serial}/lock", response_model=None, dependencies=[change])
    async def unlock_camera(
        serial: str, session: Annotated[Session, Depends(current_session)]
    ) -> dict[str, Any] | JSONResponse:
        return await _set_lock(serial, None, session)

    async def _set_lock(serial: str, reason: str | None, session: Session) -> dict[str, Any] | JSONResponse:
        # Who locked it is the signed-in account (its staff police number when linked), never the client's say.
        by = linked_police_no(session) or session.principal.name
        if station.equipment is None:
            raise HTTPException(503, "station is starting")
        try:
            row = await station.equipment.run(station.equipment.set_lock, serial, reason, by)
        except inventory.RegistryError as exc:
            return registry_error(exc)
        return {"serial": serial, "lock": row["lock"]}

    return kiosk_router, equipment


async def _csv_body(request: Request) -> str:
    raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise HTTPException(413, f"CSV file larger than {MAX_CSV_BYTES // 2**20} MiB: split it")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "CSV file is not UTF-8: save it as “CSV UTF-8” and import again") from None


def _csv(text: str, name: str) -> Response:
    return Response(
        text.encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
