"""The session file: every event as a JSON line, written as it happens; a kill loses at most one."""

import json
import signal
import subprocess
import sys
import time

from asynclm.core import events as ev
from asynclm.core.engine import EngineConfig
from asynclm.core.transcript import TranscriptWriter, read_transcript
from conftest import prose


def test_engine_events_are_appended_as_json_lines(make_engine, tmp_path):
    engine, log = make_engine(["[CALL] c [HEAD] calculator(expression=\"6*7\") [END][TRAP] [END]42"],
                              start=False, config=EngineConfig(complete_calls=True))
    path = tmp_path / "s.jsonl"
    writer = TranscriptWriter(path)
    engine.subscribe(writer)
    engine.start()
    assert engine.ask("6*7?", timeout=60)
    writer.close()
    lines = path.read_text().splitlines()
    assert len(lines) == len(log.events)
    assert [json.loads(line)["type"] for line in lines] == [e.type for e in log.events]
    back = list(read_transcript(path))
    assert [json.loads(e.to_json()) for e in back] == [json.loads(e.to_json()) for e in log.events]
    assert any(isinstance(e, ev.CallFinished) and e.result == "42" for e in back)
    assert any(isinstance(e, ev.CallDrafted) for e in back), "the completion check's draft is recorded"


def test_every_kind_of_event_can_be_read_back():
    kinds = set()
    todo = [ev.Event]
    while todo:
        kinds.update(sub := todo.pop().__subclasses__())
        todo.extend(sub)
    assert {k.__name__ for k in kinds} == set(ev.EVENT_TYPES)


KILL_SCRIPT = r'''
import sys, time
from asynclm.core.transcript import TranscriptWriter
from asynclm.core.events import Notice
w = TranscriptWriter(sys.argv[1])
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


def test_a_resumed_session_rebuilds_the_exact_context(make_engine, tmp_path):
    from asynclm.core.transcript import read_transcript

    path = tmp_path / "s.jsonl"
    # With no time to settle, the stop's cancellation is still queued when the session is saved.
    first, log1 = make_engine(["Hello.[CALL] c [HEAD] calculator(expression=\"6*7\") [END][TRAP] [END]42.",
                               "[CALL] w [HEAD] wait(seconds=30) [END]" + prose(2000, "long ")], start=False,
                              config=EngineConfig(stop_settle=0.0))
    writer = TranscriptWriter(path)
    first.subscribe(writer)
    first.start()
    assert first.ask("6*7?", timeout=60)
    first.send("now wait")
    log1.wait_for(lambda e: isinstance(e, ev.CallStarted) and e.call_id == "w")
    first.stop_and_wait()
    kv_before = first.backend.kv_positions()
    first.close()  # closing the engine first must not lose the writer's last events
    writer.close()
    # The same model in a new engine: the context is rebuilt token for token.
    second, log2 = make_engine(["[CALL] c [HEAD] calculator(expression=\"1\") [END]",
                                "[CALL] d [HEAD] calculator(expression=\"2\") [END][TRAP] [END]ok"], start=False)
    second.resume(list(read_transcript(path)), str(path))
    second.start()
    resumed = log2.wait_for(lambda e: isinstance(e, ev.SessionResumed))
    assert resumed.tokens == kv_before and resumed.turns == 2
    # what typed references need: which tool each call ran, and which calls failed or were cancelled
    assert second.ledger.producers == {"c": "calculator", "w": "wait"} and second.ledger.failed == {"w"}
    # and what the loop breaker lets an answer quote: the messages and results the session heard
    assert {"6*7?", "42", "now wait"} <= set(second._heard)
    assert second.backend.kv_positions() == kv_before
    assert second.ask("again", timeout=60)
    opening = log2.of(ev.InterruptInjected)[0]
    assert "[INTR] w [HEAD] cancelled [END]" in opening.text, "the stop's cancellation still enters"
    prefix = next(e for e in log2.of(ev.ContextExtended) if e.reason == "turn-prefix")
    assert list(prefix.tokens) == [second.backend.eos], "the stopped answer is closed as a finished one"
    assert "tools:" not in opening.text, "the tool list is already in the context"
    text = "".join(e.text for e in log2.of(ev.InterruptInjected))
    assert "DuplicateCallId: the id c is already used" in text, "call ids carry over"
    assert log2.first(ev.TurnStarted).turn == 3


def test_resume_refuses_another_model(make_engine, tmp_path, tiny_model):
    from asynclm.core.events import SessionStarted

    engine, _ = make_engine([], start=False)
    other = [SessionStarted(model="qwen2.5-7b", dialect="text", mode="async", n_ctx=4096, tools="tools: none")]
    import pytest
    with pytest.raises(ValueError, match="recorded with model 'qwen2.5-7b'"):
        engine.resume(other)
