"""Sign-in sessions, held in memory: a restart signs everyone out, and nothing secret rests on the card.

A session id is 256 random bits, sent only in an HttpOnly cookie; each sign-in makes a new id and drops the
one the browser came with (no session fixation). Staff sessions end after ``session_idle_s`` without a
request and after ``session_max_s`` in any case; kiosk sessions (officers identified at the kiosk) end
after ``kiosk_idle_s`` idle, and take their check-out tickets with them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.security.accounts import Principal


@dataclass
class Session:
    id: str
    principal: Principal
    csrf: str
    kiosk: bool
    started: float
    seen: float
    idle_s: float
    max_s: float
    tickets: list[str] = field(default_factory=list)  # kiosk: the check-out tickets of the officers in it

    def expired(self, now: float) -> bool:
        return now - self.seen > self.idle_s or now - self.started > self.max_s


class SessionStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions: dict[str, Session] = {}
        self._clock = clock
        self.on_end: list[Callable[[Session], None]] = []  # e.g. revoke the kiosk's tickets

    def start(self, principal: Principal, idle_s: float, max_s: float, kiosk: bool = False) -> Session:
        self.sweep()
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            kiosk=kiosk,
            started=now,
            seen=now,
            idle_s=idle_s,
            max_s=max_s,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session for ``session_id`` (touched: its idle time starts again), or None."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if session.expired(now):
            self.end(session_id)
            return None
        session.seen = now
        return session

    def peek(self, session_id: str | None) -> Session | None:
        """The live session for ``session_id`` without touching it."""
        session = self._sessions.get(session_id or "")
        return None if session is None or session.expired(self._clock()) else session

    def rotate(self, old_id: str | None, principal: Principal, idle_s: float, max_s: float, kiosk: bool) -> Session:
        """A new session (new id, new CSRF token) for ``principal``, replacing ``old_id``: an id the browser
        brought with it never becomes a signed-in one. A kiosk session keeps its tickets."""
        old = self._sessions.pop(old_id or "", None)
        session = self.start(principal, idle_s, max_s, kiosk)
        if old is not None and old.kiosk and kiosk:
            session.tickets = old.tickets
        elif old is not None:
            for listener in self.on_end:
                listener(old)
        return session

    def end(self, session_id: str | None) -> None:
        session = self._sessions.pop(session_id or "", None)
        if session is not None:
            for listener in self.on_end:
                listener(session)

    def end_all_of(self, name: str) -> int:
        """End every session of account ``name`` (its roles, password or standing changed); returns how many."""
        ids = [k for k, s in self._sessions.items() if not s.kiosk and s.principal.name == name]
        for key in ids:
            self.end(key)
        return len(ids)

    def sweep(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expired(now)]:
            self.end(key)

    def __len__(self) -> int:
        return len(self._sessions)
