"""Camera control over a USB serial (CDC-ACM) port with pyserial. The simulator answers on a pty."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import datetime
from typing import Any

import serial

from devices.camera.line_protocol import CLOCK_FORMAT, MAX_LINE, PASSWORD, ProtocolError, Request, parse_response
from devices.camera.model import (
    CameraAuthError,
    CameraControl,
    CameraError,
    CameraGone,
    CameraIdentity,
    OfficerRecord,
    StorageStatus,
)

log = logging.getLogger(__name__)


class SerialCameraControl(CameraControl):
    def __init__(self, url: str, password: str, timeout: float = 3.0) -> None:
        if not PASSWORD.fullmatch(password):
            raise CameraError("device password must be 6 letters or digits")
        self._password = password
        self._timeout = timeout
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # one command in flight per port
        try:
            self._port = serial.serial_for_url(url, baudrate=115200, timeout=timeout, exclusive=True)
        except (serial.SerialException, OSError) as exc:
            raise CameraGone(f"cannot open control port {url}: {exc}") from exc
        self._port.reset_input_buffer()

    def _call(self, command: str, arg: Any = None) -> Any:
        with self._lock:
            request = Request(next(self._seq), command, self._password, arg)
            # One deadline for the whole exchange: the port's timeout alone bounds each read, so a device
            # that keeps sending (lines with other seqs, a byte now and then) would hold us forever.
            deadline = time.monotonic() + self._timeout
            dropped: list[int] = []
            try:
                self._port.write(request.encode())
                while True:
                    line = self._port.read_until(b"\n", MAX_LINE + 1)
                    if len(line) > MAX_LINE:
                        raise ProtocolError("line too long")
                    if line.endswith(b"\n"):
                        response = parse_response(line)
                        if response.seq == request.seq:
                            break
                        log.debug("dropping stale response %s", response.seq)  # left over from a timeout
                        dropped.append(response.seq)
                    if not line.endswith(b"\n") or time.monotonic() > deadline:
                        if dropped:
                            seqs = ", ".join(map(str, dropped[:3]))
                            raise CameraError(f"{command}: answers out of sequence (seq {seqs}), none to {request.seq}")
                        raise CameraGone(f"{command}: no answer within {self._timeout:g} s")
            except (serial.SerialException, OSError) as exc:
                raise CameraGone(f"{command}: control port lost: {exc}") from exc
            except ProtocolError as exc:
                raise CameraError(f"{command}: garbled answer: {exc}") from exc
        if not response.ok:
            if response.code == "AUTH":
                raise CameraAuthError(f"{command}: camera refused the device password")
            raise CameraError(f"{command}: camera answered {response.code}: {response.message}")
        return response.value

    def init(self) -> None:
        self._call("INIT")

    def identity(self) -> CameraIdentity:
        value = self._call("IDENT")
        try:
            return CameraIdentity(
                vendor=str(value["vendor"]),
                model=str(value["model"]),
                serial=str(value["serial"]),
                firmware=str(value["firmware"]),
            )
        except (KeyError, TypeError) as exc:
            raise CameraError(f"IDENT: incomplete identity {value!r}") from exc

    def read_officer(self) -> OfficerRecord:
        value = self._call("INFO_GET")
        try:
            return OfficerRecord(**{k: str(value[k]) for k in OfficerRecord.__dataclass_fields__})
        except (KeyError, TypeError, ValueError) as exc:
            raise CameraError(f"INFO_GET: bad officer record {value!r}: {exc}") from exc

    def write_officer(self, record: OfficerRecord) -> None:
        self._call("INFO_SET", record.to_dict())

    def read_clock(self) -> datetime:
        value = self._call("CLOCK_GET")
        try:
            return datetime.strptime(str(value), CLOCK_FORMAT)
        except ValueError as exc:
            raise CameraError(f"CLOCK_GET: bad time {value!r}") from exc

    def set_clock(self, when: datetime) -> None:
        self._call("CLOCK_SET", when.strftime(CLOCK_FORMAT))

    def enter_mass_storage(self) -> None:
        self._call("MSC")

    def resolution(self) -> str:
        return str(self._call("RES"))

    def battery_pct(self) -> int:
        value = self._call("BATT")
        if not isinstance(value, int) or not 0 <= value <= 100:
            raise CameraError(f"BATT: battery level {value!r} out of range")
        return value

    def storage(self) -> StorageStatus:
        value = self._call("STORAGE")
        try:
            return StorageStatus(total_bytes=int(value["total"]), free_bytes=int(value["free"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CameraError(f"STORAGE: bad status {value!r}") from exc

    def free_recordings(self, camera_paths: list[str]) -> None:
        self._call("FREE", list(camera_paths))

    def close(self) -> None:
        port, self._port = getattr(self, "_port", None), None
        if port is not None:
            port.close()
