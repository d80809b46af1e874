"""Station-wide alarms: conditions staff must see on the kiosk and the admin page until they clear.

Raising an alarm logs it in the event log once (not on every re-check); clearing it logs that too.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.bus import Broadcaster
from appliance.eventlog import EventLog


@dataclass(frozen=True)
class Alarm:
    key: str  # what it is about, e.g. "store_low" or "unauthorised:bay3"
    message: str  # a message-catalogue key
    detail: str
    since: str


class AlarmBoard:
    def __init__(self, events: EventLog, bus: Broadcaster | None = None) -> None:
        self.events = events
        self.bus = bus
        self._active: dict[str, Alarm] = {}
        self._lock = threading.Lock()

    def raise_(self, key: str, message: str, detail: str = "", **context: Any) -> None:
        with self._lock:
            if key in self._active:
                return
            self._active[key] = Alarm(key, message, detail, datetime.now(UTC).isoformat(timespec="seconds"))
        self.events.append("alarm", {"key": key, "message": message, "detail": detail, **context})
        self._publish()

    def clear(self, key: str) -> None:
        with self._lock:
            if self._active.pop(key, None) is None:
                return
        self.events.append("alarm_cleared", {"key": key})
        self._publish()

    def active(self) -> list[dict[str, str]]:
        with self._lock:
            return [asdict(a) for a in sorted(self._active.values(), key=lambda a: a.since)]

    def _publish(self) -> None:
        if self.bus is not None:
            self.bus.publish("alarms", self.active())
