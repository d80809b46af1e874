"""SCSI transports: move one CDB (and its data) to a device and bring back status, sense and data.

``SgIoTransport`` is the real one (Linux SG_IO ioctl on a /dev/sg* node). ``SgDeviceSimTransport`` is the
"fake SG device": the same contract over a UNIX socket to the simulator, so everything above the transport
runs unchanged against a simulated camera.

Contract of ``execute``: it returns a ``ScsiResult`` whenever the target answered with a SCSI status (GOOD,
CHECK CONDITION, BUSY, ...). When the command could not be carried to the device or back it raises
``OSError`` with an errno that says why: ENODEV (device gone), ETIMEDOUT (``TimeoutError``: no answer in
time), EAGAIN (transient host-side trouble), EPROTO/EREMOTEIO (garbled transport). Turning those into
camera exceptions is the driver's job, in one place.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

# SCSI status byte values (SAM-5).
GOOD = 0x00
CHECK_CONDITION = 0x02
BUSY = 0x08
RESERVATION_CONFLICT = 0x18
TASK_SET_FULL = 0x28
TASK_ABORTED = 0x40

# Sense keys (SPC-4), those the driver and simulator use by name.
NO_SENSE = 0x0
NOT_READY = 0x2
MEDIUM_ERROR = 0x3
HARDWARE_ERROR = 0x4
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
DATA_PROTECT = 0x7
ABORTED_COMMAND = 0xB

SENSE_BUFFER_LEN = 32  # fixed-format sense is 18 bytes; room for a descriptor or two


class ScsiResult(NamedTuple):
    status: int
    sense: bytes
    data_in: bytes


class Sense(NamedTuple):
    key: int
    asc: int
    ascq: int


def fixed_sense(key: int, asc: int, ascq: int) -> bytes:
    """Fixed-format sense data (response code 0x70, current error), 18 bytes."""
    sense = bytearray(18)
    sense[0] = 0x70
    sense[2] = key & 0x0F
    sense[7] = 10  # additional sense length: bytes 8..17
    sense[12], sense[13] = asc, ascq
    return bytes(sense)


def parse_sense(sense: bytes) -> Sense | None:
    """Key/ASC/ASCQ from fixed (0x70/0x71) or descriptor (0x72/0x73) sense data; None if unreadable."""
    if len(sense) >= 4 and sense[0] & 0x7F in (0x72, 0x73):
        return Sense(sense[1] & 0x0F, sense[2], sense[3])
    if len(sense) >= 14 and sense[0] & 0x7F in (0x70, 0x71):
        return Sense(sense[2] & 0x0F, sense[12], sense[13])
    if len(sense) >= 3 and sense[0] & 0x7F in (0x70, 0x71):
        return Sense(sense[2] & 0x0F, 0, 0)  # short fixed sense: the key alone is still meaningful
    return None


class ScsiTransport(abc.ABC):
    """One SCSI target. Callers send one command at a time (the driver holds a lock)."""

    @abc.abstractmethod
    def execute(self, cdb: bytes, data_out: bytes | None, data_in_len: int, timeout_ms: int) -> ScsiResult:
        """Send ``cdb`` with ``data_out`` (device-bound) or expecting up to ``data_in_len`` bytes back."""

    @abc.abstractmethod
    def close(self) -> None: ...


def _check_args(cdb: bytes, data_out: bytes | None, data_in_len: int) -> None:
    if not 6 <= len(cdb) <= 16:
        raise ValueError(f"CDB must be 6..16 bytes, not {len(cdb)}")
    if data_out and data_in_len:
        raise ValueError("a command moves data one way only")  # SG v3 has no true bidirectional transfer
    if data_in_len < 0:
        raise ValueError("data_in_len must be >= 0")


# -- Linux SG_IO ----------------------------------------------------------------------------------------------

# From <scsi/sg.h>.
SG_IO = 0x2285
SG_GET_VERSION_NUM = 0x2282
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
SG_MIN_VERSION = 30000  # the v3 interface (sg_io_hdr) exists from sg 3.0.0

# Host byte values (DID_*, include/scsi/scsi_status.h), by what they mean for us.
DID_OK = 0x00
DID_NO_CONNECT = 0x01
DID_BUS_BUSY = 0x02
DID_TIME_OUT = 0x03
DID_BAD_TARGET = 0x04
DID_ABORT = 0x05
DID_ERROR = 0x07
DID_RESET = 0x08
DID_SOFT_ERROR = 0x0B
DID_IMM_RETRY = 0x0C
DID_REQUEUE = 0x0D
DID_TRANSPORT_DISRUPTED = 0x0E
DID_TRANSPORT_FAILFAST = 0x0F
_HOST_GONE = {DID_NO_CONNECT, DID_BAD_TARGET, DID_TRANSPORT_FAILFAST}
_HOST_TIMEOUT = {DID_TIME_OUT, DID_ABORT}  # the SCSI error handler aborts what timed out
_HOST_TRANSIENT = {DID_BUS_BUSY, DID_RESET, DID_SOFT_ERROR, DID_IMM_RETRY, DID_REQUEUE, DID_TRANSPORT_DISRUPTED}
# DID_ERROR is what usb-storage reports for a failed USB transfer (babble, stall, unplug mid-command).
_HOST_IO = {DID_ERROR}

# Driver byte values (low nibble of driver_status). DRIVER_SENSE only says "sense data is attached",
# which comes with every CHECK CONDITION: not an error of its own.
DRIVER_OK = 0x00
DRIVER_BUSY = 0x01
DRIVER_SOFT = 0x02
DRIVER_TIMEOUT = 0x06
DRIVER_SENSE = 0x08


class SgIoHdr(ctypes.Structure):
    """``struct sg_io_hdr`` from <scsi/sg.h>; ctypes applies the C ABI's alignment (88 bytes on LP64)."""

    _fields_ = [
        ("interface_id", ctypes.c_int),  # 'S'
        ("dxfer_direction", ctypes.c_int),  # SG_DXFER_*
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),  # room at sbp
        ("iovec_count", ctypes.c_ushort),  # 0: dxferp is a flat buffer
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),  # milliseconds
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),  # SCSI status byte
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),  # sense bytes actually written
        ("host_status", ctypes.c_ushort),  # DID_*
        ("driver_status", ctypes.c_ushort),  # DRIVER_*
        ("resid", ctypes.c_int),  # dxfer_len - bytes actually transferred
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    ]


IoctlFn = Callable[[int, int, Any], Any]


class SgIoTransport(ScsiTransport):
    """SG_IO on a SCSI generic node (/dev/sgN; a /dev/sdX node also accepts SG_IO).

    Vendor-specific opcodes (0xC0-0xFF) pass the kernel's command filter only with CAP_SYS_RAWIO, so the
    station's device process needs that capability. ``ioctl`` is injectable so tests can stand in for the
    kernel.
    """

    def __init__(self, path: str | Path, ioctl: IoctlFn = fcntl.ioctl) -> None:
        self.path = str(path)
        self._ioctl = ioctl
        # O_RDWR: SG_IO needs write access for data-out commands. O_NONBLOCK: open never waits on another
        # process's O_EXCL hold; SG_IO itself stays synchronous regardless.
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            version = ctypes.c_int(0)
            self._ioctl(self._fd, SG_GET_VERSION_NUM, version)
            if version.value < SG_MIN_VERSION:
                raise OSError(errno.ENOTTY, f"{self.path}: sg driver {version.value} has no SG_IO v3 interface")
        except OSError as exc:
            self.close()
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                raise OSError(errno.ENOTTY, f"{self.path} is not a SCSI generic device") from exc
            raise

    def execute(self, cdb: bytes, data_out: bytes | None, data_in_len: int, timeout_ms: int) -> ScsiResult:
        _check_args(cdb, data_out, data_in_len)
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path}: transport closed")
        # The buffers must outlive the ioctl: the header holds raw pointers to them.
        cmd = ctypes.create_string_buffer(bytes(cdb), len(cdb))
        sense = ctypes.create_string_buffer(SENSE_BUFFER_LEN)
        hdr = SgIoHdr()
        hdr.interface_id = ord("S")
        hdr.cmd_len = len(cdb)
        hdr.cmdp = ctypes.addressof(cmd)
        hdr.mx_sb_len = SENSE_BUFFER_LEN
        hdr.sbp = ctypes.addressof(sense)
        hdr.timeout = max(1, int(timeout_ms))
        if data_out:
            buffer = ctypes.create_string_buffer(bytes(data_out), len(data_out))
            hdr.dxfer_direction, hdr.dxfer_len = SG_DXFER_TO_DEV, len(data_out)
        elif data_in_len:
            buffer = ctypes.create_string_buffer(data_in_len)
            hdr.dxfer_direction, hdr.dxfer_len = SG_DXFER_FROM_DEV, data_in_len
        else:
            buffer = None
            hdr.dxfer_direction, hdr.dxfer_len = SG_DXFER_NONE, 0
        hdr.dxferp = ctypes.addressof(buffer) if buffer is not None else None
        self._ioctl(self._fd, SG_IO, hdr)  # OSError (ENODEV after an unplug, ...) goes to the caller as is
        self._check_host(hdr)
        sense_len = min(hdr.sb_len_wr, SENSE_BUFFER_LEN)
        data = b""
        if data_in_len and buffer is not None:
            # Devices have been seen to report nonsense residues: clamp instead of trusting.
            got = data_in_len - min(max(hdr.resid, 0), data_in_len)
            data = buffer.raw[:got]
        return ScsiResult(hdr.status, sense.raw[:sense_len], data)

    def _check_host(self, hdr: SgIoHdr) -> None:
        """Host/driver trouble means no SCSI answer arrived; say so with an errno the driver can map."""
        host, drv = hdr.host_status, hdr.driver_status & 0x0F
        where = f"{self.path}: SG_IO"
        if host in _HOST_GONE:
            raise OSError(errno.ENODEV, f"{where}: device not reachable (host status 0x{host:02x})")
        if host in _HOST_TIMEOUT or drv == DRIVER_TIMEOUT:
            raise TimeoutError(errno.ETIMEDOUT, f"{where}: no answer in {hdr.timeout} ms (host 0x{host:02x})")
        if host in _HOST_IO:
            raise OSError(errno.EIO, f"{where}: USB transfer failed (host status 0x{host:02x})")
        if host in _HOST_TRANSIENT or drv in (DRIVER_BUSY, DRIVER_SOFT):
            raise OSError(errno.EAGAIN, f"{where}: transient failure (host 0x{host:02x}, driver 0x{drv:02x})")
        if host != DID_OK or drv not in (DRIVER_OK, DRIVER_SENSE):
            raise OSError(errno.EREMOTEIO, f"{where}: failed (host 0x{host:02x}, driver 0x{drv:02x})")

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)


# -- the fake SG device: SG_IO's contract over a UNIX socket --------------------------------------------------

# Big-endian. Request: magic, pack_id, cdb_len, data_out_len, data_in_len, timeout_ms; then cdb, data_out.
SIM_REQUEST = struct.Struct(">4sIBIII")
SIM_REQUEST_MAGIC = b"SGRQ"
# Response: magic, pack_id, status, sense_len, data_in_len; then sense, data_in.
SIM_RESPONSE = struct.Struct(">4sIBBI")
SIM_RESPONSE_MAGIC = b"SGRS"
SIM_MAX_DATA = 1 << 20


class SimRequest(NamedTuple):
    pack_id: int
    cdb: bytes
    data_out: bytes | None
    data_in_len: int
    timeout_ms: int


def encode_sim_request(request: SimRequest) -> bytes:
    data_out = request.data_out or b""
    header = SIM_REQUEST.pack(
        SIM_REQUEST_MAGIC, request.pack_id, len(request.cdb), len(data_out), request.data_in_len, request.timeout_ms
    )
    return header + request.cdb + data_out


def read_sim_request(stream: BinaryIO) -> SimRequest | None:
    """The next request from a byte stream; None at a clean end of stream; ValueError if malformed."""
    header = stream.read(SIM_REQUEST.size)
    if not header:
        return None
    if len(header) < SIM_REQUEST.size:
        raise ValueError("stream ended inside a request header")
    magic, pack_id, cdb_len, out_len, in_len, timeout_ms = SIM_REQUEST.unpack(header)
    if magic != SIM_REQUEST_MAGIC or not 6 <= cdb_len <= 16 or out_len > SIM_MAX_DATA or in_len > SIM_MAX_DATA:
        raise ValueError(f"malformed request header {header.hex()}")
    body = stream.read(cdb_len + out_len)
    if len(body) < cdb_len + out_len:
        raise ValueError("stream ended inside a request")
    return SimRequest(pack_id, body[:cdb_len], body[cdb_len:] or None, in_len, timeout_ms)


def encode_sim_response(pack_id: int, result: ScsiResult) -> bytes:
    sense = result.sense[:255]
    header = SIM_RESPONSE.pack(SIM_RESPONSE_MAGIC, pack_id, result.status, len(sense), len(result.data_in))
    return header + sense + result.data_in


class SgDeviceSimTransport(ScsiTransport):
    """Client side of the fake SG device: a UNIX stream socket served by the simulator (devices.camera.scsi.sim).

    Every request carries a ``pack_id`` the device echoes (as sg_io_hdr's pack_id would), so an answer that
    arrives after its command timed out is recognised and dropped instead of being taken for the next one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise  # ENOENT / ECONNREFUSED: like opening a /dev/sg node that vanished
        self._sock: socket.socket | None = sock
        self._buffer = bytearray()  # kept across calls: a late answer stays frame-aligned
        self._next_id = 0
        self._lock = threading.Lock()

    def execute(self, cdb: bytes, data_out: bytes | None, data_in_len: int, timeout_ms: int) -> ScsiResult:
        _check_args(cdb, data_out, data_in_len)
        with self._lock:
            sock = self._sock
            if sock is None:
                raise OSError(errno.ENODEV, f"{self.path}: simulated SG device closed")
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
            pack_id = self._next_id
            deadline = time.monotonic() + max(1, timeout_ms) / 1000
            try:
                sock.settimeout(max(1, timeout_ms) / 1000)
                sock.sendall(encode_sim_request(SimRequest(pack_id, bytes(cdb), data_out, data_in_len, timeout_ms)))
                while True:
                    answer_id, result = self._read_response(sock, deadline)
                    if answer_id == pack_id:
                        break  # anything else answers a command that already timed out
            except TimeoutError:
                raise TimeoutError(errno.ETIMEDOUT, f"{self.path}: no answer in {timeout_ms} ms") from None
            except (BrokenPipeError, ConnectionResetError) as exc:
                self._drop()
                raise OSError(errno.ENODEV, f"{self.path}: simulated SG device went away") from exc
        if len(result.data_in) > data_in_len:
            raise OSError(errno.EPROTO, f"{self.path}: {len(result.data_in)} bytes in for {data_in_len} asked")
        return result

    def _read_response(self, sock: socket.socket, deadline: float) -> tuple[int, ScsiResult]:
        buffer = self._buffer
        while True:
            if len(buffer) >= SIM_RESPONSE.size:
                magic, pack_id, status, sense_len, data_len = SIM_RESPONSE.unpack_from(buffer)
                if magic != SIM_RESPONSE_MAGIC or data_len > SIM_MAX_DATA:
                    self._buffer.clear()
                    self._drop()  # no way to find the next frame boundary: the link is useless now
                    raise OSError(errno.EPROTO, f"{self.path}: garbled response framing")
                end = SIM_RESPONSE.size + sense_len + data_len
                if len(buffer) >= end:
                    sense = bytes(buffer[SIM_RESPONSE.size : SIM_RESPONSE.size + sense_len])
                    data = bytes(buffer[SIM_RESPONSE.size + sense_len : end])
                    del buffer[:end]
                    return pack_id, ScsiResult(status, sense, data)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                self._drop()
                raise OSError(errno.ENODEV, f"{self.path}: simulated SG device went away")
            buffer += chunk

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on this socket
            sock.close()

    def close(self) -> None:
        self._drop()  # no lock: closing must not wait for a command that is waiting on a mute device
