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
