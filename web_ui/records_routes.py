"""An officer's own recordings at the kiosk: list, tag (003 Art. 17), explain gaps (003 Art. 12). Handlers
validate and delegate to appliance.records. Kiosk display only. The officer is the one behind a live
identification ticket of this kiosk session (card or police number + PIN, as for check-out); it travels in
the body, never in a URL that logs keep."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import Field

from appliance.checkout import CheckoutRefused
from appliance.records import RecordsRefused, RecordsService
from appliance.security.roles import Role
from appliance.security.sessions import Session
from web_ui.bodies import StrictBody
from web_ui.guards import current_session, kiosk

if TYPE_CHECKING:
    from appliance.station import Station

_Ticket = Annotated[str, Field(min_length=1, max_length=64)]
CurrentSession = Annotated[Session, Depends(current_session)]


class MineRequest(StrictBody):
    ticket: _Ticket


class TagRequest(StrictBody):
    ticket: _Ticket
    category: Annotated[str, Field(max_length=40)]
    place: Annotated[str, Field(max_length=500)]
    description: Annotated[str, Field(max_length=500)]
    case_number: Annotated[str, Field(max_length=100)] | None = None
    party: Annotated[str, Field(max_length=100)] | None = None


class ExplainRequest(StrictBody):
    ticket: _Ticket
    assignment: Annotated[str, Field(min_length=1, max_length=40)]
    start: Annotated[str, Field(min_length=1, max_length=40)]
    text: Annotated[str, Field(max_length=1000)]


_SHA256 = r"^[0-9a-f]{64}$"


def build_router(station: Station) -> APIRouter:
    router = APIRouter(prefix="/api/records", dependencies=[kiosk(Role.OFFICER)])

    def service() -> RecordsService:
        if station.records is None or station.checkout is None:
            raise HTTPException(503, "station is starting")
        return station.records

    def officer(ticket: str, session: Session) -> str:
        assert station.checkout is not None
        if ticket not in session.tickets:  # only an officer who identified at this kiosk, in this session
            raise CheckoutRefused("checkout.error.ticket", 400)
        return station.checkout.officer_of(ticket)

    async def call(fn: Any, *args: Any) -> Any:  # state and ffprobe block: off the event loop
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @router.post("/mine", response_model=None)
    async def mine(body: MineRequest, session: CurrentSession) -> dict[str, Any] | JSONResponse:
        svc = service()
        try:
            police_no = officer(body.ticket, session)
        except CheckoutRefused as exc:
            return JSONResponse(exc.as_dict(), status_code=exc.status)
        recordings = await call(svc.for_officer, police_no)
        gaps = await call(svc.gaps_for_officer, police_no)
        return {"officer": police_no, "recordings": recordings, "gaps": [g.as_dict() for g in gaps]}

    @router.post("/{sha256}/tag", response_model=None)
    async def tag(
        sha256: Annotated[str, Path(pattern=_SHA256)], body: TagRequest, session: CurrentSession
    ) -> dict[str, Any] | JSONResponse:
        svc = service()
        fields = body.model_dump(exclude={"ticket"})
        try:
            return await call(svc.tag, officer(body.ticket, session), sha256, fields)
        except (CheckoutRefused, RecordsRefused) as exc:
            return JSONResponse(exc.as_dict(), status_code=exc.status)

    @router.post("/gaps/explain", response_model=None)
    async def explain(body: ExplainRequest, session: CurrentSession) -> dict[str, Any] | JSONResponse:
        svc = service()
        try:
            args = (officer(body.ticket, session), body.assignment, body.start, body.text)
            view = await call(svc.explain_gap, *args)
        except (CheckoutRefused, RecordsRefused) as exc:
            return JSONResponse(exc.as_dict(), status_code=exc.status)
        return view.as_dict()

    return router
