"""Working-day deadlines on the official Chinese calendar, adjusted working weekends (调休) included.

The rules count in 工作日 (000 Art. 15, 003 Art. 16, 003 Art. 17): a day is a working day when the State
Council's annual holiday notice makes it one, so a Saturday or Sunday worked in lieu of a holiday counts
and a weekday inside Spring Festival does not. That data comes from ``chinesecalendar``; the installed
1.11.0 knows the years 2004–2026 and raises NotImplementedError outside them. The library learns each
new year only after the notice is published (usually November), so a station that is not updated runs
out of calendar on 1 January. It must not stop then: an unknown year falls back to Monday–Friday, and
the fallback is recorded in ``WorkCalendar.warnings`` so the UI can show that those deadlines ignore
holidays. ``calendar_coverage`` warns weeks ahead, while there is still time to update.

Day boundaries are China Standard Time (UTC+8, no daylight saving since 1991): a recording uploaded at
17:00 UTC was uploaded after midnight in China, on the next calendar day. Naive datetimes are taken as
that local wall time and results stay naive; aware datetimes get aware results in UTC+8.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import cache

import chinese_calendar

from appliance.policy import Deadline

log = logging.getLogger(__name__)

CHINA_TZ = timezone(timedelta(hours=8), "CST")

# How far ahead calendar_coverage looks by default: long enough to get an update onto a station that is
# only serviced now and then, short enough not to warn all year.
COVERAGE_HORIZON_DAYS = 60


@cache
def covered_years() -> tuple[int, int]:
    """First and last year the installed chinesecalendar knows (2004, 2026 for version 1.11.0).

    Probed through the public API rather than read from the library's internal tables, so a newer
    version with more years is picked up without a code change.
    """
    known = [year for year in range(1990, 2200) if _library_knows(year)]
    if not known:  # a broken install; every date then falls back to Monday–Friday
        return (0, 0)
    return (known[0], known[-1])


def _library_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 7, 1))
    except NotImplementedError:
        return False
    return True


@dataclass(frozen=True)
class CalendarStatus:
    """Whether the official calendar covers today and the coming ``horizon_days``."""

    today: date
    horizon_days: int
    covered_from: date | None  # first day with official data; None when the library knows no year
    covered_until: date | None  # last day with official data (31 December of the last known year)
    fallback_used: bool  # some date was (or, for today, would be) counted Monday–Friday
    warnings: tuple[str, ...] = ()

    @property
    def covered(self) -> bool:
        """True when every day from today to today + horizon_days has official data."""
        if self.covered_from is None or self.covered_until is None:
            return False
        return self.covered_from <= self.today and self.today + timedelta(days=self.horizon_days) <= self.covered_until

    @property
    def days_left(self) -> int | None:
        """Days from today to the last covered day (negative once it has passed)."""
        return None if self.covered_until is None else (self.covered_until - self.today).days

    @property
    def ok(self) -> bool:
        return self.covered and not self.fallback_used

    def message(self) -> str:
        """One line for the UI and the event log."""
        if self.ok:
            return f"holiday calendar covers working days until {self.covered_until}"
        if self.covered_until is None:
            return "holiday calendar has no data: all working days are counted Monday–Friday"
        parts: list[str] = []
        if self.covered_from is not None and self.today < self.covered_from:
            parts.append(f"today ({self.today}) is before the holiday calendar starts; is the station clock right?")
        elif self.today > self.covered_until:
            parts.append(
                f"holiday calendar ended {self.covered_until}: working days are counted Monday–Friday, "
                "ignoring holidays and adjusted working weekends; update the station"
            )
        elif not self.covered:
            parts.append(
                f"holiday calendar ends {self.covered_until} ({self.days_left} days left): update the station "
                "before then, or working-day deadlines will ignore holidays"
            )
        parts.extend(self.warnings)
        return "; ".join(parts)


class WorkCalendar:
    """The official working-day calendar, with a visible Monday–Friday fallback for unknown years."""

    def __init__(self, tz: tzinfo = CHINA_TZ) -> None:
        self.tz = tz
        self.warnings: list[str] = []  # one line per year that was counted Monday–Friday
        self._fallback_years: set[int] = set()

    @property
    def fallback_used(self) -> bool:
        """True once any date has been counted Monday–Friday because its year is unknown."""
        return bool(self._fallback_years)

    def is_workday(self, d: date | datetime) -> bool:
        """Whether ``d`` (a local date, or a datetime taken to its local day) is an official working day."""
        day = self._local_day(d) if isinstance(d, datetime) else d
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            self._note_fallback(day.year)
            return day.weekday() < 5

    def end_of_working_day(self, start: datetime) -> datetime:
        """End of ``start``'s day if it is a working day, else the end of the next working day."""
        day = self._local_day(start)
        while not self.is_workday(day):
            day += timedelta(days=1)
        return self._end_of(day, start)

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """End (23:59:59.999999 local) of the n-th working day after the day of ``start``.

        The day of the event itself never counts, whatever the hour, and the period runs to the end of its
        last day. That is how Chinese law counts day periods (民法典 Art. 201: the starting day is not
        counted; Art. 203: a period ends at 24:00 of its last day), and it keeps an evening return from
        eating a day: a camera returned on Friday 24 January 2025 at 18:00, before Spring Festival, is due
        at the end of the 2nd working day after, Monday 27 January (Sunday 26 January is an adjusted
        working day), not on Monday evening because "2 × 24 working hours" ran out.

        ``n == 0`` means the same working day: the end of ``start``'s day, or of the next working day when
        ``start`` falls on a rest day (as ``end_of_working_day``).
        """
        if n < 0:
            raise ValueError(f"working days must be >= 0, not {n}")
        if n == 0:
            return self.end_of_working_day(start)
        day = self._local_day(start)
        counted = 0
        while counted < n:
            day += timedelta(days=1)
            if self.is_workday(day):
                counted += 1
        return self._end_of(day, start)

    def deadline(self, start: datetime, rule: Deadline) -> datetime:
        """When ``rule`` (a policy Deadline) runs out for an event at ``start``.

        hours: exactly ``amount`` hours later, holidays or not (003 Art. 16's 24 hours are clock hours).
        working_days: ``add_working_days``. end_of_working_day: the end of the working day the event falls
        on (004 Art. 10), moved on by ``amount`` further working days when amount > 0.
        """
        match rule.unit:
            case "hours":
                return start + timedelta(hours=rule.amount)
            case "working_days":
                return self.add_working_days(start, rule.amount)
            case "end_of_working_day":
                end = self.end_of_working_day(start)
                return self.add_working_days(end, rule.amount) if rule.amount else end
        raise ValueError(f"unknown deadline unit {rule.unit!r}")

    def status(self, today: date, horizon_days: int = COVERAGE_HORIZON_DAYS) -> CalendarStatus:
        """Coverage for today and the coming ``horizon_days``, including this calendar's fallbacks so far."""
        return calendar_coverage(today, horizon_days, calendar=self)

    def _local_day(self, moment: datetime) -> date:
        return moment.date() if moment.tzinfo is None else moment.astimezone(self.tz).date()

    def _end_of(self, day: date, like: datetime) -> datetime:
        # Naive in, naive out: mixing naive and aware datetimes would only fail later, in a comparison.
        return datetime.combine(day, time.max, tzinfo=None if like.tzinfo is None else self.tz)

    def _note_fallback(self, year: int) -> None:
        if year in self._fallback_years:
            return
        self._fallback_years.add(year)
        first, last = covered_years()
        text = (
            f"holiday calendar has no data for {year} (chinesecalendar knows {first}–{last}): working days in "
            f"{year} are counted Monday–Friday, without holidays or adjusted working weekends"
        )
        self.warnings.append(text)
        log.warning("%s", text)


def calendar_coverage(
    today: date, days: int = COVERAGE_HORIZON_DAYS, calendar: WorkCalendar | None = None
) -> CalendarStatus:
    """Whether the official calendar covers ``today`` through ``today + days``.

    Run daily: in late autumn, when next year's data is missing, ``covered`` turns False while there
    is still time to update, long before any deadline is actually computed on the fallback. Pass the
    station's ``calendar`` to include the fallbacks it has already used.
    """
    if days < 0:
        raise ValueError(f"days must be >= 0, not {days}")
    first, last = covered_years()
    if last == 0:
        covered_from = covered_until = None
        uncovered_today = True
    else:
        covered_from, covered_until = date(first, 1, 1), date(last, 12, 31)
        uncovered_today = not covered_from <= today <= covered_until
    warnings = tuple(calendar.warnings) if calendar is not None else ()
    used = uncovered_today or (calendar is not None and calendar.fallback_used)
    return CalendarStatus(today, days, covered_from, covered_until, used, warnings)
