"""Access approvals on a running station over HTTP, with recordings offloaded from a simulated camera:
request -> approve -> view -> log entry; the export bundle verifies; an expired grant refuses; scope,
requester and role limits; officers see only their own recordings' metadata."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import httpx
from cryptography.hazmat.primitives import serialization

from appliance.evidence import manifest
from appliance.offload import RECORDINGS
from tests.conftest import add_account, register_cameras, signed_in, wait_until

A, B = "110001", "110002"


def events(station, type_: str) -> list[dict]:
    lines = (station.config.log_dir / "entries.jsonl").read_text().splitlines()
    return [e["body"] for e in map(json.loads, lines) if e["type"] == type_]


def answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_request_approve_view_export_and_expiry(world, sim_server, config, start_station) -> None:
    world.create_camera("CAMACC1", fs_type="vfat", size_mib=40, clips=2)
    register_cameras(config, "CAMACC1")
    station = start_station(serve_web=True)
    url = f"http://127.0.0.1:{config.web.port}"
    wait_until(lambda: answers(url), 30, "web server")
    # Officer A had the camera on duty before it came back (the check-out service writes such rows).
    issued = (datetime.now(UTC) - timedelta(hours=3)).isoformat(timespec="seconds")
    duty = {"id": "duty1", "camera": "CAMACC1", "bay": 1, "officers": [{"police_no": A, "name": "A"}], "due_at": issued}
    station.station.db.call(lambda db: db.table("assignments").insert(duty | {"issued_at": issued, "status": "out"}))
    sim_server.dock("CAMACC1", 1)
    station.wait_bay(1, "ready")
    keys = sorted(r["key"] for r in station.station.db.call(lambda db: db.table(RECORDINGS).all()))
    assert len(keys) == 2
    mine, other = keys
    add_account(station, "off.a", "officer", police_no=A)
    add_account(station, "off.b", "officer", police_no=B)
    add_account(station, "sup1", "supervisor")
    add_account(station, "sup2", "supervisor")
    add_account(station, "audit1", "auditor")

    with signed_in(url, "off.a") as a, signed_in(url, "off.b") as b, signed_in(url, "sup1") as sup:
        # Metadata: A's own recordings only; B's none; the supervisor all.
        listed = a.get("/api/recordings")
        assert isinstance(listed.json(), list), listed.text
        assert sorted(r["key"] for r in listed.json()) == keys
        assert b.get("/api/recordings").json() == []
        assert len(sup.get("/api/recordings").json()) == 2

        ask = {"kind": "export", "recordings": [mine], "purpose": "行政复议 case 2026-17: evidence for the hearing"}
        request = a.post("/api/access/requests", json=ask).json()
        rid = request["id"]
        assert request["status"] == "pending" and request["requester"] == "off.a"
        view = f"/api/access/requests/{rid}/view/{mine}"
        assert a.get(view).json() == {"detail": "access.error.no_grant"}  # not approved yet
        assert a.post(f"/api/access/requests/{rid}/decision", json={"approve": True, "reason": "x"}).status_code == 403

        with signed_in(url, "audit1") as auditor:  # the auditor sees requests, decides nothing
            assert [r["id"] for r in auditor.get("/api/access/requests").json()] == [rid]
            decided = auditor.post(f"/api/access/requests/{rid}/decision", json={"approve": True, "reason": "x"})
            assert decided.status_code == 403
        decision = {"approve": True, "hours": 1, "reason": "复核通过"}
        approved = sup.post(f"/api/access/requests/{rid}/decision", json=decision)
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        again = sup.post(f"/api/access/requests/{rid}/decision", json={"approve": False, "reason": "changed my mind"})
        assert again.json() == {"detail": "access.error.decided"}

        # View: the recording's bytes, inline; logged with who, what and which grant.
        seen = a.get(view)
        assert seen.status_code == 200 and seen.headers["content-disposition"].startswith("inline")
        sha = {r["key"]: r["sha256"] for r in station.station.db.call(lambda db: db.table(RECORDINGS).all())}
        assert hashlib.sha256(seen.content).hexdigest() == sha[mine]
        logged = events(station, "recording_viewed")
        assert logged == [
            {"request": rid, "recording": mine, "sha256": sha[mine], "by": "off.a", "client": "127.0.0.1"}
        ]
        assert events(station, "access_approved")[0]["by"] == "sup1"

        # Limits of the grant: only the named recording, only the requester.
        assert a.get(f"/api/access/requests/{rid}/view/{other}").json() == {"detail": "access.error.out_of_scope"}
        assert b.get(view).json() == {"detail": "access.error.no_grant"}

        # Export: a ZIP with the recording byte for byte under a watermarked name, its manifest, the key.
        exported = a.post(f"/api/access/requests/{rid}/export/{mine}")
        assert exported.status_code == 200, exported.text
        disposition = exported.headers["content-disposition"]
        assert "attachment" in disposition and f"test-station.{rid}.off.a." in disposition
        bundle = zipfile.ZipFile(io.BytesIO(exported.content))
        names = bundle.namelist()
        video = next(n for n in names if n.endswith((".MP4", ".mp4")))
        assert f".test-station.{rid}.off.a." in video and set(names) - {video} == {
            "manifest.json", "station.pub.pem", "export.json",
        }  # fmt: skip
        body = json.loads(bundle.read("manifest.json"))
        public = serialization.load_pem_public_key(bundle.read("station.pub.pem"))
        manifest.verify(body, {manifest.key_id(public): public})  # signed by the station's key
        assert hashlib.sha256(bundle.read(video)).hexdigest() == body["file"]["sha256"] == sha[mine]
        assert json.loads(bundle.read("export.json"))["approved_by"] == "sup1"
        assert events(station, "recording_exported")[0] | {"file": None} == {
            "request": rid, "kind": "export", "recording": mine, "sha256": sha[mine], "file": None,
            "by": "off.a", "client": "127.0.0.1",
        }  # fmt: skip
        # No loose copy stays on the station once the bundle is sent.
        wait_until(lambda: not list(station.config.run_dir.glob("export-*")), 10, "the bundle removed")

        # The grant expires: an hour and a second later the same view is refused, and nothing is logged.
        later = datetime.now(UTC) + timedelta(hours=1, seconds=1)
        station.station.access.clock = lambda: later
        assert a.get(view).json() == {"detail": "access.error.expired"}
        assert a.post(f"/api/access/requests/{rid}/export/{mine}").json() == {"detail": "access.error.expired"}
        assert len(events(station, "recording_viewed")) == 1 and len(events(station, "recording_exported")) == 1

        # A refused request grants nothing; nobody approves their own; a party's copy needs the signed form.
        refused = a.post("/api/access/requests", json=ask | {"kind": "view"}).json()
        sup.post(f"/api/access/requests/{refused['id']}/decision", json={"approve": False, "reason": "无正当理由"})
        assert a.get(f"/api/access/requests/{refused['id']}/view/{mine}").json() == {"detail": "access.error.no_grant"}
        own = sup.post("/api/access/requests", json=ask).json()
        assert sup.post(f"/api/access/requests/{own['id']}/decision", json={"approve": True, "reason": "x"}).json() == {
            "detail": "access.error.own_request"
        }
        party = {"name": "当事人甲", "id_number": "330100199001010000", "form_no": "DQ-2026-0042", "form_signed": False}
        copy = a.post("/api/access/requests", json=ask | {"kind": "copy", "party": party})
        assert copy.json() == {"detail": "access.error.form"}
        copy = a.post("/api/access/requests", json=ask | {"kind": "copy", "party": party | {"form_signed": True}})
        assert copy.status_code == 200
        logged_party = events(station, "access_requested")[-1]["party"]
        assert logged_party == {"name": "当事人甲", "form_no": "DQ-2026-0042"}  # the ID number stays off the log
