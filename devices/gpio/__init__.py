"""Bay indicators on the Pi's GPIO header: RGB LEDs, latch solenoids, presence switches and a buzzer.

Back ends: ``gpiozero_backend.GpioBayIndicators`` (real pins, or gpiozero's MockFactory in tests) and
``disabled.DisabledBayIndicators`` (a null object). Import the back end you need from its module.
"""

from devices.gpio.base import (
    BUZZ_TABLE,
    LED_TABLE,
    MAX_LATCH_S,
    BayIndicators,
    BuzzPattern,
    GpioError,
    LatchBusy,
    LedLook,
    LedState,
    PinConfigError,
    UnknownBay,
)

__all__ = [
    "BUZZ_TABLE",
    "LED_TABLE",
    "MAX_LATCH_S",
    "BayIndicators",
    "BuzzPattern",
    "GpioError",
    "LatchBusy",
    "LedLook",
    "LedState",
    "PinConfigError",
    "UnknownBay",
]
