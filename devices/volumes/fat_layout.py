"""FAT12/16/32 on disk: the boot sector's geometry, checked the way Linux's vfat checks it (fs/fat/inode.c
fat_read_bpb), and the allocation table read from the device."""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

from devices.volumes.base import VolumeError
from devices.volumes.chains import BROKEN, END, NEXT
from devices.volumes.readers import RawDevice

MAX_FAT12 = 4084  # more clusters than this is FAT16 (the kernel's MAX_FAT12; FAT32 is told by the layout)
MAX_CLUSTERS = 1 << 26  # far beyond any camera card (a 1 TB card of 32 KiB clusters has 2^25): bounds memory
EOC = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}
BAD = {12: 0xFF7, 16: 0xFFF7, 32: 0x0FFFFFF7}


@dataclass(frozen=True)
class FatGeometry:
    bits: int  # 12, 16 or 32
    sector: int  # bytes per sector
    cluster: int  # bytes per cluster
    reserved: int  # sectors before the first FAT
    fats: int
    fat_sectors: int
    root_entries: int  # FAT12/16: entries in the fixed root directory
    root_cluster: int  # FAT32: first cluster of the root directory
    total_sectors: int
    clusters: int  # data clusters: numbered 2 .. clusters + 1

    @property
    def last_cluster(self) -> int:
        return self.clusters + 1

    @property
    def fat_offset(self) -> int:
        return self.reserved * self.sector

    @property
    def root_offset(self) -> int:  # FAT12/16
        return (self.reserved + self.fats * self.fat_sectors) * self.sector

    @property
    def root_bytes(self) -> int:
        return self.root_entries * 32

    @property
    def data_offset(self) -> int:
        root_sectors = -(-self.root_bytes // self.sector)
        return self.root_offset + root_sectors * self.sector

    @property
    def volume_bytes(self) -> int:
        return self.total_sectors * self.sector

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - 2) * self.cluster


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def read_geometry(boot: bytes) -> FatGeometry:
    """The boot sector's geometry; VolumeError if it is not one a FAT driver would mount."""
    if len(boot) < 512:
        raise VolumeError("FAT boot sector is shorter than 512 bytes")
    sector, per_cluster, reserved, fats, root_entries, total16, media, fat16 = struct.unpack_from("<HBHBHHBH", boot, 11)
    total32 = struct.unpack_from("<I", boot, 32)[0]
    fat32, root_cluster = struct.unpack_from("<I", boot, 36)[0], struct.unpack_from("<I", boot, 44)[0]
    if sector not in (512, 1024, 2048, 4096):
        raise VolumeError(f"FAT boot sector: bogus sector size {sector}")
    if not _power_of_two(per_cluster):
        raise VolumeError(f"FAT boot sector: bogus sectors per cluster {per_cluster}")
    if reserved == 0 or fats == 0:
        raise VolumeError(f"FAT boot sector: bogus reserved sectors {reserved} or FAT count {fats}")
    if media != 0xF0 and media < 0xF8:
        raise VolumeError(f"FAT boot sector: bogus media byte 0x{media:02x}")
    is_fat32 = fat16 == 0 and fat32 != 0
    fat_sectors = fat32 if is_fat32 else fat16
    if fat_sectors == 0:
        raise VolumeError("FAT boot sector: the FAT has no sectors")
    if is_fat32:
        root_entries = 0
    elif root_entries % (sector // 32):
        raise VolumeError(f"FAT boot sector: bogus number of root directory entries {root_entries}")
    total = total16 or total32
    geometry = FatGeometry(0, sector, sector * per_cluster, reserved, fats, fat_sectors, root_entries, 0, total, 0)
    data_sectors = total - geometry.data_offset // sector
    if data_sectors <= 0:
        raise VolumeError(f"FAT boot sector: {total} sectors leave no room for data")
    clusters = data_sectors // per_cluster
    bits = 32 if is_fat32 else (16 if clusters > MAX_FAT12 else 12)
    capacity = fat_sectors * sector * 8 // bits - 2
    if clusters > min(capacity, MAX_CLUSTERS):
        raise VolumeError(f"FAT boot sector: {clusters} clusters do not fit a FAT of {fat_sectors} sectors")
    if is_fat32 and not 2 <= root_cluster <= clusters + 1:
        raise VolumeError(f"FAT boot sector: root directory cluster {root_cluster} is outside the volume")
    return FatGeometry(
        bits, sector, sector * per_cluster, reserved, fats, fat_sectors, root_entries, root_cluster, total, clusters
    )


class FatTable:
    """The first FAT (the one the kernel reads), entries 0 .. last cluster."""

    def __init__(self, device: RawDevice, geometry: FatGeometry) -> None:
        self.bits = geometry.bits
        self.last = geometry.last_cluster
        length = -(-(self.last + 1) * self.bits // 8)
        data = device.read(geometry.fat_offset, length, "the file allocation table")
        if self.bits == 12:
            self._raw = data
        else:
            self._table = array("I" if self.bits == 32 else "H")
            usable = len(data) - len(data) % self._table.itemsize
            self._table.frombytes(data[:usable])
            if sys.byteorder == "big":
                self._table.byteswap()

    def value(self, cluster: int) -> int:
        if self.bits == 32:
            return self._table[cluster] & 0x0FFFFFFF
        if self.bits == 16:
            return self._table[cluster]
        pair = self._raw[cluster * 3 // 2] | self._raw[cluster * 3 // 2 + 1] << 8
        return pair >> 4 if cluster & 1 else pair & 0xFFF

    def entry(self, cluster: int) -> tuple[int, int, str]:
        """Cluster ``cluster``'s entry classified for chains.ClusterMap.follow."""
        value = self.value(cluster)
        if value >= EOC[self.bits]:
            return END, 0, ""
        if value == 0:
            return BROKEN, 0, f"the chain runs into cluster {cluster}, which the FAT marks free"
        if value == BAD[self.bits]:
            return BROKEN, 0, f"the chain holds cluster {cluster}, which the FAT marks bad"
        if value == 1:
            return BROKEN, 0, f"cluster {cluster}'s FAT entry holds the reserved value 1"
        return NEXT, value, ""

    def clean_flags(self) -> tuple[bool, bool]:
        """(unmounted cleanly, no I/O errors recorded): FAT16/32 keep them in entry 1; FAT12 has none."""
        if self.bits == 12:
            return True, True
        top = 0x08000000 if self.bits == 32 else 0x8000
        value = self.value(1)
        return bool(value & top), bool(value & (top >> 1))

    def used(self, cluster: int) -> bool:
        return self.value(cluster) != 0
