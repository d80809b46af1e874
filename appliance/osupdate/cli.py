"""`recterm-update`: make keys and bundles (build host), install and confirm updates (station)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.osupdate import bootstate
from appliance.osupdate.bundle import BundleError, load_trusted_keys, write_bundle
from appliance.osupdate.install import install
from appliance.state.atomic import atomic_write_bytes

TRUSTED_KEYS = Path("/usr/share/recterm/update-keys")
BOOT_DIR = Path("/boot/firmware")
SLOT_DEVICES = {"A": Path("/dev/disk/by-partlabel/rootA"), "B": Path("/dev/disk/by-partlabel/rootB")}

boot_dir_option = click.option("--boot-dir", type=click.Path(path_type=Path), default=BOOT_DIR, show_default=True)
booted_option = click.option(
    "--booted", type=click.Choice(bootstate.SLOTS), help="Running slot (default: from /proc/cmdline)."
)


def _booted(value: str | None) -> str:
    if value:
        return value
    try:
        return bootstate.booted_slot(Path("/proc/cmdline").read_text())
    except bootstate.BootStateError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def _writable(boot_dir: Path) -> Iterator[None]:
    """The boot partition is mounted read-only; open it for writing only as long as needed."""
    remount = os.path.ismount(boot_dir) and bool(os.statvfs(boot_dir).f_flag & os.ST_RDONLY)
    if remount:
        subprocess.run(["mount", "-o", "remount,rw", str(boot_dir)], check=True)
    try:
        yield
    finally:
        os.sync()
        if remount:
            subprocess.run(["mount", "-o", "remount,ro", str(boot_dir)], check=False)


@click.group()
def main() -> None:
    """Whole-image A/B updates of the station's OS (docs/os-update.md)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


@main.command()
@click.argument("prefix", type=click.Path(path_type=Path))
def keygen(prefix: Path) -> None:
    """Make a signing key: PREFIX.pem (private, 0600) and PREFIX.pub.pem (goes into images)."""
    private = Path(f"{prefix}.pem")
    if private.exists():
        raise click.ClickException(f"{private} exists; refusing to replace a signing key")
    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write_bytes(private, pem, mode=0o600)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write_bytes(Path(f"{prefix}.pub.pem"), public, mode=0o644)
    click.echo(f"{private} and {prefix}.pub.pem")


@main.command()
@click.option("--key", "key_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--rootfs", type=click.Path(exists=True, path_type=Path), required=True, help="Root filesystem image.")
@click.option("--boot", type=click.Path(exists=True, path_type=Path), help="Tar of the slot's boot files.")
@click.option("--version", "version", required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def bundle(key_path: Path, rootfs: Path, boot: Path | None, version: str, out: Path) -> None:
    """Sign ROOTFS (and BOOT) into a bundle."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise click.ClickException(f"{key_path} is not an Ed25519 private key")
    payloads = {"rootfs": rootfs} | ({"boot": boot} if boot else {})
    try:
        manifest = write_bundle(out, payloads, key, version)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{out}: version {version}, key {manifest['key_id']}")


@main.command("install")
@click.argument("bundle_path", type=click.Path(path_type=Path))
@click.option("--keys", "keys_dir", type=click.Path(path_type=Path), default=TRUSTED_KEYS, show_default=True)
@click.option("--slot-a", type=click.Path(path_type=Path), default=SLOT_DEVICES["A"], show_default=True)
@click.option("--slot-b", type=click.Path(path_type=Path), default=SLOT_DEVICES["B"], show_default=True)
@boot_dir_option
@booted_option
@click.option("--tries", type=click.IntRange(1, 5), default=1, show_default=True)
@click.option("--reboot", is_flag=True, help="Reboot into the new slot on trial (Pi: tryboot).")
def install_cmd(
    bundle_path: Path,
    keys_dir: Path,
    slot_a: Path,
    slot_b: Path,
    boot_dir: Path,
    booted: str | None,
    tries: int,
    reboot: bool,
) -> None:
    """Verify BUNDLE, write it to the inactive slot, boot that slot next on trial."""
    try:
        trusted = load_trusted_keys(keys_dir)
        with _writable(boot_dir):
            done = install(bundle_path, trusted, {"A": slot_a, "B": slot_b}, boot_dir, _booted(booted), tries)
    except (BundleError, bootstate.BootStateError) as exc:
        raise click.ClickException(f"update refused: {exc}") from None
    click.echo(f"version {done.version} written to slot {done.slot} ({done.bytes_written} bytes); trial boot next")
    if reboot:
        subprocess.run(["systemctl", "reboot", "0 tryboot"], check=True)


@main.command("mark-good")
@boot_dir_option
@booted_option
@click.option("--health-url", help="Wait until this answers with state running before keeping the slot.")
@click.option("--timeout", type=float, default=600, show_default=True)
def mark_good_cmd(boot_dir: Path, booted: str | None, health_url: str | None, timeout: float) -> None:
    """Keep the running slot (after the station's health check passed)."""
    slot = _booted(booted)
    if bootstate.load(boot_dir).primary == slot:
        click.echo(f"slot {slot} is the primary slot; nothing on trial")
        return  # never reboot a primary slot over an unhealthy station: there is nothing to fall back to
    if health_url:
        deadline = time.monotonic() + timeout
        while not _healthy(health_url):
            if time.monotonic() > deadline:
                raise click.ClickException(f"slot {slot}: station not healthy after {timeout:g} s; not kept")
            time.sleep(2)
    try:
        with _writable(boot_dir):
            state = bootstate.mark_good(boot_dir, slot)
    except bootstate.BootStateError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"slot {state.primary} is good")


def _healthy(url: str) -> bool:
    import json

    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return json.loads(reply.read()).get("state") == "running"
    except (OSError, ValueError):
        return False


@main.command("select-boot")
@boot_dir_option
def select_boot_cmd(boot_dir: Path) -> None:
    """The boot loader's choice (spends a trial try); prints A or B. Used where no Pi firmware decides."""
    click.echo(bootstate.select_boot(boot_dir))


@main.command()
@boot_dir_option
def status(boot_dir: Path) -> None:
    """Print the boot state."""
    state = bootstate.load(boot_dir)
    click.echo(f"primary {state.primary}; trial {state.trial or '-'} ({state.tries_left} tries left)")
