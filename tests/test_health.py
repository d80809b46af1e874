"""Health checks: throttled flags from a fake sysfs, kernel-log USB errors, silent cameras, bays not charging."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from appliance.health import HealthResult, HealthStatus
from appliance.health.charge_current import ChargeCurrentCheck, ChargeReading, zero_current_for
from appliance.health.throttling import (
    SYSFS_PARTS,
    Throttled,
    check_throttling,
    parse_throttled,
    read_throttled,
    throttling_result,
)
from appliance.health.unresponsive import UnresponsiveCameras
from appliance.health.usb_errors import bay_for_port, check_usb_errors, count_usb_errors, port_path_of


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def assert_json(result: HealthResult) -> None:
    json.dumps(result.as_dict(), sort_keys=True)  # string keys only, plain values


# -- throttling


@pytest.fixture
def sysfs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECTERM_OS_PREFIX", str(tmp_path))
    return tmp_path


def write_throttled(root: Path, text: str) -> None:
    path = root.joinpath("sys", *SYSFS_PARTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("text", "status", "now", "since_boot"),
    [
        ("0\n", HealthStatus.OK, [], []),
        (
            "50005\n",
            HealthStatus.FAIL,
            ["under_voltage", "throttled"],
            ["under_voltage_occurred", "throttled_occurred"],
        ),
        ("50000\n", HealthStatus.WARN, [], ["under_voltage_occurred", "throttled_occurred"]),
        ("8\n", HealthStatus.WARN, ["soft_temp_limit"], []),
        (
            "a000a\n",
            HealthStatus.WARN,
            ["arm_freq_capped", "soft_temp_limit"],
            ["arm_freq_capped_occurred", "soft_temp_limit_occurred"],
        ),
    ],
)
def test_throttled_from_fake_sysfs(
    sysfs_root: Path, text: str, status: HealthStatus, now: list[str], since_boot: list[str]
) -> None:
    write_throttled(sysfs_root, text)
    result = check_throttling(vcgencmd=None)
    assert result.check == "throttling"
    assert result.status is status
    assert result.details["now"] == now
    assert result.details["since_boot"] == since_boot
    assert_json(result)


def test_throttled_under_voltage_message(sysfs_root: Path) -> None:
    write_throttled(sysfs_root, "1\n")
    result = check_throttling(vcgencmd=None)
    assert result.status is HealthStatus.FAIL
    assert "under-voltage" in result.message


def test_throttled_unknown_bits_reported_not_judged() -> None:
    result = throttling_result(0x100)
    assert result.status is HealthStatus.OK
    assert result.details["unknown_bits"] == "0x100"


def test_parse_vcgencmd_output() -> None:
    assert parse_throttled("throttled=0x50005\n") == 0x50005
    assert parse_throttled("throttled=0x0") == 0
    assert parse_throttled("e0008") == 0xE0008
    assert Throttled(parse_throttled("throttled=0x50005")) == (
        Throttled.UNDER_VOLTAGE | Throttled.THROTTLED | Throttled.UNDER_VOLTAGE_OCCURRED | Throttled.THROTTLED_OCCURRED
    )
    with pytest.raises(ValueError):
        parse_throttled('error=1 error_msg="Command not registered"')


def test_throttled_falls_back_to_vcgencmd(sysfs_root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "vcgencmd"
    fake.write_text('#!/bin/sh\n[ "$1" = get_throttled ] && echo "throttled=0x20002"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert read_throttled(str(fake)) == 0x20002  # no sysfs file under the prefix
    result = check_throttling(str(fake))
    assert result.status is HealthStatus.WARN
    assert result.details["now"] == ["arm_freq_capped"]


def test_throttled_unavailable(sysfs_root: Path) -> None:
    assert read_throttled(vcgencmd=None) is None
    assert read_throttled(vcgencmd=os.fspath(sysfs_root / "no-such-vcgencmd")) is None
    assert check_throttling(vcgencmd=None).status is HealthStatus.WARN


# -- USB enumeration errors

BAYS = {"1-1.1": 1, "1-1.2": 2, "1-1.3": 3, "1-1.4": 4}

KERNEL_LOG = """\
[   12.201334] usb 1-1.2: new high-speed USB device number 4 using dwc_otg
[   12.332111] usb 1-1.2: New USB device found, idVendor=0483, idProduct=5740, bcdDevice= 2.00
Mar 03 10:12:01 recterm kernel: usb 1-1.3: new full-speed USB device number 16 using dwc2
Mar 03 10:12:01 recterm kernel: usb 1-1.3: device descriptor read/64, error -71
Mar 03 10:12:02 recterm kernel: usb 1-1.3: device descriptor read/64, error -71
Mar 03 10:12:02 recterm kernel: usb 1-1.3: device not accepting address 17, error -71
Mar 03 10:12:03 recterm kernel: usb 1-1.3: device not accepting address 18, error -71
Mar 03 10:12:03 recterm kernel: usb 1-1-port3: unable to enumerate USB device
3,1843,98765432,-;usb 1-1.3: device descriptor read/64, error -110
3,1844,98766001,-;usb 1-1-port3: unable to enumerate USB device
 SUBSYSTEM=usb
 DEVICE=c189:3
[  301.442001] usb 1-1.4: device descriptor read/64, error -32
[  301.901555] usb 1-1.4: new high-speed USB device number 9 using dwc_otg
[  402.000001] usb 1-1.3.1: device descriptor read/8, error -71
[  450.100000] usb usb1-port2: Cannot enable. Maybe the USB cable is bad?
[  450.200000] usb usb1-port2: unable to enumerate USB device
[  460.000000] usb 1-1.2: USB disconnect, device number 4
[  470.000000] hub 1-1:1.0: USB hub found
"""


def test_port_names() -> None:
    assert port_path_of("1-1.3") == "1-1.3"
    assert port_path_of("1-1-port3") == "1-1.3"
    assert port_path_of("usb1-port2") == "1-2"
    assert port_path_of("2-1.4-port1") == "2-1.4.1"
    assert bay_for_port("1-1.3", BAYS) == 3
    assert bay_for_port("1-1.3.1", BAYS) == 3  # behind the camera's own hub
    assert bay_for_port("1-2", BAYS) is None
    assert bay_for_port("1-1", BAYS) is None


def test_count_usb_errors_per_port() -> None:
    counts = count_usb_errors(KERNEL_LOG.splitlines())
    assert set(counts) == {"1-1.3", "1-1.4", "1-1.3.1", "1-2"}
    assert (counts["1-1.3"].errors, counts["1-1.3"].failures) == (7, 2)
    assert counts["1-1.3"].last == "unable to enumerate USB device"
    assert (counts["1-1.4"].errors, counts["1-1.4"].failures) == (1, 0)
    assert (counts["1-2"].errors, counts["1-2"].failures) == (2, 1)


def test_usb_errors_fail_a_bay_that_gives_up_repeatedly() -> None:
    result = check_usb_errors(KERNEL_LOG.splitlines(), BAYS)
    assert result.status is HealthStatus.FAIL
    assert "[3]" in result.message
    assert result.details["bays"]["3"] == {"errors": 8, "failures": 2, "last": "device descriptor read/8, error -71"}
    assert result.details["bays"]["4"]["errors"] == 1
    assert result.details["unmapped_ports"]["1-2"]["failures"] == 1
    assert_json(result)


def test_usb_errors_warn_and_ok() -> None:
    one_bad_dock = [
        "kernel: usb 1-1.1: device descriptor read/64, error -71",
        "kernel: usb 1-1.1: device descriptor read/64, error -71",
        "kernel: usb 1-1.1: device not accepting address 7, error -71",
        "kernel: usb 1-1-port1: unable to enumerate USB device",
    ]
    result = check_usb_errors(one_bad_dock, BAYS)
    assert result.status is HealthStatus.WARN
    assert "bays [1]" in result.message
    single_glitch = ["[ 5.0] usb 1-1.2: device descriptor read/64, error -71"]
    assert check_usb_errors(single_glitch, BAYS).status is HealthStatus.OK
    stranger = ["[ 5.0] usb usb1-port2: unable to enumerate USB device"]
    assert "no bay" in check_usb_errors(stranger, BAYS).message
    assert check_usb_errors([], BAYS).status is HealthStatus.OK


# -- unresponsive cameras


def test_unresponsive_camera() -> None:
    clock = FakeClock()
    cams = UnresponsiveCameras(warn_after_s=30, fail_after_s=120, clock=clock)
    assert cams.check().status is HealthStatus.OK
    cams.docked(1)
    cams.docked(2)
    clock.advance(20)
    cams.answered(1)
    assert cams.silent_for(1) == 0
    assert cams.silent_for(2) == 20
    assert cams.silent_for(3) is None
    clock.advance(15)  # bay 2 silent 35 s since docking, bay 1 15 s since its last answer
    result = cams.check()
    assert result.status is HealthStatus.WARN
    assert "[2]" in result.message
    assert result.details["silent_s"] == {"1": 15.0, "2": 35.0}
    clock.advance(90)  # 105 s and 125 s
    result = cams.check()
    assert result.status is HealthStatus.FAIL
    assert "[2]" in result.message
    clock.advance(20)
    assert "[1, 2]" in cams.check().message
    cams.undocked(1)
    cams.answered(2)
    assert cams.check().status is HealthStatus.OK
    assert_json(result)


def test_unresponsive_without_fail_threshold() -> None:
    clock = FakeClock()
    cams = UnresponsiveCameras(warn_after_s=10, clock=clock)
    cams.docked(4)
    clock.advance(10_000)
    assert cams.check().status is HealthStatus.WARN


# -- charge current


def readings(*rows: tuple[float, bool, str | int, float]) -> list[ChargeReading]:
    return [ChargeReading(*row) for row in rows]


def test_zero_current_for() -> None:
    stalled = readings((0, True, "charging", 0), (30, True, "charging", 2.0), (90, True, "charging", 0))
    assert zero_current_for(stalled) == 90
    recovered = readings((0, True, "charging", 0), (30, True, "charging", 450), (90, True, "charging", 0))
    assert zero_current_for(recovered) == 0  # the run restarts at 90 s: nothing elapsed yet
    full = readings((0, True, "full", 0), (600, True, "full", 0))
    assert zero_current_for(full) == 0
    empty_bay = readings((0, False, "charging", 0), (600, False, "charging", 0))
    assert zero_current_for(empty_bay) == 0
    by_percent = readings((0, True, 64, 0), (200, True, 64, 0))
    assert zero_current_for(by_percent) == 200
    assert zero_current_for(readings((0, True, 100, 0), (200, True, 100, 0))) == 0
    assert zero_current_for(readings((0, True, 96, 0), (200, True, 96, 0)), full_pct=95) == 0
    assert zero_current_for([]) == 0


def test_charge_current_check() -> None:
    check = ChargeCurrentCheck(warn_after_s=120, fail_after_s=600)
    t = 5000.0
    check.observe(1, ChargeReading(t, True, "charging", 480))
    check.observe(2, ChargeReading(t, True, "charging", 0))  # docked, charger not delivering
    check.observe(3, ChargeReading(t, True, "full", 0))  # full: zero is right
    check.observe(4, ChargeReading(t, False, "charging", 0))  # empty bay
    assert check.check().status is HealthStatus.OK
    for step in range(1, 14):  # 10 s readings, bay 2 stuck at sensor noise
        now = t + 10 * step
        check.observe(1, ChargeReading(now, True, "charging", 470))
        check.observe(2, ChargeReading(now, True, "charging", 3.0))
    assert check.stalled_for(2) == 130
    result = check.check()
    assert result.status is HealthStatus.WARN
    assert "[2]" in result.message
    assert result.details["stalled_s"] == {"2": 130.0}
    assert_json(result)
    check.observe_all(2, readings((t + 700, True, "charging", 0)))
    assert check.check().status is HealthStatus.FAIL
    check.observe(2, ChargeReading(t + 710, False, "charging", 0))  # camera taken out
    assert check.check().status is HealthStatus.OK
    assert check.stalled_for(2) == 0
