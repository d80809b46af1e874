"""The dock board client against the simulated board on a real pty: commands, events (also while a command
is in flight), line noise of every kind, and boards that vanish or go mute."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import tty
from collections.abc import Callable, Iterator

import pytest
import serial

from devices.dock import (
    BoardInfo,
    BootEvent,
    ChannelStatus,
    ChargeEvent,
    ChargeState,
    DisabledDockBoard,
    DockBoardError,
    DockBoardGone,
    DockBoardTimeout,
    DockEvent,
    FaultEvent,
    PowerEvent,
    PresenceEvent,
    SerialDockBoard,
)
from devices.dock.protocol import (
    MAX_LINE,
    MAX_SEQ,
    Answer,
    Command,
    LineReader,
    ProtocolError,
    encode_event,
    frame,
    parse_board_line,
    parse_command,
    parse_status,
    unframe,
)
from devices.dock.sim import SimDockBoard
from tests.conftest import wait_until

CHANNELS = 4
TIMEOUT = 0.5
IDLE, CHARGING, FULL, FAULT = ChargeState.IDLE, ChargeState.CHARGING, ChargeState.FULL, ChargeState.FAULT


class Events:
    """Collects what the board's callback delivers."""

    def __init__(self) -> None:
        self.seen: list[DockEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: DockEvent) -> None:
        with self._lock:
            self.seen.append(event)

    def wait_for(self, *wanted: DockEvent, timeout: float = 2) -> None:
        wait_until(lambda: all(e in self.seen for e in wanted), timeout, f"events {wanted}")


@pytest.fixture
def sim() -> Iterator[SimDockBoard]:
    board = SimDockBoard(CHANNELS, board_id="DOCK-T1", firmware="2.1.0", charge_ma=450)
    yield board
    board.close()


@pytest.fixture
def board(sim: SimDockBoard) -> Iterator[SerialDockBoard]:
    with SerialDockBoard(sim.slave_path, timeout=TIMEOUT) as client:
        yield client  # type: ignore[misc]


@pytest.fixture
def events(board: SerialDockBoard) -> Events:
    recorder = Events()
    board.on_event(recorder)
    return recorder


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def channel(board: SerialDockBoard, n: int) -> ChannelStatus:
    return board.status()[n - 1]


# -- commands


def test_hello_and_status_round_trip(board: SerialDockBoard, sim: SimDockBoard) -> None:
    assert board.hello() == BoardInfo("DOCK-T1", "2.1.0", CHANNELS, protocol=1)
    assert board.info == board.hello()
    sim.set_present(2, True)
    sim.set_present(3, True)
    sim.set_charge(3, "full")
    assert board.status() == [
        ChannelStatus(1, False, IDLE, 0, True),
        ChannelStatus(2, True, CHARGING, 450, True),
        ChannelStatus(3, True, FULL, 0, True),
        ChannelStatus(4, False, IDLE, 0, True),
    ]
    assert board.status() == sim.status()
    assert board.garbage_count == 0


def test_set_power_switches_the_bay_and_cuts_the_current(board: SerialDockBoard, sim: SimDockBoard) -> None:
    sim.set_present(1, True)
    board.set_power(1, False)
    assert sim.channel(1) == ChannelStatus(1, True, IDLE, 0, False)  # off means no current, whatever it did
    assert channel(board, 1) == sim.channel(1)
    board.set_power(1, True)
    assert channel(board, 1) == ChannelStatus(1, True, CHARGING, 450, True)  # power again restarts the charge
    assert [c.word for c in sim.commands] == ["POWER", "STATUS", "POWER", "STATUS"]


def test_power_cycle_cuts_the_power_then_restores_it(board: SerialDockBoard, sim: SimDockBoard, events: Events) -> None:
    sim.set_present(2, True)
    started = time.monotonic()
    board.power_cycle(2, 300)
    assert channel(board, 2) == ChannelStatus(2, True, IDLE, 0, False)
    with pytest.raises(DockBoardError, match="BUSY"):
        board.power_cycle(2, 300)  # one cycle at a time per bay
    events.wait_for(PowerEvent(2, True))
    assert time.monotonic() - started >= 0.3
    assert channel(board, 2) == ChannelStatus(2, True, CHARGING, 450, True)
    assert events.seen == [
        PresenceEvent(2, True),
        ChargeEvent(2, CHARGING, 450),
        PowerEvent(2, False),
        ChargeEvent(2, IDLE, 0),
        PowerEvent(2, True),
        ChargeEvent(2, CHARGING, 450),
    ]


def test_power_on_during_a_cycle_ends_it(board: SerialDockBoard, sim: SimDockBoard) -> None:
    board.power_cycle(4, 60000)
    board.set_power(4, True)
    assert channel(board, 4).usb_power is True
    board.power_cycle(4, 100)  # not BUSY: the long cycle is over


def test_refusals_are_clear_errors(board: SerialDockBoard, sim: SimDockBoard) -> None:
    with pytest.raises(DockBoardError, match="CHANNEL") as err:
        board.set_power(CHANNELS + 1, True)  # a channel the protocol allows but this board lacks
    assert not isinstance(err.value, (DockBoardGone, DockBoardTimeout))
    sent = len(sim.commands)
    for bad in (
        lambda: board.set_power(0, True),
        lambda: board.power_cycle(1, 50),
        lambda: board.power_cycle(1, 10**6),
    ):
        with pytest.raises(ValueError):
            bad()
    assert len(sim.commands) == sent  # refused before anything went on the wire
    assert board.hello().channels == CHANNELS  # and the line is still in step


def test_seq_wraps_round_to_one(board: SerialDockBoard, sim: SimDockBoard) -> None:
    board._seq = MAX_SEQ - 1  # a station up for a long time
    board.hello()
    board.hello()
    assert [c.seq for c in sim.commands] == [MAX_SEQ, 1]


# -- events


def test_sim_changes_arrive_as_events(board: SerialDockBoard, sim: SimDockBoard, events: Events) -> None:
    sim.set_present(1, True)
    sim.set_charge(1, FULL)
    sim.set_present(3, True)
    sim.set_fault(3, "OVERTEMP")
    events.wait_for(ChargeEvent(3, FAULT, 0))
    assert events.seen == [
        PresenceEvent(1, True),
        ChargeEvent(1, CHARGING, 450),
        ChargeEvent(1, FULL, 0),
        PresenceEvent(3, True),
        ChargeEvent(3, CHARGING, 450),
        FaultEvent(3, "OVERTEMP"),
        ChargeEvent(3, FAULT, 0),
    ]
    assert channel(board, 3) == ChannelStatus(3, True, FAULT, 0, True)
    board.set_power(3, False)  # switching off clears the latched fault ...
    board.set_power(3, True)
    assert channel(board, 3) == ChannelStatus(3, True, CHARGING, 450, True)  # ... and charging starts again
    sim.set_present(1, False)
    events.wait_for(PresenceEvent(1, False), ChargeEvent(1, IDLE, 0))


def test_events_arrive_while_a_command_is_in_flight(board: SerialDockBoard, sim: SimDockBoard, events: Events) -> None:
    sim.answer_delay_s = 0.3  # the board sits on the STATUS while a camera is docked
    timer = later(0.1, lambda: sim.set_present(2, True))
    status = board.status()
    timer.join()
    events.wait_for(PresenceEvent(2, True), ChargeEvent(2, CHARGING, 450))
    assert status[1] == ChannelStatus(2, True, CHARGING, 450, True)
    assert board.garbage_count == 0


def test_a_callback_may_call_the_board_back(board: SerialDockBoard, sim: SimDockBoard) -> None:
    seen: list[ChannelStatus] = []

    def on_presence(event: DockEvent) -> None:
        if isinstance(event, PresenceEvent):
            seen.append(board.status()[event.channel - 1])  # would deadlock on the reader thread

    board.on_event(on_presence)
    sim.set_present(4, True)
    wait_until(lambda: bool(seen), 2, "the callback's status()")
    assert seen[0].present is True


def test_a_failing_callback_does_not_stop_the_others(board: SerialDockBoard, sim: SimDockBoard) -> None:
    def broken(event: DockEvent) -> None:
        raise RuntimeError("station bug")

    recorder = Events()
    unregister = board.on_event(broken)
    board.on_event(recorder)
    sim.set_present(1, True)
    recorder.wait_for(PresenceEvent(1, True))
    unregister()
    sim.set_present(1, False)
    recorder.wait_for(PresenceEvent(1, False))


def test_a_board_reset_is_an_event(board: SerialDockBoard, sim: SimDockBoard, events: Events) -> None:
    board.set_power(2, False)
    sim.reboot()
    events.wait_for(BootEvent(BoardInfo("DOCK-T1", "2.1.0", CHANNELS)))
    assert board.info == BoardInfo("DOCK-T1", "2.1.0", CHANNELS)
    assert channel(board, 2).usb_power is True  # back at its power-on default


# -- line noise


def _bad_checksum() -> bytes:
    line = frame("EVT PRESENT 1 1")
    return line[:-3] + (b"00" if line[-3:-1] != b"00" else b"01") + b"\n"


NOISE = {
    "bad-checksum": (_bad_checksum(), 1),
    "no-checksum": (b"$EVT PRESENT 1 1\n", 1),
    "unknown-event": (frame("EVT SMOKE 1"), 1),
    "unknown-answer": (frame("7 MAYBE"), 1),
    "out-of-range": (frame("EVT CHARGE 1 CHARGING 99999"), 1),
    "binary": (b"\x00\xff\x13\x80\x7f\n", 1),
    "cut-short": (b"$EVT PRES", 1),  # the next line's "$" ends it
    "long-noise-no-newline": (b"A" * 10240, 1),
    "long-line-no-newline": (b"$" + b"A" * 10240, 1),
    "random": (random.Random(7).randbytes(2000), None),
    "bare-line-ends": (b"\r\n\n\n", 0),  # not noise: a line end is how a receiver resynchronises
}


@pytest.mark.parametrize(("noise", "count"), NOISE.values(), ids=NOISE.keys())
def test_noise_is_counted_and_never_taken_as_data(
    board: SerialDockBoard, sim: SimDockBoard, events: Events, noise: bytes, count: int | None
) -> None:
    sim.inject_garbage(noise)
    sim.set_present(3, True)  # a good line right behind the noise, without a line end in between
    events.wait_for(PresenceEvent(3, True), ChargeEvent(3, CHARGING, 450))
    if count is None:
        assert board.garbage_count >= 1
    else:
        assert board.garbage_count == count
    assert board.hello().channels == CHANNELS
    assert board.status() == sim.status()
    assert events.seen == [PresenceEvent(3, True), ChargeEvent(3, CHARGING, 450)]  # nothing made up


def test_noise_between_a_command_and_its_answer(board: SerialDockBoard, sim: SimDockBoard) -> None:
    sim.answer_delay_s = 0.2
    timer = later(0.05, lambda: sim.inject_garbage(b"\x00" * 600 + _bad_checksum() + frame("9 OK")))
    assert board.hello().board_id == "DOCK-T1"
    timer.join()
    assert board.garbage_count == 2  # the noise and the bad line; "9 OK" is a stale answer, not noise


def test_board_ignores_a_command_with_a_bad_checksum(sim: SimDockBoard) -> None:
    """The board side: a line it cannot trust is not obeyed and not answered; the next one is."""
    with serial.serial_for_url(sim.slave_path, timeout=0.3) as port:
        port.write(b"$1 POWER 1 OFF*00\n")
        assert port.readline() == b""
        assert sim.rx_garbage == 1 and sim.channel(1).usb_power is True
        port.write(Command(2, "POWER", ("1", "OFF")).encode())
        assert unframe(port.readline()[1:-1]) == "EVT POWER 1 OFF"
        assert unframe(port.readline()[1:-1]) == "2 OK"
        port.write(Command(3, "FLY").encode() + Command(4, "POWER", ("1",)).encode())
        assert parse_board_line(unframe(port.readline()[1:-1])) == Answer(
            3, False, code="UNKNOWN", message="unknown command FLY"
        )
        assert parse_board_line(unframe(port.readline()[1:-1])).code == "BAD_ARG"  # type: ignore[union-attr]


# -- boards that go away or stop talking


def test_board_vanishing_is_gone_not_a_hang(board: SerialDockBoard, sim: SimDockBoard) -> None:
    assert board.hello().channels == CHANNELS
    sim.close()  # the dock's USB-serial adapter is unplugged: the port hangs up
    started = time.monotonic()
    with pytest.raises(DockBoardGone):
        board.status()
    with pytest.raises(DockBoardGone):
        board.set_power(1, False)  # and stays gone: reopen the port
    assert time.monotonic() - started < TIMEOUT


def test_board_vanishing_mid_command_is_gone(sim: SimDockBoard) -> None:
    sim.answer_delay_s = 0.3
    with SerialDockBoard(sim.slave_path, timeout=3) as board:
        timer = later(0.1, sim.close)
        started = time.monotonic()
        with pytest.raises(DockBoardGone, match="lost"):
            board.status()
        assert time.monotonic() - started < 1.5  # long before its 3 s timeout
        timer.join()


def test_mute_board_times_out_within_the_timeout(board: SerialDockBoard, sim: SimDockBoard) -> None:
    sim.mute = True
    started = time.monotonic()
    with pytest.raises(DockBoardTimeout, match="no answer"):
        board.status()
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.3
    sim.mute = False
    assert board.hello().channels == CHANNELS  # a timeout is not the end of the board


def test_late_answer_is_stale_not_garbage(board: SerialDockBoard, sim: SimDockBoard) -> None:
    sim.answer_delay_s = TIMEOUT + 0.2
    with pytest.raises(DockBoardTimeout):
        board.hello()
    sim.answer_delay_s = 0
    time.sleep(0.3)  # the late HELLO answer arrives and is dropped
    assert len(board.status()) == CHANNELS
    assert board.garbage_count == 0


def test_missing_port_is_gone(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(DockBoardGone, match="cannot open"):
        SerialDockBoard(f"{tmp_path}/ttyUSB9")


def test_close_is_prompt_and_final(sim: SimDockBoard) -> None:
    board = SerialDockBoard(sim.slave_path, timeout=TIMEOUT)
    board.hello()
    started = time.monotonic()
    board.close()
    board.close()
    assert time.monotonic() - started < 0.5
    with pytest.raises(DockBoardError, match="closed"):
        board.status()


@pytest.fixture
def raw_pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    tty.setraw(slave)
    os.close(slave)
    yield master, path
    with contextlib.suppress(OSError):
        os.close(master)


def test_answer_that_passes_its_checksum_but_makes_no_sense(raw_pty: tuple[int, str]) -> None:
    master, path = raw_pty
    with SerialDockBoard(path, timeout=TIMEOUT) as board:
        result: list[BaseException] = []

        def ask() -> None:
            try:
                board.status()
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=ask)
        thread.start()
        command = parse_command(unframe(os.read(master, 100)[1:-1]))
        os.write(master, Answer(command.seq, True, ("1:1:CHARGING:450:1", "3:0:IDLE:0:1")).encode())  # no ch 2
        thread.join(timeout=2)
        assert isinstance(result[0], DockBoardError) and "garbled" in str(result[0])
        assert board.garbage_count == 1


# -- the format itself


def test_frames_round_trip_and_checksum_matches_nmea() -> None:
    # NMEA's own example sentence, checksum included.
    assert unframe(b"GPGLL,5300.97914,N,00259.98174,E,125926,A*28") == "GPGLL,5300.97914,N,00259.98174,E,125926,A"
    assert frame("1 HELLO") == b"$1 HELLO*53\n"
    assert unframe(b"1 HELLO*53\r") == unframe(b"1 HELLO*53") == "1 HELLO"
    for event in (
        PresenceEvent(16, False),
        ChargeEvent(1, FULL, 0),
        FaultEvent(2, "OVERCURRENT"),
        PowerEvent(3, True),
        BootEvent(BoardInfo("DOCK-A7F3", "2.1.0-rc1", 8)),
    ):
        assert parse_board_line(unframe(encode_event(event)[1:-1])) == event
    statuses = [ChannelStatus(n, n % 2 == 0, CHARGING, 450, True) for n in range(1, 17)]
    answer = Answer(65535, True, tuple(s.to_wire() for s in statuses)).encode()
    assert len(answer) <= MAX_LINE
    parsed = parse_board_line(unframe(answer[1:-1]))
    assert isinstance(parsed, Answer) and parse_status(parsed.fields) == statuses
    assert Answer(1, False, code="FAILED", message="x*$y\nz").encode() == frame("1 ERR FAILED x??y?z")


@pytest.mark.parametrize(
    "body",
    [
        "EVT PRESENT 0 1",  # channels start at 1
        "EVT PRESENT 17 1",
        "EVT PRESENT 1 2",
        "EVT PRESENT 01 1",  # no leading zeros
        "EVT PRESENT 1 1 1",
        "EVT CHARGE 1 charging 450",  # keywords are upper case
        "EVT CHARGE 1 UNKNOWN 0",
        "EVT CHARGE 1 FULL -1",
        "EVT FAULT 1 overcurrent",
        "EVT POWER 1 1",
        "EVT BOOT 1 DOCK 1.0",
        "EVT",
        "0 OK",  # seq starts at 1
        "65536 OK",
        "1  OK",
        "1 ERR",
        "1 ERR bad",
        "OK",
    ],
)
def test_parse_board_line_rejects(body: str) -> None:
    with pytest.raises(ProtocolError):
        parse_board_line(body)


def test_status_must_list_every_channel_in_order() -> None:
    for fields in [(), ("2:0:IDLE:0:1",), ("1:0:IDLE:0:1", "1:0:IDLE:0:1"), ("1:0:IDLE:0",), ("1:0:IDLE:0:1:1",)]:
        with pytest.raises(ProtocolError):
            parse_status(fields)


def test_line_reader_survives_any_chunking() -> None:
    stream = b"junk" + frame("EVT PRESENT 1 1") + b"$EVT PR" + frame("1 OK") + b"\r\n" + frame("2 OK")[:-1] + b"\r\n"
    expected = [ProtocolError, "EVT PRESENT 1 1", ProtocolError, "1 OK", "2 OK"]
    for size in (1, 2, 3, 7, len(stream)):
        reader = LineReader()
        out = [item for i in range(0, len(stream), size) for item in reader.feed(stream[i : i + size])]
        assert [type(x) if isinstance(x, ProtocolError) else x for x in out] == expected


def test_line_reader_bounds_an_endless_line() -> None:
    reader = LineReader()
    out = [item for _ in range(100) for item in reader.feed(b"$" + b"9" * 1000)]
    assert len(out) == 100 and all(isinstance(x, ProtocolError) for x in out)  # every "$" starts another
    assert reader.feed(b"9" * 10**5) == []  # the tail of a line already counted: bounded, silent
    assert reader.feed(b"\n" + frame("1 OK")) == ["1 OK"]


def test_disabled_board_knows_nothing_and_switches_nothing() -> None:
    with DisabledDockBoard(3) as board:
        assert board.controls_power is False
        assert board.status() == [ChannelStatus(n, None, ChargeState.UNKNOWN, None, None) for n in (1, 2, 3)]
        assert board.hello().channels == 3
        board.on_event(lambda e: None)()
        assert board.garbage_count == 0
        with pytest.raises(DockBoardError, match="no dock board"):
            board.power_cycle(1, 1000)
        with pytest.raises(DockBoardError, match="no dock board"):
            board.set_power(1, True)
