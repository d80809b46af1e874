"""Sign-in and sign-out for staff, the kiosk session for identified officers, account administration, and the
station's keys (rotation; the verifier keys a records office checks checkpoints with).

Handlers validate and delegate to appliance.security.accounts; the session cookie is HttpOnly, SameSite=Strict
and Secure whenever the request came over HTTPS (the LAN UI always does; the kiosk's loopback listener is
plain HTTP on the station itself).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from appliance.evidence.station_keys import station_keys
from appliance.security.accounts import AccountError, AccountService, Principal, SignInRefused, public_account
from appliance.security.ratelimit import RateLimiter
from appliance.security.roles import ACCOUNT_ROLES, STAFF, Role
from appliance.security.sessions import Session
from web_ui.bodies import StrictBody
from web_ui.guards import SESSION_COOKIE, WebSecurity, current_session, public, require
from web_ui.protection import CSRF_COOKIE, cookie_header

if TYPE_CHECKING:
    from appliance.station import Station

log = logging.getLogger(__name__)


class SignInRequest(StrictBody):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class AccountCreate(StrictBody):
    username: Annotated[str, Field(min_length=3, max_length=32)]
    password: Annotated[str, Field(min_length=1, max_length=256)]
    roles: Annotated[list[Role], Field(min_length=1, max_length=5)]
    name: Annotated[str, Field(max_length=64)] = ""
    police_no: Annotated[str, Field(max_length=6)] | None = None


class AccountEdit(StrictBody):
    roles: Annotated[list[Role], Field(min_length=1, max_length=5)] | None = None
    name: Annotated[str, Field(max_length=64)] | None = None
    police_no: Annotated[str, Field(max_length=6)] | None = None
    active: bool | None = None
    password: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    unlock: bool | None = None


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def throttle(limiter: RateLimiter) -> Any:
    """A dependency answering 429 (with Retry-After) once a client address has used up its attempts."""

    async def check(request: Request) -> None:
        wait = limiter.allow(client_of(request))
        if wait:
            raise HTTPException(429, "auth.error.too_many", headers={"Retry-After": str(int(wait) + 1)})

    return Depends(check)


def set_session_cookies(request: Request, response: Response, session: Session) -> None:
    https = request.url.scheme == "https"
    response.raw_headers.append((b"set-cookie", cookie_header(SESSION_COOKIE, session.id, https, http_only=True)))
    response.raw_headers.append((b"set-cookie", cookie_header(CSRF_COOKIE, session.csrf, https, http_only=False)))


def clear_session_cookie(request: Request, response: Response) -> None:
    https = request.url.scheme == "https"
    response.raw_headers.append((b"set-cookie", cookie_header(SESSION_COOKIE, "", https, http_only=True, max_age=0)))


def start_kiosk_session(
    security: WebSecurity, request: Request, response: Response, police_no: str, ticket: str, idle_s: float
) -> Session:
    """Add an identified officer (and their check-out ticket) to the kiosk session, under a new id."""
    old_id = request.cookies.get(SESSION_COOKIE)
    old = security.sessions.peek(old_id)
    numbers: tuple[str, ...] = ()
    if old is not None and old.kiosk:
        numbers = tuple(n for n in old.principal.police_nos if n != police_no)[-1:]  # a pair at most
    principal = Principal("kiosk", frozenset({Role.OFFICER}), (*numbers, police_no))
    session = security.sessions.rotate(old_id, principal, idle_s, idle_s * 10, kiosk=True)
    session.tickets = [*session.tickets[-1:], ticket]
    request.state.session = session
    set_session_cookies(request, response, session)
    return session


def build_auth_router(station: Station, security: WebSecurity, accounts: AccountService) -> APIRouter:
    router = APIRouter(prefix="/api")
    limits = station.config.security
    signin_limit = RateLimiter(limits.signin_per_minute)

    @router.post("/auth/signin", dependencies=[public(), throttle(signin_limit)], response_model=None)
    async def sign_in(body: SignInRequest, request: Request, response: Response) -> dict[str, Any] | JSONResponse:
        try:
            principal = await accounts.sign_in(body.username, body.password, client_of(request))
        except SignInRefused as exc:
            headers = {"Retry-After": str(int(exc.retry_after_s) + 1)} if exc.retry_after_s else None
            return JSONResponse({"detail": exc.code}, status_code=401, headers=headers)
        session = security.sessions.rotate(
            request.cookies.get(SESSION_COOKIE), principal, limits.session_idle_s, limits.session_max_s, kiosk=False
        )
        set_session_cookies(request, response, session)
        return {"username": principal.name, "roles": sorted(principal.roles)}

    @router.post("/auth/signout", dependencies=[public()])  # ending one's own session needs no role
    async def sign_out(request: Request, response: Response) -> dict[str, bool]:
        security.sessions.end(request.cookies.get(SESSION_COOKIE))
        clear_session_cookie(request, response)
        return {"signed_out": True}

    @router.get("/auth/me", dependencies=[require(*ACCOUNT_ROLES)])
    async def me(session: Annotated[Session, Depends(current_session)]) -> dict[str, Any]:
        p = session.principal
        return {"username": p.name, "roles": sorted(p.roles), "police_nos": list(p.police_nos), "kiosk": session.kiosk}

    # -- account administration
    admin = APIRouter(prefix="/accounts", dependencies=[require(Role.ADMIN)])

    @admin.get("")
    async def list_accounts() -> list[dict[str, Any]]:
        from appliance.security.accounts import accounts as all_accounts

        return [public_account(r) for r in await station.db.run(all_accounts)]

    @admin.post("", response_model=None)
    async def create_account(
        body: AccountCreate, session: Annotated[Session, Depends(current_session)]
    ) -> dict[str, Any] | JSONResponse:
        try:
            return await accounts.create(
                body.username, body.password, list(body.roles), session.principal.name, body.name, body.police_no
            )
        except AccountError as exc:
            return JSONResponse({"detail": "account.error", "errors": [str(exc)]}, status_code=400)

    @admin.put("/{username}", response_model=None)
    async def edit_account(
        username: str, body: AccountEdit, session: Annotated[Session, Depends(current_session)]
    ) -> dict[str, Any] | JSONResponse:
        try:
            changed = await accounts.update(username, session.principal.name, **body.model_dump(exclude_none=True))
        except AccountError as exc:
            return JSONResponse({"detail": "account.error", "errors": [str(exc)]}, status_code=400)
        if body.model_dump(exclude_none=True).keys() - {"unlock", "name"}:
            security.sessions.end_all_of(username)  # new roles, password or standing: sign in again
        return changed

    router.include_router(admin)

    @router.post("/keys/tls/rotate", dependencies=[require(Role.ADMIN)])
    async def rotate_tls(session: Annotated[Session, Depends(current_session)]) -> dict[str, str]:
        """A new TLS key now; the event log links the old certificate to the new one."""
        if not station.config.web.tls:
            raise HTTPException(409, "keys.error.no_tls")
        link = await station.rotate_tls_key(session.principal.name)
        return {"old": link["old"], "new": link["new"]}

    @router.post("/keys/signing/rotate", dependencies=[require(Role.ADMIN)])
    async def rotate_signing(session: Annotated[Session, Depends(current_session)]) -> dict[str, Any]:
        """A new signing key now; the log's signing_key_rotated entry links it to the old one."""
        link = await station.rotate_signing_key(session.principal.name)
        return {"old": link["old"], "new": link["new"], "log_index": link["log_index"]}

    @router.get("/keys/signing", dependencies=[require(*STAFF)])
    async def signing_keys() -> dict[str, Any]:
        """What a records office needs to check the checkpoints with any signed-note implementation: the
        verifier key and fingerprint of the current key and of every retired one, and the log origin."""
        keys_dir, name, origin = station.config.keys_dir, station.config.station.id, station.events.origin
        try:
            found = await asyncio.get_running_loop().run_in_executor(None, station_keys, keys_dir, name, origin)
        except (OSError, ValueError) as exc:  # a rotation under way, or keys gone from under the station
            log.warning("cannot read the signing keys: %s", exc)
            raise HTTPException(503, "keys.error.unavailable") from None
        return found.as_dict()

    return router
