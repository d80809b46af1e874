"""scrypt hashes for secrets (officer PINs, staff passwords): only the hash is ever stored.

Stored form: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``, so the cost can be raised later without
invalidating existing hashes. Hashing costs tens of milliseconds on a Pi: call it off the event loop.
"""

from __future__ import annotations

import base64
import os
from functools import cache

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

LOG2_N, R, P, LENGTH = 14, 8, 1, 32


def hash_secret(secret: str) -> str:
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=LENGTH, n=2**LOG2_N, r=R, p=P).derive(secret.encode())
    return "$".join(["scrypt", str(LOG2_N), str(R), str(P), _b64(salt), _b64(digest)])


def verify_secret(secret: str, stored: str | None) -> bool:
    """True when ``secret`` matches ``stored``; False for no hash, a malformed hash or a wrong secret."""
    if not stored:
        return False
    try:
        kind, log2_n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt" or not 10 <= int(log2_n) <= 20:
            return False
        expected = base64.b64decode(digest)
        kdf = Scrypt(salt=base64.b64decode(salt), length=len(expected), n=2 ** int(log2_n), r=int(r), p=int(p))
        kdf.verify(secret.encode(), expected)
    except (ValueError, InvalidKey):
        return False
    return True


def looks_like_hash(stored: str) -> bool:
    parts = stored.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(x.isdigit() for x in parts[1:4])


@cache
def dummy_hash() -> str:
    """A hash of nothing anyone knows: checked when an account does not exist, so an unknown name costs the
    same time as a wrong password and the answer does not tell which it was."""
    return hash_secret(base64.b64encode(os.urandom(12)).decode())


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
