"""Staff sign-in on the app in process (real accounts in StateDB, real scrypt, real event log): session
rotation (no fixation), cookie flags, CSRF, lock-out and slow-down, rate limits, security headers, request
size limit, kiosk session expiry."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from appliance.config import load_config
from appliance.security.accounts import Principal
from appliance.security.roles import Role
from appliance.security.sessions import SessionStore
from appliance.station import Station
from tests.conftest import STAFF_PASSWORD, write_config
from web_ui.app import create_app
from web_ui.guards import SESSION_COOKIE
from web_ui.protection import CSRF_COOKIE

LAN = ("192.0.2.10", 50000)
DISPLAY = ("127.0.0.1", 50000)
LIMITS = {"slowdown_s": 0, "lockout_after": 3, "lockout_s": 600, "signin_per_minute": 20, "identify_per_minute": 3}


@pytest.fixture
async def station(tmp_path, world) -> AsyncIterator[Station]:
    config = load_config(write_config(tmp_path, world, security=LIMITS | {"max_body_bytes": 4096}))
    station = Station(config)
    for username, roles in [("chief", ["admin"]), ("audit1", ["auditor"]), ("equip1", ["equipment"])]:
        await station.accounts.create(username, STAFF_PASSWORD, roles, by="test")
    yield station
    station.events.close()
    station.db.close()


def client(app, scheme: str = "http", peer: tuple[str, int] = LAN) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url=f"{scheme}://station.lan")


def csrf(http: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": http.cookies[CSRF_COOKIE]}


async def sign_in(http: httpx.AsyncClient, username: str, password: str = STAFF_PASSWORD) -> httpx.Response:
    if CSRF_COOKIE not in http.cookies:
        await http.get("/api/health")
    return await http.post("/api/auth/signin", json={"username": username, "password": password}, headers=csrf(http))


def events(station: Station, type_: str) -> list[dict]:
    lines = (station.config.log_dir / "entries.jsonl").read_text().splitlines()
    return [e["body"] for e in map(json.loads, lines) if e["type"] == type_]


async def test_sign_in_rotates_the_session_no_fixation(station) -> None:
    app = create_app(station)
    async with client(app) as http:
        await http.get("/api/health")
        http.cookies.set(SESSION_COOKIE, "chosen-by-an-attacker", domain="station.lan")
        assert (await http.get("/api/auth/me")).status_code == 401  # a made-up id is nobody
        assert (await sign_in(http, "audit1")).status_code == 200
        first = http.cookies[SESSION_COOKIE]
        assert first != "chosen-by-an-attacker"
        assert (await http.get("/api/auth/me")).json()["username"] == "audit1"

        # An attacker's valid session planted in the victim's browser: signing in replaces it.
        assert (await sign_in(http, "chief")).status_code == 200
        second = http.cookies[SESSION_COOKIE]
        assert second != first
        assert (await http.get("/api/auth/me")).json()["roles"] == ["admin"]
    async with client(app) as attacker:
        attacker.cookies.set(SESSION_COOKIE, first, domain="station.lan")
        assert (await attacker.get("/api/auth/me")).status_code == 401  # the old id is dead
    assert [e["username"] for e in events(station, "signin")] == ["audit1", "chief"]


async def test_signout_ends_the_session(station) -> None:
    app = create_app(station)
    async with client(app) as http:
        await sign_in(http, "equip1")
        session = http.cookies[SESSION_COOKIE]
        assert (await http.post("/api/auth/signout", headers=csrf(http))).status_code == 200
        http.cookies.set(SESSION_COOKIE, session, domain="station.lan")
        assert (await http.get("/api/ledger")).status_code == 401


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_session_cookie_flags(station, scheme) -> None:
    async with client(create_app(station), scheme) as http:
        response = await sign_in(http, "chief")
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    session, token = cookies[SESSION_COOKIE], cookies[CSRF_COOKIE]
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
    assert "HttpOnly" not in token and "SameSite=Strict" in token  # the page's script reads the token
    # Secure on HTTPS (the LAN UI); the kiosk's loopback listener is plain HTTP, where it cannot be.
    assert ("Secure" in session) == ("Secure" in token) == (scheme == "https")
    if scheme == "https":
        assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_every_state_changing_request_needs_the_csrf_token(station) -> None:
    app = create_app(station)
    new = {"username": "clerk1", "password": "another long one", "roles": ["auditor"]}
    async with client(app) as http:
        anonymous = await http.post("/api/auth/signin", json={"username": "chief", "password": STAFF_PASSWORD})
        assert anonymous.status_code == 403 and anonymous.json()["detail"] == "request.error.csrf"
        await sign_in(http, "chief")
        token = http.cookies[CSRF_COOKIE]
        assert (await http.post("/api/accounts", json=new)).json()["detail"] == "request.error.csrf"
        wrong = await http.post("/api/accounts", json=new, headers={"X-CSRF-Token": "x" * 43})
        assert wrong.status_code == 403
        # A cookie and header the attacker chose alike (cookie tossing): the session's token decides.
        http.cookies.set(CSRF_COOKIE, "y" * 43, domain="station.lan")
        tossed = await http.post("/api/accounts", json=new, headers={"X-CSRF-Token": "y" * 43})
        assert tossed.status_code == 403 and tossed.json()["detail"] == "request.error.csrf"
        http.cookies.set(CSRF_COOKIE, token, domain="station.lan")
        for method in ("PUT", "DELETE", "PATCH"):
            refused = await http.request(method, "/api/accounts/audit1", json={"active": False})
            assert refused.status_code == 403 and refused.json()["detail"] == "request.error.csrf"
        assert (await http.post("/api/accounts", json=new, headers=csrf(http))).status_code == 200
        assert (await http.get("/api/accounts")).status_code == 200  # reading needs no token
    assert [e["username"] for e in events(station, "account_created")][-1] == "clerk1"


async def test_lockout_after_failures_and_unlock(station) -> None:
    app = create_app(station)
    async with client(app) as http:
        unknown = await sign_in(http, "nobody", "whatever-it-is")
        assert (unknown.status_code, unknown.json()) == (401, {"detail": "auth.error.signin"})
        for _ in range(LIMITS["lockout_after"]):
            wrong = await sign_in(http, "equip1", "not the password")
            assert (wrong.status_code, wrong.json()) == (401, {"detail": "auth.error.signin"})  # same as unknown
        locked = await sign_in(http, "equip1")  # the right password, too late
        assert locked.status_code == 401 and locked.json() == {"detail": "auth.error.locked"}
        assert 500 < int(locked.headers["retry-after"]) <= 601
        assert SESSION_COOKIE not in http.cookies
    failures = [e["failures"] for e in events(station, "signin_failed") if e["username"] == "equip1"]
    assert failures == [1, 2, 3]
    assert events(station, "account_locked") == [{"username": "equip1", "for_s": 600.0}]
    assert events(station, "signin_refused")[-1]["reason"] == "locked"

    async with client(app) as admin:
        await sign_in(admin, "chief")
        listed = {a["username"]: a for a in (await admin.get("/api/accounts")).json()}
        assert listed["equip1"]["locked"] is True and "password_hash" not in listed["equip1"]
        assert (await admin.put("/api/accounts/equip1", json={"unlock": True}, headers=csrf(admin))).status_code == 200
    async with client(app) as http:
        assert (await sign_in(http, "equip1")).status_code == 200


async def test_changing_an_account_ends_its_sessions(station) -> None:
    app = create_app(station)
    async with client(app) as admin, client(app, peer=("192.0.2.12", 1)) as user:
        await sign_in(admin, "chief")
        await sign_in(user, "equip1")
        assert (await user.get("/api/ledger")).status_code == 200
        demoted = await admin.put("/api/accounts/equip1", json={"roles": ["auditor"]}, headers=csrf(admin))
        assert demoted.json()["roles"] == ["auditor"]
        assert (await user.get("/api/ledger")).status_code == 401  # the old roles do not live on
        await sign_in(user, "equip1")
        assert (
            await user.put("/api/registry/cameras/ZZZ0001/lock", json={"reason": "x"}, headers=csrf(user))
        ).status_code == 403
        assert (await admin.get("/api/auth/me")).status_code == 200  # other accounts' sessions untouched


async def test_the_last_administrator_stays(station) -> None:
    async with client(create_app(station)) as admin:
        await sign_in(admin, "chief")
        demoted = await admin.put("/api/accounts/chief", json={"roles": ["auditor"]}, headers=csrf(admin))
        assert demoted.status_code == 400 and "last active administrator" in demoted.json()["errors"][0]
        weak = await admin.put("/api/accounts/audit1", json={"password": "short"}, headers=csrf(admin))
        assert weak.status_code == 400 and weak.json()["errors"][0].startswith("password:")


async def test_rate_limits_on_signin_and_kiosk_identification(station) -> None:
    app = create_app(station)
    async with client(app) as http:
        answers = [(await sign_in(http, f"guess{n}", "guessing-again")).status_code for n in range(21)]
    assert answers == [401] * 20 + [429]
    async with client(app, peer=DISPLAY) as kiosk:
        await kiosk.get("/api/health")
        codes = []
        for _ in range(4):
            response = await kiosk.post("/api/checkout/identify", json={"card": "CARD0001"}, headers=csrf(kiosk))
            codes.append(response.status_code)
        assert codes == [503] * 3 + [429]  # the station is not running here: the limit comes first
        assert int(response.headers["retry-after"]) >= 1
    async with client(app, peer=("192.0.2.11", 1)) as other:  # another address has its own allowance
        assert (await sign_in(other, "chief")).status_code == 200


async def test_security_headers_and_no_inline_script(station) -> None:
    async with client(create_app(station)) as http:
        for path in ("/login", "/api/health"):
            response = await http.get(path)
            csp = response.headers["content-security-policy"]
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
        await sign_in(http, "chief")
        for page in ("/", "/admin"):
            html = (await http.get(page)).text
            scripts = re.findall(r"<script([^>]*)>", html)
            assert scripts and all("src=" in a or 'type="application/json"' in a for a in scripts), scripts
            assert " style=" not in html and "<style" not in html and " on" + "click=" not in html


async def test_request_size_limit(station) -> None:
    async with client(create_app(station)) as http:
        await sign_in(http, "equip1")
        big = b"serial\n" + b"A" * 5000
        response = await http.post("/api/registry/cameras.csv", content=big, headers=csrf(http))
        assert response.status_code == 413 and response.json()["detail"] == "request.error.too_large"

        async def chunks():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b"B" * 1000

        chunked = await http.post("/api/registry/cameras.csv", content=chunks(), headers=csrf(http))
        assert chunked.status_code == 413


def test_kiosk_session_ends_on_idle_and_revokes_its_tickets() -> None:
    now = [0.0]
    store = SessionStore(clock=lambda: now[0])
    revoked: list[list[str]] = []
    store.on_end.append(lambda s: revoked.append(s.tickets))
    officer = Principal("kiosk", frozenset({Role.OFFICER}), ("110001",))
    session = store.start(officer, idle_s=120, max_s=1200, kiosk=True)
    session.tickets = ["ticket-a"]
    now[0] = 100
    assert store.get(session.id) is session  # used within the idle time: kept, and touched
    now[0] = 219
    assert store.get(session.id) is session
    now[0] = 340  # 121 s without a request
    assert store.get(session.id) is None and revoked == [["ticket-a"]]

    staff = store.start(Principal("chief", frozenset({Role.ADMIN})), idle_s=100, max_s=250)
    for t in (340, 420, 500, 580):
        now[0] = t
        assert store.get(staff.id) is staff
    now[0] = 591  # busy all along, but past the session's maximum
    assert store.get(staff.id) is None
