"""Retry pacing for an unreachable central store: exponential backoff with full jitter and a breaker.

After ``threshold`` consecutive failures the breaker opens: no attempt until the (growing, jittered)
delay has passed; then one attempt (half-open) closes it on success or opens it again for longer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self,
        base_s: float = 2.0,
        cap_s: float = 600.0,
        threshold: int = 3,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.threshold = threshold
        self.clock = clock
        self.rng = rng or random.Random()
        self.failures = 0
        self.retry_at = 0.0

    @property
    def open(self) -> bool:
        return self.failures >= self.threshold

    def allow(self) -> bool:
        """Whether an attempt may go out now."""
        return self.clock() >= self.retry_at

    def success(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def failure(self) -> float:
        """Record a failed attempt; the delay (seconds) before the next one is allowed."""
        self.failures += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        delay = self.rng.uniform(ceiling / 2, ceiling)  # jitter: stations do not retry in lockstep
        self.retry_at = self.clock() + delay
        return delay
