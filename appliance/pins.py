"""Officer PINs: only scrypt hashes are stored, never the PIN itself (appliance/security/scrypt.py)."""

from __future__ import annotations

import re

from appliance.security.scrypt import hash_secret, looks_like_hash, verify_secret

PIN = re.compile(r"^\d{4,8}$")
__all__ = ["PIN", "PinError", "hash_pin", "looks_like_hash", "verify_pin"]


class PinError(ValueError):
    """A PIN that cannot be set (wrong form)."""


def hash_pin(pin: str) -> str:
    if not PIN.fullmatch(pin):
        raise PinError("PIN must be 4 to 8 digits")
    return hash_secret(pin)


def verify_pin(pin: str, stored: str | None) -> bool:
    """True when ``pin`` matches ``stored``; False for no PIN set, a malformed hash or a wrong PIN."""
    return bool(PIN.fullmatch(pin)) and verify_secret(pin, stored)
