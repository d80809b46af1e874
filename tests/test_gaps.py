"""Interruptions between recordings (000 Art. 14, 001 Art. 15, 003 Art. 12(5)): synthetic lists and real clips."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from appliance.gaps import Gap, ProbeError, RecordingTimes, find_gaps, probe, recording_times
from devices.sim.media import make_clip

T0 = datetime(2025, 6, 3, 9, 0, 0)


def rec(name: str, start_s: float, duration_s: float) -> RecordingTimes:
    return RecordingTimes(name, T0 + timedelta(seconds=start_s), duration_s)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def test_gaps_over_the_threshold_only() -> None:
    recordings = [rec("a", 0, 600), rec("b", 610, 300), rec("c", 1210, 60), rec("d", 1570, 30)]
    # a→b 10 s: a segment split, not an interruption. b→c 300 s: exactly the threshold, not reported.
    gaps = find_gaps(recordings, 299)
    assert gaps == [Gap("b", "c", at(910), at(1210), 300.0), Gap("c", "d", at(1270), at(1570), 300.0)]
    assert find_gaps(recordings, 300) == []
    assert [g.seconds for g in find_gaps(recordings, 0)] == [10.0, 300.0, 300.0]


def test_unsorted_input_is_sorted_by_start() -> None:
    recordings = [rec("c", 2000, 10), rec("a", 0, 100), rec("b", 500, 100)]
    gaps = find_gaps(recordings, 60)
    assert [(g.after, g.before, g.seconds) for g in gaps] == [("a", "b", 400.0), ("b", "c", 1400.0)]
    assert gaps[0].start == at(100) and gaps[0].end == at(500)


def test_overlapping_and_contained_recordings() -> None:
    # b overlaps a; c lies inside a's span; the pause is measured from a's end, the furthest so far.
    recordings = [rec("a", 0, 1000), rec("b", 900, 50), rec("c", 100, 10), rec("d", 1500, 10)]
    assert find_gaps(recordings, 60) == [Gap("a", "d", at(1000), at(1500), 500.0)]
    # Two cameras' worth of overlap, or a duplicate, never makes a negative gap.
    assert find_gaps([rec("a", 0, 100), rec("a2", 0, 100)], 0) == []
    assert find_gaps([rec("x", 0, 100), rec("y", 50, 100)], 0) == []


def test_empty_single_and_bad_threshold() -> None:
    assert find_gaps([], 300) == []
    assert find_gaps([rec("only", 0, 10)], 300) == []
    assert find_gaps(iter([rec("a", 0, 10), rec("b", 1000, 10)]), 300)[0].seconds == 990.0
    with pytest.raises(ValueError, match="threshold"):
        find_gaps([], -1)


def test_gap_between_real_clips(tmp_path: Path) -> None:
    need("ffmpeg", "ffprobe")
    first, second = tmp_path / "ZFY0001_0001.MP4", tmp_path / "ZFY0001_0002.MP4"
    make_clip(first, T0, 2.0, "clip 1")
    make_clip(second, T0 + timedelta(seconds=2 + 400), 1.0, "clip 2")
    # Copies lose the mtime, so the start must come from creation_time.
    os.utime(first, (0, 0))

    info = probe(first)
    assert info.creation_time == T0
    assert abs(info.duration_s - 2.0) < 0.2

    times = [recording_times(second), recording_times(first)]
    assert times[1].start == T0 and times[1].name == first.name
    gaps = find_gaps(times, 300)
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap.after, gap.before) == (first.name, second.name)
    assert gap.end == T0 + timedelta(seconds=402)
    assert abs(gap.seconds - 400) < 0.2
    assert find_gaps(times, 500) == []


def test_start_from_mtime_without_creation_time(tmp_path: Path) -> None:
    need("ffmpeg", "ffprobe")
    clip = tmp_path / "tagged.MP4"
    make_clip(clip, T0, 2.0, "clip")
    untagged = tmp_path / "untagged.MP4"
    # Strip the tag the way some cameras write files: stream copy, no metadata.
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(clip), "-c", "copy", "-map_metadata", "-1",
         "-fflags", "+bitexact", "-y", str(untagged)],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.copystat(clip, untagged)  # mtime = T0 + 2 s, as make_clip stamps it (naive wall time as UTC)
    info = probe(untagged)
    assert info.creation_time is None
    times = recording_times(untagged, name="ZFY0001_0003")
    assert times.name == "ZFY0001_0003"
    assert abs((times.start - T0).total_seconds()) < 0.2
    # An explicit mtime (the camera's directory entry) wins over the local file's.
    later = recording_times(untagged, mtime=T0 + timedelta(hours=1))
    assert abs((later.start - (T0 + timedelta(hours=1) - timedelta(seconds=info.duration_s))).total_seconds()) < 1e-6


def test_unreadable_files_raise_probe_error(tmp_path: Path) -> None:
    need("ffprobe")
    junk = tmp_path / "broken.MP4"
    junk.write_bytes(b"\x00not an mp4 at all" * 64)
    with pytest.raises(ProbeError, match=r"broken\.MP4"):
        probe(junk)
    with pytest.raises(ProbeError, match=r"missing\.MP4"):
        recording_times(tmp_path / "missing.MP4")


def test_missing_ffprobe_is_a_probe_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProbeError, match="ffprobe is not installed"):
        probe(tmp_path / "any.MP4")
