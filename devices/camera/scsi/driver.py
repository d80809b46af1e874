"""``CameraControl`` over vendor-specific SCSI commands: one driver for every vendor map and transport."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from devices.camera.line_protocol import PASSWORD
from devices.camera.model import (
    CameraAuthError,
    CameraControl,
    CameraError,
    CameraGone,
    CameraIdentity,
    OfficerRecord,
    StorageStatus,
)
from devices.camera.scsi.transport import (
    BUSY,
    CHECK_CONDITION,
    GOOD,
    NOT_READY,
    TASK_SET_FULL,
    UNIT_ATTENTION,
    ScsiResult,
    ScsiTransport,
    SgDeviceSimTransport,
    SgIoTransport,
    parse_sense,
)
from devices.camera.scsi.vendors import (
    PHASES,
    SENSE_INVALID_OPCODE,
    Phase,
    VendorMap,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# errnos that mean the device is not there any more (or never answered): the camera is gone, as on the
# serial transport when the port hangs up or stays silent.
GONE_ERRNOS = frozenset(
    {
        errno.ENODEV,
        errno.ENXIO,
        errno.EIO,
        errno.ENOENT,
        errno.EBADF,
        errno.EPIPE,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ENOTCONN,
        errno.ESHUTDOWN,
        errno.ETIMEDOUT,
    }
)

SENSE_KEYS = {
    0x0: "NO SENSE",
    0x1: "RECOVERED ERROR",
    0x2: "NOT READY",
    0x3: "MEDIUM ERROR",
    0x4: "HARDWARE ERROR",
    0x5: "ILLEGAL REQUEST",
    0x6: "UNIT ATTENTION",
    0x7: "DATA PROTECT",
    0xB: "ABORTED COMMAND",
}


def camera_error_for(what: str, exc: OSError) -> CameraError:
    """A transport's OSError as the camera exception it means."""
    if isinstance(exc, TimeoutError) or exc.errno in GONE_ERRNOS:
        return CameraGone(f"{what}: {exc.strerror or exc}")
    return CameraError(f"{what}: transport failed: {exc.strerror or exc}")


class ScsiCameraControl(CameraControl):
    """The common function set as vendor-specific SCSI commands (docs/camera-scsi.md)."""

    def __init__(
        self,
        transport: ScsiTransport,
        password: str,
        vendor_map: VendorMap,
        timeout_s: float = 3.0,
        free_timeout_s: float = 30.0,  # deleting files on the camera's own filesystem can take a while
    ) -> None:
        if not PASSWORD.fullmatch(password):  # fullmatch: "$" alone lets "\n" through
            raise CameraError("device password must be 6 letters or digits")
        self._transport: ScsiTransport | None = transport
        self._password = password
        self.vendor_map = vendor_map
        self._timeout_s = timeout_s
        self._free_timeout_s = max(timeout_s, free_timeout_s)
        self._lock = threading.Lock()  # one command in flight per camera: vendor firmwares are not reentrant

    @classmethod
    def open(
        cls, path: str | Path, password: str, vendor_map: VendorMap, *, simulated: bool = False, timeout_s: float = 3.0
    ) -> ScsiCameraControl:
        """Open the camera's SG node (or, ``simulated``, the simulator's fake SG device at ``path``)."""
        try:
            transport: ScsiTransport = SgDeviceSimTransport(path) if simulated else SgIoTransport(path)
        except OSError as exc:
            raise camera_error_for(f"cannot open {path}", exc) from exc
        try:
            return cls(transport, password, vendor_map, timeout_s=timeout_s)
        except BaseException:
            transport.close()
            raise

    # -- one command
    def _call(self, function: str, data_out: bytes | None = None, timeout_s: float | None = None) -> bytes:
        vmap = self.vendor_map
        expected = vmap.record_len(function) or 0
        data_in_len = expected if PHASES[function] is Phase.IN else 0
        cdb = vmap.build_cdb(function, self._password, len(data_out) if data_out else data_in_len)
        timeout_ms = int((timeout_s or self._timeout_s) * 1000)
        with self._lock:
            transport = self._transport
            if transport is None:
                raise CameraGone(f"{function}: control closed")
            for attempt in (1, 2):
                try:
                    result = transport.execute(cdb, data_out, data_in_len, timeout_ms)
                except OSError as exc:
                    raise camera_error_for(function, exc) from exc
                sense = parse_sense(result.sense) if result.status == CHECK_CONDITION else None
                # UNIT ATTENTION reports a reset or power-on and the command did not run: SCSI practice is to
                # repeat it once.
                if attempt == 1 and sense is not None and sense.key == UNIT_ATTENTION:
                    log.debug("%s: unit attention (asc 0x%02x/0x%02x), retrying", function, sense.asc, sense.ascq)
                    continue
                break
        self._check_status(function, result)
        if data_in_len and len(result.data_in) != expected:
            raise CameraError(f"{function}: answer is {len(result.data_in)} bytes, expected {expected}")
        return result.data_in

    def _check_status(self, function: str, result: ScsiResult) -> None:
        if result.status == GOOD:
            return
        if result.status in (BUSY, TASK_SET_FULL):
            raise CameraError(f"{function}: camera busy (SCSI status 0x{result.status:02x})")
        if result.status != CHECK_CONDITION:
            raise CameraError(f"{function}: unexpected SCSI status 0x{result.status:02x}")
        sense = parse_sense(result.sense)
        if sense is None:
            raise CameraError(f"{function}: CHECK CONDITION with unreadable sense {result.sense.hex() or 'none'}")
        if sense == self.vendor_map.auth_sense:
            raise CameraAuthError(f"{function}: camera refused the device password")
        key = SENSE_KEYS.get(sense.key, f"sense key 0x{sense.key:x}")
        code = f"{key}, asc/ascq 0x{sense.asc:02x}/0x{sense.ascq:02x}"
        if sense == SENSE_INVALID_OPCODE:
            raise CameraError(f"{function}: camera does not know the command ({code}): wrong vendor map?")
        if sense.key == NOT_READY:
            raise CameraError(f"{function}: camera not ready ({code})")
        raise CameraError(f"{function}: camera refused ({code})")

    def _decode(self, function: str, decode: Callable[[bytes], T], data: bytes) -> T:
        try:
            return decode(data)
        except ValueError as exc:  # UnicodeDecodeError included
            raise CameraError(f"{function}: bad answer: {exc}") from exc

    # -- the function set
    def init(self) -> None:
        self._call("INIT")

    def identity(self) -> CameraIdentity:
        return self._decode("IDENT", self.vendor_map.unpack_identity, self._call("IDENT"))

    def read_officer(self) -> OfficerRecord:
        return self._decode("INFO_GET", self.vendor_map.unpack_officer, self._call("INFO_GET"))

    def write_officer(self, record: OfficerRecord) -> None:
        try:
            data = self.vendor_map.pack_officer(record)
        except ValueError as exc:
            raise CameraError(f"INFO_SET: {exc}") from exc
        self._call("INFO_SET", data)

    def read_clock(self) -> datetime:
        return self._decode("CLOCK_GET", self.vendor_map.unpack_clock, self._call("CLOCK_GET"))

    def set_clock(self, when: datetime) -> None:
        self._call("CLOCK_SET", self.vendor_map.pack_clock(when))

    def enter_mass_storage(self) -> None:
        self._call("MSC")

    def resolution(self) -> str:
        return self._decode("RES", self.vendor_map.unpack_resolution, self._call("RES"))

    def battery_pct(self) -> int:
        return self._decode("BATT", self.vendor_map.unpack_battery, self._call("BATT"))

    def storage(self) -> StorageStatus:
        total, free = self._decode("STORAGE", self.vendor_map.unpack_storage, self._call("STORAGE"))
        return StorageStatus(total_bytes=total, free_bytes=free)

    def free_recordings(self, camera_paths: list[str]) -> None:
        """Lists longer than one transfer go in several commands; each is all-or-nothing on the camera."""
        try:
            batches = self.vendor_map.pack_paths(camera_paths)
        except ValueError as exc:
            raise CameraError(f"FREE: {exc}") from exc
        for batch in batches:
            self._call("FREE", batch, timeout_s=self._free_timeout_s)

    def close(self) -> None:
        transport, self._transport = getattr(self, "_transport", None), None
        if transport is not None:
            transport.close()
