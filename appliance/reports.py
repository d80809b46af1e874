"""The monthly device-use and management report (004 Art. 23: 定期通报执法记录设备的使用、管理情况).

One calendar month in the station's time zone: check-outs per camera and officer, gate refusals by reason,
faults and repair times, uploads within the policy's deadline, maintenance done and overdue. Built from the
StateDB tables and the event log (refusals are only there); CSV (one row per figure) and bar charts as SVG
for the page and the PDF (appliance/report_pdf.py).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from datetime import UTC, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from tinydb import TinyDB

from appliance import faults, maintenance
from appliance.checkout import ASSIGNMENTS
from appliance.deadlines import WorkCalendar
from appliance.eventlog import EventLog
from appliance.offload import RECORDINGS
from appliance.policy import Deadline, PolicyProfile

CSV_COLUMNS = ("section", "item", "value")


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    if not (2000 <= year <= 2100 and 1 <= month <= 12):
        raise ValueError("a month from 2000-01 to 2100-12")
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def gate_refusals(events: EventLog, start: datetime, end: datetime) -> Counter[str]:
    """Refused check-outs by the gate message that refused them: only the event log has them. Reads the
    whole log: a worker thread, and not the StateDB's."""
    return Counter(
        e.body.get("failed", "unknown")
        for e in events.entries()
        if e.type == "checkout_refused" and start <= datetime.fromisoformat(e.wall) < end
    )


def monthly_report(
    db: TinyDB,
    refusals: Counter[str],
    policy: PolicyProfile,
    calendar: WorkCalendar,
    year: int,
    month: int,
    due_soon_days: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """From StateDB.call; ``refusals`` from gate_refusals over the same month."""
    tz = calendar.tz
    start, end = month_bounds(year, month, tz)  # type: ignore[arg-type]
    now = now or datetime.now(UTC)

    def inside(iso: str | None) -> bool:
        return iso is not None and start <= datetime.fromisoformat(iso) < end

    # Check-outs: assignments issued in the month (cancelled ones were never taken).
    issued = [a for a in db.table(ASSIGNMENTS).all() if inside(a["issued_at"]) and a["status"] != "cancelled"]
    per_camera = Counter(a["camera"] for a in issued)
    per_officer: Counter[str] = Counter()
    names: dict[str, str] = {}
    for a in issued:
        for o in a["officers"]:
            per_officer[o["police_no"]] += 1
            names[o["police_no"]] = o["name"]

    all_faults = faults.all_faults(db)
    opened = [f for f in all_faults if inside(f["opened_at"])]
    repaired = [f for f in all_faults if f["status"] == "closed" and inside(f["closed_at"])]
    hours = [
        (datetime.fromisoformat(f["closed_at"]) - datetime.fromisoformat(f["opened_at"])).total_seconds() / 3600
        for f in repaired
    ]
    still_open = [
        f
        for f in all_faults
        if datetime.fromisoformat(f["opened_at"]) < end
        and (f["status"] == "open" or datetime.fromisoformat(f["closed_at"]) >= end)
    ]

    uploads = _uploads(db, policy, calendar, start, end, now)
    classification = _classification(db, policy, calendar, start, end, now)

    done = [r for r in maintenance.effective(db) if inside(r["performed_at"])]
    schedule = maintenance.schedule(db, policy, min(end, now), due_soon_days)
    return {
        "period": {"year": year, "month": month, "start": start.isoformat(), "end": end.isoformat()},
        "policy": policy.id,
        "generated_at": now.isoformat(timespec="seconds"),
        "checkouts": {
            "total": len(issued),
            "per_camera": dict(sorted(per_camera.items())),
            "per_officer": {p: {"name": names[p], "count": n} for p, n in sorted(per_officer.items())},
        },
        "refusals": {"total": sum(refusals.values()), "by_reason": dict(refusals.most_common())},
        "faults": {
            "opened": len(opened),
            "by_reason": dict(Counter(f["reason"] for f in opened).most_common()),
            "by_source": dict(Counter(f["source"] for f in opened).most_common()),
            "repaired": len(repaired),
            "repair_hours": {
                "mean": round(statistics.fmean(hours), 1) if hours else None,
                "median": round(statistics.median(hours), 1) if hours else None,
                "max": round(max(hours), 1) if hours else None,
            },
            "open_at_end": len(still_open),
        },
        "uploads": uploads,
        "classification": classification,
        "maintenance": {
            "done": len(done),
            "by_kind": dict(Counter(r["kind"] for r in done).most_common()),
            "overdue": [r["camera"] for r in schedule if r["state"] == "overdue"],
            "due": [r["camera"] for r in schedule if r["state"] == "due"],
        },
    }


def _uploads(
    db: TinyDB, policy: PolicyProfile, calendar: WorkCalendar, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """Recordings whose upload deadline fell in the month: uploaded by then, late, or still missing. The
    deadline runs from the ingest (the station cannot know earlier that a recording exists)."""
    rows = db.table(RECORDINGS).all()
    return _deadline_tally(rows, "ingested_at", "uploaded_at", policy.upload_deadline, calendar, start, end, now)


def _classification(
    db: TinyDB, policy: PolicyProfile, calendar: WorkCalendar, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """Recordings whose classification deadline fell in the month (003 Art. 17: counted from the upload to
    the central store), by their first tag: classified by then, late, or still unclassified. A re-tag
    never moves the first time; a recording not uploaded yet has no deadline running."""
    rows = db.table(RECORDINGS).all()
    deadline = policy.classification_deadline
    return _deadline_tally(rows, "uploaded_at", "first_classified_at", deadline, calendar, start, end, now)


def _deadline_tally(
    rows: list[dict[str, Any]],
    since: str,
    done: str,
    rule: Deadline,
    calendar: WorkCalendar,
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, Any]:
    """Rows whose deadline (``rule`` counted from their ``since`` time; none while that is unset) fell in
    [start, end): done by then, late, missed, or still pending."""
    counts = Counter()
    for rec in rows:
        if not rec.get(since):
            continue
        deadline = calendar.deadline(datetime.fromisoformat(rec[since]), rule)
        if not start <= deadline < end:
            continue
        finished = rec.get(done)
        if finished:
            counts["within" if datetime.fromisoformat(finished) <= deadline else "late"] += 1
        else:
            counts["missed" if deadline < now else "pending"] += 1
    due = sum(counts.values())
    return {
        "due": due,
        **{k: counts[k] for k in ("within", "late", "missed", "pending")},
        "within_pct": round(100 * counts["within"] / due, 1) if due else None,
        "deadline": rule.model_dump(),
    }


def report_csv(report: dict[str, Any]) -> str:
    """One row per figure: section, item, value (UTF-8 with BOM so spreadsheets read the Chinese)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    period = report["period"]
    writer.writerow(("period", "month", f"{period['year']}-{period['month']:02d}"))
    writer.writerow(("period", "policy", report["policy"]))
    writer.writerow(("checkouts", "total", report["checkouts"]["total"]))
    for camera, n in report["checkouts"]["per_camera"].items():
        writer.writerow(("checkouts_per_camera", camera, n))
    for police_no, row in report["checkouts"]["per_officer"].items():
        writer.writerow(("checkouts_per_officer", f"{police_no} {row['name']}", row["count"]))
    writer.writerow(("refusals", "total", report["refusals"]["total"]))
    for reason, n in report["refusals"]["by_reason"].items():
        writer.writerow(("refusals_by_reason", reason, n))
    f = report["faults"]
    for key in ("opened", "repaired", "open_at_end"):
        writer.writerow(("faults", key, f[key]))
    for key, value in f["repair_hours"].items():
        writer.writerow(("faults", f"repair_hours_{key}", "" if value is None else value))
    for reason, n in f["by_reason"].items():
        writer.writerow(("faults_by_reason", reason, n))
    for source, n in f["by_source"].items():
        writer.writerow(("faults_by_source", source, n))
    u = report["uploads"]
    for key in ("due", "within", "late", "missed", "pending", "within_pct"):
        writer.writerow(("uploads", key, "" if u[key] is None else u[key]))
    c = report["classification"]
    for key in ("due", "within", "late", "missed", "pending", "within_pct"):
        writer.writerow(("classification", key, "" if c[key] is None else c[key]))
    m = report["maintenance"]
    writer.writerow(("maintenance", "done", m["done"]))
    for kind, n in m["by_kind"].items():
        writer.writerow(("maintenance_by_kind", kind, n))
    for camera in m["overdue"]:
        writer.writerow(("maintenance_overdue", camera, 1))
    return "\ufeff" + out.getvalue()


def bar_chart_svg(items: dict[str, int | float], labels: dict[str, str] | None = None, width: int = 560) -> str:
    """Horizontal bars as inline SVG, for the page and the PDF alike (no script). ``labels`` translate keys."""
    labels = labels or {}
    row, label_w = 26, 200
    if not items:
        return ""
    top = max(items.values()) or 1
    height = row * len(items) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="bars" role="img">']
    for i, (key, value) in enumerate(items.items()):
        y = 4 + i * row
        bar = (width - label_w - 60) * value / top
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(labels.get(key, key))}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{bar:.1f}" height="{row - 8}" class="bar" fill="#2f74c0"/>'
            f'<text x="{label_w + bar + 6:.1f}" y="{y + 17}">{value:g}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
