"""Battery health from what the station measures at every dock: the camera's battery level when it is
identified, the bay's charge current from the dock board on every poll, and the moment the board reports it
full.

A charge from ``start_pct`` to full that took ``Q`` mAh (current integrated over time) puts the battery's
capacity at ``Q / ((100 - start_pct) / 100)``. One estimate per charge gives a capacity history per camera;
a Theil-Sen line through it (the median of pairwise slopes: a few odd charges, a battery topped up twice
in an hour, do not bend it) gives the trend. A camera is weak when the trend today is below
``battery_weak_fraction`` of the trend at its first charge (a battery replacement starts a new history).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tinydb import Query, TinyDB

TABLE = "battery_readings"
MIN_POINTS = 4  # fewer charges than this give no trend


@dataclass
class _Session:
    camera: str
    start_pct: int
    started: float  # monotonic
    started_wall: str
    last: float
    charge_mah: float = 0.0
    peak_ma: float = 0.0


class BatteryMonitor:
    """Follows one charge per bay (BayService observations); ``record`` gets each finished charge."""

    def __init__(
        self,
        record: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.record = record
        self.clock = clock
        self.wall = wall
        self._sessions: dict[int, _Session] = {}
        self._lock = threading.Lock()

    def observe(self, what: str, bay: int, data: dict[str, Any]) -> None:
        if what == "identify":
            now = self.clock()
            with self._lock:
                self._sessions[bay] = _Session(data["camera"], int(data["battery_pct"]), now, _iso(self.wall()), now)
        elif what == "undock":
            with self._lock:
                self._sessions.pop(bay, None)  # taken out before full: no complete charge to learn from
        elif what == "charge":
            self._charge(bay, data)

    def _charge(self, bay: int, data: dict[str, Any]) -> None:
        now = self.clock()
        with self._lock:
            session = self._sessions.get(bay)
            if session is None or data.get("current_ma") is None:
                return
            current = float(data["current_ma"])
            session.charge_mah += current * (now - session.last) / 3600  # the current held since last poll
            session.last = now
            session.peak_ma = max(session.peak_ma, current)
            if data.get("state") != "full":
                return
            del self._sessions[bay]
        span = 100 - session.start_pct
        self.record(
            {
                "camera": session.camera,
                "bay": bay,
                "started_at": session.started_wall,
                "at": _iso(self.wall()),
                "start_pct": session.start_pct,
                "minutes_to_full": round((now - session.started) / 60, 2),
                "charge_mah": round(session.charge_mah, 3),
                "peak_ma": session.peak_ma,
                "capacity_mah": round(session.charge_mah * 100 / span, 3) if span > 0 else None,
            }
        )


# -- the estimate
def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Slope and intercept of the Theil-Sen line (robust to up to ~29 % outliers)."""
    pairs = ((i, j) for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i])
    slopes = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i, j in pairs]
    slope = statistics.median(slopes) if slopes else 0.0
    intercept = statistics.median(y - slope * x for x, y in zip(xs, ys, strict=True))
    return slope, intercept


def readings(db: TinyDB, camera: str) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in db.table(TABLE).search(Query().camera == camera)), key=lambda r: r["at"])


def estimate(rows: Sequence[dict[str, Any]], weak_fraction: float, min_span_pct: int) -> dict[str, Any]:
    """Capacity trend of one camera from its charge readings (oldest first), since its last new battery."""
    usable = [r for r in rows if r.get("capacity_mah") and 100 - r["start_pct"] >= min_span_pct]
    points = [(datetime.fromisoformat(r["at"]), float(r["capacity_mah"])) for r in usable]
    result: dict[str, Any] = {
        "points": [{"at": _iso(t), "capacity_mah": c} for t, c in points],
        "samples": len(points),
        "weak_fraction": weak_fraction,
        "trend": None,
        "weak": False,
    }
    if len(points) < MIN_POINTS:
        return result
    first = points[0][0]
    days = [(t - first).total_seconds() / 86400 for t, _ in points]
    slope, intercept = theil_sen(days, [c for _, c in points])
    reference = intercept  # the trend at the first charge
    current = intercept + slope * days[-1]
    health = current / reference if reference > 0 else 0.0
    result["trend"] = {
        "slope_mah_per_day": round(slope, 4),
        "reference_mah": round(reference, 3),
        "current_mah": round(current, 3),
        "health": round(health, 4),
        "fade_pct_per_year": round(-slope * 365 / reference * 100, 2) if reference > 0 else None,
        "span_days": round(days[-1], 2),
    }
    result["weak"] = health < weak_fraction
    return result


def since_last_battery(rows: Sequence[dict[str, Any]], replaced_at: Sequence[str]) -> list[dict[str, Any]]:
    """Only the readings after the latest battery replacement: a new battery starts a new history."""
    if not replaced_at:
        return list(rows)
    latest = max(datetime.fromisoformat(t) for t in replaced_at)
    return [r for r in rows if datetime.fromisoformat(r["at"]) > latest]


def chart_svg(trend: dict[str, Any], width: int = 640, height: int = 240) -> str:
    """The capacity history and its trend line as inline SVG (no script, no network: a station is offline).
    Text is numbers only; the page around it carries the translated labels."""
    points = trend["points"]
    pad_l, pad_r, pad_t, pad_b = 56, 12, 12, 28
    if not points:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart"></svg>'
    times = [datetime.fromisoformat(p["at"]).timestamp() for p in points]
    caps = [p["capacity_mah"] for p in points]
    t0, t1 = min(times), max(times)
    span_t = (t1 - t0) or 1.0
    lo, hi = 0.0, max(caps) * 1.1
    if trend["trend"]:
        hi = max(hi, trend["trend"]["reference_mah"] * 1.1)

    def x(t: float) -> float:
        return pad_l + (t - t0) / span_t * (width - pad_l - pad_r)

    def y(c: float) -> float:
        return height - pad_b - (c - lo) / (hi - lo) * (height - pad_t - pad_b)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' class="chart" role="img">',
        f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" class="axis"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" class="axis"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        value = lo + frac * (hi - lo) / 1.1
        parts.append(f'<text x="{pad_l - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.0f}</text>')
    parts.append(
        f'<text x="{pad_l}" y="{height - 8}">{points[0]["at"][:10]}</text>'
        f'<text x="{width - pad_r}" y="{height - 8}" text-anchor="end">{points[-1]["at"][:10]}</text>'
    )
    parts += [
        f'<circle cx="{x(t):.1f}" cy="{y(c):.1f}" r="3" class="point"/>' for t, c in zip(times, caps, strict=True)
    ]
    if trend["trend"]:
        slope_per_s = trend["trend"]["slope_mah_per_day"] / 86400
        ref = trend["trend"]["reference_mah"]
        parts.append(
            f'<line x1="{x(t0):.1f}" y1="{y(ref):.1f}" x2="{x(t1):.1f}" y2="{y(ref + slope_per_s * span_t):.1f}"'
            ' class="trend"/>'
        )
        weak = ref * trend["weak_fraction"]
        parts.append(f'<line x1="{pad_l}" y1="{y(weak):.1f}" x2="{width - pad_r}" y2="{y(weak):.1f}" class="limit"/>')
    parts.append("</svg>")
    return "".join(parts)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")
