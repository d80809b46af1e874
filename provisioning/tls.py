"""The station's TLS key and certificate for the LAN UI: made on the device at provisioning, never shipped.

Self-signed by default (staff pin it on first visit, or the bureau installs it); ``csr`` also writes a
certificate signing request for the bureau's CA, whose answer replaces ``station-tls.crt``. ECDSA P-256.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from pathlib import Path

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.state.atomic import atomic_write_bytes

TLS_KEY = "station-tls.key"
TLS_CERT = "station-tls.crt"
TLS_CSR = "station-tls.csr"
VALID_DAYS = 5 * 365


def _names(station_id: str, extra: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(f"{station_id}.local"), x509.DNSName("localhost")]
    for name in extra:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    return names


def create_tls_certificate(keys_dir: Path, station_id: str, hostnames: list[str] = (), csr: bool = False) -> Path:  # type: ignore[assignment]
    """Make the TLS key (0600) and a self-signed certificate unless they exist; optionally a CSR. Returns
    the certificate path."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    cert_path = keys_dir / TLS_CERT
    if (keys_dir / TLS_KEY).exists() and cert_path.exists():
        return cert_path
    key = ec.generate_private_key(ec.SECP256R1())
    atomic_write_bytes(
        keys_dir / TLS_KEY,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        mode=0o600,
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{station_id}.local")])
    san = x509.SubjectAlternativeName(_names(station_id, list(hostnames)))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    if csr:
        request = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(san, critical=False)
        atomic_write_bytes(
            keys_dir / TLS_CSR, request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), mode=0o644
        )
    return cert_path


def certificate_fingerprint(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return "SHA256:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def rotate_tls_certificate(keys_dir: Path, station_id: str, hostnames: list[str] = ()) -> dict[str, str]:  # type: ignore[assignment]
    """Replace the TLS key and certificate with new ones. The old certificate is kept under ``retired/``
    (its private key is destroyed); the returned link, signed by the old key and by the new one, says which
    key follows which, for the event log."""
    old_key = serialization.load_pem_private_key((keys_dir / TLS_KEY).read_bytes(), password=None)
    old_cert_path = keys_dir / TLS_CERT
    old_fingerprint = certificate_fingerprint(old_cert_path)
    retired = keys_dir / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    atomic_write_bytes(retired / f"{stamp}-{TLS_CERT}", old_cert_path.read_bytes(), mode=0o644)
    (keys_dir / TLS_KEY).unlink()
    old_cert_path.unlink()
    new_cert_path = create_tls_certificate(keys_dir, station_id, list(hostnames))
    new_key = serialization.load_pem_private_key((keys_dir / TLS_KEY).read_bytes(), password=None)
    link = {"kind": "tls", "station": station_id, "old": old_fingerprint, "new": certificate_fingerprint(new_cert_path)}
    message = rfc8785.dumps(link)
    assert isinstance(old_key, ec.EllipticCurvePrivateKey) and isinstance(new_key, ec.EllipticCurvePrivateKey)
    return link | {
        "old_sig": base64.b64encode(old_key.sign(message, ec.ECDSA(hashes.SHA256()))).decode(),
        "new_sig": base64.b64encode(new_key.sign(message, ec.ECDSA(hashes.SHA256()))).decode(),
        "new_cert": new_cert_path.read_text(),
        "old_cert": f"retired/{stamp}-{TLS_CERT}",
    }
