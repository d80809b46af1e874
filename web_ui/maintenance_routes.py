"""Equipment management routes: maintenance log and schedule, faults, battery health, spot checks, reports.
Handlers validate and delegate to appliance/ services (blocking work on the equipment service's worker).

Three routers, each with its guard in one place: ``kiosk`` (an officer reporting a fault
at check-in, the maintenance reminder) and ``equipment`` (equipment staff and supervisors on the admin page).
Whoever is recorded as doing something (``by``) is the signed-in account's police number (``Actor``), never a
value from the request.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import Field

from appliance import battery, faults, inventory, maintenance, reports, spot_checks
from appliance.attachments import AttachmentError
from appliance.equipment import EquipmentService
from appliance.faults import FaultError
from appliance.maintenance import EntryRequest, MaintenanceError
from appliance.report_pdf import html_to_pdf
from appliance.security.roles import READERS, Role
from appliance.security.sessions import Session
from appliance.spot_checks import ApprovalRequired, SpotCheckError
from web_ui.bodies import StrictBody
from web_ui.guards import acting_police_no, current_session, kiosk, linked_police_no, require
from web_ui.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue

if TYPE_CHECKING:
    from appliance.station import Station

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, Field(max_length=1000)]
# Who records an entry, a fault or a verdict: the signed-in account's police number, never the client's word.
Actor = Annotated[str, Depends(acting_police_no)]
Who = Annotated[Session, Depends(current_session)]


class FaultBody(StrictBody):
    camera: Annotated[str, Field(min_length=1, max_length=16)]
    reason: Annotated[str, Field(min_length=1, max_length=32)]
    text: Text = ""


class EntryBody(StrictBody):
    target: Literal["camera", "dock", "bay", "disk"]
    target_id: Annotated[str, Field(min_length=1, max_length=32)]
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    what: Text = ""
    result: Annotated[str, Field(max_length=16)] = "ok"
    performed_at: datetime | None = None
    attachments: Annotated[list[Sha256], Field(max_length=16)] = Field(default_factory=list)
    faults: Annotated[list[Annotated[str, Field(max_length=16)]], Field(max_length=16)] = Field(default_factory=list)
    corrects: Annotated[str, Field(max_length=16)] | None = None


class DrawBody(StrictBody):
    size: Annotated[int, Field(ge=1, le=500)]
    since: date
    until: date
    seed: Annotated[int, Field(ge=0, lt=2**53)] | None = None


class VerdictBody(StrictBody):
    key: Annotated[str, Field(min_length=1, max_length=200)]
    verdict: Annotated[str, Field(max_length=16)]
    note: Text = ""


MonthParam = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")]


def error(kind: str, exc: Exception, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "field": field, "message": str(exc)}, status_code=400)


def build_router(station: Station) -> APIRouter:
    """One router for web_ui/app.py holding both: a role guard goes into the ``dependencies`` of each."""
    # Guards (web_ui/guards.py): the kiosk part answers the station's display only; staff read with any staff
    # role (the auditor included) and write as equipment staff; spot checks and their replay are the inspecting
    # supervisor's alone (004 Art. 22, 004 Art. 15): not the administrator's, whose role is accounts and what
    # equipment staff may (docs/security.md).
    kiosk_router = APIRouter(prefix="/api", dependencies=[kiosk()])
    equipment = APIRouter(prefix="/api", dependencies=[require(*READERS)])
    pages = APIRouter(dependencies=[require(*READERS)])  # equipment staff's pages
    change = require(Role.EQUIPMENT, Role.ADMIN)
    supervise = require(Role.SUPERVISOR)
    templates = Jinja2Templates(directory=str(resources.files("web_ui") / "templates"))

    def service() -> EquipmentService:
        if station.equipment is None:
            raise HTTPException(503, "station is starting")
        return station.equipment

    # -- kiosk
    @kiosk_router.get("/faults/reasons")
    async def fault_reasons() -> dict[str, list[str]]:
        return {"officer": list(faults.OFFICER_REASONS)}

    @kiosk_router.post("/faults/checkin", response_model=None)
    async def report_at_checkin(body: FaultBody) -> dict[str, Any] | JSONResponse:
        try:
            return await service().run(service().report_at_checkin, body.camera, body.reason, body.text)
        except FaultError as exc:
            return error("fault", exc)

    @kiosk_router.get("/maintenance/schedule/{serial}")
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

    @equipment.post("/maintenance/entries", response_model=None, dependencies=[change])
    async def record(body: EntryBody, by: Actor) -> dict[str, Any] | JSONResponse:
        request = EntryRequest(
            target=body.target,
            target_id=body.target_id,
            kind=body.kind,
            by=by,
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

    @equipment.post("/maintenance/attachments", response_model=None, dependencies=[change])
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

    @equipment.post("/faults", response_model=None, dependencies=[change])
    async def report(body: FaultBody, by: Actor) -> dict[str, Any] | JSONResponse:
        try:
            return await service().run(service().report_fault, body.camera, body.reason, "staff", by, body.text)
        except FaultError as exc:
            return error("fault", exc)

    @equipment.get("/battery/{serial}")
    async def battery_health(serial: str) -> dict[str, Any]:
        await _known_camera(serial)
        return await service().run(service().battery_health, serial)

    @equipment.get("/battery")
    async def battery_overview() -> list[dict[str, Any]]:
        return await service().run(service().battery_overview)

    @equipment.post("/spot-checks", response_model=None, dependencies=[supervise])
    async def draw(body: DrawBody, by: Actor) -> dict[str, Any] | JSONResponse:
        checks = service().spot_checks
        try:
            return await service().run(checks.draw, by, body.size, body.since, body.until, body.seed)
        except SpotCheckError as exc:
            return error("spot_check", exc)

    @equipment.get("/spot-checks")
    async def spot_check_ledger() -> list[dict[str, Any]]:
        return await station.db.run(spot_checks.ledger)

    @equipment.post("/spot-checks/{check_id}/verdicts", response_model=None, dependencies=[supervise])
    async def verdict(check_id: str, body: VerdictBody, by: Actor) -> dict[str, Any] | JSONResponse:
        checks = service().spot_checks
        try:
            return await service().run(checks.verdict, check_id, body.key, by, body.verdict, body.note)
        except SpotCheckError as exc:
            return error("spot_check", exc)

    @equipment.get("/spot-checks/{check_id}/recordings/{key:path}/view", response_model=None, dependencies=[supervise])
    async def view(check_id: str, key: str, by: Actor) -> JSONResponse:
        """Replay for the reviewer: the approval flow of the security issue decides (004 Art. 15)."""
        try:
            await service().run(service().spot_checks.view, check_id, key, by)
        except ApprovalRequired as exc:
            return JSONResponse({"error": "approval_required", "message": str(exc)}, status_code=403)
        raise HTTPException(501, "approved: serving the recording comes with the approval flow")

    # -- monthly report (004 Art. 23)
    def _month(month: str | None) -> tuple[int, int]:
        if month is None:
            today = datetime.now(ZoneInfo(station.config.station.timezone))
            return today.year, today.month
        year, number = int(month[:4]), int(month[5:])
        if not 1 <= number <= 12 or not 2000 <= year <= 2100:
            raise HTTPException(422, "month must be YYYY-MM between 2000-01 and 2100-12")
        return year, number

    async def _report(month: str | None) -> dict[str, Any]:
        year, number = _month(month)
        loop = asyncio.get_running_loop()  # not the equipment worker: faults must not wait for a report
        return await loop.run_in_executor(None, service().monthly_report, year, number)

    def _report_page(request: Request, report: dict[str, Any], lang: str, pdf: bool) -> str | HTMLResponse:
        t = catalogue(lang)
        zone = ZoneInfo(station.config.station.timezone)
        kinds = {k: t[f"maint.kind.{k}"] for k in maintenance.KINDS}
        reasons = {k: t[f"fault.reason.{k}"] for k in (*faults.OFFICER_REASONS, *faults.STATION_REASONS)}
        refusal_labels = {
            k: t.get(f"report.refusal.{k.removeprefix('gate.')}", k) for k in report["refusals"]["by_reason"]
        }
        per_officer = {f"{p} {r['name']}": r["count"] for p, r in report["checkouts"]["per_officer"].items()}
        charts = {
            "per_camera": Markup(reports.bar_chart_svg(report["checkouts"]["per_camera"])),
            "per_officer": Markup(reports.bar_chart_svg(per_officer)),
            "refusals": Markup(reports.bar_chart_svg(report["refusals"]["by_reason"], refusal_labels)),
            "faults": Markup(reports.bar_chart_svg(report["faults"]["by_reason"], reasons)),
            "maintenance": Markup(reports.bar_chart_svg(report["maintenance"]["by_kind"], kinds)),
        }
        period = report["period"]
        context = {
            "lang": lang,
            "t": t,
            "station": station.config.station,
            "report": report,
            "charts": charts,
            "pdf": pdf,
            "month_label": f"{period['year']}-{period['month']:02d}",
            "generated": datetime.fromisoformat(report["generated_at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        }
        if pdf:
            return templates.get_template("report.html").render(context)
        return templates.TemplateResponse(request, "report.html", context)

    @equipment.get("/reports/monthly")
    async def monthly(month: MonthParam = None) -> dict[str, Any]:
        return await _report(month)

    @equipment.get("/reports/monthly.csv")
    async def monthly_csv(month: MonthParam = None) -> Response:
        report = await _report(month)
        name = f"report-{report['period']['year']}-{report['period']['month']:02d}.csv"
        return Response(
            reports.report_csv(report).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @equipment.get("/reports/monthly.pdf")
    async def monthly_pdf(request: Request, month: MonthParam = None, lang: str = DEFAULT_LANGUAGE) -> Response:
        lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        report = await _report(month)
        html = _report_page(request, report, lang, pdf=True)
        assert isinstance(html, str)
        pdf = await asyncio.get_running_loop().run_in_executor(None, html_to_pdf, html)
        name = f"report-{report['period']['year']}-{report['period']['month']:02d}.pdf"
        return Response(
            pdf, media_type="application/pdf", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    @pages.get("/admin/report", response_class=HTMLResponse)
    async def report_page(request: Request, month: MonthParam = None, lang: str = DEFAULT_LANGUAGE) -> Any:
        lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        return _report_page(request, await _report(month), lang, pdf=False)

    async def _known_camera(serial: str) -> dict[str, Any]:
        row = await station.db.run(lambda db: inventory.camera(db, serial))
        if row is None:
            raise HTTPException(404, f"no camera {serial} in the registry")
        return row

    # -- pages
    @pages.get("/admin/camera/{serial}", response_class=HTMLResponse)
    async def camera_page(request: Request, serial: str, session: Who, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        camera = await _known_camera(serial)
        health = await service().run(service().battery_health, serial)
        history = await station.db.run(lambda db: maintenance.history(db, "camera", serial))
        camera_faults = [f for f in await station.db.run(faults.all_faults) if f["camera"] == serial]
        zone = ZoneInfo(station.config.station.timezone)
        return templates.TemplateResponse(
            request,
            "camera.html",
            {
                "lang": lang,
                "t": catalogue(lang),
                "station": station.config.station,
                "camera": {k: v for k, v in camera.items() if k != "password"},
                "health": health,
                "chart": Markup(battery.chart_svg(health)),  # numbers only, built by the station
                "min_points": battery.MIN_POINTS,
                "kinds": maintenance.KINDS,
                "results": maintenance.RESULTS,
                "history": history,
                "faults": camera_faults,
                "actor": linked_police_no(session),  # who an entry made here is recorded as
                "local": lambda iso: datetime.fromisoformat(iso).astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            },
        )

    router = APIRouter()
    for part in (kiosk_router, equipment, pages):
        router.include_router(part)
    return router
