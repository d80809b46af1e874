"""The root mount helper: what it refuses (wrong user, a device no bay owns, another bay's mount point,
symlinks, garbage) and the station's client, over real UNIX sockets and a real loop device holding FAT32.
The helper runs as its own process with the connection on stdin, exactly as systemd's Accept=yes hands it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.volumes import VolumeError
from devices.volumes.helper import helper_request, mount_via_helper
from tests.conftest import wait_until

NEEDS = ["losetup", "mkfs.vfat", "blkid", "mount"]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDS),
    reason="needs root (loop devices) and " + ", ".join(NEEDS),
)
HELPER = Path(sys.executable).with_name("recterm-mount-helper")


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    image = tmp_path / "camera.img"
    with open(image, "wb") as fh:
        fh.truncate(40 * 2**20)
    subprocess.run(["mkfs.vfat", "-F", "32", str(image)], check=True, capture_output=True)
    loop = Path(
        subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    yield loop
    subprocess.run(["umount", "-q", "-A", str(loop)], check=False, capture_output=True)
    subprocess.run(["losetup", "-d", str(loop)], check=False)


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    dev_dir, mount_root = tmp_path / "dev-recterm", tmp_path / "mnt"
    dev_dir.mkdir()
    for bay in (3, 4):
        (mount_root / f"bay{bay}").mkdir(parents=True)
    return {"dev_dir": dev_dir, "mount_root": mount_root}


class HelperSocket:
    """A listening socket whose every connection is served by a fresh helper process (systemd's Accept=yes)."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.stderr: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen()
        self._env = env
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                proc = subprocess.run(
                    [str(HELPER)],
                    stdin=conn.fileno(),
                    stdout=conn.fileno(),
                    stderr=subprocess.PIPE,
                    text=True,
                    env=self._env,
                    timeout=60,
                )
                self.stderr.append(proc.stderr)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def helper(tmp_path: Path, layout: dict[str, Path]) -> Iterator[HelperSocket]:
    env = dict(
        os.environ,
        RECTERM_MOUNT_DEV_DIR=str(layout["dev_dir"]),
        RECTERM_MOUNT_ROOT=str(layout["mount_root"]),
        RECTERM_MOUNT_USER="root",
    )
    server = HelperSocket(tmp_path / "mount.sock", env)
    yield server
    server.close()


def ask(helper: HelperSocket, **request: str) -> str:
    with pytest.raises(VolumeError) as refused:
        helper_request(request, helper.path)
    return str(refused.value)


def test_refuses_a_device_no_bay_owns(helper, layout, loop_device) -> None:
    reason = ask(helper, op="mount", device=str(loop_device), mountpoint=str(layout["mount_root"] / "bay3"))
    assert "is not a bay's storage" in reason
    wait_until(lambda: bool(helper.stderr), 30, "the helper to exit")
    assert "asked" in helper.stderr[-1] and "is not a bay's storage" in helper.stderr[-1]  # audited in the journal


def test_refuses_another_bays_mount_point(helper, layout, loop_device) -> None:
    (layout["dev_dir"] / "bay3-part1").symlink_to(loop_device)
    reason = ask(
        helper, op="mount", device=str(layout["dev_dir"] / "bay3-part1"), mountpoint=str(layout["mount_root"] / "bay4")
    )
    assert "belongs to bay 3, not to bay 4" in reason


@pytest.mark.parametrize("where", ["outside", "symlink", "not-bay", "relative"])
def test_refuses_mount_points_outside_its_root(helper, layout, loop_device, tmp_path, where) -> None:
    (layout["dev_dir"] / "bay3-disk").symlink_to(loop_device)
    target = {
        "outside": tmp_path,
        "symlink": layout["mount_root"] / "bay7",
        "not-bay": layout["mount_root"] / "etc",
        "relative": Path("mnt/bay3"),
    }[where]
    if where == "symlink":
        target.symlink_to(tmp_path)
    if where == "not-bay":
        target.mkdir()
    reason = ask(helper, op="mount", device=str(layout["dev_dir"] / "bay3-disk"), mountpoint=str(target))
    assert "mount point" in reason
    assert not os.path.ismount(tmp_path)


def test_refuses_a_character_device_and_garbage(helper, layout) -> None:
    (layout["dev_dir"] / "bay3-disk").symlink_to("/dev/null")
    reason = ask(
        helper, op="mount", device=str(layout["dev_dir"] / "bay3-disk"), mountpoint=str(layout["mount_root"] / "bay3")
    )
    assert "not a block device" in reason
    assert "op 'mount' or 'umount'" in ask(helper, op="format", mountpoint=str(layout["mount_root"] / "bay3"))
    assert "is not mounted" in ask(helper, op="umount", mountpoint=str(layout["mount_root"] / "bay3"))


def test_refuses_anyone_but_the_station_user(tmp_path, layout) -> None:
    env = dict(
        os.environ,
        RECTERM_MOUNT_DEV_DIR=str(layout["dev_dir"]),
        RECTERM_MOUNT_ROOT=str(layout["mount_root"]),
        RECTERM_MOUNT_USER="nobody",
    )
    server = HelperSocket(tmp_path / "other.sock", env)
    try:
        with pytest.raises(VolumeError, match="is not the station user nobody"):
            helper_request({"op": "umount", "mountpoint": str(layout["mount_root"] / "bay3")}, server.path)
    finally:
        server.close()


def test_the_bays_own_device_is_mounted_read_only_by_the_kernel(helper, layout, loop_device) -> None:
    (layout["dev_dir"] / "bay3-part1").symlink_to(loop_device)
    mountpoint = layout["mount_root"] / "bay3"
    if "vfat" not in Path("/proc/filesystems").read_text():
        # This kernel has no vfat: the helper must get as far as the kernel and say so.
        with pytest.raises(VolumeError, match="mount"):
            mount_via_helper(layout["dev_dir"] / "bay3-part1", "vfat", mountpoint, helper.path)
        assert not mountpoint.exists()  # the client removed its empty mount point
        pytest.skip("kernel without vfat: the mount itself is checked by make image-test in the guest")
    volume = mount_via_helper(layout["dev_dir"] / "bay3-part1", "vfat", mountpoint, helper.path)
    try:
        options = next(
            line.split()[3]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == str(mountpoint)
        )
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(options.split(","))
    finally:
        volume.close()
    assert not os.path.ismount(mountpoint)
