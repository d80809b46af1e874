"""Event-log scaling (../shared/performance.md B8): append latency and cold start at 1M entries.

Builds a log of N entries (default 1,000,000, written in bulk in the log's exact on-disk format, with its
index and a signed checkpoint), then measures in the same run:

- cold start: opening the log (index load, Merkle root, checkpoint signature and root check);
- append p99 at N entries and at 1,000 entries, each append fsynced;
- raw baseline: os.write + fdatasync of a line of the same size to a plain file.

    .venv/bin/python bench/log.py [--entries 1000000] [--appends 2000]

Targets: append p99 <= 5 ms at 1M entries; cold start <= 2 s at 1M. Last line: `ratio: p99(1M)/p99(1k)`,
target <= 2 (appending must not slow down as the log grows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import rfc8785
from _common import drop_caches  # bench/_common.py: the script directory is on sys.path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.eventlog import INDEX_RECORD, EventLog, Signer
from appliance.evidence.checkpoint import Checkpoint, sign_checkpoint
from appliance.evidence.merkle import MerkleAccumulator

ORIGIN = "recterm/bench/events/e1"


def line_for(seq: int) -> bytes:
    # Canonical JSON written directly (keys sorted, no spaces) so a million entries build in seconds;
    # checked against rfc8785 below.
    return (
        f'{{"body":{{"bay":{seq % 16},"camera":"ZFY{seq % 9999:04d}","n":{seq}}},"boot_id":"bench",'
        f'"mono_ns":{seq * 1000},"seq":{seq},"type":"tick","wall":"2026-11-23T00:00:00.000+00:00"}}'
    ).encode()


def build(directory: Path, entries: int, key: Ed25519PrivateKey) -> None:
    sample = line_for(7)
    assert rfc8785.dumps(json.loads(sample)) == sample
    tree = MerkleAccumulator()
    offset = 0
    with open(directory / "entries.jsonl", "wb") as log, open(directory / "index.bin", "wb") as index:
        for seq in range(entries):
            line = line_for(seq)
            leaf = hashlib.sha256(b"\x00" + line).digest()
            log.write(line + b"\n")
            index.write(INDEX_RECORD.pack(offset, leaf))
            tree.append(leaf)
            offset += len(line) + 1
    note = sign_checkpoint(Checkpoint(ORIGIN, entries, tree.root()), "bench", key)
    (directory / "checkpoints").mkdir()
    (directory / "checkpoints" / "latest.note").write_text(note)
    (directory / "checkpoints" / f"{entries:012d}.note").write_text(note)


def p99_append(log: EventLog, count: int) -> float:
    times = []
    for i in range(count):
        start = time.perf_counter()
        log.append("tick", {"bay": i % 16, "camera": "ZFY0001", "n": i})
        times.append(time.perf_counter() - start)
    return statistics.quantiles(times, n=100)[98]


def p99_raw(path: Path, count: int, size: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    line = b"x" * (size - 1) + b"\n"
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, line)
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return statistics.quantiles(times, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=2000)
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    signer = Signer("bench", key)
    with tempfile.TemporaryDirectory(prefix="bench-log-", dir=os.environ.get("BENCH_DIR")) as tmp:
        big, small = Path(tmp, "big"), Path(tmp, "small")
        big.mkdir()
        small.mkdir()
        started = time.perf_counter()
        build(big, args.entries, key)
        build(small, 1000, key)
        print(f"built {args.entries:,} entries in {time.perf_counter() - started:.1f} s")

        drop_caches()
        started = time.perf_counter()
        log = EventLog(big, origin=ORIGIN, signer=signer, checkpoint_every=10**9)
        cold = time.perf_counter() - started
        assert log.size == args.entries
        p99_big = p99_append(log, args.appends)
        log.close()

        small_log = EventLog(small, origin=ORIGIN, signer=signer, checkpoint_every=10**9)
        p99_small = p99_append(small_log, args.appends)
        small_log.close()
        p99_floor = p99_raw(Path(tmp, "raw.bin"), args.appends, len(line_for(args.entries)) + 1)

    print(f"cold start at {args.entries:,} entries: {cold:.2f} s (target <= 2 s)")
    print(f"append p99 at {args.entries:,} entries: {p99_big * 1000:.2f} ms (target <= 5 ms)")
    print(f"append p99 at 1,000 entries: {p99_small * 1000:.2f} ms")
    print(f"raw write + fdatasync p99 (floor): {p99_floor * 1000:.2f} ms")
    print(f"ratio: {p99_big / p99_small:.2f}")


if __name__ == "__main__":
    main()
