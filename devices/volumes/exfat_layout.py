"""exFAT on disk: the main boot region (checked by its checksum, as Linux's exfat and exfat-fuse check it
before mounting), the FAT in use, and the checksums and hashes of the directory entries."""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

from devices.volumes.base import VolumeError
from devices.volumes.chains import BROKEN, END, NEXT
from devices.volumes.fat_layout import MAX_CLUSTERS
from devices.volumes.readers import RawDevice

END_OF_CHAIN, BAD_CLUSTER = 0xFFFFFFFF, 0xFFFFFFF7


@dataclass(frozen=True)
class ExfatGeometry:
    sector: int
    cluster: int
    fat_offset: int  # sectors
    fat_length: int  # sectors
    fats: int
    heap_offset: int  # sectors
    clusters: int  # numbered 2 .. clusters + 1
    root_cluster: int
    volume_sectors: int
    flags: int  # VolumeFlags: bit 0 the active FAT, bit 1 dirty, bit 2 media failure

    @property
    def last_cluster(self) -> int:
        return self.clusters + 1

    @property
    def volume_bytes(self) -> int:
        return self.volume_sectors * self.sector

    @property
    def heap_bytes(self) -> int:
        return self.heap_offset * self.sector

    def cluster_offset(self, cluster: int) -> int:
        return self.heap_bytes + (cluster - 2) * self.cluster


def rotate_sum(data: bytes, bits: int, skip: tuple[int, ...] = (), start: int = 0) -> int:
    """The rotate-right-and-add checksum exFAT uses (boot region 32-bit, entry sets and name hashes 16-bit)."""
    mask, high = (1 << bits) - 1, bits - 1
    total = start
    for index, byte in enumerate(data):
        if index not in skip:
            total = (((total & 1) << high) | (total >> 1)) + byte & mask
    return total


def read_geometry(device: RawDevice) -> ExfatGeometry:
    """The main boot region's geometry; VolumeError if a driver would refuse to mount it."""
    boot = device.read(0, 512, "the exFAT boot sector")
    if boot[3:11] != b"EXFAT   " or any(boot[11:64]):
        raise VolumeError("exFAT boot sector: not an exFAT boot sector")
    if boot[510:512] != b"\x55\xaa":
        raise VolumeError("exFAT boot sector: no boot signature")
    volume_sectors, fat_offset, fat_length, heap_offset, clusters, root = struct.unpack_from("<QIIIII", boot, 72)
    flags = struct.unpack_from("<H", boot, 106)[0]
    sector_shift, cluster_shift, fats = boot[108], boot[109], boot[110]
    if not 9 <= sector_shift <= 12 or cluster_shift > 25 - sector_shift:
        raise VolumeError(f"exFAT boot sector: bogus sector or cluster size (shifts {sector_shift}, {cluster_shift})")
    sector = 1 << sector_shift
    region = device.read(0, 12 * sector, "the exFAT boot region")
    checksum = rotate_sum(region[: 11 * sector], 32, skip=(106, 107, 112))
    if region[11 * sector :] != struct.pack("<I", checksum) * (sector // 4):
        raise VolumeError("exFAT boot region: the checksum does not match (a damaged boot sector)")
    if fats not in (1, 2):
        raise VolumeError(f"exFAT boot sector: bogus FAT count {fats}")
    if not 1 <= clusters <= MAX_CLUSTERS or fat_offset < 24 or fat_length * sector < (clusters + 2) * 4:
        raise VolumeError(f"exFAT boot sector: {clusters} clusters do not fit a FAT of {fat_length} sectors")
    if heap_offset < fat_offset + fats * fat_length or heap_offset + (clusters << cluster_shift) > volume_sectors:
        raise VolumeError("exFAT boot sector: the cluster heap overlaps the FAT or runs past the volume")
    if not 2 <= root <= clusters + 1:
        raise VolumeError(f"exFAT boot sector: root directory cluster {root} is outside the volume")
    return ExfatGeometry(
        sector,
        sector << cluster_shift,
        fat_offset,
        fat_length,
        fats,
        heap_offset,
        clusters,
        root,
        volume_sectors,
        flags,
    )


class ExfatTable:
    """The FAT in use (the second one when VolumeFlags says so and there are two)."""

    def __init__(self, device: RawDevice, geometry: ExfatGeometry) -> None:
        self.last = geometry.last_cluster
        which = 1 if geometry.flags & 1 and geometry.fats == 2 else 0
        offset = (geometry.fat_offset + which * geometry.fat_length) * geometry.sector
        self._table = array("I")
        self._table.frombytes(device.read(offset, (self.last + 1) * 4, "the file allocation table"))
        if sys.byteorder == "big":
            self._table.byteswap()

    def entry(self, cluster: int) -> tuple[int, int, str]:
        value = self._table[cluster]
        if value == END_OF_CHAIN:
            return END, 0, ""
        if value == BAD_CLUSTER:
            return BROKEN, 0, f"the chain holds cluster {cluster}, which the FAT marks bad"
        if value < 2 or value > END_OF_CHAIN - 8:
            return BROKEN, 0, f"cluster {cluster}'s FAT entry holds 0x{value:08x}, which is no next cluster"
        return NEXT, value, ""


class Bitmap:
    """The allocation bitmap: bit n says whether cluster n + 2 is in use."""

    def __init__(self, data: bytes, clusters: int) -> None:
        self.data = data
        self.clusters = clusters

    def is_set(self, bit: int) -> bool:
        return bool(self.data[bit // 8] >> (bit % 8) & 1)

    def first_free(self, first: int, count: int) -> int | None:
        """The first cluster of ``first .. first + count - 1`` that the bitmap calls free, or None."""
        bit, end = first - 2, first - 2 + count
        while bit < end and bit % 8:
            if not self.is_set(bit):
                return bit + 2
            bit += 1
        while end - bit >= 8:  # whole bytes at C speed: a long contiguous recording has millions of clusters
            stop = bit // 8 + (end - bit) // 8
            chunk = self.data[bit // 8 : stop]
            full = len(chunk) - len(chunk.lstrip(b"\xff"))
            if full == len(chunk):
                bit = stop * 8
                break
            bit = (bit // 8 + full) * 8
            return next(at + 2 for at in range(bit, bit + 8) if not self.is_set(at))
        while bit < end:
            if not self.is_set(bit):
                return bit + 2
            bit += 1
        return None


class UpCase:
    """The volume's up-case table (compressed: 0xFFFF n skips n identity mappings); names hash up-cased."""

    def __init__(self, data: bytes) -> None:
        units = struct.unpack(f"<{len(data) // 2}H", data[: len(data) // 2 * 2])
        self.mapping: dict[int, int] = {}
        code = index = 0
        while index < len(units):
            unit = units[index]
            if unit == 0xFFFF and index + 1 < len(units):
                code += units[index + 1]
                index += 2
                continue
            if unit != code:
                self.mapping[code] = unit
            code += 1
            index += 1

    def name_hash(self, name: bytes) -> int:
        """The NameHash of a UTF-16LE name (up-cased unit by unit)."""
        upper = bytearray()
        for at in range(0, len(name), 2):
            unit = name[at] | name[at + 1] << 8
            upper += self.mapping.get(unit, unit).to_bytes(2, "little")
        return rotate_sum(bytes(upper), 16)
