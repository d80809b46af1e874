"""Run the station's health checks periodically, keep the latest verdicts for the admin page, and turn a
failing check into an alarm (and each change of verdict into an event-log entry).

The checks themselves are small modules beside this one; this module only schedules them and decides where
their input comes from: the dock board's charge readings (fed by the station's board poll), the bays'
control-port calls (fed by BayService), the Pi firmware's throttled flags and the kernel log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from appliance.alarms import AlarmBoard
from appliance.bus import Broadcaster
from appliance.config import StationConfig
from appliance.eventlog import EventLog
from appliance.health import HealthResult, HealthStatus
from appliance.health.charge_current import ChargeCurrentCheck, ChargeReading
from appliance.health.throttling import check_throttling
from appliance.health.unresponsive import UnresponsiveCameras
from appliance.health.usb_errors import check_usb_errors
from devices.dock.base import ChannelStatus

log = logging.getLogger(__name__)

KernelLog = Callable[[], Iterable[str]]
SIM_KERNEL_LOG = "dev/kmsg.log"  # in the simulator's world: kernel lines a worn dock would cause


def journal_kernel_log(timeout: float = 10.0) -> list[str]:
    """This boot's kernel messages from journald (the station's image keeps the journal persistent)."""
    if shutil.which("journalctl") is None:
        return []
    try:
        proc = subprocess.run(
            ["journalctl", "-k", "-b", "-o", "cat", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot read the kernel log: %s", exc)
        return []
    return proc.stdout.splitlines()


def file_kernel_log(path: Path) -> KernelLog:
    """Kernel log lines from a file: the simulator writes the USB errors a worn dock would cause there."""

    def read() -> list[str]:
        try:
            return path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    return read


class HealthMonitor:
    def __init__(
        self,
        port_to_bay: dict[str, int],
        events: EventLog,
        alarms: AlarmBoard,
        bus: Broadcaster | None,
        kernel_log: KernelLog | None,
        throttling: Callable[[], HealthResult] | None,
        charge: ChargeCurrentCheck,
        cameras: UnresponsiveCameras,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``kernel_log`` / ``throttling`` None: that source does not exist here, so its check is not run.
        ``clock`` must be the one ``cameras`` uses, so charge and silence are timed alike."""
        self.port_to_bay = port_to_bay
        self.events = events
        self.alarms = alarms
        self.bus = bus
        self.kernel_log = kernel_log
        self.throttling = throttling
        self.charge = charge
        self.cameras = cameras
        self._clock = clock
        self._results: dict[str, HealthResult] = {}
        self._lock = threading.Lock()

    # -- inputs
    def observe_board(
        self, channels: Iterable[ChannelStatus], bay_of_channel: dict[int, int], battery: dict[int, int | None]
    ) -> None:
        """One dock-board poll: a charge reading per mapped bay (``battery``: the bay's last known level)."""
        now = self._clock()
        for channel in channels:
            bay = bay_of_channel.get(channel.channel)
            if bay is None:
                continue
            level = battery.get(bay)
            state: str | int = (
                "full" if str(channel.charge_state) == "full" else ("unknown" if level is None else level)
            )
            self.charge.observe(bay, ChargeReading(now, channel.present, state, float(channel.current_ma)))

    # -- running the checks
    def run_checks(self) -> list[HealthResult]:
        """Every check once (blocking: call from a worker thread). Alarms and events follow the verdicts."""
        results = [self.charge.check(), self.cameras.check()]
        if self.throttling is not None:
            results.append(self.throttling())
        if self.kernel_log is not None:
            results.append(check_usb_errors(self.kernel_log(), self.port_to_bay))
        for result in results:
            self._record(result)
        return results

    def results(self) -> list[dict[str, object]]:
        with self._lock:
            return [r.as_dict() for _, r in sorted(self._results.items())]

    def _record(self, result: HealthResult) -> None:
        with self._lock:
            before = self._results.get(result.check)
            self._results[result.check] = result
        if before is None or before.status is not result.status:
            self.events.append(
                "health", {"check": result.check, "status": result.status.value, "message": result.message}
            )
            if self.bus is not None:
                self.bus.publish("health", result.as_dict())
        key = f"health:{result.check}"
        if result.status is HealthStatus.FAIL:
            self.alarms.raise_(key, f"alarm.health.{result.check}", result.message)
        else:
            self.alarms.clear(key)

    async def run(self, stop: asyncio.Event, interval_s: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await loop.run_in_executor(None, self.run_checks)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)


def make_health_monitor(config: StationConfig, events: EventLog, alarms: AlarmBoard, bus: Broadcaster) -> HealthMonitor:
    """The checks that make sense for the configured hardware: on a simulated station there is no Pi firmware
    to ask about throttling, and the kernel log is the simulator's file."""
    health = config.health
    backend = config.devices.backend.value
    kernel_log: KernelLog | None = None
    if backend == "real":
        kernel_log = journal_kernel_log
    elif backend == "simulated" and config.devices.sim_world is not None:
        kernel_log = file_kernel_log(Path(config.devices.sim_world) / SIM_KERNEL_LOG)
    return HealthMonitor(
        {bay.port_path: bay.number for bay in config.bays},
        events,
        alarms,
        bus,
        kernel_log,
        check_throttling if backend == "real" else None,
        ChargeCurrentCheck(health.charge_zero_warn_s, health.charge_zero_fail_s),
        UnresponsiveCameras(health.camera_silent_warn_s, health.camera_silent_fail_s),
    )
