"""Registries of cameras and officers (the station's authority on who and what is allowed)."""

from __future__ import annotations

from typing import Any

from tinydb import Query, TinyDB

CAMERAS = "cameras"
OFFICERS = "officers"


def upsert_camera(db: TinyDB, serial: str, **fields: Any) -> None:
    table = db.table(CAMERAS)
    row = {"serial": serial, "usb_serial": serial, "password": "000000", "status": "in_service", **fields}
    table.upsert(row, Query().serial == serial)


def camera_by_usb_serial(db: TinyDB, usb_serial: str) -> dict[str, Any] | None:
    return db.table(CAMERAS).get(Query().usb_serial == usb_serial)  # type: ignore[return-value]


def cameras(db: TinyDB) -> list[dict[str, Any]]:
    return sorted(db.table(CAMERAS).all(), key=lambda r: r["serial"])


def upsert_officer(db: TinyDB, police_no: str, **fields: Any) -> None:
    db.table(OFFICERS).upsert({"police_no": police_no, "active": True, **fields}, Query().police_no == police_no)


def officers(db: TinyDB) -> list[dict[str, Any]]:
    return sorted(db.table(OFFICERS).all(), key=lambda r: r["police_no"])
