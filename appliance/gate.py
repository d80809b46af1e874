"""The pre-use check gate (000 Art. 12, 001 Art. 13, 003 Art. 19, 004 Art. 19): every check a camera must
pass before it is handed out, each producing a reading that goes into the event log with the assignment.

All checks run even after one fails, so the log shows the camera's whole condition; the kiosk names the
first failed check. Blocking (talks to the camera): run on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from appliance.policy import Checkout
from devices.camera.model import CameraControl, StorageStatus

GIB = 2**30


@dataclass(frozen=True)
class Reading:
    check: str  # lock, status, offload, identity, model, firmware, battery, storage_gb, storage_hours, clock
    ok: bool
    value: Any
    limit: Any
    message: str  # message-catalogue key the kiosk shows when this check fails
    args: dict[str, Any] = field(default_factory=dict)  # values for the message's {placeholders}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def registry_checks(camera: Mapping[str, Any], offload_done: bool) -> list[Reading]:
    """Checks that need no camera: its registry row and the bay's offload state."""
    lock = camera.get("lock")
    return [
        Reading(
            "lock",
            lock is None,
            (lock or {}).get("reason"),
            None,
            "gate.lock",
            {"reason": (lock or {}).get("reason", "")},
        ),
        Reading("status", camera.get("status") == "in_service", camera.get("status"), "in_service", "gate.status"),
        Reading("offload", offload_done, offload_done, True, "gate.offload"),
    ]


def camera_checks(
    control: CameraControl,
    camera: Mapping[str, Any],
    limits: Checkout,
    allowed_firmware: Mapping[str, Sequence[str]],
    now: Callable[[], datetime] = datetime.now,
) -> tuple[list[Reading], int, StorageStatus]:
    """Live checks over the camera's control port. The clock is synced and then re-read: a camera whose
    clock will not take the time (a dead RTC) fails even though the station just set it. Also returns the
    battery and storage readings for the bay view."""
    readings: list[Reading] = []
    ident = control.identity()
    readings.append(
        Reading("identity", ident.serial == camera["serial"], ident.serial, camera["serial"], "gate.identity")
    )
    model_ok = (not camera.get("model") or ident.model == camera["model"]) and (
        not allowed_firmware or ident.model in allowed_firmware
    )
    readings.append(
        Reading("model", model_ok, ident.model, camera.get("model") or None, "gate.model", {"model": ident.model})
    )
    versions = allowed_firmware.get(ident.model) or []
    readings.append(
        Reading(
            "firmware",
            not versions or ident.firmware in versions,
            ident.firmware,
            list(versions) or None,
            "gate.firmware",
            {"firmware": ident.firmware},
        )
    )

    battery = control.battery_pct()
    minimum = limits.min_battery_pct.value
    readings.append(
        Reading("battery", battery >= minimum, battery, minimum, "gate.battery", {"pct": battery, "min": _n(minimum)})
    )

    storage = control.storage()
    free_gib = storage.free_bytes / GIB
    readings.append(
        Reading(
            "storage_gb",
            free_gib >= limits.min_free_gib.value,
            round(free_gib, 3),
            limits.min_free_gib.value,
            "gate.storage_gb",
            {"free": f"{free_gib:.2f}", "min": _n(limits.min_free_gib.value)},
        )
    )
    bitrate = float(camera.get("bitrate_mbps") or 8.0)
    hours = storage.free_bytes * 8 / (bitrate * 1e6) / 3600
    readings.append(
        Reading(
            "storage_hours",
            hours >= limits.min_free_hours.value,
            round(hours, 3),
            limits.min_free_hours.value,
            "gate.storage_hours",
            {"hours": f"{hours:.1f}", "min": _n(limits.min_free_hours.value), "mbps": _n(bitrate)},
        )
    )

    before = (control.read_clock() - now()).total_seconds()
    control.set_clock(now())
    after = (control.read_clock() - now()).total_seconds()
    max_drift = limits.max_clock_drift_s.value
    readings.append(
        Reading(
            "clock",
            abs(after) <= max_drift,
            {"before_s": before, "after_sync_s": after},
            max_drift,
            "gate.clock",
            {"drift": _n(round(after)), "max": _n(max_drift)},
        )
    )
    return readings, battery, storage


def first_failure(readings: Sequence[Reading]) -> Reading | None:
    return next((r for r in readings if not r.ok), None)


def _n(value: float) -> str:
    return f"{value:g}"
