"""A simulated camera's control firmware: answers the serial line protocol from the camera's state file."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import threading
import tty
from datetime import datetime
from pathlib import Path

from devices.camera.line_protocol import (
    CLOCK_FORMAT,
    COMMANDS,
    ProtocolError,
    Request,
    Response,
    parse_request,
)
from devices.camera.model import OfficerRecord
from devices.sim import media
from devices.sim.world import SimCamera, SimWorld, camera_now
from devices.tools import run_tool
from devices.volumes.detect import probe_fs_type

log = logging.getLogger(__name__)


class CameraFirmware:
    """Stateless between commands: every command reads and writes the camera's state file."""

    def __init__(self, world: SimWorld, serial: str) -> None:
        self.world = world
        self.serial = serial
        self._free: tuple[int, int] | None = None  # (image mtime_ns, free bytes): probing is not free

    def handle(self, request: Request) -> Response | None:
        with self.world.state_lock:
            return self._handle(request)

    def _handle(self, request: Request) -> Response | None:
        camera = self.world.load(self.serial)
        if camera.fault == "mute":
            return None
        if camera.fault == "garbage":
            return Response(request.seq + 7, True, {"noise": "\x7f"})
        if request.command not in COMMANDS:
            return Response(request.seq, False, code="UNKNOWN", message=f"unknown command {request.command}")
        if request.password != camera.password:
            return Response(request.seq, False, code="AUTH", message="wrong device password")
        try:
            value = getattr(self, "_cmd_" + request.command.lower())(camera, request.arg)
        except (ValueError, TypeError, KeyError) as exc:
            return Response(request.seq, False, code="BAD_ARG", message=str(exc))
        except OSError as exc:
            return Response(request.seq, False, code="FAILED", message=str(exc))
        return Response(request.seq, True, value)

    # -- the function set
    def _cmd_init(self, camera: SimCamera, arg: object) -> None:
        return None

    def _cmd_ident(self, camera: SimCamera, arg: object) -> dict[str, str]:
        return {"vendor": camera.vendor, "model": camera.model, "serial": camera.serial, "firmware": camera.firmware}

    def _cmd_info_get(self, camera: SimCamera, arg: object) -> dict[str, str]:
        blank = {"serial": camera.serial, "police_no": "", "name": "", "unit_code": "", "unit_name": ""}
        return camera.officer or blank

    def _cmd_info_set(self, camera: SimCamera, arg: object) -> None:
        if not isinstance(arg, dict):
            raise ValueError("officer record must be an object")
        record = OfficerRecord(**{k: str(arg[k]) for k in OfficerRecord.__dataclass_fields__})
        if record.serial != camera.serial:
            raise ValueError("record serial does not match this camera")
        camera.officer = record.to_dict()
        self.world.save(camera)

    def _cmd_clock_get(self, camera: SimCamera, arg: object) -> str:
        return camera_now(camera).strftime(CLOCK_FORMAT)

    def _cmd_clock_set(self, camera: SimCamera, arg: object) -> None:
        wanted = datetime.strptime(str(arg), CLOCK_FORMAT)
        if camera.clock_stuck:
            return None
        camera.clock_offset_s = (wanted - datetime.now().replace(microsecond=0)).total_seconds()
        self.world.save(camera)

    def _cmd_msc(self, camera: SimCamera, arg: object) -> None:
        # Most simulated cameras expose their storage from the moment they dock; one that waits for MSC shows
        # it now (unless its fault is that it never does).
        if camera.storage_after_msc and camera.fault != "no_storage":
            self.world.expose_storage(camera.serial)

    def _cmd_res(self, camera: SimCamera, arg: object) -> str:
        return camera.resolution

    def _cmd_batt(self, camera: SimCamera, arg: object) -> int:
        return camera.battery_pct

    def _cmd_storage(self, camera: SimCamera, arg: object) -> dict[str, int]:
        image = self.world.image_path(camera.serial)
        return {"total": image.stat().st_size, "free": self._free_bytes()}

    def _cmd_free(self, camera: SimCamera, arg: object) -> None:
        if not isinstance(arg, list) or not all(isinstance(p, str) for p in arg):
            raise ValueError("FREE takes a list of paths")
        media.delete_files(self.world.image_path(camera.serial), arg)

    def _free_bytes(self) -> int:
        """Free space as the camera's firmware knows it: from the filesystem's own allocation counters,
        read without mounting (dump.exfat's cluster bitmap count, FAT32's FSInfo via minfo)."""
        image = self.world.image_path(self.serial)
        stamp = image.stat().st_mtime_ns
        if self._free is None or self._free[0] != stamp:
            self._free = (stamp, filesystem_free_bytes(image))
        return self._free[1]


def filesystem_free_bytes(image: Path) -> int:
    if probe_fs_type(image) == "exfat":
        out = _run(["dump.exfat", str(image)])
        cluster = int(re.search(r"Cluster size:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
        free = int(re.search(r"Free Clusters:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
        return cluster * free
    out = _run(["minfo", "-i", str(image), "::"], env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    sector = int(re.search(r"sector size: (\d+)", out).group(1))  # type: ignore[union-attr]
    per_cluster = int(re.search(r"cluster size: (\d+)", out).group(1))  # type: ignore[union-attr]
    free = int(re.search(r"free clusters=(\d+)", out).group(1))  # type: ignore[union-attr]
    return sector * per_cluster * free


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    return run_tool(argv, "read the camera's filesystem", error=OSError, env=env)


class StreamEndpoint:
    """Serves one camera's firmware on a byte stream (``fd``): newline-framed requests in, answers out."""

    def __init__(self, firmware: CameraFirmware, fd: int) -> None:
        self.firmware = firmware
        self.master = fd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"fw-{firmware.serial}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    continue
                chunk = os.read(self.master, 4096)
            except (OSError, ValueError):
                # EIO while no one holds the slave open: wait for the station to open it.
                if self._stop.wait(0.05):
                    return
                continue
            if not chunk:
                return  # a socket's peer hung up (a pty reports EIO instead, handled above)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self._answer(line + b"\n")

    def _answer(self, line: bytes) -> None:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            log.info("camera %s: bad request: %s", self.firmware.serial, exc)
            return
        try:
            response = self.firmware.handle(request)
        except Exception:
            log.exception("camera %s firmware failed on %s", self.firmware.serial, request.command)
            response = Response(request.seq, False, code="FAILED", message="internal error")
        if response is not None:
            with contextlib.suppress(OSError):
                os.write(self.master, response.encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            os.close(self.master)  # the station's open port now sees a hang-up, like an unplug


class PtyEndpoint(StreamEndpoint):
    """The firmware on a pseudo-terminal, as a CDC-ACM port appears on the station."""

    def __init__(self, firmware: CameraFirmware) -> None:
        master, slave = os.openpty()
        self.slave_path = os.ttyname(slave)
        tty.setraw(slave)  # no echo, no line discipline games: bytes in, bytes out
        os.close(slave)  # the station opens it by path, as it would /dev/ttyACMn
        super().__init__(firmware, master)


def charge(world: SimWorld, serial: str, step: int = 1) -> None:
    with world.state_lock:
        camera = world.load(serial)
        if camera.battery_pct < 100:
            camera.battery_pct = min(100, camera.battery_pct + step)
            world.save(camera)
