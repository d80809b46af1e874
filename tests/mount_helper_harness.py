"""What the mount helper's tests share: a socket served the way systemd's Accept=yes serves it (a fresh
helper process per connection, the connection on its stdin), loop devices holding real filesystems, and
the mounts of /proc/self/mountinfo."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

NEEDS = ["losetup", "mkfs.vfat", "mkfs.ext4", "blkid", "mount"]
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDS),
    reason="needs root (loop devices, mounts) and " + ", ".join(NEEDS),
)
HELPER = Path(sys.executable).with_name("recterm-mount-helper")
# A filesystem every kernel the tests run on has, for real mounts where vfat/exfat are missing: the helper
# accepts it only with RECTERM_MOUNT_TEST_FS_TYPE set (root's environment for it; never in the image).
TEST_FS = "ext4"


class HelperSocket:
    """A listening socket whose every connection is served by a fresh helper process (systemd's Accept=yes)."""

    def __init__(self, path: Path, env: dict[str, str], helper: Path = HELPER, concurrent: bool = False) -> None:
        """``concurrent``: a helper per connection at once, as systemd starts them (MaxConnections=8)."""
        self.path = path
        self._concurrent = concurrent
        self._running: list[threading.Thread] = []
        self.stderr: list[str] = []
        self.exit_codes: list[int] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen()
        self._env = env
        self._helper = helper
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._concurrent:
                self._running.append(threading.Thread(target=self._run_helper, args=(conn,), daemon=True))
                self._running[-1].start()
            else:
                self._run_helper(conn)

    def _run_helper(self, conn: socket.socket) -> None:
        with conn:
            proc = subprocess.run(
                [str(self._helper)],
                stdin=conn.fileno(),
                stdout=conn.fileno(),
                stderr=subprocess.PIPE,
                text=True,
                env=self._env,
                timeout=60,
            )
            self.stderr.append(proc.stderr)
            self.exit_codes.append(proc.returncode)

    def close(self) -> None:
        # shutdown wakes the blocked accept (close alone would not, and a later socket could reuse the fd
        # number under it); the thread then ends before the socket is closed.
        self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=90)
        for running in self._running:
            running.join(timeout=90)
        self._sock.close()


def helper_env(dev_dir: Path, mount_root: Path, user: str = "root", **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        RECTERM_MOUNT_DEV_DIR=str(dev_dir),
        RECTERM_MOUNT_ROOT=str(mount_root),
        RECTERM_MOUNT_USER=user,
        RECTERM_MOUNT_TEST_FS_TYPE=TEST_FS,
        **extra,
    )


@contextlib.contextmanager
def loop_device(image: Path, fs: str, files: dict[str, bytes] | None = None) -> Iterator[Path]:
    """A loop device on a 40 MiB ``image`` holding a fresh ``fs`` ("vfat" or "ext4") with ``files`` on it."""
    with open(image, "wb") as fh:
        fh.truncate(40 * 2**20)
    if fs == "vfat":
        subprocess.run(["mkfs.vfat", "-F", "32", str(image)], check=True, capture_output=True)
    else:  # mkfs.ext4 -d fills it from a folder, without mounting anything
        content = image.with_suffix(".content")
        for name, data in (files or {}).items():
            (content / name).parent.mkdir(parents=True, exist_ok=True)
            (content / name).write_bytes(data)
        content.mkdir(exist_ok=True)
        subprocess.run(["mkfs.ext4", "-q", "-d", str(content), str(image)], check=True, capture_output=True)
    loop = Path(
        subprocess.run(
            ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    try:
        yield loop
    finally:  # by mount point: the helper's mounts name /proc/self/fd/N as source, so umount -A LOOP misses them
        for where, _ in reversed(mounts_of(loop)):
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", str(loop)], check=False)


def mounts_of(device: Path) -> list[tuple[Path, set[str]]]:
    """(mount point, per-mount options) of every mount of ``device`` in this namespace, from mountinfo."""
    rdev = os.stat(device).st_rdev
    wanted = f"{os.major(rdev)}:{os.minor(rdev)}"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[2] == wanted:  # the mount point is octal-escaped (\040 for a space ...)
            point = fields[4].encode().decode("unicode_escape")
            found.append((Path(point), set(fields[5].split(","))))
    return found
