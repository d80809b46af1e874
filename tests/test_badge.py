"""Badge readers: the serial reader over a real pty from SimBadgeReader, the keyboard wedge from packed events."""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devices.badge import BadCardLine, normalise_card
from devices.badge.base import Backoff
from devices.badge.keyboard_wedge import (
    EV_KEY,
    INPUT_EVENT,
    KEY_ENTER,
    KEY_LEFTSHIFT,
    KeyboardWedgeReader,
    encode_event,
    encode_typing,
)
from devices.badge.serial_reader import SerialBadgeReader
from devices.badge.sim import SimBadgeReader

FAST = Backoff(first=0.02, limit=0.2)


def wait_until(predicate: Callable[[], bool], timeout: float = 5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("raw", "card"),
    [
        ("0a1b2c3d", "0A1B2C3D"),
        ("  0A1B2C3D \r\n", "0A1B2C3D"),
        (b"\x020004567890\x03", "0004567890"),
        ("12345678901234567890", "12345678901234567890"),
    ],
)
def test_normalise(raw: str | bytes, card: str) -> None:
    assert normalise_card(raw) == card


@pytest.mark.parametrize("raw", ["", "   ", "0A1B-2C3D", "0A1B 2C3D", "１２３４", "123456789012345678901", b"\xff\x00"])
def test_normalise_rejects(raw: str | bytes) -> None:
    with pytest.raises(BadCardLine):
        normalise_card(raw)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimBadgeReader]:
    reader = SimBadgeReader(link=tmp_path / "serial" / "by-id" / "usb-Badge_RFID-if00")
    yield reader
    reader.close()


@pytest.fixture
def serial_reader(sim: SimBadgeReader) -> Iterator[SerialBadgeReader]:
    reader = SerialBadgeReader(sim.port, backoff=FAST, poll_s=0.05)
    wait_until(reader.connected.is_set, what="reader open")
    yield reader
    reader.close()


def test_serial_swipes_arrive_normalised(sim: SimBadgeReader, serial_reader: SerialBadgeReader) -> None:
    sim.swipe("0a1b2c3d")
    sim.send(b"\x02DEADBEEF\x03\r")  # STX/ETX framing, CR only
    sim.send(b"00AB")
    sim.send(b"CD12\n")  # one line split across two writes
    assert [serial_reader.get(timeout=5) for _ in range(3)] == ["0A1B2C3D", "DEADBEEF", "00ABCD12"]
    assert serial_reader.get(timeout=0.05) is None


def test_serial_garbage_rejected(
    sim: SimBadgeReader, serial_reader: SerialBadgeReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="devices.badge")
    sim.send(b"   \r\n")  # empty after stripping
    sim.send(b"0A1B-2C3D\r\n")
    sim.send(b"\xff\xfe\x00\r\n")
    sim.send(b"9" * 40 + b"\r\n")
    sim.swipe("CAFE0001")
    assert serial_reader.get(timeout=5) == "CAFE0001"  # the only good line, and nothing before it
    assert serial_reader.get(timeout=0.05) is None
    assert sum("ignoring line" in r.getMessage() for r in caplog.records) == 4


def test_serial_unterminated_noise_dropped(
    sim: SimBadgeReader, serial_reader: SerialBadgeReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="devices.badge")
    sim.send(b"A" * 300)  # no line end for far too long: noise
    wait_until(lambda: any("without a line end" in r.getMessage() for r in caplog.records), what="noise warning")
    sim.send(b"BBBB\r\n")  # the tail of the noise, dropped up to its line end
    sim.swipe("CAFE0002")
    assert serial_reader.get(timeout=5) == "CAFE0002"
    assert serial_reader.get(timeout=0.05) is None


def test_serial_callback(sim: SimBadgeReader) -> None:
    got: list[str] = []
    done = threading.Event()

    def on_card(card: str) -> None:
        if card == "BAD0":
            raise RuntimeError("the callback's own bug")
        got.append(card)
        done.set()

    with SerialBadgeReader(sim.port, on_card, backoff=FAST, poll_s=0.05) as reader:
        wait_until(reader.connected.is_set, what="reader open")
        sim.swipe("bad0")  # a failing callback must not kill the reader thread
        sim.swipe("1234abcd")
        assert done.wait(5)
    assert got == ["1234ABCD"]
    assert reader.cards.empty()


def test_serial_reconnects_when_port_comes_back(sim: SimBadgeReader, serial_reader: SerialBadgeReader) -> None:
    sim.swipe("11111111")
    assert serial_reader.get(timeout=5) == "11111111"
    sim.unplug()
    wait_until(lambda: not serial_reader.connected.is_set(), what="reader to notice the unplug")
    time.sleep(0.1)  # a few failed reopen attempts while the port is gone
    sim.plug()
    wait_until(lambda: serial_reader.connections == 2 and serial_reader.connected.is_set(), what="reconnect")
    sim.swipe("22222222")
    assert serial_reader.get(timeout=5) == "22222222"


def test_serial_reader_waits_for_a_port_that_is_not_there_yet(tmp_path: Path) -> None:
    link = tmp_path / "late-reader"
    with SerialBadgeReader(str(link), backoff=FAST, poll_s=0.05) as reader:
        time.sleep(0.1)
        assert not reader.connected.is_set()
        with SimBadgeReader(link=link) as sim:
            wait_until(reader.connected.is_set, what="reader open")
            sim.swipe("ABCDEF01")
            assert reader.get(timeout=5) == "ABCDEF01"


# -- keyboard wedge


def test_input_event_layout() -> None:
    if struct.calcsize("P") == 8:
        assert INPUT_EVENT.size == 24
    assert INPUT_EVENT.unpack(encode_event(EV_KEY, KEY_ENTER, 1, 12.5)) == (12, 500_000, EV_KEY, KEY_ENTER, 1)


def test_wedge_from_regular_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="devices.badge")
    events = bytearray()
    events += encode_typing("0a1b2c3d", when=100.0)
    # Shift+letters, as readers configured for uppercase type them; releases and SYNs in between.
    events += encode_event(EV_KEY, KEY_LEFTSHIFT, 1, 101.0)
    events += encode_typing("FF00", when=101.0)
    events += encode_event(EV_KEY, KEY_LEFTSHIFT, 0, 101.1)
    # An unexpected key (G, code 34) spoils the line instead of vanishing from it.
    events += encode_typing("12", when=102.0, enter=False)
    events += encode_event(EV_KEY, 34, 1, 102.02) + encode_typing("34", when=102.03)
    # A fragment, a long pause, then a whole number: the fragment must not prefix it.
    events += encode_typing("99", when=103.0, enter=False)
    events += encode_typing("C0FFEE00", when=110.0)
    events += encode_event(EV_KEY, KEY_ENTER, 2, 110.5)  # autorepeat: ignored
    path = tmp_path / "events.bin"
    path.write_bytes(bytes(events))

    with KeyboardWedgeReader(path, backoff=FAST, poll_s=0.05) as reader:
        assert reader.finished.wait(5)
    assert [reader.get(timeout=0) for _ in range(4)] == ["0A1B2C3D", "FF00", "C0FFEE00", None]
    messages = [r.getMessage() for r in caplog.records]
    assert any("'12?34'" in m for m in messages)
    assert any("partial line" in m for m in messages)


def test_wedge_from_fifo_in_order(tmp_path: Path) -> None:
    fifo = tmp_path / "event-kbd"
    os.mkfifo(fifo)
    data = encode_typing("deadbeef") + encode_typing("12345678")
    with KeyboardWedgeReader(fifo, backoff=FAST, poll_s=0.05) as reader:
        with open(fifo, "wb", buffering=0) as writer:
            for start in range(0, len(data), 17):  # 17-byte writes: almost every event is split
                writer.write(data[start : start + 17])
        assert reader.finished.wait(5)
    assert [reader.get(timeout=0) for _ in range(3)] == ["DEADBEEF", "12345678", None]


def test_wedge_waits_for_device(tmp_path: Path) -> None:
    path = tmp_path / "by-id" / "usb-wedge-event-kbd"
    with KeyboardWedgeReader(path, backoff=FAST, poll_s=0.05) as reader:
        time.sleep(0.1)
        assert not reader.finished.is_set()
        path.parent.mkdir()
        (path.parent / "partial").write_bytes(encode_typing("AB12"))
        (path.parent / "partial").rename(path)  # appears whole, as a device node would
        assert reader.get(timeout=5) == "AB12"
        assert reader.finished.wait(5)
