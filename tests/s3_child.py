"""Child process for the kill tests: upload one file to S3 with a persisted multipart state, then exit 0.

python -m tests.s3_child SETTINGS_JSON STATE_JSON SOURCE KEY SHA256
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from appliance.central.s3 import S3Store
from appliance.config import S3Section
from appliance.state.db import StateDB


def main() -> None:
    settings_json, state, source, key, sha256 = sys.argv[1:6]
    db = StateDB(Path(state))
    try:
        S3Store(S3Section.model_validate(json.loads(settings_json)), db).put(key, Path(source), sha256)
    finally:
        db.close()


if __name__ == "__main__":
    main()
