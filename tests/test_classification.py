"""Officers' tags: validation, the retention class each implies, how long each class is kept, when tags are due."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pydantic
import pytest

from appliance.classification import (
    Category,
    Classification,
    RetentionClass,
    classification_due,
    retain_until,
    retention_class,
)
from appliance.deadlines import WorkCalendar, covered_years
from appliance.policy import Period, PolicyProfile, Retention, load_profile


def tag(category: Category, case_number: str | None = None) -> Classification:
    return Classification(category=category, place="某化工厂仓库", description="安全生产检查", case_number=case_number)


@pytest.mark.parametrize(
    ("category", "case_number", "expected"),
    [
        (Category.ROUTINE_PATROL, None, "routine"),
        (Category.INSPECTION, None, "routine"),
        (Category.CASE_INVESTIGATION, None, "routine"),
        (Category.OTHER, None, "routine"),
        (Category.ROUTINE_PATROL, "应急罚〔2025〕12号", "evidence"),
        (Category.INSPECTION, "应急罚〔2025〕12号", "evidence"),
        (Category.CASE_INVESTIGATION, "应急罚〔2025〕12号", "evidence"),
        (Category.OTHER, "应急罚〔2025〕12号", "evidence"),
        # 003 Art. 21, 004 Art. 12: long-term whether or not a case exists.
        (Category.COERCIVE_MEASURE, None, "long_term"),
        (Category.DISPUTE_COMPLAINT, None, "long_term"),
        (Category.OBSTRUCTION_ASSAULT, None, "long_term"),
        (Category.MASS_INCIDENT, None, "long_term"),
        (Category.COERCIVE_MEASURE, "应急罚〔2025〕12号", "long_term"),
        (Category.MASS_INCIDENT, "应急罚〔2025〕12号", "long_term"),
    ],
)
def test_retention_class_table(category: Category, case_number: str | None, expected: str) -> None:
    assert retention_class(tag(category, case_number)) == expected


def test_untagged_is_unclassified_and_kept() -> None:
    assert retention_class(None) == "unclassified"
    ingested = datetime(2025, 3, 1, 10, tzinfo=UTC)
    for profile_id in ("000", "001", "002", "003", "004"):
        assert retain_until(ingested, "unclassified", load_profile(profile_id)) is None


def test_classification_validation() -> None:
    full = Classification(
        category="dispute_complaint",
        place=" 城东加油站 ",
        description="当事人对检查结论有异议",
        case_number="  ",
        party="",
    )
    assert full.category is Category.DISPUTE_COMPLAINT
    assert full.place == "城东加油站"
    assert full.case_number is None and full.party is None  # blank form fields mean "none"
    assert Category.MASS_INCIDENT.label_zh == "群体性事件、突发事件"
    assert all(c.label_zh for c in Category)
    with pytest.raises(pydantic.ValidationError):
        Classification(category="traffic", place="x", description="y")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Classification(category=Category.INSPECTION, place="  ", description="y")
    with pytest.raises(pydantic.ValidationError):
        Classification(category=Category.INSPECTION, place="x", description="y", officer="张三")  # type: ignore[call-arg]


def with_retention(unit: str, amount: int) -> PolicyProfile:
    base = load_profile("003")
    period = Period(amount=amount, unit=unit, cite="003 Art. 22")  # type: ignore[arg-type]
    retention = Retention(routine=period, evidence=period, long_term=period, unclassified=period)
    return base.model_copy(update={"retention": retention})


@pytest.mark.parametrize(
    ("unit", "amount", "ingested", "expected"),
    [
        ("days", 30, datetime(2025, 1, 20, 9, 15), datetime(2025, 2, 19, 9, 15)),
        ("months", 6, datetime(2025, 3, 10, 9, 15), datetime(2025, 9, 10, 9, 15)),
        # A minimum period never ends early: a missing day moves on to the 1st of the next month.
        ("months", 1, datetime(2025, 1, 31, 9, 15), datetime(2025, 3, 1, 9, 15)),
        ("months", 6, datetime(2024, 8, 31, 23, 0), datetime(2025, 3, 1, 23, 0)),
        ("months", 13, datetime(2024, 12, 31), datetime(2026, 1, 31)),
        ("years", 2, datetime(2025, 3, 10, 9, 15, tzinfo=UTC), datetime(2027, 3, 10, 9, 15, tzinfo=UTC)),
        ("years", 1, datetime(2024, 2, 29, 12), datetime(2025, 3, 1, 12)),
        ("years", 4, datetime(2024, 2, 29, 12), datetime(2028, 2, 29, 12)),
        ("with_case", 0, datetime(2025, 3, 10), None),
        ("permanent", 0, datetime(2025, 3, 10), None),
    ],
)
def test_retain_until_each_unit(unit: str, amount: int, ingested: datetime, expected: datetime | None) -> None:
    profile = with_retention(unit, amount)
    classes: list[RetentionClass] = ["routine", "evidence", "long_term", "unclassified"]
    for cls in classes:
        assert retain_until(ingested, cls, profile) == expected


@pytest.mark.parametrize(
    ("profile_id", "routine_until"),
    [
        ("000", datetime(2030, 3, 10, 9)),  # 000 Art. 18: 5 years
        ("003", datetime(2027, 3, 10, 9)),  # 003 Art. 22: 2 years
        ("004", datetime(2025, 9, 10, 9)),  # 004 Art. 11: 6 months
    ],
)
def test_retain_until_shipped_profiles(profile_id: str, routine_until: datetime) -> None:
    profile = load_profile(profile_id)
    ingested = datetime(2025, 3, 10, 9)
    assert retain_until(ingested, retention_class(tag(Category.ROUTINE_PATROL)), profile) == routine_until
    assert retain_until(ingested, retention_class(tag(Category.INSPECTION, "案号1")), profile) is None  # with case
    assert retain_until(ingested, retention_class(tag(Category.COERCIVE_MEASURE)), profile) is None  # permanent
    assert retain_until(ingested, retention_class(None), profile) is None


def test_classification_due_is_two_working_days_after_upload() -> None:
    first, last = covered_years()
    if not first <= 2025 <= last:
        pytest.skip("installed chinesecalendar does not know 2025")
    calendar = WorkCalendar()
    # Uploaded Friday 24 Jan 2025: Sun 26 Jan is worked, so due the end of Mon 27 Jan (003 Art. 17).
    due = classification_due(datetime(2025, 1, 24, 19), load_profile("003"), calendar)
    assert due == datetime.combine(date(2025, 1, 27), time.max)
    # Uploaded Monday 27 Jan, before the holiday: due the end of Thu 6 Feb.
    due = classification_due(datetime(2025, 1, 27, 9), load_profile("004"), calendar)
    assert due == datetime.combine(date(2025, 2, 6), time.max)
    assert not calendar.fallback_used
