"""What every central store offers the uploader, and the write-once lock a recording asks for.

Two stores implement it: the embedded archive directory (archive.py) and S3 with Object Lock (s3.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from appliance.classification import RetentionClass, retain_until
from appliance.policy import PolicyProfile


class CentralStoreError(Exception):
    """The store refused or failed to store an object; nothing counts as uploaded."""


class StoreUnavailable(CentralStoreError):
    """The store could not be reached or answered with a server error: try again later (backoff)."""


@dataclass(frozen=True)
class Receipt:
    key: str
    size: int
    sha256: str
    etag: str = ""
    version_id: str = ""


@dataclass(frozen=True)
class Lock:
    """COMPLIANCE retention until ``retain_until``; ``legal_hold`` for classes no date can free."""

    retain_until: datetime
    legal_hold: bool


def lock_for(cls: RetentionClass, ingested: datetime, profile: PolicyProfile) -> Lock:
    """The lock a recording of class ``cls`` needs (000 Art. 22: no destruction within retention).

    A class with a fixed period is retained in COMPLIANCE mode until the period ends. A class that only a
    decision frees (evidence with its case, long-term, unclassified) gets a legal hold, which stays until
    released by the bureau, plus COMPLIANCE retention for the routine period as a floor that nobody, the
    holder of the station's keys included, can shorten.
    """
    until = retain_until(ingested, cls, profile)
    if until is not None:
        return Lock(_whole_second(until), legal_hold=False)
    floor = retain_until(ingested, "routine", profile) or ingested + timedelta(days=366)
    return Lock(_whole_second(floor), legal_hold=True)


def stronger(current: Lock | None, wanted: Lock) -> Lock:
    """The lock that keeps an object at least as long as both: retention only ever moves later, a hold
    once set stays until the bureau releases it."""
    if current is None:
        return wanted
    return Lock(max(current.retain_until, wanted.retain_until), current.legal_hold or wanted.legal_hold)


def _whole_second(moment: datetime) -> datetime:
    """S3 keeps retain-until dates to the second: round up, a retention period is a minimum."""
    up = moment.astimezone(UTC)
    return up.replace(microsecond=0) + timedelta(seconds=1 if up.microsecond else 0)


class CentralStore(Protocol):
    kind: str

    def put(self, key: str, source: Path, sha256: str, lock: Lock | None = None) -> Receipt:
        """Store ``source`` once under ``key`` and return the confirmed receipt; same bytes again is a no-op."""
        ...

    def put_bytes(self, key: str, data: bytes, lock: Lock | None = None) -> Receipt:
        """Store a small object (manifest, log segment, checkpoint) once, confirmed."""
        ...

    def confirm(self, key: str, sha256: str) -> Receipt:
        """Check the stored object; raise CentralStoreError unless it is there as expected."""
        ...

    def relock(self, key: str, lock: Lock) -> Lock:
        """Apply a longer lock to a stored object (its class changed); never shortens. The lock in force."""
        ...
