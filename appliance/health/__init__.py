"""Station health checks. Each check lives in its own module and returns a HealthResult; this module only
defines the result and its status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class HealthStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"

    @property
    def severity(self) -> int:
        """0 ok, 1 warn, 2 fail: for picking the worst of several results."""
        return {"ok": 0, "warn": 1, "fail": 2}[self.value]


@dataclass(frozen=True)
class HealthResult:
    """One check's verdict. ``message`` is for staff (English, technical). ``details`` is JSON-serialisable
    with string keys only, so it can go into the canonical-JSON event log as is."""

    check: str
    status: HealthStatus
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status.value, "message": self.message, "details": self.details}
