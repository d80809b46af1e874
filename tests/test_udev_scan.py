"""The sysfs scanner against a checked-in Raspberry Pi 4 sysfs (tests/fakes/sys-pi4, made by
tests/fakes/make_sys_pi4.py): three cameras behind the on-board hub, found by USB port path, one of them
with a hub of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devices.hotplug.base import DockedDevice, UsbIds
from devices.hotplug.udev import bay_port_of, scan_sysfs, usb_port_of

PI4 = Path(__file__).resolve().parent / "fakes" / "sys-pi4"
XHCI = "sys/devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0"
CAM1 = ("1-1.2", "1-1.2:1.0")
BAYS = ("1-1.2", "1-1.3", "1-1.4")
CAM1_LINKS = ("bus/usb/devices/1-1.2", "bus/usb/devices/1-1.2:1.0", "class/block/sda", "class/block/sda1", "block/sda")


def expected(prefix: Path) -> dict[str, DockedDevice]:
    """What a station with bays on 1-1.2, 1-1.3 and 1-1.4 sees."""
    return {
        "1-1.2": DockedDevice("1-1.2", UsbIds(0x2E8A, 0x0C01, "CAMT001"), prefix / "dev" / "sda1", None),
        "1-1.3": DockedDevice(
            "1-1.3", UsbIds(0x0483, 0x5740, "ZFYA8000213"), prefix / "dev" / "sdb", str(prefix / "dev" / "ttyACM0")
        ),
        "1-1.4": DockedDevice(
            "1-1.4", UsbIds(0x46F4, 0x0001, "HUBCAM01"), prefix / "dev" / "sdc1", str(prefix / "dev" / "ttyUSB0")
        ),
    }


def use_tree(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    monkeypatch.setenv("RECTERM_OS_PREFIX", str(root))
    return root


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "sys-pi4"
    shutil.copytree(PI4, copy, symlinks=True)
    return copy


def test_checked_in_tree_is_intact() -> None:
    """Git kept the links as links (relative ones, so the tree works wherever the repo is cloned)."""
    link = PI4 / "sys" / "class" / "tty" / "ttyACM0" / "device"
    assert (PI4 / "sys" / "class" / "block" / "sda").is_symlink()
    assert link.is_symlink() and str(link.readlink()) == "../../../1-1.3:1.2"
    links = [p for p in PI4.rglob("*") if p.is_symlink()]
    assert links and all(not p.readlink().is_absolute() for p in links)
    assert all(p.exists() for p in links), "dangling link in the fake tree"


def test_scan_finds_exactly_the_three_cameras(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = use_tree(monkeypatch, PI4)
    # Not the root hubs usb1/usb2, not the hubs 1-1/2-1/1-1.4, not the SD card, loop0 or ttyAMA0.
    assert scan_sysfs(BAYS) == expected(prefix)


def test_a_camera_with_its_own_hub_is_one_camera_only_in_its_bay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside any bay the hub's two functions stay two devices on their own ports (the station raises
    'unmapped port' for each); a bay on the hub's port makes them one camera with storage and control."""
    prefix = use_tree(monkeypatch, PI4)
    loose = scan_sysfs(("1-1.2", "1-1.3"))
    assert loose["1-1.4.1"] == DockedDevice(
        "1-1.4.1", UsbIds(0x46F4, 0x0001, "HUBCAM01"), prefix / "dev" / "sdc1", None
    )
    assert loose["1-1.4.2"] == DockedDevice(
        "1-1.4.2", UsbIds(0x0403, 0x6001, "HUBCAM01"), None, str(prefix / "dev" / "ttyUSB0")
    )
    assert "1-1.4" not in loose
    assert scan_sysfs(BAYS)["1-1.4"] == expected(prefix)["1-1.4"]


def test_bay_port_of_takes_the_nearest_bay_above() -> None:
    assert bay_port_of("1-1.4.2", BAYS) == "1-1.4"
    assert bay_port_of("1-1.4", BAYS) == "1-1.4"
    assert bay_port_of("1-1.40", BAYS) == "1-1.40"  # a prefix of the text is not a port above
    assert bay_port_of("1-1.3.1.2", ("1-1", "1-1.3")) == "1-1.3"
    assert bay_port_of("2-1", BAYS) == "2-1"


def test_usb_port_of_resolves_through_the_class_links(monkeypatch: pytest.MonkeyPatch) -> None:
    sys = use_tree(monkeypatch, PI4) / "sys"
    assert usb_port_of(sys / "class" / "block" / "sda") == "1-1.2"
    assert usb_port_of(sys / "class" / "block" / "sda1") == "1-1.2"
    assert usb_port_of(sys / "class" / "block" / "sdb") == "1-1.3"
    assert usb_port_of(sys / "class" / "tty" / "ttyACM0" / "device") == "1-1.3"
    assert usb_port_of(sys / "bus" / "usb" / "devices" / "1-1.3:1.2") == "1-1.3"
    assert usb_port_of(sys / "bus" / "usb" / "devices" / "1-1") == "1-1"
    assert usb_port_of(sys / "bus" / "usb" / "devices" / "usb1") is None  # a root hub has no port
    assert usb_port_of(sys / "class" / "block" / "mmcblk0") is None
    assert usb_port_of(sys / "class" / "tty" / "ttyAMA0" / "device") is None


def test_port_path_is_looked_for_inside_sysfs_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout under a folder named like a port path (``2024-06``) must not make the SD card a USB device."""
    root = tmp_path / "2024-06" / "sys-pi4"
    shutil.copytree(PI4, root, symlinks=True)
    sys = use_tree(monkeypatch, root) / "sys"
    assert usb_port_of(sys / "class" / "block" / "mmcblk0") is None
    assert usb_port_of(sys / "class" / "block" / "loop0") is None
    assert usb_port_of(sys / "class" / "block" / "sdb") == "1-1.3"
    assert scan_sysfs(BAYS) == expected(root)


def test_undocked_camera_disappears(tree_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = use_tree(monkeypatch, tree_copy)
    assert set(scan_sysfs(BAYS)) == {"1-1.2", "1-1.3", "1-1.4"}
    # The kernel removes the device directory and every link to it.
    shutil.rmtree(tree_copy / XHCI / "usb1" / "1-1" / "1-1.2")
    for rel in CAM1_LINKS:
        (tree_copy / "sys" / rel).unlink()
    assert scan_sysfs(BAYS) == {k: v for k, v in expected(prefix).items() if k != "1-1.2"}


def test_camera_half_gone_mid_unplug_is_not_reported(tree_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan racing the removal sees the class links dangling: the camera is dropped, the scan goes on."""
    prefix = use_tree(monkeypatch, tree_copy)
    shutil.rmtree(tree_copy / XHCI / "usb1" / "1-1" / "1-1.2")
    assert scan_sysfs(BAYS) == {k: v for k, v in expected(prefix).items() if k != "1-1.2"}


def test_control_port_alone_is_enough(tree_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Camera 2 before it exposes its storage (only the CDC-ACM port is up) is still docked."""
    prefix = use_tree(monkeypatch, tree_copy)
    (tree_copy / "sys" / "class" / "block" / "sdb").unlink()
    assert scan_sysfs(BAYS)["1-1.3"] == DockedDevice(
        "1-1.3", UsbIds(0x0483, 0x5740, "ZFYA8000213"), None, str(prefix / "dev" / "ttyACM0")
    )


def test_no_sysfs_means_nothing_docked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_tree(monkeypatch, tmp_path)
    assert scan_sysfs(BAYS) == {}


def test_a_disk_whose_capacity_is_not_read_yet_is_not_storage_yet(
    tree_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel adds the disk node before it knows its size (found under QEMU: the station probed a 0-byte
    /dev/sda and called it blank). Until the size is there, the camera is docked with its control port only."""
    prefix = use_tree(monkeypatch, tree_copy)
    size = tree_copy / "sys" / "class" / "block" / "sdb" / "size"
    size.write_text("0\n")
    assert scan_sysfs(BAYS)["1-1.3"].block_device is None
    size.write_text("262144\n")
    assert scan_sysfs(BAYS)["1-1.3"] == expected(prefix)["1-1.3"]


def test_a_device_is_the_stations_only_once_udev_is_done_with_it(
    tree_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With udev running, a node counts only once udev's database has it: before that it is still root:disk
    (found under QEMU: the station probed /dev/sda too early, blkid could not open it)."""
    prefix = use_tree(monkeypatch, tree_copy)
    data = tree_copy / "run" / "udev" / "data"
    data.mkdir(parents=True)
    (tree_copy / "run" / "udev" / "control").touch()
    assert scan_sysfs(BAYS) == {}  # nothing udev has finished with yet
    sdb = (tree_copy / "sys" / "class" / "block" / "sdb" / "dev").read_text().strip()
    (data / f"b{sdb}").touch()
    assert scan_sysfs(BAYS)["1-1.3"].block_device == prefix / "dev" / "sdb"
    assert scan_sysfs(BAYS)["1-1.3"].control_port is None
    acm = (tree_copy / "sys" / "class" / "tty" / "ttyACM0" / "dev").read_text().strip()
    (data / f"c{acm}").touch()
    assert scan_sysfs(BAYS)["1-1.3"] == expected(prefix)["1-1.3"]
    # A partitioned disk: it is the partition udev must be done with.
    assert "1-1.2" not in scan_sysfs(BAYS)
    sda1 = (tree_copy / "sys" / "class" / "block" / "sda1" / "dev").read_text().strip()
    (data / f"b{sda1}").touch()
    assert scan_sysfs(BAYS)["1-1.2"] == expected(prefix)["1-1.2"]
