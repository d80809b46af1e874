"""`recterm`: the station's command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from appliance import __version__
from appliance.config import ConfigError, dump_config, load_config
from appliance.evidence import checkpoint_policy as cp
from appliance.offload import OffloadProgress
from appliance.policy import PolicyError

if TYPE_CHECKING:
    from appliance.evidence.verify import Report

log = logging.getLogger("recterm")

# syslog priorities, so journald files each line at its level (SyslogLevelPrefix).
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {super().format(record)}"


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):  # under systemd: journald adds the time itself
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _load(config: Path | None):
    try:
        return load_config(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="RECTERM_CONFIG",
    help="Station config (TOML). Default: $RECTERM_CONFIG.",
)


@click.group()
@click.version_option(__version__, prog_name="recterm")
def main() -> None:
    """Records terminal: body-camera docking station (执法记录仪采集站)."""


@main.command()
@config_option
def run(config_path: Path | None) -> None:
    """Run the station service (hot-plug, offload, web UI) until SIGTERM."""
    from appliance.station import Station, StationError, TaskDied

    config = _load(config_path)
    setup_logging(config.logging.level)
    try:
        station = Station(config)
    except (PolicyError, StationError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        asyncio.run(station.run())
    except TaskDied as exc:
        log.critical("station stopped after a failure: %s", exc)
        sys.exit(70)  # EX_SOFTWARE: systemd restarts us


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@config_option
def config_show(config_path: Path | None) -> None:
    """Print the effective configuration (defaults, then the file, then RECTERM_* variables)."""
    click.echo(dump_config(_load(config_path)), nl=False)


@config.command("check")
@config_option
def config_check(config_path: Path | None) -> None:
    """Validate the configuration and its policy profile; exit 1 with the reasons if invalid."""
    from appliance.policy import load_profile

    cfg = _load(config_path)
    try:
        profile = load_profile(cfg.policy.profile, cfg.policy.profile_file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ok: station {cfg.station.id}, {len(cfg.bays)} bays, policy {profile.id} ({profile.title})")


@main.command()
@config_option
@click.option("--admin", required=True, help="User name of the first administrator.")
@click.option("--station-id", help="Station id, when the config file does not exist yet (it is then written).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory for a new config.")
@click.option("--password-stdin", is_flag=True, help="Read the administrator's password from stdin (one line).")
@click.option("--hostname", "hostnames", multiple=True, help="Extra name or address for the TLS certificate.")
@click.option("--csr", is_flag=True, help="Also write a CSR (keys/station-tls.csr) for the bureau's CA.")
def provision(
    config_path: Path | None,
    admin: str,
    station_id: str | None,
    data_dir: Path | None,
    password_stdin: bool,
    hostnames: tuple[str, ...],
    csr: bool,
) -> None:
    """Enrol this station: config, signing key, the first administrator. No default credentials exist."""
    from provisioning.provision import ProvisionError
    from provisioning.provision import provision as run_provision

    if config_path is None:
        raise click.ClickException("name the config file: --config FILE (or RECTERM_CONFIG)")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt(f"password for {admin}", hide_input=True, confirmation_prompt=True)
    try:
        done = run_provision(config_path, admin, password, station_id, data_dir, list(hostnames), csr)
    except (ProvisionError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"station {done.station} provisioned; administrator {done.admin}")
    click.echo(f"signing key {done.fingerprint}  (register it on the central side)")
    click.echo(f"TLS certificate {done.tls_fingerprint}  (compare it when a browser first asks)")


@main.command()
@click.option("--dir", "root", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
def demo(root: Path, port: int) -> None:
    """Provision (first time) and run a whole simulated station with its web UI. Ctrl-C stops it."""
    from appliance.station import Station
    from devices.sim.server import SimServer
    from devices.sim.world import SimWorld
    from provisioning.demo import print_demo_accounts, provision_demo

    setup_logging("INFO")
    config_path = provision_demo(root, web_port=port)
    print_demo_accounts(click.echo)
    config = _load(config_path)
    assert config.devices.sim_world is not None
    sim = SimServer(SimWorld(config.devices.sim_world))
    sim.start()
    station = Station(config)
    try:
        asyncio.run(
            station.run(
                on_running=lambda: log.info(
                    "demo station on http://%s:%d  (sim: recterm sim --world %s ...)",
                    config.web.host,
                    config.web.port,
                    config.devices.sim_world,
                )
            )
        )
    finally:
        sim.stop()


@main.command()
@click.option("--central", is_flag=True, help="Print only the central endpoint's URL (exit 1 if none or several).")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to listen.")
@click.option("--interface", "interfaces", multiple=True, help="Address of the interface to use (default: all).")
def discover(central: bool, timeout: float, interfaces: tuple[str, ...]) -> None:
    """Find stations (and the central endpoint) on the LAN by zeroconf; one JSON object per line."""
    import json

    from appliance.discovery import CENTRAL_TYPE, STATION_TYPE, discover_central
    from appliance.discovery import discover as browse

    chosen = list(interfaces) or None
    if central:
        url = asyncio.run(discover_central(timeout, chosen))
        if url is None:
            raise click.ClickException("no single central endpoint answered")
        click.echo(url)
        return
    for kind, service_type in (("station", STATION_TYPE), ("central", CENTRAL_TYPE)):
        for found in asyncio.run(browse(service_type, timeout, chosen)):
            record = {"kind": kind, "url": found.url, "addresses": found.addresses, "txt": found.properties}
            click.echo(json.dumps(record, ensure_ascii=False))


# -- evidence --------------------------------------------------------------------------------------


class _ProgressBar:
    """click's progress bar fed with byte counts from the offloader."""

    def __init__(self) -> None:
        self._bar = None
        self._done = 0

    def start(self, progress: OffloadProgress) -> None:
        self._bar = click.progressbar(length=progress.bytes_total or 1, label=f"{progress.files_total} recordings")
        self._bar.__enter__()

    def update(self, progress: OffloadProgress) -> None:
        if self._bar is not None:
            self._bar.update(progress.bytes_done - self._done)
            self._done = progress.bytes_done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--store", "data_dir", type=click.Path(path_type=Path), required=True, help="Data directory.")
@click.option(
    "--serial", help="Camera serial for the manifests (default: the volume's serial number, VOL-<fs>-<uuid>)."
)
@click.option("--model", default="", help="Camera model for the manifests.")
def offload(source: Path, data_dir: Path, serial: str | None, model: str) -> None:
    """Offload one camera once: SOURCE is a camera image/block device or an already-mounted camera."""
    import time

    from appliance.single_offload import camera_identity, offload_once
    from appliance.store import StoreError
    from devices.volumes import VolumeError

    setup_logging("WARNING")
    bar = _ProgressBar()
    started = time.monotonic()
    try:
        if serial is None:
            identity = camera_identity(source)
            serial = identity.camera_serial
            click.echo(f"camera not named: calling it {serial} (volume label {identity.label or 'none'})")
        result = offload_once(
            source, data_dir, {"serial": serial, "model": model}, on_listing=bar.start, on_progress=bar.update
        )
    except (VolumeError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    elapsed = time.monotonic() - started
    p = result.progress
    click.echo(
        f"offloaded {len(result.copied)} recordings ({p.bytes_done / 1e6:.1f} MB in {elapsed:.1f} s, "
        f"{p.bytes_done / 1e6 / max(elapsed, 1e-6):.1f} MB/s); {len(result.skipped)} already verified; "
        f"{p.files_total} listed"
    )
    if result.damaged:
        shown = 20
        lines = [f"  {f.path or '(the volume)'}: {f.detail}" for f in result.damaged[:shown]]
        if len(result.damaged) > shown:
            lines.append(f"  … and {len(result.damaged) - shown} more (all in the log's offload_error entry)")
        raise click.ClickException(
            f"the camera's filesystem is damaged ({len(result.damaged)} found); these were not copied or signed "
            "and stay on the camera:\n" + "\n".join(lines)
        )


def _key_options(keys_default: str = "") -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--pubkey and --keys of `recterm verify` and `recterm audit`: one key, or a key history to follow."""

    def add(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option(
            "--keys",
            "keys_dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help=f"Station keys directory (current key and signing-history.json){keys_default}.",
        )(command)
        return click.option(
            "--pubkey",
            type=click.Path(exists=True, path_type=Path),
            help="Station public key (PEM): one key, no history.",
        )(command)

    return add


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_key_options("; default DATA_DIR/keys")
@click.option(
    "--checkpoint-every",
    type=click.IntRange(*cp.EVERY_RANGE),
    default=cp.DEFAULT_EVERY,
    show_default=True,
    help="Checkpoint policy for entries that no signed boot entry declares one for: entries between checkpoints.",
)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(*cp.INTERVAL_RANGE_S),
    default=cp.DEFAULT_INTERVAL_S,
    show_default=True,
    help="The same policy's seconds between checkpoints.",
)
def verify(
    data_dir: Path, pubkey: Path | None, keys_dir: Path | None, checkpoint_every: int, checkpoint_interval: float
) -> None:
    """Re-hash the store, check every manifest, the log's Merkle tree and every checkpoint."""
    from appliance.evidence.verify import load_public_key, verify_data_dir

    policy = cp.CheckpointPolicy(checkpoint_every, checkpoint_interval)
    try:
        report = verify_data_dir(data_dir, load_public_key(pubkey) if pubkey else None, keys_dir, policy)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot verify {data_dir}: {exc}") from None
    _report_and_exit(report)


def _report_and_exit(report: Report) -> None:
    """`recterm verify` and `recterm audit`: every finding, a summary line, exit 0 only when all holds."""
    for finding in report.findings:
        click.echo(str(finding))
    ingests = report.ingests
    accounted = (
        f"; ingests: {ingests.received} received, {ingests.pending} pending, {ingests.missing} missing"
        if ingests is not None
        else ""
    )
    click.echo(
        f"{'OK' if report.ok else 'FAILED'}: {report.entries} log entries, {report.checkpoints} checkpoints, "
        f"{report.objects} recordings, {report.manifests} manifests{accounted}"
    )
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("target")
@_key_options()
@click.option("--endpoint", help="S3 endpoint URL (for s3:// targets).")
@click.option("--credentials", type=click.Path(exists=True, path_type=Path), help="S3 credentials file (TOML).")
@click.option("--region", default="default", show_default=True)
@click.option(
    "--policy",
    "policy_id",
    help="Policy profile id for deadlines and retention (default: the one the station's signed boot entries declare).",
)
@click.option(
    "--policy-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A site's own policy profile file instead.",
)
@click.option("--no-lock-check", is_flag=True, help="Do not require COMPLIANCE locks (a bucket without lock).")
def audit(
    target: str,
    pubkey: Path | None,
    keys_dir: Path | None,
    endpoint: str | None,
    credentials: Path | None,
    region: str,
    policy_id: str | None,
    policy_file: Path | None,
    no_lock_check: bool,
) -> None:
    """Check an upload target (s3://BUCKET/STATION or ARCHIVE_DIR/STATION) against manifests and the log."""
    from botocore.exceptions import BotoCoreError, ClientError

    from appliance.central.audit import DirectoryBucket, S3Bucket
    from appliance.central.audit import audit as run_audit
    from appliance.evidence.verify import key_chain, load_public_key
    from appliance.policy import load_profile

    if pubkey is None and keys_dir is None:
        raise click.UsageError("give the station's key: --pubkey PEM or --keys DIR (with its key history)")
    try:
        chain = key_chain(load_public_key(pubkey) if pubkey else None, keys_dir, keys_dir or Path())
        policy = load_profile(policy_id or "", policy_file) if policy_id or policy_file else None
        bucket: DirectoryBucket | S3Bucket
        if target.startswith("s3://"):
            from appliance.central.s3 import S3StoreError, make_client
            from appliance.config import S3Section

            name, _, prefix = target.removeprefix("s3://").partition("/")
            if not endpoint or credentials is None or not prefix:
                raise click.UsageError("s3:// targets need s3://BUCKET/STATION, --endpoint and --credentials")
            try:
                settings = S3Section(endpoint=endpoint, bucket=name, region=region, credentials_file=credentials)
                bucket = S3Bucket(make_client(settings), name)
            except (S3StoreError, ValueError) as exc:
                raise click.ClickException(str(exc)) from None
        else:
            path = Path(target)
            if not path.is_dir():
                raise click.ClickException(f"{target}: not a directory (ARCHIVE_DIR/STATION) nor s3://BUCKET/STATION")
            bucket, prefix = DirectoryBucket(path.parent), path.name
        report = run_audit(bucket, prefix, chain, policy, check_lock=not no_lock_check)
    except (OSError, ValueError, PolicyError, BotoCoreError, ClientError) as exc:
        raise click.ClickException(f"cannot audit {target}: {exc}") from None
    _report_and_exit(report)


# -- keys ------------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """The station's signing keys, for whoever checks its checkpoints."""


@keys.command("show")
@click.argument("data_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (as GET /api/keys/signing answers).")
def keys_show(data_dir: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Print the checkpoint verifier key (C2SP signed-note), the key fingerprints (current key and its
    history) and the log origin of the station data directory DATA_DIR, or without it of the station that
    --config configures."""
    import json

    from appliance.evidence.station_keys import data_dir_keys, station_keys
    from appliance.station import log_origin

    try:
        if data_dir is not None:
            found = data_dir_keys(data_dir)
        else:
            cfg = _load(config_path)
            found = station_keys(cfg.keys_dir, cfg.station.id, log_origin(cfg.station.id))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot show the keys of {data_dir or 'the station'}: {exc}") from None
    click.echo(json.dumps(found.as_dict(), indent=1) if as_json else found.to_text(), nl=as_json)


# -- the simulator ---------------------------------------------------------------------------------

world_option = click.option(
    "--world",
    "world_root",
    type=click.Path(path_type=Path),
    default=Path("var/demo/sim"),
    show_default=True,
    envvar="RECTERM_SIM_WORLD",
    help="Simulator directory.",
)


@main.group()
def sim() -> None:
    """Drive the simulated hardware (cameras, bays) from a shell."""


def _sim_call(world_root: Path, **request: object) -> dict[str, object]:
    from devices.sim.server import send_command
    from devices.sim.world import SimError

    try:
        reply = send_command(world_root, request)
    except SimError as exc:
        raise click.ClickException(str(exc)) from None
    if not reply.get("ok"):
        raise click.ClickException(str(reply.get("error")))
    return reply


@sim.command("serve")
@world_option
def sim_serve(world_root: Path) -> None:
    """Run the simulator (ptys, charging, docking) in the foreground."""
    from devices.sim.server import SimServer
    from devices.sim.world import SimWorld

    setup_logging("INFO")
    server = SimServer(SimWorld(world_root))
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()


@sim.command("create")
@world_option
@click.argument("serial")
@click.option("--fs", "fs_type", type=click.Choice(["exfat", "vfat"]), default="exfat", show_default=True)
@click.option("--size-mib", type=int, default=128, show_default=True)
@click.option("--clips", type=int, default=3, show_default=True)
def sim_create(world_root: Path, serial: str, fs_type: str, size_mib: int, clips: int) -> None:
    """Make a simulated camera: a real FAT32/exFAT image holding real MP4 recordings."""
    from devices.sim.world import SimError, SimWorld

    try:
        SimWorld(world_root).create_camera(serial, fs_type=fs_type, size_mib=size_mib, clips=clips)
    except (SimError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"camera {serial} created ({fs_type}, {clips} recordings)")


@sim.command("dock")
@world_option
@click.argument("serial")
@click.argument("bay", type=int)
def sim_dock(world_root: Path, serial: str, bay: int) -> None:
    """Put camera SERIAL into BAY."""
    _sim_call(world_root, op="dock", serial=serial, bay=bay)
    click.echo(f"{serial} docked in bay {bay}")


@sim.command("undock")
@world_option
@click.argument("bay", type=int)
def sim_undock(world_root: Path, bay: int) -> None:
    """Take the camera out of BAY."""
    reply = _sim_call(world_root, op="undock", bay=bay)
    click.echo(f"{reply['serial']} taken out of bay {bay}")


@sim.command("record")
@world_option
@click.argument("serial")
@click.option("--clips", type=int, default=2, show_default=True)
@click.option("--seconds", type=float, default=3.0, show_default=True)
def sim_record(world_root: Path, serial: str, clips: int, seconds: float) -> None:
    """Record new clips on an undocked camera."""
    from devices.sim.world import SimError, SimWorld

    try:
        made = SimWorld(world_root).record(serial, clips, seconds)
    except SimError as exc:
        raise click.ClickException(str(exc)) from None
    for recording in made:
        click.echo(recording.camera_path)


@sim.command("swipe")
@world_option
@click.argument("card")
def sim_swipe(world_root: Path, card: str) -> None:
    """Swipe a badge on the simulated card reader."""
    _sim_call(world_root, op="swipe", card=card)
    click.echo(f"card {card} swiped")


@sim.command("battery")
@world_option
@click.argument("serial")
@click.argument("pct", type=int)
def sim_battery(world_root: Path, serial: str, pct: int) -> None:
    """Set (drain) a camera's battery level."""
    from devices.sim.world import SimError, SimWorld

    try:
        SimWorld(world_root).set_battery(serial, pct)
    except SimError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{serial} battery at {pct}%")


@sim.command("worn-contacts")
@world_option
@click.argument("bay", type=int)
def sim_worn_contacts(world_root: Path, bay: int) -> None:
    """A camera fails to enumerate in BAY (dirty contacts): the kernel log lines the health check reads."""
    from devices.sim.world import SimError, SimWorld

    try:
        SimWorld(world_root).worn_contacts(bay)
    except SimError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"bay {bay}: enumeration failure logged")


@sim.command("status")
@world_option
def sim_status(world_root: Path) -> None:
    """List cameras and where they sit."""
    from devices.sim.world import SimWorld

    world = SimWorld(world_root)
    docked = {serial: bay for bay, serial in world.docked().items()}
    for serial in world.cameras():
        camera = world.load(serial)
        where = f"bay {docked[serial]}" if serial in docked else "out"
        click.echo(f"{serial}  {camera.fs_type:5}  battery {camera.battery_pct:3d}%  {where}")
