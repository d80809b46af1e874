"""Simulated camera storage: real images with real clips, read back through the station's own reader."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.sim import media
from devices.volumes import VolumeError, open_volume

FS_TYPES = ["vfat", "exfat"]
TOOLS = {
    "vfat": ["mkfs.vfat", "mdir", "mmd", "mcopy", "mdel", "blkid"],
    "exfat": ["mkfs.exfat", "mount.exfat-fuse", "losetup", "blkid"],
}
# How the modification time comes back, both rounded down: FAT stores 2-second steps (mtools truncates);
# exFAT has a 10 ms field, but exfat-fuse fills it from whole seconds only, so 1 s.
MTIME_STEP = {"vfat": 2, "exfat": 1}

# Start times with fractions and odd seconds, so rounding shows; the last clip crosses midnight.
CLIPS = [
    ("DCIM/20260305/ZFY0001_20260305142210_0001.MP4", datetime(2026, 3, 5, 14, 22, 10, 700_000), 3.0),
    ("DCIM/20260305/ZFY0001_20260305142218_0002.MP4", datetime(2026, 3, 5, 14, 22, 18, 200_000), 2.5),
    ("DCIM/20260306/ZFY0001_20260306000001_0003.MP4", datetime(2026, 3, 6, 0, 0, 1), 2.0),
]


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def assert_released(image: Path) -> None:
    """No loop device on the image, no mount left under the test's folder, no scratch folder left over.

    Scoped to this test's own paths because other test runs may mount images at the same time."""
    attached = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, check=True)
    assert attached.stdout == ""
    mountpoints = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert not [m for m in mountpoints if m.startswith(f"{image.parent}/")]
    assert list((image.parent / "scratch").iterdir()) == []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_back(image: Path, mnt: Path) -> dict[str, tuple[datetime | None, str]]:
    """Every file on the image: path -> (modified, sha256), through the station's reader."""
    with open_volume(image, "userspace", mnt) as volume:
        result = {}
        for entry in volume.entries():
            with volume.open(entry.path) as fh:
                result[entry.path] = (entry.modified, sha256(fh.read()))
    return result


def as_stored(mtime_ns: int, fs_type: str) -> datetime:
    """The wall time a filesystem keeps for a local mtime (naive wall time <-> Unix time as UTC)."""
    step = MTIME_STEP[fs_type]
    seconds = mtime_ns // 1_000_000_000 // step * step
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:format_tags=creation_time:stream=codec_name",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("clips")
    made = []
    for camera_path, started, seconds in CLIPS:
        local = folder / Path(camera_path).name
        media.make_clip(local, started, seconds, label=f"clip {Path(camera_path).stem} 100%")
        made.append((camera_path, local))
    return made


@pytest.fixture(params=FS_TYPES)
def fs_type(request: pytest.FixtureRequest) -> str:
    need(*TOOLS[request.param])
    return request.param


@pytest.fixture
def image(tmp_path: Path, fs_type: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    # media's temporary folders (exFAT mount points, clips) go here, where assert_released looks.
    (tmp_path / "scratch").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    path = tmp_path / f"{fs_type}.img"
    media.create_image(path, fs_type, 64)  # type: ignore[arg-type]
    return path


def test_make_clip_is_a_stamped_playable_mp4(clips: list[tuple[str, Path]]) -> None:
    need("ffprobe")
    for (_, started, seconds), (_, local) in zip(CLIPS, clips, strict=True):
        info = probe(local)
        assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
        assert abs(float(info["format"]["duration"]) - seconds) < 0.5
        assert info["format"]["tags"]["creation_time"].startswith(started.strftime("%Y-%m-%dT%H:%M:%S"))
        closed = started + timedelta(seconds=seconds)
        assert local.stat().st_mtime_ns == (closed - datetime(1970, 1, 1)) // timedelta(microseconds=1) * 1000


def test_add_files_round_trip(image: Path, fs_type: str, clips: list[tuple[str, Path]], tmp_path: Path) -> None:
    media.add_files(image, clips)
    assert_released(image)

    found = read_back(image, tmp_path / "mnt")
    assert sorted(found) == sorted(path for path, _ in clips)
    for path, local in clips:
        modified, digest = found[path]
        assert digest == sha256(local.read_bytes())
        assert modified == as_stored(local.stat().st_mtime_ns, fs_type)
    assert_released(image)


def test_record_round_trip(image: Path, fs_type: str, tmp_path: Path) -> None:
    need("ffmpeg", "ffprobe")
    start = datetime(2026, 3, 5, 9, 30, 0)
    made = media.record(image, "ZFY0001", start, 3, seconds=2.0, first_index=7, gap_s=4.0)
    assert_released(image)

    assert [r.started for r in made] == [start + timedelta(seconds=6 * i) for i in range(3)]
    assert [r.camera_path for r in made] == [
        media.recording_path("ZFY0001", r.started, 7 + i) for i, r in enumerate(made)
    ]
    assert made[0].camera_path == "DCIM/20260305/ZFY0001_20260305093000_0007.MP4"
    with open_volume(image, "userspace", tmp_path / "mnt") as volume:
        entries = {e.path: e for e in volume.entries()}
        assert sorted(entries) == sorted(r.camera_path for r in made)
        for rec in made:
            closed = rec.started + timedelta(seconds=rec.seconds)
            assert entries[rec.camera_path].modified == closed  # whole even seconds: no rounding
        with volume.open(made[1].camera_path) as fh:
            (tmp_path / "copy.mp4").write_bytes(fh.read())
    info = probe(tmp_path / "copy.mp4")
    assert abs(float(info["format"]["duration"]) - 2.0) < 0.5
    assert info["format"]["tags"]["creation_time"].startswith("2026-03-05T09:30:06")
    assert_released(image)


def test_delete_files_removes_exactly_those(
    image: Path, fs_type: str, clips: list[tuple[str, Path]], tmp_path: Path
) -> None:
    media.add_files(image, clips)
    media.delete_files(image, [clips[0][0], clips[2][0]])
    assert_released(image)
    assert sorted(read_back(image, tmp_path / "mnt")) == [clips[1][0]]

    # One missing name: refused as a whole, nothing deleted.
    with pytest.raises(FileNotFoundError, match="0001"):
        media.delete_files(image, [clips[1][0], clips[0][0]])
    assert_released(image)
    assert sorted(read_back(image, tmp_path / "mnt")) == [clips[1][0]]


def test_failed_copy_leaves_nothing_attached(
    image: Path, fs_type: str, clips: list[tuple[str, Path]], tmp_path: Path
) -> None:
    local = clips[0][1]
    media.add_files(image, [("DCIM/A.MP4", local)])
    with pytest.raises((RuntimeError, OSError)):  # a file where a folder has to go
        media.add_files(image, [("DCIM/B.MP4", local), ("DCIM/A.MP4/C.MP4", local)])
    assert_released(image)
    assert "DCIM/A.MP4" in read_back(image, tmp_path / "mnt")


@pytest.mark.parametrize("fs", FS_TYPES)
def test_create_image_refuses_too_small(fs: str, tmp_path: Path) -> None:
    image = tmp_path / "tiny.img"
    with pytest.raises(ValueError, match="at least"):
        media.create_image(image, fs, media.MIN_SIZE_MIB[fs] - 1)  # type: ignore[arg-type]
    assert not image.exists()


def test_create_image_smallest_is_readable(fs_type: str, tmp_path: Path) -> None:
    image = tmp_path / "small.img"
    media.create_image(image, fs_type, media.MIN_SIZE_MIB[fs_type])  # type: ignore[arg-type]
    assert image.stat().st_size == media.MIN_SIZE_MIB[fs_type] * media.MIB
    assert read_back(image, tmp_path / "mnt") == {}
    with pytest.raises(FileExistsError):
        media.create_image(image, fs_type, 64)  # type: ignore[arg-type]


def test_write_garbage_breaks_the_volume(image: Path, tmp_path: Path) -> None:
    original = image.read_bytes()[:4096]
    media.write_garbage(image, 0, 512)
    damaged = image.read_bytes()[:4096]
    assert damaged[:512] != original[:512]
    assert damaged[512:] == original[512:]
    with pytest.raises(VolumeError):
        open_volume(image, "userspace", tmp_path / "mnt")
    with pytest.raises(ValueError):
        media.write_garbage(image, image.stat().st_size - 10, 11)


def test_camera_paths_must_stay_inside(image: Path, clips: list[tuple[str, Path]]) -> None:
    for bad in ("/DCIM/A.MP4", "DCIM/../A.MP4", "DCIM//A.MP4", "DCIM\\A.MP4"):
        with pytest.raises(ValueError):
            media.add_files(image, [(bad, clips[0][1])])
