"""Offload one docked camera: list its recordings, copy each into the store while hashing, verify, log.

Runs on a worker thread (blocking I/O throughout). Nothing on the camera is modified here. A recording
already verified in an earlier, interrupted offload of the same dock-to-free cycle (appliance/cycles.py) is
recognised by (camera, path, size, mtime) and not copied again; one verified before the camera was last freed
never is. A recording the volume's structural check found damaged, or whose read fails, is not copied: it is
named in an ``offload_error`` entry and the camera is not freed (docs/camera-filesystems.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tinydb import Query, TinyDB

from appliance import assignments, cycles
from appliance.bus_scheduler import BusScheduler
from appliance.clock import clock_synced
from appliance.eventlog import Entry, EventLog
from appliance.evidence import manifest
from appliance.state.db import StateDB
from appliance.store import LocalStore, StoredObject
from devices.volumes import FileEntry, Finding, Volume, VolumeError

log = logging.getLogger(__name__)

RECORDINGS = "recordings"


class OffloadCancelled(Exception):
    """The camera was undocked (or the station is stopping) mid-offload."""


@dataclass
class OffloadProgress:
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    skipped: int = 0  # verified in an earlier run

    def as_dict(self) -> dict[str, int]:
        return {
            "files_total": self.files_total,
            "files_done": self.files_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "skipped": self.skipped,
        }


@dataclass
class OffloadResult:
    camera_serial: str
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # listed recordings without a verified copy: never free
    damaged: list[Finding] = field(default_factory=list)  # damage on the camera's filesystem: never free
    progress: OffloadProgress = field(default_factory=OffloadProgress)


FileIdentity = tuple[str, int, str | None]  # (camera path, size, camera mtime): what a camera listing shows


def file_identity(entry: FileEntry) -> FileIdentity:
    return entry.path, entry.size, entry.modified.isoformat() if entry.modified else None


def recording_key(camera_serial: str, entry: FileEntry, cycle: int = cycles.NEVER_FREED) -> str:
    """The recording's row key: the camera file, and the cycle it was copied in once the camera was ever freed
    (the same name, size and time after a free is another recording and must not overwrite the first's row)."""
    mtime = entry.modified.isoformat() if entry.modified else "-"
    base = f"{camera_serial}|{entry.path}|{entry.size}|{mtime}"
    return base if cycle == cycles.NEVER_FREED else f"{base}|after-{cycle}"


def is_recording(entry: FileEntry, extensions: tuple[str, ...]) -> bool:
    return Path(entry.path).suffix.lower() in extensions


@dataclass
class Offloader:
    store: LocalStore
    db: StateDB
    events: EventLog
    extensions: tuple[str, ...]
    station_id: str
    signing_key: Ed25519PrivateKey  # for a log without a signer; otherwise the log's signer owns the key
    scheduler: BusScheduler | None = None  # shares each USB bus between the bays (None: every bay unpaced)
    timezone: str = "UTC"  # the station's: camera clocks are local wall time

    def __post_init__(self) -> None:
        cycles.ensure_cycles(self.db, self.events)

    def run(
        self,
        volume: Volume,
        camera: dict[str, Any],
        bay: int,
        cancel: threading.Event,
        on_progress: Callable[[OffloadProgress], None],
    ) -> OffloadResult:
        serial = str(camera["serial"])
        listed = list(volume.entries())
        result = OffloadResult(serial, damaged=[f for f in volume.findings() if f.damage])
        for note in (f for f in volume.findings() if not f.damage):
            log.info("bay %s, camera %s: %s: %s", bay, serial, note.path or "(volume)", note.detail)
        unreadable = {f.path for f in result.damaged}
        recordings = [e for e in listed if is_recording(e, self.extensions)]
        entries = [e for e in recordings if e.path not in unreadable]
        progress = result.progress
        progress.files_total = len(entries)
        progress.bytes_total = sum(e.size for e in entries)
        cycle, known = self.db.call(lambda db: _copied_this_cycle(db, serial))
        self.events.append(
            "offload_start",
            {"bay": bay, "camera": serial, "files": len(entries), "bytes": progress.bytes_total},
        )
        on_progress(progress)
        if self.scheduler is not None:
            left = sum(e.size for e in entries if file_identity(e) not in known)
            self.scheduler.register(bay, left)
        try:
            self._copy_all(volume, entries, known, cycle, camera, bay, cancel, on_progress, result)
        finally:
            if self.scheduler is not None:
                self.scheduler.finish(bay)
        if result.damaged:
            self._log_damage(bay, serial, result.damaged)
        self._reconcile(bay, serial, listed, recordings, result)
        self.events.append(
            "offload_complete",
            {
                "bay": bay,
                "camera": serial,
                "listed": len(recordings),
                "copied": len(result.copied),
                "already_verified": len(result.skipped),
                "damaged": len(result.damaged),
            },
        )
        return result

    def _log_damage(self, bay: int, serial: str, damaged: list[Finding]) -> None:
        """One entry per offload naming what stays on the camera and why, bounded however much is damaged."""
        reasons: dict[str, int] = {}
        for finding in damaged:
            reasons[finding.reason] = reasons.get(finding.reason, 0) + 1
        self.events.append(
            "offload_error",
            {
                "bay": bay,
                "camera": serial,
                "damaged_count": len(damaged),
                "reasons": reasons,
                "damaged": [f.as_dict() for f in damaged[:MAX_DAMAGED_NAMED]],
            },
        )
        first = damaged[0]
        log.error("bay %s, camera %s: %d damaged, first %s: %s", bay, serial, len(damaged), first.path, first.detail)

    def _reconcile(
        self, bay: int, serial: str, listed: list[FileEntry], entries: list[FileEntry], result: OffloadResult
    ) -> None:
        """What the camera listed against what arrived, read back from the state (not from the copy loop's own
        bookkeeping), logged per dock. Files that are not recordings stay on the camera and are named."""
        _, arrived = self.db.call(lambda db: _copied_this_cycle(db, serial))
        result.missing = [e.path for e in entries if file_identity(e) not in arrived]
        others = [e.path for e in listed if not is_recording(e, self.extensions)]
        self.events.append(
            "reconciliation",
            {
                "bay": bay,
                "camera": serial,
                "listed": len(listed),
                "recordings": len(entries),
                "arrived": len(entries) - len(result.missing),
                "missing": result.missing,
                "not_recordings": others[:MAX_NAMED],
                "not_recordings_count": len(others),
            },
        )
        if result.missing:
            log.error("bay %s, camera %s: recordings without a verified copy: %s", bay, serial, result.missing)

    def _copy_all(
        self,
        volume: Volume,
        entries: list[FileEntry],
        known: set[FileIdentity],
        cycle: int,
        camera: dict[str, Any],
        bay: int,
        cancel: threading.Event,
        on_progress: Callable[[OffloadProgress], None],
        result: OffloadResult,
    ) -> None:
        serial = str(camera["serial"])
        progress = result.progress
        for entry in entries:
            key = recording_key(serial, entry, cycle)
            if file_identity(entry) in known:
                progress.files_done += 1
                progress.bytes_done += entry.size
                progress.skipped += 1
                result.skipped.append(entry.path)
                on_progress(progress)
                continue
            if cancel.is_set():
                raise OffloadCancelled(f"stopped before {entry.path}")

            def advance(n: int, path: str = entry.path) -> None:
                if cancel.is_set():
                    raise OffloadCancelled(f"stopped during {path}")
                progress.bytes_done += n
                on_progress(progress)
                if self.scheduler is not None:
                    self.scheduler.progress(bay, n, cancel)  # waits here while another bay leads the bus

            try:
                with volume.open(entry.path) as source:
                    stored = self.store.ingest(source, entry.size, advance)
            except VolumeError as exc:
                if cancel.is_set():  # the camera was pulled out: not damage
                    raise OffloadCancelled(f"stopped during {entry.path}") from exc
                result.damaged.append(Finding(entry.path, "read_error", str(exc)))
                continue
            ingest = self.events.append(
                "ingest",
                {
                    "bay": bay,
                    "camera": serial,
                    "camera_path": entry.path,
                    "size": stored.size,
                    "sha256": stored.sha256,
                    "camera_mtime": entry.modified.isoformat() if entry.modified else None,
                },
            )
            assignment = self._assignment_for(serial, entry)
            officers = assignment["officers"] if assignment else []  # [{police_no, name}], the pair on duty
            manifest_path = self._write_manifest(camera, entry, stored, ingest, officers)
            row = {
                "key": key,
                "camera_serial": serial,
                "camera_path": entry.path,
                "name": Path(entry.path).name,
                "size": stored.size,
                "sha256": stored.sha256,
                "camera_mtime": entry.modified.isoformat() if entry.modified else None,
                "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "ingest_seq": ingest.seq,
                "manifest": str(manifest_path.relative_to(self.store.root)),
                "retention_class": "unclassified",
                "assignment": assignment["id"] if assignment else None,
                "officers": [o["police_no"] for o in officers],
                "officer": "+".join(o["police_no"] for o in officers) or None,  # object key part (004 Art. 16)
                "status": "verified",
            }
            self.db.call(lambda db, row=row: db.table(RECORDINGS).upsert(row, Query().key == row["key"]))
            progress.files_done += 1
            result.copied.append(entry.path)
            on_progress(progress)

    def _assignment_for(self, serial: str, entry: FileEntry) -> dict[str, Any] | None:
        """The check-out during which the camera recorded ``entry`` (by the camera's clock), if any."""
        if entry.modified is None:
            return None
        when = assignments.utc(entry.modified, ZoneInfo(self.timezone))
        return self.db.call(lambda db: assignments.covering(db, serial, when))

    def _write_manifest(
        self,
        camera: dict[str, Any],
        entry: FileEntry,
        stored: StoredObject,
        ingest: Entry,
        officers: list[dict[str, Any]],
    ) -> Path:
        sequence = self.db.call(_next_ingest_sequence)
        # The key in use at the ingest entry, even if a rotation came since: verifiers demand exactly that one.
        signer = self.events.signer_for(ingest.seq)
        key = signer.key if signer is not None else self.signing_key
        body: dict[str, Any] = {
            "v": manifest.VERSION,
            "kind": manifest.KIND,
            "station": {
                "id": self.station_id,
                "key_id": manifest.key_id(key.public_key()),
                "log_origin": self.events.origin,
            },
            "camera": {k: camera.get(k) for k in ("serial", "vendor", "model", "firmware")},
            "officers": officers,
            "file": {
                "camera_path": entry.path,
                "name": PurePosixPath(entry.path).name,
                "size": stored.size,
                "camera_mtime": entry.modified.isoformat() if entry.modified else None,
                "camera_ctime": entry.created.isoformat() if entry.created else None,
                "sha256": stored.sha256,
                **({"sm3": stored.sm3} if stored.sm3 else {}),
            },
            "ingest": {
                "time": ingest.wall,
                "clock_synced": clock_synced(),
                "boot_id": ingest.boot_id,
                "sequence": sequence,
                "log_index": ingest.seq,
            },
            "retention": {"class": "unclassified"},  # untagged recordings are retained, never short-lived
            "signatures": [],
        }
        return self.store.put_manifest(stored.sha256, ingest.seq, manifest.encode(manifest.sign(body, key)))


def _next_ingest_sequence(db: TinyDB) -> int:
    meta = db.table("meta")
    row = meta.get(Query().name == "ingest_sequence")
    value = (row["value"] if row else 0) + 1  # type: ignore[index]
    meta.upsert({"name": "ingest_sequence", "value": value}, Query().name == "ingest_sequence")
    return value


MAX_NAMED = 100  # file names per log entry: a camera full of junk must not make one huge entry
MAX_DAMAGED_NAMED = 20  # damaged files named per offload_error entry (each with a reason and a bounded detail)

# Every status a recording reaches after its copy has verified; only these are safe to skip.
SAFE_STATUSES = ("verified", "uploaded")


def copied_this_cycle(db: TinyDB, serial: str) -> list[dict[str, Any]]:
    """The camera's recordings verified since its cycle began, newest ingest per camera path (a path reused
    within the cycle, after the camera overwrote a file: the newest is the one on the camera)."""
    since = cycles.cycle_start(db, serial)
    rows = db.table(RECORDINGS).search(
        (Query().camera_serial == serial) & Query().status.one_of(SAFE_STATUSES) & (Query().ingest_seq > since)
    )
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["ingest_seq"] > latest.get(row["camera_path"], {}).get("ingest_seq", -1):
            latest[row["camera_path"]] = row
    return list(latest.values())


def _copied_this_cycle(db: TinyDB, serial: str) -> tuple[int, set[FileIdentity]]:
    """The current cycle and what was copied in it: the only files a re-dock may skip."""
    rows = copied_this_cycle(db, serial)
    return cycles.cycle_start(db, serial), {(r["camera_path"], r["size"], r["camera_mtime"]) for r in rows}
