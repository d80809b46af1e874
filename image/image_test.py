#!/usr/bin/env python3
"""`make image-test`: boot the built image under qemu-system-aarch64 (-M virt -cpu cortex-a72, TCG) and
check it from outside.

1. A sparse copy of disk.img; its data partition gets the test's station config (web UI reachable through
   QEMU's port forward, bays on the emulated xHCI's ports 1-1 .. 1-4); its root slot A gets one observer
   unit (recterm-imagetest.service) that reports to the serial console what only the guest can see.
2. Boot with Debian's arm64 kernel and initrd taken from the image, the root on virtio, the kiosk masked
   (no display here).
3. Wait for /api/health to say running (the station under its units, as user recterm).
4. Hot-plug a camera through QMP (blockdev-add + device_add usb-storage, a real FAT32 image with real
   MP4 recordings) and wait for the observer to see udev's /dev/recterm/bay1-* names.
5. Collect: systemd-analyze security of recterm.service, the station's user, what it logged about bay 1.
6. Power off through QMP (ACPI), or kill QEMU after a grace period.

What it does not yet check (image/README.md, "Not done yet"): the offload itself, and power cuts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
OBSERVER_UNIT = """\
[Unit]
Description=make image-test observer (reports to the serial console)
After=recterm.service

[Service]
Type=simple
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyAMA0
ExecStart=/usr/local/sbin/recterm-imagetest
"""
# What only the guest can see, printed as IMAGETEST lines. The mount check goes through the same path the
# station uses (the helper, as user recterm) and looks from inside the station's own mount namespace.
OBSERVER_SCRIPT = r"""#!/bin/sh
say() { echo "IMAGETEST $*"; }
for _ in $(seq 1 900); do systemctl is-active -q recterm.service && break; sleep 2; done
pid=$(systemctl show -p MainPID --value recterm.service)
say "station-user $(ps -o user= -p "$pid") pid $pid"
say "security $(systemd-analyze security recterm.service --no-pager 2>&1 | tail -n 1)"
systemd-analyze security recterm.service --no-pager 2>&1 | sed 's/^/IMAGETEST security-detail /'
say "firstboot $(systemctl is-active recterm-firstboot.service) keys $(ls /var/lib/recterm/keys | tr '\n' ' ')"
for m in / /data /var/lib/recterm /var/log/journal /boot/firmware /tmp; do
    say "mount $(findmnt -n -o TARGET,SOURCE,FSTYPE,OPTIONS -M "$m")"
done
say "ready"
for _ in $(seq 1 900); do [ -e /dev/recterm/bay1-disk ] && break; sleep 2; done
sleep 10
say "devices $(ls -l /dev/recterm/ | tr '\n' ' ')"
say "owner $(stat -L -c %U:%G:%a /dev/recterm/bay1-disk)"
runuser -u recterm -- mkdir -p /var/lib/recterm/run/mnt/bay1
runuser -u recterm -- /opt/recterm/bin/python -c '
from devices.volumes.helper import helper_request
helper_request({"op": "mount", "device": "/dev/recterm/bay1-disk", "mountpoint": "/var/lib/recterm/run/mnt/bay1"})
print("IMAGETEST helper-mount ok")' 2>&1 | sed 's/^\([^I]\)/IMAGETEST helper-mount \1/'
nsenter -t "$pid" -m sh -c 'grep " /var/lib/recterm/run/mnt/bay1 " /proc/mounts; \
  find /var/lib/recterm/run/mnt/bay1 -type f | head -n 5' | sed 's/^/IMAGETEST station-sees /'
runuser -u recterm -- /opt/recterm/bin/python -c '
from devices.volumes.helper import helper_request
helper_request({"op": "umount", "mountpoint": "/var/lib/recterm/run/mnt/bay1"})
print("IMAGETEST helper-umount ok")' 2>&1
journalctl -b -u recterm.service -u "recterm-mount@*" --no-pager -o cat | grep -i -E "bay 1|1-1|mount|asked" \
    | tail -n 20 | sed 's/^/IMAGETEST log /'
say "done"
"""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} image-test: {message}", flush=True)


def partitions(disk: Path) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) in bytes, from the GPT."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout)
    sector = table["partitiontable"].get("sectorsize", 512)
    return {p["name"]: (p["start"] * sector, p["size"] * sector) for p in table["partitiontable"]["partitions"]}


@contextlib.contextmanager
def mounted(disk: Path, part: tuple[int, int], where: Path):
    where.mkdir(parents=True, exist_ok=True)
    offset, size = part
    subprocess.run(["mount", "-o", f"loop,offset={offset},sizelimit={size}", str(disk), str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_config(port_base: str) -> str:
    bays = "".join(f'\n[[bays]]\nnumber = {n}\nport_path = "{port_base}{n}"\n' for n in range(1, 5))
    return (
        '[station]\nid = "imagetest"\ndata_dir = "/var/lib/recterm"\n\n'
        '[web]\nhost = "0.0.0.0"\nport = 8080\n\n'
        '[devices]\nbackend = "real"\nstorage = "helper"\n' + bays
    )


def prepare(image_dir: Path, work: Path) -> Path:
    disk = work / "disk.img"
    log(f"sparse copy of {image_dir / 'disk.img'}")
    subprocess.run(["cp", "--sparse=always", str(image_dir / "disk.img"), str(disk)], check=True)
    parts = partitions(disk)
    with mounted(disk, parts["data"], work / "mnt-data") as data:
        (data / "config").mkdir(exist_ok=True)
        # QEMU's usb-storage is a SuperSpeed device: on qemu-xhci it enumerates on the second root bus (2-N).
        (data / "config" / "station.toml").write_text(test_config("2-"))
    with mounted(disk, parts["rootA"], work / "mnt-root") as root:
        unit = root / "etc/systemd/system/recterm-imagetest.service"
        unit.write_text(OBSERVER_UNIT)
        script = root / "usr/local/sbin/recterm-imagetest"
        script.write_text(OBSERVER_SCRIPT)
        script.chmod(0o755)
        wants = root / "etc/systemd/system/multi-user.target.wants/recterm-imagetest.service"
        wants.symlink_to("/etc/systemd/system/recterm-imagetest.service")
    return disk


def make_camera(work: Path, python: Path) -> Path:
    world = work / "sim"
    recterm = str(python.with_name("recterm"))
    options = ["--fs", "vfat", "--clips", "3", "--size-mib", "64"]
    subprocess.run([recterm, "sim", "create", "--world", str(world), "IMGCAM1", *options], check=True)
    images = sorted(p for p in world.rglob("*.img") if "IMGCAM1" in str(p))
    if not images:
        raise SystemExit(f"no camera image under {world}")
    return images[0]


class Qmp:
    def __init__(self, path: Path, timeout: float = 30) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.file = self.sock.makefile("rw")
        self.file.readline()
        self.call("qmp_capabilities")

    def call(self, command: str, **arguments: object) -> dict:
        self.file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply:
                return reply
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as reply:
            return json.loads(reply.read()).get("state") == "running"
    except (OSError, ValueError):
        return False


def wait_console(console: Path, pattern: str, timeout: float, qemu: subprocess.Popen) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace") if console.exists() else ""
        if re.search(pattern, text):
            return text
        if qemu.poll() is not None:
            raise SystemExit(f"QEMU exited ({qemu.returncode}) before {pattern!r} appeared")
        time.sleep(2)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {pattern!r} on the console")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("build/image-test"))
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--boot-timeout", type=float, default=1800)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("image-test needs root (loop mounts of the image's partitions)")
    for tool in ("qemu-system-aarch64", "sfdisk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (make image-deps)")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    work = args.work.resolve()
    started = time.monotonic()
    disk = prepare(args.image_dir, work)
    camera = make_camera(work, Path(sys.executable))
    console, qmp_path = work / "console.log", work / "qmp.sock"
    qemu_argv = [
        "nice",
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048",
        "-kernel", str(args.image_dir / "qemu/vmlinuz"), "-initrd", str(args.image_dir / "qemu/initrd.img"),
        "-append", "console=ttyAMA0 root=PARTLABEL=rootA ro rootwait fsck.repair=yes "
        "systemd.mask=recterm-kiosk.service",
        "-drive", f"if=none,id=disk,format=raw,file={disk}", "-device", "virtio-blk-pci,drive=disk",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{args.port}-:8080",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "qemu-xhci,id=xhci",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
        "-serial", f"file:{console}", "-display", "none", "-no-reboot",
    ]  # fmt: skip
    log("booting: " + " ".join(qemu_argv[1:]))
    qemu = subprocess.Popen(qemu_argv, stdout=subprocess.DEVNULL, stderr=open(work / "qemu.err", "wb"))  # noqa: SIM115
    try:
        qmp = Qmp(qmp_path)
        deadline = time.monotonic() + args.boot_timeout
        while not healthy(args.port):
            if qemu.poll() is not None:
                raise SystemExit(f"QEMU exited ({qemu.returncode}); see {console}")
            if time.monotonic() > deadline:
                raise SystemExit(f"station not healthy after {args.boot_timeout:g} s; see {console}")
            time.sleep(5)
        log(f"station healthy {time.monotonic() - started:.0f} s after start")
        wait_console(console, r"IMAGETEST ready", 900, qemu)
        log("hot-plugging the camera (QMP device_add usb-storage)")
        backing = {"driver": "file", "filename": str(camera), "read-only": True}
        qmp.call("blockdev-add", **{"node-name": "cam1", "driver": "raw", "read-only": True, "file": backing})
        qmp.call(
            "device_add", driver="usb-storage", id="camdev1", drive="cam1", bus="xhci.0", port="1", serial="IMGCAM1"
        )
        text = wait_console(console, r"IMAGETEST done", 900, qemu)
        report = [line for line in text.splitlines() if line.startswith("IMAGETEST")]
        (work / "report.txt").write_text("\n".join(report) + "\n")
        for line in report:
            print(line)
        log(f"total {time.monotonic() - started:.0f} s")
        failures = []
        if not any(line.startswith("IMAGETEST station-user recterm") for line in report):
            failures.append("the station is not running as user recterm")
        if not any("bay1-disk" in line for line in report if line.startswith("IMAGETEST devices")):
            failures.append("udev did not name the hot-plugged camera /dev/recterm/bay1-disk")
        if not any(line.startswith("IMAGETEST station-sees") and "ro," in line for line in report):
            failures.append("the helper's read-only mount is not visible in the station's namespace")
        if failures:
            raise SystemExit("FAILED: " + "; ".join(failures))
        log("passed")
        with contextlib.suppress(Exception):
            qmp.call("system_powerdown")
        with contextlib.suppress(subprocess.TimeoutExpired):
            qemu.wait(timeout=120)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()


if __name__ == "__main__":
    main()
