"""Officers' tags on recordings (003 Art. 17, 004 Art. 16) and the retention class they imply.

The retention class picks one of the profile's ``[retention.*]`` periods. An untagged recording is
"unclassified", never "routine": it may turn out to be evidence or long-term material, and deleting it
on the short routine period before anyone looked would be the destruction within the retention period
that 000 Art. 22 forbids. The shipped profiles keep unclassified recordings until they are tagged.
"""

from __future__ import annotations

import calendar as _months
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

from appliance.deadlines import WorkCalendar
from appliance.policy import Period, PolicyProfile

RetentionClass = Literal["routine", "evidence", "long_term", "unclassified"]

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
_Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Category(StrEnum):
    """What the recording shows; the fixed list officers choose from."""

    ROUTINE_PATROL = "routine_patrol"
    INSPECTION = "inspection"
    CASE_INVESTIGATION = "case_investigation"
    COERCIVE_MEASURE = "coercive_measure"
    DISPUTE_COMPLAINT = "dispute_complaint"
    OBSTRUCTION_ASSAULT = "obstruction_assault"
    MASS_INCIDENT = "mass_incident"
    OTHER = "other"

    @property
    def label_zh(self) -> str:
        return _LABELS_ZH[self]


_LABELS_ZH: dict[Category, str] = {
    Category.ROUTINE_PATROL: "日常巡查",
    Category.INSPECTION: "执法检查",
    Category.CASE_INVESTIGATION: "案件调查",
    Category.COERCIVE_MEASURE: "采取强制措施",
    Category.DISPUTE_COMPLAINT: "异议、投诉、上访",
    Category.OBSTRUCTION_ASSAULT: "拒绝、阻碍执法或谩骂、侮辱、殴打执法人员",
    Category.MASS_INCIDENT: "群体性事件、突发事件",
    Category.OTHER: "其他",
}

# Categories that must be kept long-term (刻录光盘或专门硬盘长期保存):
#   coercive measure      003 Art. 21(1)
#   dispute / complaint   003 Art. 21(2), 004 Art. 12(1)
#   obstruction / assault 003 Art. 21(3), 004 Art. 12(2)
#   mass / sudden incident 003 Art. 21(4), 004 Art. 12(3)
# "Other cases needing long-term keeping" (003 Art. 21(5), 004 Art. 12(4)) is a judgement, not a
# category, so OTHER is not on this list.
LONG_TERM_CATEGORIES: frozenset[Category] = frozenset(
    {Category.COERCIVE_MEASURE, Category.DISPUTE_COMPLAINT, Category.OBSTRUCTION_ASSAULT, Category.MASS_INCIDENT}
)


class Classification(BaseModel):
    """An officer's tag: category, place and main content (003 Art. 17), case and party (004 Art. 16)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Category
    place: _Text
    description: _Text
    case_number: _Short | None = None
    party: _Short | None = None

    @field_validator("case_number", "party", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # Web forms send "" for an empty field; that means "no case", not an invalid case number.
        if isinstance(value, str) and not value.strip():
            return None
        return value


def retention_class(classification: Classification | None) -> RetentionClass:
    """The retention class a tag implies; ``None`` (not yet tagged) is "unclassified"."""
    if classification is None:
        return "unclassified"
    if classification.category in LONG_TERM_CATEGORIES:
        return "long_term"
    if classification.case_number is not None:
        return "evidence"  # kept with the case file (003 Art. 20, 004 Art. 11)
    return "routine"


def retain_until(ingested: datetime, cls: RetentionClass, profile: PolicyProfile) -> datetime | None:
    """Earliest moment a recording of class ``cls`` may be deleted; None when time alone never frees it.

    Months and years are calendar months and years. The periods are minimums ("不少于"), so a date that
    does not exist in the target month (31 January + 1 month, 29 February + 1 year) moves forward to the
    1st of the next month, never back.
    """
    period: Period = getattr(profile.retention, cls)
    match period.unit:
        case "days":
            return ingested + timedelta(days=period.amount)
        case "months":
            return _add_months(ingested, period.amount)
        case "years":
            return _add_months(ingested, 12 * period.amount)
    return None  # with_case, permanent


def classification_due(uploaded_at: datetime, profile: PolicyProfile, calendar: WorkCalendar) -> datetime:
    """When the officers' tags are due: the profile's classification deadline from the upload (003 Art. 17)."""
    return calendar.deadline(uploaded_at, profile.classification_deadline)


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    if moment.day <= _months.monthrange(year, month)[1]:
        return moment.replace(year=year, month=month)
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return moment.replace(year=year, month=month, day=1)
