"""RFC 6962 Merkle trees: published CT test vectors, plus exhaustive checks against a reference MTH.

The vectors are the ones in github.com/transparency-dev/merkle proof/verify_test.go (inherited from
certificate-transparency-go): eight leaves, the roots of every prefix, and inclusion / consistency proofs.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from appliance.evidence import merkle
from appliance.evidence.merkle import (
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]
ROOTS = [  # ROOTS[i] is the root of the first i + 1 leaves
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (0-based leaf index, tree size, proof); the Go file numbers leaves from 1
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]  # fmt: skip
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MAX_SIZE = 70


# --- Reference: RFC 6962 §2.1 written literally (recursive, slicing), independent of the module. ---


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = ref_split(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = ref_split(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = ref_split(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# --- Helpers ---


def data(n: int) -> list[bytes]:
    """n distinct leaf data, deterministic."""
    return [b"entry %d" % i for i in range(n)]


def hashes(n: int) -> list[bytes]:
    return [leaf_hash(d) for d in data(n)]


def flip(h: bytes, pos: int, bit: int = 0) -> bytes:
    b = bytearray(h)
    b[pos] ^= 1 << bit
    return bytes(b)


def unhex(proof: list[str]) -> list[bytes]:
    return [bytes.fromhex(p) for p in proof]


# --- Published vectors ---


def test_hash_primitives() -> None:
    assert merkle.EMPTY_ROOT.hex() == EMPTY
    assert root([]).hex() == EMPTY
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


def test_published_roots() -> None:
    for size, expected in enumerate(ROOTS, start=1):
        assert root(LEAF_HASHES[:size]).hex() == expected
        assert ref_mth(LEAVES[:size]).hex() == expected
    assert root(LEAF_HASHES).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    assert inclusion_proof(index, LEAF_HASHES[:size]) == unhex(proof)
    assert verify_inclusion(index, size, LEAF_HASHES[index], unhex(proof), bytes.fromhex(ROOTS[size - 1]))


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    old_root, new_root = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    assert consistency_proof(old, LEAF_HASHES[:new]) == unhex(proof)
    assert verify_consistency(old, new, old_root, new_root, unhex(proof))


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION[:4])
def test_published_inclusion_probes_fail(index: int, size: int, proof: list[str]) -> None:
    """The corruptions transparency-dev applies to each vector must all be rejected."""
    leaf, good, rt = LEAF_HASHES[index], unhex(proof), bytes.fromhex(ROOTS[size - 1])
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes = [
        (index - 1, size, leaf, good, rt),
        (index + 1, size, leaf, good, rt),
        (index ^ 2, size, leaf, good, rt),
        (index, size * 2, leaf, good, rt),
        (index, size // 2, leaf, good, rt),
        (index, size, b"WrongLeaf", good, rt),
        (index, size, leaf, good, bytes.fromhex(EMPTY)),
        (index, size, leaf, good, some),
        (index, size, leaf, [*good, b""], rt),
        (index, size, leaf, [*good, rt], rt),
        (index, size, leaf, [b"", *good], rt),
        (index, size, leaf, [rt, *good], rt),
        (index, size, leaf, good[:-1], rt),
        (index, size, leaf, [good[0], some, *good[1:]], rt),
    ]
    probes += [(index, size, leaf, [*good[:i], flip(good[i], 0, 3), *good[i + 1 :]], rt) for i in range(len(good))]
    for probe in probes:
        assert not verify_inclusion(*probe), probe


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY[1:])
def test_published_consistency_probes_fail(old: int, new: int, proof: list[str]) -> None:
    r1, r2, good = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1]), unhex(proof)
    probes = [
        (old - 1, new, r1, r2, good),
        (old + 1, new, r1, r2, good),
        (old ^ 2, new, r1, r2, good),
        (old, new * 2, r1, r2, good),
        (old, new // 2, r1, r2, good),
        (old, new, b"WrongRoot", r2, good),
        (old, new, r1, b"WrongRoot", good),
        (old, new, r2, r1, good),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*good, b""]),
        (old, new, r1, r2, [*good, r1]),
        (old, new, r1, r2, [*good, r2]),
        (old, new, r1, r2, [b"", *good]),
        (old, new, r1, r2, [r1, *good]),
        (old, new, r1, r2, [r2, *good]),
        (old, new, r1, r2, [good[0], *good]),
        (old, new, r1, r2, good[:-1]),
    ]
    probes += [(old, new, r1, r2, [*good[:i], flip(good[i], 0, 4), *good[i + 1 :]]) for i in range(len(good))]
    for probe in probes:
        assert not verify_consistency(*probe), probe


def test_consistency_edge_cases() -> None:
    """transparency-dev's table for trivial sizes: empty trees, equal sizes, time travel."""
    r1, r2, e = b"1" * 32, b"2" * 32, bytes.fromhex(EMPTY)
    assert verify_consistency(0, 0, r1, r1, [])
    assert verify_consistency(0, 1, r1, r2, [])
    assert verify_consistency(1, 1, r2, r2, [])
    assert not verify_consistency(0, 0, r1, r2, [])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert not verify_consistency(1, 0, r1, r2, [])
    assert not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(1, 2, r1, r2, [])
    for old, new in ((0, 0), (0, 1), (1, 1)):
        assert not verify_consistency(old, new, e, e, [e])


def test_inclusion_edge_cases() -> None:
    h = leaf_hash(b"data")
    assert verify_inclusion(0, 1, h, [], h)
    assert not verify_inclusion(0, 1, b"", [], h)
    assert not verify_inclusion(0, 1, h, [], b"")
    for index, size in ((0, 0), (1, 0), (2, 1), (-1, 1)):
        assert not verify_inclusion(index, size, h, [], h)
    with pytest.raises(ValueError):
        inclusion_proof(1, [h])
    with pytest.raises(ValueError):
        inclusion_proof(-1, [h])
    with pytest.raises(ValueError):
        consistency_proof(2, [h])


# --- Exhaustive / randomized properties against the reference ---


def test_root_and_accumulator_match_reference_for_every_prefix() -> None:
    d = data(MAX_SIZE)
    lh = [leaf_hash(x) for x in d]
    acc = MerkleAccumulator()
    assert acc.root() == ref_mth([])
    for n in range(1, MAX_SIZE + 1):
        acc.append(lh[n - 1])
        expected = ref_mth(d[:n])
        assert root(lh[:n]) == expected
        assert acc.root() == expected
        assert acc.size == n
        assert len(acc.peaks) == n.bit_count()  # O(log n) state
        resumed = MerkleAccumulator(acc.size, acc.peaks)
        assert resumed.root() == expected


def test_accumulator_resume_and_copy() -> None:
    lh = hashes(37)
    acc = MerkleAccumulator()
    acc.extend(lh[:20])
    fork = acc.copy()
    resumed = MerkleAccumulator(acc.size, acc.peaks)
    for a in (acc, fork, resumed):
        a.extend(lh[20:])
        assert a.root() == root(lh)
    with pytest.raises(ValueError):
        MerkleAccumulator(3, [lh[0]])  # 3 leaves need 2 peaks
    with pytest.raises(ValueError):
        acc.append(b"short")


def test_inclusion_proofs_every_index_up_to_70() -> None:
    for n in range(1, MAX_SIZE + 1):
        d = data(n)
        lh = [leaf_hash(x) for x in d]
        rt = root(lh)
        for i in range(n):
            proof = inclusion_proof(i, lh)
            assert proof == ref_path(i, d), (i, n)
            assert verify_inclusion(i, n, lh[i], proof, rt), (i, n)
            assert not verify_inclusion(i, 2 * n, lh[i], proof, rt)  # a different tree height
            if n > 1:
                assert not verify_inclusion((i + 1) % n, n, lh[i], proof, rt)


def test_tampered_inclusion_fails() -> None:
    rng = random.Random(6962)
    for _ in range(300):
        n = rng.randint(1, MAX_SIZE)
        i = rng.randrange(n)
        lh = hashes(n)
        rt, proof = root(lh), inclusion_proof(i, lh)
        pos, bit = rng.randrange(32), rng.randrange(8)
        assert not verify_inclusion(i, n, flip(lh[i], pos, bit), proof, rt)
        assert not verify_inclusion(i, n, lh[i], proof, flip(rt, pos, bit))
        for k in range(len(proof)):
            bad = [*proof[:k], flip(proof[k], pos, bit), *proof[k + 1 :]]
            assert not verify_inclusion(i, n, lh[i], bad, rt)
        if proof:
            assert not verify_inclusion(i, n, lh[i], proof[:-1], rt)
        assert not verify_inclusion(i, n, lh[i], [*proof, rt], rt)


def test_every_byte_of_one_inclusion_proof_matters() -> None:
    lh = hashes(13)
    rt, proof = root(lh), inclusion_proof(5, lh)
    for k in range(len(proof)):
        for pos in range(32):
            bad = [*proof[:k], flip(proof[k], pos, pos % 8), *proof[k + 1 :]]
            assert not verify_inclusion(5, 13, lh[5], bad, rt)
    for pos in range(32):
        assert not verify_inclusion(5, 13, flip(lh[5], pos), proof, rt)
        assert not verify_inclusion(5, 13, lh[5], proof, flip(rt, pos))


def test_consistency_proofs_all_pairs_up_to_70() -> None:
    d = data(MAX_SIZE)
    lh = [leaf_hash(x) for x in d]
    roots = [root(lh[:n]) for n in range(MAX_SIZE + 1)]
    rng = random.Random(9162)
    for new in range(MAX_SIZE + 1):
        for old in range(new + 1):
            proof = consistency_proof(old, lh[:new])
            if 0 < old < new:
                assert proof == ref_proof(old, d[:new]), (old, new)
            else:
                assert proof == []
            assert verify_consistency(old, new, roots[old], roots[new], proof), (old, new)
            if old == 0:
                continue  # the empty tree is consistent with anything, so its root is not checked
            pos, bit = rng.randrange(32), rng.randrange(8)
            assert not verify_consistency(old, new, flip(roots[old], pos, bit), roots[new], proof)
            assert not verify_consistency(old, new, roots[old], flip(roots[new], pos, bit), proof)
            for k in range(len(proof)):
                bad = [*proof[:k], flip(proof[k], pos, bit), *proof[k + 1 :]]
                assert not verify_consistency(old, new, roots[old], roots[new], bad), (old, new, k)
            if proof:
                assert not verify_consistency(old, new, roots[old], roots[new], proof[:-1])
                assert not verify_consistency(old, new, roots[old], roots[new], [*proof, roots[new]])


def test_consistency_rejects_a_rewritten_history() -> None:
    """A log that changed an old entry cannot prove consistency with its earlier root."""
    lh = hashes(40)
    forged = list(lh)
    forged[3] = leaf_hash(b"rewritten")
    for old in (4, 5, 16, 33):
        proof = consistency_proof(old, forged)
        assert not verify_consistency(old, 40, root(lh[:old]), root(forged), proof)


def test_large_tree_is_not_quadratic() -> None:
    """A 2^16 + 3 leaf tree: root, one inclusion and one consistency proof, all checked by the verifier."""
    n = (1 << 16) + 3
    lh = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    rt = root(lh)
    acc = MerkleAccumulator()
    acc.extend(lh)
    assert acc.root() == rt
    assert verify_inclusion(12345, n, lh[12345], inclusion_proof(12345, lh), rt)
    assert verify_consistency(50000, n, root(lh[:50000]), rt, consistency_proof(50000, lh))
