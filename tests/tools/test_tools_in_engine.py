"""Tools through the real engine: a scripted model calls real tools; results come back as
interrupts; dangerous tools wait for confirmation; bad output never crashes a turn."""

import threading

from asynclm.core import events as ev
from asynclm.tools.builtins import default_registry


def test_three_real_tools_answer_through_the_engine(make_engine, tmp_path):
    (tmp_path / "todo.txt").write_text("buy milk\ncall Ana\n")
    tools = default_registry(root=str(tmp_path))
    script = ('[CALL] f [HEAD] read_file(path="todo.txt") [END]'
              '[CALL] c [HEAD] calculator(expression="12*7") [END]'
              '[CALL] u [HEAD] convert_units(value=5, from_unit="km", to_unit="mile") [END]'
              "Looking.[TRAP] [END][TRAP] [END][TRAP] [END]Done.")
    engine, log = make_engine([script], tools=tools)
    assert engine.ask("todo, 12*7 and 5 km in miles", timeout=20)
    text = "".join(e.text for e in log.of(ev.InterruptInjected))
    assert "[INTR] f [HEAD] buy milk\ncall Ana\n [END]" in text
    assert "[INTR] c [HEAD] 84 [END]" in text
    assert "[INTR] u [HEAD] 5 km = 3.10686 mile [END]" in text
    assert log.answer() == "Looking.Done."


def test_bad_arguments_from_the_model_get_a_clear_error_payload(make_engine):
    script = ('[CALL] t [HEAD] convert_time(time="10:00", from_timezone="UTC") [END]'
              '[CALL] r [HEAD] read_file(path="../../etc/passwd") [END][TRAP] [END][TRAP] [END]ok')
    engine, log = make_engine([script], tools=default_registry())
    assert engine.ask("go", timeout=60)
    text = "".join(e.text for e in log.of(ev.InterruptInjected))
    assert "[INTR] t [HEAD] error: ArgumentError: convert_time is missing the required argument 'to_timezone' [END]" in text
    assert "[INTR] r [HEAD] error: SandboxError: '../../etc/passwd' is a path outside the allowed folder" in text


def test_shell_asks_for_confirmation_before_each_run(make_engine, tmp_path):
    tools = default_registry(root=str(tmp_path), allow_shell=True)
    script = ('[CALL] yes [HEAD] shell(command="echo allowed") [END]'
              '[CALL] no [HEAD] shell(command="touch should-not-exist") [END][TRAP] [END][TRAP] [END]ok')
    engine, log = make_engine([script], tools=tools)
    answers = {"yes": True, "no": False}

    def answer(e):
        if isinstance(e, ev.CallNeedsConfirmation):
            threading.Timer(0.1, engine.confirm, (e.call_id, answers[e.call_id])).start()

    log.hooks.append(answer)
    assert engine.ask("go", timeout=60)
    assert {e.call_id for e in log.of(ev.CallNeedsConfirmation)} == {"yes", "no"}
    assert log.first(ev.CallFinished, call_id="yes").result == '{"exit_code":0,"output":"allowed\\n"}'
    assert log.first(ev.CallFailed, call_id="no").error == "error: NotConfirmed: the user did not allow shell to run"
    assert not (tmp_path / "should-not-exist").exists()
    started = log.first(ev.CallStarted, call_id="yes").t
    assert started > log.first(ev.CallNeedsConfirmation, call_id="yes").t, "nothing ran before the answer"


def test_invalid_text_from_a_tool_never_crashes_a_turn(make_engine):
    tools = default_registry()

    def raw_bytes() -> bytes:
        """Returns bytes that are not UTF-8."""
        return b"ok \xff\xfe\xfa end"

    def surrogate() -> str:
        """Returns a string with a lone surrogate."""
        return "bad \udc80 char"

    tools.add(raw_bytes)
    tools.add(surrogate)
    engine, log = make_engine(["[CALL] b [HEAD] raw_bytes() [END][CALL] s [HEAD] surrogate() [END]"
                               "[TRAP] [END][TRAP] [END]fine"], tools=tools)
    assert engine.ask("go", timeout=60)
    text = "".join(e.text for e in log.of(ev.InterruptInjected))
    assert "[INTR] b [HEAD] ok \ufffd\ufffd\ufffd end [END]" in text
    assert log.answer() == "fine" and log.first(ev.TurnEnded).reason == "done"
