"""No indicators: for a station without GPIO hardware (simulation, development machines)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from devices.gpio.base import BayIndicators, Beeps, LedLook

log = logging.getLogger(__name__)


class DisabledBayIndicators(BayIndicators):
    """Accepts every call and does nothing; ``presence()`` is always None (unknown).

    States and patterns are still validated, so a wrong state name fails in simulation as it would on a Pi.
    With ``bays`` given, unknown bay numbers are refused too; without it any bay is accepted.
    """

    def __init__(self, bays: Iterable[int] | None = None) -> None:
        super().__init__(bays)

    def release_latch(self, bay: int, seconds: float = 0.5) -> None:
        self._check_bay(bay)
        log.debug("bay %d: latch release (%.2f s) ignored: GPIO disabled", bay, seconds)

    def presence(self, bay: int) -> bool | None:
        self._check_bay(bay)
        return None

    def _show(self, bay: int, look: LedLook) -> None:
        pass

    def _latch(self, bay: int, energised: bool) -> None:
        pass

    def _beep(self, beeps: Beeps) -> None:
        pass

    def _release(self) -> None:
        pass
