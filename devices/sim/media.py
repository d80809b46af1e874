"""Simulated camera storage: real FAT32 or exFAT images holding real, playable MP4 recordings.

Time convention (the same as ``devices.volumes``): FAT and exFAT keep the camera's local wall clock, and
the station reads it back as naive wall time. Here a naive wall time maps to a Unix time as if it were
UTC, and every tool that converts between the two (ffmpeg, mtools, exfat-fuse) runs with ``TZ=UTC``, so
what lands in the image is exactly the camera's clock whatever this machine's time zone is.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Literal

from devices.tools import run_tool, tail
from devices.volumes.mounting import unmount, wait_mounted

FsType = Literal["vfat", "exfat"]

MIB = 1024 * 1024
# Smallest images the formatters accept: FAT32 needs 65525 clusters (33 MiB at 512-byte clusters; below
# that mkfs.vfat only warns and readers that go by cluster count take the volume for FAT16); mkfs.exfat
# fails below 3 MiB.
MIN_SIZE_MIB: dict[str, int] = {"vfat": 33, "exfat": 3}
_LABEL_MAX = {"vfat": 11, "exfat": 15}
_EPOCH = datetime(1970, 1, 1)
_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")


@dataclass(frozen=True)
class Recording:
    """One clip as the camera stored it."""

    camera_path: str  # POSIX path inside the image, e.g. "DCIM/20260305/ZFY0001_20260305142210_0001.MP4"
    started: datetime  # naive local time on the camera's clock
    seconds: float


def recording_path(serial: str, started: datetime, index: int) -> str:
    """Where a camera files a clip: ``DCIM/<YYYYMMDD>/<serial>_<YYYYMMDDhhmmss>_<index:04d>.MP4``."""
    if not serial or "/" in serial or "\\" in serial:
        raise ValueError(f"bad camera serial {serial!r}")
    if index < 0:
        raise ValueError(f"clip index must be >= 0, not {index}")
    return f"DCIM/{started:%Y%m%d}/{serial}_{started:%Y%m%d%H%M%S}_{index:04d}.MP4"


def make_clip(dest: Path, started: datetime, seconds: float, label: str) -> None:
    """Write a small, playable H.264/AAC MP4 to ``dest``, stamped as the camera would stamp it.

    ``creation_time`` is ``started`` (camera wall time); the file's mtime is ``started + seconds``
    because cameras stamp a file when they close it.
    """
    _require_naive(started)
    if seconds <= 0:
        raise ValueError(f"clip length must be positive, not {seconds}")
    dest = Path(dest).absolute()  # absolute: a leading "/" keeps ffmpeg from reading "x:" as a protocol
    with tempfile.TemporaryDirectory(prefix="sim-clip-") as tmp:
        argv = [
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=10:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=16000:duration={seconds}",
        ]  # fmt: skip
        if _has_drawtext():
            # The text goes through a file read relative to cwd, so neither the label nor the temp path
            # needs filtergraph escaping.
            (Path(tmp) / "overlay.txt").write_text(_overlay_text(label, started), encoding="utf-8")
            argv += ["-vf", _drawtext_filter("overlay.txt")]
        argv += [
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "48k", "-t", str(seconds),
            # No "Z": ffmpeg reads it as local time, which is UTC under _env(), so the tag holds the
            # camera's wall clock unshifted.
            "-metadata", f"creation_time={started.isoformat(timespec='seconds')}",
            "-movflags", "+faststart", "-f", "mp4", str(dest),
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                argv, cwd=tmp, env=_env(), stdin=subprocess.DEVNULL, capture_output=True,
                text=True, errors="replace", timeout=120, check=False,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise RuntimeError("making a clip: ffmpeg is not installed") from exc
        except subprocess.TimeoutExpired as exc:
            dest.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg timed out making {dest.name}") from exc
    if proc.returncode != 0:
        dest.unlink(missing_ok=True)  # never leave a half-written clip that looks like a recording
        raise RuntimeError(f"ffmpeg failed making {dest.name} (exit {proc.returncode}): {tail(proc.stderr)}")
    stamp = _wall_ns(started + timedelta(seconds=seconds))
    os.utime(dest, ns=(stamp, stamp))


def create_image(image: Path, fs_type: FsType, size_mib: int, label: str = "CAMERA") -> None:
    """Format a new sparse file of ``size_mib`` MiB as an empty FAT32 ("vfat") or exFAT filesystem."""
    if fs_type not in MIN_SIZE_MIB:
        raise ValueError(f"fs_type must be 'vfat' or 'exfat', not {fs_type!r}")
    if size_mib < MIN_SIZE_MIB[fs_type]:
        raise ValueError(f"{fs_type} needs at least {MIN_SIZE_MIB[fs_type]} MiB, not {size_mib}")
    if not label or len(label) > _LABEL_MAX[fs_type] or (fs_type == "vfat" and not label.isascii()):
        raise ValueError(f"volume label {label!r} does not fit {fs_type} ({_LABEL_MAX[fs_type]} characters)")
    image = Path(image)
    with open(image, "xb") as fh:  # "x": never reformat an existing camera's storage by accident
        fh.truncate(size_mib * MIB)
    if fs_type == "vfat":
        argv = ["mkfs.vfat", "-F", "32", "-n", label, str(image)]
    else:
        argv = ["mkfs.exfat", "-L", label, str(image)]
    try:
        _run(argv, f"format {image.name}")
    except BaseException:
        image.unlink(missing_ok=True)
        raise


def add_files(image: Path, files: Iterable[tuple[str, Path]]) -> None:
    """Copy local files into the image at the given camera paths (creating folders), keeping each mtime.

    An existing file at the same camera path is overwritten.
    """
    pairs = [(_camera_path(path), Path(src)) for path, src in files]
    for _, src in pairs:
        if not src.is_file():
            raise FileNotFoundError(f"no such local file: {src}")
    if not pairs:
        return
    image = Path(image)
    if _fs_type(image) == "exfat":
        with _exfat_mounted(image) as root:
            for path, src in pairs:
                dest = root.joinpath(*path.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                stamp = src.stat().st_mtime_ns
                os.utime(dest, ns=(stamp, stamp))  # after the copy: writing sets mtime to now
                _fsync(dest)
    else:
        _mtools_add(image, pairs)


def delete_files(image: Path, camera_paths: Iterable[str]) -> None:
    """Remove files from the image, as a camera frees storage after a verified offload.

    All named files must exist; if any is missing, FileNotFoundError is raised and nothing is deleted.
    Folders are kept.
    """
    paths = list(dict.fromkeys(_camera_path(p) for p in camera_paths))
    if not paths:
        return
    image = Path(image)
    if _fs_type(image) == "exfat":
        with _exfat_mounted(image) as root:
            targets = [root.joinpath(*p.split("/")) for p in paths]
            missing = [p for p, t in zip(paths, targets, strict=True) if not t.is_file()]
            if missing:
                raise FileNotFoundError(f"not on the camera: {', '.join(missing)}")
            for target in targets:
                target.unlink()
    else:
        listing = _mtools_listing(image)
        # FAT names are case-insensitive, so compare folded.
        missing = [p for p in paths if listing.get(p.casefold()) is not False]
        if missing:
            raise FileNotFoundError(f"not on the camera: {', '.join(missing)}")
        _run(["mdel", "-i", str(image), *(f"::/{p}" for p in paths)], f"delete from {image.name}")


def record(
    image: Path,
    serial: str,
    start: datetime,
    count: int,
    seconds: float = 3.0,
    first_index: int = 1,
    gap_s: float = 5.0,
) -> list[Recording]:
    """Record ``count`` consecutive clips onto the image, the first starting at ``start``."""
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    made: list[Recording] = []
    if count == 0:
        return made
    _fs_type(image)  # fail on a bad image before spending time in ffmpeg
    with tempfile.TemporaryDirectory(prefix="sim-rec-") as tmp:
        files: list[tuple[str, Path]] = []
        began = start
        for index in range(first_index, first_index + count):
            rec = Recording(recording_path(serial, began, index), began, seconds)
            local = Path(tmp) / PurePosixPath(rec.camera_path).name
            make_clip(local, began, seconds, label=f"{serial} #{index:04d}")
            files.append((rec.camera_path, local))
            made.append(rec)
            began += timedelta(seconds=seconds + gap_s)
        add_files(image, files)
    return made


def write_garbage(image: Path, offset: int, length: int) -> None:
    """Overwrite ``length`` bytes at ``offset`` with pseudo-random bytes (repeatable for the same range)."""
    size = Path(image).stat().st_size
    if offset < 0 or length < 0 or offset + length > size:
        raise ValueError(f"range {offset}+{length} is outside the {size}-byte image")
    data = random.Random(f"{offset}:{length}").randbytes(length)
    with open(image, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# -- helpers


def _env() -> dict[str, str]:
    # TZ=UTC: see the module docstring. C.UTF-8 so mtools passes long names through as UTF-8.
    return {**os.environ, "TZ": "UTC", "LC_ALL": "C.UTF-8", "MTOOLS_SKIP_CHECK": "1"}


def _run(argv: list[str], what: str, timeout: float = 60) -> str:
    return run_tool(argv, what, timeout=timeout, env=_env())


def _require_naive(moment: datetime) -> None:
    if moment.tzinfo is not None:
        raise ValueError("camera times are naive local wall time; got an aware datetime")


def _wall_ns(wall: datetime) -> int:
    """Unix time in ns of a naive wall time taken as UTC (exact: no float rounding)."""
    _require_naive(wall)
    delta = wall - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _camera_path(path: str) -> str:
    """Validate a path inside the image: relative, no empty, "." or ".." parts, no backslashes."""
    parts = path.split("/")
    if any(p in ("", ".", "..") or "\\" in p or any(ord(c) < 0x20 for c in p) for p in parts):
        raise ValueError(f"bad camera path {path!r}")
    return path


@cache
def _has_drawtext() -> bool:
    try:
        proc = subprocess.run(
            ["ffmpeg", "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30, check=False
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return any(line.split()[1:2] == ["drawtext"] for line in proc.stdout.splitlines())


def _overlay_text(label: str, started: datetime) -> str:
    # drawtext expands "%{...}" and treats "\" as an escape, so both are escaped in the label.
    safe = " ".join(label.split()).replace("\\", "\\\\").replace("%", "\\%")
    epoch = _wall_ns(started) / 1e9
    return f"{safe}\n%{{pts:gmtime:{epoch:.3f}:%Y-%m-%d %H\\:%M\\:%S}}\n"


def _drawtext_filter(textfile: str) -> str:
    font = f":fontfile={_FONT}" if _FONT.is_file() else ""  # else fontconfig picks one
    return (
        f"drawtext=textfile={textfile}{font}:fontsize=16:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4:x=8:y=8"
    )


def _fs_type(image: Path) -> FsType:
    try:
        found = _run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(image)], f"probe {image}").strip()
    except RuntimeError as exc:
        raise RuntimeError(f"{image}: no readable FAT32 or exFAT filesystem ({exc})") from exc
    if found == "vfat":
        return "vfat"
    if found == "exfat":
        return "exfat"
    raise RuntimeError(f"{image}: filesystem {found or 'unknown'} is not FAT32 or exFAT")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- FAT32 through mtools


def _mtools_listing(image: Path) -> dict[str, bool]:
    """Every path on a FAT image, case-folded, mapped to whether it is a folder."""
    try:
        out = _run(["mdir", "-i", str(image), "-/", "-b", "::/"], f"list {image.name}")
    except RuntimeError:
        # mdir -/ fails with "not found" on a volume with nothing on it; a flat listing tells an empty
        # volume from a broken one.
        if _run(["mdir", "-i", str(image), "-b", "::/"], f"list {image.name}").strip():
            raise
        return {}
    listing: dict[str, bool] = {}
    for line in out.splitlines():
        if line.startswith("::/"):
            name = line[3:]
            listing[name.rstrip("/").casefold()] = name.endswith("/")
    return listing


def _mtools_add(image: Path, pairs: list[tuple[str, Path]]) -> None:
    listing = _mtools_listing(image)
    folders: list[str] = []  # parents before children, so one mmd call can make them all
    for path, _ in pairs:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder.casefold() not in listing:
                listing[folder.casefold()] = True
                folders.append(folder)
    if folders:
        _run(["mmd", "-i", str(image), *(f"::/{f}" for f in folders)], f"make folders in {image.name}")
    for path, src in pairs:
        # -m keeps the local mtime; -D o overwrites an existing name instead of prompting.
        _run(["mcopy", "-i", str(image), "-m", "-D", "o", str(src), f"::/{path}"], f"copy {path}")


# -- exFAT through exfat-fuse


@contextlib.contextmanager
def _exfat_mounted(image: Path) -> Iterator[Path]:
    """Mount an exFAT image read-write with exfat-fuse; on exit nothing stays mounted or attached."""
    holder = Path(tempfile.mkdtemp(prefix="sim-exfat-"))
    mountpoint = holder / "mnt"
    mountpoint.mkdir()
    # exfat-fuse run as root refuses a regular file ("Block device required").
    loop = _attach_loop(image) if os.geteuid() == 0 else None
    try:
        _run(["mount.exfat-fuse", str(loop or image), str(mountpoint)], f"mount {image.name}")
        try:
            wait_mounted(mountpoint)
            yield mountpoint
        finally:
            unmount(mountpoint, fuse=True)
    finally:
        if loop is not None:
            _detach_loop(loop, image)
        # rmdir, never rmtree: should anything still be mounted there, the camera's files are not touched.
        for folder in (mountpoint, holder):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _attach_loop(image: Path) -> Path:
    return Path(_run(["losetup", "--find", "--show", str(image)], f"attach {image.name}").strip())


def _detach_loop(loop: Path, image: Path, timeout: float = 10) -> None:
    """Detach, then wait until the kernel has really let go.

    umount returns before the exfat-fuse daemon has exited; while it still holds the device, the kernel
    only marks it for release (autoclear). Waiting for that means the daemon's last writes (clearing
    the volume's dirty flag) are in the image before anyone else opens it.
    """
    _run(["losetup", "--detach", str(loop)], f"detach {loop}")
    backing = Path("/sys/block") / loop.name / "loop" / "backing_file"
    target = os.path.realpath(image)
    deadline = time.monotonic() + timeout
    while True:
        try:
            still_ours = backing.read_text().strip() == target
        except OSError:
            return  # no backing file: detached
        if not still_ours:
            return  # the device number was already reused for another image
        if time.monotonic() > deadline:
            raise RuntimeError(f"{loop} still attached to {image} {timeout:.0f} s after unmount")
        time.sleep(0.02)
