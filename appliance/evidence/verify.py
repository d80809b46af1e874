"""`recterm verify DIR`: check a station's data directory without trusting the station.

Re-hashes every stored recording, checks every manifest's signature and its binding to the ingest entry
in the log, recomputes the log's Merkle tree from the entries and checks every signed note (latest.note
included) against it, holds every stretch between checkpoints and the uncovered tail to the checkpoint
policy the station declared (docs/event-log.md), and checks that no camera was freed of a recording the
station had not verified. Keys: the station's
current key and its key history (keys/), each trusted only for the log entries it was in use for
(appliance/evidence/keychain.py); a pinned ``--pubkey`` alone means one key and no rotation. Errors make the
check fail; notices describe harmless crash artefacts (a torn last line, entries after the last checkpoint
within the policy, an ingest redone after a crash or cut short by one).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.eventlog import Entry, EventLogError
from appliance.evidence import manifest
from appliance.evidence.checkpoint import Checkpoint, CheckpointError
from appliance.evidence.checkpoint_policy import CheckpointPolicy, CheckpointPolicyError
from appliance.evidence.keychain import ROTATION_EVENT, Epochs, KeyChain
from appliance.evidence.merkle import MerkleAccumulator, leaf_hash
from appliance.evidence.note import NoteError

LATEST = "latest.note"
DECLARING = "boot"  # the entry type that declares the checkpoint policy (EventLog.declare)
# What one offload logs after an ingest entry (appliance/offload.py): the next file, or the end.
OFFLOAD_EVENTS = ("ingest", "offload_complete", "offload_interrupted", "camera_freed")


@dataclass(frozen=True)
class Finding:
    where: str
    problem: str
    error: bool = True
    pending: bool = False  # not an error yet: due later (an upload within its deadline)

    def __str__(self) -> str:
        label = "ERROR" if self.error else "PENDING" if self.pending else "note "
        return f"{label} {self.where}: {self.problem}"


@dataclass
class Accounting:
    """`recterm audit`: what became of every recording the uploaded log says was ingested."""

    received: int = 0  # receipted in the log, and its object is in the store
    pending: int = 0  # no receipt yet, within its upload deadline
    missing: int = 0  # no receipt, past its upload deadline (or no deadline known)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    entries: int = 0
    objects: int = 0
    manifests: int = 0
    checkpoints: int = 0
    ingests: Accounting | None = None  # audit only

    @property
    def ok(self) -> bool:
        return not any(f.error for f in self.findings)

    def error(self, where: str, problem: str) -> None:
        self.findings.append(Finding(where, problem))

    def notice(self, where: str, problem: str) -> None:
        self.findings.append(Finding(where, problem, error=False))

    def pending(self, where: str, problem: str) -> None:
        self.findings.append(Finding(where, problem, error=False, pending=True))


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def key_chain(public_key: Ed25519PublicKey | None, keys_dir: Path | None, default_keys: Path) -> KeyChain:
    """A pinned key alone (no history), a keys directory (its history, and its current key unless one is
    pinned), or by default the data directory's own keys."""
    if public_key is not None and keys_dir is None:
        return KeyChain([public_key])
    return KeyChain.from_keys_dir(keys_dir or default_keys, current=public_key)


def verify_data_dir(
    data_dir: Path,
    public_key: Ed25519PublicKey | None = None,
    keys_dir: Path | None = None,
    policy: CheckpointPolicy | None = None,
) -> Report:
    """``policy``: the checkpoint policy for entries no covered ``boot`` entry declares one for (default:
    the station's defaults)."""
    report = Report()
    chain = key_chain(public_key, keys_dir, data_dir / "keys")
    entries, epochs = _check_log(data_dir / "log", chain, report, policy or CheckpointPolicy())
    _check_objects(data_dir / "store", report)
    with_manifest = _check_manifests(data_dir / "store", entries, epochs, report)
    _check_frees(entries, with_manifest, report)
    return report


# -- the log ------------------------------------------------------------------------------------------


def _read_entries(path: Path, report: Report) -> Iterator[tuple[bytes, Entry | None]]:
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                report.notice(f"{path.name} end", "torn last line (a power cut mid-append); not part of the log")
                return
            try:
                yield line[:-1], Entry.parse(line)
            except EventLogError as exc:
                yield line[:-1], None
                report.error(f"log entry at line {report.entries + 1}", str(exc))


def _check_log(
    log_dir: Path, chain: KeyChain, report: Report, policy: CheckpointPolicy
) -> tuple[dict[int, Entry], Epochs]:
    notes = _load_checkpoints(log_dir / "checkpoints", chain, report)
    epochs = Epochs(chain)
    entries: dict[int, Entry] = {}
    tree = MerkleAccumulator()
    pending = sorted(notes)
    signed: list[int] = []  # sizes whose checkpoint the entries still produce

    def compare() -> None:
        while pending and pending[0] == tree.size:
            size = pending.pop(0)
            if notes[size].checkpoint.root == tree.root():
                signed.append(size)
            else:
                report.error(
                    f"checkpoint {size}",
                    "the entries no longer produce the signed tree root (an entry was altered, dropped or reordered)",
                )

    compare()  # a checkpoint of the empty log
    for raw, entry in _read_entries(log_dir / "entries.jsonl", report):
        position = tree.size
        if entry is not None:
            if entry.seq != position:
                report.error(f"log entry {position}", f"has sequence number {entry.seq} (dropped or reordered)")
            entries[position] = entry
            if entry.type == ROTATION_EVENT:
                epochs.observe(position, entry.type, entry.body, tree.root())
        tree.append(leaf_hash(raw))
        compare()
    report.entries = tree.size
    for size in pending:
        report.error(f"checkpoint {size}", f"signs {size} entries but the log holds only {tree.size} (truncated)")
    _check_stretches(entries, signed, tree.size, policy, report)
    for where, problem in epochs.problems():
        report.error(where, problem)
    for size, note in sorted(notes.items()):
        if (problem := epochs.checkpoint_problem(size, note.signed_by)) is not None:
            report.error(f"checkpoints/{note.name}", problem)
    return entries, epochs


@dataclass(frozen=True)
class _Note:
    checkpoint: Checkpoint
    signed_by: int  # position in the key chain of the key that signed it
    name: str  # file name in checkpoints/
    text: str


def _load_checkpoints(folder: Path, chain: KeyChain, report: Report) -> dict[int, _Note]:
    """Every signed note by size: the numbered ones, and latest.note checked against its numbered twin.

    The writer puts each checkpoint in ``<size>.note`` and then in ``latest.note``, so latest.note always
    has a twin; only the newest numbered note may be ahead of it (a crash between the two writes), and it is
    missing only when such a crash hit the very first checkpoint."""
    notes: dict[int, _Note] = {}
    latest: _Note | None = None
    latest_present = False
    if not folder.is_dir():
        return notes
    for path in sorted(folder.glob("*.note")):
        text = path.read_text(encoding="utf-8", errors="replace")
        latest_present |= path.name == LATEST
        try:
            checkpoint, signed_by = chain.open_checkpoint(text)
        except (NoteError, CheckpointError, IndexError) as exc:
            report.error(f"checkpoints/{path.name}", f"signature or format invalid: {exc}")
            continue
        note = _Note(checkpoint, signed_by, path.name, text)
        if path.name == LATEST:
            latest = note
            continue
        if path.name != f"{checkpoint.size:012d}.note":
            report.error(f"checkpoints/{path.name}", f"holds a checkpoint of size {checkpoint.size}")
        notes[checkpoint.size] = note
        report.checkpoints += 1
    if not latest_present and len(notes) > 1:
        report.error(f"checkpoints/{LATEST}", "missing: the station rewrites it with every checkpoint (removed?)")
    elif not latest_present and notes:
        report.notice(f"checkpoints/{LATEST}", "missing: a crash between the first checkpoint and latest.note")
    if latest is not None:
        size = latest.checkpoint.size
        twin = notes.get(size)
        if twin is None:
            report.error(f"checkpoints/{LATEST}", f"signs size {size}, but checkpoints/{size:012d}.note is missing")
            notes[size] = latest  # still checked against the entries
        elif twin.text != latest.text:
            report.error(f"checkpoints/{LATEST}", f"differs from checkpoints/{twin.name}")
        newer = sorted(s for s in notes if s > size)
        if len(newer) > 1:
            report.error(
                f"checkpoints/{LATEST}",
                f"signs size {size}, but {len(newer)} numbered checkpoints are newer (only a crash between the two "
                "writes leaves one)",
            )
    return notes


def _check_stretches(
    entries: dict[int, Entry], signed: list[int], size: int, fallback: CheckpointPolicy, report: Report
) -> None:
    """Hold every stretch of entries between two signed checkpoints, and the uncovered tail, to the checkpoint
    policy in force (docs/event-log.md, checkpoint policy): a longer one means checkpoints were removed."""
    declared: dict[int, CheckpointPolicy] = {}
    covered = set(signed)
    for index, entry in sorted(entries.items()):
        if entry.type != DECLARING or "log" not in entry.body:
            continue
        where = f"log entry {index} ({entry.type})"
        try:
            declared[index] = CheckpointPolicy.from_declaration(entry.body["log"])
        except CheckpointPolicyError as exc:
            report.error(where, f"declares no valid checkpoint policy: {exc}")
        # EventLog.declare signs a checkpoint right before and right after a declaring entry.
        if index > 0 and index not in covered:
            report.error(where, f"no signed checkpoint of size {index} right before it (checkpoints removed?)")
        if index + 1 < size and index + 1 not in covered:
            report.error(where, f"no signed checkpoint of size {index + 1} right after it (checkpoints removed?)")
    starts = sorted(declared)
    # Entries before the first declaration were written by a station version that neither declared its policy
    # nor signed on open nor timed checkpoints across restarts: only the count binds them (a power cut there
    # honestly leaves a stretch spanning two boots).
    first_declaration = min((i for i, e in entries.items() if e.type == DECLARING and "log" in e.body), default=size)
    bounds = sorted({0, *signed, size})
    for start, end in itertools.pairwise(bounds):
        # Only a covered declaration is trusted: one before the stretch (a later one in it is never covered).
        before = bisect.bisect_left(starts, start)
        policy = declared[starts[before - 1]] if before else fallback
        legacy = end <= first_declaration
        _check_stretch(entries, start, end, policy, report, tail=end == size and size not in covered, legacy=legacy)


def _check_stretch(
    entries: dict[int, Entry],
    start: int,
    end: int,
    policy: CheckpointPolicy,
    report: Report,
    tail: bool,
    legacy: bool = False,
) -> None:
    where = f"log entries {start}..{end - 1}"
    what = (
        f"after the last signed checkpoint ({start})" if tail else f"between the signed checkpoints {start} and {end}"
    )
    found = []
    if end - start > policy.every:
        found.append(f"{end - start} entries {what}, but the station signs one at least every {policy.every} entries")
    boots = {entries[i].boot_id for i in range(start, end) if i in entries}
    if legacy:
        pass  # written before the station declared its policy: the count above is all that binds it
    elif len(boots) > 1:
        found.append(f"the entries {what} span {len(boots)} boots, but the station signs one whenever it opens the log")
    elif start in entries and end - start >= 2:
        # Each entry but the newest came less than the interval after the checkpoint, which came before ``start``.
        span = max(entries[i].mono_ns for i in range(start, end - 1) if i in entries) - entries[start].mono_ns
        if span >= policy.interval_ns:
            found.append(
                f"the entries {what} (all but the newest) span {span / 1e9:.3f} s, but the station signs one at "
                f"least every {policy.interval_s:g} s"
            )
    for problem in found:
        report.error(where, f"{problem} (checkpoints removed?)")
    if tail and not found:
        report.notice(
            where, f"not yet covered by a signed checkpoint (a crash before the next one; within {policy.describe()})"
        )


# -- the store ----------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _check_objects(store: Path, report: Report) -> None:
    for path in sorted((store / "objects" / "sha256").glob("*/*")):
        report.objects += 1
        if _sha256(path) != path.name:
            report.error(f"store/objects/{path.parent.name}/{path.name}", "content does not match its SHA-256")


def _check_manifests(store: Path, entries: dict[int, Entry], epochs: Epochs, report: Report) -> set[int]:
    """Every manifest against its ingest entry and every ingest against its manifest; the ingest entries that
    have one."""
    deleted = _deleted_after_receipt(entries, report)
    with_manifest: set[int] = set()
    for path in sorted((store / "manifests").glob("*/*.json")):
        where = f"store/manifests/{path.parent.name}/{path.name}"
        report.manifests += 1
        raw = path.read_bytes()
        try:
            body: dict[str, Any] = json.loads(raw)
            if manifest.encode(body) != raw:
                raise manifest.ManifestError("not in canonical form (edited)")
            if (problem := epochs.manifest_problem(body, int(body["ingest"]["log_index"]))) is not None:
                raise manifest.ManifestError(problem)
        except (ValueError, KeyError, TypeError, manifest.ManifestError) as exc:
            report.error(where, str(exc))
            continue
        sha, index = body["file"]["sha256"], body["ingest"]["log_index"]
        if path.name != f"{sha}-{index}.json":
            report.error(where, "file name does not match the recording hash and log index it describes")
        if not (store / "objects" / "sha256" / sha[:2] / sha).exists():
            if sha in deleted:
                report.notice(where, "local copy deleted after its confirmed upload (local_delete)")
            else:
                report.error(where, "the recording it describes is missing from the store")
        entry = entries.get(index)
        if entry is None or entry.type != "ingest":
            report.error(where, f"log entry {index} is not its ingest entry")
            continue
        if entry.body.get("sha256") != sha or entry.body.get("camera_path") != body["file"]["camera_path"]:
            report.error(where, f"does not match its ingest entry {index}")
        with_manifest.add(index)
    redone = {(e.body.get("sha256"), e.body.get("camera_path")) for i, e in entries.items() if i in with_manifest}
    for index, entry in entries.items():
        if entry.type != "ingest" or index in with_manifest:
            continue
        if (entry.body.get("sha256"), entry.body.get("camera_path")) in redone:
            report.notice(f"log entry {index}", "ingest interrupted before its manifest; redone later")
        elif _offload_went_on(entries, index):
            report.error(f"log entry {index}", "ingest without a manifest")
        else:
            report.notice(
                f"log entry {index}",
                "ingest without a manifest: the station stopped right after it (a crash); the camera keeps the "
                "recording until it is copied again",
            )
    return with_manifest


def _offload_went_on(entries: dict[int, Entry], index: int) -> bool:
    """Whether the offload that logged ingest ``index`` logged more before the station next started: the
    manifest is written right after its ingest entry, in the same offload, so then it must exist."""
    camera = entries[index].body.get("camera")
    for later in range(index + 1, max(entries, default=index) + 1):
        entry = entries.get(later)
        if entry is None:
            continue
        if entry.type == DECLARING:
            return False
        if entry.body.get("camera") == camera and entry.type in OFFLOAD_EVENTS:
            return True
    return False


def _deleted_after_receipt(entries: dict[int, Entry], report: Report) -> set[str]:
    """Hashes whose local copy the station deleted, each after an upload receipt for the same bytes."""
    deleted: set[str] = set()
    for index in sorted(entries):
        entry = entries[index]
        if entry.type != "local_delete":
            continue
        seq = entry.body.get("receipt_seq")
        receipt = entries.get(seq) if isinstance(seq, int) else None
        if (
            receipt is None
            or receipt.type != "upload_receipt"
            or receipt.body.get("sha256") != entry.body.get("sha256")
        ):
            report.error(
                f"log entry {index}", f"local copy {entry.body.get('sha256')} deleted without an upload receipt"
            )
        elif receipt.seq < index:
            deleted.add(str(entry.body.get("sha256")))
    return deleted


def _check_frees(entries: dict[int, Entry], with_manifest: set[int], report: Report) -> None:
    """A camera may be freed only of recordings ingested, with a signed manifest, before."""
    verified: dict[tuple[str, str], int] = {}
    for index in sorted(entries):
        entry = entries[index]
        if entry.type == "ingest" and index in with_manifest:
            verified.setdefault((entry.body.get("sha256"), entry.body.get("camera_path")), index)
        elif entry.type == "camera_freed":
            files = entry.body.get("files", [])
            for item in files if isinstance(files, list) else [None]:
                item = item if isinstance(item, dict) else {}
                if (item.get("sha256"), item.get("camera_path")) not in verified:
                    report.error(
                        f"log entry {index}", f"camera freed of {item.get('camera_path')} without a verified copy"
                    )
