"""A strict, read-only walk of an exFAT volume, run before exfat-fuse or the kernel mounts it: the boot
region's checksum, the FAT, the allocation bitmap, every entry set (SetChecksum, NameHash), and for every
file and directory its clusters: contiguous (NoFatChain) runs checked for range and overlap, FAT chains for
loops, cross-links, range and length, all of them marked in use in the bitmap."""

from __future__ import annotations

from devices.volumes.base import VolumeError
from devices.volumes.chains import Chain, ClusterMap
from devices.volumes.exfat_entries import BITMAP, UPCASE, DirectoryProblem, SetItem, SystemEntry, parse
from devices.volumes.exfat_layout import Bitmap, ExfatGeometry, ExfatTable, UpCase, read_geometry, rotate_sum
from devices.volumes.readers import RawDevice
from devices.volumes.structure import Structure
from devices.volumes.tree import TreeWalker, folded_counts

MAX_DIR_BYTES = 256 << 20  # exFAT's limit for one directory


def check_exfat(device: RawDevice) -> Structure:
    """Walk the exFAT volume on ``device``; VolumeError only if the volume as a whole cannot be read."""
    geometry = read_geometry(device)
    structure = Structure("exfat", device.size)
    if geometry.volume_bytes > device.size:
        structure.add(
            "",
            "beyond_device",
            f"the volume claims {geometry.volume_bytes} bytes, the storage holds {device.size}: truncated",
        )
    if geometry.flags & 2:
        structure.add("", "not_unmounted", "the volume was not unmounted cleanly", damage=False)
    if geometry.flags & 4:
        structure.add("", "io_errors_recorded", "the volume records an earlier media failure", damage=False)
    on_device = min(geometry.last_cluster, (device.size - geometry.heap_bytes) // geometry.cluster + 1)
    claims = ClusterMap(geometry.last_cluster, on_device)
    _ExfatWalker(device, structure, claims, geometry, ExfatTable(device, geometry)).walk()
    return structure


class _ExfatWalker(TreeWalker):
    def __init__(
        self, device: RawDevice, structure: Structure, claims: ClusterMap, geometry: ExfatGeometry, table: ExfatTable
    ) -> None:
        super().__init__(device, structure, claims, geometry.cluster, geometry.cluster_offset)
        self.geometry = geometry
        self.table = table
        self.upcase: UpCase | None = None

    def walk(self) -> None:
        chain = self.claims.follow("", self.geometry.root_cluster, self.table.entry)
        self.chain_problem("", chain, "the root directory")
        root = self.read_directory("", chain, MAX_DIR_BYTES, 0)
        if root is None:
            raise VolumeError(f"the root directory cannot be read: {self.structure.findings[-1].detail}")
        entries = list(parse(root, None))
        bitmap = self._bitmap([e for e in entries if isinstance(e, SystemEntry) and e.kind == BITMAP])
        self.upcase = self._upcase([e for e in entries if isinstance(e, SystemEntry) and e.kind == UPCASE])
        self._directory("", root, 0)
        self._check_allocated(bitmap)
        self.finish()

    def _system_chain(self, entry: SystemEntry, what: str) -> Chain:
        chain = self.claims.follow("", entry.first_cluster, self.table.entry)
        if self.chain_problem("", chain, what):
            raise VolumeError(f"{what}: {chain.problem[1] if chain.problem else ''}")
        return chain

    def _bitmap(self, entries: list[SystemEntry]) -> Bitmap:
        # With two FATs (TexFAT) each has its bitmap; bit 0 of the flags says whose.
        active = self.geometry.flags & 1 if self.geometry.fats == 2 else 0
        chosen = [e for e in entries if e.flags & 1 == active]
        if not chosen:
            raise VolumeError("exFAT: the root directory has no allocation bitmap")
        entry = chosen[0]
        if entry.size * 8 < self.geometry.clusters:
            raise VolumeError(f"exFAT: the allocation bitmap ({entry.size} bytes) is too small for the volume")
        chain = self._system_chain(entry, "the allocation bitmap")
        data = b"".join(
            self.device.read(self.cluster_offset(first), count * self.cluster, "the allocation bitmap")
            for first, count in chain.runs
        )
        if len(data) < entry.size:
            raise VolumeError("exFAT: the allocation bitmap's clusters hold less than its size")
        return Bitmap(data[: entry.size], self.geometry.clusters)

    def _upcase(self, entries: list[SystemEntry]) -> UpCase | None:
        if not entries:
            raise VolumeError("exFAT: the root directory has no up-case table")
        entry = entries[0]
        chain = self._system_chain(entry, "the up-case table")
        data = b"".join(
            self.device.read(self.cluster_offset(first), count * self.cluster, "the up-case table")
            for first, count in chain.runs
        )[: entry.size]
        if len(data) < entry.size or rotate_sum(data, 32) != entry.checksum:
            # Linux's exfat falls back to its built-in table; name hashes are then not checked here.
            self.structure.add("", "upcase_checksum", "the up-case table's checksum does not match", damage=False)
            return None
        return UpCase(data)

    def _directory(self, path: str, data: bytes, depth: int) -> None:
        self.structure.directories.append(path)
        items: list[SetItem] = []
        for entry in parse(data, self.upcase):
            if isinstance(entry, DirectoryProblem):
                self.structure.add(path, "bad_directory", entry.detail)
            elif isinstance(entry, SetItem):
                items.append(entry)
        items.sort(key=lambda i: i.name)
        folded = folded_counts([i.name for i in items if i.name])
        for number, item in enumerate(items):
            name = item.name or f"(unnamed entry {number})"
            child = f"{path}/{name}" if path else name
            if item.problem:
                self.structure.add(child, *item.problem)
            named = self.name_problem(child, item.name, folded) if item.name else "unsafe"
            if not item.name:
                self.structure.skipped.add(child)
            if item.is_dir and item.first_cluster and self.loops_to_ancestor(child, item.first_cluster):
                self.dir_paths.add(child)
                continue
            chain = self._clusters(child, item)
            damaged = self.chain_problem(child, chain, "the directory" if item.is_dir else "the file")
            if named == "unsafe":
                continue
            if not item.is_dir:
                self.add_file(child, item.size, item.modified, item.created, chain, damaged)
                if item.valid_size < item.size and not item.problem:
                    self.structure.add(
                        child, "past_valid_length", f"bytes past {item.valid_size} read as zeros", damage=False
                    )
                continue
            self.dir_paths.add(child)
            if damaged or item.problem or named:
                continue
            if item.size % self.cluster or item.size == 0 or chain.clusters * self.cluster != item.size:
                self.structure.add(
                    child, "bad_directory", f"a directory size of {item.size} bytes that its clusters do not hold"
                )
                continue
            sub = self.read_directory(child, chain, MAX_DIR_BYTES, depth + 1)
            if sub is not None:
                self._directory(child, sub, depth + 1)

    def _clusters(self, path: str, item: SetItem) -> Chain:
        needed = -(-item.size // self.cluster)
        if item.first_cluster == 0:
            return Chain()
        if item.contiguous:
            return self.claims.claim_run(path, item.first_cluster, needed)
        return self.claims.follow(path, item.first_cluster, self.table.entry)

    def _check_allocated(self, bitmap: Bitmap) -> None:
        """Every cluster a file, a directory or the volume's own structures use must be marked in use."""
        reported: set[str] = set()
        for owner in self.claims.owners:
            if owner.path in reported:
                continue
            for first, count in owner.runs:
                free = bitmap.first_free(first, count)
                if free is not None:
                    self.structure.add(
                        owner.path, "not_allocated", f"cluster {free} is in use but the bitmap marks it free"
                    )
                    reported.add(owner.path)
                    break
