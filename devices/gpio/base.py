"""The bay indicator interface: one RGB LED, one latch solenoid and one presence switch per bay, one buzzer.

LED colour table (the same on every back end, so officers learn one meaning per colour):

==============  ====================  =====================================================
state           LED                   meaning
==============  ====================  =====================================================
``ready``       green, steady         camera charged and offloaded: take it
``take``        green, blinking 2 Hz  checked out at the kiosk: take the camera from THIS bay
``charging``    amber, steady         camera docked, charging (offload finished or pending)
``offloading``  blue, blinking 1 Hz   recordings being copied: do not take the camera
``fault``       red, blinking 2 Hz    something needs staff: see the dashboard
``checked_out`` dim white, steady     bay empty because its camera is out on duty
``off``         dark                  bay unused, or the station is not running
==============  ====================  =====================================================

``checked_out`` is lit rather than dark so that an empty bay whose camera is on duty looks different from a
dead station or an unassigned bay. On LEDs without PWM every lit channel is driven fully on, so amber shows
as red+green (yellow) and dim white as full white.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

log = logging.getLogger(__name__)

Rgb = tuple[float, float, float]


class GpioError(Exception):
    """Base class for indicator and latch errors."""


class PinConfigError(GpioError, ValueError):
    """The pin assignment is unusable (a pin used twice, or not a header GPIO)."""


class UnknownBay(GpioError, ValueError):
    """The bay number has no pins configured."""


class LatchBusy(GpioError):
    """A latch pulse is already running on this bay; overlapping pulses are refused."""


class LedState(StrEnum):
    READY = "ready"
    TAKE = "take"
    CHARGING = "charging"
    OFFLOADING = "offloading"
    FAULT = "fault"
    CHECKED_OUT = "checked_out"
    OFF = "off"


@dataclass(frozen=True)
class LedLook:
    """What the LED shows: a colour (each channel 0..1) and, if it blinks, (on seconds, off seconds)."""

    colour: Rgb
    blink: tuple[float, float] | None = None


LED_TABLE: Mapping[LedState, LedLook] = MappingProxyType(
    {
        LedState.READY: LedLook((0.0, 1.0, 0.0)),
        LedState.TAKE: LedLook((0.0, 1.0, 0.0), blink=(0.25, 0.25)),
        LedState.CHARGING: LedLook((1.0, 0.5, 0.0)),
        LedState.OFFLOADING: LedLook((0.0, 0.0, 1.0), blink=(0.5, 0.5)),
        LedState.FAULT: LedLook((1.0, 0.0, 0.0), blink=(0.25, 0.25)),
        LedState.CHECKED_OUT: LedLook((0.3, 0.3, 0.3)),
        LedState.OFF: LedLook((0.0, 0.0, 0.0)),
    }
)


class BuzzPattern(StrEnum):
    ACK = "ack"  # a badge was accepted, a latch opened
    ERROR = "error"  # a badge was refused, an action failed
    ALERT = "alert"  # staff attention needed (fault, camera left behind)


@dataclass(frozen=True)
class Beeps:
    on_s: float
    off_s: float
    count: int


BUZZ_TABLE: Mapping[BuzzPattern, Beeps] = MappingProxyType(
    {
        BuzzPattern.ACK: Beeps(0.08, 0.0, 1),
        BuzzPattern.ERROR: Beeps(0.1, 0.1, 3),
        BuzzPattern.ALERT: Beeps(0.6, 0.3, 3),
    }
)

MAX_LATCH_S = 5.0  # latch solenoids are rated for short pulses; longer ones cook the coil


class BayIndicators(abc.ABC):
    """LEDs, latches, presence switches and the buzzer of a station.

    The latch pulse logic lives here so every back end shares it: the solenoid is switched on, a timer switches
    it off, a second pulse on the same bay while one runs is refused, and ``close()`` de-energises any latch
    still on. Methods are thread-safe.
    """

    def __init__(self, bays: Iterable[int] | None) -> None:
        self._bays = None if bays is None else frozenset(bays)  # None: any bay (the null object)
        self._lock = threading.Lock()
        self._pulses: dict[int, object] = {}  # bay -> token of the running pulse
        self._timers: dict[int, threading.Timer] = {}
        self._led_states: dict[int, LedState] = {}
        self._closed = False

    @property
    def bays(self) -> frozenset[int] | None:
        return self._bays

    def _check_bay(self, bay: int) -> None:
        if self._bays is not None and bay not in self._bays:
            raise UnknownBay(f"bay {bay} has no indicator pins (configured: {sorted(self._bays)})")

    def _check_open(self) -> None:
        if self._closed:
            raise GpioError("bay indicators are closed")

    # -- LEDs
    def set_led(self, bay: int, state: LedState | str) -> None:
        """Show ``state`` on the bay's LED (see the module docstring for the colour table)."""
        self._check_bay(bay)
        state = LedState(state)
        with self._lock:
            self._check_open()
            self._show(bay, LED_TABLE[state])
            self._led_states[bay] = state

    def led_state(self, bay: int) -> LedState:
        """The state last shown on the bay's LED (``off`` until set)."""
        self._check_bay(bay)
        return self._led_states.get(bay, LedState.OFF)

    # -- latches
    def release_latch(self, bay: int, seconds: float = 0.5) -> None:
        """Energise the bay's latch solenoid for ``seconds``, then switch it off from a timer.

        Raises LatchBusy if a pulse is already running on the bay.
        """
        self._check_bay(bay)
        if not 0 < seconds <= MAX_LATCH_S:
            raise ValueError(f"latch pulse must be more than 0 and at most {MAX_LATCH_S:g} s, not {seconds!r}")
        with self._lock:
            self._check_open()
            if bay in self._pulses:
                raise LatchBusy(f"bay {bay}: latch pulse already running")
            token = object()
            timer = threading.Timer(seconds, self._end_pulse, args=(bay, token))
            timer.daemon = True
            try:
                self._latch(bay, True)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._latch(bay, False)  # a half-done switch-on must not stay on
                raise
            self._pulses[bay] = token
            self._timers[bay] = timer
            timer.start()

    def latch_busy(self, bay: int) -> bool:
        self._check_bay(bay)
        with self._lock:
            return bay in self._pulses

    def _end_pulse(self, bay: int, token: object) -> None:
        with self._lock:
            if self._pulses.get(bay) is not token:
                return  # close() already switched it off
            try:
                self._latch(bay, False)
            except Exception:
                log.exception("bay %d: could not switch the latch off", bay)
            finally:
                del self._pulses[bay]
                del self._timers[bay]

    # -- buzzer and presence
    def buzz(self, pattern: BuzzPattern | str) -> None:
        """Sound ``pattern`` on the station buzzer, in the background."""
        pattern = BuzzPattern(pattern)
        with self._lock:
            self._check_open()
            self._beep(BUZZ_TABLE[pattern])

    @abc.abstractmethod
    def presence(self, bay: int) -> bool | None:
        """True if the bay's presence switch sees a camera, False if not, None if the bay has no switch."""

    def close(self) -> None:
        """Switch off every latch still energised, then release the hardware. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for bay, timer in list(self._timers.items()):
                timer.cancel()
                try:
                    self._latch(bay, False)
                except Exception:
                    log.exception("bay %d: could not switch the latch off on close", bay)
            self._pulses.clear()
            self._timers.clear()
        self._release()

    def __enter__(self) -> BayIndicators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what a back end implements (called with the lock held, except _release)
    @abc.abstractmethod
    def _show(self, bay: int, look: LedLook) -> None: ...

    @abc.abstractmethod
    def _latch(self, bay: int, energised: bool) -> None: ...

    @abc.abstractmethod
    def _beep(self, beeps: Beeps) -> None: ...

    @abc.abstractmethod
    def _release(self) -> None: ...
