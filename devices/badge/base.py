"""The badge reader interface: card numbers from an RFID reader, normalised, delivered to a callback or a queue."""

from __future__ import annotations

import abc
import logging
import queue
import re
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# A 10-byte ISO 14443 UID is 20 hex digits, the longest UID a badge here can carry.
MAX_CARD_LENGTH = 20
_CARD = re.compile(r"[0-9A-Z]+")
# STX/ETX: some EM4100 serial modules frame each number with them instead of (or as well as) a line end.
_FRAMING = " \t\r\n\x02\x03"

CardCallback = Callable[[str], None]


class BadCardLine(ValueError):
    """A line from a reader that is not a card number."""


def normalise_card(raw: str | bytes, max_length: int = MAX_CARD_LENGTH) -> str:
    """Strip whitespace and STX/ETX framing, uppercase; refuse empty, over-long or non-alphanumeric lines.

    Only ASCII letters and digits pass: str.isalnum() would also let full-width or other Unicode digits through.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BadCardLine("not ASCII") from exc
    card = raw.strip(_FRAMING).upper()
    if not card:
        raise BadCardLine("empty")
    if len(card) > max_length:
        raise BadCardLine(f"{len(card)} characters, more than {max_length}")
    if not _CARD.fullmatch(card):
        raise BadCardLine("not letters and digits only")
    return card


class BadgeReader(abc.ABC):
    """Delivers each card number read to ``on_card`` (called on the reader's own thread, so it must be quick,
    e.g. ``loop.call_soon_threadsafe``) or, without a callback, to the ``cards`` queue."""

    def __init__(self, on_card: CardCallback | None = None, *, max_length: int = MAX_CARD_LENGTH) -> None:
        self._on_card = on_card
        self._max_length = max_length
        self.cards: queue.Queue[str] = queue.Queue()
        self.connected = threading.Event()  # set while the device is open
        self._stop = threading.Event()

    def get(self, timeout: float | None = None) -> str | None:
        """The next card from the queue, or None after ``timeout`` seconds (queue mode only)."""
        try:
            return self.cards.get(timeout=timeout)
        except queue.Empty:
            return None

    def _deliver(self, raw: str | bytes) -> None:
        try:
            card = normalise_card(raw, self._max_length)
        except BadCardLine as exc:
            shown = raw if len(raw) <= 40 else raw[:40] + (b"..." if isinstance(raw, bytes) else "...")
            log.warning("%s: ignoring line %r: %s", self.name, shown, exc)
            return
        if self._on_card is None:
            self.cards.put(card)
            return
        try:
            self._on_card(card)
        except Exception:
            log.exception("%s: card callback failed", self.name)  # keep reading: the next swipe may work

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """What the reader is, for log messages."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop reading and release the device. Idempotent."""

    def __enter__(self) -> BadgeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backoff:
    """Reconnect delays: doubling from ``first`` up to ``limit``, back to ``first`` after a success."""

    def __init__(self, first: float = 0.2, limit: float = 5.0) -> None:
        self.first = first
        self.limit = limit
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.limit)
        return delay

    def reset(self) -> None:
        self._next = self.first
