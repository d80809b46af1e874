"""Cluster chains, validated: shared by the FAT and exFAT structural checks.

Every file and directory claims its clusters in one map of the volume. A chain that comes back to a cluster
it already passed loops; a cluster claimed twice is a cross-link (both owners are damaged); a chain must stay
inside the volume's clusters and on the device, and hold no free, bad or reserved entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

FREE, TAKEN, CURRENT = 0, 1, 2  # per cluster in the claims map; CURRENT: the chain being walked

# What a FAT entry says (the FAT and exFAT checks classify their own values): (kind, next cluster, detail).
END = -1  # end of chain
NEXT = 0  # the chain goes on at the next cluster (range checked here)
BROKEN = 1  # free, bad or reserved: the chain is damaged, detail says why


@dataclass
class Chain:
    """Where one file's or directory's data lies, as far as the chain could be followed."""

    runs: list[tuple[int, int]] = field(default_factory=list)  # (first cluster, count), in file order
    problem: tuple[str, str] | None = None  # (reason, detail): why the chain is damaged
    crossed: int | None = None  # the first cluster found claimed by another chain

    @property
    def clusters(self) -> int:
        return sum(n for _, n in self.runs)

    def _add(self, cluster: int) -> None:
        if self.runs and self.runs[-1][0] + self.runs[-1][1] == cluster:
            first, count = self.runs[-1]
            self.runs[-1] = (first, count + 1)
        else:
            self.runs.append((cluster, 1))


@dataclass
class Owner:
    path: str
    runs: list[tuple[int, int]]


class ClusterMap:
    """Claims on the clusters ``2 .. last`` of one volume. ``on_device`` is the last cluster whose data the
    device really holds (a truncated card or image holds fewer than the volume claims)."""

    def __init__(self, last: int, on_device: int) -> None:
        self.last = last
        self.on_device = on_device
        self.claims = bytearray(last + 1)
        self.owners: list[Owner] = []
        self.crossings: list[tuple[str, int]] = []  # (path, cluster): claimed when already taken

    def _check(self, cluster: int) -> tuple[str, str] | None:
        if cluster < 2 or cluster > self.last:
            return "out_of_range", f"cluster {cluster} is outside the volume (clusters 2..{self.last})"
        if cluster > self.on_device:
            return "beyond_device", f"cluster {cluster} lies beyond the end of the storage (a truncated card)"
        return None

    def follow(self, path: str, start: int, entry: Callable[[int], tuple[int, int, str]]) -> Chain:
        """Walk the chain from ``start`` to its end or its first fault. ``entry(c)`` classifies cluster c's FAT
        entry as (END, 0, ""), (NEXT, next cluster, "") or (BROKEN, 0, why)."""
        chain = Chain()
        cluster = start
        try:
            while True:
                problem = self._check(cluster)
                if problem is not None:
                    chain.problem = problem
                    break
                state = self.claims[cluster]
                if state == CURRENT:
                    chain.problem = (
                        "chain_loop",
                        f"the cluster chain comes back to cluster {cluster} after {chain.clusters} clusters",
                    )
                    break
                if state == TAKEN:
                    chain.crossed = cluster
                    self.crossings.append((path, cluster))
                    chain.problem = ("cross_link", f"cluster {cluster} also belongs to another file or directory")
                    break
                self.claims[cluster] = CURRENT
                chain._add(cluster)
                kind, value, detail = entry(cluster)
                if kind == END:
                    break
                if kind != NEXT:
                    chain.problem = ("bad_fat_entry", detail)
                    break
                cluster = value
        finally:
            for first, count in chain.runs:
                self.claims[first : first + count] = b"\x01" * count
            self.owners.append(Owner(path, chain.runs))
        return chain

    def claim_run(self, path: str, first: int, count: int) -> Chain:
        """Claim ``count`` contiguous clusters from ``first`` (exFAT's NoFatChain files and directories)."""
        chain = Chain()
        if count <= 0:
            return chain
        for probe in (first, first + count - 1):
            problem = self._check(probe)
            if problem is not None:
                chain.problem = problem
                self.owners.append(Owner(path, []))
                return chain
        taken = self.claims.find(b"\x01", first, first + count)
        if taken >= 0:
            chain.crossed = taken
            self.crossings.append((path, taken))
            chain.problem = ("cross_link", f"cluster {taken} also belongs to another file or directory")
            count = taken - first
        if count:
            self.claims[first : first + count] = b"\x01" * count
            chain.runs.append((first, count))
        self.owners.append(Owner(path, chain.runs))
        return chain

    def cross_linked(self) -> dict[str, str]:
        """Every owner of a cluster that was claimed twice, with the other party: path -> detail."""
        found: dict[str, str] = {}
        for path, cluster in self.crossings:
            for owner in self.owners:
                if owner.path != path and any(a <= cluster < a + n for a, n in owner.runs):
                    found.setdefault(path, f"shares cluster {cluster} with {owner.path or '/'}")
                    found.setdefault(owner.path, f"shares cluster {cluster} with {path or '/'}")
                    break
        return found

    def owner_of(self, cluster: int) -> str | None:
        """Who claimed ``cluster`` (a scan: only asked about a cluster already found taken)."""
        if not 2 <= cluster <= self.last or self.claims[cluster] == FREE:
            return None
        return next((o.path for o in self.owners if any(a <= cluster < a + n for a, n in o.runs)), None)
