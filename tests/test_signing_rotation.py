"""Signing key rotation: a running station hands its log and manifests to a new key; `recterm verify` and
`recterm audit` follow the chain through the key history and fail, naming what, when it does not hold."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tinydb import Query

from appliance.cli import main
from appliance.config import StationConfig
from appliance.eventlog import EventLog, Signer
from appliance.evidence import manifest
from appliance.evidence.keychain import HISTORY_FILE, ROTATION_EVENT, fingerprint, read_history
from appliance.offload import RECORDINGS
from appliance.station import Station, log_origin
from provisioning.keys import NEXT_KEY, SIGNING_KEY, load_signing_key, recover_signing_key, rotate_signing_key
from tests.conftest import add_account, register_cameras, signed_in, wait_until
from tests.rgw import Rgw, bucket_log_receipts
from tests.test_s3_upload import s3_config

Ctx = tuple[StationConfig, Path, Ed25519PrivateKey, int]


def stored(station, statuses: tuple[str, ...] = ("verified", "uploaded")) -> list[dict]:
    return station.station.db.call(lambda tdb: tdb.table(RECORDINGS).search(Query().status.one_of(statuses)))


def entries(config: StationConfig) -> list[dict]:
    return [json.loads(line) for line in (config.log_dir / "entries.jsonl").read_text().splitlines()]


@pytest.fixture
def rotated(tmp_path: Path, world, sim_server, config: StationConfig, start_station) -> Ctx:
    """Two recordings under the first key, a rotation through the admin route, two under the second; every
    recording uploaded to the archive. Returns (config, copy of the data dir, the old private key, rotation
    entry index)."""
    world.create_camera("CAMROT1", fs_type="exfat", size_mib=40, clips=2)
    world.create_camera("CAMROT2", fs_type="exfat", size_mib=40, clips=2)
    register_cameras(config, "CAMROT1", "CAMROT2")
    station = start_station(serve_web=True)
    url = f"http://127.0.0.1:{config.web.port}"
    add_account(station, "chief", "admin")
    add_account(station, "sup", "supervisor")
    sim_server.dock("CAMROT1", 1)
    wait_until(lambda: len(stored(station)) == 2, 60, "first offload")
    old_key = load_signing_key(config.keys_dir)  # what an attacker who kept the retired key holds

    with signed_in(url, "sup") as supervisor:
        assert supervisor.post("/api/keys/signing/rotate").status_code == 403
    assert not (config.keys_dir / HISTORY_FILE).exists()
    with signed_in(url, "chief") as admin:
        answer = admin.post("/api/keys/signing/rotate")
    assert answer.status_code == 200, answer.text
    new_key = load_signing_key(config.keys_dir)
    assert answer.json()["old"] == fingerprint(old_key.public_key()) != answer.json()["new"]
    assert answer.json()["new"] == fingerprint(new_key.public_key())
    assert (config.keys_dir / SIGNING_KEY).stat().st_mode & 0o777 == 0o600
    index = answer.json()["log_index"]

    sim_server.dock("CAMROT2", 2)
    wait_until(lambda: len(stored(station)) == 4, 60, "second offload")
    wait_until(lambda: len(stored(station, ("uploaded",))) == 4, 60, "uploads to the archive")
    segments = config.archive_dir / "test-station" / "log" / "entries"
    wait_until(
        lambda: b"".join(p.read_bytes() for p in segments.glob("*.jsonl")).count(b'"upload_receipt"') == 4,
        30,
        "the log with every receipt in the archive",
    )
    station.stop()
    copy = tmp_path / "copy"
    shutil.copytree(config.station.data_dir, copy)
    for path in copy.rglob("*"):
        if path.is_file():
            path.chmod(0o644)  # the store is read-only; the attacker is not bound by that
    return config, copy, old_key, index


def run_verify(data_dir: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", str(data_dir), *extra])
    return result.exit_code, result.output


def manifests_by_index(data_dir: Path) -> dict[int, Path]:
    found = {}
    for path in (data_dir / "store" / "manifests").rglob("*.json"):
        found[json.loads(path.read_bytes())["ingest"]["log_index"]] = path
    return found


def test_rotation_is_logged_and_the_whole_history_verifies(rotated: Ctx) -> None:
    config, copy, old_key, index = rotated
    logged = entries(config)
    rotation = logged[index]
    assert rotation["type"] == ROTATION_EVENT and rotation["body"]["by"] == "chief"
    assert rotation["body"]["link"]["old"] == fingerprint(old_key.public_key())
    [retired] = read_history(config.keys_dir)
    assert fingerprint(retired.public) == fingerprint(old_key.public_key()) and retired.link == rotation["body"]["link"]
    old_id, new_id = (
        manifest.key_id(old_key.public_key()),
        manifest.key_id(load_signing_key(config.keys_dir).public_key()),
    )
    signers = {i: json.loads(p.read_bytes())["signatures"][0]["key_id"] for i, p in manifests_by_index(copy).items()}
    assert sorted(signers.values()) == sorted([new_id, new_id, old_id, old_id])
    assert all((key == old_id) == (i < index) for i, key in signers.items())
    # The old key's last checkpoint covers everything before the rotation; the new key's first covers it.
    notes = config.log_dir / "checkpoints"
    assert (notes / f"{index:012d}.note").exists() and (notes / f"{index + 1:012d}.note").exists()

    code, output = run_verify(copy)
    assert code == 0, output
    assert "4 recordings, 4 manifests" in output
    # A pinned single key is the old behaviour: no history, so the first key's signatures are unknown.
    code, output = run_verify(copy, "--pubkey", str(copy / "keys" / "station-signing.pub.pem"))
    assert code == 1 and "the log records 1 signing key rotations, the key history holds 0" in output

    archive = str(config.archive_dir / "test-station")
    audited = CliRunner().invoke(main, ["audit", archive, "--keys", str(config.keys_dir)])
    assert audited.exit_code == 0, audited.output
    assert "4 recordings, 4 manifests" in audited.output
    pinned = CliRunner().invoke(main, ["audit", archive, "--pubkey", str(config.keys_dir / "station-signing.pub.pem")])
    assert pinned.exit_code == 1 and "signing key rotations" in pinned.output


def test_removed_key_history_fails(rotated: Ctx) -> None:
    _config, copy, _old, _index = rotated
    (copy / "keys" / HISTORY_FILE).unlink()
    code, output = run_verify(copy)
    assert code == 1
    assert f"{HISTORY_FILE}: the log records 1 signing key rotations, the key history holds 0 retired keys" in output
    assert "checkpoints/" in output and "signature or format invalid" in output


def test_altered_key_history_fails(rotated: Ctx) -> None:
    _config, copy, _old, index = rotated
    path = copy / "keys" / HISTORY_FILE
    history = json.loads(path.read_bytes())
    impostor = Ed25519PrivateKey.generate().public_key()  # consistent record, but not the key the log retired
    history["retired"][0]["public_pem"] = impostor.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    history["retired"][0]["fingerprint"] = fingerprint(impostor)
    path.write_text(json.dumps(history))
    code, output = run_verify(copy)
    assert code == 1
    assert f"log entry {index} ({ROTATION_EVENT}): link names" in output and "as the old key" in output

    history["retired"][0]["fingerprint"] = "SHA256:" + "0" * 64  # and a record that contradicts itself
    path.write_text(json.dumps(history))
    code, output = run_verify(copy)
    assert code == 1 and "retired key 0 does not have the fingerprint it names" in output


def test_post_rotation_manifest_resigned_with_the_retired_key_fails(rotated: Ctx) -> None:
    _config, copy, old_key, index = rotated
    after = max(manifests_by_index(copy).items())
    assert after[0] > index
    body = json.loads(after[1].read_bytes())
    body["officers"] = [{"police_no": "999999", "name": "someone else"}]  # what the forger wants to say
    body["signatures"] = []
    after[1].write_bytes(manifest.encode(manifest.sign(body, old_key)))
    code, output = run_verify(copy)
    assert code == 1
    name = f"store/manifests/{after[1].parent.name}/{after[1].name}"
    assert f"{name}: signed by key {manifest.key_id(old_key.public_key())[:16]}" in output
    assert f"not the station's key at its ingest entry {after[0]}" in output
    assert "checkpoints/" not in output  # the log itself still holds: only the forged manifest is named


def test_broken_new_key_signature_on_the_link_fails(rotated: Ctx) -> None:
    _config, copy, _old, index = rotated
    path = copy / "log" / "entries.jsonl"
    lines = path.read_bytes().splitlines()
    entry = json.loads(lines[index])
    signature = bytearray(base64.b64decode(entry["body"]["link"]["new_sig"]))
    signature[0] ^= 0x01
    entry["body"]["link"]["new_sig"] = base64.b64encode(bytes(signature)).decode()
    lines[index] = rfc8785.dumps(entry)
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, output = run_verify(copy)
    assert code == 1
    assert f"log entry {index} ({ROTATION_EVENT}): link signature by the new key" in output


def test_an_interrupted_rotation_is_finished_at_the_next_start(config: StationConfig) -> None:
    """Power cut after the keys changed on disk, before the log heard of it: the next start logs the link."""
    signer = Signer("test-station", load_signing_key(config.keys_dir))
    events = EventLog(config.log_dir, origin=log_origin("test-station"), signer=signer)
    events.append("boot", {})
    context = {"station": "test-station", "origin": events.origin, "log_size": events.size}
    context["log_root"] = base64.b64encode(events.root()).decode()
    events.checkpoint()
    link = rotate_signing_key(config.keys_dir, context)
    events.close()  # the power cut: nothing after the key change reached the log (the close signs nothing new)
    station = Station(config)
    try:
        last = station.events.entry(station.events.size - 1)
        assert last.type == ROTATION_EVENT and last.body["link"] == link and last.seq == 1
    finally:
        station.events.close()
        station.db.close()
    code, output = run_verify(config.station.data_dir)
    assert code == 0, output


def test_a_half_written_new_key_is_dropped(config: StationConfig) -> None:
    before = fingerprint(load_signing_key(config.keys_dir).public_key())
    (config.keys_dir / NEXT_KEY).write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    recover_signing_key(config.keys_dir)  # the history never named it: the rotation had not happened
    assert not (config.keys_dir / NEXT_KEY).exists()
    assert fingerprint(load_signing_key(config.keys_dir).public_key()) == before


def test_audit_of_an_s3_upload_follows_the_key_history(
    rgw: Rgw, tmp_path: Path, world, sim_server, start_station
) -> None:
    """Against the real RGW: segments and checkpoints from both keys, under COMPLIANCE lock."""
    bucket = rgw.new_bucket()
    config = s3_config(tmp_path, world, rgw, bucket)
    world.create_camera("CAMROT3", fs_type="exfat", size_mib=40, clips=1)
    world.create_camera("CAMROT4", fs_type="exfat", size_mib=40, clips=1)
    register_cameras(config, "CAMROT3", "CAMROT4")
    station = start_station(cfg=config)
    sim_server.dock("CAMROT3", 1)
    wait_until(lambda: len(stored(station, ("uploaded",))) == 1, 60, "first upload")
    station.call(station.station.rotate_signing_key("test"))
    sim_server.dock("CAMROT4", 2)
    wait_until(lambda: len(stored(station, ("uploaded",))) == 2, 60, "second upload")
    s3 = rgw.client()

    wait_until(lambda: bucket_log_receipts(s3, bucket) == 2, 30, "the log with both receipts in the bucket")
    station.stop()
    base = ["audit", f"s3://{bucket}/test-station", "--endpoint", rgw.endpoint]
    base += ["--credentials", str(config.central.s3.credentials_file)]
    result = CliRunner().invoke(main, [*base, "--keys", str(config.keys_dir)])
    assert result.exit_code == 0, result.output
    assert "2 recordings, 2 manifests" in result.output
    (config.keys_dir / HISTORY_FILE).unlink()
    result = CliRunner().invoke(main, [*base, "--keys", str(config.keys_dir)])
    assert result.exit_code == 1 and "the key history holds 0 retired keys" in result.output
