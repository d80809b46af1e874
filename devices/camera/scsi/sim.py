"""The simulated camera's SCSI side: decodes vendor CDBs into the line protocol's requests and answers them
with the same ``CameraFirmware`` the serial simulator runs, so both transports share one camera brain.
``ScsiSimEndpoint`` serves it as a fake SG device on a UNIX socket (client: ``SgDeviceSimTransport``)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from devices.camera.line_protocol import CLOCK_FORMAT, Request, Response
from devices.camera.model import CameraIdentity, OfficerRecord
from devices.camera.scsi.transport import (
    BUSY,
    CHECK_CONDITION,
    GOOD,
    ScsiResult,
    Sense,
    encode_sim_response,
    fixed_sense,
    read_sim_request,
)
from devices.camera.scsi.vendors import (
    PHASES,
    SENSE_INTERNAL_TARGET_FAILURE,
    SENSE_INVALID_FIELD_IN_CDB,
    SENSE_INVALID_FIELD_IN_PARAMETERS,
    SENSE_INVALID_OPCODE,
    CdbError,
    Phase,
    VendorMap,
)
from devices.camera.scsi.vendors.generic_zfy import VENDOR as GENERIC_ZFY
from devices.sim.firmware import CameraFirmware
from devices.sim.world import SimWorld

log = logging.getLogger(__name__)


def refuse(sense: Sense) -> ScsiResult:
    return ScsiResult(CHECK_CONDITION, fixed_sense(*sense), b"")


class ScsiCameraSim:
    """One simulated camera answering vendor CDBs. ``execute`` returns None when the camera stays mute."""

    def __init__(self, world: SimWorld, serial: str, vendor_map: VendorMap = GENERIC_ZFY) -> None:
        self.firmware = CameraFirmware(world, serial)
        self.vendor_map = vendor_map
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # a camera's firmware runs one command at a time
        vmap = vendor_map
        # Line-protocol values -> data-in bytes, per function.
        self._encoders: dict[str, Callable[[Any], bytes]] = {
            "IDENT": lambda v: vmap.pack_identity(CameraIdentity(**v)),
            "INFO_GET": lambda v: vmap.pack_officer(OfficerRecord(**v)),
            "CLOCK_GET": lambda v: vmap.pack_clock(_parse_clock(v)),
            "RES": lambda v: vmap.pack_resolution(str(v)),
            "BATT": lambda v: vmap.pack_battery(int(v)),
            "STORAGE": lambda v: vmap.pack_storage(int(v["total"]), int(v["free"])),
        }
        # Data-out bytes -> line-protocol arguments, per function.
        self._decoders: dict[str, Callable[[bytes], Any]] = {
            "INFO_SET": lambda d: vmap.unpack_officer(d).to_dict(),
            "CLOCK_SET": lambda d: vmap.unpack_clock(d).strftime(CLOCK_FORMAT),
            "FREE": vmap.unpack_paths,
        }

    @property
    def serial(self) -> str:
        return self.firmware.serial

    def execute(self, cdb: bytes, data_out: bytes | None, data_in_len: int) -> ScsiResult | None:
        with self._lock:
            return self._execute(cdb, data_out or b"", data_in_len)

    def _execute(self, cdb: bytes, data_out: bytes, data_in_len: int) -> ScsiResult | None:
        vmap = self.vendor_map
        try:
            parsed = vmap.parse_cdb(cdb)
        except CdbError as exc:
            log.debug("camera %s: refusing CDB %s: %s", self.serial, cdb.hex(), exc)
            return refuse(exc.sense)
        # An unknown sub-command still goes to the firmware: it decides between mute, garbage and UNKNOWN.
        function = parsed.function or f"SUB_{parsed.subcommand:02X}"
        phase = PHASES.get(function, Phase.NONE)
        fixed = vmap.record_len(function)
        arg: Any = None
        arg_error = ""
        if parsed.function is not None:
            if phase is Phase.OUT:
                if parsed.length != len(data_out) or not parsed.length or fixed not in (None, parsed.length):
                    return refuse(SENSE_INVALID_FIELD_IN_CDB)  # parameter list length disagrees with the data
                try:
                    arg = self._decoders[function](data_out)
                except ValueError as exc:
                    arg_error = str(exc)  # answered after the password check, as the firmware orders it
            elif phase is Phase.NONE and (parsed.length or data_out):
                return refuse(SENSE_INVALID_FIELD_IN_CDB)
        request = Request(next(self._seq), function, parsed.password, arg)
        response = self.firmware.handle(request)
        if response is None:
            return None
        if response.seq != request.seq:  # the firmware's "garbage" fault: answer nonsense of our own kind
            if phase is Phase.IN and parsed.length:
                return ScsiResult(GOOD, b"", b"\x7f" * min(parsed.length // 2 + 1, data_in_len))
            return ScsiResult(CHECK_CONDITION, b"\x7f\x7f\x7f", b"")
        if not response.ok:
            log.debug("camera %s: %s -> %s %s", self.serial, function, response.code, arg_error or response.message)
            return self._error(response)
        if phase is not Phase.IN:
            return ScsiResult(GOOD, b"", b"")
        try:
            data = self._encoders[function](response.value)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("camera %s: cannot encode %s answer %r: %s", self.serial, function, response.value, exc)
            return refuse(SENSE_INTERNAL_TARGET_FAILURE)
        # SCSI data-in: at most the allocation length, and never more than the host's buffer.
        return ScsiResult(GOOD, b"", data[: min(parsed.length, data_in_len)])

    def _error(self, response: Response) -> ScsiResult:
        if response.code == "AUTH":
            return refuse(self.vendor_map.auth_sense)
        if response.code == "UNKNOWN":
            return refuse(SENSE_INVALID_OPCODE)
        if response.code == "BAD_ARG":
            return refuse(SENSE_INVALID_FIELD_IN_PARAMETERS)
        if response.code == "BUSY":
            return ScsiResult(BUSY, b"", b"")
        return refuse(SENSE_INTERNAL_TARGET_FAILURE)


def _parse_clock(value: object) -> datetime:
    return datetime.strptime(str(value), CLOCK_FORMAT)


class ScsiSimEndpoint:
    """Serves one simulated camera as a fake SG device on a UNIX socket, as /dev/sgN appears on a station.

    ``path`` defaults to a fresh private directory: UNIX socket paths are limited to 107 bytes, which deep
    test directories exceed. ``close`` hangs up every connection, which the station sees as an unplug.
    """

    def __init__(self, sim: ScsiCameraSim, path: str | Path | None = None) -> None:
        self.sim = sim
        self._tmpdir: str | None = None
        if path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="sgsim-")
            path = Path(self._tmpdir) / f"{sim.serial}.sock"
        self.path = str(path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._server.bind(self.path)
            self._server.listen(4)
        except OSError:
            self._server.close()
            raise
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # close() wakes the accept loop at once instead of by polling
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accept_thread = threading.Thread(target=self._accept, name=f"sg-{sim.serial}", daemon=True)
        self._accept_thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._server, self._wake_r], [], [])
                if self._server not in ready:
                    continue
                conn, _ = self._server.accept()
            except (OSError, ValueError):
                return  # listening socket closed
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    return
                self._conns.add(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), name=f"sg-{self.sim.serial}-conn")
                thread.daemon = True
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn.makefile("rb") as stream:
                while True:
                    try:
                        request = read_sim_request(stream)
                    except ValueError as exc:
                        log.info("camera %s: dropping connection: %s", self.sim.serial, exc)
                        return
                    if request is None:
                        return
                    try:
                        result = self.sim.execute(request.cdb, request.data_out, request.data_in_len)
                    except Exception:
                        log.exception("camera %s firmware failed on CDB %s", self.sim.serial, request.cdb.hex())
                        result = refuse(SENSE_INTERNAL_TARGET_FAILURE)
                    if result is not None:
                        conn.sendall(encode_sim_response(request.pack_id, result))
        except OSError:
            return  # hung up, by the station or by close()
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._accept_thread.join(timeout=2)
        os.close(self._wake_r)
        os.close(self._wake_w)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # the reader thread sees EOF, the station sees the device go
        for thread in threads:
            thread.join(timeout=2)
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            Path(self.path).unlink()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> ScsiSimEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
