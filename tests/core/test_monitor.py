"""The token monitor on its own: what it makes of a stream of generated tokens, in the native dialect
(markers are control tokens) and the text dialect (markers are found in the text)."""

import pytest

from asynclm.core.cml import BlockState, CallClosed, Malformed, Text, TrapClosed, split_atoms


@pytest.fixture
def dialect_of(make_engine):
    return lambda name="native": make_engine([], dialect=name, start=False)[0].dialect


def feed(monitor, dialect, text):
    """Feed ``text``'s tokens one by one: the items and, after each token, (state, safe)."""
    items, states = [], []
    for token in dialect.encode(split_atoms(text)):
        items += monitor.feed(token)
        states.append((monitor.state, monitor.safe))
    return items, states


@pytest.mark.parametrize("name", ["native", "text"])
def test_a_call_and_a_trap_are_read_from_the_stream_and_only_outside_them_is_safe(dialect_of, name):
    dialect = dialect_of(name)
    monitor = dialect.new_monitor()
    items, states = feed(monitor, dialect, "Hi.[CALL] c1 [HEAD] clock() [END] and [TRAP] [END]done")
    items += monitor.flush()
    calls = [i for i in items if isinstance(i, CallClosed)]
    assert [(c.call_id.strip(), c.expr.strip()) for c in calls] == [("c1", "clock()")]
    assert sum(isinstance(i, TrapClosed) for i in items) == 1
    assert "".join(i.text for i in items if isinstance(i, Text)).replace(" ", "") == "Hi.anddone"
    seen = {state for state, _ in states}
    assert {BlockState.CALL_ID, BlockState.CALL_BODY, BlockState.TRAP} <= seen
    assert all(not safe for state, safe in states if state.in_block), "never safe inside a block"
    assert states[-1] == (BlockState.OUTSIDE, True)


def test_the_open_calls_id_and_body_are_readable_while_it_is_written(dialect_of):
    dialect = dialect_of()
    monitor = dialect.new_monitor()
    feed(monitor, dialect, "[CALL] c7 ")
    assert monitor.state is BlockState.CALL_ID and monitor.call_id.strip() == "c7" and monitor.call_body == ""
    feed(monitor, dialect, "[HEAD] calculator(expre")
    assert monitor.state is BlockState.CALL_BODY and monitor.call_body.strip() == "calculator(expre"
    assert monitor.call_id == ""


def test_a_block_that_runs_past_its_limit_is_malformed_and_the_stream_goes_on(dialect_of):
    dialect = dialect_of()
    monitor = dialect.new_monitor(max_block_tokens=6)
    items, _ = feed(monitor, dialect, "[CALL] c1 [HEAD] echo(text='" + "word " * 10 + "')")
    (bad,) = [i for i in items if isinstance(i, Malformed)]
    assert "past 6 tokens" in bad.reason and bad.raw.split()[:1] == ["c1"], "what the block held"
    assert monitor.state is BlockState.OUTSIDE and monitor.safe


def test_an_abandoned_block_gives_back_its_text_and_leaves_the_monitor_outside(dialect_of):
    dialect = dialect_of()
    monitor = dialect.new_monitor()
    feed(monitor, dialect, "Go.[CALL] c1 [HEAD] wait(seconds=")
    raw = monitor.abandon()
    assert "wait(seconds=" in raw and monitor.state is BlockState.OUTSIDE
    items, _ = feed(monitor, dialect, "[CALL] c2 [HEAD] clock() [END]")
    assert [i.call_id.strip() for i in items if isinstance(i, CallClosed)] == ["c2"]


def test_the_text_dialect_holds_back_a_half_written_marker(dialect_of):
    dialect = dialect_of("text")
    monitor = dialect.new_monitor()
    items, _ = feed(monitor, dialect, "See [CA")
    assert not monitor.safe, "[CA may be the start of [CALL]: not yet a safe point"
    assert "".join(i.text for i in items if isinstance(i, Text)) == "See "
    items, _ = feed(monitor, dialect, "T food]")
    assert monitor.safe and "".join(i.text for i in items if isinstance(i, Text)) == "[CAT food]"
