"""Access control for routes, declared where the route is: deny by default.

Every API route carries exactly the roles it allows, as a FastAPI dependency on the route or its router::

    router = APIRouter(prefix="/api/maintenance", dependencies=[require(Role.EQUIPMENT, Role.ADMIN)])
    @router.get("/x", dependencies=[require(Role.AUDITOR, ...)])   # route guards add to the router's

``public()`` says a route needs no one (sign-in itself, the message catalogues). ``kiosk(...)`` routes answer
only the station's own display (loopback unless ``security.kiosk_clients`` says otherwise). The app depends
on ``refuse_undeclared`` and ``seal(app)`` runs last in create_app: a route that declares nothing (or is
added after ``seal``) answers 403 to everyone. The rules themselves are stated again, by hand, in
tests/test_authz.py: a route declared with other roles than its row there, or without a row, fails it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

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
        if session is not None and session.kiosk and not self.local:
            session = None  # a kiosk session is for the kiosk's own routes, nothing else
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


def linked_police_no(session: Session) -> str | None:
    """The one police number a staff account is linked to; None for an account without one, and for a kiosk
    session (it holds a pair of officers: no single actor)."""
    numbers = session.principal.police_nos
    return numbers[0] if not session.kiosk and len(numbers) == 1 else None


def acting_police_no(request: Request) -> str:
    """For handlers that record who did something: the police number linked to the signed-in staff account,
    never a number the client sends. An account without one (a bare administrator) may not act in anyone's
    name: 403 until an administrator links it to the staff member's police number."""
    police_no = linked_police_no(current_session(request))
    if police_no is None:
        raise HTTPException(403, "auth.error.unlinked")
    return police_no


def guards_of(dependant: Dependant) -> list[Guard]:
    found = []
    for dep in dependant.dependencies:
        if isinstance(dep.call, Guard):
            found.append(dep.call)
        found.extend(guards_of(dep))
    return found


@dataclass(frozen=True)
class Endpoint:
    """One API route as the app serves it: the router's prefix and dependencies folded in."""

    methods: frozenset[str]
    path: str
    dependant: Dependant
    endpoint: Any


def api_endpoints(app: FastAPI) -> list[Endpoint]:
    """Every API route of ``app``, through included routers at any depth."""
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            found.append(
                Endpoint(frozenset(context.methods or ()), str(context.path), context.dependant, context.endpoint)
            )
    return found


async def refuse_undeclared(request: Request) -> None:
    """App-wide dependency (runs before every route's own): only endpoints that ``seal`` saw declaring their
    roles answer. A route without a declaration, or added after ``seal``, refuses everyone."""
    declared = getattr(request.app.state, "declared", set())
    if id(request.scope.get("endpoint")) not in declared:
        raise HTTPException(403, "auth.error.undeclared")


def seal(app: FastAPI) -> list[str]:
    """Record the endpoints that declare their roles (the app must depend on ``refuse_undeclared``); returns
    those that do not, which then refuse every caller (each logged as an error)."""
    declared, undeclared = set(), []
    for endpoint in api_endpoints(app):
        if guards_of(endpoint.dependant):
            declared.add(id(endpoint.endpoint))
        else:
            undeclared.append(f"{','.join(sorted(endpoint.methods))} {endpoint.path}")
    app.state.declared = declared
    for name in undeclared:
        log.error("route %s declares no roles: it refuses every caller until it does (web_ui/guards.py)", name)
    return undeclared
