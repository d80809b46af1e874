"""Who may call each route, stated here by hand and checked against what the app does.

The rules below are written from docs/security.md, docs/checkout.md, docs/maintenance.md, docs/records.md and
the regulations they cite, never read from the routes' own declarations (web_ui/guards.py): a route declared
with a wrong role (an officer allowed to decide on access, an auditor allowed to write) fails here. Every
(method, path) of the app must have exactly one row: a new route without a row fails, and so does a row whose
route is gone. For every row, an anonymous caller and every role the row does not name are refused by the
guard, and every role it names is let through the guard (what the handler then answers is its own business).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from appliance.security.accounts import Principal
from appliance.security.roles import Role
from appliance.security.sessions import SessionStore
from appliance.station import Station
from web_ui.app import create_app
from web_ui.guards import SESSION_COOKIE, WebSecurity, api_endpoints, public, refuse_undeclared, require, seal

LAN = ("192.0.2.10", 50000)  # a browser on the LAN
DISPLAY = ("127.0.0.1", 50000)  # the kiosk's own display
TOKEN = "t" * 43

OFFICER, EQUIPMENT, SUPERVISOR, AUDITOR, ADMIN = (
    Role.OFFICER,
    Role.EQUIPMENT,
    Role.SUPERVISOR,
    Role.AUDITOR,
    Role.ADMIN,
)
DISPLAY_ITSELF = Role.KIOSK  # not a person: whoever stands at the station's own display
ACCOUNTS = (OFFICER, EQUIPMENT, SUPERVISOR, AUDITOR, ADMIN)  # the roles an account can hold


@dataclass(frozen=True)
class Rule:
    """Who gets through the guard: ``roles`` (None: anyone), and only on the kiosk display if ``display``."""

    roles: frozenset[Role] | None
    display: bool = False


def anyone() -> Rule:
    return Rule(None)


def only(*roles: Role) -> Rule:
    return Rule(frozenset(roles))


def at_display(*roles: Role) -> Rule:
    """The station's display only; no roles: anyone standing there."""
    return Rule(frozenset(roles or (DISPLAY_ITSELF,)), display=True)


# Staff read everything they work with; the auditor reads, never writes (docs/security.md, roles).
STAFF = (EQUIPMENT, SUPERVISOR, AUDITOR, ADMIN)
# Registries, maintenance entries and staff fault reports: equipment staff, and administrators, who may do
# everything equipment staff may (000 Art. 25, 003 Art. 19, 004 Art. 19-20).
KEEPERS = (EQUIPMENT, ADMIN)
# Who may ask for access to recordings: officers (their own cases) and staff who handle cases; never the
# auditor, who only reads (docs/security.md, access to recordings).
ASKERS = (OFFICER, EQUIPMENT, SUPERVISOR, ADMIN)

RULES: dict[tuple[str, str], Rule] = {
    # -- pages
    ("GET", "/login"): anyone(),
    ("GET", "/"): only(*STAFF),
    ("GET", "/admin"): only(*STAFF),
    ("GET", "/admin/report"): only(*STAFF),
    ("GET", "/admin/camera/{serial}"): only(*STAFF),
    ("GET", "/kiosk"): at_display(),
    ("GET", "/kiosk/records"): at_display(),  # the page; the officer identifies on it
    # -- open by design: sign-in, health probe, message catalogues
    ("POST", "/api/auth/signin"): anyone(),
    ("POST", "/api/auth/signout"): anyone(),  # ending one's own session
    ("GET", "/api/health"): anyone(),
    ("GET", "/api/i18n/{lang}"): anyone(),
    # -- the board: everyone in the room sees it on the display, staff on their pages
    ("GET", "/api/bays"): Rule(frozenset({DISPLAY_ITSELF, *STAFF})),
    ("GET", "/api/alarms"): Rule(frozenset({DISPLAY_ITSELF, *STAFF})),
    ("GET", "/api/events/stream"): Rule(frozenset({DISPLAY_ITSELF, *STAFF})),
    ("GET", "/api/health/checks"): only(*STAFF),
    ("GET", "/api/uploads/at-risk"): only(*STAFF),
    # -- check-out at the kiosk (docs/checkout.md): identify there, then the identified officers act
    ("POST", "/api/checkout/identify"): at_display(),
    ("GET", "/api/checkout/proposal"): at_display(OFFICER),
    ("POST", "/api/checkout"): at_display(OFFICER),
    # -- an officer's own recordings at the kiosk (docs/records.md; 003 Art. 17, 000 Art. 14)
    ("POST", "/api/records/mine"): at_display(OFFICER),
    ("POST", "/api/records/{sha256}/tag"): at_display(OFFICER),
    ("POST", "/api/records/gaps/explain"): at_display(OFFICER),
    # -- faults at check-in and the maintenance reminder on the kiosk (docs/maintenance.md; 004 Art. 20)
    ("GET", "/api/faults/reasons"): at_display(),
    ("POST", "/api/faults/checkin"): at_display(),
    ("GET", "/api/maintenance/schedule/{serial}"): at_display(),
    # -- ledger and registries (docs/checkout.md, docs/registry-csv.md)
    ("GET", "/api/assignments/open"): only(*STAFF),
    ("GET", "/api/ledger"): only(*STAFF),
    ("GET", "/api/ledger.csv"): only(*STAFF),
    ("GET", "/api/fleet/ratio"): only(*STAFF),
    ("GET", "/api/registry/officers"): only(*STAFF),
    ("GET", "/api/registry/cameras"): only(*STAFF),
    ("GET", "/api/registry/officers.csv"): only(*STAFF),
    ("GET", "/api/registry/cameras.csv"): only(*STAFF),
    ("POST", "/api/registry/officers.csv"): only(*KEEPERS),
    ("POST", "/api/registry/cameras.csv"): only(*KEEPERS),
    ("PUT", "/api/registry/officers/{police_no}"): only(*KEEPERS),
    ("PUT", "/api/registry/cameras/{serial}"): only(*KEEPERS),
    ("PUT", "/api/registry/cameras/{serial}/lock"): only(*KEEPERS),
    ("DELETE", "/api/registry/cameras/{serial}/lock"): only(*KEEPERS),
    # -- maintenance, faults, batteries (docs/maintenance.md)
    ("GET", "/api/maintenance/schedule"): only(*STAFF),
    ("GET", "/api/maintenance/entries"): only(*STAFF),
    ("POST", "/api/maintenance/entries"): only(*KEEPERS),
    ("POST", "/api/maintenance/attachments"): only(*KEEPERS),
    ("GET", "/api/maintenance/attachments/{digest}"): only(*STAFF),
    ("GET", "/api/faults"): only(*STAFF),
    ("POST", "/api/faults"): only(*KEEPERS),
    ("GET", "/api/battery"): only(*STAFF),
    ("GET", "/api/battery/{serial}"): only(*STAFF),
    # -- spot checks and replay: the inspecting supervisor (004 Art. 22); replay needs approval (004 Art. 15).
    # Not the administrator: accounts and what equipment staff may, not inspection (docs/security.md, roles).
    ("POST", "/api/spot-checks"): only(SUPERVISOR),
    ("GET", "/api/spot-checks"): only(*STAFF),
    ("POST", "/api/spot-checks/{check_id}/verdicts"): only(SUPERVISOR),
    ("GET", "/api/spot-checks/{check_id}/recordings/{key:path}/view"): only(SUPERVISOR),
    # -- the monthly report (004 Art. 23)
    ("GET", "/api/reports/monthly"): only(*STAFF),
    ("GET", "/api/reports/monthly.csv"): only(*STAFF),
    ("GET", "/api/reports/monthly.pdf"): only(*STAFF),
    # -- accounts and keys: the administrator alone
    ("GET", "/api/auth/me"): only(*ACCOUNTS),
    ("GET", "/api/accounts"): only(ADMIN),
    ("POST", "/api/accounts"): only(ADMIN),
    ("PUT", "/api/accounts/{username}"): only(ADMIN),
    ("POST", "/api/keys/tls/rotate"): only(ADMIN),
    ("POST", "/api/keys/signing/rotate"): only(ADMIN),
    ("GET", "/api/keys/signing"): only(*STAFF),  # the checkpoint verifier keys a records office needs: read-only
    # -- recordings and access to them (000 Art. 20, 001 Art. 18, 002 Art. 32, 003 Art. 23, 004 Art. 15)
    ("GET", "/api/recordings"): only(OFFICER, *STAFF),  # metadata; an officer sees their own only
    ("POST", "/api/access/requests"): only(*ASKERS),
    ("GET", "/api/access/requests"): only(*ASKERS, AUDITOR),
    ("POST", "/api/access/requests/{request_id}/decision"): only(SUPERVISOR),  # the approver, never the asker
    ("GET", "/api/access/requests/{request_id}/view/{key:path}"): only(*ASKERS),  # the requester, by grant
    ("POST", "/api/access/requests/{request_id}/export/{key:path}"): only(*ASKERS),
}
# Not API routes: the static files (scripts, styles; nothing secret) and the OpenAPI schema.
NON_API = {"/static", "/openapi.json"}
# What the guard answers when it refuses (anything else came from further in: the guard let the call through).
GUARD_REFUSALS = {
    "auth.error.signin_required",
    "auth.error.forbidden",
    "auth.error.display_only",
    "auth.error.undeclared",
}


@pytest.fixture
async def app(config) -> AsyncIterator[FastAPI]:
    station = Station(config)  # not started: allowed calls reach handlers that answer 503, 4xx or fail
    yield create_app(station)
    station.events.close()
    station.db.close()


def routes(app: FastAPI) -> set[tuple[str, str]]:
    return {(m, e.path) for e in api_endpoints(app) for m in e.methods - {"HEAD"}}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "en" if m[1] == "lang" else "ZZZ0001", path)


def session_for(app: FastAPI, role: Role, kiosk: bool = False) -> str:
    # Linked to a police number, so handlers that record an actor get past acting_police_no too.
    principal = Principal(f"test-{role}", frozenset({role}), ("110001",))
    session = app.state.security.sessions.start(principal, 600, 600, kiosk=kiosk)
    session.csrf = TOKEN  # the same token in cookie, header and session: only the guard can refuse
    return session.id


async def call(app: FastAPI, method: str, path: str, client: tuple[str, int], session: str | None = None) -> Any:
    cookies = {"recterm_csrf": TOKEN} | ({SESSION_COOKIE: session} if session else {})
    # A handler that fails on the unstarted station answers 500: past the guard, which is all that counts here.
    transport = httpx.ASGITransport(app=app, client=client, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://station", cookies=cookies) as http:
        return await http.request(method, concrete(path), headers={"X-CSRF-Token": TOKEN, "Accept": "text/html"})


def refusal(response: httpx.Response) -> str | None:
    """The guard's refusal code, "login" for a page's redirect to the sign-in page, None when let through."""
    if response.status_code == 303 and response.headers["location"].startswith("/login?next="):
        return "login"
    if response.status_code in (401, 403) and response.headers.get("content-type") == "application/json":
        detail = response.json().get("detail")
        return detail if detail in GUARD_REFUSALS else None
    return None


def test_the_table_has_exactly_the_apps_routes(app) -> None:
    served = routes(app)
    assert sorted(served - RULES.keys()) == [], "routes without a rule: add a row to RULES"
    assert sorted(RULES.keys() - served) == [], "rules for routes the app no longer has: remove the row"
    others = {c.path for c in iter_route_contexts(app.routes) if not isinstance(c.original_route, APIRoute)}
    assert others == NON_API
    assert set(Role) == {*ACCOUNTS, DISPLAY_ITSELF}, "a new role: decide its row in every rule"


def test_the_rules_themselves() -> None:
    """The table's own consistency: the policy, before its enforcement."""
    for (method, path), rule in RULES.items():
        roles = rule.roles or frozenset()
        if method != "GET" and not path.startswith("/api/auth/"):
            assert rule.roles is not None, (method, path)  # only sign-in and sign-out change things openly
            assert AUDITOR not in roles, (method, path)  # the auditor reads, never writes
        if path.startswith(("/api/accounts", "/api/keys/")) and method != "GET":
            assert roles == {ADMIN}, (method, path)
        if path.startswith(("/api/checkout", "/api/records/", "/kiosk")):
            assert rule.display, (method, path)  # the kiosk display only
        if DISPLAY_ITSELF in roles and not rule.display:
            assert method == "GET", (method, path)  # what the room sees on the display, it only reads
    assert RULES["POST", "/api/access/requests/{request_id}/decision"] == only(SUPERVISOR)


async def check(
    app: FastAPI, method: str, path: str, who: str, allowed: bool, client: tuple[str, int], session: str | None = None
) -> int:
    response = await call(app, method, path, client, session)
    code = refusal(response)
    if allowed:
        assert code is None, f"{method} {path}: {who} must get through; the guard refused ({code})"
    else:
        assert code is not None, f"{method} {path}: {who} must be refused; got {response.status_code}"
    return 1


async def test_every_route_lets_through_exactly_the_roles_of_its_rule(app) -> None:
    checked = 0
    for (method, path), rule in sorted(RULES.items()):
        if rule.roles is None:  # open: anyone, anywhere
            checked += await check(app, method, path, "anonymous on the LAN", True, LAN)
            continue
        display_enough = DISPLAY_ITSELF in rule.roles  # standing at the display is all it takes
        checked += await check(app, method, path, "anonymous on the LAN", False, LAN)
        checked += await check(app, method, path, "anonymous at the display", display_enough, DISPLAY)
        for role in ACCOUNTS:
            session = session_for(app, role)
            lan_ok = role in rule.roles and not rule.display
            checked += await check(app, method, path, f"{role} on the LAN", lan_ok, LAN, session)
            if not lan_ok:  # signed in with the wrong role, or off the display: 403, not "sign in"
                assert (await call(app, method, path, LAN, session)).status_code == 403, (method, path, role)
            display_ok = role in rule.roles or display_enough
            checked += await check(app, method, path, f"{role} at the display", display_ok, DISPLAY, session)
        # Officers identified at the kiosk: their session counts on the display's own routes, nowhere else.
        kiosk = session_for(app, OFFICER, kiosk=True)
        checked += await check(app, method, path, "a kiosk session on the LAN", False, LAN, kiosk)
        kiosk_ok = display_enough or (rule.display and OFFICER in rule.roles)
        checked += await check(app, method, path, "a kiosk session at the display", kiosk_ok, DISPLAY, kiosk)
    assert checked > 10 * len(RULES)  # every row was called from every side


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
