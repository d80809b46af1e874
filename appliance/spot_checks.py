"""Spot checks of recordings with an inspection ledger (004 Art. 22: 定期抽检 ... 建立检查台帐).

A supervisor draws a random sample of the recordings ingested in a period, stratified by officer so that
every officer who recorded is looked at (proportional allocation, at least one each while the sample size
allows). The draw is reproducible: the seed is logged with the population, so anyone can redraw it and get
the same sample. Reviewing a sampled recording and recording the verdict goes into the ledger.

Who recorded a file: the officers of the camera's assignment that was returned last before the file was
ingested (the station offloads a camera when it comes back). Files with no such assignment form their own
stratum, ``unassigned``.

Viewing the recording itself needs the approval flow of the security issue (004 Art. 15: viewing needs the
section head's approval): ``view`` is the hook, and refuses until an approval check is plugged in.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tinydb import Query, TinyDB

from appliance import inventory
from appliance.checkout import ASSIGNMENTS
from appliance.offload import RECORDINGS, SAFE_STATUSES

TABLE = "spot_checks"
VERDICTS = ("compliant", "issue", "unusable")
UNASSIGNED = "unassigned"
MAX_SAMPLE = 500


class SpotCheckError(ValueError):
    """A draw or verdict that cannot be recorded; the message says why."""


class ApprovalRequired(PermissionError):
    """Viewing a recording needs an approval (004 Art. 15) that this station cannot grant yet."""


def population(db: TinyDB, tz: ZoneInfo, since: date, until: date) -> list[dict[str, Any]]:
    """Recordings safely stored and ingested between the local dates (both included), each with its officer."""
    returned = defaultdict(list)
    for row in db.table(ASSIGNMENTS).all():
        if row.get("returned_at"):
            returned[row["camera"]].append(row)
    out = []
    for rec in db.table(RECORDINGS).all():
        if rec["status"] not in SAFE_STATUSES:
            continue
        ingested = datetime.fromisoformat(rec["ingested_at"])
        if not since <= ingested.astimezone(tz).date() <= until:
            continue
        before = [a for a in returned[rec["camera_serial"]] if a["returned_at"] <= rec["ingested_at"]]
        last = max(before, key=lambda a: a["returned_at"], default=None)
        officer = last["officers"][0]["police_no"] if last else UNASSIGNED
        out.append(
            {
                "key": rec["key"],
                "camera": rec["camera_serial"],
                "name": rec["name"],
                "ingested_at": rec["ingested_at"],
                "officer": officer,
                "assignment": last["id"] if last else None,
            }
        )
    return sorted(out, key=lambda r: r["key"])


def allocate(strata: dict[str, int], size: int) -> dict[str, int]:
    """How many to draw per stratum: proportional (largest remainders), at least one each while the size
    allows, never more than a stratum holds."""
    total = sum(strata.values())
    size = min(size, total)
    names = sorted(strata)
    if size < len(names):  # fewer draws than officers: every officer is equally likely to be looked at
        return dict.fromkeys(names, 0)
    counts = dict.fromkeys(names, 1)
    left = size - len(names)
    rest = {n: strata[n] - 1 for n in names}
    spare = sum(rest.values())
    if left and spare:
        exact = {n: left * rest[n] / spare for n in names}
        for n in names:
            counts[n] += int(exact[n])
        short = left - sum(int(v) for v in exact.values())
        for n in sorted(names, key=lambda n: (-(exact[n] - int(exact[n])), n))[:short]:
            counts[n] += 1
    return {n: min(c, strata[n]) for n, c in counts.items()}


def draw_sample(rows: list[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """The reproducible stratified sample: same rows (by key), size and seed give the same sample."""
    by_officer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["key"]):
        by_officer[row["officer"]].append(row)
    rng = random.Random(seed)
    counts = allocate({o: len(r) for o, r in by_officer.items()}, size)
    if size < len(counts):  # fewer draws than officers: pick the officers first, one file each
        chosen = rng.sample(sorted(counts), size)
        counts = {o: int(o in chosen) for o in counts}
    sample = []
    for officer in sorted(by_officer):
        sample += rng.sample(by_officer[officer], counts[officer])
    return sample


class SpotChecks:
    """Draws and verdicts: blocking (StateDB, fsynced log), call from a worker thread."""

    def __init__(self, db: Any, events: Any, tz: ZoneInfo) -> None:
        self.db = db
        self.events = events
        self.tz = tz
        # The approval check of the security issue goes here: (check id, recording key, viewer) -> approved.
        self.approve_view: Callable[[str, str, str], bool] | None = None

    def draw(self, by: str, size: int, since: date, until: date, seed: int | None = None) -> dict[str, Any]:
        if self.db.call(lambda db: inventory.officer(db, by)) is None:
            raise SpotCheckError(f"no officer {by} in the registry")
        if not 1 <= size <= MAX_SAMPLE:
            raise SpotCheckError(f"sample size must be 1 to {MAX_SAMPLE}")
        if since > until:
            raise SpotCheckError("the period ends before it starts")
        if seed is None:
            seed = secrets.randbits(52)  # an integer canonical JSON (RFC 8785) holds exactly: below 2**53
        if not 0 <= seed < 2**53:
            raise SpotCheckError("the seed must be an integer from 0 to 2**53 - 1")
        rows = self.db.call(lambda db: population(db, self.tz, since, until))
        if not rows:
            raise SpotCheckError("no recordings were stored in that period")
        sample = draw_sample(rows, size, seed)
        strata: dict[str, int] = defaultdict(int)
        for row in rows:
            strata[row["officer"]] += 1
        check = {
            "id": uuid.uuid4().hex[:12],
            "by": by,
            "drawn_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "since": since.isoformat(),
            "until": until.isoformat(),
            "size": size,
            "seed": seed,
            "population": len(rows),
            "strata": dict(sorted(strata.items())),
            "sample": [{**r, "verdict": None, "note": "", "reviewed_by": None, "reviewed_at": None} for r in sample],
        }
        entry = self.events.append(
            "spot_check_drawn",
            {**{k: v for k, v in check.items() if k != "sample"}, "keys": [r["key"] for r in sample]},
        )
        check["seq"] = entry.seq
        self.db.call(lambda db: db.table(TABLE).insert(check))
        return check

    def verdict(self, check_id: str, key: str, reviewer: str, verdict: str, note: str = "") -> dict[str, Any]:
        """Enter the result of reviewing one sampled recording in the inspection ledger."""
        if self.db.call(lambda db: inventory.officer(db, reviewer)) is None:
            raise SpotCheckError(f"no officer {reviewer} in the registry")
        if verdict not in VERDICTS:
            raise SpotCheckError(f"verdict must be one of {', '.join(VERDICTS)}")
        if len(note) > 500:
            raise SpotCheckError("the note is longer than 500 characters")
        check = self.db.call(lambda db: db.table(TABLE).get(Query().id == check_id))
        if check is None:
            raise SpotCheckError(f"no spot check {check_id}")
        if key not in {r["key"] for r in check["sample"]}:
            raise SpotCheckError(f"recording {key} is not in spot check {check_id}")
        when = datetime.now(UTC).isoformat(timespec="seconds")
        self.events.append(
            "spot_check_result",
            {"check": check_id, "key": key, "verdict": verdict, "note": note, "by": reviewer},
        )
        sample = [
            {**r, "verdict": verdict, "note": note, "reviewed_by": reviewer, "reviewed_at": when}
            if r["key"] == key
            else r
            for r in check["sample"]
        ]
        self.db.call(lambda db: db.table(TABLE).update({"sample": sample}, Query().id == check_id))
        return {**check, "sample": sample}

    def view(self, check_id: str, key: str, viewer: str) -> None:
        """HOOK for the security issue's approval flow: viewing a recording needs approval (004 Art. 15).
        Until ``approve_view`` is set by that flow, every view is refused (and logged)."""
        approved = self.approve_view is not None and self.approve_view(check_id, key, viewer)
        self.events.append("spot_check_view", {"check": check_id, "key": key, "by": viewer, "approved": approved})
        if not approved:
            raise ApprovalRequired("viewing a recording needs the section head's approval (004 Art. 15)")


def ledger(db: TinyDB) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in db.table(TABLE).all()), key=lambda r: r["drawn_at"])
