"""The serial control client against the real simulator firmware on a real pty: the good path, and the
ways a camera goes bad (wrong password, mute, garbage, unplugged mid-session)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from devices.camera.line_protocol import MAX_LINE, ProtocolError, Request, Response, parse_request, parse_response
from devices.camera.model import (
    CameraAuthError,
    CameraError,
    CameraGone,
    CameraIdentity,
    OfficerRecord,
    StorageStatus,
)
from devices.camera.serial_control import SerialCameraControl
from devices.sim.firmware import CameraFirmware, PtyEndpoint, StreamEndpoint
from devices.sim.world import SimWorld

SERIAL = "CAMT001"
PASSWORD = "000000"


@dataclass
class Docked:
    world: SimWorld
    endpoint: PtyEndpoint

    @property
    def port(self) -> str:
        return self.endpoint.slave_path

    def set_fault(self, fault: str | None) -> None:
        camera = self.world.load(SERIAL)
        camera.fault = fault
        self.world.save(camera)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimWorld:
    world = SimWorld(tmp_path_factory.mktemp("camctl") / "sim")
    world.init({1: "1-1.1"})
    world.create_camera(SERIAL, fs_type="vfat", size_mib=40)
    return world


@pytest.fixture
def docked(world: SimWorld) -> Iterator[Docked]:
    camera = world.load(SERIAL)
    camera.fault, camera.officer, camera.clock_offset_s = None, None, 0.0
    world.save(camera)
    endpoint = PtyEndpoint(CameraFirmware(world, SERIAL))
    try:
        yield Docked(world, endpoint)
    finally:
        endpoint.close()


def officer(**changes: str) -> OfficerRecord:
    fields = {
        "serial": SERIAL,
        "police_no": "330123",
        "name": "张伟",
        "unit_code": "330100000000",
        "unit_name": "综合行政执法大队",
    }
    return OfficerRecord(**{**fields, **changes})


# -- the good path


def test_reads_identity_battery_storage_and_clock(docked: Docked) -> None:
    with SerialCameraControl(docked.port, PASSWORD, timeout=2) as control:
        control.init()
        assert control.identity() == CameraIdentity("SIMCAM", "DSJ-S1", SERIAL, "1.0.0")
        assert control.battery_pct() == 60
        storage = control.storage()
        assert isinstance(storage, StorageStatus)
        assert storage.total_bytes == docked.world.image_path(SERIAL).stat().st_size == 40 * 1024 * 1024
        assert 0 < storage.free_bytes < storage.total_bytes
        assert abs(control.read_clock() - datetime.now()) < timedelta(seconds=2)
        assert control.resolution() == "1920x1080@30"


def test_set_clock_then_read_it_back(docked: Docked) -> None:
    wanted = datetime(2026, 3, 5, 14, 22, 10)
    with SerialCameraControl(docked.port, PASSWORD, timeout=2) as control:
        control.set_clock(wanted)
        assert abs(control.read_clock() - wanted) < timedelta(seconds=2)


def test_officer_record_round_trip_in_chinese(docked: Docked) -> None:
    record = officer()
    with SerialCameraControl(docked.port, PASSWORD, timeout=2) as control:
        assert control.read_officer().name == ""  # a fresh camera is issued to no one
        control.write_officer(record)
        assert control.read_officer() == record
    assert docked.world.load(SERIAL).officer == record.to_dict()


def test_camera_refuses_a_record_for_another_camera(docked: Docked) -> None:
    with SerialCameraControl(docked.port, PASSWORD, timeout=2) as control, pytest.raises(CameraError) as err:
        control.write_officer(officer(serial="CAMT002"))
    assert "BAD_ARG" in str(err.value) and not isinstance(err.value, CameraGone)


def test_officer_record_limits_are_gb18030_bytes() -> None:
    assert officer(name="张" * 16).name == "张" * 16  # 32 bytes: the most that fits
    with pytest.raises(ValueError, match="name is 34 bytes"):
        officer(name="张" * 17)
    with pytest.raises(ValueError, match="NUL"):
        officer(name="张\x00伟")


# -- bad devices


def test_wrong_password_is_an_auth_error(docked: Docked) -> None:
    with SerialCameraControl(docked.port, "123456", timeout=2) as control, pytest.raises(CameraAuthError) as err:
        control.battery_pct()
    assert "password" in str(err.value)


def test_password_of_the_wrong_shape_is_refused_before_opening(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyACM9")
    for bad in ("12345", "1234567", "12 456", "密码密码密码", ""):
        with pytest.raises(CameraError, match="password") as err:
            SerialCameraControl(missing, bad)
        assert not isinstance(err.value, CameraGone)  # it never got as far as the port
    with pytest.raises(CameraGone, match="cannot open"):
        SerialCameraControl(missing, PASSWORD)


def test_mute_camera_is_gone_within_the_timeout(docked: Docked) -> None:
    docked.set_fault("mute")
    with SerialCameraControl(docked.port, PASSWORD, timeout=0.5) as control:
        started = time.monotonic()
        with pytest.raises(CameraGone, match="no answer"):
            control.battery_pct()
        assert time.monotonic() - started < 1.5


def test_garbage_answers_are_a_camera_error_not_a_hang(docked: Docked) -> None:
    docked.set_fault("garbage")
    with SerialCameraControl(docked.port, PASSWORD, timeout=0.5) as control:
        started = time.monotonic()
        with pytest.raises(CameraError) as err:
            control.identity()
        assert time.monotonic() - started < 1.5
    assert not isinstance(err.value, CameraGone)  # it is talking, just not sense


def test_session_goes_on_after_a_timeout(docked: Docked) -> None:
    docked.set_fault("mute")
    with SerialCameraControl(docked.port, PASSWORD, timeout=0.5) as control:
        with pytest.raises(CameraGone):
            control.battery_pct()
        docked.set_fault(None)
        assert control.identity().serial == SERIAL


def test_port_vanishing_mid_session_is_camera_gone(docked: Docked) -> None:
    with SerialCameraControl(docked.port, PASSWORD, timeout=0.5) as control:
        assert control.battery_pct() == 60
        docked.endpoint.close()  # the camera is pulled out: its CDC-ACM port hangs up
        started = time.monotonic()
        with pytest.raises(CameraGone):
            control.battery_pct()
        assert time.monotonic() - started < 1.5


# -- devices that talk too much (a raw pty, no firmware: the bytes are ours)


@pytest.fixture
def raw_pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    tty.setraw(slave)
    os.close(slave)
    os.set_blocking(master, False)  # a full pty must not wedge the babbler: it could never be stopped
    yield master, path
    with contextlib.suppress(OSError):
        os.close(master)


def babble(master: int, chunk: bytes, pause: float, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            try:
                os.write(master, chunk)
            except OSError:
                stop.wait(0.01)
            stop.wait(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_stale_answer_is_skipped(raw_pty: tuple[int, str]) -> None:
    """A late answer to an earlier request arrives first: the client skips it and takes its own."""
    master, path = raw_pty
    stop = threading.Event()

    def camera() -> None:
        buffer = b""
        while not stop.is_set() and b"\n" not in buffer:
            with contextlib.suppress(BlockingIOError):
                buffer += os.read(master, 4096)
            stop.wait(0.01)
        seq = parse_request(buffer).seq
        os.write(master, f"{seq + 41} OK 7\n{seq - 1} OK 99\n{seq} OK 42\n".encode())

    with SerialCameraControl(path, PASSWORD, timeout=1) as control:
        thread = threading.Thread(target=camera, daemon=True)
        thread.start()
        try:
            assert control.battery_pct() == 42
        finally:
            stop.set()
            thread.join()


@pytest.mark.parametrize(
    ("chunk", "error", "match"),
    [
        (b"999 OK 1\n", CameraError, "out of sequence"),  # endless well-formed lines, never with our seq
        (b"x", CameraGone, "no answer"),  # a byte at a time, never a line end
    ],
    ids=["wrong-seq-lines", "trickle"],
)
def test_babbling_device_does_not_hang_the_client(
    raw_pty: tuple[int, str], chunk: bytes, error: type[CameraError], match: str
) -> None:
    master, path = raw_pty
    stop = threading.Event()
    with SerialCameraControl(path, PASSWORD, timeout=0.5) as control:
        thread = babble(master, chunk, 0.05, stop)
        try:
            started = time.monotonic()
            with pytest.raises(error, match=match) as err:
                control.battery_pct()
            assert type(err.value) is error
            assert time.monotonic() - started < 1.5
        finally:
            stop.set()
            thread.join()


def test_endless_line_is_cut_off(raw_pty: tuple[int, str]) -> None:
    master, path = raw_pty
    stop = threading.Event()
    with SerialCameraControl(path, PASSWORD, timeout=2) as control:
        thread = babble(master, b"1 OK " + b"9" * 4096, 0.0, stop)
        try:
            with pytest.raises(CameraError, match="too long"):
                control.battery_pct()
        finally:
            stop.set()
            thread.join()


# -- the line protocol itself


@pytest.mark.parametrize(
    "line",
    [
        b"\xff\xfe OK\n",  # not UTF-8
        b"1 OK \xe4\xb8\n",  # cut in the middle of a character
        b"OK 1\n",  # no seq
        b" OK\n",
        b"\n",
        b"-1 OK\n",
        b"\xc2\xb2 OK\n",  # "²": a digit to str.isdigit(), not to int()
        b"1" * 5000 + b" OK\n",  # beyond int()'s digit limit
        b"1 OK {not json}\n",
        b"1 MAYBE\n",
        b"1 ERR\n",
        b"1 OK " + b"1" * MAX_LINE + b"\n",  # overly long
    ],
)
def test_parse_response_rejects_malformed_lines(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_response(line)


@pytest.mark.parametrize(
    "line",
    [
        b"\xff 1 IDENT 000000\n",
        b"IDENT 000000\n",
        b"1 IDENT\n",
        b"\xd9\xa1 IDENT 000000\n",  # Arabic-Indic one: not a seq on this wire
        b"1" * 5000 + b" IDENT 000000\n",
        b"1 INFO_SET 000000 {bad\n",
        b"1 IDENT 000000 " + b"x" * MAX_LINE + b"\n",
    ],
)
def test_parse_request_rejects_malformed_lines(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_request(line)


def test_lines_round_trip() -> None:
    request = Request(7, "INFO_SET", PASSWORD, officer().to_dict())
    assert parse_request(request.encode()) == request
    ok = Response(7, True, {"name": "张伟"})
    assert parse_response(ok.encode()) == ok
    err = Response(8, False, code="FAILED", message="minfo: bad\nsecond line")
    encoded = err.encode()
    assert encoded.count(b"\n") == 1  # one message, one line, whatever the message holds
    assert parse_response(encoded) == Response(8, False, code="FAILED", message="minfo: bad second line")


def test_firmware_on_a_socket_answers_and_stops_when_the_peer_hangs_up(world: SimWorld) -> None:
    """The image test serves the firmware to QEMU's usb-serial over a socket: same answers as on a pty,
    and a peer that goes away (QEMU killed) ends the endpoint instead of spinning on empty reads."""
    ours, theirs = socket.socketpair()
    endpoint = StreamEndpoint(CameraFirmware(world, SERIAL), ours.detach())
    try:
        theirs.settimeout(5)
        theirs.sendall(Request(7, "IDENT", PASSWORD).encode() + Request(8, "IDENT", "999999").encode())
        lines = b""
        while lines.count(b"\n") < 2:
            lines += theirs.recv(4096)
        first, second = (parse_response(line + b"\n") for line in lines.split(b"\n")[:2])
        assert first.ok and first.seq == 7 and first.value["serial"] == SERIAL
        assert not second.ok and second.code == "AUTH"
        theirs.close()
        endpoint._thread.join(timeout=5)
        assert not endpoint._thread.is_alive()
    finally:
        endpoint.close()
