"""A camera's dock-to-free cycle: the only span in which a recording may be skipped as "already verified".

Resuming an interrupted offload needs a skip: the camera still holds the file the station verified, so it is
recognised by its name, size and camera time and not copied again. Once the station has asked the camera to
free its storage, that recognition proves nothing: a camera whose clock reset after its battery ran flat and
whose numbering restarted can write a new file with the same name, size and time as one freed months ago.
So each camera's cycle starts after the station's last request to free it, and only recordings ingested in
the current cycle count as copied.

The cycle start is kept per camera (table ``offload_cycles``: the last log position before the request) and
moves *before* the request is logged and sent: a crash in between costs a second copy, never a skipped
recording. It is derived from the log (``camera_free_requested`` and, for logs written before that entry
existed, ``camera_freed``) once, when the table is first needed (``ensure_cycles``).
"""

from __future__ import annotations

import logging

from tinydb import Query, TinyDB

from appliance.eventlog import EventLog
from appliance.state.db import StateDB

log = logging.getLogger(__name__)

CYCLES = "offload_cycles"
FREE_REQUESTED = "camera_free_requested"  # logged, fsynced, before the camera is asked to free anything
_DERIVED = "offload_cycles_from_log"  # meta row: the table was derived from the log once
NEVER_FREED = -1


def cycle_start(db: TinyDB, serial: str) -> int:
    """Log position after which this camera's current cycle began (NEVER_FREED: it never was freed)."""
    row = db.table(CYCLES).get(Query().camera == serial)
    return int(row["since_seq"]) if row else NEVER_FREED  # type: ignore[index]


def end_cycle(db: TinyDB, serial: str, last_seq: int) -> None:
    """The camera is about to be freed: recordings ingested up to ``last_seq`` no longer count as copied."""
    db.table(CYCLES).upsert({"camera": serial, "since_seq": last_seq}, Query().camera == serial)


def ensure_cycles(state: StateDB, events: EventLog) -> None:
    """Derive the cycle starts from the log, once (a station updated from a version without cycles).

    The scan reads the whole log, but only on the first start that needs it.
    """
    if state.call(lambda db: db.table("meta").contains(Query().name == _DERIVED)):
        return
    last: dict[str, int] = {}
    for entry in events.entries():
        if entry.type in (FREE_REQUESTED, "camera_freed") and "camera" in entry.body:
            last[str(entry.body["camera"])] = entry.seq - 1

    def store(db: TinyDB) -> None:
        table = db.table(CYCLES)
        for serial, since in last.items():
            if since > cycle_start(db, serial):
                table.upsert({"camera": serial, "since_seq": since}, Query().camera == serial)
        db.table("meta").upsert({"name": _DERIVED, "value": True}, Query().name == _DERIVED)

    state.call(store)
    if last:
        log.info("offload cycles derived from the log for %d cameras", len(last))
