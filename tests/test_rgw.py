"""The S3 test server itself: a real gateway that enforces Object Lock, stopped and restarted by PID."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.rgw import Rgw


def test_gateway_enforces_compliance_lock_and_survives_a_gateway_restart(rgw: Rgw) -> None:
    s3 = rgw.client()
    bucket = rgw.new_bucket()
    body = b"locked bytes"
    put = s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=body,
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1),
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key="k", VersionId=put["VersionId"])
    rgw.script("rgw-stop")
    rgw.script("rgw-start")
    got = rgw.client().get_object(Bucket=bucket, Key="k", VersionId=put["VersionId"])
    assert got["Body"].read() == body and got["ObjectLockMode"] == "COMPLIANCE"
