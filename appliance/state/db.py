"""The station's current state in TinyDB, behind exactly one owner thread.

TinyDB is neither thread- nor process-safe and its JSONStorage rewrites the file in place (a power cut
mid-write corrupts it). So: one dedicated thread owns the database and runs every read and write handed
to it, and the storage replaces the file atomically. History never lives here: that is the event log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tinydb import TinyDB
from tinydb.storages import Storage

from appliance.state.atomic import atomic_write_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")


class AtomicJSONStorage(Storage):
    """TinyDB storage that writes a temp file, fsyncs it and renames it over the old one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw:
            return None
        return json.loads(raw)

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        atomic_write_bytes(self.path, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())

    def close(self) -> None:
        pass


class StateDB:
    """Hand work to the owner thread: ``await db.run(fn)`` from the event loop, ``db.call(fn)`` elsewhere.

    ``fn`` receives the TinyDB instance; keep it short and free of other I/O.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="statedb")
        self._owner: threading.Thread | None = None
        self._db: TinyDB = self._executor.submit(self._open, path).result()

    def _open(self, path: Path) -> TinyDB:
        self._owner = threading.current_thread()
        return TinyDB(path, storage=AtomicJSONStorage)

    def call(self, fn: Callable[[TinyDB], T]) -> T:
        """Run ``fn`` on the owner thread and wait (from any thread but the event loop's)."""
        if threading.current_thread() is self._owner:
            return fn(self._db)
        return self._executor.submit(fn, self._db).result()

    async def run(self, fn: Callable[[TinyDB], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._db)

    def close(self) -> None:
        self._executor.submit(self._db.close).result()
        self._executor.shutdown(wait=True)
