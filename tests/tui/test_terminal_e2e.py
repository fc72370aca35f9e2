"""The real ``asynclm-chat`` in a real terminal (tmux): type, see panes and an answer, interrupt
mid-answer, quit cleanly."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from conftest import EMPTY_CONFIG

if shutil.which("tmux") is None:
    if os.environ.get("CI"):
        raise RuntimeError("tmux is required for the terminal tests; .ci/run installs it")
    pytest.skip("tmux is not installed", allow_module_level=True)

# the wait outlasts the scripted words by far, so the panes are seen while it runs even when the
# machine is busy and decoding slow (about 40 tokens must go through the model before it ends)
SCRIPT = ('On it.[CALL] w1 [HEAD] wait(seconds=15) [END][CALL] c1 [HEAD] calculator(expression="17*23") [END]'
          "Working on both while they run.[TRAP] [END] 17*23 is 391.[TRAP] [END] The wait is over.")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=20).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-t", session, "-p")


def wait_for(session: str, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen(session)}")


def test_chat_in_a_real_terminal(tmp_path):
    """The command as a user starts it: no --model, so the embedded model; a script decides the words."""
    script = tmp_path / "script.txt"
    script.write_text(SCRIPT + "\n")
    session = f"asynclm-{uuid.uuid4().hex[:8]}"
    cmd = " ".join(shlex.quote(a) for a in [
        sys.executable, "-m", "asynclm.tui.cli", "--script", f"@{script}",
        "--session", str(tmp_path / "session.jsonl"), "--config", str(EMPTY_CONFIG)])
    tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "45")
    tmux("set-option", "-t", session, "window-size", "manual")
    tmux("resize-window", "-t", session, "-x", "140", "-y", "45")
    tmux("send-keys", "-t", session, "-l", f"{cmd}; echo EXITED:$?")
    tmux("send-keys", "-t", session, "Enter")
    try:
        shown = wait_for(session, "async mode")
        # the embedded model says what it is good for, atop the new session
        assert "asynclm-tiny, the embedded demonstration model" in shown, shown
        tmux("send-keys", "-t", session, "-l", "Wait 15s and compute 17*23")
        tmux("send-keys", "-t", session, "Enter")
        shown = wait_for(session, "calculator(expression=")
        assert "wait(seconds=15)" in shown and "running" in shown, f"panes show while the wait runs:\n{shown}"
        wait_for(session, "Working")
        assert "running" in screen(session), "the wait still runs when the user types"
        # Mid-answer, while the wait still runs: the message enters the answer.
        tmux("send-keys", "-t", session, "-l", "also say hello")
        tmux("send-keys", "-t", session, "Enter")
        shown = wait_for(session, "you: also say hello")
        shown = wait_for(session, "The wait is over.")
        assert "391" in shown and "done" in shown
        tmux("send-keys", "-t", session, "C-q")
        wait_for(session, "EXITED:0")
    finally:
        tmux("kill-session", "-t", session)
    # The session file is complete after a clean quit: every line whole, the turn's end recorded, and
    # the wait that quitting cut short recorded as cancelled (its cancellation may land on either side
    # of the turn's end: it comes from the tools' thread), so a resume loses nothing.
    records = [json.loads(line) for line in (tmp_path / "session.jsonl").read_text().splitlines()]
    types = [r["type"] for r in records]
    assert "TurnEnded" in types
    outcomes = {r["source"]: r["kind"] for r in records if r["type"] == "InterruptQueued"}
    assert outcomes.get("c1") == "result"
    assert outcomes.get("w1") in ("result", "cancelled")
