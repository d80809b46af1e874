"""Keyboard-wedge RFID readers (they type the card number and Enter), read from a Linux evdev device.

The reader's input device (/dev/input/by-id/...-event-kbd) delivers ``struct input_event`` records. On 64-bit
Linux that is 24 bytes: struct timeval (two 64-bit fields), u16 type, u16 code, s32 value. The kernel sizes
the time fields as the reader process's C ``long``, so a 32-bit Raspberry Pi OS gets 16-byte events: the
native ``l`` format below gives whichever the running Python needs. Only key presses
(EV_KEY, value 1) of 0-9, A-F and Enter count; Shift is ignored since numbers are uppercased anyway. Any other
key poisons the line so it is rejected as a whole, rather than delivered with a character silently missing.

By default the device is grabbed (EVIOCGRAB) so the typed numbers do not also land in the kiosk's browser.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import stat
import struct
import threading
from pathlib import Path

from devices.badge.base import MAX_CARD_LENGTH, Backoff, BadgeReader, CardCallback

log = logging.getLogger(__name__)

INPUT_EVENT = struct.Struct("@llHHi")  # tv_sec, tv_usec, type, code, value: 24 bytes on 64-bit, no padding
EV_SYN = 0x00
EV_KEY = 0x01
KEY_PRESS = 1  # 0 is release, 2 autorepeat
EVIOCGRAB = 0x40044590  # _IOW('E', 0x90, int)

# From linux/input-event-codes.h.
KEY_ENTER = 28
KEY_KPENTER = 96
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_CHARS: dict[int, str] = {
    2: "1",
    3: "2",
    4: "3",
    5: "4",
    6: "5",
    7: "6",
    8: "7",
    9: "8",
    10: "9",
    11: "0",
    30: "A",
    48: "B",
    46: "C",
    32: "D",
    18: "E",
    33: "F",
}
CHAR_KEYS: dict[str, int] = {char: code for code, char in KEY_CHARS.items()}
_IGNORED_KEYS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
_UNKNOWN = "?"  # stands in for an unexpected key, so the line fails normalisation
_MAX_PENDING = 64


def encode_event(type_: int, code: int, value: int, when: float = 0.0) -> bytes:
    """One packed input_event (for tests and simulators)."""
    seconds = int(when)
    return INPUT_EVENT.pack(seconds, round((when - seconds) * 1_000_000), type_, code, value)


def encode_typing(text: str, when: float = 0.0, gap_s: float = 0.005, enter: bool = True) -> bytes:
    """The events a wedge reader sends for ``text`` (+ Enter): press, release and SYN per key."""
    out = bytearray()
    for char in [*text.upper(), "\n"] if enter else text.upper():
        code = KEY_ENTER if char == "\n" else CHAR_KEYS[char]
        for value in (KEY_PRESS, 0):
            out += encode_event(EV_KEY, code, value, when)
            out += encode_event(EV_SYN, 0, 0, when)
        when += gap_s
    return bytes(out)


class KeyboardWedgeReader(BadgeReader):
    """Reads key events from ``path`` on a background thread and delivers each line typed before Enter.

    A pause longer than ``line_timeout_s`` between keys (by the events' own timestamps) drops the partial line:
    a reader types a whole number in well under a second, so a leftover fragment must not prefix the next card.
    When the device goes away (unplugged) it is reopened with backoff. End of file (a regular file or a FIFO
    whose writer closed; an evdev device never ends) finishes the reader and sets ``finished``.
    """

    def __init__(
        self,
        path: str | Path,
        on_card: CardCallback | None = None,
        *,
        grab: bool = True,
        max_length: int = MAX_CARD_LENGTH,
        line_timeout_s: float = 1.0,
        backoff: Backoff | None = None,
        poll_s: float = 0.2,
    ) -> None:
        super().__init__(on_card, max_length=max_length)
        self.path = Path(path)
        self._grab = grab
        self._line_timeout_s = line_timeout_s
        self._backoff = backoff or Backoff()
        self._poll_s = poll_s
        self._chars: list[str] = []
        self._last_key: float | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"wedge-{self.path.name}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return f"keyboard-wedge reader {self.path}"

    def _run(self) -> None:
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    # Non-blocking: opening a FIFO would otherwise wait for a writer, deaf to close().
                    fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                except OSError as exc:
                    (log.debug if failing else log.warning)("%s: cannot open: %s; retrying", self.name, exc)
                    failing = True
                    self._stop.wait(self._backoff.next())
                    continue
                failing = False
                self._backoff.reset()
                try:
                    self._maybe_grab(fd)
                    self.connected.set()
                    if self._read_events(fd):
                        log.info("%s: end of input", self.name)
                        return
                except OSError as exc:
                    log.warning("%s: lost: %s; reopening", self.name, exc)
                    failing = True
                finally:
                    self.connected.clear()
                    os.close(fd)
                    self._chars.clear()
        finally:
            self.finished.set()

    def _maybe_grab(self, fd: int) -> None:
        if not self._grab or not stat.S_ISCHR(os.fstat(fd).st_mode):
            return
        try:
            fcntl.ioctl(fd, EVIOCGRAB, 1)
        except OSError as exc:
            log.warning("%s: cannot grab the device (%s): its keystrokes also reach other programs", self.name, exc)

    def _read_events(self, fd: int) -> bool:
        """Read until stopped (False) or end of input (True); OSError when the device goes away."""
        buffer = b""
        size = INPUT_EVENT.size
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], self._poll_s)
            if not ready:
                continue
            try:
                chunk = os.read(fd, size * 64)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                raise
            if not chunk:
                return True
            buffer += chunk
            whole = len(buffer) - len(buffer) % size  # a pipe may split an event across reads
            for sec, usec, type_, code, value in INPUT_EVENT.iter_unpack(buffer[:whole]):
                self._on_event(sec + usec / 1_000_000, type_, code, value)
            buffer = buffer[whole:]
        return False

    def _on_event(self, when: float, type_: int, code: int, value: int) -> None:
        if type_ != EV_KEY or value != KEY_PRESS or code in _IGNORED_KEYS:
            return
        if self._chars and self._last_key is not None and when - self._last_key > self._line_timeout_s:
            log.warning("%s: dropping a partial line after a %.1f s pause", self.name, when - self._last_key)
            self._chars.clear()
        self._last_key = when
        if code in (KEY_ENTER, KEY_KPENTER):
            line, self._chars = "".join(self._chars), []
            self._deliver(line)
        elif len(self._chars) < _MAX_PENDING:  # a stuck key or a real keyboard must not grow this forever
            self._chars.append(KEY_CHARS.get(code, _UNKNOWN))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
