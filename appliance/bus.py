"""Live updates for the web UI: the station publishes, each open page gets its own queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

Subscription = asyncio.Queue[tuple[str, Any] | None]


class Broadcaster:
    """Thread-safe publish; subscribers are asyncio queues on the station's loop. A slow page loses old
    updates (bounded queue) rather than holding memory: each update carries a whole bay's state."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int = 256) -> None:
        self._loop = loop
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._closed = False

    def subscribe(self) -> Subscription:
        """A queue of (topic, data); None means the station is stopping and the stream should end."""
        queue: Subscription = asyncio.Queue(self._queue_size)
        if self._closed:
            queue.put_nowait(None)
        else:
            self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: Subscription) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        """End every open stream (called on the loop at shutdown, so the web server can drain)."""
        self._closed = True
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        self._subscribers.clear()

    def publish(self, topic: str, data: Any) -> None:
        """Callable from any thread."""
        with contextlib.suppress(RuntimeError):  # loop closed: the station is shutting down
            self._loop.call_soon_threadsafe(self._deliver, topic, data)

    def _deliver(self, topic: str, data: Any) -> None:
        for queue in list(self._subscribers):  # a closed bus has none left
            if queue.full():
                queue.get_nowait()
            queue.put_nowait((topic, data))
