"""`recterm provision`: enrol a station on the device itself. No default credentials exist anywhere: the
first administrator is named and given a password here, once.

Steps, each idempotent except the administrator: write the config if there is none; make the signing key,
the TLS key and a self-signed certificate (kept if present; a CSR for the bureau's CA on request); register
the first administrator (refused once one exists); log the enrolment in the event log; return the
fingerprints for the central side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tomli_w

from appliance import __version__
from appliance.config import load_config
from appliance.eventlog import EventLog, Signer
from appliance.security.accounts import AccountError, add_account, check_password, has_admin
from appliance.security.roles import Role
from appliance.security.scrypt import hash_secret
from appliance.state.db import StateDB
from provisioning.keys import create_signing_key, fingerprint, load_signing_key
from provisioning.tls import certificate_fingerprint, create_tls_certificate


class ProvisionError(Exception):
    """Provisioning cannot go ahead; the message says why."""


@dataclass(frozen=True)
class Provisioned:
    config: Path
    station: str
    fingerprint: str
    admin: str
    tls_fingerprint: str


def write_initial_config(path: Path, station_id: str, data_dir: Path) -> None:
    """The LAN UI over HTTPS on 8443; the kiosk's display on loopback HTTP 8080."""
    data = {
        "station": {"id": station_id, "data_dir": str(data_dir)},
        "web": {"host": "0.0.0.0", "port": 8443, "tls": True, "kiosk_port": 8080},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    load_config(path)  # the values given are checked before anything else is made


def provision(
    config_path: Path,
    admin: str,
    password: str,
    station_id: str | None = None,
    data_dir: Path | None = None,
    hostnames: list[str] | None = None,
    csr: bool = False,
) -> Provisioned:
    if not config_path.exists():
        if station_id is None:
            raise ProvisionError(f"{config_path} does not exist: name the station (--station-id) to create it")
        write_initial_config(config_path, station_id, data_dir or Path("/var/lib/recterm"))
    config = load_config(config_path)
    try:
        check_password(password)
    except AccountError as exc:
        raise ProvisionError(str(exc)) from None
    public = create_signing_key(config.keys_dir)
    cert = create_tls_certificate(config.keys_dir, config.station.id, hostnames or [], csr=csr)
    from appliance.station import log_origin  # the log's origin line is the station's to define

    db = StateDB(config.state_dir / "state.json")
    try:
        if db.call(has_admin):
            raise ProvisionError("this station has an administrator already: sign in and manage accounts there")
        row = {"username": admin, "name": admin, "roles": [Role.ADMIN.value], "password_hash": hash_secret(password)}
        try:
            db.call(lambda tdb: add_account(tdb, row))
        except AccountError as exc:
            raise ProvisionError(str(exc)) from None
    finally:
        db.close()
    events = EventLog(
        config.log_dir,
        origin=log_origin(config.station.id),
        signer=Signer(config.station.id, load_signing_key(config.keys_dir)),
    )
    try:
        events.append(
            "provisioned",
            {
                "station": config.station.id,
                "version": __version__,
                "key": fingerprint(public),
                "tls": certificate_fingerprint(cert),
                "admin": admin,
            },
        )
        events.append("account_created", {"username": admin, "roles": [Role.ADMIN.value], "by": "provision"})
    finally:
        events.close()
    return Provisioned(config_path, config.station.id, fingerprint(public), admin, certificate_fingerprint(cert))
