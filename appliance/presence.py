"""Before a camera is freed: prove that every recording on it is present, without trusting the state.

A state row saying "verified" is the station's own bookkeeping; freeing the camera on its word alone turns
any drift between the row and the disk (a deleted object, a restored old state, a bug) into lost evidence.
So each recording the camera is about to lose must show, right before the free:

- its ingest entry in the event log, naming the same camera, camera path, size and SHA-256;
- its bytes: the object in the store with the recorded size. Recordings copied and read back in this very
  offload are checked by size (their read-back is minutes old); those skipped as copied in an earlier,
  interrupted offload are re-hashed in full, since nothing in this offload has looked at them;
- or, when the station deleted its own copy after a confirmed upload (local_keep.py), the upload receipt in
  the log for the same bytes.

Runs on a worker thread: re-hashing is blocking I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from appliance.eventlog import EventLog, EventLogError
from appliance.store import LocalStore, StoreError


@dataclass(frozen=True)
class Gap:
    """A recording the station cannot prove it holds: the camera must keep it."""

    camera_path: str
    sha256: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"camera_path": self.camera_path, "sha256": self.sha256, "reason": self.reason}


def prove_present(
    rows: Iterable[dict[str, Any]], store: LocalStore, events: EventLog, rehash: Collection[str] = ()
) -> list[Gap]:
    """The gaps among ``rows`` (recording rows of one camera); empty when every one is proven present.
    ``rehash``: camera paths whose stored bytes must be re-read and re-hashed, not only sized."""
    gaps = []
    for row in rows:
        problem = _ingest_problem(row, events) or _bytes_problem(row, store, events, row["camera_path"] in rehash)
        if problem is not None:
            gaps.append(Gap(row["camera_path"], row["sha256"], problem))
    return gaps


def _ingest_problem(row: dict[str, Any], events: EventLog) -> str | None:
    seq = row.get("ingest_seq")
    try:
        entry = events.entry(int(seq)) if isinstance(seq, int) else None
    except (IndexError, EventLogError):
        entry = None
    if entry is None or entry.type != "ingest":
        return f"log entry {seq} is not its ingest entry"
    body = entry.body
    wanted = {"camera": row["camera_serial"], "camera_path": row["camera_path"], "size": row["size"]}
    if body.get("sha256") != row["sha256"] or any(body.get(k) != v for k, v in wanted.items()):
        return f"its ingest entry {seq} describes another recording"
    return None


def _bytes_problem(row: dict[str, Any], store: LocalStore, events: EventLog, rehash: bool) -> str | None:
    sha, size = row["sha256"], row["size"]
    if row.get("local_deleted"):
        seq = row.get("receipt_seq")
        try:
            receipt = events.entry(int(seq)) if isinstance(seq, int) else None
        except (IndexError, EventLogError):
            receipt = None
        if receipt is None or receipt.type != "upload_receipt" or receipt.body.get("sha256") != sha:
            return "local copy deleted, and no upload receipt in the log for these bytes"
        return None
    try:
        stored = store.object_path(sha).stat().st_size
    except FileNotFoundError:
        return "stored copy missing"
    except OSError as exc:
        return f"stored copy unreadable: {exc.strerror}"
    if stored != size:
        return f"stored copy holds {stored} bytes, the recording {size}"
    if rehash:
        try:
            store.verify(sha, size)
        except (StoreError, OSError) as exc:
            return f"stored copy does not verify: {exc}"
    return None
