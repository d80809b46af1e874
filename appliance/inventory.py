"""Registries of cameras and officers (the station's authority on who and what is allowed).

Rows live in StateDB tables; every write goes through ``validate_*`` so a bad value never gets stored,
whether it comes from the kiosk, the admin API or a CSV import. Field limits follow ZFY_INFO (the officer
record written into the camera): police number 6 bytes, name 32, unit code 12, unit name 32 (GB18030).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tinydb import Query, TinyDB

from devices.camera.model import ZFY_ENCODING, ZFY_FIELDS

CAMERAS = "cameras"
OFFICERS = "officers"

ROLES = ("officer", "equipment", "admin")
CAMERA_STATUSES = ("in_service", "maintenance", "retired")
DRIVER = re.compile(r"^(serial|scsi:[a-z0-9_]+)$")
SERIAL = re.compile(r"^[A-Z0-9]{7}$")
POLICE_NO = re.compile(r"^[0-9A-Za-z]{6}$")
CARD = re.compile(r"^[0-9A-Za-z]{4,32}$")
DEVICE_PASSWORD = re.compile(r"^[0-9A-Za-z]{6}$")
DEFAULT_BITRATE_MBPS = 8.0  # 1080p30 H.264 as the common body cameras record it


class RegistryError(ValueError):
    """A registry value that cannot be stored; ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _zfy_text(field: str, value: Any, required: bool = True) -> str:
    text = str(value if value is not None else "").strip()
    if required and not text:
        raise RegistryError(field, "must not be empty")
    if len(text.encode(ZFY_ENCODING, errors="replace")) > ZFY_FIELDS[field]:
        raise RegistryError(field, f"at most {ZFY_FIELDS[field]} bytes in GB18030 (Chinese characters take 2)")
    return text


def validate_officer(row: dict[str, Any]) -> dict[str, Any]:
    """A complete, normalised officer row, or RegistryError."""
    police_no = str(row.get("police_no", "")).strip()
    if not POLICE_NO.fullmatch(police_no):
        raise RegistryError("police_no", "must be 6 letters or digits")
    card = str(row.get("card") or "").strip()
    if card and not CARD.fullmatch(card):
        raise RegistryError("card", "must be 4 to 32 letters or digits, or empty")
    role = str(row.get("role") or "officer").strip()
    if role not in ROLES:
        raise RegistryError("role", f"must be one of {', '.join(ROLES)}")
    active = row.get("active", True)
    if not isinstance(active, bool):
        raise RegistryError("active", "must be true or false")
    pin_hash = row.get("pin_hash") or None
    if pin_hash is not None and not isinstance(pin_hash, str):
        raise RegistryError("pin_hash", "must be a stored hash")
    return {
        "police_no": police_no,
        "name": _zfy_text("name", row.get("name")),
        "unit_code": _zfy_text("unit_code", row.get("unit_code")),
        "unit_name": _zfy_text("unit_name", row.get("unit_name")),
        "card": card or None,
        "role": role,
        "active": active,
        "pin_hash": pin_hash,
    }


def validate_camera(row: dict[str, Any]) -> dict[str, Any]:
    serial = str(row.get("serial", "")).strip()
    if not SERIAL.fullmatch(serial):
        raise RegistryError("serial", "must be 7 capital letters or digits (the ZFY_INFO product serial)")
    usb_serial = str(row.get("usb_serial") or serial).strip()
    if not usb_serial or len(usb_serial) > 64:
        raise RegistryError("usb_serial", "must be 1 to 64 characters")
    driver = str(row.get("driver") or "serial").strip()
    if not DRIVER.fullmatch(driver):
        raise RegistryError("driver", "must be serial or scsi:<vendor map>")
    status = str(row.get("status") or "in_service").strip()
    if status not in CAMERA_STATUSES:
        raise RegistryError("status", f"must be one of {', '.join(CAMERA_STATUSES)}")
    try:
        bitrate = float(row.get("bitrate_mbps") or DEFAULT_BITRATE_MBPS)
    except (TypeError, ValueError):
        raise RegistryError("bitrate_mbps", "must be a number (megabits per second)") from None
    if not 0.1 <= bitrate <= 100:
        raise RegistryError("bitrate_mbps", "must be between 0.1 and 100 megabits per second")
    password = str(row.get("password") or "000000")
    if not DEVICE_PASSWORD.fullmatch(password):
        raise RegistryError("password", "device password must be 6 letters or digits")
    lock = row.get("lock")
    if lock is not None and not (isinstance(lock, dict) and lock.get("reason")):
        raise RegistryError("lock", "a lock needs a reason")
    return {
        "serial": serial,
        "usb_serial": usb_serial,
        "model": str(row.get("model") or "").strip(),
        "vendor": str(row.get("vendor") or "").strip(),
        "driver": driver,
        "status": status,
        "bitrate_mbps": bitrate,
        "password": password,
        "lock": lock,
    }


# -- cameras
def upsert_camera(db: TinyDB, serial: str, **fields: Any) -> dict[str, Any]:
    table = db.table(CAMERAS)
    current = table.get(Query().serial == serial) or {}
    row = validate_camera({**current, **fields, "serial": serial})  # type: ignore[dict-item]
    clash = table.get((Query().usb_serial == row["usb_serial"]) & (Query().serial != serial))
    if clash is not None:
        raise RegistryError("usb_serial", f"already used by camera {clash['serial']}")  # type: ignore[index]
    table.upsert(row, Query().serial == serial)
    return row


def camera(db: TinyDB, serial: str) -> dict[str, Any] | None:
    return db.table(CAMERAS).get(Query().serial == serial)  # type: ignore[return-value]


def camera_by_usb_serial(db: TinyDB, usb_serial: str) -> dict[str, Any] | None:
    return db.table(CAMERAS).get(Query().usb_serial == usb_serial)  # type: ignore[return-value]


def cameras(db: TinyDB) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in db.table(CAMERAS).all()), key=lambda r: r["serial"])


def set_camera_lock(db: TinyDB, serial: str, reason: str | None, by: str = "") -> dict[str, Any]:
    """Put a fault/maintenance lock on a camera (``reason``) or lift it (None). A locked camera never
    passes the check-out gate."""
    row = camera(db, serial)
    if row is None:
        raise RegistryError("serial", f"no camera {serial} in the registry")
    if reason is None and (row.get("lock") or {}).get("faults"):
        raise RegistryError("lock", "the camera has open faults: a repair entry in the maintenance log lifts the lock")
    lock = None if reason is None else {"reason": reason, "by": by, "since": datetime.now(UTC).isoformat()}
    if lock is not None and (row.get("lock") or {}).get("faults"):
        lock["faults"] = row["lock"]["faults"]  # a hand-set lock on a faulty camera keeps its faults
    return upsert_camera(db, serial, lock=lock)


# -- officers
def upsert_officer(db: TinyDB, police_no: str, **fields: Any) -> dict[str, Any]:
    table = db.table(OFFICERS)
    current = table.get(Query().police_no == police_no) or {}
    row = validate_officer({**current, **fields, "police_no": police_no})  # type: ignore[dict-item]
    if row["card"]:
        clash = table.get((Query().card == row["card"]) & (Query().police_no != police_no))
        if clash is not None:
            raise RegistryError("card", f"already issued to officer {clash['police_no']}")  # type: ignore[index]
    table.upsert(row, Query().police_no == police_no)
    return row


def officer(db: TinyDB, police_no: str) -> dict[str, Any] | None:
    return db.table(OFFICERS).get(Query().police_no == police_no)  # type: ignore[return-value]


def officer_by_card(db: TinyDB, card: str) -> dict[str, Any] | None:
    return db.table(OFFICERS).get(Query().card == card)  # type: ignore[return-value]


def officers(db: TinyDB) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in db.table(OFFICERS).all()), key=lambda r: r["police_no"])


def public_officer(row: dict[str, Any]) -> dict[str, Any]:
    """An officer row as shown to pages and APIs: never the PIN hash."""
    return {k: v for k, v in row.items() if k != "pin_hash"} | {"has_pin": bool(row.get("pin_hash"))}
