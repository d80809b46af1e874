"""Route by route: every route of the app declares the roles it allows, and refuses an anonymous caller and
every role it does not allow. Generic over ``app.routes``: a router added later (maintenance, approvals) is
covered as soon as it is included in create_app, and fails here if it declares nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from appliance.security.accounts import Principal
from appliance.security.roles import ACCOUNT_ROLES, Role
from appliance.security.sessions import SessionStore
from appliance.station import Station
from web_ui.app import create_app
from web_ui.guards import (
    SESSION_COOKIE,
    Endpoint,
    WebSecurity,
    allowed_roles,
    api_endpoints,
    guards_of,
    public,
    refuse_undeclared,
    require,
    seal,
)

LAN = ("192.0.2.10", 50000)  # a browser on the LAN
DISPLAY = ("127.0.0.1", 50000)  # the kiosk's own display
TOKEN = "t" * 43

# Open to anyone by design: the sign-in page and call, the health probe, the message catalogues.
PUBLIC = {
    ("GET", "/login"),
    ("POST", "/api/auth/signin"),
    ("POST", "/api/auth/signout"),
    ("GET", "/api/health"),
    ("GET", "/api/i18n/{lang}"),
}
# Not API routes: the static files (scripts, styles; nothing secret) and the OpenAPI schema.
NON_API = {"/static", "/openapi.json"}


@pytest.fixture
async def app(config) -> AsyncIterator[FastAPI]:
    station = Station(config)
    yield create_app(station)
    station.events.close()
    station.db.close()


def endpoints(app: FastAPI) -> list[tuple[str, str, Endpoint]]:
    return [(m, e.path, e) for e in api_endpoints(app) for m in sorted(e.methods - {"HEAD"})]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "en" if m[1] == "lang" else "ZZZ0001", path)


def session_for(app: FastAPI, role: Role, kiosk: bool = False) -> str:
    principal = Principal(f"test-{role}", frozenset({role}), ("110001",) if role is Role.OFFICER else ())
    session = app.state.security.sessions.start(principal, 600, 600, kiosk=kiosk)
    session.csrf = TOKEN  # the same token in cookie, header and session: only the guard can refuse
    return session.id


async def call(app: FastAPI, method: str, path: str, client: tuple[str, int], session: str | None = None) -> Any:
    cookies = {"recterm_csrf": TOKEN} | ({SESSION_COOKIE: session} if session else {})
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://station", cookies=cookies) as http:
        return await http.request(method, concrete(path), headers={"X-CSRF-Token": TOKEN, "Accept": "text/html"})


def refused(response: httpx.Response) -> bool:
    """A refusal by the guard: 401/403 with an auth code, or a page's redirect to the sign-in page."""
    if response.status_code == 303:
        return response.headers["location"].startswith("/login?next=")
    return response.status_code in (401, 403) and response.json()["detail"].startswith("auth.error.")


def test_every_route_declares_its_roles(app) -> None:
    public = set()
    for method, path, route in endpoints(app):
        if allowed_roles(route) is None:  # raises LookupError for a route that declares nothing
            public.add((method, path))
    assert public == PUBLIC


def test_the_rules_themselves(app) -> None:
    """The policy, not only its enforcement: who may change things, and who manages accounts."""
    for method, path, route in endpoints(app):
        allowed = allowed_roles(route) or frozenset()
        if method != "GET" and not path.startswith("/api/auth/"):
            assert Role.AUDITOR not in allowed, (method, path)  # the auditor reads, never writes
        if path.startswith("/api/accounts"):
            assert allowed == {Role.ADMIN}, path
        if path.startswith("/api/checkout"):
            assert any(g.local for g in guards_of(route.dependant)), path  # the kiosk display only
        if path.startswith("/api/registry") and method != "GET":
            assert allowed == {Role.EQUIPMENT, Role.ADMIN}, (method, path)
    others = {c.path for c in iter_route_contexts(app.routes) if not isinstance(c.original_route, APIRoute)}
    assert others == NON_API


async def test_every_route_refuses_anonymous_callers_and_wrong_roles(app) -> None:
    checked = 0
    for method, path, route in endpoints(app):
        allowed = allowed_roles(route)
        if allowed is None:
            continue
        local = any(g.local for g in guards_of(route.dependant))  # route: an Endpoint
        anonymous = await call(app, method, path, LAN)
        assert refused(anonymous), (method, path, anonymous.status_code, anonymous.text)
        if Role.KIOSK not in allowed:  # the display is no one: it gets nothing staff or officers get
            on_display = await call(app, method, path, DISPLAY)
            assert refused(on_display), (method, path, "display", on_display.status_code)
        for role in ACCOUNT_ROLES:
            if role in allowed and not local:
                continue
            # a role the route does not allow, or any role from off the display on a kiosk route
            response = await call(app, method, path, LAN, session_for(app, role))
            assert refused(response) and response.status_code == 403, (method, path, role, response.status_code)
            checked += 1
        if local:  # a kiosk session carried off the display counts for nothing there
            response = await call(app, method, path, LAN, session_for(app, Role.OFFICER, kiosk=True))
            assert refused(response), (method, path, "kiosk session off the display")
    assert checked > 50  # the app has routes for every role: the loop really ran


async def test_an_undeclared_route_refuses_everyone_and_is_found() -> None:
    app = FastAPI(dependencies=[Depends(refuse_undeclared)])
    router = APIRouter(prefix="/api")  # as a new module would bring one, forgetting its guard

    @router.get("/forgotten")
    async def forgotten() -> dict[str, bool]:
        return {"reached": True}

    @router.get("/guarded", dependencies=[require(Role.ADMIN)])
    async def guarded() -> dict[str, bool]:
        return {"reached": True}

    app.include_router(router)
    app.state.security = WebSecurity(SessionStore(), [])
    assert seal(app) == ["GET /api/forgotten"]

    @app.get("/api/late", dependencies=[public()])  # added after seal: refused too, declared or not
    async def late() -> dict[str, bool]:
        return {"reached": True}

    transport = httpx.ASGITransport(app=app, client=LAN)
    async with httpx.AsyncClient(transport=transport, base_url="http://station") as http:
        for path in ("/api/forgotten", "/api/late"):
            response = await http.get(path)
            assert response.status_code == 403 and response.json() == {"detail": "auth.error.undeclared"}
        assert (await http.get("/api/guarded")).status_code == 401  # the guarded one is not sealed
    forgotten_endpoint = next(e for e in api_endpoints(app) if e.path == "/api/forgotten")
    with pytest.raises(LookupError, match="declares no access rule"):
        allowed_roles(forgotten_endpoint)
