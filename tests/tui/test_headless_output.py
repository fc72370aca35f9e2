"""Headless output that cannot be written as it is: undecodable bytes, and a reader that goes away."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import prose

CLI = [sys.executable, "-m", "asynclm.tui.cli", "--headless", "--no-session"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8"}


def test_an_undecodable_byte_in_the_prompt_is_printed_as_an_escape_not_a_traceback(tiny_model):
    r = subprocess.run([*CLI, "--model", str(tiny_model), "--json", "--script", "fine", "--prompt", b"caf\xff"],
                       capture_output=True, timeout=120, env=_env(), stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")[-2000:]
    events = [json.loads(line) for line in r.stdout.decode("utf-8").splitlines()]
    started = next(e for e in events if e["type"] == "TurnStarted")
    assert started["text"] == "caf\udcff"
    plain = subprocess.run([*CLI, "--model", str(tiny_model), "--script", "fine", "--prompt", b"caf\xff"],
                           capture_output=True, timeout=120, env=_env(), stdin=subprocess.DEVNULL)
    assert plain.returncode == 0 and b"Traceback" not in plain.stderr


def test_a_reader_that_goes_away_ends_the_program_quietly(tiny_model):
    p = subprocess.Popen([*CLI, "--model", str(tiny_model), "--json", "--max-tokens", "4000",
                          "--script", prose(1500), "--prompt", "go"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), stdin=subprocess.DEVNULL)
    assert p.stdout.readline().startswith(b"{")
    p.stdout.close()  # as `| head -1` does
    _, err = p.communicate(timeout=120)
    assert p.returncode == 141, err.decode(errors="replace")[-2000:]
    assert b"Traceback" not in err and b"Exception ignored" not in err
