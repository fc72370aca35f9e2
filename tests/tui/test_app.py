"""The terminal app through Textual's pilot, with the real engine on the tiny model and a script."""

import asyncio
import time

from textual import events
from textual.widgets.markdown import MarkdownBlock

from asynclm.core import events as ev
from asynclm.core.engine import Engine, EngineConfig, Mode
from asynclm.core.llama import LlamaBackend
from asynclm.core.policy import ScriptedPolicy
from asynclm.tui.app import ChatApp
from asynclm.tui.export import export_transcript
from asynclm.tui.widgets import PromptArea, ToolPane
from conftest import make_app, make_test_tools, prose


async def until(pilot, condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting on the app")
        await pilot.pause(0.05)


async def send(pilot, app, text):
    await until(pilot, lambda: app.engine is not None)
    prompt = app.query_one("#prompt", PromptArea)
    prompt.focus()
    prompt.insert(text)
    await pilot.press("enter")


async def ask(pilot, app, text):
    """Send ``text`` and wait until its answer has ended and been drawn."""
    await send(pilot, app, text)
    await until(pilot, lambda: ended(app))
    await pilot.pause(0.2)


def ended(app, turn=1):
    return any(isinstance(e, ev.TurnEnded) and e.turn == turn for e in app.events)


def answer_text(app):
    return "".join(view.answer_parts and "".join(view.answer_parts) or "" for view in app.turns.values())


def markers(app):
    return [str(w.render()) for w in app.query(".interrupt-marker")]


THREE = ("Checking.[CALL] a [HEAD] wait(seconds=1.5) [END][CALL] b [HEAD] wait(seconds=2.0) [END]"
         "[CALL] c [HEAD] calculator(expression=\"2+2\") [END][TRAP] [END][TRAP] [END][TRAP] [END] All done.")


def test_three_parallel_calls_show_three_panes_that_end_done(tiny_model, tmp_path):
    async def go():
        app = make_app(tiny_model, [THREE], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await send(pilot, app, "three things")
            await until(pilot, lambda: len(app.panes) == 3)
            running_at_once = sum(1 for p in app.panes.values() if p.active)
            await until(pilot, lambda: ended(app))
            await pilot.pause(0.2)
            panes = list(app.query(ToolPane))
            assert [p.call_id for p in panes] == ["a", "b", "c"]
            assert all(p.state == "done" and p.has_class("-done") for p in panes)
            assert app.panes["c"].result == "4"
            assert running_at_once >= 2, "panes appear as calls are detected, while they run"
            assert "All done." in answer_text(app)
    asyncio.run(go())


def test_typing_and_enter_mid_answer_injects_a_user_interrupt(tiny_model, tmp_path):
    async def go():
        app = make_app(tiny_model, ["Starting. [CALL] w [HEAD] wait(seconds=4) [END]" + prose(100)
                                    + "[TRAP] [END] finished."], tmp_path,
                       reactions={"user": "[CALL] p [HEAD] echo(text=\"Paris\") [END]Adding Paris. "})
        async with app.run_test(size=(140, 45)) as pilot:
            await send(pilot, app, "list words")
            await until(pilot, lambda: len(answer_text(app)) > 40)
            assert app.engine.busy
            await send(pilot, app, "also Paris please")
            await until(pilot, lambda: ended(app), timeout=30)
            await pilot.pause(0.2)
            injected = [e for e in app.events if isinstance(e, ev.InterruptInjected) and "also Paris please" in e.text]
            assert len(injected) == 1 and injected[0].sources == ("user",)
            assert any("you: also Paris please" in m for m in markers(app))
            assert "p" in app.panes and "Adding Paris." in answer_text(app)
            assert app.query_one("#prompt", PromptArea).text == "", "the prompt stayed usable"
    asyncio.run(go())


LONG = "[CALL] w [HEAD] wait(seconds=30) [END]" + prose(4000, "going on ")  # a long answer beside a long call


async def answering(pilot, app):
    """Ask for the long answer and return once some of it is on screen."""
    await send(pilot, app, "talk")
    await until(pilot, lambda: len(answer_text(app)) > 60)


def test_the_answer_keeps_streaming_while_the_user_types(tiny_model, tmp_path):
    """While keys arrive the screen updates follow the keystrokes; the answer must not stall meanwhile."""
    async def go():
        app = make_app(tiny_model, [LONG], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await answering(pilot, app)
            prompt = app.query_one("#prompt", PromptArea)
            prompt.focus()
            seen = []
            for _ in range(60):  # a fast typist: a key every 20 ms for over a second
                prompt.post_message(events.Key("x", "x"))
                await asyncio.sleep(0.02)
                seen.append(len(answer_text(app)))
            assert prompt.text.endswith("x" * 60)
            assert len(set(seen)) >= 4, "the answer reached the screen several times during the typing"
            await pilot.press("escape")
            await until(pilot, lambda: ended(app))
    asyncio.run(go())


def test_what_a_turn_leaves_is_exempted_from_later_garbage_collections(tiny_model, tmp_path):
    """A full collection over the whole app pauses the screen for tens of milliseconds; the app
    collects when a turn ends and freezes what survives, so collections during typing stay short."""
    import gc

    async def go():
        app = make_app(tiny_model, [prose(200)], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: app.engine is not None)
            frozen = gc.get_freeze_count()
            await ask(pilot, app, "talk")
            assert gc.get_freeze_count() > frozen  # the turn's transcript and widgets
    gc.unfreeze()
    asyncio.run(go())
    gc.unfreeze()


def test_escape_stops_mid_answer_and_keeps_the_partial_reply(tiny_model, tmp_path):
    async def go():
        app = make_app(tiny_model, [LONG], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await answering(pilot, app)
            await pilot.press("escape")
            await until(pilot, lambda: ended(app))
            await pilot.pause(0.3)
            end = next(e for e in app.events if isinstance(e, ev.TurnEnded))
            assert end.reason == "stopped"
            partial = answer_text(app)
            assert partial.startswith("going on") and len(partial) < len(LONG)
            view = app.turns[1]
            assert view.has_class("-stopped") and "■ stopped" in str(app.query_one(".stopped-marker").render())
            assert app.panes["w"].state == "cancelled"
            assert not app.check_action("stop", ()), "Esc is inactive once nothing runs"
    asyncio.run(go())


def test_cancelling_one_call_leaves_the_others_running(tiny_model, tmp_path):
    script = ("[CALL] a [HEAD] wait(seconds=1.0) [END][CALL] b [HEAD] wait(seconds=30) [END]"
              "[CALL] c [HEAD] wait(seconds=1.01) [END][TRAP] [END][TRAP] [END][TRAP] [END]ok")

    async def go():
        app = make_app(tiny_model, [script], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await send(pilot, app, "three waits")
            await until(pilot, lambda: len(app.panes) == 3 and app.panes["b"].state == "running")
            app.panes["b"].focus()
            await pilot.press("ctrl+g")
            await until(pilot, lambda: app.panes["b"].state == "cancelled")
            assert "cancelled" not in (app.panes["a"].state, app.panes["c"].state)
            await until(pilot, lambda: ended(app))
            await pilot.pause(0.2)
            assert app.panes["a"].state == "done" and app.panes["c"].state == "done"
    asyncio.run(go())


def test_mode_switching_reaches_the_engine_and_the_status_bar(tiny_model, tmp_path):
    async def go():
        app = make_app(tiny_model, [], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: app.engine is not None)
            status = app.query_one("#status")
            assert "async mode" in str(status.render())
            await pilot.press("f2")
            assert app.engine.mode.value == "sync" and "sync mode" in str(status.render())
            app.action_set_mode("sync-parallel")
            assert app.engine.mode.value == "sync-parallel" and "sync-parallel mode" in str(status.render())
    asyncio.run(go())


def test_export_writes_markdown_and_json_lines(tiny_model, tmp_path):
    async def go():
        app = make_app(tiny_model, [THREE], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await ask(pilot, app, "three things")
            await pilot.press("ctrl+s")
            md = list(tmp_path.glob("asynclm-*.md"))
            jsonl = list(tmp_path.glob("asynclm-*.jsonl"))
            assert len(md) == 1 and len(jsonl) == 1
            text = md[0].read_text()
            assert "## You (turn 1)" in text and "three things" in text and "`c` returned after" in text
            assert "All done." in text
            lines = jsonl[0].read_text().splitlines()
            assert len(lines) == len(app.events) and '"type": "TurnEnded"' in lines[-1]
    asyncio.run(go())


def test_export_quotes_what_the_user_said_mid_answer_even_from_older_transcripts(tmp_path):
    said = ev.InterruptInjected(t=2.0, sources=("a", "user"), n_tokens=9, position=40, text="[INTR] ...",
                                latency=0.01, payloads=("12", " and Paris "))
    older = ev.InterruptInjected(t=2.5, sources=("user",), n_tokens=5, position=60, text="[INTR] user: stop",
                                 latency=0.01)  # written before payloads were recorded
    assert said.said() == [("a", "12"), ("user", " and Paris ")] and older.said() == [("user", "")]
    opening = ev.InterruptInjected(t=1.0, sources=("user",), n_tokens=5, position=0, text="[INTR] user: weather",
                                   latency=0.01, payloads=("weather",))
    events = [ev.TurnStarted(t=1.0, turn=1, text="weather"), opening,
              ev.TokenGenerated(t=1.5, token=1, text="Looking", in_block=False), said, older,
              ev.TurnEnded(t=3.0, turn=1, reason="done", text="Looking")]
    md, _ = export_transcript(events, tmp_path)
    text = md.read_text()
    assert "(+1.0s) you interrupted: and Paris\n" in text, text
    assert "(+1.5s) you interrupted: [INTR] user: stop\n" in text, text
    assert "you interrupted: weather" not in text, "the opening message is the turn's heading, not an interrupt"



def test_export_keeps_a_tool_output_as_it_was(tmp_path):
    from markdown_it import MarkdownIt

    listing = "__init__.py  0 B\n# notes.md  12 B\n``` fenced.md  3 B"
    events = [ev.TurnStarted(t=1.0, turn=1, text="what is in pkg"),
              ev.CallFinished(t=1.2, call_id="c1", name="list_dir", result=listing, elapsed=0.01),
              ev.CallFailed(t=1.3, call_id="c2", name="read_file", error="FileNotFoundError: '__x__' does not exist",
                            elapsed=0.01),
              ev.TurnEnded(t=2.0, turn=1, reason="done", text="")]
    md, _ = export_transcript(events, tmp_path)
    blocks = [t.content for t in MarkdownIt().parse(md.read_text()) if t.type == "fence"]
    assert blocks == [listing + "\n", "FileNotFoundError: '__x__' does not exist\n"]

def test_a_failed_tool_shows_its_error(tiny_model, tmp_path):
    async def go():
        app = make_app(tiny_model, ["[CALL] x [HEAD] boom(message=\"disk on fire\") [END][TRAP] [END]Sorry."], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await ask(pilot, app, "break")
            pane = app.panes["x"]
            assert pane.state == "failed" and pane.has_class("-failed")
            shown = str(pane.query_one(".pane-result").render())
            assert "error: RuntimeError: disk on fire" in shown
    asyncio.run(go())


def test_a_bad_model_is_one_sentence_on_screen(tmp_path):
    def make_engine(progress):
        return LlamaBackend(tmp_path / "missing.gguf")

    async def go():
        app = ChatApp(make_engine, export_dir=tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: "No model file" in str(app.query_one("#loading").render()))
            assert app.engine is None
    asyncio.run(go())


def test_a_greeting_opens_each_new_session_but_not_a_resumed_one(tiny_model, tmp_path):
    def make_engine(progress):
        return Engine(LlamaBackend(tiny_model, n_ctx=4096, n_threads=2), make_test_tools(),
                      policy=ScriptedPolicy(["Sure."]))

    def greetings(app):
        return [str(w.render()) for w in app.query(".greeting")]

    async def go():
        app = ChatApp(make_engine, export_dir=tmp_path, greeting="Ask me for the time.")
        async with app.run_test(size=(100, 30)) as pilot:
            assert greetings(app) == ["Ask me for the time."]
            await send(pilot, app, "hi")
            await until(pilot, lambda: ended(app))
            await pilot.press("ctrl+n")
            await until(pilot, lambda: not app.turns)
            assert greetings(app) == ["Ask me for the time."], "a new session greets again, once"
        resumed = ChatApp(make_engine, export_dir=tmp_path, greeting="Ask me for the time.",
                          history=[ev.TurnStarted(turn=1, text="hi")])
        async with resumed.run_test(size=(100, 30)) as pilot:
            assert greetings(resumed) == []
            await until(pilot, lambda: resumed.engine is not None)
            await pilot.press("ctrl+n")
            assert greetings(resumed) == ["Ask me for the time."], "a new session after it is greeted"
    asyncio.run(go())


def test_resume_restores_a_session(tiny_model, tmp_path):
    from asynclm.core.transcript import TranscriptWriter, read_transcript

    path = tmp_path / "session.jsonl"
    backend = LlamaBackend(tiny_model, n_ctx=4096, n_threads=2)
    first = Engine(backend, make_test_tools(), policy=ScriptedPolicy(
        ['Sure.[CALL] c [HEAD] calculator(expression="6*7") [END][TRAP] [END] It is 42.']))
    writer = TranscriptWriter(path)
    first.subscribe(writer)
    first.start()
    assert first.ask("what is 6*7?", timeout=60)
    kv = backend.kv_positions()
    first.close()
    writer.close()
    history = list(read_transcript(path))

    def make_engine(progress):
        engine = Engine(LlamaBackend(tiny_model, n_ctx=4096, n_threads=2), make_test_tools(),
                        policy=ScriptedPolicy(["Still here."]))
        engine.resume(history, str(path))
        return engine

    async def go():
        app = ChatApp(make_engine, export_dir=tmp_path, history=history)
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: 1 in app.turns and "It is 42." in "".join(app.turns[1].answer_parts))
            await until(pilot, lambda: any(isinstance(e, ev.SessionResumed) for e in app.events))
            await until(pilot, lambda: app.panes["c"].result == "42")
            old = app.turns[1]
            assert str(old.query_one(".user-message").render()) == "what is 6*7?"
            assert "It is 42." in "".join(old.answer_parts) and app.panes["c"].result == "42"
            assert app.engine.backend.kv_positions() == kv, "the context is rebuilt"
            await send(pilot, app, "still there?")
            await until(pilot, lambda: ended(app, turn=2))
            assert "Still here." in "".join(app.turns[2].answer_parts)
    asyncio.run(go())


def killed_mid_call(tiny_model, tmp_path):
    """A session file as a kill leaves it: call w has started and nothing after it was written."""
    from asynclm.core.transcript import TranscriptWriter

    live, killed = tmp_path / "live.jsonl", tmp_path / "killed.jsonl"
    engine = Engine(LlamaBackend(tiny_model, n_ctx=4096, n_threads=2), make_test_tools(),
                    policy=ScriptedPolicy(['On it.[CALL] w [HEAD] wait(seconds=30) [END]Waiting.[TRAP] [END]']))
    writer = TranscriptWriter(live)
    engine.subscribe(writer)
    engine.start()
    engine.send("wait for me")
    deadline = time.monotonic() + 30
    while '"CallStarted"' not in (live.read_text() if live.exists() else ""):
        assert time.monotonic() < deadline, "the call never started"
        time.sleep(0.02)
    lines = live.read_text().splitlines(keepends=True)
    started = next(i for i, line in enumerate(lines) if '"CallStarted"' in line)
    killed.write_text("".join(lines[:started + 1]))
    engine.close()
    writer.close()
    return killed


def test_a_call_running_when_the_session_was_killed_is_reported_lost_on_resume(tiny_model, tmp_path):
    from asynclm.core.notes import LOST
    from asynclm.core.transcript import TranscriptWriter, read_transcript

    path = killed_mid_call(tiny_model, tmp_path)
    history = list(read_transcript(path))

    def make_engine(progress):
        engine = Engine(LlamaBackend(tiny_model, n_ctx=4096, n_threads=2), make_test_tools(),
                        policy=ScriptedPolicy(["Sorry, it was lost."]))
        engine.resume(history, str(path))
        engine.subscribe(TranscriptWriter(path))
        return engine

    async def go():
        app = ChatApp(make_engine, export_dir=tmp_path, history=history)
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: "w" in app.panes and app.panes["w"].state == "failed")
            assert app.panes["w"].result == LOST
            await until(pilot, lambda: "0 pending" in str(app.query_one("#status").render()))
            await send(pilot, app, "well?")
            await until(pilot, lambda: ended(app, turn=2))
            opening = next(e for e in app.events if isinstance(e, ev.InterruptInjected) and "well?" in e.text)
            assert f"[INTR] w [HEAD] {LOST} [END]" in opening.text, "the model is told"
    asyncio.run(go())
    again = list(read_transcript(path))
    assert sum(isinstance(e, ev.CallFailed) and e.call_id == "w" for e in again) == 1, "recorded, once"


def test_a_message_that_enters_beside_a_result_is_shown_with_its_words(tiny_model, tmp_path):
    """In sync mode the answer waits at a call's end for its result, and a message typed meanwhile
    waits too: both enter together. The message's marker shows what the user typed, as it does for a
    message that enters alone."""
    async def go():
        app = make_app(tiny_model, ["Go.[CALL] a [HEAD] wait(seconds=3) [END] Done."], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: app.engine is not None)
            app.engine.set_mode(Mode.SYNC)
            await send(pilot, app, "go")
            await until(pilot, lambda: any(isinstance(e, ev.TrapEntered) and e.reason == "sync" for e in app.events))
            await send(pilot, app, "and this too")
            await until(pilot, lambda: ended(app), timeout=30)
            await pilot.pause(0.2)
            injected = [e.sources for e in app.events if isinstance(e, ev.InterruptInjected)]
            assert {"a", "user"} in [set(s) for s in injected], injected
            assert any("you: and this too" in m for m in markers(app)), markers(app)
    asyncio.run(go())


def test_the_answer_shows_copied_expressions_and_file_names_as_written(tiny_model, tmp_path):
    answer = ("12*34 is 408 (12*34 = 408); pkg holds __init__.py and main.py; a<b and c>d reads <none>; "
              "**done**, see https://example.com")

    async def go():
        app = make_app(tiny_model, [answer], tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await ask(pilot, app, "what is 12*34 and what is in pkg")
            [paragraph] = [block.render() for block in app.query(MarkdownBlock)]
            assert paragraph.plain == answer.replace("**", "")
            styles = {paragraph.plain[span.start:span.end]: str(span.style) for span in paragraph.spans}
            # Markdown still works: bold, and a link with a scheme; nothing else is emphasis, a link or
            # dropped as HTML (plain Markdown made "34 is 408 (12" italic, "init" bold, main.py a link
            # to http://main.py, and lost "b and c" and "<none>")
            assert set(styles) == {"done", "https://example.com"}
            assert "strong" in styles["done"] and "link" in styles["https://example.com"]
    asyncio.run(go())



def test_a_message_the_context_cannot_take_comes_back_to_the_prompt(tiny_model, tmp_path):
    def make_engine(progress):
        backend = LlamaBackend(tiny_model, n_ctx=1024, n_threads=2, progress=progress)  # 806 for the tools
        return Engine(backend, make_test_tools(), policy=ScriptedPolicy(["Hello."]), config=EngineConfig())

    too_long = prose(100)

    async def go():
        app = ChatApp(make_engine, export_dir=tmp_path)
        async with app.run_test(size=(140, 45)) as pilot:
            await ask(pilot, app, too_long)
            prompt = app.query_one("#prompt", PromptArea)
            assert prompt.text == too_long.strip()
            assert sum(isinstance(e, ev.TurnStarted) for e in app.events) == 1
            prompt.clear()
            await ask(pilot, app, "hi")  # the session goes on
            assert app.turns[2].answer_parts and "".join(app.turns[2].answer_parts) == "Hello."
        # resumed, the session shows its turns, and the message it once gave back stays out of the prompt
        resumed = ChatApp(make_engine, export_dir=tmp_path, history=list(app.events))
        async with resumed.run_test(size=(140, 45)) as pilot:
            await until(pilot, lambda: 2 in resumed.turns and resumed.engine is not None)
            await pilot.pause(0.2)
            assert resumed.query_one("#prompt", PromptArea).text == ""
    asyncio.run(go())



def test_a_full_context_says_which_key_starts_a_new_session_and_the_message_goes_there(tiny_model, tmp_path):
    def make_engine(progress):
        backend = LlamaBackend(tiny_model, n_ctx=1024, n_threads=2, progress=progress)  # 806 for the tools
        return Engine(backend, make_test_tools(), policy=ScriptedPolicy([prose(20, "filler"), "Fresh."]),
                      config=EngineConfig())

    message = prose(15)  # too long for what is left, not for a new session

    async def go():
        app = ChatApp(make_engine, export_dir=tmp_path)
        async with app.run_test(size=(140, 45), notifications=True) as pilot:
            await ask(pilot, app, "hi")
            await send(pilot, app, message)
            prompt = app.query_one("#prompt", PromptArea)
            await until(pilot, lambda: prompt.text == message.strip())
            notices = [n.message for n in app._notifications]
            assert "Press Ctrl+N for a new session, then Enter to send the message again." in notices
            await pilot.press("ctrl+n")
            await until(pilot, lambda: not app.turns)
            prompt.focus()
            await pilot.press("enter")
            await until(pilot, lambda: any(isinstance(e, ev.TurnEnded) and e.text == "Fresh." for e in app.events))
    asyncio.run(go())


def test_a_bad_keymap_entry_is_named_in_a_notice_and_the_good_ones_apply(tiny_model, tmp_path):
    def make_engine(progress):
        return Engine(LlamaBackend(tiny_model, n_ctx=4096, n_threads=2), make_test_tools(),
                      policy=ScriptedPolicy([]))

    keymap = {"stopp": "ctrl+q", "help": "ctrlx", "export": "ctrl+n", "timeline": "ctrl+o"}

    async def go():
        app = ChatApp(make_engine, export_dir=tmp_path, keymap=keymap)
        async with app.run_test(size=(140, 45), notifications=True) as pilot:
            await pilot.pause(0.1)
            notices = [n.message for n in app._notifications]
            assert any("there is no binding 'stopp'" in n for n in notices), notices
            assert any("'ctrlx' for help is not a key name" in n for n in notices), notices
            assert any("ctrl+n is already the key of" in n for n in notices), notices
            assert app._keymap == {"timeline": "ctrl+o"}, "the good entry applies"
            assert app._binding_key("new_session") == "ctrl+n" and app._binding_key("help") == "f1"
    asyncio.run(go())


def test_words_that_look_like_markup_are_shown_as_they_are(tmp_path):
    from asynclm.core.modelgen import write_random_llama

    model = write_random_llama(tmp_path / "m.gguf", seed=7, name="tiny [v2] [/]")

    async def go():
        app = make_app(model, ["[/b] " * 12], tmp_path)  # a loop the engine ends, with a notice quoting it
        async with app.run_test(size=(140, 45), notifications=True) as pilot:
            await ask(pilot, app, "go")
            await until(pilot, lambda: app.n_past > 0 and "pending" in str(app.query_one("#status").render()))
            await pilot.pause(0.3)  # the notice is drawn (a stray [/] used to stop the app here)
            assert app.is_running
            notices = [n.message for n in app._notifications]
            assert any("repeating itself ('[/b] [/b] [/b]" in n for n in notices), notices
            assert str(app.query_one("#status").render()).startswith("tiny [v2] [/] · ")
    asyncio.run(go())
