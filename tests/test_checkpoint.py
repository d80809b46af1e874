"""C2SP signed notes and tlog checkpoints.

Interop vectors come from golang.org/x/mod sumdb/note/note_test.go (the reference implementation of the
note format): the PeterNeumann signer and verifier keys, the note it signs (Ed25519 is deterministic, so
the signature line must match byte for byte) and the EnochRoot cosignature.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.evidence.checkpoint import Checkpoint, CheckpointError, sign_checkpoint, verify_checkpoint
from appliance.evidence.merkle import leaf_hash, root
from appliance.evidence.note import NoteError, key_id, open_note, parse_verifier_key, sign_note, verifier_key

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
ORIGIN = "records-terminal.example/station-7"


def peter_private_key() -> Ed25519PrivateKey:
    """The Go signer key is base64(0x01 ‖ 32-byte Ed25519 seed)."""
    raw = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert raw[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


# --- Signed notes: published vectors ---


def test_go_vector_verifier_key_and_signature() -> None:
    priv = peter_private_key()
    assert key_id("PeterNeumann", priv.public_key()).hex() == "c74f20a3"
    assert verifier_key("PeterNeumann", priv.public_key()) == PETER_VKEY
    assert sign_note(TEXT, "PeterNeumann", priv) == TEXT + "\n" + PETER_SIG


def test_go_vector_open_with_cosignature() -> None:
    peter = dict([parse_verifier_key(PETER_VKEY)])
    both = dict([parse_verifier_key(PETER_VKEY), parse_verifier_key(ENOCH_VKEY)])
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, peter) == TEXT  # Enoch's signature is unknown here, so ignored
    assert open_note(note, both) == TEXT
    enoch_only = dict([parse_verifier_key(ENOCH_VKEY)])
    assert open_note(TEXT + "\n" + ENOCH_SIG, enoch_only) == TEXT
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, {})


def test_go_vector_corrupted_signature_is_rejected() -> None:
    peter = dict([parse_verifier_key(PETER_VKEY)])
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann"):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], peter)


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\ud800" + TEXT + "\n" + PETER_SIG,  # not encodable as UTF-8
        TEXT
        + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_go_vector_malformed_notes(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, dict([parse_verifier_key(PETER_VKEY)]))


def test_go_vector_verifier_key_manglings() -> None:
    assert parse_verifier_key(PETER_VKEY)[0] == "PeterNeumann"
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises((NoteError, ValueError)):
            parse_verifier_key(mangled)
    for cut in range(1, len(PETER_VKEY)):
        with pytest.raises(NoteError):
            parse_verifier_key(PETER_VKEY[:cut])
    # Wrong-length key and unknown algorithm, each with a key id adjusted to match (from the Go test).
    with pytest.raises(NoteError):
        parse_verifier_key("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(NoteError):
        parse_verifier_key("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


# --- Signed notes: properties ---


def test_round_trip_and_verifier_key(key: Ed25519PrivateKey) -> None:
    text = "ligne 1\n\n执法记录仪 — with an em dash and a blank line\n"
    note = sign_note(text, "station.example/a", key)
    name, public = parse_verifier_key(verifier_key("station.example/a", key.public_key()))
    assert name == "station.example/a"
    assert open_note(note, {name: public}) == text


def test_wrong_key_or_name_is_not_trusted(key: Ed25519PrivateKey) -> None:
    note = sign_note(TEXT, "station.example/a", key)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, {"station.example/a": other})  # same name, different key id: ignored
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, {"station.example/b": key.public_key()})


def test_altered_text_is_rejected(key: Ed25519PrivateKey) -> None:
    note = sign_note(TEXT, "n", key)
    tampered = note.replace("cryptography", "cryptograph.", 1)
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, {"n": key.public_key()})


def test_forged_signature_from_known_key_rejects_note_even_with_a_good_one(key: Ed25519PrivateKey) -> None:
    note = sign_note(TEXT, "n", key)
    line = note[len(TEXT) + 1 :]
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[10] ^= 1
    forged = f"— n {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note + forged, {"n": key.public_key()})


@pytest.mark.parametrize(
    "sig_line",
    [
        "— n\n",  # no signature
        "— n \n",  # empty signature
        "- n AAAAAAAA\n",  # hyphen, not em dash
        "—n AAAAAAAA\n",  # no space after the dash
        "— n AAAA\n",  # key id only, no signature bytes
        "— n AAAAAAB=\n",  # non-canonical base64 (trailing bits set)
        "— n AAAA AAAA\n",  # space inside base64
        "— n !!!!\n",
        "—  AAAAAAAA\n",  # empty name
        "— a+b AAAAAAAA\n",  # plus in name
    ],
)
def test_malformed_signature_lines(key: Ed25519PrivateKey, sig_line: str) -> None:
    note = sign_note(TEXT, "n", key)
    with pytest.raises(NoteError):
        open_note(note + sig_line, {"n": key.public_key()})


@pytest.mark.parametrize("text", ["no newline", "tab\there\n", "cr\r\n", "\ud800\n"])
def test_sign_rejects_bad_text(key: Ed25519PrivateKey, text: str) -> None:
    with pytest.raises(NoteError):
        sign_note(text, "n", key)


@pytest.mark.parametrize("name", ["", "has space", "a+b", "nbsp\u00a0", "ideographic\u3000space"])
def test_sign_rejects_bad_names(key: Ed25519PrivateKey, name: str) -> None:
    with pytest.raises(NoteError):
        sign_note(TEXT, name, key)
    with pytest.raises(NoteError):
        verifier_key(name, key.public_key())


# --- Checkpoints ---


def test_checkpoint_text_and_parse() -> None:
    rt = root([leaf_hash(b"a"), leaf_hash(b"b")])
    cp = Checkpoint(ORIGIN, 2, rt)
    assert cp.to_text() == f"{ORIGIN}\n2\n{base64.b64encode(rt).decode()}\n"
    assert Checkpoint.parse(cp.to_text()) == cp
    ext = Checkpoint(ORIGIN, 0, root([]), ("timestamp 1700000000",))
    assert ext.to_text().endswith("\ntimestamp 1700000000\n")
    assert Checkpoint.parse(ext.to_text()) == ext


def test_spec_example_body_parses() -> None:
    cp = Checkpoint.parse("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    assert (cp.origin, cp.size, len(cp.root)) == ("example.com/behind-the-sofa", 20852163, 32)


@pytest.mark.parametrize(
    "size",
    ["01", "00", "-1", "+1", " 1", "1 ", "1_0", "", "١", "0x10", "18446744073709551616"],
)
def test_checkpoint_rejects_bad_sizes(size: str) -> None:
    rt = base64.b64encode(bytes(32)).decode()
    with pytest.raises(CheckpointError):
        Checkpoint.parse(f"{ORIGIN}\n{size}\n{rt}\n")


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()}",  # no final newline
        f"{ORIGIN}\n1\n",  # no root
        f"\n1\n{base64.b64encode(bytes(32)).decode()}\n",  # empty origin
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(31)).decode()}\n",  # short root
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(33)).decode()}\n",  # long root
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode().rstrip('=')}\n",  # unpadded
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()[:-2]}B=\n",  # non-canonical trailing bits
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()}\n\n",  # empty extension line
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()}\next\tension\n",
    ],
)
def test_checkpoint_rejects_malformed_text(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


def test_checkpoint_constructor_validates() -> None:
    for args in [("", 0, bytes(32)), ("a\nb", 0, bytes(32)), ("o", -1, bytes(32)), ("o", 2**64, bytes(32))]:
        with pytest.raises(CheckpointError):
            Checkpoint(*args)
    with pytest.raises(CheckpointError):
        Checkpoint("o", 1, bytes(31))
    with pytest.raises(CheckpointError):
        Checkpoint("o", 1, bytes(32), ("",))


def test_signed_checkpoint_round_trip(key: Ed25519PrivateKey) -> None:
    cp = Checkpoint(ORIGIN, 8, bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"))
    note = sign_checkpoint(cp, ORIGIN, key)
    assert note.startswith(cp.to_text() + "\n— " + ORIGIN + " ")
    verifiers = {ORIGIN: key.public_key()}
    assert verify_checkpoint(note, verifiers) == cp
    assert verify_checkpoint(note, verifiers, origin=ORIGIN) == cp
    with pytest.raises(CheckpointError, match="expected"):
        verify_checkpoint(note, verifiers, origin="another.example/log")


def test_signed_checkpoint_tampering(key: Ed25519PrivateKey) -> None:
    cp = Checkpoint(ORIGIN, 8, bytes(32))
    note = sign_checkpoint(cp, ORIGIN, key)
    verifiers = {ORIGIN: key.public_key()}
    with pytest.raises(NoteError):
        verify_checkpoint(note.replace("\n8\n", "\n9\n", 1), verifiers)
    with pytest.raises(NoteError):
        verify_checkpoint(note, {ORIGIN: Ed25519PrivateKey.generate().public_key()})


def test_signed_but_malformed_body_is_rejected(key: Ed25519PrivateKey) -> None:
    note = sign_note(f"{ORIGIN}\n08\n{base64.b64encode(bytes(32)).decode()}\n", ORIGIN, key)
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, {ORIGIN: key.public_key()})
