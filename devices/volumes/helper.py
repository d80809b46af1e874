"""Mounting camera storage without running the station as root: a narrow, audited helper.

The station (unprivileged, NoNewPrivileges) asks over a UNIX socket; systemd accepts each connection
(recterm-mount.socket, Accept=yes) and starts ``recterm-mount-helper`` as root with the connection on its
stdin. The helper takes one JSON request line and answers one JSON line. It will only

- mount a block device that udev named as a bay's storage (``/dev/recterm/bay<N>-disk`` or
  ``bay<N>-part<P>``, see image/udev), probed by the helper itself as vfat or exfat,
- onto ``<mount root>/bay<N>`` for the same bay N, which the helper makes itself, with fixed options:
  read-only, nosuid, nodev, noexec, files owned by the station user,
- unmount such a mount point,

and only for the station user (SO_PEERCRED). Every request and its outcome goes to the journal; every
request gets an answer, whatever went wrong.

The mount root (/run/recterm/mnt, made by image/rootfs/usr/lib/tmpfiles.d/recterm.conf or by the helper)
and every directory above it must be root's and writable by no one else, so the station cannot swap a bay's
directory for a symlink. Even so, the helper checks nothing by path and then uses the path: it opens each
directory and the device node once and mounts through the descriptors (devices/volumes/fd_mount.py).

Request: ``{"op": "mount", "device": "/dev/sda1", "mountpoint": "/run/recterm/mnt/bay3"}`` or
``{"op": "umount", "mountpoint": ...}``. Answer: ``{"ok": true}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import pwd
import re
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from devices.volumes import fd_mount
from devices.volumes.base import StationSideError, VolumeError
from devices.volumes.detect import probe_fs_type
from devices.volumes.directory import DirectoryVolume
from devices.volumes.fd_mount import UnsafePath
from devices.volumes.kernel import FS_OPTIONS
from devices.volumes.mounting import SAFE_OPTIONS

log = logging.getLogger("recterm-mount-helper")

SOCKET_PATH = Path("/run/recterm/mount.sock")
DEFAULT_MOUNT_ROOT = Path("/run/recterm/mnt")
# Overridable so the helper can be tested on any machine. Only root sets a system unit's environment, and
# the image's unit sets none of these: production uses the defaults.
DEV_DIR = Path(os.environ.get("RECTERM_MOUNT_DEV_DIR", "/dev/recterm"))
MOUNT_ROOT = Path(os.environ.get("RECTERM_MOUNT_ROOT", str(DEFAULT_MOUNT_ROOT)))
STATION_USER = os.environ.get("RECTERM_MOUNT_USER", "recterm")
# Tests only, for kernels without vfat/exfat: one more filesystem type the helper mounts (e.g. ext4), with
# the same flags and no filesystem options. Never vfat or exfat themselves, whose options are fixed.
TEST_FS_TYPE = os.environ.get("RECTERM_MOUNT_TEST_FS_TYPE") or None

_BAY_NODE = re.compile(r"bay(\d+)-(disk|part\d+)")
_BAY_DIR = re.compile(r"bay(\d+)")
MAX_REQUEST = 4096
REQUEST_TIMEOUT_S = 5  # the station sends its line as soon as it connects
LOCK_TIMEOUT_S = 30  # a mount takes well under a second; the station waits 60 s for an answer


# -- the station's side ---------------------------------------------------------------------------


def helper_request(request: dict[str, str], socket_path: Path = SOCKET_PATH, timeout: float = 60) -> None:
    """Send one request; VolumeError with the helper's reason if it refused or failed."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = sock.makefile("rb").readline(MAX_REQUEST)
    except OSError as exc:
        raise StationSideError(f"mount helper at {socket_path}: {exc}") from exc
    try:
        answer = json.loads(reply)
    except ValueError:
        raise StationSideError(f"mount helper at {socket_path}: unreadable answer {reply[:200]!r}") from None
    if not answer.get("ok"):
        raise VolumeError(f"mount helper refused {request.get('op')}: {answer.get('error', 'no reason given')}")


def mount_via_helper(device: Path, fs_type: str, mountpoint: Path, socket_path: Path = SOCKET_PATH) -> DirectoryVolume:
    """The mount root is root's: the helper makes ``mountpoint`` and removes it again after unmounting."""
    helper_request({"op": "mount", "device": str(device), "mountpoint": str(mountpoint)}, socket_path)
    return DirectoryVolume(mountpoint, fs_type, on_close=lambda: unmount_via_helper(mountpoint, socket_path))


def unmount_via_helper(mountpoint: Path, socket_path: Path = SOCKET_PATH) -> None:
    try:
        helper_request({"op": "umount", "mountpoint": str(mountpoint)}, socket_path)
    except VolumeError as exc:
        log.warning("%s", exc)


# -- the helper (root) ------------------------------------------------------------------------------


class Refused(Exception):
    pass


def _station_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(STATION_USER)
    except KeyError:
        raise Refused(f"the station user {STATION_USER} does not exist") from None


def _bay_dir_name(raw: str) -> tuple[str, int]:
    """The name bay<N> and N of a requested mount point, which must be exactly <mount root>/bay<N>."""
    path = Path(raw)
    if not path.is_absolute() or path.parent != MOUNT_ROOT:
        raise Refused(f"mount point {raw!r} is not a directory directly under {MOUNT_ROOT}")
    match = _BAY_DIR.fullmatch(path.name)  # fullmatch: "$" alone would let "bay3\n" through
    if match is None:
        raise Refused(f"mount point {raw!r} is not named bay<N>")
    return path.name, int(match.group(1))


def _open_mount_root() -> int:
    try:
        return fd_mount.open_trusted_dir(MOUNT_ROOT, create=True)
    except UnsafePath as exc:
        raise Refused(f"mount root {MOUNT_ROOT} is not safe to mount in: {exc}") from None


def _bay_device(device: str, bay: int) -> int:
    """An O_PATH descriptor on bay ``bay``'s udev-named node, if ``device`` is that same block device."""
    try:
        requested = os.open(device, os.O_PATH | os.O_CLOEXEC)
        try:
            st = os.fstat(requested)
        finally:
            os.close(requested)
    except (OSError, ValueError) as exc:
        raise Refused(f"{device}: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise Refused(f"{device} is not a block device")
    try:
        dev_dir = fd_mount.open_trusted_dir(DEV_DIR)
    except UnsafePath as exc:
        raise Refused(f"{device} is not a bay's storage: {exc}") from None
    owner = None
    try:
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dev_dir)  # O_PATH cannot list
        try:
            names = sorted(os.listdir(listing))
        finally:
            os.close(listing)
        for name in names:
            match = _BAY_NODE.fullmatch(name)
            if match is None:
                continue
            try:  # udev's names are symlinks to ../sdXN: followed inside root's /dev
                node = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=dev_dir)
            except OSError:
                continue
            node_st = os.fstat(node)
            if stat.S_ISBLK(node_st.st_mode) and node_st.st_rdev == st.st_rdev:
                if int(match.group(1)) == bay:
                    return node
                owner = int(match.group(1))
            os.close(node)
    finally:
        os.close(dev_dir)
    if owner is not None:
        raise Refused(f"{device} belongs to bay {owner}, not to bay {bay}")
    raise Refused(f"{device} is not a bay's storage (no {DEV_DIR}/bay*-disk|part* names it)")


def _probe(node: int, device: str) -> str:
    # blkid is a child process: its /proc/self is its own, so it gets the helper's descriptor by pid.
    path = f"/proc/{os.getpid()}/fd/{node}"
    if TEST_FS_TYPE is not None and TEST_FS_TYPE not in FS_OPTIONS:
        found = subprocess.run(
            ["blkid", "--probe", "--match-tag", "TYPE", "--output", "value", path],
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
        if found.stdout.strip() == TEST_FS_TYPE:
            return TEST_FS_TYPE
    try:
        return probe_fs_type(Path(path))
    except VolumeError as exc:
        raise type(exc)(str(exc).replace(path, device)) from None


def _mount_data(fs_type: str) -> str:
    if fs_type not in FS_OPTIONS:  # TEST_FS_TYPE
        return ""
    user = _station_user()
    return ",".join((f"uid={user.pw_uid}", f"gid={user.pw_gid}", *FS_OPTIONS[fs_type]))


def _mount(root: int, name: str, bay: int, device: str) -> None:
    shown = f"mount point {MOUNT_ROOT / name}"
    target, created = fd_mount.open_dir_at(root, name, shown, create=True)
    try:
        if fd_mount.mount_id(target) != fd_mount.mount_id(root):
            raise Refused(f"{MOUNT_ROOT / name} is already a mount point")
        fd_mount.check_dir(target, shown)
        node = _bay_device(device, bay)
        try:
            fs_type = _probe(node, device)
            flags = 0
            for option in (*SAFE_OPTIONS, "noatime"):
                flags |= fd_mount.MOUNT_FLAGS[option]
            try:
                fd_mount.mount(node, target, fs_type, flags, _mount_data(fs_type))
            except OSError as exc:
                missing = " (this kernel has no driver for it)" if exc.errno == errno.ENODEV else ""
                raise Refused(f"mount {device} ({fs_type}) on {MOUNT_ROOT / name}: {exc.strerror}{missing}") from None
        finally:
            os.close(node)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=root)
        raise
    finally:
        os.close(target)


def _umount(root: int, name: str) -> None:
    shown = str(MOUNT_ROOT / name)
    try:
        target, _ = fd_mount.open_dir_at(root, name, shown)
    except UnsafePath as exc:
        raise Refused(f"{shown} is not mounted ({str(exc).removeprefix(shown).strip()})") from None
    try:
        mounted = fd_mount.mount_id(target) != fd_mount.mount_id(root)
    finally:
        os.close(target)  # an open descriptor on the mount would keep it busy
    if not mounted:
        raise Refused(f"{shown} is not mounted")
    # Looked up again by name, but in the root's descriptor: root's directory, which no one else can change.
    try:
        fd_mount.unmount_at(root, name)
    except OSError as exc:
        raise Refused(f"umount {shown}: {exc.strerror}") from None
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=root)


def handle(request: object) -> None:
    if not isinstance(request, dict) or request.get("op") not in ("mount", "umount"):
        raise Refused("request must be a JSON object with op 'mount' or 'umount'")
    name, bay = _bay_dir_name(str(request.get("mountpoint", "")))
    root = _open_mount_root()
    try:
        with _locked(root):
            if request["op"] == "umount":
                _umount(root, name)
            else:
                _mount(root, name, bay, str(request.get("device", "")))
    finally:
        os.close(root)


@contextlib.contextmanager
def _locked(root: int) -> Iterator[None]:
    """systemd starts a helper per connection, several at once: one at a time from the checks to the mount, or
    two requests for a bay both pass "not a mount point" (the kernel then refuses one with a bare EBUSY) and
    one's removal of bay<N> can meet the other's mount. Bounded, so that a mount stuck on a dying device
    holds up the other bays' requests for a while, not for ever."""
    lock = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root)  # O_PATH cannot lock
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Refused(f"another request has held {MOUNT_ROOT} for {LOCK_TIMEOUT_S} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(lock)  # releases the lock


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _read_request(conn: socket.socket) -> object:
    """One line of JSON, at most MAX_REQUEST bytes, within REQUEST_TIMEOUT_S."""
    conn.settimeout(REQUEST_TIMEOUT_S)
    data = b""
    try:
        while b"\n" not in data and len(data) <= MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise Refused(f"no request line within {REQUEST_TIMEOUT_S} s") from None
    line = data.split(b"\n", 1)[0]
    if len(line) > MAX_REQUEST:
        raise Refused(f"request longer than {MAX_REQUEST} bytes")
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        raise Refused("request is not one line of JSON") from None


def serve_connection(conn: socket.socket) -> None:
    """Answer the one request on ``conn`` (the station's connection systemd handed us), whatever happens."""
    reply: dict[str, object] = {"ok": True}
    request: object = None
    peer = -1
    try:
        peer = _peer_uid(conn)
        if peer != _station_user().pw_uid:
            raise Refused(f"uid {peer} is not the station user {STATION_USER}")
        request = _read_request(conn)
        handle(request)
    except (Refused, UnsafePath, VolumeError) as exc:
        reply = {"ok": False, "error": str(exc)}
    except Exception as exc:  # a bug or an error not foreseen: still answered, and the traceback journaled
        log.exception("internal error")
        reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
    log.info("uid %d asked %s: %s", peer, json.dumps(request), "done" if reply["ok"] else reply["error"])
    try:
        conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError as exc:
        log.warning("could not answer uid %d: %s", peer, exc)


def main() -> None:
    """Entry point for recterm-mount@.service: the accepted connection is on stdin."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        conn = socket.socket(fileno=os.dup(0))
    except OSError as exc:
        log.error("stdin is not a socket (recterm-mount.socket starts this helper): %s", exc)
        raise SystemExit(2) from None
    with conn:
        serve_connection(conn)
