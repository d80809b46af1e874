"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

Hashes are SHA-256 with the RFC's domain separation (0x00 for leaves, 0x01 for interior nodes), so a
leaf can never be passed off as a node. Proof generation takes the list of leaf hashes (the log keeps
them in a 32-byte-per-leaf file); it costs O(n) hashing per proof and never recurses. Verification is
the iterative algorithm of RFC 9162 §2.1.3.2 and §2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """MTH of a one-entry list: SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleAccumulator:
    """Append-only Merkle tree state in O(log n) memory: the roots of its perfect subtrees.

    The tree of n leaves splits into perfect subtrees, one per set bit of n, largest (leftmost) first.
    Appending a leaf merges equal-height subtrees like a binary counter carries, so the log can stream
    a million leaf hashes on open and keep only ~20 hashes.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self, size: int = 0, peaks: Iterable[bytes] = ()) -> None:
        """Start empty, or resume from a saved ``(size, peaks)`` pair."""
        peaks = list(peaks)
        if size < 0 or len(peaks) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {max(size, 0).bit_count()} peaks, not {len(peaks)}")
        if any(len(p) != HASH_SIZE for p in peaks):
            raise ValueError("peaks must be 32-byte hashes")
        self._size = size
        self._peaks = peaks

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees, left to right (the state to persist)."""
        return tuple(self._peaks)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (not leaf data) on the right."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("leaf must be a 32-byte leaf hash")
        node = leaf
        n = self._size
        # Each trailing one bit of the old size is a perfect subtree of the new node's height.
        while n & 1:
            node = node_hash(self._peaks.pop(), node)
            n >>= 1
        self._peaks.append(node)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of the leaves so far, in O(log n)."""
        if not self._peaks:
            return EMPTY_ROOT
        # MTH splits at the largest power of two, so the peaks fold from the right.
        node = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            node = node_hash(peak, node)
        return node

    def copy(self) -> MerkleAccumulator:
        """An independent accumulator with the same state."""
        return MerkleAccumulator(self._size, self._peaks)


def _range_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) without copying the slice."""
    acc = MerkleAccumulator()
    acc.extend(leaves[i] for i in range(lo, hi))
    return acc.root()


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n > 1): where MTH splits a list of n."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the whole list of leaf hashes; SHA-256("") for an empty tree."""
    return _range_root(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) of RFC 6962 §2.1.1, leaf-side sibling first."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside a tree of size {n}")
    siblings: list[bytes] = []
    lo, hi = 0, n
    # Walk down from the root; each step records the subtree the leaf is not in.
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            siblings.append(_range_root(leaf_hashes, mid, hi))
            hi = mid
        else:
            siblings.append(_range_root(leaf_hashes, lo, mid))
            lo = mid
    siblings.reverse()
    return siblings


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, D[n]) of RFC 6962 §2.1.2; empty when old_size is 0 or n."""
    n = len(leaf_hashes)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} is outside 0..{n}")
    if old_size in (0, n):
        return []
    nodes: list[bytes] = []
    lo, hi, m = 0, n, old_size
    whole_old_tree = True  # SUBPROOF's flag b: the old tree's root is known to the verifier
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            nodes.append(_range_root(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            nodes.append(_range_root(leaf_hashes, lo, lo + k))
            lo, m, whole_old_tree = lo + k, m - k, False
    if not whole_old_tree:
        nodes.append(_range_root(leaf_hashes, lo, hi))
    nodes.reverse()
    return nodes


def _all_hashes(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` put ``leaf_hash`` at ``index`` in the tree ``root`` of ``size``?"""
    if not 0 <= index < size or not _all_hashes(leaf_hash, root, *proof):
        return False
    fn, sn = index, size - 1
    node = leaf_hash
    for sibling in proof:
        if sn == 0:
            return False  # proof longer than the path
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            # A right-edge node with no right sibling is promoted unchanged up the levels.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``new_root`` of ``new_size`` an append-only extension of ``old_root``?"""
    if not 0 <= old_size <= new_size or not _all_hashes(old_root, new_root, *proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # every tree extends the empty tree
    if not proof:
        return False
    path = list(proof)
    # When the old tree is a perfect subtree its root is the proof's implicit first node.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, node)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
