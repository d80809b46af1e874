"""Access to recordings: request, approval, time-boxed grant, and every view or export on the record.

Records are not disclosed without the head's approval (000 Art. 20, 001 Art. 18); viewing needs approval
(004 Art. 15); a party's copy needs approval and a signed retrieval form (002 Art. 32, 003 Art. 23);
private copying, keeping or spreading is forbidden (004 Art. 21). So: a request names its kind (view,
export, or a party's copy), the recordings, the purpose and the requester (and for a copy, the retrieval
form); a supervisor other than the requester approves or refuses; an approval is a grant valid until a
set time and only for the named recordings and only to the requester; each view and export is an event in
the tamper-evident log. An export is a ZIP holding the recording byte for byte under a watermarked name,
its signed manifest and the station's public key, so the copy stays verifiable.

Requests live in the StateDB table ``access_requests``; the history is in the event log
(``access_requested``, ``access_approved``, ``access_refused``, ``recording_viewed``, ``recording_exported``).
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives import serialization
from tinydb import Query, TinyDB

from appliance.checkout import ASSIGNMENTS
from appliance.eventlog import EventLog
from appliance.offload import RECORDINGS
from appliance.security.accounts import Principal
from appliance.security.roles import Role
from appliance.state.db import StateDB
from appliance.store import LocalStore

REQUESTS = "access_requests"
KINDS = ("view", "export", "copy")  # copy: a party's copy, with a signed retrieval form
APPROVERS = frozenset({Role.SUPERVISOR})
SEE_ALL = frozenset({Role.EQUIPMENT, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})  # metadata of every recording
SAFE_NAME = re.compile(r"[^0-9A-Za-z._-]+")


class AccessRefused(Exception):
    """``code`` is a message-catalogue key; ``status`` the HTTP status the API answers with."""

    def __init__(self, code: str, status: int = 403) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Party:
    name: str
    id_number: str
    form_no: str
    form_signed: bool


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def owners(db: TinyDB, recording: dict[str, Any]) -> set[str]:
    """Police numbers the recording belongs to. The offload records the pair of the check-out that covers
    the recording's time (``officers``, appliance/assignments.py); a recording without one (docked without a
    check-out) falls back to the camera's latest assignment issued before it was copied in."""
    if recording.get("officers"):
        return set(recording["officers"])
    q = Query()
    rows = db.table(ASSIGNMENTS).search(
        (q.camera == recording["camera_serial"]) & (q.issued_at <= recording["ingested_at"])
    )
    if not rows:
        return set()
    latest = max(rows, key=lambda r: r["issued_at"])
    return {o["police_no"] for o in latest["officers"]}


def recording_metadata(db: TinyDB, principal: Principal) -> list[dict[str, Any]]:
    """Recordings' metadata as ``principal`` may see it: staff see all, an officer only their own."""
    fields = ("key", "camera_serial", "name", "size", "sha256", "camera_mtime", "ingested_at", "retention_class")
    rows = db.table(RECORDINGS).all()
    if not principal.roles & SEE_ALL:
        mine = set(principal.police_nos)
        rows = [r for r in rows if owners(db, r) & mine] if mine else []
    return sorted(({k: r.get(k) for k in fields} for r in rows), key=lambda r: r["ingested_at"] or "")


class AccessService:
    def __init__(
        self,
        db: StateDB,
        events: EventLog,
        store: LocalStore,
        station_id: str,
        public_key: Callable[[str], Any],
        max_hours: float,
        scratch_dir: Path,
    ) -> None:
        self.scratch_dir = scratch_dir  # export bundles live here only while they are sent
        self.db = db
        self.events = events
        self.store = store
        self.station_id = station_id
        self.public_key = public_key  # by manifest key id: a recording signed before a rotation keeps its key
        self.max_hours = max_hours
        self.clock = _now  # tests move time forward

    async def _log(self, type_: str, body: dict[str, Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.events.append, type_, body)

    async def request(
        self, principal: Principal, kind: str, recordings: list[str], purpose: str, party: Party | None = None
    ) -> dict[str, Any]:
        if kind not in KINDS:
            raise AccessRefused("access.error.kind", 400)
        if kind == "copy" and (party is None or not party.form_signed):
            raise AccessRefused("access.error.form", 400)  # 002 Art. 32: a copy needs the signed form
        keys = sorted(set(recordings))

        def add(db: TinyDB) -> dict[str, Any]:
            found = {r["key"] for r in db.table(RECORDINGS).search(Query().key.one_of(keys))}
            if found != set(keys):
                raise AccessRefused("access.error.unknown_recording", 404)
            row = {
                "id": uuid.uuid4().hex[:16],
                "kind": kind,
                "recordings": keys,
                "purpose": purpose,
                "requester": principal.name,
                "party": party.__dict__ if party else None,
                "status": "pending",
                "created_at": _iso(self.clock()),
                "decided_by": None,
                "decided_at": None,
                "reason": None,
                "valid_until": None,
            }
            db.table(REQUESTS).insert(row)
            return row

        row = await self.db.run(add)
        body = {k: row[k] for k in ("id", "kind", "recordings", "purpose", "requester")}
        if party:
            body["party"] = {"name": party.name, "form_no": party.form_no}  # the ID number stays off the log
        await self._log("access_requested", body)
        return row

    async def decide(
        self, request_id: str, principal: Principal, approve: bool, hours: float, reason: str
    ) -> dict[str, Any]:
        if not principal.roles & APPROVERS:
            raise AccessRefused("auth.error.forbidden")
        if not 0 < hours <= self.max_hours:
            raise AccessRefused("access.error.hours", 400)
        now = self.clock()

        def decide(db: TinyDB) -> dict[str, Any]:
            row = db.table(REQUESTS).get(Query().id == request_id)
            if row is None:
                raise AccessRefused("access.error.unknown_request", 404)
            if row["status"] != "pending":
                raise AccessRefused("access.error.decided", 409)
            if row["requester"] == principal.name:
                raise AccessRefused("access.error.own_request")  # nobody approves their own request
            change = {
                "status": "approved" if approve else "refused",
                "decided_by": principal.name,
                "decided_at": _iso(now),
                "reason": reason,
                "valid_until": _iso(now + timedelta(hours=hours)) if approve else None,
            }
            db.table(REQUESTS).update(change, Query().id == request_id)
            return {**row, **change}

        row = await self.db.run(decide)
        body = {"id": request_id, "by": principal.name, "reason": reason, "recordings": row["recordings"]}
        if approve:
            body["valid_until"] = row["valid_until"]
        await self._log("access_approved" if approve else "access_refused", body)
        return row

    async def requests(self, principal: Principal) -> list[dict[str, Any]]:
        rows = await self.db.run(lambda db: db.table(REQUESTS).all())
        if not principal.roles & (APPROVERS | {Role.AUDITOR, Role.ADMIN}):
            rows = [r for r in rows if r["requester"] == principal.name]
        return sorted((dict(r) for r in rows), key=lambda r: r["created_at"])

    async def _granted(self, request_id: str, key: str, principal: Principal, kinds: tuple[str, ...]) -> dict:
        """The recording row, when ``principal`` holds a live grant covering ``key`` for one of ``kinds``."""

        def look(db: TinyDB) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            return db.table(REQUESTS).get(Query().id == request_id), db.table(RECORDINGS).get(Query().key == key)  # type: ignore[return-value]

        grant, recording = await self.db.run(look)
        if grant is None or grant["requester"] != principal.name:
            raise AccessRefused("access.error.no_grant")
        if grant["status"] != "approved" or grant["kind"] not in kinds:
            raise AccessRefused("access.error.no_grant")
        if self.clock() >= datetime.fromisoformat(grant["valid_until"]):
            raise AccessRefused("access.error.expired")
        if key not in grant["recordings"] or recording is None:
            raise AccessRefused("access.error.out_of_scope")
        return {"grant": grant, "recording": recording}

    async def view(self, request_id: str, key: str, principal: Principal, client: str) -> tuple[Path, dict]:
        """The stored file to stream for viewing; logged before a byte leaves."""
        found = await self._granted(request_id, key, principal, KINDS)
        recording = found["recording"]
        await self._log(
            "recording_viewed",
            {
                "request": request_id,
                "recording": key,
                "sha256": recording["sha256"],
                "by": principal.name,
                "client": client,
            },
        )
        return self.store.object_path(recording["sha256"]), recording

    async def export(self, request_id: str, key: str, principal: Principal, client: str) -> tuple[Path, str]:
        """A ZIP (temporary file: the caller streams it and deletes it) and its watermarked name."""
        found = await self._granted(request_id, key, principal, ("export", "copy"))
        grant, recording = found["grant"], found["recording"]
        when = self.clock().strftime("%Y%m%dT%H%M%SZ")
        stem, suffix = PurePosixPath(recording["name"]).stem, PurePosixPath(recording["name"]).suffix
        mark = SAFE_NAME.sub("-", f"{self.station_id}.{request_id}.{principal.name}.{when}")
        file_name = f"{SAFE_NAME.sub('-', stem)}.{mark}{suffix}"
        bundle_name = f"{SAFE_NAME.sub('-', stem)}.{mark}.zip"
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, self._bundle, grant, recording, file_name, principal.name, when)
        await self._log(
            "recording_exported",
            {
                "request": request_id,
                "kind": grant["kind"],
                "recording": key,
                "sha256": recording["sha256"],
                "file": bundle_name,
                "by": principal.name,
                "client": client,
                **({"form_no": grant["party"]["form_no"]} if grant.get("party") else {}),
            },
        )
        return path, bundle_name

    def _bundle(self, grant: dict, recording: dict, file_name: str, by: str, when: str) -> Path:
        manifest = (self.store.root / recording["manifest"]).read_bytes()
        key = self.public_key(json.loads(manifest)["station"]["key_id"])
        if key is None:
            raise AccessRefused("access.error.unknown_key", 409)  # its key is missing from the history
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        note = {
            "station": self.station_id,
            "request": grant["id"],
            "kind": grant["kind"],
            "purpose": grant["purpose"],
            "approved_by": grant["decided_by"],
            "exported_by": by,
            "exported_at": when,
            "file": file_name,
            "sha256": recording["sha256"],
            "verify": "sha256 of the file equals manifest.json file.sha256; manifest.json is signed by station.pub.pem",
        }
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="export-", suffix=".zip", dir=self.scratch_dir)
        with open(handle, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as bundle:
            bundle.write(self.store.object_path(recording["sha256"]), file_name)
            bundle.writestr("manifest.json", manifest)
            bundle.writestr("station.pub.pem", pem)
            bundle.writestr("export.json", json.dumps(note, ensure_ascii=False, indent=2))
        return Path(name)
