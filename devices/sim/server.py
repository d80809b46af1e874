"""The running simulator: docks cameras into bays and shows them on the simulated USB bus.

Docking a camera does what plugging it into a real dock does: its storage appears as a block device
and its control port as a serial device, both announced under the bay's USB port path (the station's
simulated hot-plug back end reads ``usb/<port>.json`` where the real one reads udev). A small JSON-lines
socket lets ``recterm sim`` commands drive it from a shell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any

from appliance.state.atomic import atomic_write_json
from devices.badge.sim import SimBadgeReader
from devices.dock.protocol import ChargeState
from devices.dock.sim import SimDockBoard
from devices.sim.firmware import CameraFirmware, PtyEndpoint, charge
from devices.sim.world import SimError, SimWorld

log = logging.getLogger(__name__)


class SimServer:
    def __init__(self, world: SimWorld, charge_interval_s: float = 3.0) -> None:
        self.world = world
        self.charge_interval_s = charge_interval_s
        self._lock = threading.RLock()
        self._live: dict[int, PtyEndpoint] = {}
        self.board: SimDockBoard | None = None
        self.badge: SimBadgeReader | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socketserver.ThreadingUnixStreamServer | None = None

    # -- lifecycle
    def start(self) -> None:
        self.world.clear_usb()  # a previous run's announcements are stale: that bus is gone
        # The dock controller board and the badge reader, at stable names as udev would give them.
        self.board = SimDockBoard(channels=max(self.world.wiring()))
        _link(self.world.root / "dev" / "dock-board", self.board.slave_path)
        self.badge = SimBadgeReader(link=self.world.root / "dev" / "badge-reader")
        for bay, serial in sorted(self.world.docked().items()):
            try:
                self._attach(bay, serial)
            except SimError as exc:
                log.warning("bay %s: cannot re-dock %s: %s", bay, serial, exc)
        self._start_socket()
        charger = threading.Thread(target=self._charge_loop, name="sim-charger", daemon=True)
        charger.start()
        self._threads.append(charger)

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.shutdown()
            self._sock.server_close()
            with contextlib.suppress(FileNotFoundError):
                self.world.socket_path.unlink()
        with self._lock:
            for bay in list(self._live):
                self._detach(bay)
        for thread in self._threads:
            thread.join(timeout=5)
        if self.board is not None:
            self.board.close()
            with contextlib.suppress(FileNotFoundError):
                (self.world.root / "dev" / "dock-board").unlink()
        if self.badge is not None:
            self.badge.close()

    # -- docking
    def dock(self, serial: str, bay: int) -> None:
        with self._lock:
            wiring = self.world.wiring()
            if bay not in wiring:
                raise SimError(f"no bay {bay} (bays: {', '.join(map(str, sorted(wiring)))})")
            docked = self.world.docked()
            if bay in docked:
                raise SimError(f"bay {bay} already holds {docked[bay]}")
            if serial in docked.values():
                raise SimError(f"camera {serial} is already docked")
            self.world.load(serial)  # exists?
            self.world.set_docked(bay, serial)
            self._attach(bay, serial)

    def undock(self, bay: int) -> str:
        with self._lock:
            docked = self.world.docked()
            if bay not in docked:
                raise SimError(f"bay {bay} is empty")
            self._detach(bay)
            self.world.set_docked(bay, None)
            return docked[bay]

    def _attach(self, bay: int, serial: str) -> None:
        camera = self.world.load(serial)
        port = self.world.wiring()[bay]
        endpoint = PtyEndpoint(CameraFirmware(self.world, serial))
        self._live[bay] = endpoint
        atomic_write_json(
            self.world.usb_dir / f"{port}.json",
            {
                "port_path": port,
                "usb": {"vid": camera.usb_vid, "pid": camera.usb_pid, "serial": serial},
                "block_device": None if camera.storage_after_msc else str(self.world.image_path(serial)),
                "control_port": endpoint.slave_path,
            },
            mode=0o644,
        )
        if self.board is not None:
            self.board.set_present(bay, True)
            self._update_charge(bay, camera.battery_pct)
        log.info("bay %s (port %s): docked %s, control on %s", bay, port, serial, endpoint.slave_path)

    def _detach(self, bay: int) -> None:
        port = self.world.wiring()[bay]
        # The device vanishes from the bus first, then its port hangs up: the order of a real unplug.
        with self.world.state_lock, contextlib.suppress(FileNotFoundError):  # not while storage is being shown
            (self.world.usb_dir / f"{port}.json").unlink()
        endpoint = self._live.pop(bay, None)
        if endpoint is not None:
            endpoint.close()
        if self.board is not None:
            self.board.set_present(bay, False)
        log.info("bay %s (port %s): undocked", bay, port)

    def _charge_loop(self) -> None:
        while not self._stop.wait(self.charge_interval_s):
            for bay, serial in list(self.world.docked().items()):
                try:
                    charge(self.world, serial)
                    self._update_charge(bay, self.world.load(serial).battery_pct)
                except (SimError, OSError) as exc:
                    log.debug("charging %s: %s", serial, exc)

    def _update_charge(self, bay: int, battery_pct: int) -> None:
        if self.board is not None and bay in self._live:
            self.board.set_charge(bay, ChargeState.FULL if battery_pct >= 100 else ChargeState.CHARGING)

    # -- control socket
    def _start_socket(self) -> None:
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    reply = server.handle_command(line)
                    self.wfile.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")

        path = self.world.socket_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self._sock.daemon_threads = True
        thread = threading.Thread(target=self._sock.serve_forever, name="sim-socket", daemon=True)
        thread.start()
        self._threads.append(thread)

    def handle_command(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op = request["op"]
            if op == "dock":
                self.dock(str(request["serial"]), int(request["bay"]))
                return {"ok": True}
            if op == "undock":
                return {"ok": True, "serial": self.undock(int(request["bay"]))}
            if op == "swipe":
                if self.badge is None:
                    raise SimError("the simulator is not running")
                self.badge.swipe(str(request["card"]))
                return {"ok": True}
            if op == "status":
                return {"ok": True, "docked": {str(k): v for k, v in self.world.docked().items()}}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except SimError as exc:
            return {"ok": False, "error": str(exc)}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}


def send_command(world_root: Path, request: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Used by `recterm sim ...` to talk to the running simulator."""
    world = SimWorld(world_root)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(world.socket_path))
        except OSError as exc:
            raise SimError(f"the simulator is not running in {world_root} ({exc.strerror})") from exc
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = sock.makefile("rb").readline()
    if not reply:
        raise SimError("the simulator closed the connection")
    return json.loads(reply)


def _link(link: Path, target: str) -> None:
    """A stable name for a pty, replaced atomically (what a udev symlink is on a station)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temp = link.with_name(link.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    temp.symlink_to(target)
    temp.replace(link)
