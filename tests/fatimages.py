"""Real FAT and exFAT images for the filesystem tests, made with mkfs.vfat/mkfs.exfat, mtools and exfat-fuse,
and corrupted by hand. Everything here reads the images independently of devices/volumes: the geometry from
the boot sector with struct, the clusters of a file from mtools (mshowfat), so the station's walker is judged
against the tools, never against itself."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.sim import media
from devices.volumes import FileEntry, VolumeError, open_volume

EPOCH = datetime(1970, 1, 1)


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def env() -> dict[str, str]:
    return {**os.environ, "TZ": "UTC", "LC_ALL": "C.UTF-8", "MTOOLS_SKIP_CHECK": "1"}


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=env(), check=check, timeout=120)


def stamp(local: Path, when: datetime) -> None:
    seconds = int((when - EPOCH).total_seconds())
    os.utime(local, (seconds, seconds))


def make_fat(image: Path, bits: int, size_mib: int, files: dict[str, bytes], when: datetime | None = None) -> None:
    """A FAT12/16/32 image holding ``files`` (camera path -> bytes), written by mtools with ``when`` as mtime."""
    need("mkfs.vfat", "mmd", "mcopy")
    with open(image, "xb") as fh:
        fh.truncate(size_mib * media.MIB)
    run("mkfs.vfat", "-F", str(bits), "-n", "CAMERA", str(image))
    add_fat(image, files, when)


def add_fat(image: Path, files: dict[str, bytes], when: datetime | None = None) -> None:
    scratch = image.parent / f"{image.name}.src"
    scratch.mkdir(exist_ok=True)
    made: set[str] = set()
    for index, (path, data) in enumerate(files.items()):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in made and run("mdir", "-i", str(image), f"::/{folder}", check=False).returncode != 0:
                run("mmd", "-i", str(image), f"::/{folder}")
            made.add(folder)
        local = scratch / str(index)
        local.write_bytes(data)
        stamp(local, when or datetime(2026, 3, 5, 14, 22, 10))
        run("mcopy", "-i", str(image), "-m", "-D", "o", str(local), f"::/{path}")
        local.unlink()
    scratch.rmdir()


def delete_fat(image: Path, *paths: str) -> None:
    run("mdel", "-i", str(image), *(f"::/{p}" for p in paths))


def clusters(image: Path, path: str) -> list[int]:
    """The clusters of a file or directory, in chain order, as mtools reads them."""
    out = run("mshowfat", "-i", str(image), f"::/{path}").stdout
    found: list[int] = []
    for first, last in re.findall(r"<(\d+)(?:-(\d+))?>", out):
        found += range(int(first), int(last or first) + 1)
    return found


@dataclass(frozen=True)
class Fat:
    """The boot sector's layout, read with struct (not with the station's code)."""

    bits: int
    sector: int
    cluster: int
    reserved: int
    fats: int
    fat_sectors: int
    root_entries: int
    root_cluster: int
    total_sectors: int

    @classmethod
    def read(cls, image: Path) -> Fat:
        boot = image.read_bytes()[:512]
        sector, per_cluster, reserved, fats, root_entries, total16 = struct.unpack_from("<HBHBHH", boot, 11)
        fat16, total32, fat32, root = (
            struct.unpack_from(f, boot, o)[0] for f, o in (("<H", 22), ("<I", 32), ("<I", 36), ("<I", 44))
        )
        fat_sectors = fat16 or fat32
        total = total16 or total32
        root_sectors = root_entries * 32 // sector
        clusters = (total - reserved - fats * fat_sectors - root_sectors) // per_cluster
        bits = 32 if fat16 == 0 else (12 if clusters <= 4084 else 16)
        return cls(bits, sector, sector * per_cluster, reserved, fats, fat_sectors, root_entries, root, total)

    @property
    def data_offset(self) -> int:
        return (self.reserved + self.fats * self.fat_sectors) * self.sector + self.root_entries * 32

    @property
    def root_offset(self) -> int:
        return (self.reserved + self.fats * self.fat_sectors) * self.sector

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - 2) * self.cluster

    @property
    def clusters(self) -> int:
        return (self.total_sectors * self.sector - self.data_offset) // self.cluster


def set_fat(image: Path, cluster: int, value: int) -> None:
    """Write FAT entry ``cluster`` in every FAT copy, as a camera's firmware (or failing flash) would."""
    fat = Fat.read(image)
    with open(image, "r+b") as fh:
        for copy in range(fat.fats):
            base = (fat.reserved + copy * fat.fat_sectors) * fat.sector
            if fat.bits == 32:
                fh.seek(base + 4 * cluster)
                old = struct.unpack("<I", fh.read(4))[0]
                fh.seek(base + 4 * cluster)
                fh.write(struct.pack("<I", (old & 0xF0000000) | value))
            elif fat.bits == 16:
                fh.seek(base + 2 * cluster)
                fh.write(struct.pack("<H", value))
            else:
                at = base + cluster * 3 // 2
                fh.seek(at)
                pair = struct.unpack("<H", fh.read(2))[0]
                pair = (pair & 0x000F) | (value << 4) if cluster & 1 else (pair & 0xF000) | value
                fh.seek(at)
                fh.write(struct.pack("<H", pair))


def end_mark(bits: int) -> int:
    return {12: 0xFFF, 16: 0xFFFF, 32: 0x0FFFFFFF}[bits]


def entry_offset(image: Path, short11: bytes) -> int:
    """The byte offset of the one short directory entry named ``short11`` (11 bytes, space padded)."""
    data = image.read_bytes()
    found = [m.start() for m in re.finditer(re.escape(short11), data) if m.start() % 32 == 0]
    assert len(found) == 1, f"{short11!r} found {len(found)} times"
    return found[0]


def patch(image: Path, offset: int, data: bytes) -> None:
    with open(image, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def fsck_fat(image: Path) -> subprocess.CompletedProcess[str]:
    """dosfstools' check, read-only (-n): exit 0 for a clean volume, 1 when it found errors."""
    need("fsck.fat")
    return run("fsck.fat", "-n", str(image), check=False)


def fsck_exfat(image: Path) -> subprocess.CompletedProcess[str]:
    need("fsck.exfat")
    return run("fsck.exfat", "-n", str(image), check=False)


def extract_fat(image: Path, dest: Path) -> dict[str, tuple[int, datetime, bytes]]:
    """Every file as mtools sees it (mcopy -s -m): camera path -> (size, mtime, bytes)."""
    dest.mkdir()
    run("mcopy", "-s", "-m", "-i", str(image), "::/", str(dest))
    return read_tree(dest)


def listed_fat(image: Path) -> list[str]:
    """Every file's path as mdir lists it (long names, short names with their case flags applied)."""
    lines = run("mdir", "-/", "-b", "-i", str(image), "::/").stdout.splitlines()
    return [line.removeprefix("::/") for line in lines if line.startswith("::/") and not line.endswith("/")]


def extract_each(image: Path, dest: Path, paths: list[str]) -> dict[str, tuple[int, datetime, bytes]]:
    """Chosen files one by one through mcopy -m (mcopy of a whole damaged tree stops at the first bad file)."""
    dest.mkdir()
    for path in paths:
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        run("mcopy", "-n", "-m", "-i", str(image), f"::/{path}", str(dest / path))
    return read_tree(dest)


def forget_next_free(image: Path) -> None:
    """Set FAT32's FSInfo next-free hint to unknown, so the next file fills the holes from the start of the
    volume as a camera's allocator does (mtools otherwise goes on after the last cluster it allocated)."""
    boot = image.read_bytes()[:512]
    fsinfo = struct.unpack_from("<H", boot, 48)[0] * struct.unpack_from("<H", boot, 11)[0]
    patch(image, fsinfo + 492, struct.pack("<I", 0xFFFFFFFF))


def read_tree(root: Path) -> dict[str, tuple[int, datetime, bytes]]:
    """Every file under ``root``: relative path -> (size, mtime as naive UTC wall time, bytes)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            mtime = datetime.fromtimestamp(int(path.stat().st_mtime), UTC).replace(tzinfo=None)
            found[path.relative_to(root).as_posix()] = (path.stat().st_size, mtime, path.read_bytes())
    return found


# -- exFAT ----------------------------------------------------------------------------------------


def make_exfat(image: Path, size_mib: int, files: dict[str, bytes], when: datetime | None = None) -> None:
    """An exFAT image holding ``files``, written through exfat-fuse (media.add_files) with ``when`` as mtime."""
    need("mkfs.exfat", "mount.exfat-fuse")
    media.create_image(image, "exfat", size_mib)
    scratch = image.parent / f"{image.name}.src"
    scratch.mkdir()
    pairs = []
    for index, (path, content) in enumerate(files.items()):
        local = scratch / str(index)
        local.write_bytes(content)
        stamp(local, when or datetime(2026, 3, 5, 14, 22, 10))
        pairs.append((path, local))
    media.add_files(image, pairs)
    for _, local in pairs:
        local.unlink()
    scratch.rmdir()


@dataclass(frozen=True)
class Exfat:
    sector: int
    cluster: int
    fat_offset: int  # bytes
    heap_offset: int  # bytes
    clusters: int
    root: int

    @classmethod
    def read(cls, image: Path) -> Exfat:
        boot = image.read_bytes()[:512]
        fat_offset, _, heap, count, root = struct.unpack_from("<IIIII", boot, 80)
        sector = 1 << boot[108]
        return cls(sector, sector << boot[109], fat_offset * sector, heap * sector, count, root)

    def cluster_offset(self, cluster: int) -> int:
        return self.heap_offset + (cluster - 2) * self.cluster

    def fat(self, image: Path, cluster: int) -> int:
        with open(image, "rb") as fh:
            fh.seek(self.fat_offset + 4 * cluster)
            return struct.unpack("<I", fh.read(4))[0]

    def set_fat(self, image: Path, cluster: int, value: int) -> None:
        patch(image, self.fat_offset + 4 * cluster, struct.pack("<I", value))


@dataclass(frozen=True)
class EntrySet:
    offset: int  # of the File entry
    count: int  # secondary entries
    flags: int  # the stream's GeneralSecondaryFlags (bit 1: NoFatChain)
    first_cluster: int
    size: int

    def clusters(self, image: Path, geo: Exfat) -> list[int]:
        needed = -(-self.size // geo.cluster)
        if self.flags & 2:
            return list(range(self.first_cluster, self.first_cluster + needed))
        chain, cluster = [], self.first_cluster
        while cluster != 0xFFFFFFFF and len(chain) < needed:
            chain.append(cluster)
            cluster = geo.fat(image, cluster)
        return chain


def entry_set(image: Path, name: str) -> EntrySet:
    """The entry set whose (first) File Name entry starts with ``name`` (names in tests are unique)."""
    data = image.read_bytes()
    encoded = name.encode("utf-16-le")[:30]
    found = [
        at - 64
        for at in range(0, len(data), 32)
        if data[at] == 0xC1 and data[at + 2 : at + 2 + len(encoded)] == encoded and data[at - 64] == 0x85
    ]
    assert len(found) == 1, f"{name!r}: {len(found)} entry sets"
    at = found[0]
    first, size = struct.unpack_from("<IQ", data, at + 32 + 20)
    return EntrySet(at, data[at + 1], data[at + 33], first, size)


def set_stream(image: Path, entries: EntrySet, **fields: int) -> None:
    """Change the stream entry's first_cluster, size or flags and recompute the SetChecksum, so the only damage
    is the one meant."""
    at = entries.offset + 32
    if "first_cluster" in fields:
        patch(image, at + 20, struct.pack("<I", fields["first_cluster"]))
    if "size" in fields:
        patch(image, at + 8, struct.pack("<Q", fields["size"]))  # ValidDataLength
        patch(image, at + 24, struct.pack("<Q", fields["size"]))  # DataLength
    if "flags" in fields:
        patch(image, at + 1, bytes([fields["flags"]]))
    raw = image.read_bytes()[entries.offset : entries.offset + 32 * (entries.count + 1)]
    total = 0
    for index, byte in enumerate(raw):
        if index not in (2, 3):
            total = (((total & 1) << 15) | (total >> 1)) + byte & 0xFFFF
    patch(image, entries.offset + 2, struct.pack("<H", total))


def clear_bitmap_bit(image: Path, cluster: int) -> None:
    geo = Exfat.read(image)
    data = image.read_bytes()
    root = geo.cluster_offset(geo.root)
    bitmap = next(root + i for i in range(0, geo.cluster, 32) if data[root + i] == 0x81)
    start = geo.cluster_offset(struct.unpack_from("<I", data, bitmap + 20)[0])
    byte = start + (cluster - 2) // 8
    patch(image, byte, bytes([data[byte] & ~(1 << ((cluster - 2) % 8)) & 0xFF]))


def read_through_station(image: Path, mnt: Path) -> tuple[dict[str, tuple[FileEntry, bytes]], dict[str, set[str]]]:
    """Through the station's read path (the structural check, then the reader or mount): every file not
    damaged with its bytes, and the damage found per path; a damaged file must refuse to open."""
    with open_volume(image, "userspace", mnt) as volume:
        entries = list(volume.entries())
        damage: dict[str, set[str]] = {}
        for finding in volume.findings():
            if finding.damage:
                damage.setdefault(finding.path, set()).add(finding.reason)
        files = {}
        for entry in entries:
            if entry.path in damage:
                with pytest.raises(VolumeError, match="damaged"):
                    volume.open(entry.path)
                continue
            with volume.open(entry.path) as fh:
                files[entry.path] = (entry, fh.read())
    return files, damage
