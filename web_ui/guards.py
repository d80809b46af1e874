"""Access control for routes, declared where the route is: deny by default.

Every API route carries exactly the roles it allows, as a FastAPI dependency on the route or its router::

    router = APIRouter(prefix="/api/maintenance", dependencies=[require(Role.EQUIPMENT, Role.ADMIN)])
    @router.get("/x", dependencies=[require(Role.AUDITOR, ...)])   # route guards add to the router's

``public()`` says a route needs no one (sign-in itself, the message catalogues). ``kiosk(...)`` routes answer
only the station's own display (loopback unless ``security.kiosk_clients`` says otherwise). ``seal(app)``
runs last in create_app: a route that declares nothing answers 403 to everyone, and the route-by-route
test (tests/test_authz.py) fails on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from appliance.security.roles import Role
from appliance.security.sessions import Session, SessionStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "recterm_session"


@dataclass(frozen=True)
class Guard:
    """The roles a route allows (None: anyone), and whether it answers only the kiosk display."""

    roles: frozenset[Role] | None
    local: bool = False

    async def __call__(self, request: Request) -> None:
        security: WebSecurity = request.app.state.security
        on_display = security.on_display(request)
        if self.local and not on_display:
            raise HTTPException(403, "auth.error.display_only")
        if self.roles is None:
            return
        session = security.session(request, on_display)
        held = set(session.principal.roles) if session else set()
        if on_display:
            held.add(Role.KIOSK)
        if held & self.roles:
            return
        if session is None:
            raise HTTPException(401, "auth.error.signin_required")
        raise HTTPException(403, "auth.error.forbidden")


def require(*roles: Role) -> Any:
    """A dependency allowing ``roles`` (any of them) wherever the caller is."""
    if not roles:
        raise ValueError("require() needs at least one role; use public() for a route open to anyone")
    return Depends(Guard(frozenset(roles)))


def kiosk(*roles: Role) -> Any:
    """A dependency allowing ``roles`` on the kiosk display only; ``Role.KIOSK`` is the display itself."""
    return Depends(Guard(frozenset(roles or (Role.KIOSK,)), local=True))


def public() -> Any:
    """A dependency stating that a route is open to anyone (it still gets rate limits, CSRF, headers)."""
    return Depends(Guard(None))


class WebSecurity:
    """What the guards and middleware consult: sessions and the kiosk display's addresses."""

    def __init__(self, sessions: SessionStore, kiosk_clients: Iterable[Any]) -> None:
        self.sessions = sessions
        self.kiosk_clients = {ip_address(str(a)) for a in kiosk_clients}

    def on_display(self, request: Request) -> bool:
        host = request.client.host if request.client else ""
        try:
            return ip_address(host) in self.kiosk_clients
        except ValueError:
            return False

    def session(self, request: Request, on_display: bool | None = None) -> Session | None:
        """The caller's live session; a kiosk session counts only on the kiosk display."""
        cached = getattr(request.state, "session", False)
        if cached is not False:
            return cached
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if on_display is None:
            on_display = self.on_display(request)
        if session is not None and session.kiosk and not on_display:
            session = None
        request.state.session = session
        return session


def current_session(request: Request) -> Session:
    """For handlers that need to know who: the session the guard already checked."""
    session = request.app.state.security.session(request)
    if session is None:
        raise HTTPException(401, "auth.error.signin_required")
    return session


def guards_of(dependant: Dependant) -> list[Guard]:
    found = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, Guard):
            found.append(dep.call)
        found.extend(guards_of(dep))
    return found


def allowed_roles(route: APIRoute) -> frozenset[Role] | None:
    """The roles every guard of ``route`` lets through (None: public). Raises if nothing is declared."""
    guards = guards_of(route.dependant)
    if not guards:
        raise LookupError(f"{sorted(route.methods)} {route.path} declares no access rule")
    allowed: frozenset[Role] | None = None
    for guard in guards:
        if guard.roles is not None:
            allowed = guard.roles if allowed is None else allowed & guard.roles
    return allowed


def seal(app: FastAPI) -> list[str]:
    """Make every undeclared route refuse everyone; returns what it sealed (logged as an error)."""
    sealed = []

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await JSONResponse({"detail": "auth.error.undeclared"}, status_code=403)(scope, receive, send)

    for route in app.routes:
        if isinstance(route, APIRoute) and not guards_of(route.dependant):
            route.app = refuse
            sealed.append(f"{','.join(sorted(route.methods))} {route.path}")
    for name in sealed:
        log.error("route %s declares no roles: it refuses every caller until it does (web_ui/guards.py)", name)
    return sealed
