"""Random single-byte, bit and whole-sector corruptions of a real image's metadata (boot region, FATs, bitmap,
directories), each offloaded through the real pipeline: every one must end in either an offload or a clean
VolumeError, never another exception, and no recording whose name and size are unchanged is ever signed with
bytes other than the camera wrote."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import struct
import threading
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.eventlog import EventLog, Signer
from appliance.offload import Offloader
from appliance.state.db import StateDB
from appliance.store import LocalStore
from devices.volumes import VolumeError, open_volume
from tests.fatimages import Exfat, Fat, clusters, entry_set, make_exfat, make_fat, need

FILES = {
    "DCIM/A.MP4": random.Random(1).randbytes(40_000),
    "DCIM/B.MP4": random.Random(2).randbytes(30_000),
    "DCIM/SUB/C.MP4": random.Random(3).randbytes(9_000),
    "长文件名测试 录像.MP4": random.Random(4).randbytes(5_000),
    "D.MP4": random.Random(5).randbytes(100),
}
DIGESTS = {(path, len(data)): hashlib.sha256(data).hexdigest() for path, data in FILES.items()}


def fat_metadata(image: Path) -> list[tuple[int, int]]:
    """Byte ranges of a FAT volume's metadata in use: the boot sector, the used part of the first FAT (the one
    drivers read), the directories' first sectors (where their entries are)."""
    fat = Fat.read(image)
    used = max(c for path in FILES for c in clusters(image, path)) + 1
    first_fat = fat.reserved * fat.sector
    ranges = [(0, 512), (first_fat, first_fat + used * fat.bits // 8)]
    chains = [clusters(image, folder) for folder in ("DCIM", "DCIM/SUB")]
    starts = [fat.root_offset if fat.bits != 32 else fat.cluster_offset(fat.root_cluster)]
    starts += [fat.cluster_offset(chain[0]) for chain in chains]
    return ranges + [(start, start + 512) for start in starts]


def exfat_metadata(image: Path) -> list[tuple[int, int]]:
    """The same for exFAT: boot sector, used FAT entries, the bitmap's and up-case table's first bytes, the
    root directory and the subdirectories."""
    geo = Exfat.read(image)
    data = image.read_bytes()
    root = geo.cluster_offset(geo.root)
    system = [
        struct.unpack_from("<I", data, root + i + 20)[0] for i in range(0, 256, 32) if data[root + i] in (0x81, 0x82)
    ]
    folders = [geo.root, entry_set(image, "DCIM").first_cluster, entry_set(image, "SUB").first_cluster]
    used = max(entry_set(image, Path(p).name).first_cluster for p in FILES) + 16
    ranges = [(0, 512), (geo.fat_offset, geo.fat_offset + 4 * used)]
    ranges += [(geo.cluster_offset(c), geo.cluster_offset(c) + 64) for c in system]
    return ranges + [(geo.cluster_offset(c), geo.cluster_offset(c) + 512) for c in folders]


def corrupt(image: Path, ranges: list[tuple[int, int]], rng: random.Random) -> tuple[int, bytes, str]:
    """One random corruption; returns (offset, the bytes it replaced, what it did)."""
    start, end = rng.choice(ranges)
    kind = rng.choice(["byte", "byte", "bit", "sector"])
    with open(image, "r+b") as fh:
        if kind == "sector":
            offset = start + rng.randrange(max(1, (end - start) // 512)) * 512
            length = min(512, end - offset)
            fh.seek(offset)
            old = fh.read(length)
            new = rng.randbytes(length)
        else:
            offset = rng.randrange(start, end)
            fh.seek(offset)
            old = fh.read(1)
            new = bytes([old[0] ^ (1 << rng.randrange(8))]) if kind == "bit" else bytes([rng.randrange(256)])
        fh.seek(offset)
        fh.write(new)
    return offset, old, f"{kind} at {offset}"


def offload(image: Path, work: Path) -> str:
    """The real pipeline on one image: "error" (a clean VolumeError), "damaged" or "clean"; asserts that every
    signed manifest of an unchanged (name, size) carries the camera's own bytes."""
    shutil.rmtree(work / "run", ignore_errors=True)
    work = work / "run"
    work.mkdir()
    key = Ed25519PrivateKey.generate()
    db = StateDB(work / "state.json")
    log = EventLog(work / "log", origin="fuzz/events", signer=Signer("fuzz", key))
    try:
        offloader = Offloader(LocalStore(work / "store"), db, log, (".mp4",), "fuzz", key)
        try:
            with open_volume(image, "userspace", work / "mnt") as volume:
                result = offloader.run(volume, {"serial": "FUZZ"}, 1, threading.Event(), lambda p: None)
        except VolumeError:
            return "error"
    finally:
        log.close()
        db.close()
    for path in (work / "store" / "manifests").rglob("*.json"):
        signed = json.loads(path.read_text())["file"]
        expected = DIGESTS.get((signed["camera_path"], signed["size"]))
        assert expected is None or signed["sha256"] == expected, f"wrong bytes signed for {signed['camera_path']}"
    return "damaged" if result.damaged else "clean"


def read_volume(image: Path, work: Path) -> str:
    """The read path alone (what the pipeline does before it stores anything): list, take the findings, read
    every file not damaged; the same outcomes and the same assertion as ``offload``, without the fsyncs."""
    try:
        with open_volume(image, "userspace", work / "mnt") as volume:
            entries = list(volume.entries())
            damaged = {f.path for f in volume.findings() if f.damage}
            for entry in entries:
                if entry.path in damaged:
                    continue
                try:
                    with volume.open(entry.path) as fh:
                        digest = hashlib.sha256(fh.read()).hexdigest()
                except VolumeError:
                    damaged.add(entry.path)  # a read error: the pipeline records it as damage
                    continue
                expected = DIGESTS.get((entry.path, entry.size))
                assert expected is None or digest == expected, f"wrong bytes read for {entry.path}"
    except VolumeError:
        return "error"
    return "damaged" if damaged else "clean"


def fuzz(image: Path, ranges: list[tuple[int, int]], cases: int, seed: int, work: Path) -> Counter[str]:
    """``cases`` corruptions, each undone after its run; every tenth goes through the whole pipeline."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    work.mkdir()
    assert offload(image, work) == "clean"
    for case in range(cases):
        offset, old, what = corrupt(image, ranges, rng)
        try:
            outcomes[offload(image, work) if case % 10 == 0 else read_volume(image, work)] += 1
        except Exception as exc:  # the test's message names the corruption, so a failure can be replayed
            raise AssertionError(f"case {case} ({what}): {type(exc).__name__}: {exc}") from exc
        finally:
            with open(image, "r+b") as fh:
                fh.seek(offset)
                fh.write(old)
    return outcomes


@pytest.mark.parametrize("bits", [12, 16, 32])
def test_fat_metadata_corruptions_end_in_an_offload_or_a_clean_error(tmp_path: Path, bits: int) -> None:
    image = tmp_path / f"fat{bits}.img"
    make_fat(image, bits, {12: 4, 16: 16, 32: 40}[bits], FILES)
    outcomes = fuzz(image, fat_metadata(image), 500, seed=bits, work=tmp_path / "work")
    print(f"FAT{bits}: {dict(outcomes)}")
    assert sum(outcomes.values()) == 500 and outcomes["damaged"] > 0  # the corruptions were seen, not all fatal


def test_exfat_metadata_corruptions_end_in_an_offload_or_a_clean_error(tmp_path: Path) -> None:
    need("mkfs.exfat", "mount.exfat-fuse", "losetup")
    image = tmp_path / "exfat.img"
    make_exfat(image, 8, FILES)
    outcomes = fuzz(image, exfat_metadata(image), 150, seed=7, work=tmp_path / "work")
    print(f"exFAT: {dict(outcomes)}")
    assert sum(outcomes.values()) == 150 and outcomes["damaged"] + outcomes["error"] > 0
