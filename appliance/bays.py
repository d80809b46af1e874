"""The bays: turn hot-plug snapshots into dock/undock events, identify each camera, offload it.

Each bay has a live view (what the web UI shows) that only this service changes. Blocking work (the
control port, mounting, copying) runs on a bounded thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB

from appliance import cycles, inventory
from appliance.alarms import AlarmBoard
from appliance.bus import Broadcaster
from appliance.config import StationConfig, StorageBackend
from appliance.eventlog import EventLog
from appliance.health.unresponsive import UnresponsiveCameras
from appliance.offload import (
    MAX_NAMED,
    RECORDINGS,
    SAFE_STATUSES,
    OffloadCancelled,
    Offloader,
    OffloadProgress,
    OffloadResult,
    copied_this_cycle,
)
from appliance.presence import Gap, prove_present
from appliance.state.db import StateDB
from appliance.store import StoreError, StoreFull
from devices.camera.model import CameraAuthError, CameraError, CameraGone
from devices.camera.serial_control import SerialCameraControl
from devices.dock.protocol import ChannelStatus
from devices.gpio.base import BayIndicators
from devices.gpio.disabled import DisabledBayIndicators
from devices.hotplug import DeviceScanner, DockedDevice
from devices.volumes import PartitionsPending, VolumeDamaged, VolumeError, open_volume
from devices.volumes.helper import unmount_via_helper
from devices.volumes.mounting import cleanup_stale_mounts

log = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 0.25  # progress updates per bay, at most this often


@dataclass
class BayView:
    number: int
    port_path: str
    label: str = ""
    state: str = "empty"  # empty, identifying, offloading, ready, error, unauthorised
    camera: dict[str, Any] | None = None
    battery_pct: int | None = None
    storage_total: int | None = None
    storage_free: int | None = None
    progress: dict[str, int] | None = None
    message: str = ""  # a message-catalogue key, e.g. "bay.error.auth"
    detail: str = ""  # technical detail for staff (never shown to officers as the only text)
    charge: dict[str, Any] | None = None  # from the dock board: {"state", "current_ma", "present"}
    led: str = "off"
    checkout: dict[str, Any] | None = None  # set by the check-out service: {"assignment", "phase", ...}
    locked: bool = False  # set by equipment management: the camera has an open fault, never green
    updated: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Running:
    cancel: threading.Event = field(default_factory=threading.Event)
    future: asyncio.Future[None] | None = None


class BayService:
    def __init__(
        self,
        config: StationConfig,
        db: StateDB,
        events: EventLog,
        offloader: Offloader,
        bus: Broadcaster,
        alarms: AlarmBoard,
        free_after: str = "local_verify",
        indicators: BayIndicators | None = None,
        cameras: UnresponsiveCameras | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.events = events
        self.offloader = offloader
        self.bus = bus
        self.alarms = alarms
        self.indicators = indicators or DisabledBayIndicators()
        self.cameras = cameras or UnresponsiveCameras()  # control-port answers per bay, for the health check
        self._present: dict[int, tuple[DockedDevice, dict[str, Any]]] = {}  # authorised cameras in their bays
        self._polled: dict[int, float] = {}  # bay -> monotonic time of its last battery poll
        self.channel_to_bay = {b.dock_channel: b.number for b in config.bays if b.dock_channel is not None}
        self.views = {b.number: BayView(b.number, b.port_path, b.label) for b in config.bays}
        self.bay_by_port = {b.port_path: b.number for b in config.bays}
        self._running: dict[int, _Running] = {}
        helper = config.devices.storage is StorageBackend.HELPER
        cleanup_stale_mounts(config.mount_root, unmount_via_helper if helper else None)
        self._pool = ThreadPoolExecutor(max_workers=config.offload.parallel, thread_name_prefix="offload")
        self._last_publish: dict[int, float] = {}
        self._waiting: dict[int, tuple[DockedDevice, dict[str, Any], OffloadResult]] = {}
        self._space_waiting: dict[int, tuple[DockedDevice, dict[str, Any]]] = {}
        # Bays whose camera was told to expose its storage (MSC) and has not yet: bay -> (camera, deadline).
        self._storage_waiting: dict[int, tuple[dict[str, Any], float]] = {}
        self._free_lock = threading.Lock()
        self.free_after = free_after
        self._lock = threading.Lock()  # views are touched by worker threads and the loop
        # One user of a camera's control port at a time (offload, freeing, the check-out gate).
        self._control_locks = {b.number: threading.Lock() for b in config.bays}
        # Called on the loop with (bay, registry row) after a registered camera docks / after a bay empties.
        self.dock_listeners: list[Callable[[int, dict[str, Any]], Awaitable[None]]] = []
        self.undock_listeners: list[Callable[[int, str | None], Awaitable[None]]] = []
        # Called with (what, bay, data) for readings equipment management watches: "identify" (camera,
        # battery_pct), "error" (camera, error, exception), "charge" (every board poll: state, current_ma,
        # present), "undock". From the loop or worker threads: observers must only hand work over.
        self.observers: list[Callable[[str, int, dict[str, Any]], None]] = []

    # -- views
    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [v.as_dict() for v in sorted(self.views.values(), key=lambda v: v.number)]

    def _update(self, bay: int, force: bool = True, **changes: Any) -> None:
        with self._lock:
            view = self.views[bay]
            for key, value in changes.items():
                setattr(view, key, value)
            led = led_for(view)
            if led != view.led:
                view.led = led
                try:
                    self.indicators.set_led(bay, led)
                except Exception as exc:  # a failing LED must never stop an offload
                    log.warning("bay %s: cannot set LED to %s: %s", bay, led, exc)
                if self.offloader.scheduler is not None:  # few cameras ready: the bus serves the nearest first
                    self.offloader.scheduler.set_ready_count(sum(v.led == "ready" for v in self.views.values()))
            view.updated = datetime.now(UTC).isoformat(timespec="seconds")
            data = view.as_dict()
        now = time.monotonic()
        if force or now - self._last_publish.get(bay, 0) >= PUBLISH_INTERVAL_S:
            self._last_publish[bay] = now
            self.bus.publish("bay", data)

    # -- hot-plug
    async def watch(self, scanner: DeviceScanner, stop: asyncio.Event) -> None:
        """Diff successive scans into dock and undock events until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        present: dict[str, DockedDevice] = {}
        interval = self.config.devices.poll_interval_s
        while not stop.is_set():
            seen = await loop.run_in_executor(None, scanner.scan)
            for port in present.keys() - seen.keys():
                await self._undocked(port, present[port])
            for port, device in seen.items():
                if port not in present:
                    await self._docked(device)
                elif _storage_appeared(present[port], device):  # after MSC: the same camera, now with storage
                    self._storage_shown(device)
                elif present[port] != device:  # re-enumerated (reset, new control port)
                    await self._undocked(port, present[port])
                    await self._docked(device)
            present = seen
            wait = loop.run_in_executor(None, scanner.wait_for_change, interval)
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({wait, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()

    async def _docked(self, device: DockedDevice) -> None:
        bay = self.bay_by_port.get(device.port_path)
        if bay is None:
            self.alarms.raise_(
                f"unmapped:{device.port_path}",
                "alarm.unmapped_port",
                f"USB device {device.usb.serial} on port {device.port_path}, which no bay is mapped to",
                port_path=device.port_path,
                usb_serial=device.usb.serial,
            )
            log.warning("device %s on port %s, which no bay is mapped to", device.usb.serial, device.port_path)
            return
        self.events.append(
            "dock",
            {
                "bay": bay,
                "port_path": device.port_path,
                "usb": {"vid": f"{device.usb.vid:04x}", "pid": f"{device.usb.pid:04x}", "serial": device.usb.serial},
            },
        )
        camera = await self.db.run(lambda db: inventory.camera_by_usb_serial(db, device.usb.serial))
        if camera is None:
            self.alarms.raise_(
                f"unauthorised:{bay}",
                "alarm.unauthorised",
                f"bay {bay}: USB serial {device.usb.serial} is not in the inventory",
                bay=bay,
                usb_serial=device.usb.serial,
            )
            self._update(
                bay,
                state="unauthorised",
                camera={"serial": device.usb.serial},
                message="bay.unauthorised",
                detail=f"USB serial {device.usb.serial} is not in the inventory; the station will not touch it",
                progress=None,
                battery_pct=None,
                storage_total=None,
                storage_free=None,
            )
            return
        self._present[bay] = (device, camera)
        self.cameras.docked(bay)
        for listener in self.dock_listeners:
            await _call_listener(listener, bay, camera)
        running = _Running()
        self._running[bay] = running
        self._update(
            bay,
            state="identifying",
            camera={"serial": camera["serial"]},
            message="bay.identifying",
            detail="",
            progress=None,
        )
        loop = asyncio.get_running_loop()
        running.future = loop.run_in_executor(self._pool, self._process, bay, device, camera, running.cancel)

    def _storage_shown(self, device: DockedDevice) -> None:
        """The docked camera's storage appeared on the bus. Offload it now if the camera was identified and is
        waiting for it; a run still identifying picks the new device up itself (``_process``)."""
        bay = self.bay_by_port.get(device.port_path)
        if bay is None or bay not in self._present:
            return  # unmapped or unauthorised: nothing is processed there
        camera = self._present[bay][1]
        self._present[bay] = (device, camera)
        waiting = self._storage_waiting.pop(bay, None)
        if waiting is None:
            return
        running = _Running()
        self._running[bay] = running
        loop = asyncio.get_running_loop()
        running.future = loop.run_in_executor(self._pool, self._process, bay, device, waiting[0], running.cancel, True)

    async def _undocked(self, port: str, device: DockedDevice) -> None:
        bay = self.bay_by_port.get(port)
        if bay is None:
            self.alarms.clear(f"unmapped:{port}")
            return
        self._waiting.pop(bay, None)
        self._space_waiting.pop(bay, None)
        self._polled.pop(bay, None)
        self._storage_waiting.pop(bay, None)
        self.cameras.undocked(bay)
        self.alarms.clear(f"unauthorised:{bay}")
        self.alarms.clear(f"serial_mismatch:{bay}")
        running = self._running.pop(bay, None)
        if running is not None:
            running.cancel.set()
            if running.future is not None:
                await asyncio.gather(running.future, return_exceptions=True)
        self.events.append("undock", {"bay": bay, "port_path": port, "usb_serial": device.usb.serial})
        self._observe("undock", bay, {"usb_serial": device.usb.serial})
        present = self._present.pop(bay, None)
        self._update(
            bay,
            state="empty",
            camera=None,
            locked=False,
            battery_pct=None,
            storage_total=None,
            storage_free=None,
            progress=None,
            message="",
            detail="",
        )
        for listener in self.undock_listeners:
            await _call_listener(listener, bay, present[1]["serial"] if present else None)

    # -- the work for one docked camera (worker thread)
    def _process(
        self,
        bay: int,
        device: DockedDevice,
        camera: dict[str, Any],
        cancel: threading.Event,
        identified: bool = False,
    ) -> None:
        try:
            if not identified:
                camera = self._identify(bay, device, camera)
                device = self._present.get(bay, (device, camera))[0]  # its storage may have shown meanwhile
            if device.block_device is None:
                shown = self._await_storage(bay, device, camera)
                if shown is None:
                    return  # the scan's _storage_shown takes it from here
                device = shown
            self._storage_waiting.pop(bay, None)
            self._check_room(bay, device, camera)
            try:
                result = self._offload(bay, device, camera, cancel)
            except PartitionsPending as exc:
                log.info("bay %s: %s; waiting for the kernel to list them", bay, exc)
                shown = self._await_storage(bay, device, camera)
                if shown is None:
                    return
                result = self._offload(bay, shown, camera, cancel)
            if result.damaged:  # the good recordings are copied; the damaged ones stay, the camera is not freed
                raise VolumeDamaged(result.damaged)
            if result.missing:
                raise StoreError(f"{len(result.missing)} recordings have no verified copy: {result.missing[:5]}")
            self._waiting[bay] = (device, camera, result)
            self.try_free(bay)
        except OffloadCancelled as exc:
            log.info("bay %s: offload interrupted: %s", bay, exc)
            self.events.append("offload_interrupted", {"bay": bay, "camera": camera["serial"], "reason": str(exc)})
        except CameraAuthError as exc:
            self._fail(bay, camera, "bay.error.auth", exc)
        except CameraGone as exc:
            self._fail(bay, camera, "bay.error.gone", exc)
        except CameraError as exc:
            self._fail(bay, camera, "bay.error.camera", exc)
        except StoreFull as exc:
            self._fail(bay, camera, "bay.error.store_full", exc)
            self.alarms.raise_("store_low", "alarm.store_low", str(exc))
        except VolumeDamaged as exc:
            self._fail(bay, camera, "bay.error.damaged", exc)
        except (VolumeError, StoreError) as exc:
            self._fail(bay, camera, "bay.error.storage", exc)
        except Exception as exc:  # a bug: keep the station up for the other bays, but make it loud
            log.exception("bay %s: unexpected failure", bay)
            self._fail(bay, camera, "bay.error.internal", exc)

    def _await_storage(self, bay: int, device: DockedDevice, camera: dict[str, Any]) -> DockedDevice | None:
        """Wait for the camera's storage to show on the bus: cameras expose it only after MSC and it enumerates
        a moment later, and a partitioned disk is seen a moment before its partitions. The device to offload
        if it showed meanwhile; else None, and the scan's ``_storage_shown`` starts the offload once it does
        (it won the race if the pop below finds nothing). Only a camera that never shows it within
        devices.storage_timeout_s is an error (housekeeping)."""
        deadline = time.monotonic() + self.config.devices.storage_timeout_s
        self._storage_waiting[bay] = (camera, deadline)
        self._update(bay, state="identifying", message="bay.waiting_storage", detail="", progress=None)
        latest = self._present.get(bay, (device, camera))[0]
        if latest.block_device in (None, device.block_device) or self._storage_waiting.pop(bay, None) is None:
            return None
        return latest

    def _fail(self, bay: int, camera: dict[str, Any], message: str, exc: Exception) -> None:
        log.error("bay %s (%s): %s", bay, camera["serial"], exc)
        self.events.append("bay_error", {"bay": bay, "camera": camera["serial"], "error": message, "detail": str(exc)})
        self._observe("error", bay, {"camera": camera["serial"], "error": message, "exception": exc})
        self._update(bay, state="error", message=message, detail=str(exc))

    def _identify(self, bay: int, device: DockedDevice, camera: dict[str, Any]) -> dict[str, Any]:
        if device.control_port is None:
            raise CameraGone("camera has no control port")
        timeout = self.config.devices.control_timeout_s
        with (
            self._control_locks[bay],
            SerialCameraControl(device.control_port, str(camera["password"]), timeout) as control,
        ):
            control.init()
            ident = control.identity()
            if ident.serial != camera["serial"]:
                self.alarms.raise_(
                    f"serial_mismatch:{bay}",
                    "alarm.serial_mismatch",
                    f"bay {bay}: camera reports serial {ident.serial}, its USB identity says {camera['serial']}",
                    bay=bay,
                    inventory=camera["serial"],
                    camera=ident.serial,
                )
                raise CameraError(f"camera reports serial {ident.serial}, inventory says {camera['serial']}")
            battery = control.battery_pct()
            storage = control.storage()
            control.enter_mass_storage()
        self.cameras.answered(bay)
        self.events.append(
            "identify",
            {
                "bay": bay,
                "camera": ident.serial,
                "vendor": ident.vendor,
                "model": ident.model,
                "firmware": ident.firmware,
                "battery_pct": battery,
                "storage_free": storage.free_bytes,
            },
        )
        self._observe("identify", bay, {"camera": ident.serial, "battery_pct": battery})
        self._update(
            bay,
            camera={"serial": ident.serial, "vendor": ident.vendor, "model": ident.model, "firmware": ident.firmware},
            battery_pct=battery,
            storage_total=storage.total_bytes,
            storage_free=storage.free_bytes,
        )
        return {**camera, "vendor": ident.vendor, "model": ident.model, "firmware": ident.firmware}

    def _check_room(self, bay: int, device: DockedDevice, camera: dict[str, Any]) -> None:
        """Never start an offload that would eat into the store's reserve: wait, alarm, delete nothing."""
        view = self.views[bay]
        needed = (view.storage_total or 0) - (view.storage_free or 0)
        try:
            self.offloader.store.ensure_room(needed)
        except StoreFull:
            self._space_waiting[bay] = (device, camera)
            raise
        self._space_waiting.pop(bay, None)
        if not self._space_waiting:
            self.alarms.clear("store_low")

    def _offload(
        self, bay: int, device: DockedDevice, camera: dict[str, Any], cancel: threading.Event
    ) -> OffloadResult:
        if device.block_device is None:
            raise VolumeError("camera exposes no storage")
        self._update(bay, state="offloading", message="bay.offloading", progress=OffloadProgress().as_dict())
        mountpoint = self.config.mount_root / f"bay{bay}"  # made by the back end (the helper: in root's dir)
        with open_volume(Path(device.block_device), self.config.devices.storage.value, mountpoint) as volume:
            result = self.offloader.run(
                volume,
                camera,
                bay,
                cancel,
                lambda p: self._update(bay, force=False, progress=p.as_dict()),
            )
        self._update(bay, state="ready", message="bay.awaiting_free", progress=result.progress.as_dict())
        return result

    # -- freeing the camera: only once every recording on it is safe, as the policy defines safe
    def try_free(self, bay: int) -> bool:
        """Free the camera in ``bay`` if its recordings are all verified (and, by policy, confirmed by the
        central store) and proven present right now (appliance/presence.py). Called after the offload and
        again after each upload pass. Worker thread."""
        with self._free_lock:
            waiting = self._waiting.get(bay)
            if waiting is None:
                return False
            device, camera, result = waiting
            serial = camera["serial"]
            if result.missing:
                return False  # the reconciliation found recordings without a verified copy: never free
            paths = result.copied + result.skipped
            rows = self.db.call(lambda db: _rows_for(db, serial, paths))
            if len(rows) != len(paths) or any(r["status"] not in SAFE_STATUSES for r in rows):
                return False  # something is not verified: never free
            if self.free_after == "central_confirm" and any(r["status"] != "uploaded" for r in rows):
                self._update(bay, message="bay.awaiting_upload")
                return False
            if device.control_port is None:
                return False
            if paths:
                gaps = prove_present(rows, self.offloader.store, self.events, rehash=set(result.skipped))
                if gaps:
                    self._waiting.pop(bay, None)
                    self._refuse_free(bay, serial, gaps)
                    return False
                # The cycle ends before the camera is asked (appliance/cycles.py): a crash from here on costs a
                # second copy at the next dock, never a new recording skipped as an old one.
                self.db.call(lambda db: cycles.end_cycle(db, serial, self.events.size - 1))
                files = [{"camera_path": r["camera_path"], "sha256": r["sha256"]} for r in rows]
                self.events.append(
                    cycles.FREE_REQUESTED, {"bay": bay, "camera": serial, "policy": self.free_after, "files": files}
                )
                timeout = self.config.devices.control_timeout_s
                with (
                    self._control_locks[bay],
                    SerialCameraControl(device.control_port, str(camera["password"]), timeout) as control,
                ):
                    control.free_recordings(paths)
                self.events.append(
                    "camera_freed", {"bay": bay, "camera": serial, "policy": self.free_after, "files": files}
                )
            self._waiting.pop(bay, None)
        self._update(bay, state="ready", message="bay.ready")
        return True

    def _refuse_free(self, bay: int, serial: str, gaps: list[Gap]) -> None:
        """The station cannot prove it holds every recording: the camera keeps them all, the rows of the
        unproven ones stop counting as copied (the next dock copies them again), and everyone is told."""
        unproven = {g.camera_path for g in gaps}

        reasons = {g.camera_path: g.reason for g in gaps}

        def demote(db: TinyDB) -> None:
            for row in _rows_for(db, serial, sorted(unproven)):
                update = {"status": "unproven", "unproven_reason": reasons[row["camera_path"]]}
                db.table(RECORDINGS).update(update, Query().key == row["key"])

        self.db.call(demote)
        self.events.append(
            "free_refused",
            {
                "bay": bay,
                "camera": serial,
                "unproven": [g.as_dict() for g in gaps[:MAX_NAMED]],
                "unproven_count": len(gaps),
            },
        )
        detail = "; ".join(f"{g.camera_path}: {g.reason}" for g in gaps[:5])
        self.alarms.raise_(
            f"unproven:{bay}",
            "alarm.unproven",
            f"bay {bay}, camera {serial}: {len(gaps)} recordings not proven present, camera not freed: {detail}",
            bay=bay,
            camera=serial,
        )
        log.error("bay %s, camera %s: not freed, %d recordings not proven present: %s", bay, serial, len(gaps), detail)
        self._update(bay, state="error", message="bay.error.unproven", detail=detail)

    def try_free_waiting(self) -> None:
        for bay in list(self._waiting):
            try:
                self.try_free(bay)
            except CameraError as exc:
                log.warning("bay %s: freeing the camera failed: %s", bay, exc)

    async def housekeeping(self, stop: asyncio.Event, interval_s: float = 5.0) -> None:
        """Periodic duties: retry bays that waited for store space, free cameras whose uploads are now
        confirmed. Runs until ``stop``; blocking parts go to the pool."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            for bay, (device, camera) in list(self._space_waiting.items()):
                running = self._running.get(bay)
                if running is not None and running.future is not None and not running.future.done():
                    continue
                running = _Running()
                self._running[bay] = running
                self._update(bay, state="identifying", message="bay.identifying", detail="")
                running.future = loop.run_in_executor(self._pool, self._process, bay, device, camera, running.cancel)
            for bay, (camera, deadline) in list(self._storage_waiting.items()):
                if time.monotonic() > deadline and self._storage_waiting.pop(bay, None) is not None:
                    seconds = self.config.devices.storage_timeout_s
                    self._fail(bay, camera, "bay.error.storage", VolumeError(f"no storage {seconds:g} s after MSC"))
            await loop.run_in_executor(None, self.try_free_waiting)
            await loop.run_in_executor(None, self.poll_batteries)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    def poll_batteries(self) -> None:
        """Read the battery of every camera sitting idle in its bay (worker thread): the LED turns green when it
        is full, and a camera that stops answering shows up in the health check."""
        for bay, (device, _camera) in list(self._present.items()):
            running = self._running.get(bay)
            busy = running is not None and running.future is not None and not running.future.done()
            due = time.monotonic() - self._polled.get(bay, float("-inf")) >= self.config.devices.battery_poll_s
            if busy or not due or device.control_port is None or self.views[bay].state != "ready":
                continue
            self._polled[bay] = time.monotonic()
            try:
                with self.control(bay) as (control, _):
                    battery = control.battery_pct()
            except CameraError as exc:
                log.info("bay %s: battery poll failed: %s", bay, exc)
                continue
            self.cameras.answered(bay)
            if bay in self._present and self.views[bay].battery_pct != battery:
                self._update(bay, battery_pct=battery)

    # -- for the check-out service
    @contextlib.contextmanager
    def control(self, bay: int) -> Iterator[tuple[SerialCameraControl, dict[str, Any]]]:
        """The control port of the camera docked in ``bay`` and its registry row, held exclusively (nothing
        else talks to that camera meanwhile). Worker thread. Raises CameraGone when the bay is empty."""
        present = self._present.get(bay)
        if present is None or present[0].control_port is None:
            raise CameraGone(f"bay {bay} holds no camera")
        device, camera = present
        timeout = self.config.devices.control_timeout_s
        with (
            self._control_locks[bay],
            SerialCameraControl(device.control_port, str(camera["password"]), timeout) as control,
        ):
            yield control, camera

    def offload_done(self, bay: int) -> bool:
        """Whether the camera in ``bay`` was offloaded, every copy verified, and the camera freed."""
        running = self._running.get(bay)
        busy = running is not None and running.future is not None and not running.future.done()
        view = self.views[bay]
        return (
            not busy
            and bay not in self._waiting
            and bay not in self._space_waiting
            and view.state == "ready"
            and view.message == "bay.ready"
        )

    def note_readings(self, bay: int, battery_pct: int, storage_total: int, storage_free: int) -> None:
        """Fresh readings taken by someone else on the camera's control port (the check-out gate)."""
        self._update(bay, battery_pct=battery_pct, storage_total=storage_total, storage_free=storage_free)

    def set_locked(self, serial: str, locked: bool) -> None:
        """Mark the bay holding camera ``serial`` (if docked) as holding a locked camera: its LED shows a
        fault instead of green, so nobody reaches for it."""
        for number, view in self.views.items():
            docked = (view.camera or {}).get("serial") == serial and view.state not in ("empty", "unauthorised")
            if docked and view.locked != locked:
                self._update(number, locked=locked)

    def set_checkout(self, bay: int, info: dict[str, Any] | None) -> None:
        """Show a check-out on the bay (its LED and tile): phase "release" (take it) or "out" (on duty)."""
        self._update(bay, checkout=info)

    def apply_board_status(self, channels: list[ChannelStatus]) -> None:
        """Charge state and presence per bay, from the dock controller board."""
        for channel in channels:
            bay = self.channel_to_bay.get(channel.channel)
            if bay is None:
                continue
            charge = {"state": str(channel.charge_state), "current_ma": channel.current_ma, "present": channel.present}
            self._observe("charge", bay, charge)
            if self.views[bay].charge != charge:
                self._update(bay, charge=charge)

    def _observe(self, what: str, bay: int, data: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(what, bay, data)
            except Exception:  # an observer's bug must not stop the bays
                log.exception("bay observer %r failed", observer)

    def close(self) -> None:
        for running in self._running.values():
            running.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


def led_for(view: BayView) -> str:
    """The bay LED says at a glance what an officer may do: green means the camera can go out."""
    phase = (view.checkout or {}).get("phase")
    if phase == "release" and view.state != "empty":
        return "take"
    match view.state:
        case "empty":
            return "checked_out" if phase == "out" else "off"
        case "identifying" | "offloading":
            return "offloading"
        case "error" | "unauthorised":
            return "fault"
        case "ready":
            if view.locked:
                return "fault"
            full = (view.battery_pct is not None and view.battery_pct >= 100) or (view.charge or {}).get(
                "state"
            ) == "full"
            return "ready" if full and view.message == "bay.ready" else "charging"
    return "off"


async def _call_listener(listener: Callable[..., Awaitable[None]], *args: Any) -> None:
    try:
        await listener(*args)
    except Exception:  # a listener's bug must not stop the bays
        log.exception("bay listener %r failed", listener)


def _storage_appeared(before: DockedDevice, after: DockedDevice) -> bool:
    """The same camera on the same port, control port unchanged, whose storage was absent and now is there,
    or whose whole disk now shows its partition (sda -> sda1, mmcblk0 -> mmcblk0p1)."""
    if before.usb != after.usb or before.control_port != after.control_port or after.block_device is None:
        return False
    if before.block_device is None:
        return True
    return re.fullmatch(re.escape(str(before.block_device)) + r"p?\d+", str(after.block_device)) is not None


def _rows_for(db: TinyDB, serial: str, paths: list[str]) -> list[dict[str, Any]]:
    """The rows, in the camera's current cycle, of the recordings at ``paths``."""
    wanted = set(paths)
    return [r for r in copied_this_cycle(db, serial) if r["camera_path"] in wanted]
