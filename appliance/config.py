"""Station configuration: one TOML file, validated by a schema, layered over defaults and the environment.

Layers, later wins: built-in defaults (the model's field defaults), then the TOML file, then environment
variables named ``RECTERM_<SECTION>__<KEY>`` (for example ``RECTERM_WEB__PORT=8081``). Every error names
the file (or variable), the key and the reason; nothing unknown is silently accepted.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from datetime import time
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, ValidationError, field_validator, model_validator

from appliance.evidence import checkpoint_policy as cp
from devices.volumes.helper import DEFAULT_MOUNT_ROOT as HELPER_MOUNT_ROOT

ENV_PREFIX = "RECTERM_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationSection(_Section):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = "station-0"
    name: str = "记录仪采集站"
    data_dir: Path = Path("/var/lib/recterm")
    timezone: str = "Asia/Shanghai"


class WebSection(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    # HTTPS on host:port with the station certificate made at provisioning (keys/station-tls.*). The LAN UI
    # must use it; only a UI on loopback alone (the demo) may go without.
    tls: bool = False
    # A second, plain-HTTP listener on loopback for the kiosk's own display (None: no second listener).
    kiosk_port: Annotated[int, Field(ge=1, le=65535)] | None = None

    @model_validator(mode="after")
    def _lan_needs_tls(self) -> WebSection:
        if not self.tls and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"web.host {self.host} is reachable from the LAN: set web.tls = true (HTTPS)")
        return self


class DeviceBackend(StrEnum):
    REAL = "real"
    SIMULATED = "simulated"
    DISABLED = "disabled"


class StorageBackend(StrEnum):
    KERNEL = "kernel"  # the station: mount -t vfat/exfat -o ro,nosuid,nodev,noexec
    USERSPACE = "userspace"  # machines without vfat/exfat in the kernel: exfat-fuse and the own FAT reader
    HELPER = "helper"  # the image: the kernel mounts, asked of the root mount helper (devices/volumes/helper.py)


class DockBoardSection(_Section):
    """The dock controller board (presence, charge current, USB power per bay): docs/dock-board.md."""

    backend: DeviceBackend = DeviceBackend.DISABLED
    url: str | None = None  # real: e.g. /dev/recterm/dock-board (the image's udev name) or /dev/serial/by-path/...
    # USB port path of the board's serial adapter: the image's udev rules name it /dev/recterm/dock-board.
    port_path: Annotated[str, Field(pattern=r"^\d+-\d+(\.\d+)*$")] | None = None

    @model_validator(mode="after")
    def _real_needs_url(self) -> DockBoardSection:
        if self.backend is DeviceBackend.REAL and not self.url:
            raise ValueError("backend = 'real' needs url (the board's serial port, by path)")
        return self


class GpioSection(_Section):
    """Bay LEDs, latches and presence switches on the Pi's pins; "mock" uses gpiozero's mock pins."""

    backend: Literal["real", "mock", "disabled"] = "disabled"
    buzzer: Annotated[int, Field(ge=2, le=27)] | None = None


class BadgeSection(_Section):
    backend: Literal["serial", "keyboard", "simulated", "disabled"] = "disabled"
    url: str | None = None  # serial readers
    device: Path | None = None  # keyboard-wedge readers: /dev/input/by-path/...

    @model_validator(mode="after")
    def _needs_its_port(self) -> BadgeSection:
        if self.backend == "serial" and not self.url:
            raise ValueError("backend = 'serial' needs url (the reader's serial port)")
        if self.backend == "keyboard" and self.device is None:
            raise ValueError("backend = 'keyboard' needs device (the reader's input device)")
        return self


class DevicesSection(_Section):
    backend: DeviceBackend = DeviceBackend.REAL
    storage: StorageBackend = StorageBackend.KERNEL
    # Where camera storage is mounted (bay<N> below it). Unset: with storage = "helper", the mount helper's
    # root-owned /run/recterm/mnt, which the station cannot change (docs/mount-helper.md); else <data_dir>/run/mnt.
    mount_root: Path | None = None
    sim_world: Path | None = None
    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    control_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    # After MSC, how long a camera may take to show its storage on the bus before the bay reports an error.
    storage_timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    battery_poll_s: Annotated[float, Field(gt=0, le=3600)] = 60.0  # idle docked cameras: battery read this often
    dock_board: DockBoardSection = DockBoardSection()
    gpio: GpioSection = GpioSection()
    badge: BadgeSection = BadgeSection()

    @model_validator(mode="after")
    def _simulated_needs_world(self) -> DevicesSection:
        simulated = self.backend is DeviceBackend.SIMULATED or self.dock_board.backend is DeviceBackend.SIMULATED
        if (simulated or self.badge.backend == "simulated") and self.sim_world is None:
            raise ValueError("a simulated back end needs sim_world (the simulator's directory)")
        return self


class BayPinsSection(_Section):
    """BCM pin numbers of one bay's RGB LED, latch solenoid and presence switch."""

    red: Annotated[int, Field(ge=2, le=27)]
    green: Annotated[int, Field(ge=2, le=27)]
    blue: Annotated[int, Field(ge=2, le=27)]
    latch: Annotated[int, Field(ge=2, le=27)]
    presence: Annotated[int, Field(ge=2, le=27)] | None = None


class BaySection(_Section):
    """One bay: number <-> USB port path <-> dock board channel <-> GPIO pins."""

    number: Annotated[int, Field(ge=1, le=64)]
    port_path: Annotated[str, Field(pattern=r"^\d+-\d+(\.\d+)*$")]
    label: str = ""
    dock_channel: Annotated[int, Field(ge=1, le=16)] | None = None  # docs/dock-board.md: 16 channels a board
    gpio: BayPinsSection | None = None


class OffloadSection(_Section):
    parallel: Annotated[int, Field(ge=1, le=16)] = 4
    buffer_kib: Annotated[int, Field(ge=64, le=16384)] = 1024
    reserve_gib: Annotated[float, Field(ge=0)] = 2.0
    # USB bus sharing (appliance/bus_scheduler.py): one bay per bus reads at full speed, the others trickle.
    bus_pacing: bool = True
    trickle_kib_s: Annotated[int, Field(ge=16, le=65536)] = 512
    min_ready: Annotated[int, Field(ge=0, le=64)] = 2  # fewer cameras ready than this: finish the nearest first
    extensions: tuple[str, ...] = (".mp4", ".mov", ".avi", ".ts", ".wav", ".mp3", ".jpg", ".jpeg")

    @field_validator("extensions")
    @classmethod
    def _lower_dot(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ext in value:
            if not ext.startswith("."):
                raise ValueError(f"extension {ext!r} must start with a dot")
        return tuple(e.lower() for e in value)


class S3Section(_Section):
    """The central S3 store with Object Lock (docs/s3-layout.md). Secrets live in ``credentials_file``."""

    endpoint: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/.*)?$")]
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    region: str = "default"
    credentials_file: Path  # TOML: access_key, secret_key; mode 0600
    part_size_mib: Annotated[int, Field(ge=5, le=512)] = 16  # also the single-PUT limit
    concurrency: Annotated[int, Field(ge=1, le=16)] = 4


class CentralSection(_Section):
    kind: Literal["archive", "s3", "disabled"] = "archive"
    archive_dir: Path | None = None
    s3: S3Section | None = None
    day_cap_mib_s: Annotated[float, Field(ge=0)] = 0  # daytime upload bandwidth cap; 0: none
    night_window: Annotated[str, Field(pattern=r"^\d\d:\d\d-\d\d:\d\d$")] = "01:00-05:00"  # local time, no cap
    alert_margin_h: Annotated[float, Field(ge=0)] = 4  # alarm when a recording is this close to its deadline
    # Upload right after docking (the default) or only in the night window; either way a recording within
    # alert_margin_h of its deadline goes at once.
    upload_on_dock: bool = True

    @field_validator("night_window")
    @classmethod
    def _valid_times(cls, value: str) -> str:
        for part in value.split("-"):
            try:
                time.fromisoformat(part)
            except ValueError:
                raise ValueError(f"{part!r} is not a time of day (HH:MM)") from None
        return value

    @model_validator(mode="after")
    def _s3_configured(self) -> CentralSection:
        if self.kind == "s3" and self.s3 is None:
            raise ValueError('central.kind = "s3" needs a [central.s3] section (endpoint, bucket, credentials_file)')
        return self


class PolicySection(_Section):
    profile: str = "003"
    profile_file: Path | None = None


class CheckoutSection(_Section):
    """Site choices for the check-out gate (the thresholds themselves are policy: appliance/policies)."""

    # Camera model -> firmware versions allowed to go out; an empty list allows any firmware of that model.
    # Empty table: any model, as long as the camera reports the model its registry row names.
    allowed_firmware: dict[str, list[str]] = {}
    ticket_ttl_s: Annotated[float, Field(gt=0, le=3600)] = 180.0  # an identified officer stays identified
    overdue_check_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    latch_pulse_s: Annotated[float, Field(gt=0, le=5)] = 0.5


class SecuritySection(_Section):
    """Sign-in, sessions and request limits (issue 8). Times in seconds."""

    session_idle_s: Annotated[float, Field(gt=0, le=86400)] = 1800.0  # a staff session ends after this idle
    session_max_s: Annotated[float, Field(gt=0, le=86400)] = 8 * 3600.0  # and after this, however busy
    kiosk_idle_s: Annotated[float, Field(gt=0, le=3600)] = 120.0  # an officer at the kiosk walks away
    lockout_after: Annotated[int, Field(ge=1, le=100)] = 5  # failed sign-ins in a row lock the account
    lockout_s: Annotated[float, Field(ge=0, le=86400)] = 900.0
    slowdown_s: Annotated[float, Field(ge=0, le=10)] = 0.5  # first delay after a failure; doubles each time
    slowdown_max_s: Annotated[float, Field(ge=0, le=60)] = 8.0
    signin_per_minute: Annotated[int, Field(ge=1, le=10000)] = 10  # per client address
    identify_per_minute: Annotated[int, Field(ge=1, le=10000)] = 30  # kiosk identifications, per address
    grant_max_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 72.0  # longest access grant a supervisor gives
    max_body_bytes: Annotated[int, Field(ge=1024, le=2**30)] = 3 * 2**20  # the CSV import takes 2 MiB
    # Addresses whose requests count as the kiosk's own display. Loopback only unless a site mounts the
    # display elsewhere (a thin client on a point-to-point link).
    kiosk_clients: tuple[IPvAnyAddress, ...] = (IPv4Address("127.0.0.1"), IPv6Address("::1"))


class DiscoverySection(_Section):
    """Zeroconf on the LAN (appliance/discovery.py): advertise the station's HTTPS UI; find the central side."""

    advertise: bool = False
    interfaces: tuple[IPvAnyAddress, ...] = ()  # empty: every interface (IPv4)


class MaintenanceSection(_Section):
    """Site choices for equipment management: when the station opens a fault on its own, when a battery is
    weak, what a maintenance attachment may be. (The maintenance interval is policy: appliance/policies.)"""

    due_soon_days: Annotated[int, Field(ge=0, le=365)] = 14  # listed as due this long before the date
    attachment_max_mib: Annotated[float, Field(gt=0, le=50)] = 10.0
    charge_zero_fault_s: Annotated[float, Field(gt=0)] = 600.0  # no charge current while docked, not full
    full_within_h: Annotated[float, Field(gt=0, le=48)] = 6.0  # a docked battery must be full by then
    clock_drift_repeats: Annotated[int, Field(ge=1, le=100)] = 3  # gate clock readings in a row beyond policy
    battery_weak_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.8  # of the camera's early capacity
    battery_min_span_pct: Annotated[int, Field(ge=5, le=100)] = 20  # charge span that gives a capacity estimate


class LogSection(_Section):
    """The event log's checkpoint policy (docs/event-log.md): a signed checkpoint at least every
    ``checkpoint_every`` entries and ``checkpoint_interval_s`` seconds. Declared in the station's ``boot``
    entry, it is also the bound `recterm verify` holds the uncovered entries to."""

    checkpoint_every: Annotated[int, Field(ge=cp.EVERY_RANGE[0], le=cp.EVERY_RANGE[1])] = cp.DEFAULT_EVERY
    checkpoint_interval_s: Annotated[
        float, Field(ge=cp.INTERVAL_RANGE_S[0], le=cp.INTERVAL_RANGE_S[1], allow_inf_nan=False)
    ] = cp.DEFAULT_INTERVAL_S


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class HealthSection(_Section):
    """How often the health checks run (appliance/health/) and when their silence/stall becomes a warning
    or a failure (a failure raises an alarm on the kiosk and the admin page)."""

    interval_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    camera_silent_warn_s: Annotated[float, Field(gt=0)] = 180.0
    camera_silent_fail_s: Annotated[float, Field(gt=0)] = 900.0
    charge_zero_warn_s: Annotated[float, Field(gt=0)] = 120.0
    charge_zero_fail_s: Annotated[float, Field(gt=0)] = 600.0

    @model_validator(mode="after")
    def _warn_before_fail(self) -> HealthSection:
        if self.camera_silent_fail_s < self.camera_silent_warn_s or self.charge_zero_fail_s < self.charge_zero_warn_s:
            raise ValueError("a *_fail_s threshold must not be below its *_warn_s")
        return self


class StationConfig(_Section):
    station: StationSection = StationSection()
    web: WebSection = WebSection()
    devices: DevicesSection = DevicesSection()
    bays: tuple[BaySection, ...] = ()
    offload: OffloadSection = OffloadSection()
    central: CentralSection = CentralSection()
    policy: PolicySection = PolicySection()
    health: HealthSection = HealthSection()
    checkout: CheckoutSection = CheckoutSection()
    security: SecuritySection = SecuritySection()
    discovery: DiscoverySection = DiscoverySection()
    maintenance: MaintenanceSection = MaintenanceSection()
    log: LogSection = LogSection()
    logging: LoggingSection = LoggingSection()

    @model_validator(mode="after")
    def _bays_unique(self) -> StationConfig:
        seen_numbers: set[int] = set()
        seen_ports: set[str] = set()
        seen_channels: dict[int, int] = {}
        board = self.devices.dock_board.backend is not DeviceBackend.DISABLED
        gpio = self.devices.gpio.backend != "disabled"
        for bay in self.bays:
            if bay.number in seen_numbers:
                raise ValueError(f"bay {bay.number} is configured twice")
            if bay.port_path in seen_ports:
                raise ValueError(f"USB port path {bay.port_path} is mapped to more than one bay")
            if bay.dock_channel is not None and bay.dock_channel in seen_channels:
                raise ValueError(
                    f"dock board channel {bay.dock_channel} is mapped to bays {seen_channels[bay.dock_channel]}"
                    f" and {bay.number}"
                )
            if board and bay.dock_channel is None:
                raise ValueError(f"bay {bay.number} has no dock_channel, but a dock board is configured")
            if gpio and bay.gpio is None:
                raise ValueError(f"bay {bay.number} has no gpio pins, but GPIO is enabled")
            seen_numbers.add(bay.number)
            seen_ports.add(bay.port_path)
            if bay.dock_channel is not None:
                seen_channels[bay.dock_channel] = bay.number
        return self

    # Paths derived from data_dir: one place decides the on-disk layout.
    @property
    def state_dir(self) -> Path:
        return self.station.data_dir / "state"

    @property
    def store_dir(self) -> Path:
        return self.station.data_dir / "store"

    @property
    def log_dir(self) -> Path:
        return self.station.data_dir / "log"

    @property
    def keys_dir(self) -> Path:
        return self.station.data_dir / "keys"

    @property
    def run_dir(self) -> Path:
        return self.station.data_dir / "run"

    @property
    def mount_root(self) -> Path:
        if self.devices.mount_root is not None:
            return self.devices.mount_root
        if self.devices.storage is StorageBackend.HELPER:
            return HELPER_MOUNT_ROOT
        return self.run_dir / "mnt"

    @property
    def archive_dir(self) -> Path:
        return self.central.archive_dir or self.station.data_dir / "central-archive"


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_layer(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Turn RECTERM_A__B=value into {"a": {"b": value}}; values are parsed as JSON when they parse."""
    layer: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty key segment")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name}: {part} is not a section")
        node[path[-1]] = value
        origins[path] = f"environment variable {name}"
    return layer, origins


def _format_errors(err: ValidationError, source: str, env_origins: dict[tuple[str, ...], str]) -> str:
    lines = []
    for item in err.errors():
        loc = tuple(str(p) for p in item["loc"])
        key = ".".join(loc) or "(top level)"
        origin = source
        for length in range(len(loc), 0, -1):
            if loc[:length] in env_origins:
                origin = env_origins[loc[:length]]
                break
        reason = item["msg"]
        if item["type"] == "extra_forbidden":
            reason = "unknown key"
        lines.append(f"{origin}: {key}: {reason}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> StationConfig:
    """Load and validate the configuration; raise ConfigError with file, key and reason on any fault."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    env_layer, env_origins = _env_layer(environ)
    merged = _deep_merge(data, env_layer)
    try:
        config = StationConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, env_origins)) from None
    if path is not None:
        config = _anchor_paths(config, Path(path).resolve().parent)
    return config


def _anchor_paths(config: StationConfig, base: Path) -> StationConfig:
    """A relative path in the file means "next to the config file", whatever the working directory."""

    def anchored(section: BaseModel, *names: str) -> dict[str, BaseModel]:
        updates = {}
        for name in names:
            value = getattr(section, name)
            if isinstance(value, Path) and not value.is_absolute():
                updates[name] = (base / value).resolve()
        return updates

    return config.model_copy(
        update={
            "station": config.station.model_copy(update=anchored(config.station, "data_dir")),
            "devices": config.devices.model_copy(update=anchored(config.devices, "sim_world", "mount_root")),
            "central": config.central.model_copy(
                update={
                    **anchored(config.central, "archive_dir"),
                    **(
                        {"s3": config.central.s3.model_copy(update=anchored(config.central.s3, "credentials_file"))}
                        if config.central.s3 is not None
                        else {}
                    ),
                }
            ),
            "policy": config.policy.model_copy(update=anchored(config.policy, "profile_file")),
        }
    )


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def dump_config(config: StationConfig) -> str:
    """The effective configuration as TOML (for `recterm config show`); unset optional keys are left out."""
    return tomli_w.dumps(_drop_none(config.model_dump(mode="json")))
