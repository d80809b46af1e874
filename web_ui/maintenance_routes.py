"""Equipment management routes: maintenance log and schedule, faults, battery health, spot checks, reports.
Handlers validate and delegate to appliance/ services (blocking work on the equipment service's worker).

Two routers, so access control can be added in one place at merge: ``kiosk`` (an officer reporting a fault
at check-in, the maintenance reminder) and ``equipment`` (equipment staff and supervisors on the admin page).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from appliance import faults, maintenance
from appliance.attachments import AttachmentError
from appliance.equipment import EquipmentService
from appliance.faults import FaultError
from appliance.maintenance import EntryRequest, MaintenanceError

if TYPE_CHECKING:
    from appliance.station import Station

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, Field(max_length=1000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckinFault(_Body):
    camera: Annotated[str, Field(min_length=1, max_length=16)]
    reason: Annotated[str, Field(min_length=1, max_length=32)]
    text: Text = ""


class StaffFault(CheckinFault):
    by: Annotated[str, Field(min_length=1, max_length=16)]


class EntryBody(_Body):
    target: Literal["camera", "dock", "bay", "disk"]
    target_id: Annotated[str, Field(min_length=1, max_length=32)]
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    by: Annotated[str, Field(min_length=1, max_length=16)]
    what: Text = ""
    result: Annotated[str, Field(max_length=16)] = "ok"
    performed_at: datetime | None = None
    attachments: Annotated[list[Sha256], Field(max_length=16)] = []
    faults: Annotated[list[Annotated[str, Field(max_length=16)]], Field(max_length=16)] = []
    corrects: Annotated[str, Field(max_length=16)] | None = None


def error(kind: str, exc: Exception, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "field": field, "message": str(exc)}, status_code=400)


def build_router(station: Station) -> APIRouter:
    """One router for web_ui/app.py holding both: a role guard goes into the ``dependencies`` of each."""
    kiosk = APIRouter(dependencies=[])
    equipment = APIRouter(dependencies=[])

    def service() -> EquipmentService:
        if station.equipment is None:
            raise HTTPException(503, "station is starting")
        return station.equipment

    # -- kiosk
    @kiosk.get("/faults/reasons")
    async def fault_reasons() -> dict[str, list[str]]:
        return {"officer": list(faults.OFFICER_REASONS)}

    @kiosk.post("/faults/checkin", response_model=None)
    async def report_at_checkin(body: CheckinFault) -> dict[str, Any] | JSONResponse:
        try:
            return await service().run(service().report_at_checkin, body.camera, body.reason, body.text)
        except FaultError as exc:
            return error("fault", exc)

    @kiosk.get("/maintenance/schedule/{serial}")
    async def camera_schedule(serial: str) -> dict[str, Any]:
        rows = await service().run(service().schedule)
        row = next((r for r in rows if r["camera"] == serial), None)
        if row is None:
            raise HTTPException(404, f"no scheduled camera {serial}")
        return row

    # -- equipment staff
    @equipment.get("/maintenance/schedule")
    async def schedule() -> list[dict[str, Any]]:
        return await service().run(service().schedule)

    @equipment.get("/maintenance/entries")
    async def entries(
        target: str | None = None, target_id: str | None = None, history: bool = False
    ) -> list[dict[str, Any]]:
        read = maintenance.history if history else maintenance.effective
        return await station.db.run(lambda db: read(db, target, target_id))

    @equipment.post("/maintenance/entries", response_model=None)
    async def record(body: EntryBody) -> dict[str, Any] | JSONResponse:
        request = EntryRequest(
            target=body.target,
            target_id=body.target_id,
            kind=body.kind,
            by=body.by,
            what=body.what,
            result=body.result,
            performed_at=body.performed_at,
            attachments=tuple(body.attachments),
            faults=tuple(body.faults),
            corrects=body.corrects,
        )
        try:
            return await service().run(service().record, request)
        except MaintenanceError as exc:
            return error("maintenance", exc, exc.field)

    @equipment.post("/maintenance/attachments", response_model=None)
    async def attach(request: Request) -> dict[str, Any] | JSONResponse:
        limit = service().attachments.max_bytes
        if int(request.headers.get("content-length") or 0) > limit:
            raise HTTPException(413, f"attachment larger than {limit // 2**20} MiB")
        data = await request.body()
        try:
            return await service().run(service().add_attachment, data)
        except AttachmentError as exc:
            return error("attachment", exc)

    @equipment.get("/maintenance/attachments/{digest}")
    async def attachment(digest: str) -> Response:
        try:
            data, kind = await service().run(service().attachments.get, digest)
        except AttachmentError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(data, media_type=kind)

    @equipment.get("/faults")
    async def list_faults(status: Literal["open", "all"] = "open") -> list[dict[str, Any]]:
        return await station.db.run(faults.open_faults if status == "open" else faults.all_faults)

    @equipment.post("/faults", response_model=None)
    async def report(body: StaffFault) -> dict[str, Any] | JSONResponse:
        try:
            return await service().run(service().report_fault, body.camera, body.reason, "staff", body.by, body.text)
        except FaultError as exc:
            return error("fault", exc)

    router = APIRouter(prefix="/api")
    router.include_router(kiosk)
    router.include_router(equipment)
    return router
