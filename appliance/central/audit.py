"""`recterm audit`: the central side checks what a station uploaded, without trusting the station.

Works on an S3 bucket (``s3://BUCKET/STATION``) or an archive directory (``DIR/STATION``). It rebuilds the
station's event log from the uploaded segments (contiguous, from entry 0), recomputes the Merkle tree and
checks every uploaded signed checkpoint against it, so a rewritten or truncated log fails; entries past the
newest checkpoint that verifies are not trusted. For every upload receipt in that log it re-hashes the
stored object, checks its signed manifest (signature, hash, ingest entry) and its COMPLIANCE lock and
retention against the class the log's classification entries give it. Every ingest is accounted for:
received, pending within its upload deadline, or missing after it. Every local deletion must follow the
receipt of the same object; receipts after the upload deadline are reported late. Deadlines and retention
periods come from ``--policy``, else from the profile the station declared in its covered boot entries.
Objects nobody receipted are listed as extra (a station that crashed before logging its receipt uploads
them again). Keys: one pinned key, or the station's key history, each key trusted only for the log entries
it was in use for (appliance/evidence/keychain.py). Layout: docs/s3-layout.md."""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, get_args

from appliance.central.archive import ArchiveStore
from appliance.central.base import Lock, lock_for, stronger
from appliance.central.uploader import manifest_key
from appliance.classification import RetentionClass
from appliance.deadlines import WorkCalendar
from appliance.eventlog import Entry, EventLogError
from appliance.evidence import manifest
from appliance.evidence.checkpoint import CheckpointError
from appliance.evidence.keychain import ROTATION_EVENT, Epochs, KeyChain
from appliance.evidence.merkle import MerkleAccumulator, leaf_hash
from appliance.evidence.note import NoteError
from appliance.evidence.verify import Accounting, Report
from appliance.policy import PolicyError, PolicyProfile, load_profile

RETENTION_CLASSES = get_args(RetentionClass)

SEGMENT = re.compile(r"/log/entries/(\d{12})-(\d{12})\.jsonl$")
CHECKPOINT = re.compile(r"/log/checkpoints/(\d{12})\.note$")


class Bucket(Protocol):
    def keys(self, prefix: str) -> list[str]: ...

    def read(self, key: str) -> bytes | None: ...

    def sha256(self, key: str) -> str | None:
        """Re-hash the stored bytes (streamed); None when the object is missing."""
        ...

    def locked(self, key: str) -> bool: ...

    def retention(self, key: str) -> Lock | None:
        """The retain-until date and legal hold in force on the object (None: neither)."""
        ...


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

    def retention(self, key: str) -> Lock | None:
        return ArchiveStore(self.root).lock_of(key)


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

    def retention(self, key: str) -> Lock | None:
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        until = head.get("ObjectLockRetainUntilDate")
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        if until is None and not hold:
            return None
        return Lock(until or datetime.min.replace(tzinfo=UTC), hold)


def audit(
    bucket: Bucket,
    prefix: str,
    chain: KeyChain,
    policy: PolicyProfile | None = None,
    check_lock: bool = True,
    now: datetime | None = None,
) -> Report:
    """``policy``: the profile to judge deadlines and retention by; None: the one the station declared in
    its newest covered boot entry before each ingest. ``now``: the moment pending turns into missing."""
    report = Report(ingests=Accounting())
    prefix = prefix.strip("/")
    keys = bucket.keys(prefix)
    entries, epochs, log_objects = _check_log(bucket, keys, chain, report, check_lock)
    profiles = _Profiles(entries, policy, report)
    if check_lock:
        _check_log_retention(bucket, entries, log_objects, profiles, report)
    known = {k for k in keys if SEGMENT.search(k) or CHECKPOINT.search(k)}
    seen, received = _check_receipts(bucket, entries, epochs, report, check_lock, profiles)
    known |= seen
    _account_ingests(entries, received, profiles, now or datetime.now(UTC), report)
    for key in keys:
        if key not in known:
            report.notice(key, "extra object: no upload receipt in the log names it")
    return report


class _Profiles:
    """The policy profile in force at a log entry: ``--policy``, else the one the newest covered boot entry
    before it declares (a shipped profile, by id). Each reason for knowing none is reported once."""

    def __init__(self, entries: dict[int, Entry], override: PolicyProfile | None, report: Report) -> None:
        self.override = override
        self.report = report
        self.boots = sorted(i for i, e in entries.items() if e.type == "boot")
        self.entries = entries
        self.loaded: dict[str, PolicyProfile | None] = {}

    def at(self, index: int) -> PolicyProfile | None:
        if self.override is not None:
            return self.override
        before = bisect.bisect_left(self.boots, index)
        if not before:
            self._unknown(
                "the uploaded log", "no covered boot entry declares the station's policy profile: give --policy"
            )
            return None
        boot = self.boots[before - 1]
        declared = self.entries[boot].body.get("policy")
        if not isinstance(declared, str):
            self._unknown(f"log entry {boot} (boot)", "declares no policy profile: give --policy")
            return None
        if declared not in self.loaded:
            try:
                self.loaded[declared] = load_profile(declared)
            except PolicyError:
                self.loaded[declared] = None
                self._unknown(
                    f"log entry {boot} (boot)",
                    f"declares policy profile {declared!r}, which is not shipped: give --policy or --policy-file",
                )
        return self.loaded[declared]

    def _unknown(self, where: str, problem: str) -> None:
        if not any(f.where == where and f.problem == problem for f in self.report.findings):
            self.report.error(where, problem)


def _check_log(
    bucket: Bucket, keys: list[str], chain: KeyChain, report: Report, check_lock: bool
) -> tuple[dict[int, Entry], Epochs, list[tuple[str, int]]]:
    """The uploaded log, up to its newest checkpoint that still verifies (entries past it are not trusted),
    and the log's own objects with the index of the last entry each covers."""
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
    covered = 0
    log_objects = [(checkpoints[size][0], size - 1) for size in pending if size]
    segments = sorted((int(m.group(1)), int(m.group(2)), k) for k in keys if (m := SEGMENT.search(k)))
    for start, end, key in segments:
        if start != tree.size:
            report.error(key, f"log segment starts at entry {start}, but the segments before end at {tree.size}")
            continue
        if check_lock and not bucket.locked(key):
            report.error(key, "log segment is not under a COMPLIANCE lock")
        log_objects.append((key, end - 1))
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
                else:
                    covered = tree.size
    report.entries = tree.size
    for size in pending:
        report.error(checkpoints[size][0], f"signs {size} entries but the uploaded log holds only {tree.size}")
    if not checkpoints and tree.size:
        report.error(f"{len(segments)} log segments", "no signed checkpoint covers the uploaded log")
    elif covered < tree.size:
        report.notice(
            f"uploaded log entries {covered}..{tree.size - 1}",
            "not covered by an uploaded checkpoint: not trusted, not audited (the checkpoint goes up after them)",
        )
    for where, problem in epochs.problems():
        report.error(where, problem)
    for size, signed_by in sorted(signers.items()):
        if (problem := epochs.checkpoint_problem(size, signed_by)) is not None:
            report.error(checkpoints[size][0], problem)
    return {i: e for i, e in entries.items() if i < covered}, epochs, log_objects


def _check_log_retention(
    bucket: Bucket, entries: dict[int, Entry], log_objects: list[tuple[str, int]], profiles: _Profiles, report: Report
) -> None:
    """Log segments and checkpoints are kept as long-term material (the uploader locks them so), from no
    earlier than the newest entry they hold."""
    for key, last in log_objects:
        entry = entries.get(last)
        profile = profiles.at(last) if entry is not None else None
        if entry is not None and profile is not None:
            need = lock_for("long_term", _ingest_second(entry.wall), profile)
            _check_lock_covers(bucket, key, need, "log (long_term)", report)


def _ingest_second(wall: str) -> datetime:
    """The moment a retention period runs from: the entry's time to the whole second, as the station records
    it for its own locks (appliance/offload.py ingested_at), never later."""
    return datetime.fromisoformat(wall).replace(microsecond=0)


def _holds(actual: Lock | None, need: Lock) -> bool:
    return (
        actual is not None and actual.retain_until >= need.retain_until and (actual.legal_hold or not need.legal_hold)
    )


def _describe(lock: Lock | None) -> str:
    if lock is None:
        return "no retention"
    return f"retention until {lock.retain_until.isoformat()}{', legal hold' if lock.legal_hold else ', no legal hold'}"


def _check_lock_covers(bucket: Bucket, key: str, need: Lock, what: str, report: Report) -> Lock | None:
    actual = bucket.retention(key)
    if not _holds(actual, need):
        report.error(key, f"{_describe(actual)}, but its class {what} needs at least {_describe(need)}")
    return actual


def _check_receipts(
    bucket: Bucket,
    entries: dict[int, Entry],
    epochs: Epochs,
    report: Report,
    check_lock: bool,
    profiles: _Profiles,
) -> tuple[set[str], set[int]]:
    """Every receipt's object and manifest, and their retention against the class the log gives them; the keys
    named, and the ingest entries received."""
    seen: set[str] = set()
    received: set[str] = set()
    received_ingests: set[int] = set()
    ingests = {e.seq: e for e in entries.values() if e.type == "ingest"}
    calendar = WorkCalendar()
    classes: dict[tuple[Any, Any], tuple[RetentionClass, int]] = {}  # (sha256, camera path) -> class, entry
    applied: dict[str, tuple[int, RetentionClass]] = {}  # key -> its ingest, the class at its newest receipt/relock
    for entry in _in_order(entries):
        if entry.type == "classification":
            cls = entry.body.get("retention_class")
            if cls in RETENTION_CLASSES:
                classes[(entry.body.get("sha256"), entry.body.get("camera_path"))] = (cls, entry.seq)
            continue
        if entry.type == "relock" and entry.body.get("key") in applied:
            index = applied[entry.body["key"]][0]
            applied[entry.body["key"]] = (index, _class_of(ingests[index], classes)[0])
            continue
        if entry.type == "local_delete":
            if entry.body.get("key") not in received:
                report.error(
                    f"log entry {entry.seq}", f"local copy of {entry.body.get('key')} deleted before its receipt"
                )
            continue
        if entry.type != "upload_receipt":
            continue
        key, sha = str(entry.body.get("key")), str(entry.body.get("sha256"))
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
        if index is None:  # still account for the recording it receipts
            index = max((i for i, e in ingests.items() if e.body.get("sha256") == sha and i < entry.seq), default=None)
            if index is None:
                continue
        received_ingests.add(index)
        applied[key] = (index, _class_of(ingests[index], classes)[0])
        profile = profiles.at(index)
        if profile is not None:
            due = calendar.deadline(datetime.fromisoformat(ingests[index].wall), profile.upload_deadline)
            if datetime.fromisoformat(entry.wall) > due:
                report.error(key, f"late: receipted {entry.wall}, due {due.isoformat(timespec='seconds')}")
    if check_lock:
        for key, (index, cls) in sorted(applied.items()):
            if (profile := profiles.at(index)) is not None and bucket.sha256(key) is not None:
                _check_class_lock(bucket, key, ingests[index], cls, classes, profile, report)
    return seen, received_ingests


def _class_of(ingest: Entry, classes: dict[tuple[Any, Any], tuple[RetentionClass, int]]) -> tuple[RetentionClass, int]:
    """The recording's class after the classification entries so far (untagged: unclassified)."""
    return classes.get((ingest.body.get("sha256"), ingest.body.get("camera_path")), ("unclassified", ingest.seq))


def _check_class_lock(
    bucket: Bucket,
    key: str,
    ingest: Entry,
    cls: RetentionClass,
    classes: dict[tuple[Any, Any], tuple[RetentionClass, int]],
    profile: PolicyProfile,
    report: Report,
) -> None:
    """The object and its manifest must be locked as their class demands (lock_for) when last uploaded or
    re-locked; a class given after that is pending until the station re-locks them."""
    ingested = _ingest_second(ingest.wall)
    need = lock_for(cls, ingested, profile)
    newest, tagged_at = _class_of(ingest, classes)
    for target in (key, manifest_key(key)):
        if target != key and bucket.read(target) is None:
            continue  # a missing manifest is reported as such
        actual = _check_lock_covers(bucket, target, need, cls, report)
        if _holds(actual, need) and not _holds(actual, wanted := stronger(need, lock_for(newest, ingested, profile))):
            report.pending(
                target,
                f"tagged {newest} (log entry {tagged_at}), which needs {_describe(wanted)}; the station re-locks it "
                "on its next upload pass",
            )


def _account_ingests(
    entries: dict[int, Entry], received: set[int], profiles: _Profiles, now: datetime, report: Report
) -> None:
    """Every recording the log says was ingested: received, or pending within its upload deadline, or missing.
    An ingest redone after a crash (same camera, file and bytes) is one recording."""
    assert report.ingests is not None
    recordings: dict[tuple[Any, Any, Any], list[int]] = {}
    for index, entry in sorted(entries.items()):
        if entry.type == "ingest":
            identity = (entry.body.get("camera"), entry.body.get("camera_path"), entry.body.get("sha256"))
            recordings.setdefault(identity, []).append(index)
    calendar = WorkCalendar()
    for (camera, camera_path, _), indexes in recordings.items():
        if received.intersection(indexes):
            report.ingests.received += 1
            continue
        index = indexes[-1]
        entry = entries[index]
        where = f"log entry {index} (ingest of {camera}:{camera_path})"
        profile = profiles.at(index)
        if profile is None:
            report.ingests.missing += 1
            report.error(where, f"missing: ingested {entry.wall}, no upload receipt, and no known upload deadline")
            continue
        due = calendar.deadline(datetime.fromisoformat(entry.wall), profile.upload_deadline)
        if now > due:
            report.ingests.missing += 1
            report.error(
                where, f"missing: ingested {entry.wall}, no upload receipt, due {due.isoformat(timespec='seconds')}"
            )
        else:
            report.ingests.pending += 1
            report.pending(where, f"not yet received: ingested {entry.wall}, due {due.isoformat(timespec='seconds')}")


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
