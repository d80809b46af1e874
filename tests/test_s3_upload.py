"""Docked recordings reach the real S3 store (Ceph RGW) with manifests, locks, receipts and the log."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tinydb import Query

from appliance.central.uploader import manifest_key
from appliance.config import load_config
from appliance.offload import RECORDINGS
from tests.conftest import register_cameras, wait_until, write_config
from tests.rgw import Rgw
from tests.test_kiosk import staff


def s3_config(tmp_path: Path, world, rgw: Rgw, bucket: str, **extra: object):
    central = {
        **extra,
        "kind": "s3",
        "s3": {
            "endpoint": rgw.endpoint,
            "bucket": bucket,
            "credentials_file": str(rgw.credentials_file(tmp_path)),
            "part_size_mib": 5,
            "concurrency": 2,
        },
    }
    return load_config(write_config(tmp_path, world, central=central))


def rows(station, status: str) -> list[dict]:
    return station.station.db.call(lambda tdb: tdb.table(RECORDINGS).search(Query().status == status))


def test_docked_recordings_reach_s3_locked_with_manifest_receipt_and_log(
    rgw: Rgw, tmp_path: Path, world, sim_server, start_station
) -> None:
    bucket = rgw.new_bucket()
    config = s3_config(tmp_path, world, rgw, bucket)
    world.create_camera("CAMS3A1", fs_type="exfat", size_mib=40, clips=2)
    register_cameras(config, "CAMS3A1")
    station = start_station(cfg=config)
    sim_server.dock("CAMS3A1", 1)
    wait_until(lambda: len(rows(station, "uploaded")) == 2, 60, "upload to S3")
    s3 = rgw.client()
    receipts = {e.body["key"]: e.body for e in station.station.events.entries() if e.type == "upload_receipt"}
    for row in rows(station, "uploaded"):
        key = row["archive_key"]
        assert key.startswith(f"test-station/{row['camera_mtime'][:10]}/CAMS3A1/unassigned/")
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockLegalHoldStatus"] == "ON"  # unclassified
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == row["sha256"]
        manifest = s3.get_object(Bucket=bucket, Key=manifest_key(key))
        assert manifest["Body"].read() == (config.store_dir / row["manifest"]).read_bytes()
        assert manifest["ObjectLockMode"] == "COMPLIANCE"
        assert receipts[key]["target"] == "s3" and receipts[key]["etag"] == head["ETag"].strip('"')
        assert receipts[key]["lock"]["legal_hold"] is True

    def uploaded_log() -> bytes:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="test-station/log/entries/").get("Contents", [])
        return b"".join(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing)

    wait_until(lambda: b'"type":"upload_receipt"' in uploaded_log(), 30, "the log with the receipts in the bucket")
    local = (config.log_dir / "entries.jsonl").read_bytes()
    assert local.startswith(uploaded_log())  # contiguous segments, byte for byte the station's log
    checkpoints = s3.list_objects_v2(Bucket=bucket, Prefix="test-station/log/checkpoints/")["Contents"]
    assert checkpoints and all(o["Key"].endswith(".note") for o in checkpoints)


def test_store_down_for_a_while_loses_nothing_and_everything_arrives(
    rgw: Rgw, tmp_path: Path, world, sim_server, start_station
) -> None:
    bucket = rgw.new_bucket()
    config = s3_config(tmp_path, world, rgw, bucket)
    world.create_camera("CAMS3B1", fs_type="exfat", size_mib=60, clips=3)
    register_cameras(config, "CAMS3B1")
    rgw.script("rgw-stop")
    try:
        station = start_station(cfg=config)
        sim_server.dock("CAMS3B1", 1)
        wait_until(lambda: len(rows(station, "verified")) == 3, 60, "local offload while the store is down")
        uploader = station.station.uploader
        assert uploader is not None
        wait_until(lambda: uploader.breaker.failures >= 2, 60, "failed attempts while the store is down")
        for row in rows(station, "verified"):  # nothing counted, nothing lost
            assert station.station.store.object_path(row["sha256"]).is_file()
        assert not [e for e in station.station.events.entries() if e.type == "upload_receipt"]
    finally:
        rgw.script("rgw-start")
    wait_until(lambda: len(rows(station, "uploaded")) == 3, 120, "uploads after the store came back")
    s3 = rgw.client()
    for row in rows(station, "uploaded"):
        body = s3.get_object(Bucket=bucket, Key=row["archive_key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == row["sha256"]
        assert station.station.store.object_path(row["sha256"]).is_file()
    # The pass that uploaded the last recording may still have met the store restarting on the log upload:
    # the breaker closes with the next clean pass.
    wait_until(lambda: uploader.breaker.failures == 0, 60, "the breaker closed again")


def test_recordings_near_their_deadline_raise_the_alarm_until_they_arrive(
    rgw: Rgw, tmp_path: Path, world, sim_server, start_station
) -> None:
    # Margin larger than 003's 24 hours: every pending recording is "near"; a missing bucket keeps them pending.
    config = s3_config(tmp_path, world, rgw, "no-such-bucket-here", alert_margin_h=48)
    world.create_camera("CAMS3C1", fs_type="exfat", size_mib=40, clips=1)
    register_cameras(config, "CAMS3C1")
    station = start_station(cfg=config, serve_web=True)
    sim_server.dock("CAMS3C1", 1)
    wait_until(lambda: len(rows(station, "verified")) == 1, 60, "local offload")

    def alarm_keys() -> list[str]:
        return [a["key"] for a in station.station.alarms.active()]

    wait_until(lambda: "upload_deadline" in alarm_keys(), 30, "the upload deadline alarm")
    alarm = next(a for a in station.station.alarms.active() if a["key"] == "upload_deadline")
    assert alarm["message"] == "alarm.upload_deadline" and "1 near deadline, 0 overdue" in alarm["detail"]
    assert station.station.uploader is not None and station.station.uploader.overdue() == []
    with staff(station) as http:  # the admin page's list
        [listed] = http.get("/api/uploads/at-risk").json()
        assert listed["camera_serial"] == "CAMS3C1" and listed["overdue"] is False and listed["deadline"]
    rgw.client().create_bucket(Bucket="no-such-bucket-here", ObjectLockEnabledForBucket=True)
    wait_until(lambda: len(rows(station, "uploaded")) == 1, 60, "the upload once the bucket exists")
    wait_until(lambda: "upload_deadline" not in alarm_keys(), 30, "the alarm to clear")
