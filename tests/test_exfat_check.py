"""The exFAT structural check (devices/volumes/exfat_walk.py), run before exfat-fuse (here) or the kernel (the
Pi) mounts a camera: on clean images it agrees with exfat-fuse and fsck.exfat and finds nothing; on images
corrupted by hand it names each damaged file with its reason, the other files still read, and fsck.exfat -n
agrees that the volume is damaged."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import struct
from datetime import datetime
from pathlib import Path

import pytest

from devices.sim import media
from devices.volumes import VolumeError, open_volume
from devices.volumes.checked import check_structure
from tests.fatimages import (
    Exfat,
    clear_bitmap_bit,
    entry_set,
    fsck_exfat,
    make_exfat,
    need,
    patch,
    read_through_station,
    read_tree,
    set_stream,
)

WHEN = datetime(2026, 3, 5, 14, 22, 10)


@pytest.fixture(autouse=True)
def tools() -> None:
    need("mkfs.exfat", "mount.exfat-fuse", "fsck.exfat", "losetup")


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def read_all(image: Path, mnt: Path) -> tuple[dict[str, bytes], dict[str, set[str]]]:
    """The bytes of every file not damaged, and the damage found."""
    files, damage = read_through_station(image, mnt)
    return {path: data for path, (_, data) in files.items()}, damage


def camera_files() -> dict[str, bytes]:
    return {
        "DCIM/A.MP4": data(40_000, 1),
        "DCIM/B.MP4": data(30_000, 2),
        "OTHER/C.MP4": data(9_000, 3),
        "OTHER/长文件名测试 录像.MP4": data(2_000, 5),
    }


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "exfat.img"
    make_exfat(path, 8, camera_files())
    return path


def test_clean_image_agrees_with_exfat_fuse_and_fsck(tmp_path: Path) -> None:
    image = tmp_path / "clean.img"
    files = {f"DCIM/100MEDIA/CLIP{n:04d}.MP4": data(500 + 97 * n, n) for n in range(150)}
    files["DCIM/长文件名测试 二〇二六年三月五日 执法记录仪 第一段 完整录像（含音频）.MP4"] = data(70_000, 200)
    files["/".join(f"D{n}" for n in range(12)) + "/DEEP.MP4"] = data(1_500, 201)
    files["EMPTY.TXT"] = b""
    make_exfat(image, 16, files, when=WHEN)
    # Two recordings written in turns, a cluster at a time, as a camera writing two streams does: both end
    # up fragmented, on FAT chains instead of contiguous runs.
    parts = {"DCIM/FRAG1.MP4": data(12 * 4096, 300), "DCIM/FRAG2.MP4": data(9 * 4096 + 5, 301)}
    with media._exfat_mounted(image) as root, contextlib.ExitStack() as stack:
        handles = {p: stack.enter_context(open(root / p, "wb")) for p in parts}
        for offset in range(0, 12 * 4096, 4096):
            for path, handle in handles.items():
                handle.write(parts[path][offset : offset + 4096])
                handle.flush()
                os.fsync(handle.fileno())
    files.update(parts)
    assert entry_set(image, "FRAG1.MP4").flags & 2 == 0, "the test must exercise a FAT-chained file"
    check = fsck_exfat(image)
    assert check.returncode == 0, check.stdout

    structure = check_structure(image, "exfat")
    assert structure.findings == []
    assert {p: f.size for p, f in structure.files.items()} == {p: len(b) for p, b in files.items()}
    assert set(structure.directories) >= {"", "DCIM", "DCIM/100MEDIA", "D0/D1/D2"}
    read, damage = read_all(image, tmp_path / "mnt")
    assert damage == {} and read == files
    with media._exfat_mounted(image) as root:
        listed = read_tree(root)
    for path, walked in structure.files.items():  # the check's own times are those exfat-fuse shows
        assert walked.modified is not None and walked.modified.replace(microsecond=0) == listed[path][1]


def test_an_entry_set_with_a_wrong_checksum(image: Path, tmp_path: Path) -> None:
    patch(image, entry_set(image, "A.MP4").offset + 8, b"\x01")  # a timestamp byte: the SetChecksum no longer fits
    structure = check_structure(image, "exfat")
    assert {f.path: f.reason for f in structure.findings} == {"DCIM/A.MP4": "bad_entry"}
    files, damage = read_all(image, tmp_path / "mnt")
    # exfat-fuse refuses the whole folder over one bad entry set (EIO): its other files cannot be read here
    # (the Pi's kernel lists them), so they stay on the camera too; the other folder is copied.
    assert damage["DCIM/A.MP4"] == {"bad_entry"} and damage["DCIM"] == {"read_error"}
    assert sorted(files) == ["OTHER/C.MP4", "OTHER/长文件名测试 录像.MP4"]
    check = fsck_exfat(image)
    assert check.returncode != 0 and "checksum of a file is wrong" in check.stdout


def test_a_fat_chain_looping_back(tmp_path: Path) -> None:
    image = tmp_path / "loop.img"
    make_exfat(image, 8, camera_files())
    geo = Exfat.read(image)
    a = entry_set(image, "A.MP4")
    set_stream(image, a, flags=a.flags & ~2)  # give it a FAT chain first (exfat-fuse wrote it contiguous)
    run = list(range(a.first_cluster, a.first_cluster + -(-a.size // geo.cluster)))
    for here, there in itertools.pairwise(run):
        geo.set_fat(image, here, there)
    geo.set_fat(image, run[-1], 0xFFFFFFFF)
    assert check_structure(image, "exfat").findings == []  # a valid FAT chain now
    geo.set_fat(image, run[5], run[2])
    _, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/A.MP4": {"chain_loop"}}
    assert fsck_exfat(image).returncode != 0


def test_contiguous_files_overlapping(image: Path, tmp_path: Path) -> None:
    a, b = entry_set(image, "A.MP4"), entry_set(image, "B.MP4")
    assert a.flags & 2 and b.flags & 2  # NoFatChain: contiguous runs
    set_stream(image, b, first_cluster=a.first_cluster + 3)
    files, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/A.MP4": {"cross_link"}, "DCIM/B.MP4": {"cross_link"}}
    assert files == {k: v for k, v in camera_files().items() if k.startswith("OTHER/")}
    assert fsck_exfat(image).returncode != 0


def test_a_run_past_the_volume_and_a_cluster_the_bitmap_calls_free(image: Path, tmp_path: Path) -> None:
    geo = Exfat.read(image)
    set_stream(
        image, entry_set(image, "C.MP4"), first_cluster=geo.clusters
    )  # its 3 clusters: the last two and one past
    clear_bitmap_bit(image, entry_set(image, "B.MP4").first_cluster + 2)
    files, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"OTHER/C.MP4": {"out_of_range"}, "DCIM/B.MP4": {"not_allocated"}}
    assert sorted(files) == ["DCIM/A.MP4", "OTHER/长文件名测试 录像.MP4"]
    assert files["DCIM/A.MP4"] == camera_files()["DCIM/A.MP4"]
    assert fsck_exfat(image).returncode != 0


def test_a_truncated_image(image: Path, tmp_path: Path) -> None:
    geo = Exfat.read(image)
    c = entry_set(image, "C.MP4")
    os.truncate(image, geo.cluster_offset(c.first_cluster) + 100)
    structure = check_structure(image, "exfat")
    damage = {f.path: f.reason for f in structure.findings if f.damage}
    assert damage[""] == "beyond_device" and damage["OTHER/C.MP4"] == "beyond_device"
    assert fsck_exfat(image).returncode != 0


def test_a_bad_boot_region_checksum_is_a_clean_error(image: Path, tmp_path: Path) -> None:
    patch(image, 100, struct.pack("<I", 0x12345678))  # the volume serial number: covered by the checksum
    with pytest.raises(VolumeError, match="checksum"):
        open_volume(image, "userspace", tmp_path / "mnt")


def test_a_directory_looping_back_is_not_entered_by_the_mount(tmp_path: Path) -> None:
    """exfat-fuse (like the kernel) would follow the loop folder by folder; the check skips it on the mount."""
    image = tmp_path / "dirloop.img"
    make_exfat(image, 8, {**camera_files(), "DCIM/SUB/D.MP4": data(3_000, 4)})
    dcim, sub = entry_set(image, "DCIM"), entry_set(image, "SUB")
    set_stream(image, sub, first_cluster=dcim.first_cluster, size=dcim.size, flags=dcim.flags)
    files, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/SUB": {"bad_directory"}}
    assert files == camera_files()
    assert fsck_exfat(image).returncode != 0
