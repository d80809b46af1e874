"""Regenerate tests/fakes/sys-pi4/: the sysfs of a Raspberry Pi 4 with two cameras docked behind its hub.

The tree is checked in; tests read it and never run this script. Run it only to change the tree:

    .venv/bin/python tests/fakes/make_sys_pi4.py

What it mirrors (paths as a Pi 4 with its VL805 xHCI on PCIe shows them):

- root hubs ``usb1`` (USB 2) and ``usb2`` (USB 3), the on-board VL805 hub ``1-1`` and its USB 3 half ``2-1``:
  no storage, no control port, so never reported;
- camera 1 at ``1-1.2``: USB mass storage only, disk ``sda`` with one partition ``sda1``;
- camera 2 at ``1-1.3``: composite, a superfloppy ``sdb`` (filesystem on the whole disk, no partition
  table) on interface 0, a vendor interface 1, CDC-ACM ``ttyACM0`` on interfaces 2/3;
- the SD card ``mmcblk0`` (two partitions), ``loop0``, the PL011 UART ``ttyAMA0`` and virtual ttys, none
  of which hang under a USB port;
- camera 3 at ``1-1.4``: a camera with a hub of its own (as QEMU's usb-hub + usb-storage + usb-serial
  make one, image/image_test.py): storage ``sdc`` on ``1-1.4.1``, an FTDI serial ``ttyUSB0`` on ``1-1.4.2``,
  both with the camera's serial; the hub has none.

Every link is relative, as in the real sysfs, so the tree works wherever the repository is cloned.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "sys-pi4"
SYS = ROOT / "sys"

XHCI = "devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0"
USB1 = f"{XHCI}/usb1"
USB2 = f"{XHCI}/usb2"
HUB = f"{USB1}/1-1"
HUB3 = f"{USB2}/2-1"
CAM1 = f"{HUB}/1-1.2"
CAM2 = f"{HUB}/1-1.3"
SDA = f"{CAM1}/1-1.2:1.0/host0/target0:0:0/0:0:0:0/block/sda"
SDB = f"{CAM2}/1-1.3:1.0/host1/target1:0:0/1:0:0:0/block/sdb"
ACM0 = f"{CAM2}/1-1.3:1.2/tty/ttyACM0"
CAM3 = f"{HUB}/1-1.4"
CAM3_DISK = f"{CAM3}/1-1.4.1"
CAM3_TTY = f"{CAM3}/1-1.4.2"
SDC = f"{CAM3_DISK}/1-1.4.1:1.0/host2/target2:0:0/2:0:0:0/block/sdc"
USB0 = f"{CAM3_TTY}/1-1.4.2:1.0/ttyUSB0/tty/ttyUSB0"
MMC = "devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0"
LOOP0 = "devices/virtual/block/loop0"
AMA0 = "devices/platform/soc/fe201000.serial/tty/ttyAMA0"


def attrs(rel: str, **values: object) -> None:
    folder = SYS / rel
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (folder / name).write_text(f"{value}\n")


def link(rel: str, target: str) -> None:
    """A relative symlink at sys/<rel> pointing at sys/<target>, spelled as the kernel spells it: up to
    the target's parent, then down (``device -> ../../../1-1.3:1.2``, never ``device -> ../..``)."""
    where = SYS / rel
    where.parent.mkdir(parents=True, exist_ok=True)
    goal = SYS / target
    where.symlink_to(os.path.join(os.path.relpath(goal.parent, where.parent), goal.name))


def usb_device(rel: str, busnum: int, devnum: int, vid: str, pid: str, cls: str, speed: int, **strings: str) -> None:
    devpath = Path(rel).name.split("-", 1)[1] if "-" in Path(rel).name else "0"
    attrs(
        rel,
        idVendor=vid,
        idProduct=pid,
        bDeviceClass=cls,
        busnum=busnum,
        devnum=devnum,
        devpath=devpath,
        speed=speed,
        dev=f"189:{(busnum - 1) * 128 + devnum - 1}",
        **strings,
    )


def usb_interface(rel: str, number: int, cls: str, subclass: str, protocol: str) -> None:
    attrs(
        rel,
        bInterfaceNumber=f"{number:02x}",
        bInterfaceClass=cls,
        bInterfaceSubClass=subclass,
        bInterfaceProtocol=protocol,
    )


def disk(rel: str, major_minor: str, sectors: int, removable: int = 1) -> None:
    attrs(rel, dev=major_minor, size=sectors, removable=removable, ro=0)


def partition(rel: str, number: int, major_minor: str, start: int, sectors: int) -> None:
    attrs(rel, partition=number, dev=major_minor, start=start, size=sectors, ro=0)


def build() -> None:
    if ROOT.exists():
        shutil.rmtree(ROOT)

    # -- the USB tree
    kernel = "Linux 6.6.31+rpt-rpi-v8 xhci-hcd"
    usb_device(
        USB1,
        1,
        1,
        "1d6b",
        "0002",
        "09",
        480,
        manufacturer=kernel,
        product="xHCI Host Controller",
        serial="0000:01:00.0",
    )
    usb_interface(f"{USB1}/1-0:1.0", 0, "09", "00", "00")
    usb_device(
        USB2,
        2,
        1,
        "1d6b",
        "0003",
        "09",
        5000,
        manufacturer=kernel,
        product="xHCI Host Controller",
        serial="0000:01:00.0",
    )
    usb_interface(f"{USB2}/2-0:1.0", 0, "09", "00", "00")
    usb_device(HUB, 1, 2, "2109", "3431", "09", 480, product="USB2.0 Hub")  # the VL805 hub has no serial
    usb_interface(f"{HUB}/1-1:1.0", 0, "09", "00", "00")
    usb_device(HUB3, 2, 2, "2109", "0817", "09", 5000, manufacturer="VIA Labs, Inc.", product="USB3.0 Hub")
    usb_interface(f"{HUB3}/2-1:1.0", 0, "09", "00", "00")

    usb_device(CAM1, 1, 5, "2e8a", "0c01", "00", 480, manufacturer="SIMCAM", product="DSJ-S1", serial="CAMT001")
    usb_interface(f"{CAM1}/1-1.2:1.0", 0, "08", "06", "50")
    attrs(f"{CAM1}/1-1.2:1.0/host0/target0:0:0/0:0:0:0", vendor="SIMCAM", model="DSJ-S1 Storage", type=0)
    disk(SDA, "8:0", 524288)
    partition(f"{SDA}/sda1", 1, "8:1", 2048, 522240)
    link(f"{SDA}/device", f"{CAM1}/1-1.2:1.0/host0/target0:0:0/0:0:0:0")

    usb_device(CAM2, 1, 6, "0483", "5740", "ef", 480, manufacturer="ZFY", product="DSJ-A8", serial="ZFYA8000213")
    usb_interface(f"{CAM2}/1-1.3:1.0", 0, "08", "06", "50")
    attrs(f"{CAM2}/1-1.3:1.0/host1/target1:0:0/1:0:0:0", vendor="ZFY", model="DSJ-A8 Disk", type=0)
    disk(SDB, "8:16", 262144)  # superfloppy: the filesystem starts at sector 0, no partitions
    link(f"{SDB}/device", f"{CAM2}/1-1.3:1.0/host1/target1:0:0/1:0:0:0")
    usb_interface(f"{CAM2}/1-1.3:1.1", 1, "ff", "00", "00")
    usb_interface(f"{CAM2}/1-1.3:1.2", 2, "02", "02", "01")
    usb_interface(f"{CAM2}/1-1.3:1.3", 3, "0a", "00", "00")
    attrs(ACM0, dev="166:0")
    link(f"{ACM0}/device", f"{CAM2}/1-1.3:1.2")

    usb_device(CAM3, 1, 7, "0409", "55aa", "09", 12, manufacturer="QEMU", product="QEMU USB Hub")
    usb_interface(f"{CAM3}/1-1.4:1.0", 0, "09", "00", "00")
    usb_device(CAM3_DISK, 1, 8, "46f4", "0001", "00", 12, manufacturer="QEMU", product="QEMU USB HARDDRIVE",
               serial="HUBCAM01")  # fmt: skip
    usb_interface(f"{CAM3_DISK}/1-1.4.1:1.0", 0, "08", "06", "50")
    attrs(f"{CAM3_DISK}/1-1.4.1:1.0/host2/target2:0:0/2:0:0:0", vendor="QEMU", model="QEMU HARDDISK", type=0)
    disk(SDC, "8:32", 131072)
    partition(f"{SDC}/sdc1", 1, "8:33", 2048, 129024)
    link(f"{SDC}/device", f"{CAM3_DISK}/1-1.4.1:1.0/host2/target2:0:0/2:0:0:0")
    usb_device(CAM3_TTY, 1, 9, "0403", "6001", "00", 12, manufacturer="QEMU", product="QEMU USB SERIAL",
               serial="HUBCAM01")  # fmt: skip
    usb_interface(f"{CAM3_TTY}/1-1.4.2:1.0", 0, "ff", "ff", "ff")
    attrs(USB0, dev="188:0")
    link(f"{USB0}/device", f"{CAM3_TTY}/1-1.4.2:1.0/ttyUSB0")

    for node in (USB1, USB2, HUB, HUB3, CAM1, CAM2, CAM3, CAM3_DISK, CAM3_TTY):
        name = Path(node).name
        link(f"bus/usb/devices/{name}", node)
        for child in sorted((SYS / node).iterdir()):
            if ":" in child.name:  # the device's interfaces are listed on the bus too
                link(f"bus/usb/devices/{child.name}", f"{node}/{child.name}")

    # -- block devices that are not cameras
    disk(MMC, "179:0", 62333952, removable=0)
    partition(f"{MMC}/mmcblk0p1", 1, "179:1", 8192, 1048576)
    partition(f"{MMC}/mmcblk0p2", 2, "179:2", 1056768, 61277184)
    link(f"{MMC}/device", "devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa")
    attrs("devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa", name="SN64G", type="SD")
    disk(LOOP0, "7:0", 0, removable=0)

    for whole, parts in ((SDA, ["sda1"]), (SDB, []), (SDC, ["sdc1"]), (MMC, ["mmcblk0p1", "mmcblk0p2"]), (LOOP0, [])):
        name = Path(whole).name
        link(f"block/{name}", whole)
        link(f"class/block/{name}", whole)
        for part in parts:
            link(f"class/block/{part}", f"{whole}/{part}")

    # -- ttys that are not cameras
    attrs(AMA0, dev="204:64")
    link(f"{AMA0}/device", "devices/platform/soc/fe201000.serial")
    attrs("devices/platform/soc/fe201000.serial", driver_override="(null)")
    for name, dev in (("console", "5:1"), ("tty", "5:0"), ("tty0", "4:0")):
        attrs(f"devices/virtual/tty/{name}", dev=dev)
        link(f"class/tty/{name}", f"devices/virtual/tty/{name}")
    link("class/tty/ttyAMA0", AMA0)
    link("class/tty/ttyACM0", ACM0)
    link("class/tty/ttyUSB0", USB0)


if __name__ == "__main__":
    build()
    print(f"wrote {ROOT}")
