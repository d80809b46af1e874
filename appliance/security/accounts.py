"""Staff accounts: a name, roles, an scrypt password hash, and the failure count behind the lock-out.

Rows live in the StateDB table ``accounts``; every write validates first, so a bad value is never stored.
Sign-in failures slow the next attempt down (doubling delay) and lock the account after
``security.lockout_after`` failures in a row for ``security.lockout_s``. Every sign-in, failure, lock-out and
account change is an event in the tamper-evident log.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from tinydb import Query, TinyDB

from appliance.config import SecuritySection
from appliance.eventlog import EventLog
from appliance.security.roles import ACCOUNT_ROLES, Role
from appliance.security.scrypt import dummy_hash, hash_secret, verify_secret
from appliance.state.db import StateDB

ACCOUNTS = "accounts"
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{2,31}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 128
POLICE_NO = re.compile(r"^[0-9A-Za-z]{6}$")


class AccountError(ValueError):
    """An account value that cannot be stored; the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SignInRefused(Exception):
    """Wrong name or password, or a locked account. ``code`` is a message-catalogue key."""

    def __init__(self, code: str, retry_after_s: float = 0.0) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after_s = retry_after_s


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if len(set(password)) < 4:
        raise AccountError("password", "must not repeat one or two characters")


def validate_account(row: dict[str, Any]) -> dict[str, Any]:
    username = str(row.get("username", ""))
    if not USERNAME.fullmatch(username):
        raise AccountError("username", "must be 3 to 32 lower-case letters, digits, dots, dashes; a letter first")
    roles = row.get("roles") or []
    if not isinstance(roles, list) or not roles or any(r not in ACCOUNT_ROLES for r in roles):
        raise AccountError("roles", f"must name one or more of {', '.join(ACCOUNT_ROLES)}")
    police_no = row.get("police_no") or None
    if police_no is not None and not POLICE_NO.fullmatch(str(police_no)):
        raise AccountError("police_no", "must be 6 letters or digits, or empty")
    if Role.OFFICER in roles and police_no is None:
        raise AccountError("police_no", "an officer account must name the officer's police number")
    if not isinstance(row.get("password_hash"), str):
        raise AccountError("password", "must be set")
    active = row.get("active", True)
    if not isinstance(active, bool):
        raise AccountError("active", "must be true or false")
    return {
        "username": username,
        "name": str(row.get("name") or username)[:64],
        "roles": sorted({str(r) for r in roles}),
        "police_no": police_no,
        "active": active,
        "password_hash": row["password_hash"],
        "failures": int(row.get("failures", 0)),
        "locked_until": float(row.get("locked_until", 0.0)),
    }


def public_account(row: dict[str, Any]) -> dict[str, Any]:
    """An account as pages and APIs show it: never the hash."""
    return {k: v for k, v in row.items() if k not in ("password_hash", "locked_until")} | {
        "locked": row.get("locked_until", 0.0) > time.time()
    }


# -- table functions (StateDB owner thread)
def account(db: TinyDB, username: str) -> dict[str, Any] | None:
    return db.table(ACCOUNTS).get(Query().username == username)  # type: ignore[return-value]


def accounts(db: TinyDB) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in db.table(ACCOUNTS).all()), key=lambda r: r["username"])


def store_account(db: TinyDB, row: dict[str, Any]) -> dict[str, Any]:
    valid = validate_account(row)
    db.table(ACCOUNTS).upsert(valid, Query().username == valid["username"])
    return valid


def add_account(db: TinyDB, row: dict[str, Any]) -> dict[str, Any]:
    """Store a new account (``row`` holds the password hash already); refuses a name in use."""
    if account(db, str(row.get("username", ""))) is not None:
        raise AccountError("username", f"an account {row['username']} exists already")
    return store_account(db, row)


def has_admin(db: TinyDB) -> bool:
    return any(Role.ADMIN in r["roles"] and r["active"] for r in db.table(ACCOUNTS).all())


@dataclass(frozen=True)
class Principal:
    """Who is signed in: a staff account, or officers identified at the kiosk."""

    name: str
    roles: frozenset[Role]
    police_nos: tuple[str, ...] = ()


class AccountService:
    def __init__(self, db: StateDB, events: EventLog, limits: SecuritySection) -> None:
        self.db = db
        self.events = events
        self.limits = limits

    async def _log(self, type_: str, body: dict[str, Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.events.append, type_, body)

    async def create(
        self,
        username: str,
        password: str,
        roles: list[str],
        by: str,
        name: str = "",
        police_no: str | None = None,
    ) -> dict[str, Any]:
        check_password(password)
        password_hash = await asyncio.get_running_loop().run_in_executor(None, hash_secret, password)
        row = {"username": username, "name": name, "roles": roles, "police_no": police_no}

        stored = await self.db.run(lambda db: add_account(db, {**row, "password_hash": password_hash}))
        await self._log("account_created", {"username": username, "roles": stored["roles"], "by": by})
        return public_account(stored)

    async def update(self, username: str, by: str, **fields: Any) -> dict[str, Any]:
        """Change roles, name, police number or active flag; ``password`` sets a new password; ``unlock``
        clears the failure count."""
        password = fields.pop("password", None)
        if fields.pop("unlock", False):
            fields |= {"failures": 0, "locked_until": 0.0}
        if password is not None:
            check_password(password)
            fields["password_hash"] = await asyncio.get_running_loop().run_in_executor(None, hash_secret, password)

        def change(db: TinyDB) -> dict[str, Any]:
            current = account(db, username)
            if current is None:
                raise AccountError("username", f"no account {username}")
            updated = store_account(db, {**current, **fields})
            if not has_admin(db):  # never lock the station out of its own administration
                store_account(db, current)
                raise AccountError("roles", "the last active administrator cannot be removed")
            return updated

        stored = await self.db.run(change)
        changed = sorted(k if k != "password_hash" else "password" for k in fields)
        await self._log("account_changed", {"username": username, "changed": changed, "by": by})
        return public_account(stored)

    async def sign_in(self, username: str, password: str, client: str) -> Principal:
        """The account's principal, or SignInRefused after the slow-down delay. The same answer and about
        the same time for an unknown name and a wrong password."""
        loop = asyncio.get_running_loop()
        row = await self.db.run(lambda db: account(db, username))
        now = time.time()
        if row is not None and row["locked_until"] > now:
            await self._log("signin_refused", {"username": username, "client": client, "reason": "locked"})
            raise SignInRefused("auth.error.locked", row["locked_until"] - now)
        stored = row["password_hash"] if row is not None else dummy_hash()
        ok = await loop.run_in_executor(None, verify_secret, password[:MAX_PASSWORD], stored)
        if row is not None and ok and row["active"]:
            if row["failures"]:
                await self.db.run(lambda db: db.table(ACCOUNTS).update({"failures": 0}, Query().username == username))
            await self._log("signin", {"username": username, "client": client})
            linked = (row["police_no"],) if row["police_no"] else ()
            return Principal(username, frozenset(Role(r) for r in row["roles"]), linked)
        failures = await self.db.run(lambda db: _count_failure(db, username, self.limits))
        reason = "inactive" if row is not None and ok else "password"
        await self._log(
            "signin_failed", {"username": username[:32], "client": client, "reason": reason, "failures": failures}
        )
        if failures and failures >= self.limits.lockout_after:
            await self._log("account_locked", {"username": username, "for_s": self.limits.lockout_s})
        delay = min(self.limits.slowdown_s * 2 ** max(failures - 1, 0), self.limits.slowdown_max_s)
        await asyncio.sleep(delay)  # slows down guessing; the rate limit caps the parallel attempts
        raise SignInRefused("auth.error.signin")


def _count_failure(db: TinyDB, username: str, limits: SecuritySection) -> int:
    """One more failure for ``username`` (0 when there is no such account); lock it at the threshold."""
    row = account(db, username)
    if row is None:
        return 0
    failures = row["failures"] + 1
    change: dict[str, Any] = {"failures": failures}
    if failures >= limits.lockout_after:
        change |= {"locked_until": time.time() + limits.lockout_s, "failures": 0}
        failures = limits.lockout_after
    db.table(ACCOUNTS).update(change, Query().username == username)
    return failures
