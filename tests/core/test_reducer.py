"""Events folded into turns and calls: what every front end reads a call's state from."""

from asynclm.core import events as ev
from asynclm.core.reducer import SessionState


def fold(events):
    state = SessionState()
    for e in events:
        state.apply(e)
    return state


def test_a_session_folds_into_turns_and_calls_on_the_real_loop(make_engine):
    engine, log = make_engine(["On it.[CALL] a [HEAD] wait(seconds=0.2) [END][CALL] b [HEAD] boom() [END]"
                               "[CALL] c [HEAD] wait(seconds=30) [END][TRAP] [END][TRAP] [END][TRAP] [END]Done."],
                              start=False)
    engine.subscribe(lambda e: isinstance(e, ev.CallStarted) and e.call_id == "c" and engine.cancel("c"))
    engine.start()
    assert engine.ask("three", timeout=30)
    state = fold(log.events)
    (turn,) = state.turns
    assert [c.call_id for c in turn.calls] == ["a", "b", "c"]
    assert {c.call_id: c.outcome for c in turn.calls} == {"a": "done", "b": "failed", "c": "cancelled"}
    a, b, c = turn.calls
    assert a.name == "wait" and a.expr == "wait(seconds=0.2)" and a.result == log.first(ev.CallFinished).result
    assert a.detected <= a.started <= a.ended and a.took == a.ended - a.started
    assert "RuntimeError" in b.detail and b.result == ""
    assert not state.active_calls()
    assert turn.reason == "done" and turn.answer == log.answer()
    assert turn.answering and turn.first_token <= turn.last_token <= turn.ended
    assert turn.stats is not None and turn.stats.generated > 0
    entered = [s for e in log.of(ev.InterruptInjected) for s in e.sources if s not in ("user", "system")]
    assert sorted(source for _, source in turn.results) == sorted(entered) == ["a", "b", "c"]
    assert turn.traps and all(left is not None for _, left in turn.traps)


def test_a_call_moves_through_its_states_and_keeps_what_it_waited_on():
    state = SessionState()
    state.apply(ev.TurnStarted(t=1.0, turn=1, text="go"))
    call = state.apply(ev.CallDetected(t=1.1, call_id="c2", name="read_file", expr="read_file(path=c1)",
                                       refs=("c1",)))
    assert call.outcome == "pending" and call.refs == ("c1",) and call.turn == 1
    state.apply(ev.CallWaiting(t=1.2, call_id="c2", on=("c1",)))
    assert (call.state, call.detail) == ("waiting", "c1")
    state.apply(ev.CallNeedsConfirmation(t=1.3, call_id="c2", name="read_file", expr="read_file(path=c1)"))
    assert call.state == "confirm" and call.active and call.took is None
    state.apply(ev.CallStarted(t=1.4, call_id="c2", name="read_file"))
    assert (call.state, call.detail, call.started) == ("running", "", 1.4)
    state.apply(ev.CallFailed(t=1.9, call_id="c2", name="read_file", error="no such file", elapsed=0.5))
    assert (call.outcome, call.detail, call.ended, call.elapsed) == ("failed", "no such file", 1.9, 0.5)
    assert round(call.took, 6) == 0.5 and not call.active


def test_a_refused_call_does_not_overwrite_the_call_whose_id_it_repeats():
    state = fold([ev.TurnStarted(t=1.0, turn=1, text="go"),
                  ev.CallDetected(t=1.1, call_id="c1", name="calculator", expr="calculator(expression='1+1')"),
                  ev.CallRejected(t=1.2, call_id="c1", raw="[CALL] c1 [HEAD] clock() [END]",
                                  reason="DuplicateCallId: the id c1 is already used")])
    assert state.calls["c1"].expr == "calculator(expression='1+1')" and state.calls["c1"].active
    (refused,) = state.turn.rejected
    assert refused.call_id == "c1" and refused.reason.startswith("DuplicateCallId")


def test_only_what_enters_after_the_first_token_is_mid_answer():
    state = fold([ev.TurnStarted(t=1.0, turn=1, text="hi"),
                  ev.InterruptInjected(t=1.1, sources=("user",), n_tokens=3, position=10, text="hi", latency=0.1,
                                       payloads=("hi",)),
                  ev.TokenGenerated(t=1.2, token=5, text="Sure", in_block=False),
                  ev.InterruptInjected(t=1.3, sources=("user", "c1", "system"), n_tokens=9, position=14,
                                       text="...", latency=0.1, payloads=(" and more ", "42", "note")),
                  ev.CallDetected(t=1.4, call_id="c2", name="clock", expr="clock()")])
    turn = state.turn
    assert len(turn.injections) == 2
    assert turn.user_interrupts == [(1.3, "and more")] and turn.results == [(1.3, "c1")]
    assert state.calls["c2"].after_user


def test_turns_keep_their_own_calls_when_a_new_session_reuses_an_id():
    state = fold([ev.TurnStarted(t=1.0, turn=1, text="one"),
                  ev.CallDetected(t=1.1, call_id="c1", name="clock", expr="clock()"),
                  ev.CallFinished(t=1.2, call_id="c1", name="clock", result="10:00", elapsed=0.1),
                  ev.TurnEnded(t=1.3, turn=1, reason="done", text="It is ten."),
                  ev.TurnStarted(t=2.0, turn=2, text="two"),
                  ev.CallDetected(t=2.1, call_id="c1", name="calculator", expr="calculator(expression='2')")])
    first, second = state.turns
    assert first.calls[0].result == "10:00" and first.calls[0].name == "clock"
    assert second.calls[0].name == "calculator" and state.calls["c1"] is second.calls[0]
    assert (first.reason, first.answer, second.reason) == ("done", "It is ten.", "")


def test_an_end_heard_without_its_detection_is_still_a_call():
    state = fold([ev.TurnStarted(t=1.0, turn=1, text="go"),
                  ev.CallFinished(t=1.2, call_id="c9", name="list_dir", result="a.txt", elapsed=0.01)])
    (call,) = state.turn.calls
    assert (call.call_id, call.name, call.outcome, call.result) == ("c9", "list_dir", "done", "a.txt")


def test_modes_and_notices_are_kept():
    state = fold([ev.SessionStarted(model="m", dialect="cml", mode="sync", n_ctx=512, tools=""),
                  ev.TurnStarted(t=1.0, turn=1, text="a"),
                  ev.ModeChanged(mode="async"),
                  ev.TurnStarted(t=2.0, turn=2, text="b"),
                  ev.Notice(level="warning", message="careful")])
    assert [t.mode for t in state.turns] == ["sync", "async"]
    assert state.notices == ["careful"] and state.session.n_ctx == 512
    assert state.apply(ev.ContextExtended(tokens=(1, 2), reason="interrupt")) is None
