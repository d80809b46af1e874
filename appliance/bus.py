"""Live updates for the web UI: the station publishes, each open page gets its own queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)


class Broadcaster:
    """Thread-safe publish; subscribers are asyncio queues on the station's loop. A slow page loses old
    updates (bounded queue) rather than holding memory: each update carries a whole bay's state."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int = 256) -> None:
        self._loop = loop
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[tuple[str, Any]]] = set()

    def subscribe(self) -> asyncio.Queue[tuple[str, Any]]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, topic: str, data: Any) -> None:
        """Callable from any thread."""
        with contextlib.suppress(RuntimeError):  # loop closed: the station is shutting down
            self._loop.call_soon_threadsafe(self._deliver, topic, data)

    def _deliver(self, topic: str, data: Any) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait((topic, data))
