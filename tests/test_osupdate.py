"""A/B updates: a bundle signed by a trusted key is written to the inactive slot and put on trial; one
signed by an unknown key, or changed after signing, is refused before a byte is written; a trial that is
never confirmed falls back to the old slot. Slots are plain-file images holding real ext4 filesystems."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.osupdate import bootstate
from appliance.osupdate.bundle import BundleError, key_id, load_trusted_keys, read_manifest, write_bundle
from appliance.osupdate.install import install

SLOT_BYTES = 8 * 2**20
UNHEALTHY = ["--health-url", "http://127.0.0.1:9/api/health", "--timeout", "1"]  # nothing listens on port 9


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_key(key: Ed25519PrivateKey, path: Path) -> None:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.write_bytes(pem)


@pytest.fixture
def rig(tmp_path: Path) -> dict:
    """Release key trusted by the image, a dev key that is not, two slots, a boot partition folder."""
    release, dev = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = tmp_path / "update-keys"
    keys.mkdir()
    _save_key(release, keys / "release.pub.pem")
    slots = {}
    for name in ("A", "B"):
        slots[name] = tmp_path / f"root{name}.img"
        slots[name].write_bytes(bytes([ord(name)]) * SLOT_BYTES)  # "A..." and "B...": the old contents
    boot = tmp_path / "boot"
    boot.mkdir()
    bootstate.save(boot, bootstate.BootState(primary="A"))
    rootfs = tmp_path / "rootfs.img"
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "recterm-release").write_text("2.0\n")
    if shutil.which("mkfs.ext4"):
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(rootfs), "4M"], check=True)
    else:
        rootfs.write_bytes(hashlib.sha512(b"rootfs").digest() * 40000)
    return {"release": release, "dev": dev, "keys": keys, "slots": slots, "boot": boot, "rootfs": rootfs}


def _install(rig: dict, bundle: Path, booted: str = "A") -> object:
    return install(bundle, load_trusted_keys(rig["keys"]), rig["slots"], rig["boot"], booted)


def test_a_trusted_bundle_goes_to_the_inactive_slot_on_trial(rig, tmp_path) -> None:
    boot_tar = tmp_path / "boot.tar"
    (tmp_path / "kernel8.img").write_bytes(b"kernel 2.0")
    with tarfile.open(boot_tar, "w") as tar:
        tar.add(tmp_path / "kernel8.img", arcname="kernel8.img")
    bundle = tmp_path / "update.rtb"
    write_bundle(bundle, {"rootfs": rig["rootfs"], "boot": boot_tar}, rig["release"], "2.0")
    slot_a_before = _sha(rig["slots"]["A"])
    done = _install(rig, bundle)
    assert done.slot == "B" and done.version == "2.0" and done.key_id == key_id(rig["release"].public_key())
    size = rig["rootfs"].stat().st_size
    assert rig["slots"]["B"].read_bytes()[:size] == rig["rootfs"].read_bytes()
    assert _sha(rig["slots"]["A"]) == slot_a_before  # the running slot is never touched
    assert (rig["boot"] / "slot-B" / "kernel8.img").read_bytes() == b"kernel 2.0"
    assert bootstate.load(rig["boot"]) == bootstate.BootState(primary="A", trial="B", tries_left=1)
    assert (rig["boot"] / "tryboot.txt").read_text().endswith("os_prefix=slot-B/\n")
    # The trial boots once, passes its health check and is kept.
    assert bootstate.select_boot(rig["boot"]) == "B"
    assert bootstate.mark_good(rig["boot"], "B") == bootstate.BootState(primary="B")
    assert (rig["boot"] / "slot.txt").read_text() == "os_prefix=slot-B/\n"
    assert not (rig["boot"] / "tryboot.txt").exists()
    assert bootstate.select_boot(rig["boot"]) == "B"


def test_a_trial_never_confirmed_falls_back_to_the_old_slot(rig, tmp_path) -> None:
    bundle = tmp_path / "update.rtb"
    write_bundle(bundle, {"rootfs": rig["rootfs"]}, rig["release"], "2.0")
    _install(rig, bundle)
    assert bootstate.select_boot(rig["boot"]) == "B"  # trial boot: it hangs, the watchdog reboots
    assert bootstate.select_boot(rig["boot"]) == "A"  # no tries left: back to the known good slot
    assert bootstate.load(rig["boot"]) == bootstate.BootState(primary="A")
    with pytest.raises(bootstate.BootStateError):
        bootstate.mark_good(rig["boot"], "B")


def test_a_bundle_signed_by_an_unknown_key_is_refused_and_nothing_is_written(rig, tmp_path) -> None:
    bundle = tmp_path / "dev-signed.rtb"
    write_bundle(bundle, {"rootfs": rig["rootfs"]}, rig["dev"], "2.0-dev")
    before = _sha(rig["slots"]["B"])
    with pytest.raises(BundleError, match="unknown key " + key_id(rig["dev"].public_key())):
        _install(rig, bundle)
    assert _sha(rig["slots"]["B"]) == before
    assert bootstate.load(rig["boot"]) == bootstate.BootState(primary="A")


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("payload", "does not match its signed hash"),
        ("manifest", "bad signature"),
        ("signature", "bad signature"),
        ("truncated", "describes"),
        ("magic", "bad magic"),
    ],
)
def test_a_changed_bundle_is_refused_and_nothing_is_written(rig, tmp_path, where, reason) -> None:
    bundle = tmp_path / "update.rtb"
    write_bundle(bundle, {"rootfs": rig["rootfs"]}, rig["release"], "2.0")
    data = bytearray(bundle.read_bytes())
    header = 10 + 4 + int.from_bytes(data[10:14], "big")
    if where == "payload":
        data[-1000] ^= 0x01
    elif where == "manifest":
        data[header - 30 : header] = data[header - 30 : header].replace(b"2.0", b"9.9")
        assert b"9.9" in data[:header]
    elif where == "signature":
        data[header + 5] ^= 0x80
    elif where == "truncated":
        del data[-4096:]
    else:
        data[0:9] = b"NOTBUNDLE"
    bundle.write_bytes(bytes(data))
    before = _sha(rig["slots"]["B"])
    with pytest.raises(BundleError, match=reason):
        _install(rig, bundle)
    assert _sha(rig["slots"]["B"]) == before
    assert bootstate.load(rig["boot"]) == bootstate.BootState(primary="A")


def test_a_bundle_for_another_system_is_refused(rig, tmp_path) -> None:
    bundle = tmp_path / "other.rtb"
    write_bundle(bundle, {"rootfs": rig["rootfs"]}, rig["release"], "2.0", compatible="someone-else-x86")
    with pytest.raises(BundleError, match="is for 'someone-else-x86'"):
        read_manifest(bundle, load_trusted_keys(rig["keys"]))


def test_no_install_while_running_a_slot_on_trial(rig, tmp_path) -> None:
    bundle = tmp_path / "update.rtb"
    write_bundle(bundle, {"rootfs": rig["rootfs"]}, rig["release"], "2.0")
    _install(rig, bundle)
    bootstate.select_boot(rig["boot"])
    with pytest.raises(BundleError, match="on trial"):
        _install(rig, bundle, booted="B")


def test_a_rootfs_larger_than_the_slot_is_refused(rig, tmp_path) -> None:
    big = tmp_path / "big.img"
    big.write_bytes(b"\0" * (SLOT_BYTES + 1))
    bundle = tmp_path / "big.rtb"
    write_bundle(bundle, {"rootfs": big}, rig["release"], "2.0")
    with pytest.raises(BundleError, match="holds"):
        _install(rig, bundle)
    assert bootstate.load(rig["boot"]) == bootstate.BootState(primary="A")


def test_recterm_update_command_line(rig, tmp_path) -> None:
    tool = str(Path(sys.executable).with_name("recterm-update"))
    subprocess.run([tool, "keygen", str(tmp_path / "k" / "dev")], check=True, capture_output=True)
    bundle = tmp_path / "cli.rtb"
    key, rootfs = str(tmp_path / "k" / "dev.pem"), str(rig["rootfs"])
    made = subprocess.run(
        [tool, "bundle", "--key", key, "--rootfs", rootfs, "--version", "3.0", "--out", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    common = ["--slot-a", str(rig["slots"]["A"]), "--slot-b", str(rig["slots"]["B"]), "--boot-dir", str(rig["boot"])]
    refused = subprocess.run(
        [tool, "install", str(bundle), "--keys", str(rig["keys"]), "--booted", "A", *common],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "update refused: bundle signed by an unknown key" in refused.stderr
    shutil.copy(tmp_path / "k" / "dev.pub.pem", rig["keys"] / "dev.pub.pem")
    accepted = subprocess.run(
        [tool, "install", str(bundle), "--keys", str(rig["keys"]), "--booted", "A", *common],
        capture_output=True,
        text=True,
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "written to slot B" in accepted.stdout
    status = subprocess.run([tool, "status", "--boot-dir", str(rig["boot"])], capture_output=True, text=True)
    assert status.stdout.strip() == "primary A; trial B (1 tries left)"


def test_booted_slot_from_the_kernel_command_line() -> None:
    assert bootstate.booted_slot("console=ttyAMA0 root=PARTLABEL=rootB ro rootwait") == "B"
    with pytest.raises(bootstate.BootStateError):
        bootstate.booted_slot("root=/dev/mmcblk0p2 ro")


def test_mark_good_on_the_primary_slot_never_waits_or_fails(rig) -> None:
    tool = str(Path(sys.executable).with_name("recterm-update"))
    proc = subprocess.run(
        [tool, "mark-good", "--boot-dir", str(rig["boot"]), "--booted", "A", *UNHEALTHY],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0 and "primary slot" in proc.stdout


def test_mark_good_refuses_a_trial_that_is_not_healthy(rig, tmp_path) -> None:
    bundle = tmp_path / "update.rtb"
    write_bundle(bundle, {"rootfs": rig["rootfs"]}, rig["release"], "2.0")
    _install(rig, bundle)
    assert bootstate.select_boot(rig["boot"]) == "B"
    tool = str(Path(sys.executable).with_name("recterm-update"))
    proc = subprocess.run(
        [tool, "mark-good", "--boot-dir", str(rig["boot"]), "--booted", "B", *UNHEALTHY],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "not healthy" in proc.stderr
    assert bootstate.load(rig["boot"]).primary == "A"
