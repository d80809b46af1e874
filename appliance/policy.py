"""Policy profiles: what differs by jurisdiction, each value with the article it comes from.

A profile is a TOML file (``appliance/policies/<id>.toml`` ships one per regulation). Every setting is a
table holding its value and ``cite`` (``"003 Art. 16"``); where a rule demands a check but sets no
number (battery "sufficient", 000 Art. 12), the profile's number is a local choice and its ``note`` says so.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# "003 Art. 16", "004 Art. 21(4)", "000 Art. 15, 001 Art. 17"
CITATION = r"^\d{3} Art\. \d+(\(\d+\))?(, \d{3} Art\. \d+(\(\d+\))?)*$"

Citation = Annotated[str, Field(pattern=CITATION)]


class PolicyError(Exception):
    """A profile is missing or invalid; the message names the file, key and reason."""


class _Cited(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cite: Citation
    note: str = ""


class Deadline(_Cited):
    """A time limit counted from an event (return of the camera, upload ...)."""

    amount: Annotated[int, Field(ge=0)]
    unit: Literal["hours", "working_days", "end_of_working_day"]


class Period(_Cited):
    """A retention or keep period."""

    amount: Annotated[int, Field(ge=0)]
    unit: Literal["days", "months", "years", "with_case", "permanent"]

    def approx_timedelta(self) -> timedelta | None:
        """Lower-bound duration; None for with_case/permanent, which never expire by time alone."""
        match self.unit:
            case "days":
                return timedelta(days=self.amount)
            case "months":
                return timedelta(days=30 * self.amount)
            case "years":
                return timedelta(days=365 * self.amount + self.amount // 4)
        return None


class Number(_Cited):
    value: Annotated[float, Field(ge=0)]


class Count(_Cited):
    value: Annotated[int, Field(ge=1)]


class Flag(_Cited):
    value: bool


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    routine: Period
    evidence: Period
    long_term: Period
    unclassified: Period


class Checkout(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_battery_pct: Number
    min_free_gib: Number
    min_free_hours: Number
    max_clock_drift_s: Number
    return_within_hours: Number


class Integrity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sm3: Flag
    free_camera_after: Literal["local_verify", "central_confirm"]
    free_camera_after_cite: Citation


class MaintenanceInterval(_Cited):
    """Days between routine maintenance of a camera; ``by_model`` overrides it per camera model."""

    value: Annotated[int, Field(ge=1, le=3650)]
    by_model: dict[str, Annotated[int, Field(ge=1, le=3650)]] = {}

    def days_for(self, model: str | None) -> int:
        return self.by_model.get(model or "", self.value)


class Maintenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    interval_days: MaintenanceInterval


class PolicyProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    title: str
    issuer: str
    source: str  # file name of the original text in shared/regulations
    upload_deadline: Deadline
    upload_deadline_special: Deadline | None = None
    classification_deadline: Deadline
    retention: Retention
    local_keep: Period
    checkout: Checkout
    officers_per_camera: Count
    allow_single_officer: Flag
    gap_threshold_s: Number
    integrity: Integrity
    maintenance: Maintenance


def available_profiles() -> list[str]:
    """Ids of the profiles shipped with the station."""
    folder = resources.files("appliance") / "policies"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(profile: str, profile_file: Path | None = None) -> PolicyProfile:
    """Load a shipped profile by id, or a site's own profile file when one is given."""
    if profile_file is not None:
        source = str(profile_file)
        try:
            text = Path(profile_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{profile_file}: cannot read policy profile: {exc.strerror}") from None
    else:
        res = resources.files("appliance") / "policies" / f"{profile}.toml"
        source = f"policy profile {profile!r}"
        if not res.is_file():
            raise PolicyError(f"{source}: no such profile (shipped: {', '.join(available_profiles())})")
        text = res.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    try:
        return PolicyProfile.model_validate(data)
    except ValidationError as exc:
        reasons = [
            f"{source}: {'.'.join(str(p) for p in e['loc'])}: "
            f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        ]
        raise PolicyError("invalid policy profile:\n  " + "\n  ".join(reasons)) from None
