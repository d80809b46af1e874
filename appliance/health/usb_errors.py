"""USB enumeration failures per bay, counted from kernel log lines (``journalctl -k``, dmesg or /dev/kmsg).

A camera whose contacts are dirty or whose cable is worn shows up as descriptor read errors (-71 EPROTO,
-110 ETIMEDOUT, -32 EPIPE) on its port, and when the kernel gives up, as "unable to enumerate USB device"
on the hub port. Device lines name the port path (``usb 1-1.3: ...``); hub-port lines name the hub and the
port number (``usb 1-1-port3: ...``, ``usb usb1-port2: ...`` for a root hub), which map to 1-1.3 and 1-2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from appliance.health import HealthResult, HealthStatus

CHECK = "usb_enumeration"

_LINE = re.compile(r"\busb (?P<name>usb\d+-port\d+|\d+-\d+(?:\.\d+)*(?:-port\d+)?): (?P<message>.*?)\s*$")
_ROOT_PORT = re.compile(r"usb(\d+)-port(\d+)")
_HUB_PORT = re.compile(r"(\d+-\d+(?:\.\d+)*)-port(\d+)")
_ERROR = re.compile(
    r"device descriptor read/\w+, error -?\d+"
    r"|device not accepting address \d+, error -?\d+"
    r"|Device not responding to setup address"
    r"|Cannot enable\. Maybe the USB cable is bad\?"
    r"|can't set config #\d+, error -?\d+"
    r"|unable to enumerate USB device"
)
_GAVE_UP = "unable to enumerate USB device"


@dataclass
class PortErrors:
    """``errors``: every enumeration error line; ``failures``: how many times the kernel gave up."""

    errors: int = 0
    failures: int = 0
    last: str = ""

    def add(self, other: PortErrors) -> None:
        self.errors += other.errors
        self.failures += other.failures
        self.last = other.last or self.last


def port_path_of(name: str) -> str:
    """The USB port path a kernel log name refers to: ``1-1.3`` as is, ``1-1-port3`` -> ``1-1.3``,
    ``usb1-port2`` -> ``1-2``."""
    if match := _ROOT_PORT.fullmatch(name):
        return f"{match.group(1)}-{match.group(2)}"
    if match := _HUB_PORT.fullmatch(name):
        return f"{match.group(1)}.{match.group(2)}"
    return name


def count_usb_errors(lines: Iterable[str]) -> dict[str, PortErrors]:
    """Enumeration errors per port path in ``lines`` (any of the usual kernel log formats)."""
    counts: dict[str, PortErrors] = {}
    for line in lines:
        match = _LINE.search(line)
        if not match or not _ERROR.search(match.group("message")):
            continue
        entry = counts.setdefault(port_path_of(match.group("name")), PortErrors())
        entry.errors += 1
        entry.failures += _GAVE_UP in match.group("message")
        entry.last = match.group("message")
    return counts


def bay_for_port(port_path: str, port_to_bay: Mapping[str, int]) -> int | None:
    """The bay a port path belongs to: exact, or the nearest configured port upstream (a camera with its own
    hub appears at 1-1.3.1 behind bay port 1-1.3)."""
    path = port_path
    while True:
        if path in port_to_bay:
            return port_to_bay[path]
        if "." not in path:
            return None
        path = path.rsplit(".", 1)[0]


def check_usb_errors(
    lines: Iterable[str], port_to_bay: Mapping[str, int], *, warn_errors: int = 3, fail_failures: int = 2
) -> HealthResult:
    """Warn when a bay has ``warn_errors`` error lines or any give-up; fail at ``fail_failures`` give-ups.

    One failed dock typically logs several lines (two descriptor reads, address errors, then the give-up), and
    a single -71 during a slow insertion is normal, so one line alone is not worth a warning. Errors on ports
    that belong to no bay are reported and warned about too: they usually mean the bay map is wrong.
    """
    per_bay: dict[int, PortErrors] = {}
    unmapped: dict[str, PortErrors] = {}
    for port, entry in count_usb_errors(lines).items():
        bay = bay_for_port(port, port_to_bay)
        if bay is None:
            unmapped[port] = entry
        else:
            per_bay.setdefault(bay, PortErrors()).add(entry)
    details = {
        "bays": {str(bay): vars(entry) for bay, entry in sorted(per_bay.items())},
        "unmapped_ports": {port: vars(entry) for port, entry in sorted(unmapped.items())},
    }
    failing = sorted(bay for bay, e in per_bay.items() if e.failures >= fail_failures)
    warning = sorted(bay for bay, e in per_bay.items() if e.failures or e.errors >= warn_errors)
    odd_ports = sorted(port for port, e in unmapped.items() if e.failures or e.errors >= warn_errors)
    if failing:
        message = f"cameras repeatedly fail to enumerate in bays {failing}"
        return HealthResult(CHECK, HealthStatus.FAIL, message, details)
    if warning or odd_ports:
        parts = [f"bays {warning}"] if warning else []
        parts += [f"ports {odd_ports} (no bay)"] if odd_ports else []
        return HealthResult(CHECK, HealthStatus.WARN, "USB enumeration errors on " + " and ".join(parts), details)
    return HealthResult(CHECK, HealthStatus.OK, "no USB enumeration problems", details)
