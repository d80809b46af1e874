"""Mounting camera storage without running the station as root: a narrow, audited helper.

The station (unprivileged, NoNewPrivileges) asks over a UNIX socket; systemd accepts each connection
(recterm-mount.socket, Accept=yes) and starts ``recterm-mount-helper`` as root with the connection on its
stdin. The helper takes one JSON request line and answers one JSON line. It will only

- mount a block device that udev named as a bay's storage (``/dev/recterm/bay<N>-disk`` or
  ``bay<N>-part<P>``, see image/udev), probed by the helper itself as vfat or exfat,
- onto ``<mount root>/bay<N>`` for the same bay N, a real directory (no symlink anywhere), not already a
  mount point, with fixed options: read-only, nosuid, nodev, noexec, files owned by the station user,
- unmount such a mount point,

and only for the station user (SO_PEERCRED). Every request and its outcome goes to the journal.

Request: ``{"op": "mount", "device": "/dev/sda1", "mountpoint": "/var/lib/recterm/run/mnt/bay3"}`` or
``{"op": "umount", "mountpoint": ...}``. Answer: ``{"ok": true}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import socket
import stat
import struct
import sys
from pathlib import Path

from devices.volumes.base import StationSideError, VolumeError
from devices.volumes.detect import probe_fs_type
from devices.volumes.directory import DirectoryVolume
from devices.volumes.kernel import FS_OPTIONS
from devices.volumes.mounting import SAFE_OPTIONS, run_tool

log = logging.getLogger("recterm-mount-helper")

SOCKET_PATH = Path("/run/recterm/mount.sock")
# Overridable so the refusals can be tested without root; production uses the defaults.
DEV_DIR = Path(os.environ.get("RECTERM_MOUNT_DEV_DIR", "/dev/recterm"))
MOUNT_ROOT = Path(os.environ.get("RECTERM_MOUNT_ROOT", "/var/lib/recterm/run/mnt"))
STATION_USER = os.environ.get("RECTERM_MOUNT_USER", "recterm")

_BAY_NODE = re.compile(r"^bay(\d+)-(disk|part\d+)$")
_BAY_DIR = re.compile(r"^bay(\d+)$")
MAX_REQUEST = 4096


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
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        helper_request({"op": "mount", "device": str(device), "mountpoint": str(mountpoint)}, socket_path)
    except VolumeError:
        mountpoint.rmdir()
        raise
    return DirectoryVolume(mountpoint, fs_type, on_close=lambda: unmount_via_helper(mountpoint, socket_path))


def unmount_via_helper(mountpoint: Path, socket_path: Path = SOCKET_PATH) -> None:
    try:
        helper_request({"op": "umount", "mountpoint": str(mountpoint)}, socket_path)
    except VolumeError as exc:
        log.warning("%s", exc)
    with contextlib.suppress(OSError):
        mountpoint.rmdir()


# -- the helper (root) ------------------------------------------------------------------------------


class Refused(Exception):
    pass


def _bay_of_device(device: Path) -> int:
    """The bay whose udev-made name points at ``device``; Refused if none does."""
    try:
        target = os.path.realpath(device, strict=True)
        if not stat.S_ISBLK(os.stat(target).st_mode):
            raise Refused(f"{device} is not a block device")
    except OSError as exc:
        raise Refused(f"{device}: {exc.strerror}") from None
    try:
        names = sorted(os.listdir(DEV_DIR))
    except OSError:
        names = []
    for name in names:
        match = _BAY_NODE.match(name)
        if match and os.path.realpath(DEV_DIR / name) == target:
            return int(match.group(1))
    raise Refused(f"{device} is not a bay's storage (no {DEV_DIR}/bay*-disk|part* names it)")


def _checked_mountpoint(raw: str) -> tuple[Path, int]:
    path = Path(raw)
    if not path.is_absolute() or path.parent != MOUNT_ROOT or os.path.realpath(path) != str(path):
        raise Refused(f"mount point {raw!r} is not a directory directly under {MOUNT_ROOT} (or has a symlink)")
    match = _BAY_DIR.match(path.name)
    if match is None:
        raise Refused(f"mount point {raw!r} is not named bay<N>")
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise Refused(f"mount point {raw!r}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"mount point {raw!r} is not a directory")
    return path, int(match.group(1))


def handle(request: object) -> None:
    if not isinstance(request, dict) or request.get("op") not in ("mount", "umount"):
        raise Refused("request must be a JSON object with op 'mount' or 'umount'")
    mountpoint, bay = _checked_mountpoint(str(request.get("mountpoint", "")))
    if request["op"] == "umount":
        if not os.path.ismount(mountpoint):
            raise Refused(f"{mountpoint} is not mounted")
        run_tool(["umount", str(mountpoint)], f"umount {mountpoint}")
        return
    device = Path(str(request.get("device", "")))
    device_bay = _bay_of_device(device)
    if device_bay != bay:
        raise Refused(f"{device} belongs to bay {device_bay}, not to bay {bay}")
    if os.path.ismount(mountpoint):
        raise Refused(f"{mountpoint} is already a mount point")
    fs_type = probe_fs_type(device)
    user = pwd.getpwnam(STATION_USER)
    options = (*SAFE_OPTIONS, "noatime", f"uid={user.pw_uid}", f"gid={user.pw_gid}", *FS_OPTIONS[fs_type])
    run_tool(["mount", "-t", fs_type, "-o", ",".join(options), str(device), str(mountpoint)], f"mount {device}")


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def serve_connection(conn: socket.socket) -> None:
    """Answer the one request on ``conn`` (the station's connection systemd handed us)."""
    peer = _peer_uid(conn)
    reply: dict[str, object] = {"ok": True}
    request: object = None
    try:
        if peer != pwd.getpwnam(STATION_USER).pw_uid:
            raise Refused(f"uid {peer} is not the station user {STATION_USER}")
        line = conn.makefile("rb").readline(MAX_REQUEST)
        try:
            request = json.loads(line)
        except ValueError:
            raise Refused("request is not one line of JSON") from None
        handle(request)
    except (Refused, VolumeError) as exc:
        reply = {"ok": False, "error": str(exc)}
    log.info("uid %d asked %s: %s", peer, json.dumps(request), "done" if reply["ok"] else reply["error"])
    conn.sendall(json.dumps(reply).encode() + b"\n")


def main() -> None:
    """Entry point for recterm-mount@.service: the accepted connection is on stdin."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with socket.socket(fileno=os.dup(0)) as conn:
        serve_connection(conn)
