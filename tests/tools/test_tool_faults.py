"""Tools that misbehave in every way a tool can: each call still ends with exactly one result, the
tool runner goes on, and a stuck tool never keeps the process alive."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asynclm.core import events as ev
from asynclm.tools.builtins import default_registry
from asynclm.tools.files import FileSandbox, SandboxError
from asynclm.tools.loader import load_tool_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import faults  # noqa: E402


@pytest.fixture
def fault_file(tmp_path):
    """The fault-injection suite's misbehaving tools (bench/faults.py), as a tool file."""
    path = tmp_path / "faults.py"
    path.write_text(faults.TOOLS, encoding="utf-8")
    return path


@pytest.fixture
def faulty(fault_file):
    tools = default_registry()
    assert load_tool_file(fault_file, tools) == []
    return tools


def test_a_tool_raising_systemexit_or_keyboardinterrupt_is_an_error_result_and_later_calls_run(make_engine, faulty):
    script = ('[CALL] a [HEAD] stops(n=1, kind="SystemExit") [END][CALL] b [HEAD] stops(n=2, kind="KeyboardInterrupt") [END]'
              '[CALL] c [HEAD] stops(n=3, kind="GeneratorExit") [END][CALL] d [HEAD] stops_async(n=4) [END]'
              '[CALL] e [HEAD] calculator(expression="6*7") [END]ok')
    engine, log = make_engine([script, '[CALL] f [HEAD] calculator(expression="1+1") [END][TRAP] [END]again'],
                              tools=faulty)
    assert engine.ask("go", timeout=30)
    text = "".join(e.text for e in log.of(ev.InterruptInjected))
    for cid, payload in zip("abcde", ("error: SystemExit: 1", "error: KeyboardInterrupt: 2",
                                      "error: GeneratorExit: 3", "error: SystemExit: 4", "42")):
        assert f"[INTR] {cid} [HEAD] {payload} [END]" in text
    assert log.first(ev.TurnEnded).reason == "done"
    assert engine.ask("again", timeout=30), "the tool runner is still there for the next answer"
    assert log.first(ev.CallFinished, call_id="f").result == "2"


def test_an_async_tool_that_ignores_cancellation_is_abandoned_at_its_timeout(make_engine, faulty):
    engine, log = make_engine(["[CALL] d [HEAD] deaf(n=1) [END][TRAP] [END]after",
                               "[CALL] c [HEAD] deaf(n=2) [END]Cancel it.[TRAP] [END]gone"],
                              tools=faulty)
    assert engine.ask("go", timeout=30)
    assert log.first(ev.CallFailed, call_id="d").error == "error: TimeoutError: no result within 0.3s"
    assert log.first(ev.TurnEnded).reason == "done" and log.answer() == "after"
    log.hooks.append(lambda e: engine.cancel("c") if isinstance(e, ev.CallStarted) and e.call_id == "c" else None)
    assert engine.ask("again", timeout=30)
    assert log.first(ev.CallCancelled, call_id="c"), "a user's cancel ends it too"


def test_a_stuck_sync_tool_does_not_keep_the_process_from_exiting(tmp_path, fault_file):
    script = "[CALL] h [HEAD] hang_sync(n=1) [END][CALL] d [HEAD] deaf(n=2) [END]done."
    proc = subprocess.Popen([sys.executable, "-m", "asynclm.tui.cli", "--headless", "--no-session", "--json",
                             "--tools", str(fault_file), "--script", script, "--prompt", "go"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    ended = None
    for line in proc.stdout:
        if line.startswith('{"type": "TurnEnded"'):
            ended = time.monotonic()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the process did not exit: a stuck tool kept it alive")
    exited = time.monotonic()
    stderr = proc.stderr.read()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert ended is not None and exited - ended < 2.0


def test_named_pipes_sockets_and_devices_are_refused_by_the_file_tools(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    os.symlink("/dev/zero", tmp_path / "zero")
    (tmp_path / "notes.txt").write_text("pipe dreams\n")
    box = FileSandbox(tmp_path)
    try:
        for name, kind in (("pipe", "a named pipe"), ("sock", "a socket")):
            with pytest.raises(SandboxError, match=f"'{name}' is {kind}, not a regular file"):
                asyncio.run(box.read_file(name))
            with pytest.raises(SandboxError, match=kind):
                box.search_files("x", path=name)
        with pytest.raises(SandboxError, match="outside the allowed folder"):
            asyncio.run(box.read_file("zero"))
        assert box.search_files("pipe") == "notes.txt:1: pipe dreams", "the pipe beside it is skipped, not read"
        assert box.file_info("pipe")["kind"] == "named pipe"
    finally:
        server.close()
