"""SCSI camera control: the driver over the fake SG device against the simulator (both vendor maps), the
documented CDB and record bytes, failure mapping, and SG_IO's sg_io_hdr with a stand-in for the kernel."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devices.camera.model import (
    CameraAuthError,
    CameraError,
    CameraGone,
    CameraIdentity,
    OfficerRecord,
)
from devices.camera.scsi.driver import ScsiCameraControl
from devices.camera.scsi.sim import ScsiCameraSim, ScsiSimEndpoint
from devices.camera.scsi.transport import (
    CHECK_CONDITION,
    DID_BAD_TARGET,
    DID_BUS_BUSY,
    DID_ERROR,
    DID_NO_CONNECT,
    DID_TIME_OUT,
    DRIVER_SENSE,
    DRIVER_TIMEOUT,
    GOOD,
    SG_DXFER_FROM_DEV,
    SG_DXFER_NONE,
    SG_DXFER_TO_DEV,
    SG_GET_VERSION_NUM,
    SG_IO,
    UNIT_ATTENTION,
    ScsiResult,
    ScsiTransport,
    SgDeviceSimTransport,
    SgIoHdr,
    SgIoTransport,
    fixed_sense,
    parse_sense,
)
from devices.camera.scsi.vendors import (
    SENSE_INVALID_FIELD_IN_CDB,
    SENSE_INVALID_OPCODE,
    SENSE_PASSWORD_REJECTED,
    VendorMap,
    get_vendor,
    vendor_names,
)
from devices.sim import media
from devices.sim.world import SimWorld

SERIAL = "CAMS001"
PASSWORD = "A1b2C3"  # distinctive bytes in the CDB
GENERIC = get_vendor("generic_zfy")
ALT = get_vendor("generic_zfy_alt")


@pytest.fixture
def cam_world(tmp_path: Path) -> SimWorld:
    w = SimWorld(tmp_path / "sim")
    w.init({1: "1-1.1"})
    w.create_camera(SERIAL, fs_type="vfat", size_mib=40, password=PASSWORD)
    return w


@contextlib.contextmanager
def docked(
    world: SimWorld, vmap: VendorMap = GENERIC, password: str = PASSWORD, timeout_s: float = 2.0
) -> Iterator[tuple[ScsiSimEndpoint, ScsiCameraControl, Tap]]:
    """A simulated camera served on a fake SG device, and a control on it whose commands are tapped."""
    with ScsiSimEndpoint(ScsiCameraSim(world, SERIAL, vmap)) as endpoint:
        tap = Tap(SgDeviceSimTransport(endpoint.path))
        control = ScsiCameraControl(tap, password, vmap, timeout_s=timeout_s)
        try:
            yield endpoint, control, tap
        finally:
            control.close()


class Tap(ScsiTransport):
    """Records every command and can rewrite answers, to play a camera that answers nonsense."""

    def __init__(self, inner: ScsiTransport) -> None:
        self.inner = inner
        self.calls: list[tuple[bytes, bytes | None, int]] = []
        self.results: list[ScsiResult] = []
        self.tamper: Callable[[ScsiResult], ScsiResult] | None = None

    def execute(self, cdb: bytes, data_out: bytes | None, data_in_len: int, timeout_ms: int) -> ScsiResult:
        self.calls.append((cdb, data_out, data_in_len))
        result = self.inner.execute(cdb, data_out, data_in_len, timeout_ms)
        if self.tamper is not None:
            result = self.tamper(result)
        self.results.append(result)
        return result

    def close(self) -> None:
        self.inner.close()


def officer(**changes: str) -> OfficerRecord:
    fields = {
        "serial": SERIAL,
        "police_no": "330123",
        "name": "张伟",
        "unit_code": "330100000000",
        "unit_name": "综合行政执法大队",
    }
    return OfficerRecord(**{**fields, **changes})


def set_fault(world: SimWorld, fault: str | None) -> None:
    camera = world.load(SERIAL)
    camera.fault = fault
    world.save(camera)


def add_clips(world: SimWorld, tmp_path: Path, count: int) -> list[str]:
    """Files on the camera without ffmpeg: 256 KiB each, so freeing them shows in the free space."""
    local = tmp_path / "clip.bin"
    local.write_bytes(os.urandom(256 * 1024))
    paths = [f"DCIM/100MEDIA/{SERIAL}_{i:04d}.MP4" for i in range(count)]
    media.add_files(world.image_path(SERIAL), [(p, local) for p in paths])
    return paths


# -- the function set, end to end ----------------------------------------------------------------------------


def test_full_function_set_over_fake_sg_device(cam_world: SimWorld, tmp_path: Path) -> None:
    with docked(cam_world) as (_, cam, _tap):
        cam.init()
        assert cam.identity() == CameraIdentity("SIMCAM", "DSJ-S1", SERIAL, "1.0.0")

        assert cam.read_officer() == OfficerRecord(SERIAL, "", "", "", "")
        cam.write_officer(officer())
        assert cam.read_officer() == officer()
        assert cam_world.load(SERIAL).officer == officer().to_dict()  # the one camera brain both transports use
        with pytest.raises(CameraError, match=r"INFO_SET.*ILLEGAL REQUEST.*0x26"):
            cam.write_officer(officer(serial="CAMX999"))  # the firmware refuses a record for another camera

        target = datetime.now().replace(microsecond=0) - timedelta(hours=3)
        cam.set_clock(target)
        assert abs((cam.read_clock() - target).total_seconds()) <= 2

        assert cam.resolution() == "1920x1080@30"
        cam_world.set_battery(SERIAL, 87)
        assert cam.battery_pct() == 87
        cam.enter_mass_storage()

        empty = cam.storage()
        assert empty.total_bytes == cam_world.image_path(SERIAL).stat().st_size
        paths = add_clips(cam_world, tmp_path, 3)
        filled = cam.storage()
        assert filled.free_bytes <= empty.free_bytes - 3 * 256 * 1024
        cam.free_recordings(paths[:2])
        with pytest.raises(CameraError, match="FREE"):
            cam.free_recordings(paths[1:])  # already freed: the camera refuses, keeps the rest
        cam.free_recordings(paths[2:])
        cam.free_recordings([])
        freed = cam.storage()
        assert freed.total_bytes == empty.total_bytes
        assert freed.free_bytes >= filled.free_bytes + 3 * 256 * 1024


def test_free_list_longer_than_one_transfer_goes_in_batches(cam_world: SimWorld, tmp_path: Path) -> None:
    small = dataclasses.replace(GENERIC, max_transfer=100)
    paths = add_clips(cam_world, tmp_path, 5)  # 31 bytes each on the wire: three fit in 100
    with docked(cam_world, small) as (_, cam, tap):
        before = cam.storage()
        cam.free_recordings(paths)
        frees = [out for cdb, out, _ in tap.calls if cdb[1] == GENERIC.subcommands["FREE"]]
        assert [len(out or b"") for out in frees] == [93, 62]
        assert b"".join(out or b"" for out in frees) == b"".join(p.encode() + b"\0" for p in paths)
        assert cam.storage().free_bytes >= before.free_bytes + 5 * 256 * 1024


# -- the documented wire format ------------------------------------------------------------------------------

PW = PASSWORD.encode().hex()  # 41 31 62 32 43 33


@pytest.mark.parametrize(
    ("vmap", "call", "cdb_hex", "data_in_len"),
    [
        # opcode | sub | password (6) | reserved (2) | transfer length u32 BE | reserved | control
        (GENERIC, lambda c: c.init(), f"fd 01 {PW} 0000 00000000 00 00", 0),
        (GENERIC, lambda c: c.battery_pct(), f"fd 41 {PW} 0000 00000001 00 00", 1),
        (GENERIC, lambda c: c.read_officer(), f"fd 10 {PW} 0000 00000059 00 00", 89),
        (GENERIC, lambda c: c.identity(), f"fd 02 {PW} 0000 00000040 00 00", 64),
        (GENERIC, lambda c: c.storage(), f"fd 42 {PW} 0000 00000010 00 00", 16),
        (GENERIC, lambda c: c.set_clock(datetime(2024, 5, 6, 7, 8, 9)), f"fd 21 {PW} 0000 0000000e 00 00", 0),
        (ALT, lambda c: c.battery_pct(), f"c8 c2 {PW} 0000 00000001 00 00", 1),
        (ALT, lambda c: c.read_clock(), f"c8 b2 {PW} 0000 0000000e 00 00", 14),
    ],
    ids=["init", "batt", "info_get", "ident", "storage", "clock_set", "alt-batt", "alt-clock_get"],
)
def test_cdb_bytes_match_documented_table(
    cam_world: SimWorld, vmap: VendorMap, call: Callable[[ScsiCameraControl], Any], cdb_hex: str, data_in_len: int
) -> None:
    with docked(cam_world, vmap) as (_, cam, tap):
        call(cam)
        cdb, _, asked = tap.calls[-1]
        assert cdb == bytes.fromhex(cdb_hex)
        assert len(cdb) == 16
        assert asked == data_in_len
        assert tap.results[-1].status == GOOD


def test_data_out_records_match_documented_layout(cam_world: SimWorld) -> None:
    with docked(cam_world) as (_, cam, tap):
        cam.write_officer(officer())
        _, zfy, _ = tap.calls[-1]
        assert zfy is not None and len(zfy) == 89
        assert zfy[0:7] == b"CAMS001"
        assert zfy[7:13] == b"330123"
        assert zfy[13:45] == "张伟".encode("gb18030").ljust(32, b"\0")
        assert zfy[45:57] == b"330100000000"
        assert zfy[57:89] == "综合行政执法大队".encode("gb18030").ljust(32, b"\0")

        cam.set_clock(datetime(2024, 5, 6, 7, 8, 9))
        assert tap.calls[-1][1] == b"20240506070809"

        cam_world.set_battery(SERIAL, 42)
        cam.battery_pct()
        assert tap.results[-1].data_in == b"\x2a"
        cam.storage()
        data = tap.results[-1].data_in
        assert int.from_bytes(data[:8], "big") == 40 * 1024 * 1024
        assert 0 < int.from_bytes(data[8:], "big") < 40 * 1024 * 1024
        cam.identity()
        assert tap.results[-1].data_in == b"".join(
            s.encode().ljust(16, b"\0") for s in ("SIMCAM", "DSJ-S1", SERIAL, "1.0.0")
        )


def test_simulator_refuses_malformed_cdbs(cam_world: SimWorld) -> None:
    sim = ScsiCameraSim(cam_world, SERIAL)
    good = GENERIC.build_cdb("BATT", PASSWORD, 1)
    assert sim.execute(good, None, 1) == ScsiResult(GOOD, b"", b"\x3c")

    def sense_of(cdb: bytes, data_out: bytes | None = None, data_in_len: int = 0) -> Any:
        result = sim.execute(cdb, data_out, data_in_len)
        assert result is not None and result.status == CHECK_CONDITION
        return parse_sense(result.sense)

    assert sense_of(good[:10], data_in_len=1) == SENSE_INVALID_FIELD_IN_CDB  # not 16 bytes
    assert sense_of(bytes([0xFE]) + good[1:], data_in_len=1) == SENSE_INVALID_OPCODE  # not our opcode
    assert sense_of(good[:1] + b"\x99" + good[2:], data_in_len=1) == SENSE_INVALID_OPCODE  # no such sub-command
    assert sense_of(good[:15] + b"\x01", data_in_len=1) == SENSE_INVALID_FIELD_IN_CDB  # control byte not 0
    clock_set = GENERIC.build_cdb("CLOCK_SET", PASSWORD, 14)
    assert sense_of(clock_set, b"2024") == SENSE_INVALID_FIELD_IN_CDB  # length field disagrees with the data
    assert sense_of(GENERIC.build_cdb("INIT", PASSWORD, 4), data_in_len=0) == SENSE_INVALID_FIELD_IN_CDB


# -- failures -------------------------------------------------------------------------------------------------


def test_wrong_password_is_auth_error(cam_world: SimWorld) -> None:
    with docked(cam_world, password="999999") as (_, cam, tap):
        for call in (cam.init, cam.identity, cam.battery_pct, cam.storage, lambda: cam.write_officer(officer())):
            with pytest.raises(CameraAuthError):
                call()
        last = tap.results[-1]
        assert last.status == CHECK_CONDITION
        assert last.sense == fixed_sense(0x07, 0x80, 0x01)  # DATA PROTECT, vendor ASC 0x80/0x01
        assert parse_sense(last.sense) == SENSE_PASSWORD_REJECTED
    assert cam_world.load(SERIAL).officer is None  # refused commands change nothing


def test_simulator_gone_is_camera_gone(cam_world: SimWorld) -> None:
    with docked(cam_world) as (endpoint, cam, _):
        assert cam.battery_pct() == 60
        endpoint.close()  # undocked: the fake SG device hangs up
        with pytest.raises(CameraGone):
            cam.battery_pct()
        with pytest.raises(CameraGone):
            cam.identity()  # stays gone
        with pytest.raises(CameraGone):
            ScsiCameraControl.open(endpoint.path, PASSWORD, GENERIC, simulated=True)  # node vanished


def test_closing_while_a_command_waits_is_prompt(cam_world: SimWorld) -> None:
    set_fault(cam_world, "mute")
    with docked(cam_world, timeout_s=10) as (_, cam, _):
        errors: list[BaseException] = []

        def call() -> None:
            try:
                cam.battery_pct()
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        threading.Event().wait(0.2)
        cam.close()
        worker.join(timeout=2)
        assert not worker.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], CameraGone)


def test_mute_camera_is_gone(cam_world: SimWorld) -> None:
    with docked(cam_world, timeout_s=0.3) as (_, cam, _):
        set_fault(cam_world, "mute")
        with pytest.raises(CameraGone, match="no answer"):
            cam.battery_pct()
        set_fault(cam_world, None)
        assert cam.identity().serial == SERIAL


class SlowOnce(ScsiCameraSim):
    """Answers its first command only after ``delay_s``."""

    delay_s = 0.5

    def execute(self, cdb: bytes, data_out: bytes | None, data_in_len: int) -> ScsiResult | None:
        delay, self.delay_s = self.delay_s, 0.0
        time.sleep(delay)
        return super().execute(cdb, data_out, data_in_len)


def test_late_answer_is_dropped_not_taken_for_the_next(cam_world: SimWorld) -> None:
    with ScsiSimEndpoint(SlowOnce(cam_world, SERIAL)) as endpoint:
        transport = SgDeviceSimTransport(endpoint.path)
        with pytest.raises(TimeoutError):
            transport.execute(GENERIC.build_cdb("BATT", PASSWORD, 1), None, 1, 100)
        # The battery byte arrives while IDENT waits; it must not be taken for IDENT's answer.
        # (A generous deadline: these machines are shared.)
        answer = transport.execute(GENERIC.build_cdb("IDENT", PASSWORD, 64), None, 64, 10_000)
        assert GENERIC.unpack_identity(answer.data_in).serial == SERIAL
        transport.close()


def _replace(**changes: Any) -> Callable[[ScsiResult], ScsiResult]:
    return lambda result: result._replace(**changes)


def _patch(offset: int, raw: bytes) -> Callable[[ScsiResult], ScsiResult]:
    def tamper(result: ScsiResult) -> ScsiResult:
        data = result.data_in
        return result._replace(data_in=data[:offset] + raw + data[offset + len(raw) :])

    return tamper


@pytest.mark.parametrize(
    ("call", "tamper", "message"),
    [
        (lambda c: c.battery_pct(), _replace(data_in=b"\xc8"), "battery answer c8"),
        (lambda c: c.battery_pct(), _replace(data_in=b""), "0 bytes, expected 1"),
        (lambda c: c.identity(), lambda r: r._replace(data_in=r.data_in[:10]), "10 bytes, expected 64"),
        (lambda c: c.read_clock(), _replace(data_in=b"2024-05-06T070"), "not 14 ASCII digits"),
        (lambda c: c.storage(), _replace(data_in=(1).to_bytes(8, "big") + (2).to_bytes(8, "big")), "exceeds total"),
        (lambda c: c.read_officer(), _patch(13, b"\xff\xff"), "name is not gb18030"),
        (lambda c: c.resolution(), _replace(data_in=bytes(32)), "resolution is empty"),
        (lambda c: c.init(), _replace(status=CHECK_CONDITION, sense=b""), "unreadable sense"),
        (lambda c: c.init(), _replace(status=0x18), "unexpected SCSI status 0x18"),
        (lambda c: c.init(), _replace(status=0x08), "busy"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_answers_are_camera_errors(
    cam_world: SimWorld, call: Callable[[ScsiCameraControl], Any], tamper: Any, message: str
) -> None:
    with docked(cam_world) as (_, cam, tap):
        tap.tamper = tamper
        with pytest.raises(CameraError, match=message) as caught:
            call(cam)
        assert type(caught.value) is CameraError  # neither "gone" nor "wrong password"


def test_garbage_camera_is_camera_error(cam_world: SimWorld) -> None:
    set_fault(cam_world, "garbage")
    with docked(cam_world) as (_, cam, _):
        for call in (cam.init, cam.identity, cam.battery_pct, cam.read_clock, lambda: cam.set_clock(datetime.now())):
            with pytest.raises(CameraError) as caught:
                call()
            assert type(caught.value) is CameraError


def test_garbled_framing_is_error_then_gone(tmp_path: Path) -> None:
    folder = tempfile.mkdtemp(prefix="sgjunk-")
    path = os.path.join(folder, "junk.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def junk() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"JUNK" * 8)
        conn.recv(4096)  # until the station hangs up
        conn.close()

    thread = threading.Thread(target=junk, daemon=True)
    thread.start()
    try:
        with ScsiCameraControl.open(path, PASSWORD, GENERIC, simulated=True) as cam:
            with pytest.raises(CameraError, match="transport failed") as caught:
                cam.battery_pct()
            assert type(caught.value) is CameraError
            with pytest.raises(CameraGone):
                cam.battery_pct()  # the link cannot resynchronise: treated as unplugged
    finally:
        thread.join(timeout=2)
        server.close()
        os.unlink(path)
        os.rmdir(folder)


class Scripted(ScsiTransport):
    def __init__(self, *results: ScsiResult) -> None:
        self.results = list(results)
        self.count = 0

    def execute(self, cdb: bytes, data_out: bytes | None, data_in_len: int, timeout_ms: int) -> ScsiResult:
        self.count += 1
        return self.results.pop(0)

    def close(self) -> None:
        pass


def test_unit_attention_is_retried_once() -> None:
    attention = ScsiResult(CHECK_CONDITION, fixed_sense(UNIT_ATTENTION, 0x29, 0x00), b"")  # power on / reset
    transport = Scripted(attention, ScsiResult(GOOD, b"", b"\x50"))
    assert ScsiCameraControl(transport, PASSWORD, GENERIC).battery_pct() == 80
    assert transport.count == 2
    with pytest.raises(CameraError, match="UNIT ATTENTION"):
        ScsiCameraControl(Scripted(attention, attention), PASSWORD, GENERIC).init()


# -- a second vendor -----------------------------------------------------------------------------------------


def test_second_vendor_end_to_end(cam_world: SimWorld) -> None:
    assert vendor_names() == ["generic_zfy", "generic_zfy_alt"]
    with docked(cam_world, ALT) as (_, cam, tap):
        cam.init()
        assert cam.identity().serial == SERIAL
        cam.write_officer(officer(name="李娜"))
        assert cam.read_officer().name == "李娜"
        cam.set_clock(datetime(2031, 1, 1, 0, 0, 0))
        assert cam.read_clock() - datetime(2031, 1, 1) < timedelta(seconds=3)
        assert cam.battery_pct() == 60
        assert cam.storage().total_bytes == 40 * 1024 * 1024
        assert {cdb[0] for cdb, _, _ in tap.calls} == {0xC8}


def test_vendor_mismatch_says_wrong_vendor_map(cam_world: SimWorld) -> None:
    with ScsiSimEndpoint(ScsiCameraSim(cam_world, SERIAL, ALT)) as endpoint:
        cam = ScsiCameraControl.open(endpoint.path, PASSWORD, GENERIC, simulated=True)
        with cam, pytest.raises(CameraError, match="wrong vendor map"):
            cam.battery_pct()


def test_vendor_map_validation() -> None:
    subs = dict(GENERIC.subcommands)
    with pytest.raises(ValueError, match="0xC0-0xFF"):
        VendorMap(name="bad", opcode=0x28, subcommands=subs)  # READ(10) is not ours to reuse
    with pytest.raises(ValueError, match="cover exactly"):
        VendorMap(name="bad", opcode=0xFD, subcommands={k: v for k, v in subs.items() if k != "FREE"})
    with pytest.raises(ValueError, match="distinct"):
        VendorMap(name="bad", opcode=0xFD, subcommands={**subs, "FREE": subs["INIT"]})
    with pytest.raises(ValueError, match="overlap"):
        VendorMap(name="bad", opcode=0xFD, subcommands=subs, length_offset=4)
    with pytest.raises(KeyError):
        get_vendor("no_such_vendor")
    for bad in ("12345", "A1b2C3\n", "密码密码密码"):
        with pytest.raises(CameraError, match="6 letters"):
            ScsiCameraControl(Scripted(), bad, GENERIC)
        with pytest.raises(ValueError, match="6 letters"):
            GENERIC.build_cdb("INIT", bad)


# -- SG_IO: sg_io_hdr and a stand-in for the kernel ----------------------------------------------------------


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="offsets are those of 64-bit Linux")
def test_sg_io_hdr_layout_is_lp64_linux() -> None:
    assert ctypes.sizeof(SgIoHdr) == 88
    offsets = {name: getattr(SgIoHdr, name).offset for name, _ in SgIoHdr._fields_}
    assert offsets == {
        "interface_id": 0,
        "dxfer_direction": 4,
        "cmd_len": 8,
        "mx_sb_len": 9,
        "iovec_count": 10,
        "dxfer_len": 12,
        "dxferp": 16,
        "cmdp": 24,
        "sbp": 32,
        "timeout": 40,
        "flags": 44,
        "pack_id": 48,
        "usr_ptr": 56,
        "status": 64,
        "masked_status": 65,
        "msg_status": 66,
        "sb_len_wr": 67,
        "host_status": 68,
        "driver_status": 70,
        "resid": 72,
        "duration": 76,
        "info": 80,
    }
    assert (SG_IO, SG_GET_VERSION_NUM) == (0x2285, 0x2282)
    assert (SG_DXFER_NONE, SG_DXFER_TO_DEV, SG_DXFER_FROM_DEV) == (-1, -2, -3)


class FakeKernel:
    """Stands in for fcntl.ioctl on /dev/sgN: checks the header as the sg driver would, then lets ``device``
    answer and writes status, sense, data and residue back through the header's pointers."""

    def __init__(self, device: Callable[[bytes, bytes | None, int], ScsiResult | None], version: int = 30536):
        self.device = device
        self.version = version
        self.headers: list[dict[str, int]] = []
        self.host_status = 0
        self.driver_status = 0
        self.raise_errno: int | None = None

    def __call__(self, fd: int, request: int, arg: Any) -> int:
        if request == SG_GET_VERSION_NUM:
            arg.value = self.version
            return 0
        assert request == SG_IO
        if self.raise_errno is not None:
            raise OSError(self.raise_errno, os.strerror(self.raise_errno))
        hdr = SgIoHdr.from_buffer(arg)
        self.headers.append({name: getattr(hdr, name) for name, _ in SgIoHdr._fields_})
        assert hdr.interface_id == ord("S") and hdr.iovec_count == 0
        cdb = ctypes.string_at(hdr.cmdp, hdr.cmd_len)
        data_out = ctypes.string_at(hdr.dxferp, hdr.dxfer_len) if hdr.dxfer_direction == SG_DXFER_TO_DEV else None
        data_in_len = hdr.dxfer_len if hdr.dxfer_direction == SG_DXFER_FROM_DEV else 0
        if hdr.dxfer_direction == SG_DXFER_NONE:
            assert hdr.dxfer_len == 0
        result = self.device(cdb, data_out, data_in_len)
        if result is None:  # no answer: the SCSI layer times the command out
            hdr.host_status = DID_TIME_OUT
            return 0
        hdr.status = result.status
        sense = result.sense[: hdr.mx_sb_len]
        ctypes.memmove(hdr.sbp, sense, len(sense))
        hdr.sb_len_wr = len(sense)
        if data_in_len:
            ctypes.memmove(hdr.dxferp, result.data_in, len(result.data_in))
            hdr.resid = data_in_len - len(result.data_in)
        hdr.host_status = self.host_status
        hdr.driver_status = self.driver_status or (DRIVER_SENSE if result.status == CHECK_CONDITION else 0)
        return 0


@pytest.fixture
def sg_node(tmp_path: Path) -> Path:
    node = tmp_path / "sg0"
    node.write_bytes(b"")  # stands for /dev/sg0: opened, never read
    return node


def test_sg_io_transport_fills_the_header(sg_node: Path) -> None:
    kernel = FakeKernel(lambda cdb, out, n: ScsiResult(GOOD, b"", b"\x01\x02\x03"[:n]))
    transport = SgIoTransport(sg_node, ioctl=kernel)
    cdb = GENERIC.build_cdb("STORAGE", PASSWORD, 16)
    assert transport.execute(cdb, None, 16, 1500) == ScsiResult(GOOD, b"", b"\x01\x02\x03")  # residue 13
    assert transport.execute(cdb, b"payload", 0, 1500).status == GOOD
    assert transport.execute(cdb, None, 0, 1500).status == GOOD
    data_in, data_out, none = kernel.headers
    assert data_in["dxfer_direction"] == SG_DXFER_FROM_DEV and data_in["dxfer_len"] == 16
    assert data_out["dxfer_direction"] == SG_DXFER_TO_DEV and data_out["dxfer_len"] == 7
    assert none["dxfer_direction"] == SG_DXFER_NONE and none["dxferp"] is None
    assert data_in["cmd_len"] == 16 and data_in["mx_sb_len"] == 32 and data_in["timeout"] == 1500
    transport.close()
    with pytest.raises(OSError) as caught:
        transport.execute(cdb, None, 0, 1500)
    assert caught.value.errno == errno.EBADF


def test_sg_io_transport_runs_the_driver_against_the_simulator(cam_world: SimWorld, sg_node: Path) -> None:
    sim = ScsiCameraSim(cam_world, SERIAL)
    with ScsiCameraControl(SgIoTransport(sg_node, ioctl=FakeKernel(sim.execute)), PASSWORD, GENERIC) as cam:
        cam.init()
        assert cam.identity().model == "DSJ-S1"
        cam.write_officer(officer())
        assert cam.read_officer() == officer()
        assert cam.battery_pct() == 60
        assert cam.resolution() == "1920x1080@30"
        assert cam.storage().total_bytes == 40 * 1024 * 1024
    wrong = ScsiCameraControl(SgIoTransport(sg_node, ioctl=FakeKernel(sim.execute)), "999999", GENERIC)
    with wrong, pytest.raises(CameraAuthError):
        wrong.battery_pct()  # CHECK CONDITION + DRIVER_SENSE: sense read back through sbp


@pytest.mark.parametrize(
    ("host", "driver", "raised", "err", "camera_error"),
    [
        (DID_NO_CONNECT, 0, OSError, errno.ENODEV, CameraGone),
        (DID_BAD_TARGET, 0, OSError, errno.ENODEV, CameraGone),
        (DID_TIME_OUT, 0, TimeoutError, errno.ETIMEDOUT, CameraGone),
        (0, DRIVER_TIMEOUT, TimeoutError, errno.ETIMEDOUT, CameraGone),
        (DID_ERROR, 0, OSError, errno.EIO, CameraGone),
        (DID_BUS_BUSY, 0, OSError, errno.EAGAIN, CameraError),
        (0x42, 0, OSError, errno.EREMOTEIO, CameraError),
        (0, 0x04, OSError, errno.EREMOTEIO, CameraError),
    ],
)
def test_sg_io_host_and_driver_status_mapping(
    sg_node: Path, host: int, driver: int, raised: type[OSError], err: int, camera_error: type[CameraError]
) -> None:
    kernel = FakeKernel(lambda cdb, out, n: ScsiResult(GOOD, b"", b"\x10"))
    kernel.host_status, kernel.driver_status = host, driver
    transport = SgIoTransport(sg_node, ioctl=kernel)
    with pytest.raises(raised) as caught:
        transport.execute(GENERIC.build_cdb("BATT", PASSWORD, 1), None, 1, 1000)
    assert caught.value.errno == err
    with pytest.raises(camera_error) as mapped:
        ScsiCameraControl(transport, PASSWORD, GENERIC).battery_pct()
    assert type(mapped.value) is camera_error


def test_sg_io_ioctl_errors_and_non_sg_nodes(sg_node: Path) -> None:
    kernel = FakeKernel(lambda cdb, out, n: None)
    kernel.raise_errno = errno.ENODEV  # what SG_IO returns once the camera is unplugged
    with pytest.raises(CameraGone):
        ScsiCameraControl(SgIoTransport(sg_node, ioctl=kernel), PASSWORD, GENERIC).init()
    kernel.raise_errno = errno.EINVAL  # our bug, not a vanished camera
    with pytest.raises(CameraError) as caught:
        ScsiCameraControl(SgIoTransport(sg_node, ioctl=kernel), PASSWORD, GENERIC).init()
    assert type(caught.value) is CameraError
    kernel.raise_errno = None
    with pytest.raises(CameraGone, match="no answer"):
        ScsiCameraControl(SgIoTransport(sg_node, ioctl=kernel), PASSWORD, GENERIC).init()  # DID_TIME_OUT

    with pytest.raises(OSError) as not_sg:
        SgIoTransport(sg_node, ioctl=FakeKernel(kernel.device, version=20000))
    assert not_sg.value.errno == errno.ENOTTY
    with pytest.raises(CameraError, match="not a SCSI generic device"):
        ScsiCameraControl.open("/dev/null", PASSWORD, GENERIC)  # the real ioctl: ENOTTY
    with pytest.raises(CameraGone):
        ScsiCameraControl.open(sg_node.parent / "sg9", PASSWORD, GENERIC)  # node gone
