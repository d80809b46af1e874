"""Daytime bandwidth cap for uploads, lifted in a nightly window (e.g. 01:00-05:00 local time).

A token bucket shared by all upload threads: each part or object asks for its bytes before it is sent.
The cap keeps daytime uploads from starving the office network; at night the station sends at full speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from datetime import time as clock_time


def parse_window(text: str) -> tuple[clock_time, clock_time]:
    """ "01:00-05:00" -> (01:00, 05:00); a window may cross midnight ("22:00-06:00")."""
    try:
        start, end = (clock_time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"night window {text!r} must look like 01:00-05:00") from None
    return start, end


def in_window(moment: clock_time, window: tuple[clock_time, clock_time]) -> bool:
    start, end = window
    if start <= end:
        return start <= moment < end
    return moment >= start or moment < end


class Throttle:
    def __init__(
        self,
        cap_bytes_s: float,
        night: tuple[clock_time, clock_time],
        now: Callable[[], datetime],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cap = cap_bytes_s
        self.night = night
        self.now = now
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._last = clock()

    def capped(self) -> bool:
        return self.cap > 0 and not in_window(self.now().time(), self.night)

    def consume(self, size: int) -> None:
        """Wait until ``size`` bytes may go out under the cap (at once in the nightly window)."""
        if not self.capped():
            return
        with self._lock:
            now = self.clock()
            self._tokens = min(self.cap, self._tokens + (now - self._last) * self.cap)  # burst of one second
            self._last = now
            self._tokens -= size
            if self._tokens < 0:
                wait = -self._tokens / self.cap
                self.sleep(wait)
                self._last += wait
                self._tokens = 0.0
