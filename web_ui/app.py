"""The FastAPI application. Handlers validate and delegate to the station's services; nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from appliance import __version__
from appliance.faults import OFFICER_REASONS
from appliance.security.roles import READERS, STAFF, Role
from appliance.security.sessions import SessionStore
from web_ui.access_routes import build_access_router
from web_ui.auth_routes import build_auth_router
from web_ui.checkout_routes import build_routers
from web_ui.guards import WebSecurity, kiosk, public, refuse_undeclared, require, seal
from web_ui.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue
from web_ui.maintenance_routes import build_router as maintenance_router
from web_ui.protection import Protection
from web_ui.records_routes import build_router as build_records_router

if TYPE_CHECKING:
    from appliance.station import Station

PACKAGE = resources.files("web_ui")


def create_app(station: Station) -> FastAPI:
    # No /docs or /redoc: they load scripts from a CDN and inline; the schema stays at /openapi.json.
    app = FastAPI(
        title="records terminal",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(refuse_undeclared)],
    )
    templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    security = WebSecurity(SessionStore(), station.config.security.kiosk_clients)
    security.sessions.on_end.append(lambda session: station.checkout and station.checkout.revoke(session.tickets))
    app.state.security = security
    app.add_middleware(Protection, security=security, max_body_bytes=station.config.security.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def sign_in_first(request: Request, exc: HTTPException) -> Response:
        """A page opened without signing in goes to the sign-in page; the API answers 401 as it is."""
        if exc.status_code == 401 and request.method == "GET" and not request.url.path.startswith("/api/"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return await http_exception_handler(request, exc)

    def bays() -> Any:
        if station.bays is None:
            raise HTTPException(503, "station is starting")
        return station.bays

    def page(request: Request, template: str, lang: str) -> HTMLResponse:
        if lang not in LANGUAGES:
            lang = DEFAULT_LANGUAGE
        session = security.session(request)
        return templates.TemplateResponse(
            request,
            template,
            {
                "lang": lang,
                "t": catalogue(lang),
                "station": station.config.station,
                "version": __version__,
                "single_allowed": station.policy.allow_single_officer.value,
                "signed_in": session.principal.name if session and not session.kiosk else None,
                "fault_reasons": OFFICER_REASONS,
            },
        )

    @app.get("/login", response_class=HTMLResponse, dependencies=[public()])
    async def login_page(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "login.html", lang)

    @app.get("/", response_class=HTMLResponse, dependencies=[require(*STAFF)])
    async def dashboard(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "dashboard.html", lang)

    @app.get("/kiosk", response_class=HTMLResponse, dependencies=[kiosk()])
    async def kiosk_page(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "kiosk.html", lang)

    @app.get("/admin", response_class=HTMLResponse, dependencies=[require(*READERS)])
    async def admin_page(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "admin.html", lang)

    @app.get("/kiosk/records", response_class=HTMLResponse, dependencies=[kiosk()])
    async def records_page(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "records.html", lang)

    for router in build_routers(station):
        app.include_router(router)
    app.include_router(build_records_router(station))
    app.include_router(maintenance_router(station))
    app.include_router(build_auth_router(station, security, station.accounts))
    app.include_router(build_access_router(station, station.access))

    @app.get("/api/health", dependencies=[public()])
    async def health() -> dict[str, Any]:
        return {"state": station.state.value, "station": station.config.station.id, "version": __version__}

    # The board: the kiosk display shows it to everyone in the room, staff see it on their pages.
    board = require(Role.KIOSK, *STAFF)

    @app.get("/api/health/checks", dependencies=[require(*READERS)])
    async def health_checks() -> list[dict[str, Any]]:
        """The latest verdict of each health check (under-voltage, USB enumeration, silent cameras, charging)."""
        if station.health is None:
            raise HTTPException(503, "station is starting")
        return station.health.results()

    @app.get("/api/uploads/at-risk", dependencies=[require(*READERS)])
    async def uploads_at_risk() -> list[dict[str, Any]]:
        """Recordings not yet confirmed by the central store within the alert margin of their upload deadline
        (24 h or 2 working days by policy), or past it (``overdue``): nearest deadline first."""
        if station.uploader is None:
            return []
        rows = await asyncio.get_running_loop().run_in_executor(None, station.uploader.at_risk)
        return sorted(rows, key=lambda r: r["deadline"])

    @app.get("/api/bays", dependencies=[board])
    async def list_bays() -> list[dict[str, Any]]:
        return bays().snapshot()

    @app.get("/api/alarms", dependencies=[board])
    async def list_alarms() -> list[dict[str, str]]:
        return station.alarms.active()

    @app.get("/api/i18n/{lang}", dependencies=[public()])
    async def messages(lang: str) -> dict[str, str]:
        if lang not in LANGUAGES:
            raise HTTPException(404, f"no catalogue for {lang!r}; available: {', '.join(LANGUAGES)}")
        return catalogue(lang)

    @app.get("/api/events/stream", response_class=EventSourceResponse, dependencies=[board])
    async def stream(request: Request) -> AsyncIterator[ServerSentEvent]:
        """Live bay updates: a snapshot first, then each change. Ends when the station stops. Badge swipes go
        to the kiosk's display only: a card number identifies an officer there."""
        on_display = security.on_display(request)
        service = bays()
        bus = station.bus
        assert bus is not None
        queue = bus.subscribe()
        try:
            health = station.health.results() if station.health is not None else []
            yield ServerSentEvent(
                event="snapshot", data={"bays": service.snapshot(), "alarms": station.alarms.active(), "health": health}
            )
            while (item := await queue.get()) is not None:
                topic, data = item
                if topic != "badge" or on_display:
                    yield ServerSentEvent(event=topic, data=data)
        finally:
            bus.unsubscribe(queue)

    seal(app)  # last: anything still undeclared refuses everyone
    return app
