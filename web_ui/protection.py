"""Request-level protection, as one ASGI middleware: request size limit, CSRF check, security headers.

CSRF: double submit plus synchronizer token. Every response to a browser without one sets the
``recterm_csrf`` cookie (readable by the page's script, SameSite=Strict); every state-changing request
(POST, PUT, PATCH, DELETE) must repeat it in the ``X-CSRF-Token`` header, and when the caller is signed in
it must also equal the token held in the server-side session. A page on another origin can neither read
the cookie nor set the header, so it cannot make a signed-in browser change anything.
"""

from __future__ import annotations

import hmac
import json
import secrets

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web_ui.guards import SESSION_COOKIE, WebSecurity

CSRF_COOKIE = "recterm_csrf"
CSRF_HEADER = "x-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

# No inline script or style anywhere: the pages read their messages from a JSON data block.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")


def cookie_header(name: str, value: str, secure: bool, http_only: bool, max_age: int | None = None) -> bytes:
    parts = [f"{name}={value}", "Path=/", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts).encode()


class Protection:
    def __init__(self, app: ASGIApp, security: WebSecurity, max_body_bytes: int) -> None:
        self.app = app
        self.security = security
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        https = scope.get("scheme") == "https"
        csrf_cookie = request.cookies.get(CSRF_COOKIE)
        new_csrf = None if csrf_cookie else secrets.token_urlsafe(32)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [h for h in HEADERS if h[0] not in present]
                if https:
                    headers.append(HSTS)
                if scope["path"].startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                if new_csrf and not any(k == b"set-cookie" and v.startswith(CSRF_COOKIE.encode()) for k, v in headers):
                    headers.append((b"set-cookie", cookie_header(CSRF_COOKIE, new_csrf, https, http_only=False)))
                message["headers"] = headers
            await send(message)

        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _refuse(send_with_headers, 413, "request.error.too_large")
            return
        if request.method in UNSAFE:
            if not self._csrf_ok(request, csrf_cookie):
                await _refuse(send_with_headers, 403, "request.error.csrf")
                return
            if length is None:  # chunked: read it here, up to the limit, and hand it on
                body, too_large = await _read_limited(receive, self.max_body)
                if too_large:
                    await _refuse(send_with_headers, 413, "request.error.too_large")
                    return
                receive = _replay(body, receive)
        await self.app(scope, receive, send_with_headers)

    def _csrf_ok(self, request: Request, cookie: str | None) -> bool:
        header = request.headers.get(CSRF_HEADER, "")
        if not cookie or not header or not hmac.compare_digest(cookie.encode(), header.encode()):
            return False
        session = self.security.sessions.peek(request.cookies.get(SESSION_COOKIE))
        return session is None or hmac.compare_digest(session.csrf.encode(), header.encode())


async def _refuse(send: Send, status: int, code: str) -> None:
    body = json.dumps({"detail": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_limited(receive: Receive, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks), False


def _replay(body: bytes, original: Receive) -> Receive:
    """The body read already, then whatever the connection says next (its disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await original()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
