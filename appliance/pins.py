"""Officer PINs: only scrypt hashes are stored, never the PIN itself.

Stored form: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``, so the cost can be raised later without
invalidating existing hashes. Hashing costs tens of milliseconds on a Pi: call it off the event loop.
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PIN = re.compile(r"^\d{4,8}$")
LOG2_N, R, P, LENGTH = 14, 8, 1, 32


class PinError(ValueError):
    """A PIN that cannot be set (wrong form)."""


def hash_pin(pin: str) -> str:
    if not PIN.fullmatch(pin):
        raise PinError("PIN must be 4 to 8 digits")
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=LENGTH, n=2**LOG2_N, r=R, p=P).derive(pin.encode())
    return "$".join(["scrypt", str(LOG2_N), str(R), str(P), _b64(salt), _b64(digest)])


def verify_pin(pin: str, stored: str | None) -> bool:
    """True when ``pin`` matches ``stored``; False for no PIN set, a malformed hash or a wrong PIN."""
    if not stored or not PIN.fullmatch(pin):
        return False
    try:
        kind, log2_n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        kdf = Scrypt(salt=base64.b64decode(salt), length=len(expected), n=2 ** int(log2_n), r=int(r), p=int(p))
        kdf.verify(pin.encode(), expected)
    except (ValueError, InvalidKey):
        return False
    return True


def looks_like_hash(stored: str) -> bool:
    """Whether a CSV cell holds a stored hash (exported earlier) rather than a new PIN."""
    parts = stored.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(x.isdigit() for x in parts[1:4])


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
