"""What the FAT and exFAT walks share: names checked per folder, a file's chain checked against its size,
directories read through their validated clusters, and the rule that a damaged directory lists nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from devices.volumes.base import VolumeError, check_entry_name
from devices.volumes.chains import Chain, ClusterMap
from devices.volumes.readers import RawDevice
from devices.volumes.structure import Structure, WalkedFile

MAX_DEPTH = 32  # cameras file recordings two or three folders deep


class TreeWalker:
    def __init__(
        self,
        device: RawDevice,
        structure: Structure,
        claims: ClusterMap,
        cluster: int,
        cluster_offset: Callable[[int], int],
    ) -> None:
        self.device = device
        self.structure = structure
        self.claims = claims
        self.cluster = cluster
        self.cluster_offset = cluster_offset
        self.dir_paths: set[str] = set()  # every directory entry met, walked or not

    def name_problem(self, path: str, name: str, folded: dict[str, int]) -> str | None:
        """Record (for ``path``) why ``name`` cannot be trusted: "unsafe" (no path may carry it: never listed)
        or "clash" (another entry of the folder has it, ignoring case); None if it is fine."""
        try:
            check_entry_name(name)
        except VolumeError as exc:
            self.structure.add(path, "bad_name", str(exc))
            self.structure.skipped.add(path)
            return "unsafe"
        if folded.get(name.casefold(), 0) > 1:  # names are looked up case-blind: one could be read as the other
            self.structure.add(path, "bad_name", f"another entry in the same folder is also named {name!r}")
            return "clash"
        return None

    def loops_to_ancestor(self, path: str, first: int) -> bool:
        """A folder whose first cluster is one of its own ancestors' (a directory loop): only that entry is
        damaged, the ancestor is not, so it is recorded here and never claimed as a cross-link."""
        owner = self.claims.owner_of(first)
        if owner is None or not (owner == "" or path.startswith(owner + "/")):
            return False
        self.structure.add(path, "bad_directory", f"a directory loop: the folder leads back to {owner or '/'}")
        return True

    def chain_problem(self, path: str, chain: Chain, what: str) -> bool:
        """Record why ``chain`` is damaged (a cross-link is recorded for both owners once the walk is over)."""
        if chain.problem is None:
            return False
        reason, detail = chain.problem
        if reason != "cross_link":
            self.structure.add(path, reason, f"{what}: {detail}")
        return True

    def add_file(
        self, path: str, size: int, modified: datetime | None, created: datetime | None, chain: Chain, damaged: bool
    ) -> None:
        needed = -(-size // self.cluster)
        if not damaged and chain.clusters < needed:
            self.structure.add(
                path, "short_chain", f"its clusters hold {chain.clusters * self.cluster} bytes, its size is {size}"
            )
        elif not damaged and chain.clusters > needed:
            extra = chain.clusters - needed
            self.structure.add(path, "long_chain", f"{extra} clusters more than its size needs", damage=False)
        extents = []
        left = size
        for first, count in chain.runs:
            if left <= 0:
                break
            length = min(count * self.cluster, left)
            extents.append((self.cluster_offset(first), length))
            left -= length
        if path not in self.structure.files:  # an exact duplicate name keeps the first (both have a finding)
            self.structure.files[path] = WalkedFile(path, size, modified, created, tuple(extents))

    def read_directory(self, path: str, chain: Chain, limit: int, depth: int) -> bytes | None:
        """A directory's bytes through its chain, or None with a finding (too large, too deep, unreadable)."""
        if chain.clusters * self.cluster > limit:
            self.structure.add(
                path, "bad_directory", f"the directory is larger than the filesystem allows ({limit} bytes)"
            )
            return None
        if depth > MAX_DEPTH:
            self.structure.add(path, "bad_directory", f"folders nested deeper than {MAX_DEPTH} levels")
            return None
        try:
            return b"".join(
                self.device.read(self.cluster_offset(first), count * self.cluster, f"directory {path or '/'}")
                for first, count in chain.runs
            )
        except VolumeError as exc:
            self.structure.add(path, "read_error", str(exc))
            return None

    def finish(self) -> None:
        """Both owners of every shared cluster are damaged; a damaged directory's files are not listed (their
        entries cannot be trusted: a cross-linked directory may hold another file's bytes) and stay on the
        camera with the directory's finding."""
        for path, detail in self.claims.cross_linked().items():
            self.structure.add(path, "cross_link", detail)
        damaged = self.structure.damaged() & self.dir_paths
        self.structure.skipped |= damaged
        if damaged:
            self.structure.directories = [d for d in self.structure.directories if not _under(d, damaged)]
            self.structure.files = {p: f for p, f in self.structure.files.items() if not _under(p, damaged)}


def folded_counts(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    return counts


def _under(path: str, directories: set[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in directories)
