"""Serial RFID readers that send one card number per line (USB CDC-ACM or USB-serial), read with pyserial."""

from __future__ import annotations

import contextlib
import logging
import re
import threading

import serial

from devices.badge.base import MAX_CARD_LENGTH, Backoff, BadgeReader, CardCallback

log = logging.getLogger(__name__)

MAX_LINE = 256  # bytes without a line end before the reader's output is treated as noise
_LINE_END = re.compile(rb"[\r\n]")


class SerialBadgeReader(BadgeReader):
    """Reads lines from ``url`` (a device path or any pyserial URL) on a background thread.

    Readers end lines with CR, LF or CRLF; all three are accepted. If the port disappears (the reader is
    unplugged, its /dev/serial/by-id link goes away) the thread reopens it with backoff until ``close()``.
    Open by a stable path such as /dev/serial/by-id/..., since ttyACMn numbers change on replug.
    """

    def __init__(
        self,
        url: str,
        on_card: CardCallback | None = None,
        *,
        baudrate: int = 9600,
        max_length: int = MAX_CARD_LENGTH,
        backoff: Backoff | None = None,
        poll_s: float = 0.2,
    ) -> None:
        super().__init__(on_card, max_length=max_length)
        self.url = url
        self._baudrate = baudrate
        self._backoff = backoff or Backoff()
        self._poll_s = poll_s  # read timeout: how quickly close() is noticed
        self.connections = 0  # successful opens so far; more than one means it reconnected
        self._thread = threading.Thread(target=self._run, name=f"badge-{url}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return f"badge reader {self.url}"

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.url, baudrate=self._baudrate, timeout=self._poll_s, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                # Warn once per outage, not on every retry, or an unplugged reader floods the journal.
                (log.debug if failing else log.warning)("%s: cannot open: %s; retrying", self.name, exc)
                failing = True
                self._stop.wait(self._backoff.next())
                continue
            failing = False
            self._backoff.reset()
            try:
                # Swipes queued while nobody listened are stale: they must not act now.
                port.reset_input_buffer()
                self.connections += 1
                self.connected.set()
                log.info("%s: open", self.name)
                self._read_lines(port)
            except (serial.SerialException, OSError) as exc:
                log.warning("%s: lost: %s; reconnecting", self.name, exc)
                failing = True
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    port.close()

    def _read_lines(self, port: serial.SerialBase) -> None:
        buffer = b""
        discarding = False  # inside an over-long line: drop everything up to its end
        while not self._stop.is_set():
            chunk = port.read(max(1, port.in_waiting))
            if not chunk:
                continue  # read timeout: look at the stop flag
            buffer += chunk
            *lines, buffer = _LINE_END.split(buffer)
            for line in lines:
                if discarding:
                    discarding = False
                elif line:  # CRLF leaves an empty piece between CR and LF: framing, not a line
                    self._deliver(line)
            if len(buffer) > MAX_LINE:
                log.warning("%s: %d bytes without a line end; discarding", self.name, len(buffer))
                buffer = b""
                discarding = True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
