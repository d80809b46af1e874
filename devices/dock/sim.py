"""A simulated dock controller board: the firmware side of docs/dock-board.md, served on a real pty.

Tests and the simulator change its channels (a camera docked, charge finished, a fault); it sends the
matching EVT lines the way the real board would, and answers the station's commands.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from devices.dock.protocol import (
    COMMANDS,
    CYCLE_MS,
    MAX_CHANNELS,
    Answer,
    BoardInfo,
    BootEvent,
    ChannelStatus,
    ChargeEvent,
    ChargeState,
    Command,
    DockEvent,
    FaultEvent,
    LineReader,
    PowerEvent,
    PresenceEvent,
    ProtocolError,
    encode_event,
    hello_fields,
    parse_command,
    parse_number,
    parse_switch,
    status_fields,
)

log = logging.getLogger(__name__)

_TICK_S = 0.02  # how late a power cycle may end
_T = TypeVar("_T")
_WRITE_TIMEOUT_S = 1.0  # a UART does not wait for its receiver: past this, the bytes are lost


@dataclass
class _Channel:
    present: bool = False
    power: bool = True  # the board's power-on default: cameras charge even before the station is up
    state: ChargeState = ChargeState.IDLE  # what the charger does while docked and powered
    current_ma: int = 0
    fault: str | None = None  # latched until power off or undock
    cycle_ends: float | None = None  # monotonic time a power cycle turns the power back on


class _Refuse(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SimDockBoard:
    """Serves the board protocol on a pseudo-terminal; the station opens ``slave_path`` as its serial port."""

    def __init__(
        self,
        channels: int = 8,
        *,
        board_id: str = "SIMDOCK-0001",
        firmware: str = "1.0.0",
        charge_ma: int = 450,
    ) -> None:
        if not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{MAX_CHANNELS}")
        self.info = BoardInfo(board_id=board_id, firmware=firmware, channels=channels)
        self.charge_ma = charge_ma
        self.mute = False  # a hung board: receives, never sends
        self.answer_delay_s = 0.0  # a slow board: events may overtake the answer
        self.commands: list[Command] = []  # every well-formed command received, for tests to inspect
        self.rx_garbage = 0  # lines from the station the board could not take
        self._channels = [_Channel() for _ in range(channels)]
        self._lock = threading.RLock()  # state and the transmit side: events go out in the order of changes
        self.master, slave = os.openpty()
        self.slave_path = os.ttyname(slave)
        tty.setraw(slave)  # bytes in, bytes out: no echo, no line editing
        os.close(slave)  # the station opens it by path, as it would /dev/ttyACMn or /dev/serial0
        os.set_blocking(self.master, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"dock-sim-{board_id}", daemon=True)
        self._thread.start()

    # -- the physical world, driven by tests and the simulator

    def set_present(self, channel: int, present: bool) -> None:
        """A camera docked in (or taken out of) the bay. Docking starts the charger."""

        def dock(c: _Channel) -> None:
            c.present, c.fault = present, None
            if present:
                self._start_charger(c)

        self._change(channel, dock)

    def set_charge(self, channel: int, state: ChargeState | str, ma: int | None = None) -> None:
        """What the charger is doing: charging (``charge_ma`` unless given), full or idle (0 mA unless given)."""
        state = ChargeState(state)
        if state not in (ChargeState.IDLE, ChargeState.CHARGING, ChargeState.FULL):
            raise ValueError("use set_fault() for a fault")
        current = ma if ma is not None else (self.charge_ma if state is ChargeState.CHARGING else 0)

        def charge(c: _Channel) -> None:
            c.state, c.current_ma = state, current

        self._change(channel, charge)

    def set_fault(self, channel: int, code: str = "OVERCURRENT") -> None:
        """The charger trips: latched until the bay's power is switched off or the camera is taken out."""

        def trip(c: _Channel) -> None:
            c.fault = code

        self._change(channel, trip)

    def inject_garbage(self, data: bytes) -> None:
        """Line noise: raw bytes on the wire, between whatever else the board is sending."""
        with self._lock:
            self._write(data)

    def reboot(self) -> None:
        """A brown-out or watchdog reset: every channel back to its power-on default, then EVT BOOT."""
        with self._lock:
            for c in self._channels:
                c.power, c.fault, c.cycle_ends = True, None, None
                if c.present:
                    self._start_charger(c)
            self._emit(BootEvent(self.info))

    def status(self) -> list[ChannelStatus]:
        """The board's own view: what STATUS answers."""
        with self._lock:
            return [self._view(n) for n in range(1, len(self._channels) + 1)]

    def channel(self, channel: int) -> ChannelStatus:
        with self._lock:
            return self._view(channel)

    # -- state and events

    def _start_charger(self, c: _Channel) -> None:
        # A charger that gets power (again) starts a charge; a full camera terminates it soon after.
        c.state, c.current_ma = ChargeState.CHARGING, self.charge_ma

    def _view(self, channel: int) -> ChannelStatus:
        c = self._channels[channel - 1]
        if not c.present or not c.power:
            state, current = ChargeState.IDLE, 0  # no camera or no power: nothing flows
        elif c.fault is not None:
            state, current = ChargeState.FAULT, 0
        else:
            state, current = c.state, c.current_ma
        return ChannelStatus(channel, c.present, state, current, c.power)

    def _change(self, channel: int, change: Callable[[_Channel], None]) -> None:
        if not 1 <= channel <= len(self._channels):
            raise ValueError(f"channel {channel} outside 1..{len(self._channels)}")
        with self._lock:
            c = self._channels[channel - 1]
            before, fault_before = self._view(channel), c.fault
            change(c)
            after = self._view(channel)
            # One event per thing that changed, in the order the station would want to act on them.
            if after.present != before.present:
                self._emit(PresenceEvent(channel, bool(after.present)))
            if after.usb_power != before.usb_power:
                self._emit(PowerEvent(channel, bool(after.usb_power)))
            if c.fault is not None and c.fault != fault_before:
                self._emit(FaultEvent(channel, c.fault))
            if (after.charge_state, after.current_ma) != (before.charge_state, before.current_ma):
                self._emit(ChargeEvent(channel, after.charge_state, int(after.current_ma or 0)))

    def _set_power(self, channel: int, on: bool) -> None:
        def switch(c: _Channel) -> None:
            if on and not c.power:
                self._start_charger(c)
            if not on:
                c.fault = None  # switching off is how a latched fault is cleared
            c.power = on

        self._change(channel, switch)

    def _emit(self, event: DockEvent) -> None:
        self._write(encode_event(event))

    def _write(self, data: bytes) -> None:
        if self.mute or self._stop.is_set():  # a board being unplugged sends nothing more
            return
        deadline = time.monotonic() + _WRITE_TIMEOUT_S
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [self.master], [], left)[1]:
                    log.info("dock sim: nobody reading, %d bytes lost", len(view))
                    return
            except OSError:
                return  # the pty is closed

    # -- the firmware loop

    def _serve(self) -> None:
        lines = LineReader()
        while not self._stop.is_set():
            self._end_cycles()
            try:
                ready, _, _ = select.select([self.master], [], [], _TICK_S)
                if not ready:
                    continue
                chunk = os.read(self.master, 4096)
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                # EIO while no one holds the slave open: wait for the station to open it.
                if self._stop.wait(0.05):
                    return
                continue
            for item in lines.feed(chunk):
                if isinstance(item, ProtocolError):
                    self.rx_garbage += 1
                    log.info("dock sim: bad line from the station: %s", item)
                else:
                    self._receive(item)

    def _end_cycles(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [n for n, c in enumerate(self._channels, 1) if c.cycle_ends is not None and c.cycle_ends <= now]
            for n in due:
                self._channels[n - 1].cycle_ends = None
                self._set_power(n, True)

    def _receive(self, body: str) -> None:
        try:
            command = parse_command(body)
        except ProtocolError as exc:
            self.rx_garbage += 1  # no seq to answer to: the station times out, as with a lost line
            log.info("dock sim: bad command: %s", exc)
            return
        self.commands.append(command)
        if self.answer_delay_s:
            time.sleep(self.answer_delay_s)
        with self._lock:  # the events a command causes go out before its answer
            try:
                answer = Answer(command.seq, True, self._execute(command))
            except _Refuse as exc:
                answer = Answer(command.seq, False, code=exc.code, message=str(exc))
            self._write(answer.encode())

    def _execute(self, command: Command) -> tuple[str, ...]:
        match command.word, command.args:
            case "HELLO", ():
                return hello_fields(self.info)
            case "STATUS", ():
                return status_fields(self.status())
            case "POWER", (channel, switch):
                n, on = self._channel_arg(channel), _arg(parse_switch, switch)
                self._channels[n - 1].cycle_ends = None  # an explicit switch overrides a cycle under way
                self._set_power(n, on)
                return ()
            case "CYCLE", (channel, ms):
                n = self._channel_arg(channel)
                duration = _arg(lambda t: parse_number(t, *CYCLE_MS, "duration"), ms)
                if self._channels[n - 1].cycle_ends is not None:
                    raise _Refuse("BUSY", f"channel {n} is already power cycling")
                self._set_power(n, False)
                self._channels[n - 1].cycle_ends = time.monotonic() + duration / 1000
                return ()
            case word, _ if word in COMMANDS:
                raise _Refuse("BAD_ARG", f"wrong arguments for {word}")
        raise _Refuse("UNKNOWN", f"unknown command {command.word}")

    def _channel_arg(self, token: str) -> int:
        n = _arg(lambda t: parse_number(t, 1, MAX_CHANNELS, "channel"), token)
        if n > len(self._channels):
            raise _Refuse("CHANNEL", f"no channel {n} on this board")
        return n

    def close(self) -> None:
        """The board goes away: the station's open port sees a hang-up, as when the dock is unplugged."""
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            os.close(self.master)


def _arg(parse: Callable[[str], _T], token: str) -> _T:
    try:
        return parse(token)
    except ProtocolError as exc:
        raise _Refuse("BAD_ARG", str(exc)) from exc
