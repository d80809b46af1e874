"""The station process: builds the services from the config and runs them with an explicit lifecycle.

STARTING -> RUNNING -> STOPPING -> STOPPED. Background tasks are supervised: one that dies, or returns
while the station is running, stops the whole process with a non-zero exit so systemd restarts it. A
half-alive station that silently stopped offloading is worse than a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import date
from enum import StrEnum

import uvicorn

from appliance import __version__
from appliance.alarms import AlarmBoard
from appliance.bays import BayService
from appliance.bus import Broadcaster
from appliance.central.archive import ArchiveStore
from appliance.central.uploader import Uploader
from appliance.checkout import CheckoutService
from appliance.config import StationConfig
from appliance.deadlines import calendar_coverage
from appliance.equipment import EquipmentService
from appliance.eventlog import EventLog, Signer
from appliance.hardware import make_badge_reader, make_dock_board, make_indicators
from appliance.offload import Offloader
from appliance.policy import PolicyProfile, load_profile
from appliance.state.db import StateDB
from appliance.store import LocalStore
from devices.badge.base import BadgeReader
from devices.dock.base import DockBoard, DockBoardError
from devices.hotplug import make_scanner
from provisioning.keys import load_signing_key

log = logging.getLogger(__name__)


class Lifecycle(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class StationError(Exception):
    """The station cannot start; the message says what to do."""


def log_origin(station_id: str) -> str:
    """The event log's C2SP origin line: one log per station and key epoch."""
    return f"recterm/{station_id}/events/e1"


class TaskDied(Exception):
    """A supervised background task ended while the station was running."""


class Station:
    def __init__(self, config: StationConfig) -> None:
        self.config = config
        self.state = Lifecycle.STARTING
        self.policy: PolicyProfile = load_profile(config.policy.profile, config.policy.profile_file)
        for folder in (config.state_dir, config.store_dir, config.log_dir, config.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self.signing_key = load_signing_key(config.keys_dir)
        except FileNotFoundError:
            raise StationError(
                f"no station signing key in {config.keys_dir}: provision the station first (recterm provision)"
            ) from None
        self.db = StateDB(config.state_dir / "state.json")
        self.events = EventLog(
            config.log_dir,
            origin=log_origin(config.station.id),
            signer=Signer(config.station.id, self.signing_key),
        )
        self.store = LocalStore(
            config.store_dir,
            buffer_size=config.offload.buffer_kib * 1024,
            reserve_bytes=int(config.offload.reserve_gib * 2**30),
            sm3=self.policy.integrity.sm3.value,
        )
        self.offloader = Offloader(
            self.store, self.db, self.events, config.offload.extensions, config.station.id, self.signing_key
        )
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.bus: Broadcaster | None = None
        self.bays: BayService | None = None
        self.uploader: Uploader | None = None
        self.badge: BadgeReader | None = None
        self.checkout: CheckoutService | None = None
        self.equipment: EquipmentService | None = None

    # -- supervision
    def _supervise(self, name: str, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)

        def done(t: asyncio.Task[None]) -> None:
            if self.state is not Lifecycle.RUNNING and self.state is not Lifecycle.STARTING:
                return
            if t.cancelled():
                exc: BaseException = TaskDied(f"task {name} was cancelled")
            else:
                exc = t.exception() or TaskDied(f"task {name} returned")
            log.critical("background task %s died: %r; stopping the station", name, exc)
            self._failure = exc
            self._stop.set()

        task.add_done_callback(done)
        self._tasks.append(task)

    async def _watch_calendar(self) -> None:
        """Warn well before the official working-day calendar runs out (deadlines count working days)."""
        while not self._stop.is_set():
            status = calendar_coverage(date.today())
            if status.ok:
                self.alarms.clear("calendar")
            else:
                self.alarms.raise_("calendar", "alarm.calendar", status.message())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=6 * 3600)

    def _on_card(self, card: str) -> None:
        """A badge swiped at the kiosk's reader (reader thread): the kiosk page picks it up."""
        if self.bus is not None:
            self.bus.publish("badge", {"card": card})

    async def _poll_board(self, interval_s: float = 2.0) -> None:
        """Charge state per bay from the dock board; reopen it with backoff when it goes away."""
        loop = asyncio.get_running_loop()
        board: DockBoard | None = None
        backoff = 1.0
        assert self.bays is not None
        while not self._stop.is_set():
            try:
                if board is None:
                    board = await loop.run_in_executor(None, make_dock_board, self.config.devices, self.config.bays)
                    self.alarms.clear("dock_board")
                    backoff = 1.0
                self.bays.apply_board_status(await loop.run_in_executor(None, board.status))
                delay = interval_s
            except DockBoardError as exc:
                self.alarms.raise_("dock_board", "alarm.dock_board", str(exc))
                if board is not None:
                    board.close()
                board = None
                delay, backoff = backoff, min(backoff * 2, 60.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
        if board is not None:
            board.close()

    def request_stop(self) -> None:
        self._stop.set()

    # -- run
    async def run(self, serve_web: bool = True, on_running: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        self.bus = Broadcaster(loop)
        self.alarms = AlarmBoard(self.events, self.bus)
        self.indicators = make_indicators(self.config.devices, self.config.bays)
        self.bays = BayService(
            self.config,
            self.db,
            self.events,
            self.offloader,
            self.bus,
            self.alarms,
            self.policy.integrity.free_camera_after,
            self.indicators,
        )
        self.checkout = CheckoutService(
            self.config, self.policy, self.db, self.events, self.bays, self.alarms, self.indicators
        )
        self.equipment = EquipmentService(self.config, self.policy, self.db, self.events, self.alarms)
        self.equipment.attach(self.bays, self.checkout)
        self.badge = make_badge_reader(self.config.devices, self._on_card)
        scanner = make_scanner(self.config.devices.backend.value, self.config.devices.sim_world)
        self.events.append(
            "boot",
            {
                "station": self.config.station.id,
                "version": __version__,
                "policy": self.policy.id,
                "devices": self.config.devices.backend.value,
            },
        )
        log.info("station %s starting (policy %s)", self.config.station.id, self.policy.id)
        self._supervise("hotplug", self.bays.watch(scanner, self._stop))
        self._supervise("housekeeping", self.bays.housekeeping(self._stop))
        self._supervise("calendar", self._watch_calendar())
        self._supervise("checkout", self.checkout.watch(self._stop))
        if self.config.devices.dock_board.backend.value != "disabled":
            self._supervise("dock-board", self._poll_board())
        if self.config.central.kind == "archive":
            self.uploader = Uploader(
                self.config.station.id, self.store, ArchiveStore(self.config.archive_dir), self.db, self.events
            )
            self.uploader.after_pass = self.bays.try_free_waiting
            self._supervise("upload", self.uploader.run(interval_s=2.0))
        if serve_web:
            from web_ui.app import create_app

            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(self),
                    host=self.config.web.host,
                    port=self.config.web.port,
                    log_config=None,
                    access_log=False,
                    lifespan="on",
                    timeout_graceful_shutdown=5,
                )
            )
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours handle it
            self._supervise("web", _serve(server))
        self.state = Lifecycle.RUNNING
        log.info("station running")
        if on_running:
            on_running()
        try:
            await self._stop.wait()
        finally:
            self.state = Lifecycle.STOPPING
            log.info("station stopping")
            scanner.close()
            self.bus.close()
            if serve_web:
                server.should_exit = True
            for task in self._tasks:
                if task.get_name() != "web":
                    task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await loop.run_in_executor(None, self.bays.close)
            await loop.run_in_executor(None, self.equipment.close)
            if self.badge is not None:
                self.badge.close()
            self.indicators.close()
            self.events.append("shutdown", {"clean": self._failure is None})
            self.events.close()
            self.db.close()
            self.state = Lifecycle.STOPPED
            log.info("station stopped")
        if self._failure is not None:
            raise TaskDied(str(self._failure)) from self._failure


async def _serve(server: uvicorn.Server) -> None:
    # uvicorn calls sys.exit() when it cannot bind; asyncio would let that escape past our cleanup.
    try:
        await server.serve()
    except SystemExit as exc:
        raise TaskDied(f"web server exited with status {exc.code}") from None
