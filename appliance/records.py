"""Officers' own recordings after a shift: tagging them (003 Art. 17, 004 Art. 16) and explaining gaps between
consecutive recordings of one assignment (000 Art. 14, 003 Art. 12).

The state row of a recording holds the current tag and retention class; every tag, re-tag and gap explanation
is an entry in the tamper-evident log, so a correction never hides what was said before. The first tag may set
any class; a re-tag may only keep or lengthen retention: moving a recording to a shorter class would let it be
deleted earlier than an earlier tag promised (000 Art. 22), so that needs a supervisor and is refused here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from tinydb import Query, TinyDB

from appliance.assignments import ASSIGNMENTS
from appliance.classification import Classification, RetentionClass, retention_class
from appliance.eventlog import EventLog
from appliance.gaps import Gap, ProbeError, RecordingTimes, find_gaps, recording_times
from appliance.offload import RECORDINGS
from appliance.policy import PolicyProfile
from appliance.state.db import StateDB
from appliance.store import LocalStore

log = logging.getLogger(__name__)

GAP_EXPLANATIONS = "gap_explanations"
# Longer-kept first: a re-tag may move a recording only towards the front of this list without a supervisor.
RETENTION_ORDER: tuple[RetentionClass, ...] = ("long_term", "evidence", "routine")


class RecordsRefused(Exception):
    """A refused request; ``code`` is a message-catalogue key for the kiosk."""

    def __init__(self, code: str, status: int = 400, **args: Any) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.args_ = {k: str(v) for k, v in args.items()}

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.code, "args": self.args_}  # the shape of CheckoutRefused's


@dataclass(frozen=True)
class GapView:
    assignment: str
    after: str
    before: str
    start: str
    end: str
    seconds: float
    explanation: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RecordsService:
    def __init__(self, db: StateDB, events: EventLog, store: LocalStore, policy: PolicyProfile, timezone: str):
        self.db = db
        self.events = events
        self.store = store
        self.policy = policy
        self.tz = ZoneInfo(timezone)

    # -- an officer's own recordings (metadata only: viewing the video needs an approval)
    def for_officer(self, police_no: str) -> list[dict[str, Any]]:
        rows = self.db.call(lambda db: db.table(RECORDINGS).search(Query().officers.test(lambda o: police_no in o)))
        rows.sort(key=lambda r: (r.get("classification") is not None, r.get("camera_mtime") or "", r["key"]))
        return [_public(r) for r in rows]  # untagged first, then by time

    def tag(self, police_no: str, sha256: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Tag one of the officer's own recordings. Raises RecordsRefused with a catalogue key."""
        try:
            tag = Classification.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RecordsRefused("records.error.field", field=".".join(map(str, first["loc"]))) from exc
        new_class = retention_class(tag)

        def apply(db: TinyDB) -> dict[str, Any]:
            row = db.table(RECORDINGS).get(Query().sha256 == sha256)
            if row is None or police_no not in row.get("officers", []):
                raise RecordsRefused("records.error.not_yours", 403)
            old_class = row.get("retention_class", "unclassified")
            # "unclassified" is a placeholder (kept until tagged), not a promise: the first tag may be anything.
            tagged = old_class != "unclassified"
            if tagged and RETENTION_ORDER.index(new_class) > RETENTION_ORDER.index(old_class):
                raise RecordsRefused("records.error.shorter", 409, old=old_class, new=new_class)
            update = {
                "classification": tag.model_dump(mode="json"),
                "retention_class": new_class,
                "classified_by": police_no,
                "classified_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            # The deadline (003 Art. 17) is met by the first tag; a later re-tag must not move it.
            update["first_classified_at"] = row.get("first_classified_at") or update["classified_at"]
            if row.get("status") == "uploaded" and new_class != old_class:
                update["relock"] = True  # the central copy's retention/hold must follow (the uploader does it)
            db.table(RECORDINGS).update(update, doc_ids=[row.doc_id])
            return {**row, **update, "previous_class": old_class}

        row = self.db.call(apply)
        self.events.append(
            "classification",
            {
                "sha256": sha256,
                "camera": row["camera_serial"],
                "camera_path": row["camera_path"],
                "by": police_no,
                "tag": row["classification"],
                "retention_class": row["retention_class"],
                "previous_class": row["previous_class"],
            },
        )
        return _public(row)

    # -- gaps between consecutive recordings of one assignment
    def gaps_for_officer(self, police_no: str) -> list[GapView]:
        def load(db: TinyDB) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
            mine = db.table(ASSIGNMENTS).search(
                Query().officers.test(lambda o: any(x["police_no"] == police_no for x in o))
            )
            ids = [a["id"] for a in mine]
            recs = db.table(RECORDINGS).search(Query().assignment.one_of(ids)) if ids else []
            notes = db.table(GAP_EXPLANATIONS).search(Query().assignment.one_of(ids)) if ids else []
            return mine, recs, notes

        assignments, recordings, notes = self.db.call(load)
        explained = {(n["assignment"], n["start"]): n["text"] for n in notes}
        views: list[GapView] = []
        threshold = float(self.policy.gap_threshold_s.value)
        for assignment in sorted(assignments, key=lambda a: a["issued_at"]):
            times = [t for r in recordings if r["assignment"] == assignment["id"] if (t := self._times(r))]
            for gap in find_gaps(times, threshold):
                views.append(_gap_view(assignment["id"], gap, explained))
        return views

    def explain_gap(self, police_no: str, assignment: str, start: str, text: str) -> GapView:
        text = text.strip()
        if not 1 <= len(text) <= 1000:
            raise RecordsRefused("records.error.explanation")
        gap = next(
            (g for g in self.gaps_for_officer(police_no) if (g.assignment, g.start) == (assignment, start)), None
        )
        if gap is None:
            raise RecordsRefused("records.error.no_gap", 404)
        row = {"assignment": assignment, "start": start, "text": text, "by": police_no}
        self.db.call(lambda db: db.table(GAP_EXPLANATIONS).insert(row))
        self.events.append("gap_explanation", {**row, "end": gap.end, "seconds": gap.seconds})
        return GapView(**{**gap.as_dict(), "explanation": text})

    def _times(self, row: dict[str, Any]) -> RecordingTimes | None:
        """Start and duration from the stored copy (ffprobe), anchored on the camera's file time."""
        mtime = datetime.fromisoformat(row["camera_mtime"]) if row.get("camera_mtime") else None
        try:
            times = recording_times(self.store.object_path(row["sha256"]), row["name"], mtime)
        except ProbeError as exc:
            log.warning("recording %s: no duration, left out of the gap check: %s", row["camera_path"], exc)
            return None
        return times


def _gap_view(assignment: str, gap: Gap, explained: dict[tuple[str, str], str]) -> GapView:
    start = gap.start.isoformat()
    return GapView(
        assignment, gap.after, gap.before, start, gap.end.isoformat(), round(gap.seconds, 1),
        explained.get((assignment, start)),
    )  # fmt: skip


def _public(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("sha256", "camera_serial", "camera_path", "name", "size", "camera_mtime", "status", "retention_class")
    return {**{k: row.get(k) for k in keep}, "classification": row.get("classification")}
