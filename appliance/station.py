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
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance import __version__
from appliance.access import AccessService
from appliance.alarms import AlarmBoard
from appliance.bays import BayService
from appliance.bus import Broadcaster
from appliance.bus_scheduler import make_bus_scheduler
from appliance.central.archive import ArchiveStore
from appliance.central.base import CentralStore
from appliance.central.local_keep import LocalKeeper
from appliance.central.throttle import Throttle, in_window, parse_window
from appliance.central.uploader import Uploader
from appliance.checkout import CheckoutService
from appliance.config import StationConfig
from appliance.deadlines import calendar_coverage
from appliance.equipment import EquipmentService
from appliance.eventlog import Entry, EventLog, EventLogError, Signer
from appliance.evidence import manifest
from appliance.evidence.keychain import ROTATION_EVENT, KeyHistoryError, RetiredKey, read_history
from appliance.hardware import make_badge_reader, make_dock_board, make_indicators
from appliance.health.monitor import HealthMonitor, make_health_monitor
from appliance.offload import Offloader
from appliance.policy import PolicyProfile, load_profile
from appliance.records import RecordsService
from appliance.sdnotify import notify, watchdog, watchdog_interval
from appliance.security.accounts import AccountService
from appliance.state.db import StateDB
from appliance.store import LocalStore
from devices.badge.base import BadgeReader
from devices.dock.base import DockBoard, DockBoardError
from devices.hotplug import make_scanner
from provisioning.keys import load_signing_key, recover_signing_key, rotate_signing_key
from provisioning.tls import TLS_CERT, TLS_KEY, rotate_tls_certificate

log = logging.getLogger(__name__)
SHUTDOWN_WAIT_S = 10.0  # for blocking calls of cancelled tasks to return before the last log entry


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
            recover_signing_key(config.keys_dir)
            signing_key = load_signing_key(config.keys_dir)
            retired = read_history(config.keys_dir)
        except FileNotFoundError:
            raise StationError(
                f"no station signing key in {config.keys_dir}: provision the station first (recterm provision)"
            ) from None
        except KeyHistoryError as exc:
            raise StationError(str(exc)) from None
        if config.web.tls and not (config.keys_dir / TLS_CERT).exists():
            raise StationError(f"web.tls is set but {config.keys_dir} holds no certificate: recterm provision")
        self.db = StateDB(config.state_dir / "state.json")
        self.events = EventLog(
            config.log_dir,
            origin=log_origin(config.station.id),
            signer=Signer(config.station.id, signing_key),
            checkpoint_every=config.log.checkpoint_every,
            checkpoint_interval_s=config.log.checkpoint_interval_s,
            retired=[r.public for r in retired],
        )
        self._finish_interrupted_rotation(retired)
        self.store = LocalStore(
            config.store_dir,
            buffer_size=config.offload.buffer_kib * 1024,
            reserve_bytes=int(config.offload.reserve_gib * 2**30),
            sm3=self.policy.integrity.sm3.value,
        )
        self.accounts = AccountService(self.db, self.events, config.security)
        self.access = AccessService(
            self.db,
            self.events,
            self.store,
            config.station.id,
            self.public_key_for,
            config.security.grant_max_hours,
            config.run_dir,
        )
        self.offloader = Offloader(
            self.store,
            self.db,
            self.events,
            config.offload.extensions,
            config.station.id,
            signing_key,  # only for a log without signer; this one has one, which owns the key in use
            make_bus_scheduler(config),
            config.station.timezone,
        )
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.bus: Broadcaster | None = None
        self.bays: BayService | None = None
        self.uploader: Uploader | None = None
        # Built here, not in run(): a missing credentials file stops the start with a clear message.
        self.central: CentralStore | None = self._central_store() if config.central.kind != "disabled" else None
        self.badge: BadgeReader | None = None
        self.health: HealthMonitor | None = None
        self.checkout: CheckoutService | None = None
        self.records: RecordsService | None = None
        self._servers: list[uvicorn.Server] = []
        self.equipment: EquipmentService | None = None

    # -- the signing key
    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """The key in use now: the event log's signer owns it (checkpoints, and manifests through the log)."""
        assert self.events.signer is not None
        return self.events.signer.key

    def public_key_for(self, key_id: str) -> Ed25519PublicKey | None:
        """The station's public key, current or retired, with this manifest key id."""
        keys = [self.signing_key.public_key(), *(r.public for r in read_history(self.config.keys_dir))]
        return next((k for k in keys if manifest.key_id(k) == key_id), None)

    def _finish_interrupted_rotation(self, retired: list[RetiredKey]) -> None:
        """A power cut after the keys changed on disk but before the log heard of it: log the link now."""
        if not retired:
            return
        link = retired[-1].link
        size = link.get("log_size")
        if not isinstance(size, int):
            raise StationError(f"{self.config.keys_dir}: the key history's last link names no log size")
        if size < self.events.size:
            logged = self.events.entry(size)
            if logged.type != ROTATION_EVENT or logged.body.get("link") != link:
                raise StationError(f"log entry {size} is not the key rotation the key history records")
            return
        try:
            entry = self.events.resume_rotation(link, Signer(self.config.station.id, self.signing_key))
        except EventLogError as exc:
            raise StationError(f"cannot finish the interrupted signing key rotation: {exc}") from None
        log.warning("finished a signing key rotation a power cut interrupted (log entry %d)", entry.seq)

    async def rotate_signing_key(self, by: str) -> dict[str, Any]:
        """A new signing key, in use from the ``signing_key_rotated`` entry on for checkpoints and manifests.

        The old key signs a last checkpoint of everything before the rotation; the link (old and new key,
        the log's size and root at the hand-over) is signed by both and logged; the new key signs the next
        checkpoint, which covers the rotation entry. The old private key is destroyed."""
        keys_dir, station_id = self.config.keys_dir, self.config.station.id

        def rotate(context: dict[str, Any]) -> tuple[dict[str, Any], Signer]:
            link = rotate_signing_key(keys_dir, {"station": station_id, **context})
            return link, Signer(station_id, load_signing_key(keys_dir))

        entry: Entry = await asyncio.get_running_loop().run_in_executor(None, self.events.rotate_signer, rotate, by)
        return entry.body["link"] | {"log_index": entry.seq}

    # -- supervision
    def _supervise(self, name: str, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)

        def done(t: asyncio.Task[None]) -> None:
            if self.state is not Lifecycle.RUNNING and self.state is not Lifecycle.STARTING:
                return
            if self._stop.is_set() and (t.cancelled() or t.exception() is None):
                return  # it ended because a stop was asked for, maybe before run() noticed: not a failure
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
        assert self.bays is not None and self.health is not None
        while not self._stop.is_set():
            try:
                if board is None:
                    board = await loop.run_in_executor(None, make_dock_board, self.config.devices, self.config.bays)
                    self.alarms.clear("dock_board")
                    backoff = 1.0
                channels = await loop.run_in_executor(None, board.status)
                self.bays.apply_board_status(channels)
                batteries = {view["number"]: view["battery_pct"] for view in self.bays.snapshot()}
                self.health.observe_board(channels, self.bays.channel_to_bay, batteries)
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

    def _central_store(self) -> CentralStore:
        central = self.config.central
        if central.kind == "s3":
            from appliance.central.s3 import S3Store, S3StoreError  # boto3 is slow to import: only when used

            assert central.s3 is not None  # the config validator demands it
            try:
                s3 = S3Store(central.s3, self.db)
            except S3StoreError as exc:
                self.db.close()
                raise StationError(str(exc)) from None
            tz = ZoneInfo(self.config.station.timezone)
            s3.throttle = Throttle(
                central.day_cap_mib_s * 2**20, parse_window(central.night_window), lambda: datetime.now(tz)
            ).consume
            return s3
        return ArchiveStore(self.config.archive_dir)

    def _upload_alert(self, at_risk: list[dict[str, object]]) -> None:
        """Kiosk and admin alarm while any recording is within the margin of its upload deadline."""
        if at_risk:
            overdue = sum(1 for r in at_risk if r["overdue"])
            first = at_risk[0]
            detail = f"{len(at_risk)} near deadline, {overdue} overdue; first: {first['name']} due {first['deadline']}"
            self.alarms.raise_("upload_deadline", "alarm.upload_deadline", detail)
        else:
            self.alarms.clear("upload_deadline")

    def _web_servers(self) -> list[uvicorn.Server]:
        """The web UI on host:port (HTTPS with the station certificate when web.tls), and, when configured,
        a plain-HTTP listener on loopback for the kiosk's display. Both serve the same app."""
        from web_ui.app import create_app

        app = create_app(self)
        web = self.config.web
        listeners: list[dict[str, object]] = [{"host": web.host, "port": web.port}]
        if web.tls:
            key, cert = self.config.keys_dir / TLS_KEY, self.config.keys_dir / TLS_CERT
            if not (key.exists() and cert.exists()):
                raise StationError(
                    f"web.tls is set but there is no certificate in {self.config.keys_dir}: recterm provision"
                )
            listeners[0] |= {"ssl_keyfile": str(key), "ssl_certfile": str(cert)}
        if web.kiosk_port is not None:
            listeners.append({"host": "127.0.0.1", "port": web.kiosk_port})
        servers = self._servers = []
        for listener in listeners:
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    log_config=None,
                    access_log=False,
                    lifespan="on",
                    timeout_graceful_shutdown=5,
                    server_header=False,  # nothing about the software to whoever asks
                    **listener,  # type: ignore[arg-type]
                )
            )
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours handle it
            servers.append(server)
        return servers

    async def rotate_tls_key(self, by: str) -> dict[str, str]:
        """New TLS key and certificate, in use for every new connection at once; a ``key_rotated`` event
        links the old certificate to the new one, signed by both keys."""
        loop = asyncio.get_running_loop()
        link = await loop.run_in_executor(None, rotate_tls_certificate, self.config.keys_dir, self.config.station.id)
        key, cert = self.config.keys_dir / TLS_KEY, self.config.keys_dir / TLS_CERT
        for server in self._servers:
            context = server.config.ssl  # the listener's live SSLContext: new handshakes get the new pair
            if context is not None:
                context.load_cert_chain(str(cert), str(key))
        body = {k: v for k, v in link.items() if k != "new_cert"} | {"by": by}
        await loop.run_in_executor(None, self.events.append, "key_rotated", body)
        return link

    async def _advertise(self) -> None:
        """The station's HTTPS UI on the LAN by zeroconf, until the station stops."""
        from appliance.discovery import Advertiser, lan_addresses, station_info
        from provisioning.keys import fingerprint

        interfaces = [str(a) for a in self.config.discovery.interfaces] or None
        info = station_info(
            self.config.station.id,
            __version__,
            self.config.web.port,
            lan_addresses(interfaces),
            fingerprint(self.signing_key.public_key()),
            "https" if self.config.web.tls else "http",
        )
        async with Advertiser(info, interfaces):
            await self._stop.wait()

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
        self.health = make_health_monitor(self.config, self.events, self.alarms, self.bus)
        self.bays = BayService(
            self.config,
            self.db,
            self.events,
            self.offloader,
            self.bus,
            self.alarms,
            self.policy.integrity.free_camera_after,
            self.indicators,
            self.health.cameras,
        )
        self.checkout = CheckoutService(
            self.config, self.policy, self.db, self.events, self.bays, self.alarms, self.indicators
        )
        self.records = RecordsService(self.db, self.events, self.store, self.policy, self.config.station.timezone)
        self.equipment = EquipmentService(self.config, self.policy, self.db, self.events, self.alarms)
        self.equipment.attach(self.bays, self.checkout)
        self.badge = make_badge_reader(self.config.devices, self._on_card)
        scanner = make_scanner(
            self.config.devices.backend.value, self.config.devices.sim_world, [b.port_path for b in self.config.bays]
        )
        # The boot entry declares the checkpoint policy and is signed at once (EventLog.declare): verifiers
        # hold the entries that follow to it.
        self.events.declare(
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
        self._supervise("health", self.health.run(self._stop, self.config.health.interval_s))
        self._supervise("checkout", self.checkout.watch(self._stop))
        if self.config.devices.dock_board.backend.value != "disabled":
            self._supervise("dock-board", self._poll_board())
        if self.central is not None:
            central = self.central
            self.uploader = Uploader(
                self.config.station.id,
                self.store,
                central,
                self.db,
                self.events,
                self.policy,
                alert_margin=timedelta(hours=self.config.central.alert_margin_h),
            )
            self.uploader.after_pass = self.bays.try_free_waiting
            self.uploader.on_alert = self._upload_alert
            self.uploader.keeper = LocalKeeper(self.store, central, self.db, self.events, self.policy).run_once
            if not self.config.central.upload_on_dock:
                window, tz = parse_window(self.config.central.night_window), ZoneInfo(self.config.station.timezone)
                self.uploader.hold = lambda: not in_window(datetime.now(tz).time(), window)
            self._supervise("upload", self.uploader.run(interval_s=2.0))
        servers: list[uvicorn.Server] = []
        if serve_web:
            servers = self._web_servers()
            for number, server in enumerate(servers):
                self._supervise("web" if number == 0 else f"web-{number}", _serve(server))
        if self.config.discovery.advertise:
            self._supervise("zeroconf", self._advertise())
        if (interval := watchdog_interval()) is not None:
            self._supervise("watchdog", watchdog(self._stop, interval))
        self.state = Lifecycle.RUNNING
        log.info("station running")
        if on_running:
            on_running()
        try:
            if serve_web:
                # systemd's READY means "the health endpoint answers": the kiosk and the image test wait on it.
                while not all(s.started for s in servers) and not self._stop.is_set():  # no "started" event
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=0.05)
            notify(f"READY=1\nSTATUS=station {self.config.station.id} running")
            await self._stop.wait()
        finally:
            self.state = Lifecycle.STOPPING
            notify("STOPPING=1")
            log.info("station stopping")
            scanner.close()
            self.bus.close()
            for server in servers:
                server.should_exit = True
            for task in self._tasks:
                if not task.get_name().startswith("web"):
                    task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await loop.run_in_executor(None, self.bays.close)
            await loop.run_in_executor(None, self.equipment.close)
            if self.badge is not None:
                self.badge.close()
            self.indicators.close()
            # A cancelled task's blocking call goes on in its worker thread (a health pass may still log):
            # wait for those, so "shutdown" is the log's last entry. Bounded: a hung call must not hang us.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(loop.shutdown_default_executor(), timeout=SHUTDOWN_WAIT_S)
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
