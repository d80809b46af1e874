"""`recterm keys show` and GET /api/keys/signing hand out what a records office needs to check the station's
checkpoints with any signed-note implementation: the verifier key of every key the station used, their
fingerprints and the log origin; the admin page shows them to staff to copy."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.evidence.checkpoint import verify_checkpoint
from appliance.evidence.keychain import (
    CURRENT_PUB,
    HISTORY_FILE,
    fingerprint,
    load_public_pem,
    public_pem,
    read_history,
)
from appliance.evidence.note import parse_verifier_key
from tests.conftest import add_account, signed_in
from tests.test_kiosk import sign_in_page, web_up
from tests.test_verify import flip, offloaded  # noqa: F401  (offloaded is a fixture: a real `recterm offload`)
from tests.test_web import ARTIFACTS, base_url, browser  # noqa: F401  (browser is a fixture)
from web_ui.i18n import catalogue

README = Path(__file__).resolve().parents[1] / "README.md"
RECTERM = Path(sys.executable).with_name("recterm")


def readme_command() -> list[str]:
    """The command as the README's command table prints it."""
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `recterm keys show"))
    command = re.match(r"\| `([^`]+)`", row)
    assert command is not None, row
    return shlex.split(command[1])


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed `recterm` in its own process, as a records office would run it."""
    return subprocess.run([str(RECTERM), *map(str, args)], capture_output=True, text=True, timeout=60)


def printed(output: str, label: str) -> list[str]:
    """Values of the lines ``<label>  <value>`` of `recterm keys show`, in the order printed."""
    return [line.split()[-1] for line in output.splitlines() if line.strip().startswith(label + "  ")]


def test_keys_show_as_the_readme_prints_it(offloaded: Path) -> None:  # noqa: F811
    command = readme_command()
    assert command == ["recterm", "keys", "show", "[DIR]"]
    result = run(*command[1:-1], offloaded)  # DIR given; without it the configured station's (below)
    assert result.returncode == 0, result.stderr
    (vkey,) = printed(result.stdout, "verifier key")
    (shown,) = printed(result.stdout, "fingerprint")
    (origin,) = printed(result.stdout, "log origin")
    name, public = parse_verifier_key(vkey)  # name+hash+key, as C2SP signed-note defines it
    assert (name, origin) == ("standalone", "recterm/standalone/events/e1")  # what `recterm offload` signs as
    assert shown == fingerprint(public) == fingerprint(load_public_pem((offloaded / "keys" / CURRENT_PUB).read_bytes()))
    notes = sorted((offloaded / "log" / "checkpoints").glob("*.note"))
    assert len(notes) >= 2  # latest.note and the numbered ones
    for note in notes:
        assert verify_checkpoint(note.read_text(), {name: public}, origin=origin).size > 0
    as_json = json.loads(run("keys", "show", offloaded, "--json").stdout)
    assert (as_json["verifier_key"], as_json["fingerprint"], as_json["origin"]) == (vkey, shown, origin)
    assert as_json["keys"] == [
        {"fingerprint": shown, "verifier_key": vkey, "first_entry": 0, "last_entry": None, "retired_at": None}
    ]


def refusal(*args: str | Path) -> str:
    result = CliRunner().invoke(main, ["keys", "show", *map(str, args)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.output


def test_keys_show_refuses_what_it_cannot_vouch_for(offloaded: Path, tmp_path: Path) -> None:  # noqa: F811
    assert "is not a station data directory" in refusal(tmp_path)
    copy = tmp_path / "data"
    shutil.copytree(offloaded, copy)
    latest = copy / "log" / "checkpoints" / "latest.note"
    latest.chmod(0o644)
    flip(latest, len(latest.read_text().splitlines()[0]) + 1)  # a digit of the tree size
    assert "does not verify with the keys of" in refusal(copy)  # never a key its checkpoints do not back
    shutil.rmtree(copy / "log" / "checkpoints")
    assert "holds no signed checkpoint" in refusal(copy)
    assert "file not found" in refusal("--config", tmp_path / "missing.toml")
    keys = tmp_path / "data2"
    shutil.copytree(offloaded, keys)
    (keys / "keys" / HISTORY_FILE).write_text("{not json")
    assert "signing-history.json: not JSON" in refusal(keys)


def test_a_running_station_hands_out_its_keys_to_staff(tmp_path: Path, config, start_station) -> None:
    """The API and `recterm keys show --config` agree, before and after a key rotation; and so does
    `recterm keys show DIR` on the data directory the station leaves."""
    station = start_station(serve_web=True)
    web_up(station)
    add_account(station, "reader", "auditor")  # read-only: enough to read the keys
    add_account(station, "chief", "admin")
    config_file = tmp_path / "station.toml"  # the file the config fixture was loaded from
    url = base_url(station)

    def cli() -> dict:
        result = run("keys", "show", "--config", config_file, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    with signed_in(url, "reader") as reader:
        before = reader.get("/api/keys/signing")
        assert before.status_code == 200, before.text
        assert before.json() == cli()
        assert before.json()["name"] == "test-station"
        assert before.json()["origin"] == "recterm/test-station/events/e1"
        assert reader.post("/api/keys/signing/rotate").status_code == 403  # reading is not rotating
        with signed_in(url, "chief") as admin:
            rotated = admin.post("/api/keys/signing/rotate").json()
        after = reader.get("/api/keys/signing").json()
    assert after == cli()
    old, new = after["keys"]
    assert old["fingerprint"] == before.json()["fingerprint"] == rotated["old"]
    assert old["verifier_key"] == before.json()["verifier_key"] and old["retired_at"]
    assert new["fingerprint"] == after["fingerprint"] == rotated["new"]
    assert (old["first_entry"], old["last_entry"], new["first_entry"]) == (
        0,
        rotated["log_index"] - 1,
        rotated["log_index"],
    )
    # Caught between two writes of a rotation (history updated, current public key not yet): no answer
    # rather than a wrong one.
    current_pub = config.keys_dir / CURRENT_PUB
    written = current_pub.read_bytes()
    current_pub.write_text(public_pem(read_history(config.keys_dir)[0].public))
    with signed_in(url, "reader") as reader:
        midway = reader.get("/api/keys/signing")
    assert (midway.status_code, midway.json()) == (503, {"detail": "keys.error.unavailable"})
    assert "a rotation under way?" in refusal("--config", config_file)
    current_pub.write_bytes(written)
    station.stop()
    from_dir = run("keys", "show", config.station.data_dir, "--json")
    assert json.loads(from_dir.stdout) == after, from_dir.stderr
    text = run("keys", "show", config.station.data_dir).stdout
    assert printed(text, "verifier key") == [new["verifier_key"], old["verifier_key"]]  # current first
    assert printed(text, "fingerprint") == [new["fingerprint"], old["fingerprint"]]


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("size", [(1280, 800), (800, 480)])
def test_admin_page_shows_the_verifier_keys_to_copy(lang, size, start_station, browser) -> None:  # noqa: F811
    station = start_station(serve_web=True)
    web_up(station)
    add_account(station, "reader", "auditor")
    add_account(station, "chief", "admin")
    with signed_in(base_url(station), "chief") as admin:
        assert admin.post("/api/keys/signing/rotate").status_code == 200  # a history to show as well
    with signed_in(base_url(station), "reader") as reader:
        keys = reader.get("/api/keys/signing").json()
    t = catalogue(lang)
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url(station))
    page = context.new_page()
    page.goto(f"{base_url(station)}/admin?lang={lang}")
    sign_in_page(page, "reader")
    page.wait_for_url("**/admin?lang=*")
    panel = page.locator("#signing-keys")
    page.wait_for_selector("#signing-keys .signing-key[data-current=true] code[data-role=verifier]")
    assert panel.locator("h2").inner_text() == t["keys.title"]
    assert page.locator("#keys-origin").inner_text() == keys["origin"]
    blocks = panel.locator(".signing-key")
    assert blocks.count() == 2
    current, retired = blocks.nth(0), blocks.nth(1)
    assert current.locator("h3").inner_text() == t["keys.current"].format(first=keys["keys"][1]["first_entry"])
    assert current.locator("code[data-role=verifier]").inner_text() == keys["verifier_key"]
    assert current.locator("code[data-role=fingerprint]").inner_text() == keys["fingerprint"]
    assert retired.locator("code[data-role=verifier]").inner_text() == keys["keys"][0]["verifier_key"]
    panel.scroll_into_view_if_needed()
    current.locator("button[data-copy=verifier]").click()
    page.wait_for_selector("#keys-status:not([hidden])")
    assert page.evaluate("navigator.clipboard.readText()") == keys["verifier_key"]
    assert page.locator("#keys-status").inner_text() == t["keys.copied"].format(what=t["keys.verifier"])
    # Long keys break inside their box: nothing in the panel runs off its side, even on the 800 px display.
    assert panel.evaluate("el => el.scrollWidth <= el.clientWidth")
    outline = panel.bounding_box()
    assert outline is not None
    right = outline["x"] + outline["width"]
    assert right <= width
    for code in panel.locator("code").all():
        box = code.bounding_box()
        assert box is not None and box["x"] + box["width"] <= right
    page.screenshot(path=str(ARTIFACTS / f"admin-keys-{lang}-{width}x{height}.png"), full_page=True)
    panel.screenshot(path=str(ARTIFACTS / f"admin-keys-panel-{lang}-{width}x{height}.png"))
    context.close()
