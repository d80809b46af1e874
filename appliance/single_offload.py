"""Offload one camera once, outside the station service (`recterm offload`): the same pipeline, the same
store, log and manifests, for a technician with a camera image or an already-mounted camera."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from appliance import __version__
from appliance.eventlog import EventLog, Signer
from appliance.evidence.keychain import read_history
from appliance.offload import Offloader, OffloadProgress, OffloadResult
from appliance.state.db import StateDB
from appliance.store import LocalStore
from devices.volumes import Volume, VolumeError, open_volume
from devices.volumes.directory import DirectoryVolume
from devices.volumes.identity import VolumeIdentity, mount_source, probe_identity
from provisioning.keys import create_signing_key, load_signing_key

DEFAULT_EXTENSIONS = (".mp4", ".mov", ".avi", ".ts", ".wav", ".mp3", ".jpg", ".jpeg")


def kernel_reads_fat() -> bool:
    """The kernel mounts FAT and exFAT itself (the station); otherwise read in user space (this build box)."""
    try:
        known = Path("/proc/filesystems").read_text().split()
    except OSError:
        return False
    return "vfat" in known and "exfat" in known


def camera_identity(source: Path) -> VolumeIdentity:
    """The volume's own identity, for a source nobody named the camera of: an image or block device, or a
    directory that is the mount point of one."""
    device = mount_source(source) if source.is_dir() else source
    if device is None:
        raise VolumeError(f"{source} is a folder, not a mounted camera volume: give the camera's --serial")
    return probe_identity(device)


def open_source(source: Path, mountpoint: Path) -> Volume:
    if source.is_dir():
        return DirectoryVolume(source, "mounted")
    return open_volume(source, "kernel" if kernel_reads_fat() else "userspace", mountpoint)


def offload_once(
    source: Path,
    data_dir: Path,
    camera: dict[str, str],
    station_id: str = "standalone",
    on_listing: Callable[[OffloadProgress], None] | None = None,
    on_progress: Callable[[OffloadProgress], None] | None = None,
) -> OffloadResult:
    keys = data_dir / "keys"
    create_signing_key(keys)  # a no-op once the key exists
    key = load_signing_key(keys)
    with ExitStack() as stack:
        db = StateDB(data_dir / "state" / "state.json")
        stack.callback(db.close)
        events = EventLog(
            data_dir / "log",
            origin=f"recterm/{station_id}/events/e1",
            signer=Signer(station_id, key),
            retired=[r.public for r in read_history(keys)],
        )
        stack.callback(events.close)
        # This run's checkpoint policy, signed at once, as a station's boot entry declares it.
        events.declare("boot", {"station": station_id, "version": __version__, "devices": "offload"})
        store = LocalStore(data_dir / "store")
        offloader = Offloader(store, db, events, DEFAULT_EXTENSIONS, station_id, key)
        (data_dir / "run").mkdir(parents=True, exist_ok=True)
        volume = stack.enter_context(open_source(source, data_dir / "run" / "mnt"))
        started = {"done": False}

        def progress(p: OffloadProgress) -> None:
            if not started["done"]:
                started["done"] = True
                if on_listing:
                    on_listing(p)
            if on_progress:
                on_progress(p)

        return offloader.run(volume, camera, 0, threading.Event(), progress)
