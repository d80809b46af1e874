"""Run an external tool (mount, losetup, mtools, ffprobe, ...) and turn each way it can fail into one clear
error of the caller's kind: not installed, timed out, or exited non-zero with the end of what it said."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping


def run_tool(
    argv: list[str],
    what: str,
    *,
    error: type[Exception] = RuntimeError,
    timeout: float = 30,
    env: Mapping[str, str] | None = None,
) -> str:
    """The tool's standard output. ``what`` says what was being done, for the message."""
    try:
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, errors="replace", timeout=timeout, check=False,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise error(f"{what}: {argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what}: {argv[0]} timed out after {timeout:g} s") from exc
    if proc.returncode != 0:
        raise error(f"{what}: {argv[0]} exited {proc.returncode}: {tail(proc.stderr or proc.stdout)}")
    return proc.stdout


def tail(text: str, lines: int = 15) -> str:
    """The last lines of a tool's output: where the reason usually is."""
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"
