"""The dock controller board over its serial line, with pyserial. The simulator answers on a pty.

A reader thread owns the receive side: it sorts answers (handed to the one command in flight) from events
(queued for a dispatcher thread that runs the callbacks) and counts everything else as garbage.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

import serial

from devices.dock.base import DockBoard, DockBoardError, DockBoardGone, DockBoardTimeout, EventCallback
from devices.dock.protocol import (
    CYCLE_MS,
    MAX_CHANNELS,
    MAX_SEQ,
    Answer,
    BoardInfo,
    BootEvent,
    ChannelStatus,
    Command,
    DockEvent,
    LineReader,
    ProtocolError,
    parse_board_line,
    parse_hello,
    parse_status,
)

log = logging.getLogger(__name__)

_POLL_S = 0.1  # how long the reader blocks in one read: bounds how long close() waits for it
_STOP = object()
_T = TypeVar("_T")


class _Pending:
    """The command in flight: the reader thread fills in its answer, or leaves it None if the port died."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.done = threading.Event()
        self.answer: Answer | None = None


class SerialDockBoard(DockBoard):
    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self._url = url
        self._timeout = timeout
        self._seq = 0  # the last one sent; 1..MAX_SEQ, then round again
        self._call_lock = threading.Lock()  # one command in flight per board
        self._lock = threading.Lock()  # guards the fields below, shared with the reader thread
        self._pending: _Pending | None = None
        self._gone: str | None = None  # why the port is unusable, once it is
        self._closed = False
        self._garbage = 0
        self._listeners: tuple[EventCallback, ...] = ()
        self._events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.info: BoardInfo | None = None  # from the last hello() or BootEvent
        try:
            self._port = serial.serial_for_url(url, baudrate=115200, timeout=_POLL_S, exclusive=True)
        except (serial.SerialException, OSError) as exc:
            raise DockBoardGone(f"cannot open dock board port {url}: {exc}") from exc
        self._port.reset_input_buffer()  # whatever the board said before we listened is stale
        self._reader = threading.Thread(target=self._read_loop, name=f"dock-rx-{url}", daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name=f"dock-evt-{url}", daemon=True)
        self._reader.start()
        self._dispatcher.start()

    # -- commands

    def hello(self) -> BoardInfo:
        answer = self._call("HELLO")
        info = self._parse("HELLO", answer, parse_hello)
        self.info = info
        return info

    def status(self) -> list[ChannelStatus]:
        channels = self._parse("STATUS", self._call("STATUS"), parse_status)
        if self.info is not None and len(channels) != self.info.channels:
            self._count_garbage()
            raise DockBoardError(f"STATUS: {len(channels)} channels, the board said it has {self.info.channels}")
        return channels

    def set_power(self, channel: int, on: bool) -> None:
        self._call("POWER", _channel_arg(channel), "ON" if on else "OFF")

    def power_cycle(self, channel: int, ms: int) -> None:
        low, high = CYCLE_MS
        if not low <= ms <= high:
            raise ValueError(f"power cycle of {ms} ms outside {low}..{high}")
        self._call("CYCLE", _channel_arg(channel), str(ms))

    def _call(self, word: str, *args: str) -> Answer:
        with self._call_lock:
            with self._lock:
                if self._closed:
                    raise DockBoardError(f"{word}: dock board client is closed")
                if self._gone is not None:
                    raise DockBoardGone(f"{word}: {self._gone}")
                self._seq = self._seq % MAX_SEQ + 1
                pending = self._pending = _Pending(self._seq)
            try:
                try:
                    self._port.write(Command(pending.seq, word, args).encode())
                except (serial.SerialException, OSError) as exc:
                    self._set_gone(f"dock board port {self._url} lost: {exc}")
                    raise DockBoardGone(f"{word}: dock board port lost: {exc}") from exc
                if not pending.done.wait(self._timeout):
                    # Its answer may still come: the reader drops it as stale (wrong seq) when it does.
                    raise DockBoardTimeout(f"{word}: no answer from the dock board within {self._timeout:g} s")
            finally:
                with self._lock:
                    self._pending = None
        answer = pending.answer
        if answer is None:
            raise DockBoardGone(f"{word}: {self._gone}")
        if not answer.ok:
            detail = f": {answer.message}" if answer.message else ""
            raise DockBoardError(f"{word}: board answered {answer.code}{detail}")
        return answer

    def _parse(self, word: str, answer: Answer, parse: Callable[[tuple[str, ...]], _T]) -> _T:
        try:
            return parse(answer.fields)
        except ProtocolError as exc:
            # It passed its checksum but makes no sense: count it with the rest of the noise.
            self._count_garbage()
            raise DockBoardError(f"{word}: garbled answer: {exc}") from exc

    # -- events

    def on_event(self, callback: EventCallback) -> Callable[[], None]:
        with self._lock:
            self._listeners = (*self._listeners, callback)

        def unregister() -> None:
            with self._lock:
                self._listeners = tuple(cb for cb in self._listeners if cb is not callback)

        return unregister

    def _dispatch_loop(self) -> None:
        while (event := self._events.get()) is not _STOP:
            for callback in self._listeners:
                try:
                    callback(event)  # type: ignore[arg-type]
                except Exception:
                    log.exception("dock board event callback failed on %s", event)

    # -- the receive side

    @property
    def garbage_count(self) -> int:
        return self._garbage

    def _count_garbage(self) -> None:
        with self._lock:
            self._garbage += 1

    def _read_loop(self) -> None:
        lines = LineReader()
        try:
            while not self._closed:
                chunk = self._port.read(max(1, self._port.in_waiting))
                for item in lines.feed(chunk):
                    self._take(item)
        except (serial.SerialException, OSError, TypeError) as exc:
            # TypeError: pyserial's read on a port closed under it. Either way the line is dead.
            if not self._closed:
                self._set_gone(f"dock board port {self._url} lost: {exc}")
        except Exception as exc:
            # A bug here must not leave every later command waiting out its timeout on a dead reader.
            log.exception("dock board %s: reader failed", self._url)
            self._set_gone(f"dock board {self._url} reader failed: {exc!r}")

    def _take(self, item: str | ProtocolError) -> None:
        try:
            message = parse_board_line(item) if isinstance(item, str) else item
        except ProtocolError as exc:
            message = exc
        if isinstance(message, ProtocolError):
            self._count_garbage()
            log.debug("dock board %s: garbage line: %s", self._url, message)
            return
        if isinstance(message, Answer):
            with self._lock:
                pending = self._pending
                if pending is not None and pending.seq == message.seq and not pending.done.is_set():
                    pending.answer = message
                    pending.done.set()
                    return
            log.debug("dock board %s: dropping stale answer %d", self._url, message.seq)  # after a timeout
            return
        self._on_board_event(message)

    def _on_board_event(self, event: DockEvent) -> None:
        if isinstance(event, BootEvent):
            log.warning("dock board %s restarted (firmware %s)", self._url, event.info.firmware)
            self.info = event.info
        self._events.put(event)

    def _set_gone(self, why: str) -> None:
        with self._lock:
            if self._gone is None:
                self._gone = why
                log.warning("%s", why)
            if self._pending is not None:
                self._pending.done.set()  # with no answer: the caller raises DockBoardGone

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._port.cancel_read()
        self._reader.join(timeout=2)
        self._events.put(_STOP)
        if threading.current_thread() is not self._dispatcher:  # close() from a callback must not self-join
            self._dispatcher.join(timeout=2)
        self._port.close()


def _channel_arg(channel: int) -> str:
    if not 1 <= channel <= MAX_CHANNELS:
        raise ValueError(f"channel {channel} outside 1..{MAX_CHANNELS}")
    return str(channel)
