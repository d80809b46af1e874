"""The dock board interface the station uses: bay presence, charging, and bay USB power."""

from __future__ import annotations

import abc
from collections.abc import Callable

from devices.dock.protocol import BoardInfo, ChannelStatus, ChargeState, DockEvent

EventCallback = Callable[[DockEvent], None]


class DockBoardError(Exception):
    """The board did not do what was asked; the message says what and why."""


class DockBoardGone(DockBoardError):
    """The board's serial port vanished or failed (unplugged, reset, USB hub power loss). Reopen it."""


class DockBoardTimeout(DockBoardError):
    """No answer within the timeout. The port is still there: a command lost to line noise, or a hung board."""


class DockBoard(abc.ABC):
    """One dock's controller board. Blocking: call from a worker thread, never the event loop.

    Events are hints for a prompt reaction; ``status()`` is the truth. A line lost to noise loses its
    event, so the station re-reads ``status()`` when ``garbage_count`` moves and on a BootEvent.
    """

    #: Whether set_power()/power_cycle() can do anything at all.
    controls_power: bool = True

    @abc.abstractmethod
    def hello(self) -> BoardInfo: ...

    @abc.abstractmethod
    def status(self) -> list[ChannelStatus]:
        """Every channel, 1..n."""

    @abc.abstractmethod
    def set_power(self, channel: int, on: bool) -> None: ...

    @abc.abstractmethod
    def power_cycle(self, channel: int, ms: int) -> None:
        """Cut the bay's USB power for ``ms`` milliseconds. Returns once it is off; a PowerEvent says when
        it is back on."""

    @abc.abstractmethod
    def on_event(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` with every event from the board, in order, on a thread of the board's own (so it
        may call the board back). Returns a function that unregisters it."""

    @property
    @abc.abstractmethod
    def garbage_count(self) -> int:
        """Lines from the board that were not protocol (noise, bad checksum, unknown words) since opening."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> DockBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DisabledDockBoard(DockBoard):
    """No dock board: a station whose docks only have USB. Every bay's state is unknown (``None``), so the
    station falls back on USB hot-plug alone; switching power is refused rather than silently skipped, since
    a caller waiting for a power-cycled camera to come back would otherwise wait for nothing."""

    controls_power = False

    def __init__(self, channels: int) -> None:
        self._channels = channels

    def hello(self) -> BoardInfo:
        return BoardInfo(board_id="disabled", firmware="-", channels=self._channels)

    def status(self) -> list[ChannelStatus]:
        return [
            ChannelStatus(channel=n, present=None, charge_state=ChargeState.UNKNOWN, current_ma=None, usb_power=None)
            for n in range(1, self._channels + 1)
        ]

    def set_power(self, channel: int, on: bool) -> None:
        raise DockBoardError("no dock board: bay USB power cannot be switched")

    def power_cycle(self, channel: int, ms: int) -> None:
        raise DockBoardError("no dock board: bay USB power cannot be switched")

    def on_event(self, callback: EventCallback) -> Callable[[], None]:
        return lambda: None  # there will never be any

    @property
    def garbage_count(self) -> int:
        return 0

    def close(self) -> None:
        pass
