"""The FastAPI application. Handlers validate and delegate to the station's services; nothing more."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sse_starlette.sse import EventSourceResponse

from appliance import __version__
from web_ui.i18n import DEFAULT_LANGUAGE, LANGUAGES, catalogue

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

    @app.get("/", response_class=HTMLResponse)
    async def dashboard(request: Request, lang: str = DEFAULT_LANGUAGE) -> HTMLResponse:
        if lang not in LANGUAGES:
            lang = DEFAULT_LANGUAGE
        return templates.TemplateResponse(
            request,
            "dashboard.html",
            {"lang": lang, "t": catalogue(lang), "station": station.config.station, "version": __version__},
        )

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"state": station.state.value, "station": station.config.station.id, "version": __version__}

    @app.get("/api/bays")
    async def list_bays() -> list[dict[str, Any]]:
        return bays().snapshot()

    @app.get("/api/i18n/{lang}")
    async def messages(lang: str) -> dict[str, str]:
        if lang not in LANGUAGES:
            raise HTTPException(404, f"no catalogue for {lang!r}; available: {', '.join(LANGUAGES)}")
        return catalogue(lang)

    @app.get("/api/events/stream")
    async def stream(request: Request) -> EventSourceResponse:
        service = bays()
        assert station.bus is not None
        queue = station.bus.subscribe()

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "snapshot", "data": json.dumps(service.snapshot(), ensure_ascii=False)}
                while True:
                    try:
                        topic, data = await asyncio.wait_for(queue.get(), timeout=15)
                    except TimeoutError:
                        continue  # sse-starlette sends its own keep-alive pings
                    yield {"event": topic, "data": json.dumps(data, ensure_ascii=False)}
            finally:
                station.bus.unsubscribe(queue)  # type: ignore[union-attr]

        return EventSourceResponse(events(), ping=10)

    return app
