"""The session file: every event as a JSON line, written as it happens; a kill loses at most one."""

import json
import os
import signal
import subprocess
import sys
import time

from asynclm.core import events as ev
from asynclm.core.transcript import TranscriptWriter, read_transcript


def test_engine_events_are_appended_as_json_lines(make_engine, tmp_path):
    engine, log = make_engine(["[CALL] c [HEAD] calculator(expression=\"6*7\") [END][TRAP] [END]42"],
                              start=False)
    path = tmp_path / "s.jsonl"
    engine.executor.start()
    writer = TranscriptWriter(path, engine.executor.loop)
    engine.subscribe(writer)
    engine.start()
    assert engine.ask("6*7?", timeout=10)
    writer.close()
    lines = path.read_text().splitlines()
    assert len(lines) == len(log.events)
    assert [json.loads(line)["type"] for line in lines] == [e.type for e in log.events]
    back = list(read_transcript(path))
    assert [json.loads(e.to_json()) for e in back] == [json.loads(e.to_json()) for e in log.events]
    assert any(isinstance(e, ev.CallFinished) and e.result == "42" for e in back)


KILL_SCRIPT = r'''
import sys, time
from asynclm.core.transcript import TranscriptWriter
from asynclm.core.events import Notice
import asyncio, threading
loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
w = TranscriptWriter(sys.argv[1], loop)
i = 0
while True:
    w(Notice(level="info", message=f"event {i}"))
    i += 1
    time.sleep(0.001)
'''


def test_a_killed_writer_leaves_only_whole_lines(tmp_path):
    path = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(path)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 20_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = path.read_text()
    lines = data.split("\n")
    complete, tail = lines[:-1], lines[-1]
    assert len(complete) > 100
    for n, line in enumerate(complete):
        assert json.loads(line)["message"] == f"event {n}", "every written event, in order"
    assert tail == "" or len(tail) < len(complete[-1]) + 5, "at most the last event is torn"
    assert len(list(read_transcript(path))) >= len(complete)
