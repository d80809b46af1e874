#!/usr/bin/env python3
"""`make image-test`: boot the built image under qemu-system-aarch64 (-M virt -cpu cortex-a72, TCG), dock a
camera through QMP, cut the power mid-offload, boot again and check that nothing was lost.

1. A sparse copy of disk.img. Its data partition gets the test's station config (web UI reachable through
   QEMU's port forward, bays on the emulated xHCI's ports 1-1 .. 1-4, policy 001: the camera is freed once
   every recording is verified) and the camera in the inventory; its root slot A gets one observer unit
   (recterm-imagetest.service) that reports to the serial console what only the guest can see.
2. The camera: a real FAT32 image with real MP4 recordings (the simulator's), and the simulator's camera
   firmware answering the serial control protocol on a host socket.
3. Boot with Debian's arm64 kernel and initrd taken from the image, the root on virtio, the kiosk masked
   (no display here); wait for /api/health to say running (the station under its units, as user recterm).
4. Dock the camera through QMP: a usb-hub with a usb-serial (the control port, on the firmware's socket)
   and a usb-storage (the FAT32 image) behind it, one camera on port 1-1 as the station sees it.
5. Power cut: kill QEMU while the station is copying (one recording verified, the next one half written).
6. Boot again, dock the camera again: the station resumes, verifies every recording, frees the camera.
7. A damaged camera in bay 2: a real FAT32 image one of whose recordings' cluster chain loops back on itself.
   Read through the guest kernel's vfat (which follows the loop), it must still be refused: the good
   recordings verified, the damaged one named in an offload_error entry, a filesystem_damaged fault opened,
   nothing freed (docs/camera-filesystems.md).
8. Power off; from the host, check the data partition: every recording that was on the camera is in the
   store exactly once with its hash, `recterm verify` passes on the store, manifests and log.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the project's own simulator and state code

from appliance import inventory  # noqa: E402
from appliance.state.db import StateDB  # noqa: E402
from devices.sim.firmware import CameraFirmware, StreamEndpoint  # noqa: E402
from devices.sim.world import SimWorld  # noqa: E402
from tests.fatimages import clusters, listed_fat, set_fat  # noqa: E402

SERIAL = "IMGCAM1"
DAMAGED_SERIAL = "IMGBAD1"  # bay 2: a recording whose cluster chain loops
CLIPS = 4
EXTRA_DISK_GIB = 4
CLIP_SECONDS = 600  # about 33 MB each: long enough to cut the power in the middle of one
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
# What only the guest can see, printed as IMAGETEST lines; the same script runs on every boot. The station
# mounts the camera itself (through the mount helper); the observer only looks.
OBSERVER_SCRIPT = r"""#!/bin/sh
say() { echo "IMAGETEST $*"; }
station=/var/lib/recterm
# The station's own words from the start, so a station that never comes up says why on the console.
journalctl -f -n 50 -u recterm-firstboot.service -u recterm.service -u "recterm-mount@*" -o cat \
    | sed -u 's/^/IMAGETEST journal /' &
for _ in $(seq 1 900); do systemctl is-active -q recterm.service && break; sleep 2; done
pid=$(systemctl show -p MainPID --value recterm.service)
say "boot $(journalctl --list-boots --no-pager -q | wc -l)"
say "station-user $(ps -o user= -p "$pid") pid $pid"
say "security $(systemd-analyze security recterm.service --no-pager 2>&1 | tail -n 1)"
say "firstboot $(systemctl is-active recterm-firstboot.service) keys $(ls $station/keys | tr '\n' ' ')"
say "data-size $(df -B1M --output=size /data | tail -n 1) MiB"
for m in / /data /var/lib/recterm /var/log/journal /boot/firmware /tmp; do
    say "mount $(findmnt -n -o TARGET,SOURCE,FSTYPE,OPTIONS -M "$m")"
done
say "ffprobe $(ffprobe -version 2>&1 | head -n 1)"
runuser -u recterm -- /opt/recterm/bin/python -c '
import weasyprint
pdf = weasyprint.HTML(string="<p>执法记录仪采集站 report</p>").write_pdf()
print("IMAGETEST pdf", len(pdf), "bytes", pdf[:5].decode())' 2>&1 | tail -n 1
say "mount-root $(stat -c %U:%G:%a /run/recterm /run/recterm/mnt | tr '\n' ' ')"
say "ready"
for _ in $(seq 1 900); do [ -e /dev/recterm/bay1-disk ] && break; sleep 1; done
say "devices $(ls -l /dev/recterm/ | tr '\n' ' ')"
say "owner $(stat -L -c %U:%G:%a /dev/recterm/bay1-disk)"
last="" seen=""
while :; do
    mounted=$(findmnt -n -o OPTIONS -M /run/recterm/mnt/bay1 | cut -d, -f1)
    if [ -n "$mounted" ] && [ -z "$seen" ]; then
        seen=1
        nsenter -t "$pid" -m findmnt -n -o TARGET,SOURCE,FSTYPE,OPTIONS -M /run/recterm/mnt/bay1 \
            | sed 's/^/IMAGETEST station-sees /'
    fi
    now="mounted=${mounted:-no} objects=$(find $station/store/objects -type f | wc -l)"
    now="$now partial=$(find $station/store/tmp -type f | wc -l)"
    [ "$now" != "$last" ] && say "progress $now" && last=$now
    sleep 0.5
done
"""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} image-test: {message}", flush=True)


def partitions(disk: Path) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) in bytes, from the GPT."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, check=True).stdout)
    sector = table["partitiontable"].get("sectorsize", 512)
    return {p["name"]: (p["start"] * sector, p["size"] * sector) for p in table["partitiontable"]["partitions"]}


@contextlib.contextmanager
def mounted(disk: Path, part: tuple[int, int], where: Path, read_only: bool = False):
    where.mkdir(parents=True, exist_ok=True)
    offset, size = part
    options = f"loop,offset={offset},sizelimit={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-o", options, str(disk), str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_config() -> str:
    # qemu-xhci puts a full-speed device (QEMU's usb-hub) on its USB 2 root bus: bay N is port 1-N.
    bays = "".join(f'\n[[bays]]\nnumber = {n}\nport_path = "1-{n}"\n' for n in range(1, 5))
    return (
        '[station]\nid = "imagetest"\ndata_dir = "/var/lib/recterm"\n\n'
        '[web]\nhost = "0.0.0.0"\nport = 8080\ntls = true\n\n'
        '[policy]\nprofile = "001"\n\n'
        '[devices]\nbackend = "real"\nstorage = "helper"\n' + bays
    )


def station_ids(root: Path) -> tuple[int, int]:
    """The uid and gid of the image's station user, read from the image's own passwd."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "recterm":
            return int(fields[2]), int(fields[3])
    raise SystemExit("the image has no user recterm")


def enrol_camera(data: Path, uid: int, gid: int) -> None:
    """The camera in the station's inventory (as enrolment would put it), owned by the station user."""
    station = data / "recterm"
    state = station / "state"
    state.mkdir(parents=True, exist_ok=True)
    db = StateDB(state / "state.json")
    try:
        for serial in (SERIAL, DAMAGED_SERIAL):
            db.call(
                lambda tdb, s=serial: inventory.upsert_camera(tdb, s, model="DSJ-S1", vendor="SIMCAM", driver="serial")
            )
    finally:
        db.close()
    for path in (station, state, *state.iterdir()):
        os.chown(path, uid, gid)


def prepare(image_dir: Path, work: Path) -> Path:
    disk = work / "disk.img"
    log(f"sparse copy of {image_dir / 'disk.img'}")
    subprocess.run(["cp", "--sparse=always", str(image_dir / "disk.img"), str(disk)], check=True)
    # A station's SSD is larger than the image: first boot grows the data partition over the rest (the
    # store keeps a 2 GiB reserve, so the 512 MiB partition of the image alone would refuse every offload).
    with disk.open("r+b") as fh:
        fh.truncate(disk.stat().st_size + EXTRA_DISK_GIB * 2**30)
    parts = partitions(disk)
    with mounted(disk, parts["rootA"], work / "mnt-root") as root:
        uid, gid = station_ids(root)
        unit = root / "etc/systemd/system/recterm-imagetest.service"
        unit.write_text(OBSERVER_UNIT)
        script = root / "usr/local/sbin/recterm-imagetest"
        script.write_text(OBSERVER_SCRIPT)
        script.chmod(0o755)
        wants = root / "etc/systemd/system/multi-user.target.wants/recterm-imagetest.service"
        wants.symlink_to("/etc/systemd/system/recterm-imagetest.service")
    with mounted(disk, parts["data"], work / "mnt-data") as data:
        (data / "config").mkdir(exist_ok=True)
        (data / "config" / "station.toml").write_text(test_config())
        enrol_camera(data, uid, gid)
    return disk


def camera_files(image: Path) -> dict[str, str]:
    """camera path -> SHA-256 of every file on the camera's FAT image, read with mtools (no mount)."""
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    with tempfile.TemporaryDirectory(prefix="image-test-cam-") as tmp:
        listing = subprocess.run(["mdir", "-i", str(image), "-/", "-b", "::"], capture_output=True, text=True, env=env)
        if listing.returncode != 0 and "No files" not in listing.stdout + listing.stderr:
            raise SystemExit(f"cannot list the camera image: {listing.stderr.strip()}")
        files = {}
        for line in listing.stdout.splitlines():
            name = line.strip().removeprefix("::/")
            if not name or name.endswith("/"):
                continue
            local = Path(tmp) / "f"
            copied = subprocess.run(["mcopy", "-n", "-i", str(image), f"::/{name}", str(local)], env=env, check=False)
            if copied.returncode != 0:
                # Polled while the station frees the camera: a file deleted since the listing is simply gone.
                argv = ["mdir", "-i", str(image), "-/", "-b", "::"]
                again = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
                if f"::/{name}" not in again.stdout.split():
                    continue
                raise SystemExit(f"cannot read {name} from the camera image")
            with local.open("rb") as fh:
                files[name] = hashlib.file_digest(fh, "sha256").hexdigest()
            local.unlink()
        return files


def make_camera(work: Path) -> tuple[SimWorld, Path]:
    world = SimWorld(work / "sim")
    world.init({1: "1-1", 2: "1-2"})
    world.create_camera(SERIAL, fs_type="vfat", size_mib=256)
    world.record(SERIAL, CLIPS, seconds=CLIP_SECONDS)
    return world, world.image_path(SERIAL)


def make_damaged_camera(world: SimWorld) -> tuple[Path, list[str]]:
    """Three short recordings on FAT32; the second one's chain loops back (its last clusters repeat)."""
    world.create_camera(DAMAGED_SERIAL, fs_type="vfat", size_mib=64)
    world.record(DAMAGED_SERIAL, 3, seconds=20)
    image = world.image_path(DAMAGED_SERIAL)
    paths = sorted(listed_fat(image))
    chain = clusters(image, paths[1])
    if len(chain) < 3:
        raise SystemExit(f"{paths[1]} holds {len(chain)} clusters: too short to loop")
    set_fat(image, chain[2], chain[1])
    return image, paths


class FirmwareSocket:
    """The camera's control firmware on a Unix socket; QEMU's usb-serial connects to it (chardev socket).
    Each connection (one per QEMU run) gets its own endpoint on the same simulated camera."""

    def __init__(self, world: SimWorld, path: Path, serial: str = SERIAL) -> None:
        self.world = world
        self.path = path
        self.serial = serial
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(2)
        self.endpoints: list[StreamEndpoint] = []
        threading.Thread(target=self._accept, name="firmware-socket", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.endpoints.append(StreamEndpoint(CameraFirmware(self.world, self.serial), conn.detach()))

    def close(self) -> None:
        self.server.close()
        for endpoint in self.endpoints:
            endpoint.close()


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


def dock_camera(qmp: Qmp, image: Path, firmware_socket: Path, port: int = 1, serial: str = SERIAL) -> None:
    """One camera on xHCI port ``port``: a hub carrying its control port (FTDI serial) and its storage."""
    tag = f"cam{port}"
    chardev = {"type": "unix", "data": {"path": str(firmware_socket)}}
    qmp.call("chardev-add", id=f"{tag}ctl", backend={"type": "socket", "data": {"addr": chardev, "server": False}})
    backing = {"driver": "file", "filename": str(image), "read-only": True}
    qmp.call("blockdev-add", **{"node-name": f"{tag}disk", "driver": "raw", "read-only": True, "file": backing})
    qmp.call("device_add", driver="usb-hub", id=f"{tag}hub", bus="xhci.0", port=str(port))
    qmp.call("device_add", driver="usb-serial", id=f"{tag}serial", chardev=f"{tag}ctl", bus="xhci.0",
             port=f"{port}.2", serial=serial)  # fmt: skip
    qmp.call("device_add", driver="usb-storage", id=f"{tag}storage", drive=f"{tag}disk", bus="xhci.0",
             port=f"{port}.1", serial=serial)  # fmt: skip


def healthy(port: int) -> bool:
    # The LAN UI is HTTPS with the certificate first boot made on the device; health is all this asks.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/health", timeout=5, context=context) as reply:
            return json.loads(reply.read()).get("state") == "running"
    except (OSError, ValueError):
        return False


class Guest:
    """One boot of the image: QEMU, its QMP socket and its serial console."""

    def __init__(self, args: argparse.Namespace, disk: Path, work: Path, run: int) -> None:
        self.args = args
        self.console = work / f"console-{run}.log"
        self.qmp_path = work / f"qmp-{run}.sock"
        self.started = time.monotonic()
        argv = [
            "nice",
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048",
            "-kernel", str(args.image_dir / "qemu/vmlinuz"), "-initrd", str(args.image_dir / "qemu/initrd.img"),
            "-append", "console=ttyAMA0 root=PARTLABEL=rootA ro rootwait fsck.repair=yes "
            "systemd.mask=recterm-kiosk.service",
            "-drive", f"if=none,id=disk,format=raw,file={disk}", "-device", "virtio-blk-pci,drive=disk",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{args.port}-:8080",
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "qemu-xhci,id=xhci",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-serial", f"file:{self.console}", "-display", "none", "-no-reboot",
        ]  # fmt: skip
        log(f"boot {run}: " + " ".join(argv[1:]))
        self.qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(work / f"qemu-{run}.err", "wb"))  # noqa: SIM115
        self.qmp = Qmp(self.qmp_path)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.args.boot_timeout
        while not healthy(self.args.port):
            if self.qemu.poll() is not None:
                raise SystemExit(f"QEMU exited ({self.qemu.returncode}); see {self.console}")
            if time.monotonic() > deadline:
                for line in self.report()[-40:]:
                    print(line)
                raise SystemExit(f"station not healthy after {self.args.boot_timeout:g} s; see {self.console}")
            time.sleep(5)
        log(f"station healthy {time.monotonic() - self.started:.0f} s after power-on")

    def report(self) -> list[str]:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return [line.strip() for line in text.splitlines() if line.startswith("IMAGETEST")]

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.report():
                if found := re.search(pattern, line):
                    return found
                check_no_bay_error(line)
            if self.qemu.poll() is not None:
                raise SystemExit(f"QEMU exited ({self.qemu.returncode}) before {pattern!r} appeared")
            time.sleep(0.5)
        raise SystemExit(f"timed out after {timeout:g} s waiting for {pattern!r} on the console")

    def power_cut(self) -> None:
        self.qemu.kill()  # SIGKILL: the guest's RAM and unflushed caches are gone, as in a power cut
        self.qemu.wait()

    def power_off(self) -> None:
        with contextlib.suppress(Exception):
            self.qmp.call("system_powerdown")
        try:
            self.qemu.wait(timeout=180)
        except subprocess.TimeoutExpired:
            log("no clean power-off within 180 s: killing QEMU")
            self.power_cut()

    def close(self) -> None:
        if self.qemu.poll() is None:
            self.power_cut()


def progress(line_match: re.Match[str]) -> tuple[str, int, int]:
    return line_match.group(1), int(line_match.group(2)), int(line_match.group(3))


PROGRESS = r"^IMAGETEST progress mounted=(\S+) objects=(\d+) partial=(\d+)"


def check_no_bay_error(line: str) -> None:
    """Stop at once when the station gives up on the camera (appliance/bays.py logs "bay N (SERIAL): why"):
    waiting out the timeouts would only hide the reason."""
    if re.match(rf"IMAGETEST journal appliance\.bays: bay 1 \({SERIAL}\)", line):
        raise SystemExit(f"the station failed the camera: {line}")


def cut_mid_offload(guest: Guest, total: int, timeout: float) -> int:
    """Kill QEMU once a recording is verified and the next one is half copied; the count verified then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in guest.report():
            check_no_bay_error(line)
            found = re.search(PROGRESS, line)
            if not found:
                continue
            _, objects, partial = progress(found)
            if objects >= total:
                raise SystemExit(f"the offload finished before the power cut; make the recordings longer: {line}")
            if objects >= 1 and partial:
                guest.power_cut()
                return objects
        if guest.qemu.poll() is not None:
            raise SystemExit(f"QEMU exited ({guest.qemu.returncode}) before the offload started")
        time.sleep(0.2)
    raise SystemExit(f"no offload in progress after {timeout:g} s; see {guest.console}")


def check_damaged_camera(tables: dict, entries: list[dict], paths: list[str]) -> list[str]:
    """The damaged camera: its good recordings verified, the looping one named and faulted, nothing freed."""
    failures = []
    recordings = tables.get("recordings", {}).values()
    rows = sorted(r["camera_path"] for r in recordings if r["camera_serial"] == DAMAGED_SERIAL)
    if rows != [paths[0], paths[2]]:
        failures.append(f"damaged camera: rows for {rows}, expected the two good recordings {[paths[0], paths[2]]}")
    errors = [e["body"] for e in entries if e["type"] == "offload_error" and e["body"]["camera"] == DAMAGED_SERIAL]
    named = {(d["path"], d["reason"]) for body in errors for d in body["damaged"]}
    if (paths[1], "chain_loop") not in named:
        failures.append(f"damaged camera: no offload_error naming {paths[1]} as chain_loop (found {sorted(named)})")
    opened = [e["body"] for e in entries if e["type"] == "fault_opened" and e["body"].get("camera") == DAMAGED_SERIAL]
    if not any(f.get("reason") == "filesystem_damaged" for f in opened):
        failures.append(f"damaged camera: no filesystem_damaged fault opened ({opened})")
    freed = [e for e in entries if e["type"] in ("camera_freed", "camera_free_requested")]
    if any(e["body"].get("camera") == DAMAGED_SERIAL for e in freed):
        failures.append("damaged camera: the station asked it to free its storage")
    if not failures:
        log(f"damaged camera: {paths[1]} refused as chain_loop, fault opened, 2 good recordings verified, not freed")
    return failures


def check_data_partition(
    disk: Path, work: Path, expected: dict[str, str], python: Path, damaged_paths: list[str]
) -> list[str]:
    """After the last boot: every recording in the store exactly once, verified; `recterm verify` passes."""
    failures = []
    with mounted(disk, partitions(disk)["data"], work / "mnt-data", read_only=True) as data:
        station = data / "recterm"
        tables = json.loads((station / "state" / "state.json").read_text())
        rows = [r for r in tables.get("recordings", {}).values() if r["camera_serial"] == SERIAL]
        for path, sha256 in sorted(expected.items()):
            mine = [r for r in rows if r["camera_path"] == path]
            if len(mine) != 1:
                failures.append(f"{path}: {len(mine)} rows in the state, not 1")
                continue
            row = mine[0]
            if row["sha256"] != sha256 or row["status"] not in ("verified", "uploaded"):
                failures.append(f"{path}: state says {row['status']} {row['sha256']}, camera had {sha256}")
            stored = station / "store" / "objects" / "sha256" / sha256[:2] / sha256  # appliance/store.py
            if not stored.is_file():
                failures.append(f"{path}: no stored object {stored.name}")
            else:
                with stored.open("rb") as fh:
                    if hashlib.file_digest(fh, "sha256").hexdigest() != sha256:
                        failures.append(f"{path}: the stored copy does not hash to {sha256}")
        # Logged: one ingest entry per recording (a copy cut by the power is never logged), then the freeing.
        entries = [json.loads(line) for line in (station / "log" / "entries.jsonl").read_text().splitlines()]
        ingests = [e["body"] for e in entries if e["type"] == "ingest" and e["body"]["camera"] == SERIAL]
        logged = sorted((e["camera_path"], e["sha256"]) for e in ingests)
        if logged != sorted(expected.items()):
            failures.append(f"the log's ingest entries {logged} are not the camera's recordings, once each")
        if not any(e["type"] == "camera_freed" and e["body"].get("camera") == SERIAL for e in entries):
            failures.append("no camera_freed entry in the log")
        failures += check_damaged_camera(tables, entries, damaged_paths)
        leftovers = list((station / "store" / "tmp").iterdir())
        if leftovers:
            failures.append(f"partial copies left in the store: {[p.name for p in leftovers]}")
        pubkey = station / "keys" / "station-signing.pub.pem"
        verify = subprocess.run(
            [str(python.with_name("recterm")), "verify", str(station), "--pubkey", str(pubkey)],
            capture_output=True,
            text=True,
        )
        for line in verify.stdout.splitlines()[-5:]:
            log(f"recterm verify: {line}")
        if verify.returncode != 0:
            failures.append(f"recterm verify failed: {verify.stdout.strip().splitlines()[-1:]} {verify.stderr}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("build/image-test"))
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--boot-timeout", type=float, default=900)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("image-test needs root (loop mounts of the image's partitions)")
    for tool in ("qemu-system-aarch64", "sfdisk", "mcopy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (make image-deps)")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    work = args.work.resolve()
    started = time.monotonic()
    disk = prepare(args.image_dir, work)
    world, camera = make_camera(work)
    expected = camera_files(camera)
    damaged, damaged_paths = make_damaged_camera(world)
    log(f"camera {SERIAL}: {len(expected)} recordings, {camera.stat().st_size >> 20} MiB FAT32 image")
    firmware = FirmwareSocket(world, work / "camera-control.sock")
    damaged_firmware = FirmwareSocket(world, work / "damaged-control.sock", DAMAGED_SERIAL)
    failures: list[str] = []
    guest: Guest | None = None
    try:
        # -- boot 1: dock, cut the power mid-offload
        guest = Guest(args, disk, work, 1)
        guest.wait_healthy()
        guest.wait_for(r"^IMAGETEST ready", 900)
        log("docking the camera (QMP: usb-hub + usb-serial + usb-storage)")
        dock_camera(guest.qmp, camera, firmware.path)
        verified_at_cut = cut_mid_offload(guest, len(expected), 1800)
        first = guest.report()
        log(f"power cut with {verified_at_cut} of {len(expected)} recordings verified and one half copied")
        if camera_files(camera) != expected:
            failures.append("the camera lost recordings before all of them were verified")

        # -- boot 2: the station comes back, the camera is docked again and finishes
        guest = Guest(args, disk, work, 2)
        guest.wait_healthy()
        guest.wait_for(r"^IMAGETEST ready", 900)
        log("docking the camera again")
        docked = time.monotonic()
        dock_camera(guest.qmp, camera, firmware.path)
        guest.wait_for(rf"^IMAGETEST progress mounted=no objects={len(expected)} partial=0", 1800)
        log(f"offload resumed and complete {time.monotonic() - docked:.0f} s after docking again")
        deadline = time.monotonic() + 300
        while camera_files(camera) and time.monotonic() < deadline:
            time.sleep(3)
        left = camera_files(camera)
        if left:
            failures.append(f"the camera was not freed after every recording was verified: {sorted(left)}")
        log(f"docking the damaged camera {DAMAGED_SERIAL} in bay 2 (a looping cluster chain in {damaged_paths[1]})")
        dock_camera(guest.qmp, damaged, damaged_firmware.path, port=2, serial=DAMAGED_SERIAL)
        refused = guest.wait_for(rf"IMAGETEST journal appliance\.bays: bay 2 \({DAMAGED_SERIAL}\): (.*)", 900)
        log(f"the station refused the damaged camera: {refused.group(1)[:200]}")
        if sorted(listed_fat(damaged)) != damaged_paths:
            failures.append("the damaged camera lost recordings")
        second = guest.report()
        guest.power_off()
        guest = None

        report = [f"boot1 {line}" for line in first] + [f"boot2 {line}" for line in second]
        (work / "report.txt").write_text("\n".join(report) + "\n")
        for line in report:
            if " journal " not in line or "WARNING" in line or "ERROR" in line or "partial" in line:
                print(line)
        if not any(line.startswith("IMAGETEST station-user recterm") for line in second):
            failures.append("the station is not running as user recterm")
        if not any("bay1-disk" in line and "bay1-control" in line for line in first if "devices" in line):
            failures.append("udev did not name the docked camera's /dev/recterm/bay1-disk and bay1-control")
        if not any(line.startswith("IMAGETEST mount-root root:root:755 root:root:755") for line in first):
            failures.append(
                "the mount root /run/recterm/mnt is not root's 0755 (tmpfiles.d): the station could swap it"
            )
        if not any(line.startswith("IMAGETEST station-sees") and " ro," in line for line in first):
            failures.append("the station's own namespace does not see the camera mounted read-only")
        if not any(line.startswith("IMAGETEST pdf") and "%PDF" in line for line in second):
            failures.append("WeasyPrint cannot make a PDF in the image")
        if not any(line.startswith("IMAGETEST ffprobe ffprobe version") for line in second):
            failures.append("ffprobe is missing from the image")
        failures += check_data_partition(disk, work, expected, Path(sys.executable), damaged_paths)
        log(f"total {time.monotonic() - started:.0f} s")
        if failures:
            raise SystemExit("FAILED:\n  " + "\n  ".join(failures))
        log("passed")
    finally:
        if guest is not None:
            guest.close()
        firmware.close()
        damaged_firmware.close()


if __name__ == "__main__":
    main()
