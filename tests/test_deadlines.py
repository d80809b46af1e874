"""Working-day deadlines on the real official calendar: Spring Festival, adjusted working weekends, fallback."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import chinese_calendar
import pytest

from appliance.deadlines import CHINA_TZ, WorkCalendar, calendar_coverage, covered_years
from appliance.policy import Deadline

# Dates as the installed chinesecalendar states them (checked before asserting anything built on them).
# 2024 Spring Festival: 10–17 Feb off; Sun 4 Feb and Sun 18 Feb worked.
# 2025 Spring Festival: 28 Jan–4 Feb off; Sun 26 Jan and Sat 8 Feb worked.
# 2026 Spring Festival: 15–23 Feb off; Sat 14 Feb and Sat 28 Feb worked.
HOLIDAYS = {
    2024: (date(2024, 2, 10), date(2024, 2, 17)),
    2025: (date(2025, 1, 28), date(2025, 2, 4)),
    2026: (date(2026, 2, 15), date(2026, 2, 23)),
}
ADJUSTED_WORKDAYS = [date(2024, 2, 4), date(2024, 2, 18), date(2025, 1, 26), date(2025, 2, 8), date(2026, 2, 14)]


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max)


def rule(amount: int, unit: str) -> Deadline:
    return Deadline(amount=amount, unit=unit, cite="003 Art. 16")  # type: ignore[arg-type]


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar()


def need_year(year: int) -> None:
    first, last = covered_years()
    if not first <= year <= last:
        pytest.skip(f"installed chinesecalendar does not know {year}")


@pytest.mark.parametrize("year", sorted(HOLIDAYS))
def test_library_agrees_with_the_dates_used_here(year: int, cal: WorkCalendar) -> None:
    need_year(year)
    first, last = HOLIDAYS[year]
    day = first
    while day <= last:
        assert chinese_calendar.is_holiday(day), day
        assert not cal.is_workday(day)
        day += timedelta(days=1)
    for day in (d for d in ADJUSTED_WORKDAYS if d.year == year):
        assert day.weekday() >= 5
        assert chinese_calendar.get_holiday_detail(day) == (False, "Spring Festival")
        assert cal.is_workday(day)
        assert cal.is_workday(datetime.combine(day, time(12)))
    assert not cal.fallback_used


def test_working_days_across_spring_festival_2025(cal: WorkCalendar) -> None:
    need_year(2025)
    friday_evening = datetime(2025, 1, 24, 18, 30)  # last Friday before the holiday
    # Sun 26 Jan is an adjusted working day, so the 1st working day after Friday is a Sunday.
    assert cal.add_working_days(friday_evening, 1) == end_of(date(2025, 1, 26))
    assert cal.add_working_days(friday_evening, 2) == end_of(date(2025, 1, 27))
    # Then 28 Jan–4 Feb is off: the 3rd working day is Wed 5 Feb.
    assert cal.add_working_days(friday_evening, 3) == end_of(date(2025, 2, 5))
    # Sat 8 Feb is worked: 5th working day after Wed 5 Feb (6, 7, 8, 10, 11) is Tue 11 Feb.
    assert cal.add_working_days(datetime(2025, 2, 5, 9), 3) == end_of(date(2025, 2, 8))
    assert cal.add_working_days(datetime(2025, 2, 5, 9), 5) == end_of(date(2025, 2, 11))
    # The hour of the event never matters: the day of the event is not counted.
    assert cal.add_working_days(datetime(2025, 1, 24, 0, 0), 2) == cal.add_working_days(friday_evening, 2)
    assert not cal.fallback_used


def test_working_days_from_inside_the_holiday(cal: WorkCalendar) -> None:
    need_year(2025)
    assert cal.add_working_days(datetime(2025, 1, 30, 10), 1) == end_of(date(2025, 2, 5))
    assert cal.add_working_days(datetime(2025, 2, 4, 23, 59), 2) == end_of(date(2025, 2, 6))


def test_working_days_across_spring_festival_2024_and_2026(cal: WorkCalendar) -> None:
    need_year(2024)
    # Fri 9 Feb 2024 (除夕 eve, a working day) + 2: Sun 18 Feb (worked), Mon 19 Feb.
    assert cal.add_working_days(datetime(2024, 2, 9, 17), 1) == end_of(date(2024, 2, 18))
    assert cal.add_working_days(datetime(2024, 2, 9, 17), 2) == end_of(date(2024, 2, 19))
    need_year(2026)
    # Fri 13 Feb 2026 + 1: Sat 14 Feb (worked); + 2: Tue 24 Feb, after the nine days off.
    assert cal.add_working_days(datetime(2026, 2, 13, 20), 1) == end_of(date(2026, 2, 14))
    assert cal.add_working_days(datetime(2026, 2, 13, 20), 2) == end_of(date(2026, 2, 24))


def test_zero_and_negative_working_days(cal: WorkCalendar) -> None:
    need_year(2025)
    assert cal.add_working_days(datetime(2025, 3, 4, 8), 0) == end_of(date(2025, 3, 4))
    assert cal.add_working_days(datetime(2025, 1, 29, 8), 0) == end_of(date(2025, 2, 5))
    with pytest.raises(ValueError, match=">= 0"):
        cal.add_working_days(datetime(2025, 3, 4), -1)


def test_end_of_working_day(cal: WorkCalendar) -> None:
    need_year(2025)
    # Saturday 8 Feb 2025 is an adjusted working day: due the same evening.
    assert cal.end_of_working_day(datetime(2025, 2, 8, 10)) == end_of(date(2025, 2, 8))
    # An ordinary Saturday rolls to Monday; a holiday rolls past the holiday.
    assert cal.end_of_working_day(datetime(2025, 2, 15, 10)) == end_of(date(2025, 2, 17))
    assert cal.end_of_working_day(datetime(2025, 1, 28, 10)) == end_of(date(2025, 2, 5))
    assert cal.end_of_working_day(datetime(2025, 1, 24, 23, 59, 59)) == end_of(date(2025, 1, 24))
    need_year(2026)
    assert cal.end_of_working_day(datetime(2026, 2, 14, 7)) == end_of(date(2026, 2, 14))


def test_deadline_units(cal: WorkCalendar) -> None:
    need_year(2025)
    returned = datetime(2025, 1, 27, 16, 45, 12)  # Monday, the day before the holiday
    # 24 h is clock time, holiday or not (003 Art. 16).
    assert cal.deadline(returned, rule(24, "hours")) == datetime(2025, 1, 28, 16, 45, 12)
    assert cal.deadline(returned, rule(3, "working_days")) == end_of(date(2025, 2, 7))
    assert cal.deadline(returned, rule(0, "end_of_working_day")) == end_of(date(2025, 1, 27))
    assert cal.deadline(datetime(2025, 2, 1, 9), rule(0, "end_of_working_day")) == end_of(date(2025, 2, 5))
    assert cal.deadline(returned, rule(1, "end_of_working_day")) == end_of(date(2025, 2, 5))


def test_aware_times_count_china_days(cal: WorkCalendar) -> None:
    need_year(2025)
    # 16:30 UTC on Sun 26 Jan is 00:30 on Mon 27 Jan in China: the day of the event is the Monday.
    uploaded = datetime(2025, 1, 26, 16, 30, tzinfo=UTC)
    due = cal.add_working_days(uploaded, 1)
    assert due == datetime.combine(date(2025, 2, 5), time.max, tzinfo=CHINA_TZ)
    assert due.utcoffset() == timedelta(hours=8)
    assert cal.deadline(uploaded, rule(24, "hours")) == uploaded + timedelta(hours=24)
    assert cal.end_of_working_day(datetime(2025, 2, 7, 20, tzinfo=UTC)).date() == date(2025, 2, 8)  # Sat, worked


def test_unknown_year_falls_back_to_monday_to_friday_and_says_so(cal: WorkCalendar) -> None:
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2100, 1, 1))
    assert not cal.fallback_used
    # 1 Jan 2100 is a Friday: Monday–Friday counting, no New Year holiday known.
    assert cal.is_workday(date(2100, 1, 1))
    assert not cal.is_workday(date(2100, 1, 2))
    assert cal.add_working_days(datetime(2100, 1, 1, 18), 2) == end_of(date(2100, 1, 5))
    assert cal.end_of_working_day(datetime(2100, 1, 2, 9)) == end_of(date(2100, 1, 4))
    assert cal.fallback_used
    assert len(cal.warnings) == 1  # one line per year, however many dates were counted
    assert "2100" in cal.warnings[0] and "Monday–Friday" in cal.warnings[0]
    status = cal.status(date(2100, 1, 1))
    assert status.fallback_used and not status.ok and not status.covered
    assert "2100" in status.message()


def test_deadline_running_into_an_unknown_year_is_reported(cal: WorkCalendar) -> None:
    _, last = covered_years()
    due = cal.add_working_days(datetime(last, 12, 30, 12), 5)
    assert due.year == last + 1
    assert cal.fallback_used
    assert str(last + 1) in cal.warnings[0]


def test_coverage_warns_before_the_calendar_runs_out() -> None:
    first, last = covered_years()
    assert first <= 2004 and last >= 2026  # the installed 1.11.0 knows 2004–2026; newer may know more
    midyear = calendar_coverage(date(last, 6, 1))
    assert midyear.covered and midyear.ok and not midyear.fallback_used
    assert midyear.covered_until == date(last, 12, 31)

    # Early November: under 60 days left, nothing has fallen back yet, but the station warns now.
    autumn = calendar_coverage(date(last, 11, 15))
    assert not autumn.covered and not autumn.fallback_used
    assert autumn.days_left == 46
    assert f"{last}-12-31" in autumn.message() and "update" in autumn.message()

    december = calendar_coverage(date(last, 12, 20), days=30)
    assert not december.covered and not december.ok and december.days_left == 11
    assert calendar_coverage(date(last, 12, 20), days=11).covered

    after = calendar_coverage(date(last + 1, 1, 2))
    assert after.fallback_used and not after.covered and after.days_left == -2
    assert "Monday–Friday" in after.message()


def test_coverage_with_a_clock_set_back() -> None:
    first, _ = covered_years()
    status = calendar_coverage(date(first - 1, 6, 1))
    assert not status.ok and status.fallback_used
    assert "clock" in status.message()
