"""Interruptions between consecutive recordings of one assignment.

Recording must run without interruption from arrival to the end (000 Art. 13, 001 Art. 14; 003 Art. 12(5)
forbids intermittent recording at one site), and an interruption must be explained, in writing afterwards
if recording could not resume (000 Art. 14, 001 Art. 15). The station cannot tell a legitimate pause from
a forbidden one; it lists every pause longer than the profile's ``gap_threshold_s`` so an officer can
explain it.

Times are the camera's own clock, as naive wall time (the convention of ``devices.volumes``): the MP4
``creation_time`` tag holds the wall clock unshifted even though ffprobe prints it with a "Z", and a file
mtime is read as UTC and made naive. Clock drift does not matter here, since all recordings of one
assignment come from one camera and only differences are used.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devices.tools import run_tool

# ffprobe on a card-sized clip takes well under a second; a hung probe must not stall an ingest.
PROBE_TIMEOUT_S = 30.0


class ProbeError(Exception):
    """A file could not be read as a recording (missing, not media, no duration, or no ffprobe)."""


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe reports about one file."""

    duration_s: float
    creation_time: datetime | None  # naive camera wall time; None when the file has no usable tag


@dataclass(frozen=True)
class RecordingTimes:
    """When one recording ran, on the camera's clock."""

    name: str
    start: datetime
    duration_s: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)


@dataclass(frozen=True)
class Gap:
    """Nothing was recording from ``start`` (end of ``after``) to ``end`` (start of ``before``)."""

    after: str
    before: str
    start: datetime
    end: datetime
    seconds: float


def probe(path: Path) -> MediaInfo:
    """Duration and creation_time of a media file, read with ffprobe."""
    argv = [
        "ffprobe", "-v", "error", "-show_entries", "format=duration:format_tags=creation_time",
        "-of", "json", str(Path(path).absolute()),  # absolute: "x:name" would be read as a protocol
    ]  # fmt: skip
    out = run_tool(argv, f"{path}: not a readable recording", error=ProbeError, timeout=PROBE_TIMEOUT_S)
    try:
        fmt = json.loads(out).get("format", {})
        duration = float(fmt["duration"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProbeError(f"{path}: ffprobe reported no duration") from exc
    if not math.isfinite(duration) or duration < 0:
        raise ProbeError(f"{path}: ffprobe reported an impossible duration {duration}")
    return MediaInfo(duration, _parse_creation_time((fmt.get("tags") or {}).get("creation_time")))


def recording_times(path: Path, name: str | None = None, mtime: datetime | None = None) -> RecordingTimes:
    """When the recording in ``path`` ran: from its creation_time, else from its mtime minus its duration.

    Cameras stamp a file's mtime when they close it, so mtime - duration is the start. ``mtime`` overrides
    the local file's own (e.g. the camera's directory entry, when the copy did not keep the stamp).
    ``name`` defaults to the file name.
    """
    path = Path(path)
    info = probe(path)
    start = info.creation_time
    if start is None:
        if mtime is None:
            try:
                mtime = datetime.fromtimestamp(os.stat(path).st_mtime, UTC).replace(tzinfo=None)
            except OSError as exc:
                raise ProbeError(f"{path}: cannot read mtime: {exc.strerror}") from exc
        start = mtime - timedelta(seconds=info.duration_s)
    return RecordingTimes(name or path.name, start, info.duration_s)


def find_gaps(recordings: Iterable[RecordingTimes], threshold_s: float) -> list[Gap]:
    """Pauses longer than ``threshold_s`` between consecutive recordings, in time order.

    Input may be in any order. Recordings are sorted by start; a gap is measured from the latest end
    seen so far, so overlapping recordings, and a short one wholly inside a longer one, never make a
    gap (and never shorten one). ``after`` names the recording that ended last before the pause. A pause
    of exactly ``threshold_s`` is not reported.
    """
    if not math.isfinite(threshold_s) or threshold_s < 0:
        raise ValueError(f"gap threshold must be >= 0 seconds, not {threshold_s}")
    ordered = sorted(recordings, key=lambda r: (r.start, r.end, r.name))
    gaps: list[Gap] = []
    if not ordered:
        return gaps
    last = ordered[0]  # the recording that reaches furthest so far
    for rec in ordered[1:]:
        pause = (rec.start - last.end).total_seconds()
        if pause > threshold_s:
            gaps.append(Gap(last.name, rec.name, last.end, rec.start, pause))
        if rec.end > last.end:
            last = rec
    return gaps


def _parse_creation_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None  # a malformed tag is no tag: fall back to the mtime
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    # A zero MP4 timestamp (1904 or 1970) means the camera never set it.
    if moment.year <= 1970:
        return None
    return moment
