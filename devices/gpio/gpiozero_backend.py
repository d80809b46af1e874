"""Bay indicators on real GPIO pins through gpiozero (lgpio on the Pi; MockFactory in tests)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

from gpiozero import RGBLED, Buzzer, Device, DigitalInputDevice, OutputDevice
from gpiozero.pins import Factory

from devices.gpio.base import BayIndicators, Beeps, LedLook, PinConfigError, Rgb

log = logging.getLogger(__name__)

# BCM 0 and 1 are the HAT ID EEPROM's I2C bus (reserved by the firmware); 28 and up are not on the header.
USABLE_BCM = range(2, 28)


@dataclass(frozen=True)
class BayPins:
    """BCM pin numbers of one bay. ``presence`` is None for a bay without a presence switch."""

    red: int
    green: int
    blue: int
    latch: int
    presence: int | None = None


def validate_pins(pins: Mapping[int, BayPins], buzzer: int | None = None) -> None:
    """Raise PinConfigError listing every pin outside BCM 2..27 and every pin used twice (naming both uses)."""
    problems: list[str] = []
    owner: dict[int, str] = {}

    def claim(pin: object, use: str) -> None:
        if not isinstance(pin, int) or isinstance(pin, bool) or pin not in USABLE_BCM:
            problems.append(f"{use}: {pin!r} is not a usable BCM GPIO number (2..27)")
        elif pin in owner:
            problems.append(f"GPIO{pin} is used twice: by {owner[pin]} and by {use}")
        else:
            owner[pin] = use

    for bay in sorted(pins):
        if not isinstance(bay, int) or isinstance(bay, bool) or bay < 1:
            problems.append(f"bay number {bay!r} must be a positive integer")
            continue
        for field in fields(BayPins):
            pin = getattr(pins[bay], field.name)
            if pin is not None or field.name != "presence":
                claim(pin, f"bay {bay} {field.name}")
    if buzzer is not None:
        claim(buzzer, "the station buzzer")
    if problems:
        raise PinConfigError("bad GPIO pin assignment: " + "; ".join(problems))


class GpioBayIndicators(BayIndicators):
    """One gpiozero RGBLED, latch OutputDevice and optional presence DigitalInputDevice per bay, one Buzzer.

    ``pwm=False`` drives each LED channel fully on or off (for LEDs on pins without PWM). Presence switches are
    wired to ground with the Pi's pull-up by default (``presence_active_low``), so a seated camera reads low.
    ``pin_factory=None`` uses gpiozero's default factory (lgpio on a Pi).
    """

    def __init__(
        self,
        pins: Mapping[int, BayPins],
        pin_factory: Factory | None = None,
        *,
        buzzer: int | None = None,
        pwm: bool = True,
        latch_active_high: bool = True,
        presence_active_low: bool = True,
    ) -> None:
        validate_pins(pins, buzzer)  # before reserving anything, so a bad config leaves no pin claimed
        super().__init__(pins.keys())
        self._pwm = pwm
        self._latches: dict[int, OutputDevice] = {}
        self._leds: dict[int, RGBLED] = {}
        self._presence: dict[int, DigitalInputDevice] = {}
        self._buzzer: Buzzer | None = None
        try:
            for bay, bay_pins in sorted(pins.items()):
                # Latches first: on a warm restart the solenoid pin may still be driven from before.
                self._latches[bay] = OutputDevice(
                    bay_pins.latch, active_high=latch_active_high, initial_value=False, pin_factory=pin_factory
                )
            for bay, bay_pins in sorted(pins.items()):
                self._leds[bay] = RGBLED(bay_pins.red, bay_pins.green, bay_pins.blue, pwm=pwm, pin_factory=pin_factory)
                if bay_pins.presence is not None:
                    self._presence[bay] = DigitalInputDevice(
                        bay_pins.presence, pull_up=presence_active_low, pin_factory=pin_factory
                    )
            if buzzer is not None:
                self._buzzer = Buzzer(buzzer, pin_factory=pin_factory)
        except BaseException:
            self._release()
            raise

    def presence(self, bay: int) -> bool | None:
        self._check_bay(bay)
        switch = self._presence.get(bay)
        return None if switch is None else bool(switch.is_active)

    def _show(self, bay: int, look: LedLook) -> None:
        colour = look.colour if self._pwm else _full_on(look.colour)
        led = self._leds[bay]
        if look.blink is None:
            led.value = colour  # also stops a running blink
        else:
            on_s, off_s = look.blink
            led.blink(on_time=on_s, off_time=off_s, on_color=colour, off_color=(0, 0, 0))

    def _latch(self, bay: int, energised: bool) -> None:
        latch = self._latches[bay]
        if energised:
            latch.on()
        else:
            latch.off()

    def _beep(self, beeps: Beeps) -> None:
        if self._buzzer is None:
            log.debug("no buzzer configured")
            return
        self._buzzer.beep(on_time=beeps.on_s, off_time=beeps.off_s, n=beeps.count, background=True)

    def _release(self) -> None:
        devices: list[Device] = [*self._latches.values(), *self._leds.values(), *self._presence.values()]
        if self._buzzer is not None:
            devices.append(self._buzzer)
        for latch in self._latches.values():
            with contextlib.suppress(Exception):
                latch.off()  # explicitly, before the pin goes back to an input
        for device in devices:
            with contextlib.suppress(Exception):  # release the rest even if one pin misbehaves
                device.close()
        self._latches.clear()
        self._leds.clear()
        self._presence.clear()
        self._buzzer = None


def _full_on(colour: Rgb) -> Rgb:
    r, g, b = (1.0 if channel > 0 else 0.0 for channel in colour)
    return (r, g, b)
