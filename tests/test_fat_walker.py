"""The station's own FAT12/16/32 reader (devices/volumes/fat_walk.py) against real images made by mkfs.vfat and
mtools: on clean images it gives exactly the names, sizes, times and bytes mtools gives and finds nothing; on
images corrupted by hand it names each damaged file with its reason, reads every other file correctly, and
fsck.fat -n agrees that the volume is damaged. Names carry FAT's lower-case flags as the kernel shows them."""

from __future__ import annotations

import os
import random
import struct
from datetime import datetime
from pathlib import Path

import pytest

from devices.volumes import VolumeError, open_volume
from tests.fatimages import (
    Fat,
    add_fat,
    clusters,
    delete_fat,
    end_mark,
    entry_offset,
    extract_each,
    extract_fat,
    forget_next_free,
    fsck_fat,
    listed_fat,
    make_fat,
    patch,
    read_through_station,
    run,
    set_fat,
)

SIZES = {12: 4, 16: 16, 32: 40}  # MiB: mkfs.vfat picks FAT12, FAT16, FAT32 layouts that fit


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def read_all(image: Path, mnt: Path) -> tuple[dict[str, tuple[int, datetime | None, bytes]], dict[str, set[str]]]:
    """Every file's (size, mtime, bytes) unless damaged, and the damage found."""
    files, damage = read_through_station(image, mnt)
    return {path: (entry.size, entry.modified, data) for path, (entry, data) in files.items()}, damage


def camera_files() -> dict[str, bytes]:
    return {
        "DCIM/A.MP4": data(40_000, 1),
        "DCIM/B.MP4": data(30_000, 2),
        "DCIM/C.MP4": data(9_000, 3),
        "DCIM/SUB/D.MP4": data(3_000, 4),
        "长文件名测试 录像.MP4": data(2_000, 5),
    }


@pytest.fixture(params=[12, 16, 32], ids=lambda b: f"fat{b}")
def bits(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def image(tmp_path: Path, bits: int) -> Path:
    path = tmp_path / f"fat{bits}.img"
    make_fat(path, bits, SIZES[bits], camera_files())
    assert Fat.read(path).bits == bits
    return path


def assert_rest_intact(image: Path, tmp_path: Path, damaged: set[str]) -> None:
    """Every file not named damaged reads exactly as mtools reads it."""
    files, _ = read_all(image, tmp_path / "mnt")
    good = [p for p in listed_fat(image) if p not in damaged]
    assert sorted(files) == sorted(good)
    tools = extract_each(image, tmp_path / "mtools", good)
    assert files == tools


# -- clean images ----------------------------------------------------------------------------------


def clean_layout(bits: int) -> dict[str, bytes]:
    files = {
        "-rf.MP4": data(5_000, 10),  # short entry, NTRes 0x08: lower-case base name
        "ABC.mp4": data(5_000, 11),  # 0x10: lower-case extension
        "ab.mp4": data(5_000, 12),  # 0x18: both
        "Mixed.Mp4": data(5_000, 13),  # mixed case: a long name
        "EMPTY.TXT": b"",
        "DCIM/长文件名测试 二〇二六年三月五日 执法记录 第一段.MP4": data(70_000, 14),
        "DCIM/ZFY0001_20260305142210_0001.MP4": data(4096 * 3, 15),  # whole clusters exactly
    }
    many = {12: 40, 16: 120, 32: 300}[bits]
    for n in range(many):
        files[f"DCIM/100MEDIA/CLIP{n:04d}.MP4"] = data(700 + 37 * n, 100 + n)
    deep = "/".join(f"D{n}" for n in range(12))
    files[f"{deep}/DEEP.MP4"] = data(1_500, 20)
    return files


def test_clean_image_reads_exactly_as_mtools_and_fsck_find_it(tmp_path: Path, bits: int) -> None:
    image = tmp_path / "clean.img"
    files = clean_layout(bits)
    make_fat(image, bits, SIZES[bits], files, when=datetime(2026, 3, 5, 14, 22, 11))
    # Fragmented files: delete every other clip, then write files that fill the holes; and two files written
    # in turns (mtools appends cluster by cluster wherever the next free one is).
    delete_fat(image, *[f"DCIM/100MEDIA/CLIP{n:04d}.MP4" for n in range(0, 20, 2)])
    if bits == 32:
        forget_next_free(image)
    fragmented = {"DCIM/FRAG1.MP4": data(9 * 2048 + 100, 30), "DCIM/FRAG2.MP4": data(5 * 2048 + 7, 31)}
    add_fat(image, fragmented, when=datetime(2026, 3, 6, 0, 0, 2))
    runs = run("mshowfat", "-i", str(image), "::/DCIM/FRAG1.MP4").stdout.count("<")
    assert runs > 1, "the test must exercise a fragmented chain"

    assert fsck_fat(image).returncode == 0
    tools = extract_fat(image, tmp_path / "mtools")
    with open_volume(image, "userspace", tmp_path / "mnt") as volume:
        entries = list(volume.entries())
        assert volume.findings() == []
        ours = {}
        for entry in entries:
            with volume.open(entry.path) as fh:
                ours[entry.path] = (entry.size, entry.modified, fh.read())
    assert sorted(ours) == sorted(tools)
    assert ours == tools  # names, sizes, mtimes (2-second steps), bytes
    assert [e.path for e in entries] == sorted(ours, key=lambda p: p.split("/"))  # depth first, by name
    assert sorted(listed_fat(image)) == sorted(ours)


def test_short_names_keep_their_case_flags_as_the_kernel_shows_them(tmp_path: Path) -> None:
    """mcopy stores -rf.MP4 as a short entry "-RF     MP4" with NTRes 0x08 (no long name); Linux's vfat with
    shortname=mixed (the station's mount) shows it as -rf.MP4, and so must the userspace reader."""
    image = tmp_path / "case.img"
    make_fat(image, 32, 40, {"-rf.MP4": b"1", "ABC.mp4": b"2", "ab.mp4": b"3", "dcim/x.mp4": b"4", "UP.MP4": b"5"})
    stored = {name: image.read_bytes()[entry_offset(image, name) + 12] for name in (b"-RF     MP4", b"AB      MP4")}
    assert stored == {b"-RF     MP4": 0x08, b"AB      MP4": 0x18}  # really flags, not long names
    assert image.read_bytes()[entry_offset(image, b"ABC     MP4") + 12] == 0x10
    files, damage = read_all(image, tmp_path / "mnt")
    assert damage == {}
    assert sorted(files) == ["-rf.MP4", "ABC.mp4", "UP.MP4", "ab.mp4", "dcim/x.mp4"]
    assert {p: v[2] for p, v in files.items()} == {p: v[2] for p, v in extract_fat(image, tmp_path / "t").items()}


# -- corrupted by hand -----------------------------------------------------------------------------


def test_chain_looping_back(image: Path, tmp_path: Path) -> None:
    chain = clusters(image, "DCIM/A.MP4")
    set_fat(image, chain[5], chain[2])  # the 6th cluster leads back to the 3rd: the rest reads the same again
    _, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/A.MP4": {"chain_loop"}}
    assert_rest_intact(image, tmp_path, {"DCIM/A.MP4"})
    check = fsck_fat(image)
    assert check.returncode == 1 and "Circular cluster chain" in check.stdout


def test_two_files_sharing_clusters(image: Path, tmp_path: Path) -> None:
    a, b = clusters(image, "DCIM/A.MP4"), clusters(image, "DCIM/B.MP4")
    set_fat(image, b[3], a[6])  # B runs on into the middle of A
    _, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/A.MP4": {"cross_link"}, "DCIM/B.MP4": {"cross_link"}}
    assert_rest_intact(image, tmp_path, {"DCIM/A.MP4", "DCIM/B.MP4"})
    check = fsck_fat(image)
    assert check.returncode == 1 and "share clusters" in check.stdout


def test_cluster_beyond_the_volume(image: Path, tmp_path: Path) -> None:
    fat = Fat.read(image)
    set_fat(image, clusters(image, "DCIM/C.MP4")[1], min(fat.clusters + 50, end_mark(fat.bits) - 9))
    _, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/C.MP4": {"out_of_range"}}
    assert_rest_intact(image, tmp_path, {"DCIM/C.MP4"})
    check = fsck_fat(image)
    assert check.returncode == 1 and "out of range" in check.stdout


def test_free_cluster_inside_a_chain(image: Path, tmp_path: Path) -> None:
    set_fat(image, clusters(image, "DCIM/A.MP4")[4], 0)
    _, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/A.MP4": {"bad_fat_entry"}}
    assert_rest_intact(image, tmp_path, {"DCIM/A.MP4"})
    check = fsck_fat(image)
    assert check.returncode == 1 and "free cluster" in check.stdout


def test_bad_cluster_and_a_chain_shorter_than_the_size(image: Path, tmp_path: Path) -> None:
    fat = Fat.read(image)
    set_fat(image, clusters(image, "DCIM/A.MP4")[2], end_mark(fat.bits) - 8)  # marked bad
    set_fat(image, clusters(image, "DCIM/B.MP4")[1], end_mark(fat.bits))  # ends after 2 clusters
    _, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/A.MP4": {"bad_fat_entry"}, "DCIM/B.MP4": {"short_chain"}}
    assert_rest_intact(image, tmp_path, {"DCIM/A.MP4", "DCIM/B.MP4"})
    assert fsck_fat(image).returncode == 1


def test_a_chain_longer_than_the_size_is_only_a_note(image: Path, tmp_path: Path) -> None:
    """The bytes past the size are never read: the file is copied, the finding is a note."""
    fat = Fat.read(image)
    chain = clusters(image, "DCIM/C.MP4")
    spare = next(c for c in range(fat.clusters + 1, 2, -1) if c not in chain)  # a free cluster near the end
    set_fat(image, chain[-1], spare)
    set_fat(image, spare, end_mark(fat.bits))
    files, damage = read_all(image, tmp_path / "mnt")
    assert damage == {}
    assert files["DCIM/C.MP4"][2] == data(9_000, 3)
    with open_volume(image, "userspace", tmp_path / "mnt2") as volume:
        list(volume.entries())
        assert [(f.path, f.reason, f.damage) for f in volume.findings()] == [("DCIM/C.MP4", "long_chain", False)]
    assert fsck_fat(image).returncode == 1  # fsck would truncate the chain: it reports every difference


def test_a_directory_looping_back_to_its_parent(tmp_path: Path) -> None:
    image = tmp_path / "dirloop.img"
    make_fat(image, 32, 40, camera_files())
    parent = clusters(image, "DCIM")[0]
    at = entry_offset(image, b"SUB        ")
    patch(image, at + 20, struct.pack("<H", parent >> 16))
    patch(image, at + 26, struct.pack("<H", parent & 0xFFFF))
    files, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"DCIM/SUB": {"bad_directory"}}  # the loop, not its parent: DCIM's recordings are fine
    assert sorted(files) == ["DCIM/A.MP4", "DCIM/B.MP4", "DCIM/C.MP4", "长文件名测试 录像.MP4"]
    check = fsck_fat(image)
    assert check.returncode == 1 and "point to containing directory" in check.stdout


def test_a_long_name_whose_checksum_does_not_match(tmp_path: Path) -> None:
    """The kernel drops such a long name and shows the short one: not the name the camera wrote."""
    image = tmp_path / "lfn.img"
    make_fat(image, 32, 40, {"DCIM/长名字的录像.MP4": data(3_000, 7), "DCIM/OK.MP4": data(100, 8)})
    short = next(n for n in run("mdir", "-i", str(image), "::/DCIM").stdout.split("\n") if "长名字" in n).split()[0]
    short11 = short.encode().ljust(8) + b"MP4"
    last_slot = entry_offset(image, short11) - 32
    assert image.read_bytes()[last_slot + 11] == 0x0F  # the long-name slot just before the short entry
    patch(image, last_slot + 13, bytes([image.read_bytes()[last_slot + 13] ^ 0x5A]))
    files, damage = read_all(image, tmp_path / "mnt")
    assert damage == {f"DCIM/{short}.MP4": {"bad_entry"}}
    assert sorted(files) == ["DCIM/OK.MP4"]
    assert "Wrong checksum for long file name" in fsck_fat(image).stdout  # fsck only asks: its exit code stays 0


def test_a_truncated_image(tmp_path: Path) -> None:
    """The boot sector claims more sectors than the image holds: the files past the end are damaged, the
    volume is named, the files before it are read."""
    image = tmp_path / "truncated.img"
    make_fat(image, 32, 40, camera_files())
    last = clusters(image, "长文件名测试 录像.MP4")
    os.truncate(image, Fat.read(image).cluster_offset(last[0]) + 100)
    _, damage = read_all(image, tmp_path / "mnt")
    assert damage == {"": {"beyond_device"}, "长文件名测试 录像.MP4": {"beyond_device"}}
    assert_rest_intact(image, tmp_path, {"长文件名测试 录像.MP4"})
    assert fsck_fat(image).returncode != 0


def test_a_read_that_comes_short_names_file_offset_and_reason(tmp_path: Path) -> None:
    """The image shrinks after the walk (a card failing mid-copy): the read raises a VolumeError naming the
    file and the offset, never returns fewer bytes as if the file ended there."""
    image = tmp_path / "shrinks.img"
    make_fat(image, 32, 40, camera_files())
    with open_volume(image, "userspace", tmp_path / "mnt") as volume:
        list(volume.entries())
        source = volume.open("DCIM/A.MP4")
        first = source.read(4096)
        os.truncate(image, Fat.read(image).cluster_offset(clusters(image, "DCIM/A.MP4")[0]) + 10_000)
        with pytest.raises(VolumeError, match=r"DCIM/A\.MP4: the read ended at offset 10000, 30000 bytes before"):
            while source.read(4096):
                pass
        assert first == data(40_000, 1)[:4096]
