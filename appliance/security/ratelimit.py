"""Per-client token buckets for sign-in and kiosk identification: a burst of ``per_minute`` attempts, then
one more every ``60 / per_minute`` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_CLIENTS = 4096  # a flood of spoofed addresses cannot grow memory without bound


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)

    def allow(self, client: str) -> float:
        """0 when ``client`` may go ahead (one token taken); otherwise seconds until it may try again."""
        now = self._clock()
        tokens, when = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= MAX_CLIENTS and client not in self._buckets:
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.capacity}
        self._buckets[client] = (tokens - 1, now)
        return 0.0
