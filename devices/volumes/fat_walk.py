"""A strict, read-only walk of a FAT12/16/32 volume: every directory and file, every cluster chain validated.

Neither pyfatfs nor the kernel's vfat refuses a chain that loops back within the file's size (they read the
same clusters again) or two files sharing clusters; this walk does, per file, so the good recordings on a
damaged card are still copied and the damaged ones stay on it. See docs/camera-filesystems.md.
"""

from __future__ import annotations

import struct

from devices.volumes.base import VolumeError
from devices.volumes.chains import Chain, ClusterMap
from devices.volumes.fat_entries import DirItem, parse
from devices.volumes.fat_layout import FatGeometry, FatTable, read_geometry
from devices.volumes.readers import RawDevice
from devices.volumes.structure import Structure
from devices.volumes.tree import TreeWalker, folded_counts

MAX_DIR_BYTES = 65536 * 32  # FAT's limit of 65536 entries per directory
DOT, DOTDOT = b".          ", b"..         "


def check_fat(device: RawDevice) -> Structure:
    """Walk the FAT volume on ``device``; VolumeError only if the volume as a whole cannot be read."""
    geometry = read_geometry(device.read(0, 512, "the FAT boot sector"))
    structure = Structure("vfat", device.size)
    if geometry.volume_bytes > device.size:
        structure.add(
            "",
            "beyond_device",
            f"the volume claims {geometry.volume_bytes} bytes, the storage holds {device.size}: truncated",
        )
    on_device = min(geometry.last_cluster, (device.size - geometry.data_offset) // geometry.cluster + 1)
    table = FatTable(device, geometry)
    clean, no_errors = table.clean_flags()
    if not clean:
        structure.add("", "not_unmounted", "the volume was not unmounted cleanly", damage=False)
    if not no_errors:
        structure.add("", "io_errors_recorded", "the volume's FAT records an earlier I/O error", damage=False)
    claims = ClusterMap(geometry.last_cluster, on_device)
    _FatWalker(device, structure, claims, geometry, table).walk()
    return structure


class _FatWalker(TreeWalker):
    def __init__(
        self, device: RawDevice, structure: Structure, claims: ClusterMap, geometry: FatGeometry, table: FatTable
    ) -> None:
        super().__init__(device, structure, claims, geometry.cluster, geometry.cluster_offset)
        self.geometry = geometry
        self.table = table
        # Every FAT writer starts a folder with "." (itself) and ".." (its parent): the witnesses that the boot
        # sector's layout is right. A layout that is wrong but in range moves every cluster, and no chain shows it.
        self.folders = 0
        self.folders_without_dots = 0

    def walk(self) -> None:
        if self.geometry.bits == 32:
            chain = self.claims.follow("", self.geometry.root_cluster, self.table.entry)
            self.chain_problem("", chain, "the root directory")
            data = self.read_directory("", chain, MAX_DIR_BYTES, 0)
            if data is None:
                raise VolumeError(f"the root directory cannot be read: {self.structure.findings[-1].detail}")
        else:
            data = self.device.read(self.geometry.root_offset, self.geometry.root_bytes, "the root directory")
        self._directory("", data, 0, 0)
        if self.folders and self.folders_without_dots == self.folders:
            raise VolumeError(
                "no folder begins with its own '.' and '..' entries: the boot sector's layout is wrong (damaged)"
            )
        self.finish()

    def _directory(self, path: str, data: bytes, depth: int, cluster: int) -> None:
        self.structure.directories.append(path)
        items = sorted(parse(data, path == "", self.geometry.bits == 32), key=lambda i: i.name)
        if path == "" and any(i.name in (".", "..") for i in items):
            raise VolumeError("the root directory holds '.' entries: the boot sector points at another folder")
        folded = folded_counts([i.name for i in items])
        for item in items:
            child = f"{path}/{item.name}" if path else item.name
            if item.problem:
                self.structure.add(child, "bad_entry", item.problem)
            named = self.name_problem(child, item.name, folded)
            if named == "unsafe":
                if item.start:  # its clusters are still taken: a file sharing them is cross-linked
                    self.claims.follow(child, item.start, self.table.entry)
                continue
            if item.is_dir:
                self._subdirectory(child, item, depth, cluster, listed=not (item.problem or named))
            else:
                chain = self.claims.follow(child, item.start, self.table.entry) if item.start else Chain()
                damaged = self.chain_problem(child, chain, "the file")
                self.add_file(child, item.size, item.modified, item.created, chain, damaged)

    def _subdirectory(self, path: str, item: DirItem, depth: int, parent: int, listed: bool) -> None:
        self.dir_paths.add(path)
        if item.start == 0:
            self.structure.add(path, "bad_directory", "a directory entry without clusters")
            return
        if self.loops_to_ancestor(path, item.start):
            return
        chain = self.claims.follow(path, item.start, self.table.entry)
        if self.chain_problem(path, chain, "the directory") or not listed:
            return
        data = self.read_directory(path, chain, MAX_DIR_BYTES, depth + 1)
        if data is None:
            return
        self.folders += 1
        if not self._dots_fit(data, item.start, parent):
            self.folders_without_dots += 1
            self.structure.add(path, "bad_directory", "the folder does not begin with its own '.' and '..' entries")
            return
        self._directory(path, data, depth + 1, item.start)

    def _dots_fit(self, data: bytes, own: int, parent: int) -> bool:
        def start(at: int) -> int:
            high = struct.unpack_from("<H", data, at + 20)[0] if self.geometry.bits == 32 else 0
            return high << 16 | struct.unpack_from("<H", data, at + 26)[0]

        if len(data) < 64 or data[:11] != DOT or data[32:43] != DOTDOT:
            return False
        parents = {parent} if parent else {0, self.geometry.root_cluster}  # in the root: 0, or the root cluster
        return start(0) == own and start(32) in parents
