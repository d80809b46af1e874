"""Install a verified bundle into the inactive slot, then put that slot on trial.

Order matters for power cuts: (1) the signature and every payload hash are checked before anything is
written; (2) a pending trial of the target slot is cancelled first, so a half-written slot is never
booted; (3) the slot is written, synced, read back and compared; (4) only then is it put on trial. A
power cut anywhere before (4) leaves the running slot as the only bootable one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.osupdate import bootstate
from appliance.osupdate.bundle import (
    BundleError,
    Manifest,
    Payload,
    iter_payload,
    read_manifest,
    read_range,
    verify_payloads,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Installed:
    slot: str
    version: str
    key_id: str
    bytes_written: int


def _capacity(fd: int) -> int | None:
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode):
        return os.lseek(fd, 0, os.SEEK_END)
    return st.st_size or None  # a plain-file slot: its size is its capacity once made


def _write_slot(bundle: Path, payload: Payload, slot: Path) -> None:
    fd = os.open(slot, os.O_WRONLY | os.O_CLOEXEC)
    try:
        capacity = _capacity(fd)
        if capacity is not None and payload.size > capacity:
            raise BundleError(f"rootfs is {payload.size} bytes, slot {slot} holds {capacity}")
        os.lseek(fd, 0, os.SEEK_SET)
        for chunk in iter_payload(bundle, payload):  # hashes again: the bundle may have changed since
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    digest = hashlib.sha256()
    for chunk in read_range(slot, 0, payload.size, f"slot {slot} is shorter than what was written"):
        digest.update(chunk)
    if digest.hexdigest() != payload.sha256:
        raise BundleError(f"slot {slot} does not read back what was written (failing storage?)")


def _write_boot_files(bundle: Path, payload: Payload, target: Path) -> None:
    data = b"".join(iter_payload(bundle, payload))
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(staging, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    os.sync()


def install(
    bundle: Path,
    trusted: Mapping[str, Ed25519PublicKey],
    slots: Mapping[str, Path],
    boot_dir: Path,
    booted: str,
    tries: int = 1,
) -> Installed:
    """Verify ``bundle`` and write it to the slot that is not ``booted``; put that slot on trial."""
    state = bootstate.load(boot_dir)
    if booted != state.primary:
        raise BundleError(f"running slot {booted} is on trial, not yet good: finish or roll back that update first")
    target = bootstate.other(booted)
    manifest: Manifest = read_manifest(bundle, trusted)
    verify_payloads(bundle, manifest)
    log.info("bundle %s verified (key %s); writing slot %s", manifest.version, manifest.key_id, target)
    if state.trial is not None:
        bootstate.save(boot_dir, bootstate.BootState(primary=state.primary))
    rootfs = manifest.payload("rootfs")
    assert rootfs is not None
    _write_slot(bundle, rootfs, slots[target])
    boot_files = manifest.payload("boot")
    if boot_files is not None:
        _write_boot_files(bundle, boot_files, Path(boot_dir) / f"slot-{target}")
    bootstate.save(boot_dir, bootstate.BootState(primary=booted, trial=target, tries_left=tries))
    log.info("slot %s holds %s and boots next on trial", target, manifest.version)
    return Installed(target, manifest.version, manifest.key_id, rootfs.size)
