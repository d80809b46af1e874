"""Recordings' metadata, access requests, decisions, and the views and exports a grant allows.

Handlers validate and delegate to appliance.access; every refusal answers with a message-catalogue code.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from starlette.background import BackgroundTask

from appliance.access import AccessRefused, AccessService, Party, recording_metadata
from appliance.security.roles import STAFF, Role
from appliance.security.sessions import Session
from web_ui.auth_routes import client_of
from web_ui.bodies import StrictBody
from web_ui.guards import current_session, require

if TYPE_CHECKING:
    from appliance.station import Station

Key = Annotated[str, Field(min_length=1, max_length=200)]
Who = Annotated[Session, Depends(current_session)]


class PartyForm(StrictBody):
    """The retrieval form of a party's copy (002 Art. 32, 003 Art. 23)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    id_number: Annotated[str, Field(min_length=1, max_length=32)]
    form_no: Annotated[str, Field(min_length=1, max_length=64)]
    form_signed: bool


class AccessRequest(StrictBody):
    kind: Literal["view", "export", "copy"]
    recordings: Annotated[list[Key], Field(min_length=1, max_length=100)]
    purpose: Annotated[str, Field(min_length=4, max_length=500)]
    party: PartyForm | None = None


class Decision(StrictBody):
    approve: bool
    hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    reason: Annotated[str, Field(min_length=1, max_length=500)]


def refused(exc: AccessRefused) -> JSONResponse:
    return JSONResponse({"detail": exc.code}, status_code=exc.status)


def build_access_router(station: Station, access: AccessService) -> APIRouter:
    # Who may ask: officers (their own cases) and staff who handle cases; the auditor reads, never asks.
    askers = (Role.OFFICER, Role.EQUIPMENT, Role.SUPERVISOR, Role.ADMIN)
    router = APIRouter(prefix="/api")

    @router.get("/recordings", dependencies=[require(Role.OFFICER, *STAFF)])
    async def recordings(session: Who) -> list[dict[str, Any]]:
        return await station.db.run(lambda db: recording_metadata(db, session.principal))

    @router.post("/access/requests", dependencies=[require(*askers)], response_model=None)
    async def ask(body: AccessRequest, session: Who) -> dict[str, Any] | JSONResponse:
        party = Party(**body.party.model_dump()) if body.party else None
        try:
            return await access.request(session.principal, body.kind, body.recordings, body.purpose, party)
        except AccessRefused as exc:
            return refused(exc)

    @router.get("/access/requests", dependencies=[require(*askers, Role.AUDITOR)])
    async def list_requests(session: Who) -> list[dict[str, Any]]:
        return await access.requests(session.principal)

    @router.post("/access/requests/{request_id}/decision", dependencies=[require(Role.SUPERVISOR)], response_model=None)
    async def decide(request_id: str, body: Decision, session: Who) -> dict[str, Any] | JSONResponse:
        try:
            return await access.decide(request_id, session.principal, body.approve, body.hours, body.reason)
        except AccessRefused as exc:
            return refused(exc)

    @router.get("/access/requests/{request_id}/view/{key:path}", dependencies=[require(*askers)], response_model=None)
    async def view(request_id: str, key: str, request: Request, session: Who) -> FileResponse | JSONResponse:
        try:
            path, recording = await access.view(request_id, key, session.principal, client_of(request))
        except AccessRefused as exc:
            return refused(exc)
        # inline, never a download: viewing is not copying (004 Art. 21)
        return FileResponse(path, media_type="video/mp4", content_disposition_type="inline", filename=recording["name"])

    @router.post(
        "/access/requests/{request_id}/export/{key:path}", dependencies=[require(*askers)], response_model=None
    )
    async def export(request_id: str, key: str, request: Request, session: Who) -> FileResponse | JSONResponse:
        try:
            path, name = await access.export(request_id, key, session.principal, client_of(request))
        except AccessRefused as exc:
            return refused(exc)

        def remove() -> None:  # the bundle exists only while it is sent: the station keeps no loose copies
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        return FileResponse(path, media_type="application/zip", filename=name, background=BackgroundTask(remove))

    return router
