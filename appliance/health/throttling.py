"""Under-voltage and throttling as the Pi's firmware reports them (``vcgencmd get_throttled``).

An under-voltage right now fails the check: the docks' USB power and the SD card are both at risk. Any other
flag, current or "has occurred since boot", is a warning.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from enum import IntFlag

from appliance.health import HealthResult, HealthStatus
from devices import paths

log = logging.getLogger(__name__)

CHECK = "throttling"
# The firmware driver's attribute: bare hex ("50005\n"). Newer kernels log a one-time deprecation warning
# (in favour of hwmon, which only has the under-voltage alarm), but it is still the only source of all bits.
SYSFS_PARTS = ("devices", "platform", "soc", "soc:firmware", "get_throttled")


class Throttled(IntFlag):
    UNDER_VOLTAGE = 1 << 0
    ARM_FREQ_CAPPED = 1 << 1
    THROTTLED = 1 << 2
    SOFT_TEMP_LIMIT = 1 << 3
    UNDER_VOLTAGE_OCCURRED = 1 << 16
    ARM_FREQ_CAPPED_OCCURRED = 1 << 17
    THROTTLED_OCCURRED = 1 << 18
    SOFT_TEMP_LIMIT_OCCURRED = 1 << 19


NOW = Throttled.UNDER_VOLTAGE | Throttled.ARM_FREQ_CAPPED | Throttled.THROTTLED | Throttled.SOFT_TEMP_LIMIT
OCCURRED = (
    Throttled.UNDER_VOLTAGE_OCCURRED
    | Throttled.ARM_FREQ_CAPPED_OCCURRED
    | Throttled.THROTTLED_OCCURRED
    | Throttled.SOFT_TEMP_LIMIT_OCCURRED
)
_KNOWN = int(NOW | OCCURRED)
_TEXT = re.compile(r"^\s*(?:throttled=)?(?:0x)?([0-9a-fA-F]+)\s*$")


def parse_throttled(text: str) -> int:
    """The value from ``vcgencmd get_throttled`` output (``throttled=0x50005``) or the sysfs file (``50005``)."""
    match = _TEXT.match(text)
    if not match:
        raise ValueError(f"not a get_throttled value: {text!r}")
    return int(match.group(1), 16)


def read_throttled(vcgencmd: str | None = "vcgencmd", timeout: float = 5.0) -> int | None:
    """The current value from sysfs, else from ``vcgencmd``; None when neither is available (not a Pi)."""
    path = paths.sysfs(*SYSFS_PARTS)
    try:
        return parse_throttled(path.read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
    if vcgencmd is None or shutil.which(vcgencmd) is None:
        return None
    try:
        proc = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=timeout, check=True)
        return parse_throttled(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("vcgencmd get_throttled failed: %s", exc)
        return None


def _names(flags: Throttled) -> list[str]:
    return [flag.name.lower() for flag in Throttled if flag in flags and flag.name]


def throttling_result(value: int | None) -> HealthResult:
    """Decode a get_throttled value into a HealthResult."""
    if value is None:
        return HealthResult(CHECK, HealthStatus.WARN, "throttling state unavailable (not a Raspberry Pi?)")
    flags = Throttled(value & _KNOWN)
    now, occurred = flags & NOW, flags & OCCURRED
    details = {"value": f"0x{value:x}", "now": _names(now), "since_boot": _names(occurred)}
    if value & ~_KNOWN:
        details["unknown_bits"] = f"0x{value & ~_KNOWN:x}"  # newer firmware; reported, not judged
    if Throttled.UNDER_VOLTAGE in now:
        return HealthResult(CHECK, HealthStatus.FAIL, "under-voltage now: check the power supply", details)
    if now:
        return HealthResult(CHECK, HealthStatus.WARN, "throttled now: " + ", ".join(details["now"]), details)
    if occurred:
        return HealthResult(
            CHECK, HealthStatus.WARN, "occurred since boot: " + ", ".join(details["since_boot"]), details
        )
    return HealthResult(CHECK, HealthStatus.OK, "no under-voltage or throttling", details)


def check_throttling(vcgencmd: str | None = "vcgencmd") -> HealthResult:
    return throttling_result(read_throttled(vcgencmd))
