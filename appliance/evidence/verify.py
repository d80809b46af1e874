"""`recterm verify DIR`: check a station's data directory without trusting the station.

Re-hashes every stored recording, checks every manifest's signature and its binding to the ingest entry
in the log, recomputes the log's Merkle tree from the entries and checks every signed checkpoint against
it, and checks that no camera was freed of a recording the station had not verified. Keys: the station's
current key and its key history (keys/), each trusted only for the log entries it was in use for
(appliance/evidence/keychain.py); a pinned ``--pubkey`` alone means one key and no rotation. Errors make the
check fail; notices describe harmless crash artefacts (a torn last line, an ingest redone after a crash).
"""

from __future__ import annotations

import hashlib
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
from appliance.evidence.keychain import ROTATION_EVENT, Epochs, KeyChain
from appliance.evidence.merkle import MerkleAccumulator, leaf_hash
from appliance.evidence.note import NoteError


@dataclass(frozen=True)
class Finding:
    where: str
    problem: str
    error: bool = True

    def __str__(self) -> str:
        return f"{'ERROR' if self.error else 'note '} {self.where}: {self.problem}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    entries: int = 0
    objects: int = 0
    manifests: int = 0
    checkpoints: int = 0

    @property
    def ok(self) -> bool:
        return not any(f.error for f in self.findings)

    def error(self, where: str, problem: str) -> None:
        self.findings.append(Finding(where, problem))

    def notice(self, where: str, problem: str) -> None:
        self.findings.append(Finding(where, problem, error=False))


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


def verify_data_dir(data_dir: Path, public_key: Ed25519PublicKey | None = None, keys_dir: Path | None = None) -> Report:
    report = Report()
    chain = key_chain(public_key, keys_dir, data_dir / "keys")
    entries, epochs = _check_log(data_dir / "log", chain, report)
    _check_objects(data_dir / "store", report)
    _check_manifests(data_dir / "store", entries, epochs, report)
    _check_frees(entries, report)
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


def _check_log(log_dir: Path, chain: KeyChain, report: Report) -> tuple[dict[int, Entry], Epochs]:
    signed = _load_checkpoints(log_dir / "checkpoints", chain, report)
    notes = {size: checkpoint for size, (checkpoint, _, _) in signed.items()}
    epochs = Epochs(chain)
    entries: dict[int, Entry] = {}
    tree = MerkleAccumulator()
    pending = sorted(notes)
    for raw, entry in _read_entries(log_dir / "entries.jsonl", report):
        position = tree.size
        if entry is not None:
            if entry.seq != position:
                report.error(f"log entry {position}", f"has sequence number {entry.seq} (dropped or reordered)")
            entries[position] = entry
            if entry.type == ROTATION_EVENT:
                epochs.observe(position, entry.type, entry.body, tree.root())
        tree.append(leaf_hash(raw))
        while pending and pending[0] == tree.size:
            _compare(notes[pending.pop(0)], tree.root(), report)
    report.entries = tree.size
    for size in pending:
        report.error(f"checkpoint {size}", f"signs {size} entries but the log holds only {tree.size} (truncated)")
    covered = max(notes, default=0)
    if covered < tree.size:
        report.notice(
            f"log entries {covered}..{tree.size - 1}", "not yet covered by a signed checkpoint (signed on shutdown)"
        )
    for where, problem in epochs.problems():
        report.error(where, problem)
    for size, (_, signed_by, name) in sorted(signed.items()):
        if (problem := epochs.checkpoint_problem(size, signed_by)) is not None:
            report.error(f"checkpoints/{name}", problem)
    return entries, epochs


def _load_checkpoints(folder: Path, chain: KeyChain, report: Report) -> dict[int, tuple[Checkpoint, int, str]]:
    """Checkpoints by size, each with the position in the chain of the key that signed it."""
    notes: dict[int, tuple[Checkpoint, int, str]] = {}
    if not folder.is_dir():
        return notes
    for path in sorted(folder.glob("*.note")):
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            checkpoint, signed_by = chain.open_checkpoint(text)
        except (NoteError, CheckpointError, IndexError) as exc:
            report.error(f"checkpoints/{path.name}", f"signature or format invalid: {exc}")
            continue
        if path.name == "latest.note":
            continue
        if path.name != f"{checkpoint.size:012d}.note":
            report.error(f"checkpoints/{path.name}", f"holds a checkpoint of size {checkpoint.size}")
        notes[checkpoint.size] = (checkpoint, signed_by, path.name)
        report.checkpoints += 1
    return notes


def _compare(checkpoint: Checkpoint, root: bytes, report: Report) -> None:
    if checkpoint.root != root:
        report.error(
            f"checkpoint {checkpoint.size}",
            "the entries no longer produce the signed tree root (an entry was altered, dropped or reordered)",
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


def _check_manifests(store: Path, entries: dict[int, Entry], epochs: Epochs, report: Report) -> None:
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
    redone = {(e.body["sha256"], e.body["camera_path"]) for i, e in entries.items() if i in with_manifest}
    for index, entry in entries.items():
        if entry.type != "ingest" or index in with_manifest:
            continue
        if (entry.body.get("sha256"), entry.body.get("camera_path")) in redone:
            report.notice(f"log entry {index}", "ingest interrupted before its manifest; redone later")
        else:
            report.error(f"log entry {index}", "ingest without a manifest")


def _deleted_after_receipt(entries: dict[int, Entry], report: Report) -> set[str]:
    """Hashes whose local copy the station deleted, each after an upload receipt for the same bytes."""
    deleted: set[str] = set()
    for index in sorted(entries):
        entry = entries[index]
        if entry.type != "local_delete":
            continue
        receipt = entries.get(entry.body.get("receipt_seq", -1))
        if (
            receipt is None
            or receipt.type != "upload_receipt"
            or receipt.body.get("sha256") != entry.body.get("sha256")
        ):
            report.error(
                f"log entry {index}", f"local copy {entry.body.get('sha256')} deleted without an upload receipt"
            )
        elif receipt.seq < index:
            deleted.add(entry.body["sha256"])
    return deleted


def _check_frees(entries: dict[int, Entry], report: Report) -> None:
    verified: dict[tuple[str, str], int] = {}
    for index in sorted(entries):
        entry = entries[index]
        if entry.type == "ingest":
            verified.setdefault((entry.body["sha256"], entry.body["camera_path"]), index)
        elif entry.type == "camera_freed":
            for item in entry.body.get("files", []):
                if (item["sha256"], item["camera_path"]) not in verified:
                    report.error(f"log entry {index}", f"camera freed of {item['camera_path']} without a verified copy")
