"""The FastAPI application. Handlers validate and delegate to the station's services; nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from appliance import __version__
from appliance.faults import OFFICER_REASONS
from web_ui.checkout_routes import build_routers
from web_ui.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue
from web_ui.maintenance_routes import build_router as maintenance_router

if TYPE_CHECKING:
    from appliance.station import Station

PACKAGE = resources.files("web_ui")


def create_app(station: Station) -> FastAPI:
    app = FastAPI(title="records terminal", version=__version__)
    templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")

    def bays() -> Any:
        if station.bays is None:
            raise HTTPException(503, "station is starting")
        return station.bays

    def page(request: Request, template: str, lang: str) -> HTMLResponse:
        if lang not in LANGUAGES:
            lang = DEFAULT_LANGUAGE
        return templates.TemplateResponse(
            request,
            template,
            {
                "lang": lang,
                "t": catalogue(lang),
                "station": station.config.station,
                "version": __version__,
                "single_allowed": station.policy.allow_single_officer.value,
                "fault_reasons": OFFICER_REASONS,
            },
        )

    @app.get("/", response_class=HTMLResponse)
    async def dashboard(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "dashboard.html", lang)

    @app.get("/kiosk", response_class=HTMLResponse)
    async def kiosk_page(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "kiosk.html", lang)

    @app.get("/admin", response_class=HTMLResponse)
    async def admin_page(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        return page(request, "admin.html", lang)

    kiosk, equipment = build_routers(station)
    app.include_router(kiosk)
    app.include_router(equipment)
    app.include_router(maintenance_router(station))

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"state": station.state.value, "station": station.config.station.id, "version": __version__}

    @app.get("/api/bays")
    async def list_bays() -> list[dict[str, Any]]:
        return bays().snapshot()

    @app.get("/api/alarms")
    async def list_alarms() -> list[dict[str, str]]:
        return station.alarms.active()

    @app.get("/api/i18n/{lang}")
    async def messages(lang: str) -> dict[str, str]:
        if lang not in LANGUAGES:
            raise HTTPException(404, f"no catalogue for {lang!r}; available: {', '.join(LANGUAGES)}")
        return catalogue(lang)

    @app.get("/api/events/stream", response_class=EventSourceResponse)
    async def stream() -> AsyncIterator[ServerSentEvent]:
        """Live bay updates: a snapshot first, then each change. Ends when the station stops."""
        service = bays()
        bus = station.bus
        assert bus is not None
        queue = bus.subscribe()
        try:
            yield ServerSentEvent(
                event="snapshot", data={"bays": service.snapshot(), "alarms": station.alarms.active()}
            )
            while (item := await queue.get()) is not None:
                topic, data = item
                yield ServerSentEvent(event=topic, data=data)
        finally:
            bus.unsubscribe(queue)

    return app
