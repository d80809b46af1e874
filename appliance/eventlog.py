"""The station's history: an append-only, fsynced file of canonical-JSON entries, one per line.

Every event the station acts on (boot, dock, ingest, check-out, maintenance, access, upload receipt ...)
is appended here before anyone is told it happened. Entries carry a gap-free sequence number, the wall
clock, the boot id and the monotonic clock, so reordering, dropping or a clock jump is visible later.
A line torn by a power cut is moved aside to ``torn-<offset>.bin`` (never silently dropped) on open.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785

from devices import paths

log = logging.getLogger(__name__)


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
        data = json.loads(line)
        entry = cls(data["seq"], data["type"], data["wall"], data["boot_id"], data["mono_ns"], data["body"])
        if entry.canonical() != line.rstrip(b"\n"):
            raise EventLogError(f"entry {entry.seq} is not in canonical form")
        return entry


def _boot_id() -> str:
    try:
        return paths.proc("sys", "kernel", "random", "boot_id").read_text().strip()
    except OSError:
        return "unknown"


class EventLog:
    FILE = "entries.jsonl"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / self.FILE
        self._lock = threading.Lock()
        self._boot_id = _boot_id()
        self._recover_torn_tail()
        self._size = self._count_and_check()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _recover_torn_tail(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                end = fh.tell()
                if end == 0:
                    return
                fh.seek(max(0, end - 1))
                if fh.read(1) == b"\n":
                    return
                # Find the start of the torn last line.
                chunk = 1 << 16
                pos = end
                while pos > 0:
                    start = max(0, pos - chunk)
                    fh.seek(start)
                    data = fh.read(pos - start)
                    nl = data.rfind(b"\n")
                    if nl >= 0:
                        pos = start + nl + 1
                        break
                    pos = start
                fh.seek(pos)
                torn = fh.read()
        except FileNotFoundError:
            return
        aside = self.path.parent / f"torn-{pos}.bin"
        aside.write_bytes(torn)
        os.truncate(self.path, pos)
        log.warning("event log: moved a torn last line (%d bytes) aside to %s", len(torn), aside.name)

    def _count_and_check(self) -> int:
        count = 0
        for entry in self._iter_file():
            if entry.seq != count:
                raise EventLogError(f"{self.path}: entry {count} has sequence number {entry.seq}")
            count += 1
        return count

    def _iter_file(self) -> Iterator[Entry]:
        try:
            with open(self.path, "rb") as fh:
                for line in fh:
                    yield Entry.parse(line)
        except FileNotFoundError:
            return

    @property
    def size(self) -> int:
        return self._size

    def append(self, type_: str, body: dict[str, Any]) -> Entry:
        """Append one entry and fsync before returning: once this returns, the event survives a power cut."""
        with self._lock:
            entry = Entry(
                seq=self._size,
                type=type_,
                wall=datetime.now(UTC).isoformat(timespec="milliseconds"),
                boot_id=self._boot_id,
                mono_ns=time.monotonic_ns(),
                body=body,
            )
            line = entry.canonical() + b"\n"
            end = os.fstat(self._fd).st_size
            try:
                if os.write(self._fd, line) != len(line):
                    raise OSError("short write")
                os.fdatasync(self._fd)
            except OSError as exc:
                os.truncate(self.path, end)  # never leave half an entry behind (disk full)
                raise EventLogError(f"cannot append to the event log: {exc}") from exc
            self._size += 1
            return entry

    def entries(self, start: int = 0) -> Iterator[Entry]:
        for entry in self._iter_file():
            if entry.seq >= start:
                yield entry

    def tail(self, count: int) -> list[Entry]:
        return list(deque(self.entries(max(0, self._size - count)), maxlen=count))

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
