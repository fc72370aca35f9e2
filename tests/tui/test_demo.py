"""Scripted demos: the format, the headless player on a scripted engine, every built-in demo on the
embedded model through ``asynclm-chat --demo NAME --headless``, and playback in the real app."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import pytest

from asynclm.core import events as ev
from asynclm.core.transcript import read_transcript
from asynclm.tui.demo import DemoError, builtin_demos, load_demo, parse_demo, play_headless
from conftest import EMPTY_CONFIG, prose

BUILTIN = [p.stem for p in builtin_demos()]


def write(tmp_path: Path, text: str, name: str = "demo.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- the format -----------------------------------------------------------------------------------


def test_there_are_at_least_four_builtin_demos_and_each_loads():
    assert {"parallel", "dependent", "stop", "compare"} <= set(BUILTIN)
    for path in builtin_demos():
        demo = load_demo(path)
        assert demo.description and demo.steps and demo.expect
    assert load_demo(builtin_demos()[BUILTIN.index("compare")]).compare == (1, 2)


@pytest.mark.parametrize("text, line, words", [
    ('name = "x"\n[[step]]\npress = "enter"\n\n[[step]]\npres = "enter"\n', 6, "unknown key 'pres'"),
    ('[[step]]\nwait_for = "call_started"\ncount = 0\n', 3, "count must be a positive number"),
    ('[[step]]\npress = "enter"\n[[step]]\npress = "ctrl+z"\n', 4, "press takes one of"),
    ('[[step]]\nwait_for = "lunch"\n', 2, "wait_for takes one of"),
    ('[[step]]\ntype = "a"\nwait = 1\n', 1, "exactly one action"),
    ('[model]\ntemperature = 0\nmod = "async"\n[[step]]\nwait = 1\n', 3, "unknown model setting 'mod'"),
    ('[[step]]\nwait = 1\n[expect]\ntools = "wait"\n', 4, "expectation 'tools' has the wrong type"),
    ('name = "x\n', 1, "not valid TOML"),
])
def test_a_malformed_script_is_one_sentence_naming_the_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(DemoError) as info:
        parse_demo(text, path)
    message = str(info.value)
    assert words in message and message.endswith(".") and "\n" not in message
    assert f"line {line}" in message


def test_the_command_lists_demos_and_reports_bad_ones_in_one_sentence(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asynclm.tui.cli", "--demo"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0
    for name in BUILTIN:
        assert any(line.split()[0] == name for line in r.stdout.splitlines()[1:])
    bad = write(tmp_path, '[[step]]\npress = "enter"\nspeed = -2\n')
    r = subprocess.run([sys.executable, "-m", "asynclm.tui.cli", "--demo", str(bad), "--headless"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"asynclm-chat: {bad} line 3: speed must be a positive number."


# --- the headless player on a scripted engine: exact control of what the model writes ----------------

MACHINERY = '''
name = "machinery"
description = "every kind of step"
[[step]]
type = "start"
speed = 200
[[step]]
press = "enter"
[[step]]
wait_for = "call_started"
count = 2
[[step]]
type = "and more"
speed = 200
[[step]]
press = "enter"
[[step]]
wait_for = "user_interrupt"
[[step]]
cancel = "slow"
[[step]]
wait_for = "turn_ended"
[[step]]
mode = "sync"
[[step]]
type = "again"
speed = 200
[[step]]
press = "enter"
[[step]]
wait_for = "turn_ended"
count = 2
[[step]]
new_session = true
[expect]
tools = ["wait", "echo"]
user_interrupts = 1
acted_on = ["echo"]
ended = ["done", "done"]
'''


def test_the_headless_player_drives_the_engine_like_the_app_keys(make_engine, tmp_path):
    first = ("On it.[CALL] slow [HEAD] wait(seconds=30) [END][CALL] quick [HEAD] wait(seconds=0.2) [END]"
             "[TRAP] [END][TRAP] [END][TRAP] [END] Done.")
    engine, log = make_engine([first, "Second answer."],
                              reactions={"user": "[CALL] u [HEAD] echo(text=\"more\") [END]Adding that. "})
    demo = parse_demo(MACHINERY, write(tmp_path, MACHINERY))
    out = io.StringIO()
    notes = io.StringIO()
    recorder = play_headless(demo, engine, out=out, log=notes)
    why = recorder.summary(demo) + "\n" + notes.getvalue()
    assert recorder.check(demo.expect) == [], why
    assert recorder.calls["slow"].outcome == "cancelled" and recorder.calls["quick"].outcome == "done", why
    assert recorder.calls["u"].after_user and not recorder.calls["quick"].after_user
    assert [t.mode for t in recorder.turns] == ["async", "sync"]
    assert recorder.turns[0].user_interrupts[0][1] == "and more"
    assert "you> start" in out.getvalue() and "[you, mid-answer: and more]" in out.getvalue()
    summary = recorder.summary(demo)
    assert "turn 1 (async mode): 'start'" in summary and "your message entered: 'and more'" in summary
    assert len(log.of(ev.SessionStarted)) == 2, "new_session started a fresh context"


def test_escape_in_a_demo_stops_the_answer_and_compare_reports_a_ratio(make_engine, tmp_path):
    text = '''
compare = [1, 2]
[[step]]
type = "talk"
[[step]]
press = "enter"
[[step]]
wait_for = "call_started"
[[step]]
wait = 0.3
[[step]]
press = "escape"
[[step]]
wait_for = "turn_ended"
[[step]]
type = "again"
[[step]]
press = "enter"
[[step]]
wait_for = "turn_ended"
count = 2
'''
    engine, _ = make_engine(["[CALL] w [HEAD] wait(seconds=30) [END]" + prose(3000, "going on "), "Short."])
    demo = parse_demo(text, write(tmp_path, text))
    recorder = play_headless(demo, engine, out=io.StringIO(), log=io.StringIO())
    assert [t.reason for t in recorder.turns] == ["stopped", "done"]
    assert recorder.calls["w"].outcome == "cancelled"
    assert recorder.turns[0].answer.startswith("going on")
    line = recorder.comparison((1, 2))
    assert line.startswith("compare: turn 1 in async mode took") and "x as fast" in line


# --- every built-in demo, headless, on the embedded model ------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_demo_plays_headless_on_the_embedded_model(name, tmp_path):
    """Every step plays, every turn and every call ends, the summary is reported, and the demo's own
    checks are met on the embedded model: the calls it names were made, the user's mid-answer message
    entered the running answer and the model called what it asked for."""
    session = tmp_path / "session.jsonl"
    r = subprocess.run([sys.executable, "-m", "asynclm.tui.cli", "--demo", name, "--headless", "--session",
                        str(session), "--config", str(EMPTY_CONFIG)],
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    demo = load_demo(builtin_demos()[BUILTIN.index(name)])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert "checks: all met" in r.stderr
    assert f"demo {demo.name}: timings from the start of the demo" in r.stderr
    events = list(read_transcript(session))
    started = [e for e in events if isinstance(e, ev.TurnStarted)]
    ends = [e for e in events if isinstance(e, ev.TurnEnded)]
    enters = sum(1 for s in demo.steps if s.action == "press" and s.value == "enter")
    assert 1 <= len(started) == len(ends) <= enters, "every turn the demo started ended"
    assert started[0].text == next(s.value for s in demo.steps if s.action == "type")
    calls = {e.call_id for e in events if isinstance(e, ev.CallDetected)}
    finished = {e.call_id for e in events if isinstance(e, (ev.CallFinished, ev.CallFailed, ev.CallCancelled))}
    assert calls <= finished, "every call ended"
    names = [e.name for e in events if isinstance(e, ev.CallDetected)]
    assert set(demo.expect["tools"]) <= set(names)
    assert [e.reason for e in ends] == demo.expect["ended"]
    if demo.expect.get("acted_on"):  # read from the events themselves, not from the player's checks
        mid = next(i for i, e in enumerate(events) if isinstance(e, ev.InterruptInjected) and "user" in e.sources
                   and any(isinstance(x, ev.TokenGenerated) for x in events[:i]))
        after = [e.name for e in events[mid:] if isinstance(e, ev.CallDetected)]
        assert set(demo.expect["acted_on"]) <= set(after), (after, r.stdout[-800:])
        assert not any(isinstance(e, ev.TurnEnded) for e in events[:mid]), "it entered the running answer"
    if demo.compare:
        assert len(started) == 2 and "compare: turn 1 in sync mode took" in r.stderr
        modes = [e.mode for e in events if isinstance(e, ev.ModeChanged)]
        assert modes[-2:] == ["sync", "async"] or modes[-1] == "async"


# --- playback in the real app -----------------------------------------------------------------------


APP_DEMO = """
name = "in the app"
description = "typing, a message mid-answer, a screenshot"
[[step]]
type = "start the timers"
speed = 80
[[step]]
press = "enter"
[[step]]
wait_for = "call_started"
count = 2
[[step]]
type = "also echo this"
speed = 80
[[step]]
press = "enter"
[[step]]
wait_for = "turn_ended"
[expect]
tools = ["wait", "echo"]
user_interrupts = 1
acted_on = ["echo"]
ended = ["done"]
"""


def test_a_demo_plays_in_the_real_app_and_the_keyboard_takes_over(tiny_model, tmp_path):
    from asynclm.core.engine import Engine, EngineConfig
    from asynclm.core.llama import LlamaBackend
    from asynclm.core.policy import ScriptedPolicy
    from asynclm.tui.app import ChatApp
    from asynclm.tui.widgets import PromptArea, ToolPane
    from conftest import make_test_tools

    demo = parse_demo(APP_DEMO, write(tmp_path, APP_DEMO))
    script = ("Starting.[CALL] a [HEAD] wait(seconds=2.5) [END][CALL] b [HEAD] wait(seconds=0.2) [END]"
              "[TRAP] [END][TRAP] [END][TRAP] [END][TRAP] [END] All done.")

    def make_engine(progress):
        backend = LlamaBackend(tiny_model, n_ctx=4096, n_threads=2, progress=progress)
        return Engine(backend, make_test_tools(), config=EngineConfig(),
                      policy=ScriptedPolicy([script] * 2,
                                            {"user": "[CALL] e [HEAD] echo(text=\"this\") [END]Echoing. "}))

    async def until(pilot, condition, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            assert loop.time() < deadline, "timed out waiting on the app"
            await pilot.pause(0.05)

    async def go():
        shot = tmp_path / "demo.svg"
        app = ChatApp(make_engine, export_dir=tmp_path, demo=demo, screenshot=shot)
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: app.demo_state == "finished", 60)
            await until(pilot, shot.exists, 10)
            assert app.demo_recorder.check(demo.expect) == [], app.demo_recorder.summary(demo)
            assert {p.call_id: p.state for p in app.query(ToolPane)} == {"a": "done", "b": "done", "e": "done"}
            marks = [str(w.render()) for w in app.query(".interrupt-marker")]
            assert any("you: also echo this" in m for m in marks), marks
            history = app.query_one("#prompt", PromptArea).input_history
            assert history == ["start the timers", "also echo this"], "typed through the prompt's keys"
            assert "<svg" in shot.read_text()[:2000]

        # a second run: a key from the keyboard stops the demo at once
        app = ChatApp(make_engine, export_dir=tmp_path, demo=demo)
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: app.demo_state == "playing", 30)
            await until(pilot, lambda: len(app.query_one("#prompt", PromptArea).text) >= 3, 10)
            await pilot.press("x")
            await until(pilot, lambda: app.demo_state == "taken over", 5)
            typed = app.query_one("#prompt", PromptArea).text
            await pilot.pause(0.5)
            assert app.query_one("#prompt", PromptArea).text == typed, "the demo types no more"
            assert typed.endswith("x") and "start the timers".startswith(typed[:-1])

    asyncio.run(go())
