"""The checkpoint policy: the writer never leaves more uncovered entries than it declares, and `recterm verify`
holds every stretch between checkpoints, and the uncovered tail, to exactly that bound."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import appliance.eventlog as eventlog
from appliance.cli import main
from appliance.eventlog import Entry, EventLog, Signer
from appliance.evidence.checkpoint import Checkpoint, sign_checkpoint
from appliance.evidence.checkpoint_policy import CheckpointPolicy, CheckpointPolicyError
from appliance.evidence.merkle import MerkleAccumulator, leaf_hash
from appliance.evidence.verify import Report, verify_data_dir
from provisioning.keys import create_signing_key, load_signing_key

ORIGIN, NAME = "recterm/test/events/e1", "test"
SECOND = 10**9
POLICY = CheckpointPolicy(4, 10.0)  # the fallback these stores are judged by, unless a boot entry declares one


def forge(root: Path, entries: list[tuple[str, dict[str, Any], str, int]], signed: list[int]) -> Path:
    """A data directory whose log holds ``entries`` (type, body, boot id, mono_ns) with correctly signed
    checkpoints at the sizes ``signed``: every byte the station's key vouches for, only the policy in question."""
    data = root / "data"
    create_signing_key(data / "keys")
    key = load_signing_key(data / "keys")
    (data / "log" / "checkpoints").mkdir(parents=True)
    tree, lines = MerkleAccumulator(), []
    for seq, (type_, body, boot, mono) in enumerate(entries):
        line = Entry(seq, type_, "2026-03-05T09:00:00.000+00:00", boot, mono, body).canonical()
        lines.append(line + b"\n")
        tree.append(leaf_hash(line))
        if tree.size in signed:
            note = sign_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()), NAME, key)
            (data / "log" / "checkpoints" / f"{tree.size:012d}.note").write_text(note)
            (data / "log" / "checkpoints" / "latest.note").write_text(note)
    (data / "log" / "entries.jsonl").write_bytes(b"".join(lines))
    return data


def plain(count: int, start_ns: int = 0, step_ns: int = SECOND, boot: str = "b1") -> list[tuple[str, dict, str, int]]:
    return [("dock", {"bay": 1}, boot, start_ns + i * step_ns) for i in range(count)]


def declaring(every: int, interval_s: float, boot: str = "b1", mono: int = 0) -> tuple[str, dict, str, int]:
    return ("boot", {"log": CheckpointPolicy(every, interval_s).declaration()}, boot, mono)


def check(data: Path, policy: CheckpointPolicy = POLICY) -> Report:
    return verify_data_dir(data, policy=policy)


def errors(report: Report) -> list[str]:
    return [str(f) for f in report.findings if f.error]


@pytest.mark.parametrize(("tail", "ok"), [(4, True), (5, False)])
def test_uncovered_tail_up_to_the_policy_count_is_a_crash_one_more_is_removed_checkpoints(
    tmp_path: Path, tail: int, ok: bool
) -> None:
    report = check(forge(tmp_path, plain(2 + tail), signed=[2]))
    assert report.ok is ok, report.findings
    if ok:
        assert any("not yet covered" in str(f) and not f.error for f in report.findings)
    else:
        assert errors(report) == [
            f"ERROR log entries 2..{1 + tail}: {tail} entries after the last signed checkpoint (2), but the station "
            "signs one at least every 4 entries (checkpoints removed?)"
        ]


@pytest.mark.parametrize(("gap", "ok"), [(4, True), (5, False)])
def test_a_stretch_between_two_checkpoints_is_held_to_the_same_count(tmp_path: Path, gap: int, ok: bool) -> None:
    report = check(forge(tmp_path, plain(2 + gap + 1), signed=[2, 2 + gap, 3 + gap]))
    assert report.ok is ok, report.findings
    if not ok:
        assert "between the signed checkpoints 2 and 7" in errors(report)[0]


@pytest.mark.parametrize(("span_ns", "ok"), [(10 * SECOND - 1, True), (10 * SECOND, False)])
def test_entries_but_the_newest_must_fall_within_the_interval(tmp_path: Path, span_ns: int, ok: bool) -> None:
    # Entries 2, 3 and 4 are uncovered; 4 may be arbitrarily late (its append made the checkpoint due, then a
    # crash), 3 must have come less than the interval after 2 (after the checkpoint, which came before 2).
    entries = [declaring(4, 10.0), *plain(1), ("dock", {}, "b1", 5 * SECOND), ("dock", {}, "b1", 5 * SECOND + span_ns)]
    entries.append(("dock", {}, "b1", 10**6 * SECOND))
    report = check(forge(tmp_path, entries, signed=[1, 2]))
    assert report.ok is ok, report.findings
    if not ok:
        assert "span 10.000 s, but the station signs one at least every 10 s" in errors(report)[0]


def test_a_stretch_spanning_two_boots_is_caught(tmp_path: Path) -> None:
    entries = [declaring(4, 10.0), *plain(2, boot="b1"), *plain(2, boot="b2")]
    report = check(forge(tmp_path, entries, signed=[1, 2]))
    assert errors(report) == [
        "ERROR log entries 2..4: the entries after the last signed checkpoint (2) span 2 boots, but the station "
        "signs one whenever it opens the log (checkpoints removed?)"
    ]


def test_the_policy_declared_by_a_covered_boot_entry_is_used(tmp_path: Path) -> None:
    entries = [declaring(2, 10.0), *plain(3, start_ns=SECOND)]
    assert check(forge(tmp_path / "a", entries[:3], signed=[1])).ok  # tail of 2: within "every 2"
    report = check(forge(tmp_path / "b", entries, signed=[1]))
    assert errors(report) == [
        "ERROR log entries 1..3: 3 entries after the last signed checkpoint (1), but the station signs one at "
        "least every 2 entries (checkpoints removed?)"
    ]


def test_an_uncovered_declaration_is_never_trusted(tmp_path: Path) -> None:
    # A boot entry after the last checkpoint declaring a loose policy must not excuse the entries after it.
    entries = [*plain(2), declaring(1000, 3600.0, mono=3 * SECOND), *plain(5, start_ns=4 * SECOND)]
    found = errors(check(forge(tmp_path, entries, signed=[2])))
    assert "ERROR log entry 2 (boot): no signed checkpoint of size 3 right after it (checkpoints removed?)" in found
    assert any("6 entries after the last signed checkpoint (2)" in f and "every 4 entries" in f for f in found)


def test_a_declaring_entry_needs_a_checkpoint_right_before_and_after_it(tmp_path: Path) -> None:
    entries = [*plain(2), declaring(4, 10.0, mono=3 * SECOND), *plain(2, start_ns=4 * SECOND)]
    assert check(forge(tmp_path / "sealed", entries, signed=[2, 3, 5])).ok
    found = errors(check(forge(tmp_path / "open", entries, signed=[1, 5])))
    assert found == [
        "ERROR log entry 2 (boot): no signed checkpoint of size 2 right before it (checkpoints removed?)",
        "ERROR log entry 2 (boot): no signed checkpoint of size 3 right after it (checkpoints removed?)",
    ]


def test_an_invalid_declaration_is_an_error(tmp_path: Path) -> None:
    entries = [("boot", {"log": {"checkpoint_every": 0, "checkpoint_interval_s": 10}}, "b1", 0), *plain(1)]
    found = errors(check(forge(tmp_path, entries, signed=[1, 2])))
    assert found == [
        "ERROR log entry 0 (boot): declares no valid checkpoint policy: checkpoint_every 0 is outside 1..65536"
    ]


def test_verify_takes_the_fallback_policy_as_options(tmp_path: Path) -> None:
    data = forge(tmp_path, plain(8), signed=[2])
    assert CliRunner().invoke(main, ["verify", str(data)]).exit_code == 0  # 6 uncovered: within the default 256
    strict = CliRunner().invoke(main, ["verify", str(data), "--checkpoint-every", "4"])
    assert strict.exit_code == 1 and "every 4 entries (checkpoints removed?)" in strict.output
    bad = CliRunner().invoke(main, ["verify", str(data), "--checkpoint-every", "0"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_policy_bounds_are_validated() -> None:
    with pytest.raises(CheckpointPolicyError):
        CheckpointPolicy(4, 0.5)
    with pytest.raises(CheckpointPolicyError):
        CheckpointPolicy.from_declaration({"checkpoint_every": True, "checkpoint_interval_s": 10})
    assert CheckpointPolicy.from_declaration(POLICY.declaration()) == POLICY


# -- the writer ------------------------------------------------------------------------------------------


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the writer may catch it)."""


class Machine:
    """A fake monotonic clock and boot id, and a disk that can die at the n-th atomic write."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 10 * SECOND
        self.boot = 0
        self.writes_left: int | None = None
        real = eventlog.atomic_write_bytes

        def write(*args: Any, **kwargs: Any) -> None:
            if self.writes_left is not None:
                if self.writes_left == 0:
                    self.writes_left = None
                    raise Crash
                self.writes_left -= 1
            real(*args, **kwargs)

        monkeypatch.setattr(eventlog, "atomic_write_bytes", write)
        monkeypatch.setattr(eventlog, "boot_id", lambda: f"boot-{self.boot}")

    def clock(self) -> int:
        return self.now

    def reboot(self, rng: random.Random) -> None:
        self.boot += 1
        self.now = rng.randrange(SECOND, 100 * SECOND)  # a new boot's monotonic clock starts again


def runs(data: Path, machine: Machine, rng: random.Random, steps: int) -> Iterator[None]:
    """Drive a real EventLog through random appends, clock advances, uploads' checkpoints, declarations,
    restarts, reboots and crashes (at a random atomic write); yield after every crash and clean stop."""
    key = load_signing_key(data / "keys")
    log: EventLog | None = None
    for _ in range(steps):
        try:
            if log is None:
                log = EventLog(
                    data / "log", ORIGIN, Signer(NAME, key), POLICY.every, POLICY.interval_s, clock=machine.clock
                )
                if rng.random() < 0.7:
                    log.declare("boot", {"station": "test"})
            machine.now += rng.choice([0, 1, SECOND, 3 * SECOND, POLICY.interval_ns - 1, POLICY.interval_ns])
            if rng.random() < 0.15:
                machine.writes_left = rng.randrange(3)
            roll = rng.random()
            if roll < 0.8:
                log.append("dock", {"bay": 1})
            elif roll < 0.85:
                log.checkpoint()
            elif roll < 0.95:
                log.close()
                log = None
                if rng.random() < 0.5:
                    machine.reboot(rng)
                yield
            else:
                log.append("dock", {"bay": 2})
                raise Crash
        except Crash:
            machine.writes_left = None
            log = None  # the process is gone: nothing of it but what is on disk
            if rng.random() < 0.5:
                machine.reboot(rng)
            yield


@pytest.mark.parametrize("seed", range(4))
def test_the_writer_never_leaves_more_than_its_policy_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    data = tmp_path / "data"
    create_signing_key(data / "keys")
    machine = Machine(monkeypatch)
    rng = random.Random(seed)
    longest = 0
    for _ in runs(data, machine, rng, steps=200):
        report = verify_data_dir(data, policy=POLICY)
        assert report.ok, [str(f) for f in report.findings]
        for finding in report.findings:
            if "not yet covered" in finding.problem:  # "log entries A..B"
                first, last = map(int, finding.where.removeprefix("log entries ").split(".."))
                longest = max(longest, last - first + 1)
    assert longest == POLICY.every, "no crash left a tail as long as the policy allows: the test proves too little"


def test_a_log_written_before_the_policy_was_declared_is_bound_by_the_count_alone(tmp_path: Path) -> None:
    """A station version that declared nothing also signed nothing on open: a power cut left a stretch spanning
    two boots and a long idle time, honestly (seen in make image-test). Only the count binds it; from the first
    declaration on, every rule does."""
    old = [*plain(2, boot="b1"), ("dock", {}, "b1", 3 * SECOND), ("dock", {}, "b2", 10**6 * SECOND)]
    assert check(forge(tmp_path / "old", [*old, *plain(1, boot="b2")], signed=[2, 5])).ok
    too_many = [*plain(2, boot="b1"), *plain(5, boot="b2")]
    assert not check(forge(tmp_path / "count", too_many, signed=[2, 7])).ok
    upgraded = [*old, declaring(4, 10.0, boot="b3"), *plain(2, boot="b3"), *plain(1, boot="b4")]
    report = check(forge(tmp_path / "new", upgraded, signed=[2, 4, 5, 8]))
    assert [f for f in errors(report) if "span 2 boots" in f], report.findings
