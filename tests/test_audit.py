"""`recterm audit`: passes on an honest upload, fails naming the object on tampering (real RGW, archive dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner, Result
from tinydb import Query

from appliance.cli import main
from appliance.offload import RECORDINGS
from tests.conftest import register_cameras, wait_until
from tests.rgw import Rgw, bucket_log_receipts
from tests.test_s3_upload import s3_config


def uploaded_rows(station) -> list[dict]:
    return station.station.db.call(lambda tdb: tdb.table(RECORDINGS).search(Query().status == "uploaded"))


@pytest.fixture(scope="module")
def honest(rgw: Rgw, tmp_path_factory: pytest.TempPathFactory):
    """One station run uploading two recordings into a locked bucket; (bucket, credentials, pubkey, keys)."""
    from devices.sim.server import SimServer
    from devices.sim.world import SimWorld
    from tests.conftest import BAYS, RunningStation, port_for

    tmp_path = tmp_path_factory.mktemp("audit")
    world = SimWorld(tmp_path / "sim")
    world.init({n: port_for(n) for n in range(1, BAYS + 1)})
    server = SimServer(world, charge_interval_s=0.5)
    server.start()
    bucket = rgw.new_bucket()
    config = s3_config(tmp_path, world, rgw, bucket)
    world.create_camera("CAMAUD1", fs_type="exfat", size_mib=40, clips=2)
    register_cameras(config, "CAMAUD1")
    station = RunningStation(config, serve_web=False)
    try:
        server.dock("CAMAUD1", 1)
        wait_until(lambda: len(uploaded_rows(station)) == 2, 60, "uploads")
        keys = [r["archive_key"] for r in uploaded_rows(station)]
        s3 = rgw.client()

        wait_until(lambda: bucket_log_receipts(s3, bucket) == 2, 30, "the log with both receipts in the bucket")
    finally:
        station.stop()
        server.stop()
    yield bucket, config.central.s3.credentials_file, config.keys_dir / "station-signing.pub.pem", keys


def run_audit(rgw: Rgw, bucket: str, credentials: Path, pubkey: Path, *extra: str) -> Result:
    args = ["audit", f"s3://{bucket}/test-station", "--pubkey", str(pubkey), "--endpoint", rgw.endpoint]
    return CliRunner().invoke(main, [*args, "--credentials", str(credentials), *extra])


def unlocked_copy(rgw: Rgw, bucket: str) -> str:
    """The same objects in a bucket without Object Lock, where they can be tampered with."""
    s3 = rgw.client()
    copy = rgw.new_bucket(lock=False)
    for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        s3.copy_object(Bucket=copy, Key=obj["Key"], CopySource={"Bucket": bucket, "Key": obj["Key"]})
    return copy


def test_honest_upload_passes_the_audit(rgw: Rgw, honest) -> None:
    bucket, credentials, pubkey, _keys = honest
    result = run_audit(rgw, bucket, credentials, pubkey, "--policy", "003")
    assert result.exit_code == 0, result.output
    assert "OK:" in result.output and "2 recordings, 2 manifests" in result.output


def test_honest_copy_without_lock_fails_only_the_lock_check(rgw: Rgw, honest) -> None:
    bucket, credentials, pubkey, keys = honest
    copy = unlocked_copy(rgw, bucket)
    result = run_audit(rgw, copy, credentials, pubkey)
    assert result.exit_code == 1 and f"{keys[0]}: not under a COMPLIANCE lock" in result.output
    assert run_audit(rgw, copy, credentials, pubkey, "--no-lock-check").exit_code == 0


def test_altered_object_fails_naming_it(rgw: Rgw, honest) -> None:
    bucket, credentials, pubkey, keys = honest
    copy = unlocked_copy(rgw, bucket)
    rgw.client().put_object(Bucket=copy, Key=keys[1], Body=b"not the recording")
    result = run_audit(rgw, copy, credentials, pubkey, "--no-lock-check")
    assert result.exit_code == 1 and f"ERROR {keys[1]}: altered" in result.output
    assert f"{keys[0]}: altered" not in result.output


def test_missing_manifest_fails_naming_it(rgw: Rgw, honest) -> None:
    bucket, credentials, pubkey, keys = honest
    copy = unlocked_copy(rgw, bucket)
    rgw.client().delete_object(Bucket=copy, Key=keys[0] + ".manifest.json")
    result = run_audit(rgw, copy, credentials, pubkey, "--no-lock-check")
    assert result.exit_code == 1 and f"ERROR {keys[0]}.manifest.json: manifest missing for {keys[0]}" in result.output
    locks_too = run_audit(rgw, copy, credentials, pubkey)  # retention is read only of what is there
    assert locks_too.exit_code == 1 and f"manifest missing for {keys[0]}" in locks_too.output, locks_too.output


def test_rewritten_log_fails_naming_the_checkpoint(rgw: Rgw, honest) -> None:
    bucket, credentials, pubkey, _keys = honest
    copy = unlocked_copy(rgw, bucket)
    s3 = rgw.client()
    segment = next(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=copy, Prefix="test-station/log/entries/")["Contents"]
        if b"upload_receipt" in s3.get_object(Bucket=copy, Key=o["Key"])["Body"].read()
    )
    lines = s3.get_object(Bucket=copy, Key=segment)["Body"].read().splitlines()
    for i, line in enumerate(lines):  # rewrite history: the first receipt now names another object
        entry = json.loads(line)
        if entry["type"] == "upload_receipt":
            entry["body"]["key"] = entry["body"]["key"] + ".old"
            lines[i] = rfc8785.dumps(entry)
            break
    s3.put_object(Bucket=copy, Key=segment, Body=b"\n".join(lines) + b"\n")
    result = run_audit(rgw, copy, credentials, pubkey, "--no-lock-check")
    assert result.exit_code == 1
    assert "test-station/log/checkpoints/" in result.output and "no longer produces this signed root" in result.output


def test_archive_directory_audit(world, sim_server, config, start_station) -> None:
    world.create_camera("CAMAUD2", fs_type="exfat", size_mib=40, clips=1)
    register_cameras(config, "CAMAUD2")
    station = start_station()
    sim_server.dock("CAMAUD2", 1)
    wait_until(lambda: len(uploaded_rows(station)) == 1, 30, "upload to the archive")
    segments = config.archive_dir / "test-station" / "log" / "entries"
    wait_until(
        lambda: any(b"upload_receipt" in p.read_bytes() for p in segments.glob("*.jsonl")), 30, "the log in the archive"
    )
    pubkey = config.keys_dir / "station-signing.pub.pem"
    target = str(config.archive_dir / "test-station")
    result = CliRunner().invoke(main, ["audit", target, "--pubkey", str(pubkey)])
    assert result.exit_code == 0, result.output
    key = uploaded_rows(station)[0]["archive_key"]
    stored = config.archive_dir / key
    stored.chmod(0o644)
    stored.write_bytes(b"tampered")
    result = CliRunner().invoke(main, ["audit", target, "--pubkey", str(pubkey)])
    assert result.exit_code == 1 and f"ERROR {key}: altered" in result.output


# -- every ingest accounted for, retention as its class demands (issue 15, hole 2) ---------------------------


def test_a_recording_never_uploaded_is_pending_within_its_deadline_and_missing_after(
    rgw: Rgw, tmp_path: Path, world, sim_server
) -> None:
    """The station ingests three recordings, loses one from its state before uploading (a bug, a tampered
    station) and uploads the other two with its log: the audit must find the third from the log alone."""
    from datetime import UTC, datetime, timedelta

    from appliance.central.audit import S3Bucket, audit
    from appliance.evidence.verify import key_chain, load_public_key
    from appliance.state.db import StateDB
    from tests.conftest import RunningStation

    bucket = rgw.new_bucket()
    offline = s3_config(tmp_path, world, rgw, f"t-absent-{bucket[2:]}")  # no such bucket: nothing goes up
    world.create_camera("CAMAUD3", fs_type="exfat", size_mib=40, clips=3)
    register_cameras(offline, "CAMAUD3")
    station = RunningStation(offline, serve_web=False)
    try:
        sim_server.dock("CAMAUD3", 1)
        wait_until(lambda: len(rows_with(station, "verified")) == 3, 60, "three recordings offloaded")
        lost = rows_with(station, "verified")[0]
    finally:
        station.stop()
    sim_server.undock(1)  # the camera leaves, still holding them all (003: freed only after the upload)
    db = StateDB(offline.state_dir / "state.json")
    try:
        db.call(lambda tdb: tdb.table(RECORDINGS).remove(Query().key == lost["key"]))
    finally:
        db.close()
    config = s3_config(tmp_path, world, rgw, bucket)
    station = RunningStation(config, serve_web=False)
    try:
        wait_until(lambda: len(uploaded_rows(station)) == 2, 60, "the two recordings it still knows uploaded")
        wait_until(lambda: bucket_log_receipts(rgw.client(), bucket) == 2, 30, "the log with both receipts")
    finally:
        station.stop()
    pubkey = config.keys_dir / "station-signing.pub.pem"

    result = run_audit(rgw, bucket, config.central.s3.credentials_file, pubkey)  # policy: the boot entry's 003
    assert result.exit_code == 0, result.output
    ingest = f"(ingest of CAMAUD3:{lost['camera_path']}): not yet received"
    assert f"PENDING log entry {lost['ingest_seq']} {ingest}" in result.output
    assert "ingests: 2 received, 1 pending, 0 missing" in result.output

    chain = key_chain(load_public_key(pubkey), None, pubkey.parent)
    later = datetime.fromisoformat(lost["ingested_at"]) + timedelta(hours=25)  # 003 Art. 16: 24 hours
    report = audit(S3Bucket(rgw.client(), bucket), "test-station", chain, now=later)
    assert not report.ok and report.ingests is not None
    assert (report.ingests.received, report.ingests.pending, report.ingests.missing) == (2, 0, 1)
    [missing] = [str(f) for f in report.findings if f.error]
    assert missing.startswith(f"ERROR log entry {lost['ingest_seq']} (ingest of CAMAUD3:{lost['camera_path']}): ")
    assert "no upload receipt, due " in missing
    assert datetime.now(UTC) < later  # the same store, judged a day later


def rows_with(station, status: str) -> list[dict]:
    return station.station.db.call(lambda tdb: tdb.table(RECORDINGS).search(Query().status == status))


def relocked_copy(rgw: Rgw, bucket: str, weaker: dict[str, dict]) -> str:
    """The objects in a new locked bucket under the locks they have, except ``weaker``: key -> lock fields."""
    import base64
    import hashlib

    s3 = rgw.client()
    copy = rgw.new_bucket()
    for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        key = obj["Key"]
        got = s3.get_object(Bucket=bucket, Key=key)
        body = got["Body"].read()
        lock = {
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": got["ObjectLockRetainUntilDate"],
            "ObjectLockLegalHoldStatus": got.get("ObjectLockLegalHoldStatus", "OFF"),
        } | weaker.get(key, {})
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        s3.put_object(Bucket=copy, Key=key, Body=body, ContentMD5=md5, **lock)
    return copy


def test_an_object_locked_shorter_than_its_class_demands_is_reported(rgw: Rgw, honest) -> None:
    from datetime import timedelta

    bucket, credentials, pubkey, keys = honest
    s3 = rgw.client()
    until = s3.head_object(Bucket=bucket, Key=keys[0])["ObjectLockRetainUntilDate"]
    same = relocked_copy(rgw, bucket, {})
    assert run_audit(rgw, same, credentials, pubkey).exit_code == 0  # the copy itself is faithful
    copy = relocked_copy(
        rgw,
        bucket,
        {
            keys[0]: {"ObjectLockRetainUntilDate": until - timedelta(days=1)},  # a day short, hold still on
            keys[1] + ".manifest.json": {"ObjectLockLegalHoldStatus": "OFF"},  # unclassified needs the hold
        },
    )
    result = run_audit(rgw, copy, credentials, pubkey)
    assert result.exit_code == 1, result.output
    short = (until - timedelta(days=1)).isoformat()
    assert (
        f"ERROR {keys[0]}: retention until {short}, legal hold, but its class unclassified needs at least "
        f"retention until {until.isoformat()}, legal hold"
    ) in result.output
    assert f"ERROR {keys[1]}.manifest.json: retention until {until.isoformat()}, no legal hold" in result.output
    assert result.output.count("ERROR") == 2, result.output
