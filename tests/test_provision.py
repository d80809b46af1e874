"""`recterm provision`: no default credentials; the first administrator is set here, once, and signs in."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.config import load_config
from appliance.security.accounts import accounts
from appliance.state.db import StateDB
from provisioning.tls import certificate_fingerprint
from tests.conftest import free_port, signed_in, wait_until, web_client, write_config

PASSWORD = "a long admin passphrase"


def recterm(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("recterm")
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_provision_sets_the_first_administrator_once(tmp_path: Path, start_station, world) -> None:
    config_path = tmp_path / "new" / "station.toml"
    base = ["provision", "--config", str(config_path), "--admin", "chief", "--password-stdin"]
    missing = recterm(*base, stdin=PASSWORD + "\n")
    assert missing.returncode == 1 and "--station-id" in missing.stderr and not config_path.exists()

    new = [*base, "--station-id", "prov-01", "--data-dir", str(tmp_path / "data"), "--csr"]
    weak = recterm(*new, stdin="short\n")
    assert weak.returncode == 1 and "password" in weak.stderr

    done = recterm(*new, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert "station prov-01 provisioned" in done.stdout and "signing key SHA256:" in done.stdout
    config = load_config(config_path)
    assert (config.keys_dir / "station-signing.pem").stat().st_mode & 0o777 == 0o600
    assert (config.keys_dir / "station-tls.key").stat().st_mode & 0o777 == 0o600
    assert (config.web.tls, config.web.port, config.web.kiosk_port) == (True, 8443, 8080)
    csr = x509.load_pem_x509_csr((config.keys_dir / "station-tls.csr").read_bytes())
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=prov-01.local"
    db = StateDB(config.state_dir / "state.json")
    rows = db.call(accounts)
    db.close()
    assert [(r["username"], r["roles"]) for r in rows] == [("chief", ["admin"])]
    assert rows[0]["password_hash"].startswith("scrypt$") and PASSWORD not in json.dumps(rows)
    logged = [json.loads(line) for line in (config.log_dir / "entries.jsonl").read_text().splitlines()]
    assert [e["type"] for e in logged] == ["provisioned", "account_created"]

    again = recterm(*base, stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "administrator already" in again.stderr

    # The station (its devices simulated here) runs with that administrator, and with no other account:
    # the UI over HTTPS with the certificate made above, the kiosk's display on loopback HTTP.
    web = {"host": "127.0.0.1", "port": free_port(), "tls": True, "kiosk_port": free_port()}
    station_section = {"id": "prov-01", "data_dir": str(tmp_path / "data")}
    cfg = load_config(write_config(tmp_path, world, station=station_section, web=web))
    station = start_station(serve_web=True, cfg=cfg)
    url, kiosk_url = f"https://127.0.0.1:{cfg.web.port}", f"http://127.0.0.1:{cfg.web.kiosk_port}"
    trust = ssl.create_default_context(cafile=str(cfg.keys_dir / "station-tls.crt"))
    wait_until(lambda: _answers(url, trust), 30, "web server")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url + "/api/health")  # self-signed: a client must be given the station's certificate
    with signed_in(url, "chief", PASSWORD, verify=trust) as admin:
        assert admin.get("/api/accounts").json()[0]["username"] == "chief"
        cookie = next(c for c in admin.cookies.jar if c.name == "recterm_session")
        assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
        assert admin.get("/api/health").headers["strict-transport-security"].startswith("max-age=")
    assert "kiosk" in httpx.get(kiosk_url + "/kiosk").text  # the display's own listener

    # TLS key rotation: new connections get the new certificate at once; the log links old and new keys.
    old_pem = (cfg.keys_dir / "station-tls.crt").read_bytes()
    with signed_in(url, "chief", PASSWORD, verify=trust) as admin:
        rotated = admin.post("/api/keys/tls/rotate")
    assert rotated.status_code == 200, rotated.text
    new_pem = (cfg.keys_dir / "station-tls.crt").read_bytes()
    assert new_pem != old_pem and certificate_fingerprint(cfg.keys_dir / "station-tls.crt") == rotated.json()["new"]
    served = ssl.get_server_certificate(("127.0.0.1", cfg.web.port)).encode()
    assert x509.load_pem_x509_certificate(served) == x509.load_pem_x509_certificate(new_pem)
    link = [e["body"] for e in map(json.loads, (cfg.log_dir / "entries.jsonl").read_text().splitlines())][-1]
    statement = rfc8785.dumps({k: link[k] for k in ("kind", "station", "old", "new")})
    old_key = x509.load_pem_x509_certificate(old_pem).public_key()
    new_key = x509.load_pem_x509_certificate(new_pem).public_key()
    old_key.verify(base64.b64decode(link["old_sig"]), statement, ec.ECDSA(hashes.SHA256()))  # raises if forged
    new_key.verify(base64.b64decode(link["new_sig"]), statement, ec.ECDSA(hashes.SHA256()))
    assert link["by"] == "chief" and (cfg.keys_dir / link["old_cert"]).read_bytes() == old_pem
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url + "/api/health", verify=trust)  # a client pinned to the old certificate notices
    trust = ssl.create_default_context(cafile=str(cfg.keys_dir / "station-tls.crt"))
    with web_client(url, verify=trust) as anyone:
        for username, password in [("admin", "admin"), ("admin", "password"), ("root", "root"), ("chief", "chief")]:
            assert anyone.post("/api/auth/signin", json={"username": username, "password": password}).status_code == 401
    station.stop()


def _answers(url: str, trust: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url + "/api/health", timeout=2, verify=trust).status_code == 200
    except httpx.HTTPError:
        return False
