"""Bay indicators on gpiozero's MockFactory: LED colours per state, latch pulses, presence, pin validation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from devices.gpio import LED_TABLE, LatchBusy, LedState, PinConfigError, UnknownBay
from devices.gpio.disabled import DisabledBayIndicators
from devices.gpio.gpiozero_backend import BayPins, GpioBayIndicators

PINS = {
    1: BayPins(red=5, green=6, blue=13, latch=17, presence=22),
    2: BayPins(red=19, green=26, blue=21, latch=27, presence=None),
}
BUZZER = 18


def wait_until(predicate: Callable[[], bool], timeout: float = 5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def make_factory(monkeypatch: pytest.MonkeyPatch, pin_class: type[MockPin]) -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=pin_class)
    # gpiozero keeps the default factory at class level (gpiozero issue #1087): point it at this mock so a
    # device built without pin_factory never probes real hardware, and restore it afterwards.
    monkeypatch.setattr(Device, "pin_factory", factory)
    yield factory
    factory.reset()


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockFactory]:
    yield from make_factory(monkeypatch, MockPWMPin)


@pytest.fixture
def plain_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockFactory]:
    yield from make_factory(monkeypatch, MockPin)


@pytest.fixture
def indicators(factory: MockFactory) -> Iterator[GpioBayIndicators]:
    ind = GpioBayIndicators(PINS, pin_factory=factory, buzzer=BUZZER)
    yield ind
    ind.close()


def rgb(factory: MockFactory, bay: int) -> tuple[float, float, float]:
    p = PINS[bay]
    return (factory.pin(p.red).state, factory.pin(p.green).state, factory.pin(p.blue).state)


@pytest.mark.parametrize("state", [LedState.READY, LedState.CHARGING, LedState.CHECKED_OUT, LedState.OFF])
def test_steady_colours(factory: MockFactory, indicators: GpioBayIndicators, state: LedState) -> None:
    indicators.set_led(1, LedState.FAULT)  # a blink running before must stop
    indicators.set_led(1, state)
    assert rgb(factory, 1) == pytest.approx(LED_TABLE[state].colour)
    assert indicators.led_state(1) is state
    assert rgb(factory, 2) == (0, 0, 0)  # the other bay is untouched


def test_colour_table() -> None:
    assert LED_TABLE[LedState.READY].colour == (0, 1, 0)
    r, g, b = LED_TABLE[LedState.CHARGING].colour
    assert r > g > b == 0  # amber
    assert LED_TABLE[LedState.OFFLOADING].blink and LED_TABLE[LedState.OFFLOADING].colour == (0, 0, 1)
    assert LED_TABLE[LedState.FAULT].blink and LED_TABLE[LedState.FAULT].colour == (1, 0, 0)
    assert set(LED_TABLE) == set(LedState)


@pytest.mark.parametrize(("state", "channel"), [(LedState.OFFLOADING, "blue"), (LedState.FAULT, "red")])
def test_blinking_states(factory: MockFactory, indicators: GpioBayIndicators, state: LedState, channel: str) -> None:
    pins = {"red": factory.pin(PINS[1].red), "green": factory.pin(PINS[1].green), "blue": factory.pin(PINS[1].blue)}
    for pin in pins.values():
        pin.clear_states()
    indicators.set_led(1, state)
    lit = pins[channel]
    wait_until(lambda: lit.state == 1, what=f"{channel} on")
    wait_until(lambda: lit.state == 0, what=f"{channel} off")
    wait_until(lambda: lit.state == 1, what=f"{channel} on again")
    for name, pin in pins.items():
        if name != channel:
            assert all(s.state == 0 for s in pin.states), name
    indicators.set_led(1, "ready")
    assert rgb(factory, 1) == (0, 1, 0)


def test_without_pwm_channels_are_fully_on(plain_factory: MockFactory) -> None:
    with GpioBayIndicators(PINS, pin_factory=plain_factory, pwm=False) as ind:
        ind.set_led(2, "charging")
        assert rgb(plain_factory, 2) == (True, True, False)  # amber shows as red+green
        ind.set_led(2, "checked_out")
        assert rgb(plain_factory, 2) == (True, True, True)
        ind.set_led(2, "off")
        assert rgb(plain_factory, 2) == (False, False, False)


def test_unknown_state_and_bay(indicators: GpioBayIndicators) -> None:
    with pytest.raises(ValueError):
        indicators.set_led(1, "purple")
    with pytest.raises(UnknownBay, match="bay 9"):
        indicators.set_led(9, "ready")
    with pytest.raises(ValueError):
        indicators.buzz("fanfare")


def test_latch_pulse_switches_off_by_itself(factory: MockFactory, indicators: GpioBayIndicators) -> None:
    latch = factory.pin(PINS[1].latch)
    assert latch.state == 0
    indicators.release_latch(1, 0.05)
    assert latch.state == 1  # switched on before release_latch returns
    assert indicators.latch_busy(1)
    wait_until(lambda: latch.state == 0, what="latch off")
    wait_until(lambda: not indicators.latch_busy(1), what="pulse finished")
    assert [s.state for s in latch.states][-2:] == [1, 0]
    indicators.release_latch(1, 0.05)  # a new pulse is allowed once the last one ended
    wait_until(lambda: not indicators.latch_busy(1), what="second pulse finished")
    assert latch.state == 0


def test_overlapping_pulse_refused(factory: MockFactory, indicators: GpioBayIndicators) -> None:
    indicators.release_latch(1, 2.0)
    with pytest.raises(LatchBusy):
        indicators.release_latch(1, 0.05)
    indicators.release_latch(2, 0.05)  # other bays are independent
    wait_until(lambda: factory.pin(PINS[2].latch).state == 0, what="bay 2 latch off")
    assert factory.pin(PINS[1].latch).state == 1


def test_close_switches_a_running_latch_off(factory: MockFactory) -> None:
    ind = GpioBayIndicators(PINS, pin_factory=factory)
    ind.release_latch(1, 5.0)
    assert factory.pin(PINS[1].latch).state == 1
    ind.close()
    assert factory.pin(PINS[1].latch).state == 0
    ind.close()  # idempotent


@pytest.mark.parametrize("seconds", [0, -1, 60])
def test_latch_pulse_length_bounded(indicators: GpioBayIndicators, seconds: float) -> None:
    with pytest.raises(ValueError):
        indicators.release_latch(1, seconds)


def test_presence_switch(factory: MockFactory, indicators: GpioBayIndicators) -> None:
    switch = factory.pin(PINS[1].presence)
    assert indicators.presence(1) is False  # pulled up, switch open: no camera
    switch.drive_low()  # the camera closes the switch to ground
    assert indicators.presence(1) is True
    switch.drive_high()
    assert indicators.presence(1) is False
    assert indicators.presence(2) is None  # no switch fitted


def test_buzzer(factory: MockFactory, indicators: GpioBayIndicators) -> None:
    buzzer = factory.pin(BUZZER)
    buzzer.clear_states()
    indicators.buzz("error")
    wait_until(lambda: sum(1 for s in buzzer.states if s.state) == 3 and buzzer.state == 0, what="three beeps")


def test_duplicate_pin_names_both_uses(factory: MockFactory) -> None:
    pins = {1: PINS[1], 2: BayPins(red=19, green=26, blue=21, latch=6)}
    with pytest.raises(PinConfigError) as caught:
        GpioBayIndicators(pins, pin_factory=factory)
    assert "GPIO6 is used twice: by bay 1 green and by bay 2 latch" in str(caught.value)
    with pytest.raises(PinConfigError, match="bay 1 latch and by the station buzzer"):
        GpioBayIndicators(PINS, pin_factory=factory, buzzer=17)
    # Nothing was reserved by the failed attempts: the same pins can be used now.
    GpioBayIndicators(PINS, pin_factory=factory).close()


@pytest.mark.parametrize("pin", [0, 1, 28, 40, -3])
def test_pin_outside_header_range(factory: MockFactory, pin: int) -> None:
    with pytest.raises(PinConfigError, match=rf"bay 2 blue: {pin} is not a usable BCM GPIO number \(2\.\.27\)"):
        GpioBayIndicators({**PINS, 2: BayPins(red=19, green=26, blue=pin, latch=27)}, pin_factory=factory)


def test_disabled_backend_is_a_null_object() -> None:
    with DisabledBayIndicators() as ind:
        ind.set_led(3, "fault")
        assert ind.led_state(3) is LedState.FAULT
        ind.release_latch(3, 1.0)
        ind.release_latch(3, 1.0)  # nothing to overlap with
        ind.buzz("ack")
        assert ind.presence(3) is None
        with pytest.raises(ValueError):
            ind.set_led(3, "purple")
