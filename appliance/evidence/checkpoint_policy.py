"""How often the event log signs a checkpoint, and the longest stretch of entries an honest log leaves
between two checkpoints (docs/event-log.md, checkpoint policy).

The writer (appliance/eventlog.py) signs when ``every`` entries have been appended since the last
checkpoint, or when an entry's ``mono_ns`` is ``interval_s`` or more after it; also on open when entries are
uncovered, around each declaring entry (the station's ``boot``), before and after a key rotation, and on
close. The station declares its policy in its ``boot`` entry (body field ``log``), so a verifier knows
the bound without trusting anything but the signed log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_EVERY = 256
DEFAULT_INTERVAL_S = 300.0
# Settings a station may choose (appliance/config.py [log]); a declaration outside them is refused.
EVERY_RANGE = (1, 65536)
INTERVAL_RANGE_S = (1.0, 3600.0)


class CheckpointPolicyError(ValueError):
    """A declared checkpoint policy that is malformed or outside the allowed bounds."""


@dataclass(frozen=True)
class CheckpointPolicy:
    every: int = DEFAULT_EVERY
    interval_s: float = DEFAULT_INTERVAL_S

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int):
            raise CheckpointPolicyError(f"checkpoint_every {self.every!r} is not an integer")
        if not EVERY_RANGE[0] <= self.every <= EVERY_RANGE[1]:
            raise CheckpointPolicyError(f"checkpoint_every {self.every} is outside {EVERY_RANGE[0]}..{EVERY_RANGE[1]}")
        if isinstance(self.interval_s, bool) or not isinstance(self.interval_s, int | float):
            raise CheckpointPolicyError(f"checkpoint_interval_s {self.interval_s!r} is not a number")
        low, high = INTERVAL_RANGE_S
        if not (math.isfinite(self.interval_s) and low <= self.interval_s <= high):
            raise CheckpointPolicyError(f"checkpoint_interval_s {self.interval_s} is outside {low:g}..{high:g}")

    @property
    def interval_ns(self) -> int:
        return round(self.interval_s * 1e9)

    def declaration(self) -> dict[str, Any]:
        """The ``log`` field of a declaring entry."""
        return {"checkpoint_every": self.every, "checkpoint_interval_s": self.interval_s}

    @classmethod
    def from_declaration(cls, value: Any) -> CheckpointPolicy:
        if not isinstance(value, Mapping) or set(value) != {"checkpoint_every", "checkpoint_interval_s"}:
            raise CheckpointPolicyError(f"declaration {value!r} is not {{checkpoint_every, checkpoint_interval_s}}")
        return cls(value["checkpoint_every"], value["checkpoint_interval_s"])

    def describe(self) -> str:
        return f"every {self.every} entries or {self.interval_s:g} s"
