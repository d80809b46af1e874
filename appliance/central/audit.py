"""`recterm audit`: the central side checks what a station uploaded, without trusting the station.

Works on an S3 bucket (``s3://BUCKET/STATION``) or an archive directory (``DIR/STATION``). It rebuilds the
station's event log from the uploaded segments (contiguous, from entry 0), recomputes the Merkle tree and
checks every uploaded signed checkpoint against it, so a rewritten or truncated log fails. For every
upload receipt in that log it re-hashes the stored object, checks its signed manifest (signature, hash,
ingest entry) and, on S3, its COMPLIANCE lock. Every local deletion must follow the receipt of the same
object; with a policy profile, receipts after the upload deadline are reported late. Objects nobody
receipted are listed as extra (a station that crashed before logging its receipt uploads them again).
Keys: one pinned key, or the station's key history, each key trusted only for the log entries it was in use
for (appliance/evidence/keychain.py). Layout: docs/s3-layout.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from appliance.central.archive import ArchiveStore
from appliance.central.uploader import manifest_key
from appliance.deadlines import WorkCalendar
from appliance.eventlog import Entry, EventLogError
from appliance.evidence import manifest
from appliance.evidence.checkpoint import CheckpointError
from appliance.evidence.keychain import ROTATION_EVENT, Epochs, KeyChain
from appliance.evidence.merkle import MerkleAccumulator, leaf_hash
from appliance.evidence.note import NoteError
from appliance.evidence.verify import Report
from appliance.policy import PolicyProfile

SEGMENT = re.compile(r"/log/entries/(\d{12})-(\d{12})\.jsonl$")
CHECKPOINT = re.compile(r"/log/checkpoints/(\d{12})\.note$")


class Bucket(Protocol):
    def keys(self, prefix: str) -> list[str]: ...

    def read(self, key: str) -> bytes | None: ...

    def sha256(self, key: str) -> str | None:
        """Re-hash the stored bytes (streamed); None when the object is missing."""
        ...

    def locked(self, key: str) -> bool: ...


class DirectoryBucket:
    """An archive directory (appliance/central/archive.py): read-only files stand for the lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        return sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def sha256(self, key: str) -> str | None:
        digest = hashlib.sha256()
        try:
            with open(self.root / key, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

    def locked(self, key: str) -> bool:
        """Read-only, and a retention record in force (archive.py keeps one per object)."""
        if (self.root / key).stat().st_mode & 0o222:
            return False
        lock = ArchiveStore(self.root).lock_of(key)
        return lock is not None and (lock.legal_hold or lock.retain_until > datetime.now(UTC))


class S3Bucket:
    def __init__(self, client: Any, bucket: str) -> None:
        self.s3 = client
        self.bucket = bucket

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            found.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(found)

    def _get(self, key: str) -> Any | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.NoSuchKey:
            return None

    def read(self, key: str) -> bytes | None:
        got = self._get(key)
        return None if got is None else got["Body"].read()

    def sha256(self, key: str) -> str | None:
        got = self._get(key)
        if got is None:
            return None
        digest = hashlib.sha256()
        for chunk in got["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()

    def locked(self, key: str) -> bool:
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        return head.get("ObjectLockMode") == "COMPLIANCE"


def audit(
    bucket: Bucket,
    prefix: str,
    chain: KeyChain,
    policy: PolicyProfile | None = None,
    check_lock: bool = True,
) -> Report:
    report = Report()
    prefix = prefix.strip("/")
    keys = bucket.keys(prefix)
    entries, epochs = _check_log(bucket, keys, chain, report, check_lock)
    known = {k for k in keys if SEGMENT.search(k) or CHECKPOINT.search(k)}
    known |= _check_receipts(bucket, entries, epochs, report, check_lock, policy)
    for key in keys:
        if key not in known:
            report.notice(key, "extra object: no upload receipt in the log names it")
    return report


def _check_log(
    bucket: Bucket, keys: list[str], chain: KeyChain, report: Report, check_lock: bool
) -> tuple[dict[int, Entry], Epochs]:
    checkpoints = {}
    signers: dict[int, int] = {}
    epochs = Epochs(chain)
    for key in keys:
        if (m := CHECKPOINT.search(key)) is None:
            continue
        text = (bucket.read(key) or b"").decode("utf-8", "replace")
        try:
            checkpoint, signed_by = chain.open_checkpoint(text)
        except (NoteError, CheckpointError, IndexError) as exc:
            report.error(key, f"checkpoint signature or format invalid: {exc}")
            continue
        if checkpoint.size != int(m.group(1)):
            report.error(key, f"holds a checkpoint of size {checkpoint.size}")
        checkpoints[checkpoint.size] = (key, checkpoint)
        signers[checkpoint.size] = signed_by
        report.checkpoints += 1
    entries: dict[int, Entry] = {}
    tree = MerkleAccumulator()
    pending = sorted(checkpoints)
    segments = sorted((int(m.group(1)), int(m.group(2)), k) for k in keys if (m := SEGMENT.search(k)))
    for start, end, key in segments:
        if start != tree.size:
            report.error(key, f"log segment starts at entry {start}, but the segments before end at {tree.size}")
            continue
        if check_lock and not bucket.locked(key):
            report.error(key, "log segment is not under a COMPLIANCE lock")
        lines = (bucket.read(key) or b"").split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        if len(lines) != end - start:
            report.error(key, f"holds {len(lines)} entries, its name says {end - start}")
        for raw in lines:
            try:
                entry = Entry.parse(raw)
            except EventLogError as exc:
                report.error(key, f"entry {tree.size}: {exc}")
            else:
                if entry.seq != tree.size:
                    report.error(key, f"entry {tree.size} has sequence number {entry.seq} (dropped or reordered)")
                entries[tree.size] = entry
                if entry.type == ROTATION_EVENT:
                    epochs.observe(tree.size, entry.type, entry.body, tree.root())
            tree.append(leaf_hash(raw))
            while pending and pending[0] == tree.size:
                ck_key, checkpoint = checkpoints[pending.pop(0)]
                if checkpoint.root != tree.root():
                    report.error(ck_key, f"the uploaded log no longer produces this signed root (rewritten; {key})")
    report.entries = tree.size
    for size in pending:
        report.error(checkpoints[size][0], f"signs {size} entries but the uploaded log holds only {tree.size}")
    if not checkpoints and tree.size:
        report.error(f"{len(segments)} log segments", "no signed checkpoint covers the uploaded log")
    for where, problem in epochs.problems():
        report.error(where, problem)
    for size, signed_by in sorted(signers.items()):
        if (problem := epochs.checkpoint_problem(size, signed_by)) is not None:
            report.error(checkpoints[size][0], problem)
    return entries, epochs


def _check_receipts(
    bucket: Bucket,
    entries: dict[int, Entry],
    epochs: Epochs,
    report: Report,
    check_lock: bool,
    policy: PolicyProfile | None,
) -> set[str]:
    seen: set[str] = set()
    received: set[str] = set()
    ingests = {e.seq: e for e in entries.values() if e.type == "ingest"}
    calendar = WorkCalendar()
    for entry in _in_order(entries):
        if entry.type == "local_delete":
            if entry.body.get("key") not in received:
                report.error(
                    f"log entry {entry.seq}", f"local copy of {entry.body.get('key')} deleted before its receipt"
                )
            continue
        if entry.type != "upload_receipt":
            continue
        key, sha = entry.body["key"], entry.body["sha256"]
        received.add(key)
        seen |= {key, manifest_key(key)}
        report.objects += 1
        stored = bucket.sha256(key)
        if stored is None:
            report.error(key, "missing: receipted in the log but not in the store")
            continue
        if stored != sha:
            report.error(key, f"altered: stored bytes hash to {stored[:16]}…, the receipt says {sha[:16]}…")
        if check_lock and not bucket.locked(key):
            report.error(key, "not under a COMPLIANCE lock")
        index = _check_manifest(bucket, key, sha, ingests, epochs, report)
        if policy is not None and index is not None:
            due = calendar.deadline(datetime.fromisoformat(ingests[index].wall), policy.upload_deadline)
            if datetime.fromisoformat(entry.wall) > due:
                report.error(key, f"late: receipted {entry.wall}, due {due.isoformat(timespec='seconds')}")
    return seen


def _check_manifest(
    bucket: Bucket, key: str, sha: str, ingests: dict[int, Entry], epochs: Epochs, report: Report
) -> int | None:
    where = manifest_key(key)
    raw = bucket.read(where)
    if raw is None:
        report.error(where, f"manifest missing for {key}")
        return None
    report.manifests += 1
    try:
        body: dict[str, Any] = json.loads(raw)
        if manifest.encode(body) != raw:
            raise manifest.ManifestError("not in canonical form (edited)")
        if (problem := epochs.manifest_problem(body, int(body["ingest"]["log_index"]))) is not None:
            raise manifest.ManifestError(problem)
    except (ValueError, KeyError, TypeError, manifest.ManifestError) as exc:
        report.error(where, str(exc))
        return None
    if body["file"]["sha256"] != sha:
        report.error(where, f"describes other bytes than {key}")
    index = body["ingest"]["log_index"]
    ingest = ingests.get(index)
    if ingest is None or ingest.body.get("sha256") != sha:
        report.error(where, f"log entry {index} is not the ingest of {key}")
        return None
    return index


def _in_order(entries: dict[int, Entry]) -> Iterator[Entry]:
    for index in sorted(entries):
        yield entries[index]
