"""A signed-note implementation we did not write checks the station's checkpoints: Go's
golang.org/x/mod/sumdb/note (the reference implementation; Debian's golang-golang-x-mod-dev, built offline
here, nothing fetched) opens every checkpoint of a real station log with the verifier keys `recterm keys show`
prints, and rejects a checkpoint with any byte of its text changed or signed by another key.

`make test` installs Go and the package (Makefile DEB_PACKAGES). As with Chromium for the browser tests, a
machine without them fails these tests rather than skipping them: a green `make test` has run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.evidence.checkpoint import Checkpoint
from appliance.evidence.note import sign_note
from tests.test_keys import printed, run
from tests.test_signing_rotation import Ctx, rotated  # noqa: F401  (rotated is a fixture: a real rotation)
from tests.test_verify import offloaded  # noqa: F401  (offloaded is a fixture: a real `recterm offload`)

GO_PACKAGES = "golang-go golang-golang-x-mod-dev"
GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put their sources
SOURCE = Path(__file__).parent / "go" / "note_open" / "main.go"

NoteOpen = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def note_open(tmp_path_factory: pytest.TempPathFactory) -> NoteOpen:
    """``note_open(note_bytes, *verifier_keys)``: the Go program's answer (exit 0 and the verified text)."""
    go = shutil.which("go")
    if go is None or not (GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb" / "note" / "note.go").is_file():
        pytest.fail(f"Go and golang.org/x/mod are missing: apt-get install {GO_PACKAGES} (make test does)")
    work = tmp_path_factory.mktemp("go")
    env = {  # GOPATH mode from the Debian sources; no module proxy, no network, no cache outside work/
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(work / "cache"),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    binary = work / "note_open"
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(SOURCE)], env=env, capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stderr
    count = iter(range(1 << 30))

    def note_open(note: bytes, *verifier_keys: str) -> subprocess.CompletedProcess[str]:
        path = work / f"note-{next(count)}"
        path.write_bytes(note)
        return subprocess.run([str(binary), str(path), *verifier_keys], capture_output=True, text=True, timeout=60)

    return note_open


def text_of(note: bytes) -> bytes:
    return note[: note.rindex(b"\n\n") + 1]


def test_go_opens_every_checkpoint_with_the_printed_key(offloaded: Path, note_open: NoteOpen) -> None:  # noqa: F811
    (vkey,) = printed(run("keys", "show", offloaded).stdout, "verifier key")
    notes = sorted((offloaded / "log" / "checkpoints").glob("*.note"))
    assert len(notes) >= 2
    for path in notes:
        answer = note_open(path.read_bytes(), vkey)
        assert answer.returncode == 0, (path.name, answer.stdout, answer.stderr)
        assert answer.stdout.encode() == text_of(path.read_bytes())
        assert Checkpoint.parse(answer.stdout).origin == "recterm/standalone/events/e1"


def test_go_rejects_a_checkpoint_with_a_byte_changed(offloaded: Path, note_open: NoteOpen) -> None:  # noqa: F811
    (vkey,) = printed(run("keys", "show", offloaded).stdout, "verifier key")
    note = (offloaded / "log" / "checkpoints" / "latest.note").read_bytes()
    assert note_open(note, vkey).returncode == 0
    root_line = note.index(b"\n", note.index(b"\n") + 1) + 1
    altered = bytearray(note)
    altered[root_line + 5] ^= 0x01  # one byte of the signed root hash
    answer = note_open(bytes(altered), vkey)
    name_and_hash = "+".join(vkey.split("+")[:2])  # the key's base64 may hold a "+" too
    assert (answer.returncode, answer.stdout) == (1, f"rejected: invalid signature for key {name_and_hash}\n")
    # Every byte the signature covers (origin, tree size, root, their newlines), one at a time.
    for offset in range(len(text_of(note))):
        altered = bytearray(note)
        altered[offset] ^= 0x01
        answer = note_open(bytes(altered), vkey)
        assert answer.returncode == 1 and answer.stdout.startswith("rejected: "), (offset, answer.stdout)


def test_go_rejects_a_checkpoint_signed_by_another_key(offloaded: Path, note_open: NoteOpen) -> None:  # noqa: F811
    (vkey,) = printed(run("keys", "show", offloaded).stdout, "verifier key")
    note = (offloaded / "log" / "checkpoints" / "latest.note").read_bytes()
    forged = sign_note(text_of(note).decode(), "standalone", Ed25519PrivateKey.generate()).encode()
    assert text_of(forged) == text_of(note)  # the same tree head, under the station's name, by another key
    answer = note_open(forged, vkey)
    assert (answer.returncode, answer.stdout) == (1, "rejected: note has no verifiable signatures\n")


def test_go_needs_the_retired_key_for_checkpoints_before_a_rotation(rotated: Ctx, note_open: NoteOpen) -> None:  # noqa: F811
    _, copy, _, rotation = rotated
    shown = run("keys", "show", copy).stdout
    current, retired = printed(shown, "verifier key")  # current first
    notes = sorted((copy / "log" / "checkpoints").glob("[0-9]*.note"))
    sizes = [int(p.stem) for p in notes]
    assert min(sizes) <= rotation < max(sizes)  # checkpoints on both sides of the rotation entry
    for path, size in zip(notes, sizes, strict=True):
        note = path.read_bytes()
        assert note_open(note, current, retired).returncode == 0, path.name  # every key printed: all open
        alone = note_open(note, current)
        if size <= rotation:  # signed by the key in use before the rotation entry
            assert (alone.returncode, alone.stdout) == (1, "rejected: note has no verifiable signatures\n")
            assert note_open(note, retired).returncode == 0
        else:
            assert alone.returncode == 0, path.name
