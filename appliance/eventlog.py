"""The station's history: an append-only, fsynced, tamper-evident log (RFC 6962 Merkle tree + C2SP
signed checkpoints). Format: docs/event-log.md.

Every event the station acts on is appended here, and fsynced, before anyone is told it happened. Each
entry is one canonical-JSON line (RFC 8785) with a gap-free sequence number, the wall clock, the boot id
and the monotonic clock. The leaf hash of each entry goes into a Merkle tree; every ``checkpoint_every``
entries, every ``checkpoint_interval_s`` seconds (by the entries' ``mono_ns``), on open when entries are
uncovered, around a declaring entry (``declare``) and on close the station signs a checkpoint of the tree.
An altered, dropped or reordered entry no longer matches a signed checkpoint, and the checkpoint policy
(appliance/evidence/checkpoint_policy.py) bounds how many entries an honest log leaves uncovered.

Files in the log directory:

- ``entries.jsonl``: the entries (the only authoritative file);
- ``index.bin``: per entry, its byte offset (u64, big-endian) and leaf hash (32 bytes); derived, rebuilt
  from the entries whenever it disagrees with them;
- ``checkpoints/<size>.note`` and ``checkpoints/latest.note``: signed checkpoints.

A line torn by a power cut is moved aside to ``torn-<offset>.bin`` (never silently dropped) on open.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import struct
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.evidence.checkpoint import Checkpoint, CheckpointError, sign_checkpoint, verify_checkpoint
from appliance.evidence.checkpoint_policy import DEFAULT_EVERY, DEFAULT_INTERVAL_S, CheckpointPolicy
from appliance.evidence.keychain import ROTATION_EVENT
from appliance.evidence.merkle import MerkleAccumulator, leaf_hash
from appliance.evidence.note import NoteError
from appliance.state.atomic import atomic_write_bytes
from devices import paths

log = logging.getLogger(__name__)

INDEX_RECORD = struct.Struct(">Q32s")


class EventLogError(Exception):
    """The log on disk is not what this station wrote."""


@dataclass(frozen=True)
class Entry:
    seq: int
    type: str
    wall: str
    boot_id: str
    mono_ns: int
    body: dict[str, Any]

    def canonical(self) -> bytes:
        return rfc8785.dumps(
            {
                "seq": self.seq,
                "type": self.type,
                "wall": self.wall,
                "boot_id": self.boot_id,
                "mono_ns": self.mono_ns,
                "body": self.body,
            }
        )

    @classmethod
    def parse(cls, line: bytes) -> Entry:
        """Parse one stored line; refuse anything not in the exact canonical form we write."""
        raw = line.rstrip(b"\n")
        try:
            data = json.loads(raw)
            entry = cls(data["seq"], data["type"], data["wall"], data["boot_id"], data["mono_ns"], data["body"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EventLogError(f"unreadable entry: {exc}") from None
        fields = (entry.seq, entry.type, entry.wall, entry.boot_id, entry.mono_ns, entry.body)
        if [type(f) for f in fields] != [int, str, str, str, int, dict]:
            raise EventLogError("unreadable entry: a field has the wrong type")
        if entry.canonical() != raw:
            raise EventLogError(f"entry {entry.seq} is not in canonical form")
        return entry


def boot_id() -> str:
    try:
        return paths.proc("sys", "kernel", "random", "boot_id").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class Signer:
    """Who signs the checkpoints: the station's key under its note name (the station id)."""

    name: str
    key: Ed25519PrivateKey


class EventLog:
    ENTRIES = "entries.jsonl"
    INDEX = "index.bin"

    def __init__(
        self,
        directory: Path,
        origin: str = "recterm-log",
        signer: Signer | None = None,
        checkpoint_every: int = DEFAULT_EVERY,
        checkpoint_interval_s: float = DEFAULT_INTERVAL_S,
        retired: Sequence[Ed25519PublicKey] = (),
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """``retired``: the station's earlier public keys; the latest checkpoint may be signed by one of them
        when a power cut interrupted a key rotation (docs/event-log.md, key rotation). ``clock``: the
        monotonic clock in ns, for the entries' ``mono_ns`` and the checkpoint interval alike."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / self.ENTRIES
        self.index_path = directory / self.INDEX
        self.checkpoint_dir = directory / "checkpoints"
        self.origin = origin
        self.signer = signer
        self._retired = tuple(retired)
        # (first entry, signer) per key in use since this process opened the log: manifests are signed by
        # the key of their ingest entry, even when a rotation came between the two.
        self._epochs: list[tuple[int, Signer]] = []
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self._interval_ns = round(checkpoint_interval_s * 1e9)
        self._clock = clock
        self._lock = threading.Lock()
        self._boot_id = boot_id()
        self._recover_torn_tail()
        self._tree = MerkleAccumulator()
        self._signed_root: bytes | None = None  # root at the latest checkpoint's size, found on open
        self._end = 0  # byte size of the entries file
        self._open_index()
        self._check_latest_checkpoint()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._index_fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._last_checkpoint = (self.latest_checkpoint_size(), clock())  # (size, clock when signed)
        if signer is not None:
            self._epochs.append((0, signer))
            if self.size > self._last_checkpoint[0]:
                # Entries a crash left uncovered are signed now, before this run adds any: an honest
                # stretch between two checkpoints never spans two runs (verifiers rely on it).
                self._write_checkpoint()

    # -- opening
    def _recover_torn_tail(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            pos = size
            while pos > 0:  # find the start of the torn last line
                start = max(0, pos - (1 << 16))
                fh.seek(start)
                nl = fh.read(pos - start).rfind(b"\n")
                if nl >= 0:
                    pos = start + nl + 1
                    break
                pos = start
            fh.seek(pos)
            torn = fh.read()
        aside = self.directory / f"torn-{pos}.bin"
        aside.write_bytes(torn)
        os.truncate(self.path, pos)
        log.warning("event log: moved a torn last line (%d bytes) aside to %s", len(torn), aside.name)

    def _open_index(self) -> None:
        """Load leaf hashes from the index, checking it against the entries; re-index what it lacks."""
        entries_size = self.path.stat().st_size if self.path.exists() else 0
        # Compact in memory (8 + 32 bytes an entry): a million entries must fit a small Pi comfortably.
        raw = self.index_path.read_bytes() if self.index_path.exists() else b""
        raw = raw[: len(raw) - len(raw) % INDEX_RECORD.size]
        count = len(raw) // INDEX_RECORD.size
        offsets = array("Q", (INDEX_RECORD.unpack_from(raw, i * INDEX_RECORD.size)[0] for i in range(count)))
        leaves = bytearray(b"".join(raw[i * INDEX_RECORD.size + 8 : (i + 1) * INDEX_RECORD.size] for i in range(count)))
        while offsets and offsets[-1] >= entries_size:
            offsets.pop()  # entries lost to a torn tail take their index records with them
            del leaves[-32:]
        resume_at = 0
        if offsets:
            with open(self.path, "rb") as fh:
                fh.seek(offsets[-1])
                line = fh.readline()
            if line.endswith(b"\n") and leaf_hash(line[:-1]) == bytes(leaves[-32:]) and offsets[0] == 0:
                resume_at = offsets[-1] + len(line)
            else:
                log.warning("event log: index disagrees with the entries; rebuilding it")
                offsets, leaves = array("Q"), bytearray()
        missing = list(self._scan(resume_at, len(offsets)))
        for offset, leaf in missing:
            offsets.append(offset)
            leaves += leaf
        if missing or len(raw) != len(offsets) * INDEX_RECORD.size:
            atomic_write_bytes(
                self.index_path,
                b"".join(INDEX_RECORD.pack(o, bytes(leaves[i * 32 : i * 32 + 32])) for i, o in enumerate(offsets)),
            )
        # One pass over the leaves gives both the current root and the root the last checkpoint signed.
        signed_size = self.latest_checkpoint_size()
        view = memoryview(leaves)
        for i in range(len(offsets)):
            if i == signed_size:
                self._signed_root = self._tree.root()
            self._tree.append(bytes(view[i * 32 : i * 32 + 32]))
        if self._tree.size == signed_size:
            self._signed_root = self._tree.root()
        view.release()
        self._offsets = offsets
        self._leaves = leaves
        self._end = entries_size

    def _scan(self, start: int, first_seq: int) -> Iterator[tuple[int, bytes]]:
        """Index entries from byte ``start`` on, checking each one's form and sequence number."""
        if not self.path.exists():
            return
        expected = first_seq
        with open(self.path, "rb") as fh:
            fh.seek(start)
            offset = start
            for line in fh:
                entry = Entry.parse(line)
                if entry.seq != expected:
                    raise EventLogError(f"{self.path}: entry {expected} has sequence number {entry.seq}")
                yield offset, leaf_hash(line[:-1])
                offset += len(line)
                expected += 1

    def _check_latest_checkpoint(self) -> None:
        """The entries must still produce the tree this station signed last; otherwise history changed."""
        latest = self.checkpoint_dir / "latest.note"
        if self.signer is None or not latest.exists():
            return
        text = latest.read_text()
        for key in (self.signer.key.public_key(), *reversed(self._retired)):
            try:
                checkpoint = verify_checkpoint(text, {self.signer.name: key}, origin=self.origin)
                break
            except (NoteError, CheckpointError) as exc:
                problem = exc
        else:
            raise EventLogError(f"latest checkpoint does not verify: {problem}") from None
        if checkpoint.size > self.size:
            raise EventLogError(f"log holds {self.size} entries but was signed at {checkpoint.size}")
        if self._signed_root != checkpoint.root:
            raise EventLogError(f"entries no longer match the signed checkpoint at size {checkpoint.size}")

    # -- reading
    @property
    def size(self) -> int:
        return len(self._offsets)

    def root(self) -> bytes:
        return self._tree.root()

    def leaf_hashes(self) -> list[bytes]:
        """Every leaf hash, for proofs (inclusion, consistency)."""
        return [bytes(self._leaves[i : i + 32]) for i in range(0, len(self._leaves), 32)]

    def entries(self, start: int = 0) -> Iterator[Entry]:
        if start >= self.size:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offsets[start])
            for _, line in zip(range(start, self.size), fh, strict=False):
                yield Entry.parse(line)

    def entry(self, seq: int) -> Entry:
        if not 0 <= seq < self.size:
            raise IndexError(seq)
        with open(self.path, "rb") as fh:
            fh.seek(self._offsets[seq])
            return Entry.parse(fh.readline())

    def tail(self, count: int) -> list[Entry]:
        return list(self.entries(max(0, self.size - count)))

    def latest_checkpoint_size(self) -> int:
        latest = self.checkpoint_dir / "latest.note"
        try:
            return Checkpoint.parse(latest.read_text().split("\n\n", 1)[0] + "\n").size
        except (FileNotFoundError, CheckpointError, IndexError):
            return 0

    def signer_for(self, seq: int) -> Signer | None:
        """The signer whose key was in use at entry ``seq`` (entries before this process opened the log:
        the key it opened with)."""
        found = self._epochs[0][1] if self._epochs else None
        for start, signer in self._epochs:
            if start <= seq:
                found = signer
        return found

    # -- writing
    def append(self, type_: str, body: dict[str, Any]) -> Entry:
        """Append one entry and fsync before returning: once this returns, the event survives a power cut."""
        with self._lock:
            return self._append(type_, body)

    def rotate_signer(
        self, rotate: Callable[[dict[str, Any]], tuple[dict[str, Any], Signer]], by: str | None = None
    ) -> Entry:
        """Hand the log to a new signing key, atomically for every other writer.

        Under the log's lock: a checkpoint of every entry so far by the old key; ``rotate(context)`` makes
        the new key and returns the link and the new signer (context: origin, log_size, log_root); the
        ``signing_key_rotated`` entry with the link; from it on the new key, which at once signs a
        checkpoint that covers the rotation entry."""
        with self._lock:
            if self.signer is None:
                raise EventLogError("this log has no signing key to rotate")
            self._write_checkpoint()
            context = {"origin": self.origin, "log_size": self.size, "log_root": base64.b64encode(self.root()).decode()}
            link, signer = rotate(context)
            return self._switch(link, signer, by)

    def resume_rotation(self, link: dict[str, Any], signer: Signer) -> Entry:
        """Log a rotation whose keys changed on disk before a power cut stopped it from reaching the log."""
        with self._lock:
            if link.get("log_size") != self.size or link.get("log_root") != base64.b64encode(self.root()).decode():
                raise EventLogError(
                    f"the interrupted key rotation was for log size {link.get('log_size')}; the log holds {self.size}"
                )
            return self._switch(link, signer, None)

    @property
    def policy(self) -> CheckpointPolicy:
        return CheckpointPolicy(self.checkpoint_every, self.checkpoint_interval_s)

    def declare(self, type_: str, body: dict[str, Any]) -> Entry:
        """Append an entry declaring this log's checkpoint policy (body field ``log``), alone between two
        checkpoints: one of everything before it and one covering it, so the declaration is signed at once
        and a verifier can trust it (the station's ``boot`` entry)."""
        with self._lock:
            if self.size > self._last_checkpoint[0]:
                self._write_checkpoint()
            entry = self._append(type_, body | {"log": self.policy.declaration()}, checkpoint=False)
            self._write_checkpoint()
            return entry

    def _switch(self, link: dict[str, Any], signer: Signer, by: str | None) -> Entry:
        entry = self._append(ROTATION_EVENT, {"link": link, **({"by": by} if by else {})}, checkpoint=False)
        self.signer = signer
        self._epochs.append((entry.seq, signer))
        self._write_checkpoint()
        return entry

    def _append(self, type_: str, body: dict[str, Any], checkpoint: bool = True) -> Entry:
        entry = Entry(
            seq=self.size,
            type=type_,
            wall=datetime.now(UTC).isoformat(timespec="milliseconds"),
            boot_id=self._boot_id,
            mono_ns=self._clock(),
            body=body,
        )
        data = entry.canonical()
        line = data + b"\n"
        try:
            if os.write(self._fd, line) != len(line):
                raise OSError("short write")
            os.fdatasync(self._fd)
        except OSError as exc:
            os.truncate(self.path, self._end)  # never leave half an entry behind (disk full)
            raise EventLogError(f"cannot append to the event log: {exc}") from exc
        leaf = leaf_hash(data)
        os.write(self._index_fd, INDEX_RECORD.pack(self._end, leaf))  # derived: rebuilt if lost
        self._offsets.append(self._end)
        self._leaves += leaf
        self._tree.append(leaf)
        self._end += len(line)
        if checkpoint and self._checkpoint_due(entry.mono_ns):
            self._write_checkpoint()
        return entry

    def _checkpoint_due(self, now_ns: int) -> bool:
        """Due once ``checkpoint_every`` entries are uncovered, or an entry comes ``checkpoint_interval_s``
        or more after the last checkpoint. So every entry but the newest of an uncovered stretch came less
        than the interval after the checkpoint before it (docs/event-log.md, checkpoint policy)."""
        if self.signer is None:
            return False
        size, when = self._last_checkpoint
        return self.size - size >= self.checkpoint_every or (self.size > size and now_ns - when >= self._interval_ns)

    def checkpoint(self) -> str | None:
        """Sign a checkpoint of the whole log now (before an upload, at shutdown); the note text."""
        with self._lock:
            return self._write_checkpoint()

    def _write_checkpoint(self) -> str | None:
        if self.signer is None:
            return None
        note = sign_checkpoint(Checkpoint(self.origin, self.size, self._tree.root()), self.signer.name, self.signer.key)
        self.checkpoint_dir.mkdir(exist_ok=True)
        atomic_write_bytes(self.checkpoint_dir / f"{self.size:012d}.note", note.encode(), mode=0o644)
        atomic_write_bytes(self.checkpoint_dir / "latest.note", note.encode(), mode=0o644)
        self._last_checkpoint = (self.size, self._clock())
        return note

    def close(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            if self.signer is not None and self.size > self._last_checkpoint[0]:
                self._write_checkpoint()
            for fd in (self._fd, self._index_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fd = self._index_fd = -1
