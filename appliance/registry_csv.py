"""CSV import and export of the officer and camera registries (docs/registry-csv.md).

Import is all-or-nothing at validation: every row is checked first and the file is refused with one
message per bad row (``row 4: police_no: must be 6 letters or digits``) before anything is written.
Each row is then upserted by its key, so importing the same file twice changes nothing. Exports are
UTF-8 with a byte-order mark, which spreadsheet programs need to show Chinese names.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from tinydb import TinyDB

from appliance import inventory
from appliance.pins import PinError, hash_pin, looks_like_hash

OFFICER_COLUMNS = ("police_no", "name", "unit_code", "unit_name", "card", "role", "active", "pin")
CAMERA_COLUMNS = ("serial", "usb_serial", "model", "vendor", "driver", "status", "bitrate_mbps", "password", "lock")
TRUE = {"true", "1", "yes", "y", "是"}
FALSE = {"false", "0", "no", "n", "否"}
MAX_ROWS = 10_000


class CsvImportError(Exception):
    """The file was refused; ``errors`` holds one line per problem, nothing was written."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:20]) + (f"; and {len(errors) - 20} more" if len(errors) > 20 else ""))
        self.errors = errors


def export_officers(db: TinyDB) -> str:
    """The PIN column carries the stored scrypt hash, so a round trip keeps PINs without revealing them."""
    rows = [
        {
            **{k: r.get(k) or "" for k in OFFICER_COLUMNS if k not in ("active", "pin")},
            "active": "true" if r["active"] else "false",
            "pin": r.get("pin_hash") or "",
        }
        for r in inventory.officers(db)
    ]
    return _write(OFFICER_COLUMNS, rows)


def export_cameras(db: TinyDB) -> str:
    rows = [
        {**{k: r.get(k) or "" for k in CAMERA_COLUMNS if k != "lock"}, "lock": (r.get("lock") or {}).get("reason", "")}
        for r in inventory.cameras(db)
    ]
    return _write(CAMERA_COLUMNS, rows)


Lookup = Callable[[str], dict[str, Any] | None]


def parse_officers(text: str, existing: Lookup = lambda _: None) -> list[dict[str, Any]]:
    """Validated officer rows (PINs already hashed), or CsvImportError listing every bad row."""

    def convert(row: dict[str, str]) -> dict[str, Any]:
        active = row.get("active", "true").strip().lower() or "true"
        if active not in TRUE | FALSE:
            raise inventory.RegistryError("active", "must be true or false (是/否)")
        pin = row.get("pin", "").strip()
        current = existing(row.get("police_no", "").strip()) or {}
        if not pin:
            pin_hash = current.get("pin_hash")  # an empty cell keeps the PIN the officer has
        elif looks_like_hash(pin):
            pin_hash = pin
        else:
            try:
                pin_hash = hash_pin(pin)
            except PinError as exc:
                raise inventory.RegistryError("pin", str(exc)) from None
        fields = {k: v for k, v in row.items() if k in OFFICER_COLUMNS and k not in ("active", "pin")}
        return inventory.validate_officer({**fields, "active": active in TRUE, "pin_hash": pin_hash})

    return _parse(text, OFFICER_COLUMNS, ("police_no", "name", "unit_code", "unit_name"), "police_no", convert, "card")


def parse_cameras(text: str) -> list[dict[str, Any]]:
    def convert(row: dict[str, str]) -> dict[str, Any]:
        reason = row.pop("lock", "").strip()
        lock = {"reason": reason, "by": "csv", "since": ""} if reason else None
        return inventory.validate_camera({**row, "lock": lock})

    return _parse(text, CAMERA_COLUMNS, ("serial",), "serial", convert, "usb_serial")


def import_officers(db: TinyDB, text: str) -> int:
    return store_officers(db, parse_officers(text, lambda police_no: inventory.officer(db, police_no)))


def store_officers(db: TinyDB, rows: list[dict[str, Any]]) -> int:
    """Write rows from ``parse_officers`` (split so the slow PIN hashing can run on another thread)."""
    _check_unique_against(db, rows, inventory.OFFICERS, "police_no", "card")
    for row in rows:
        inventory.upsert_officer(db, row.pop("police_no"), **row)
    return len(rows)


def import_cameras(db: TinyDB, text: str) -> int:
    rows = parse_cameras(text)
    _check_unique_against(db, rows, inventory.CAMERAS, "serial", "usb_serial")
    for row in rows:
        current = inventory.camera(db, row["serial"]) or {}
        if row["lock"] is not None and (current.get("lock") or {}).get("reason") == row["lock"]["reason"]:
            row["lock"] = current["lock"]  # same lock as before: keep who set it and when
        inventory.upsert_camera(db, row.pop("serial"), **row)
    return len(rows)


# -- helpers
def _write(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return "\ufeff" + out.getvalue()


def _parse(
    text: str,
    columns: tuple[str, ...],
    required: tuple[str, ...],
    key: str,
    convert: Callable[[dict[str, str]], dict[str, Any]],
    unique: str,
) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    if not header:
        raise CsvImportError(["the file is empty: the first line must name the columns"])
    reader.fieldnames = header
    unknown = [h for h in header if h not in columns]
    missing = [c for c in required if c not in header]
    if unknown or missing:
        problems = [f"unknown column {h!r}" for h in unknown] + [f"missing column {c!r}" for c in missing]
        raise CsvImportError([f"row 1 (header): {p}; columns are {', '.join(columns)}" for p in problems])
    errors: list[str] = []
    rows: list[dict[str, Any]] = []
    keys: dict[str, int] = {}
    uniques: dict[str, int] = {}
    for number, raw in enumerate(reader, start=2):
        if number - 1 > MAX_ROWS:
            errors.append(f"more than {MAX_ROWS} rows: split the file")
            break
        if None in raw:
            errors.append(f"row {number}: more cells than columns")
            continue
        cells = {k: (v or "").strip() for k, v in raw.items()}
        if not any(cells.values()):
            continue  # blank line
        try:
            row = convert(cells)
        except inventory.RegistryError as exc:
            errors.append(f"row {number}: {exc}")
            continue
        if row[key] in keys:
            errors.append(f"row {number}: {key}: {row[key]} already on row {keys[row[key]]}")
            continue
        if row.get(unique) and row[unique] in uniques:
            errors.append(f"row {number}: {unique}: {row[unique]} already on row {uniques[row[unique]]}")
            continue
        keys[row[key]] = number
        if row.get(unique):
            uniques[row[unique]] = number
        rows.append(row)
    if errors:
        raise CsvImportError(errors)
    return rows


def _check_unique_against(db: TinyDB, rows: list[dict[str, Any]], table: str, key: str, unique: str) -> None:
    """A card or USB serial in the file that the registry already gives to someone not in the file."""
    in_file = {r[key] for r in rows}
    taken = {r[unique]: r[key] for r in db.table(table).all() if r.get(unique) and r[key] not in in_file}
    errors = [
        f"{key} {r[key]}: {unique} {r[unique]} already belongs to {taken[r[unique]]}"
        for r in rows
        if r.get(unique) and r[unique] in taken
    ]
    if errors:
        raise CsvImportError(errors)
