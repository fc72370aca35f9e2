"""Typed dataflow references: a reference names only an earlier call whose result the argument takes."""

from typing import Any, Literal

import numpy as np
import pytest

from asynclm.core import events as ev
from asynclm.core.references import ReferenceGuide, reference_target
from asynclm.tools.registry import Tool
from asynclm.tools.schema import may_fit
from conftest import RecordingPolicy


@pytest.mark.parametrize("body, target", [
    ("convert_units(value=c", ("convert_units", "value", "c")),
    ("convert_units(from_unit='g', value= c1", ("convert_units", "value", "c1")),
    ("f(a=1, b=x_2", ("f", "b", "x_2")),
    ("convert_units(value=1", None),  # a number
    ("echo(text='c1", None),  # a string
    ("f(c1", None),  # positional
    ("f(a=c1, ", None),  # between arguments
    ("f(a=c1)", None),
    ("f(a=[c1", None),  # inside a list
])
def test_the_target_is_a_keyword_value_that_is_a_bare_name_so_far(body, target):
    assert reference_target(body) == target


def test_may_fit_is_false_only_where_no_value_could_pass():
    assert may_fit(float | int, float) and may_fit(int, float) and may_fit(float, int)
    assert not may_fit(str, float) and not may_fit(float | int, str) and not may_fit(dict, str)
    assert not may_fit(bool, float)  # check refuses a bool for a number
    assert may_fit(str | None, str) and may_fit(list[int], tuple[int, ...])
    assert may_fit(Any, float) and may_fit(str, Any) and may_fit(Literal["a", "b"], str)
    assert not may_fit(Literal[1, 2], str)


def test_a_tool_takes_a_result_by_its_return_annotation():
    def calc(expression: str) -> float | int:
        return 0

    def clock() -> str:
        return ""

    def convert(value: float, unit: str) -> str:
        return ""

    def untyped(x: int):  # no return annotation: anything may come of it
        return x

    convert_tool = Tool(convert)
    assert convert_tool.takes_result("value", Tool(calc))
    assert not convert_tool.takes_result("value", Tool(clock))
    assert convert_tool.takes_result("unit", Tool(clock))
    assert convert_tool.takes_result("value", Tool(untyped))
    assert convert_tool.takes_result("nonexistent", Tool(clock))  # its own error says why


TEXTS = [None, "c", "1", "2", "3", "c1", "1)", "2,", ",", ")", " ", "x", "12", "1x"]


def _allowed(guide, written, ids, fits):
    mask = guide.allowed(written, ids, fits)
    return None if mask is None else {TEXTS[t] for t in np.flatnonzero(mask)}


def test_the_guide_keeps_the_ids_of_fitting_calls_and_their_ends():
    guide = ReferenceGuide(TEXTS)
    ids = ["c1", "c2", "c3", "c12"]
    assert _allowed(guide, "c", ids, ["c1", "c3"]) == {"1", "3", "1)"}
    assert _allowed(guide, "c1", ids, ["c1"]) == {",", ")", " "}  # ended: not c12
    assert _allowed(guide, "c1", ids, ["c1", "c12"]) == {",", ")", " ", "2", "2,"}
    assert _allowed(guide, "x", ids, ["c1"]) is None  # not an id's start: a name the guide leaves alone
    assert _allowed(guide, "c", ids, []) is None  # nothing fits: the call fails and says why
    assert _allowed(guide, "c2", ids, ["c1"]) is None


def test_the_engine_keeps_a_reference_to_a_call_whose_result_fits(make_engine):
    """``double(x: int)`` may name the number call but not the text ones; ``echo(text: str)`` the
    text call but neither the number nor the failed one."""
    first = ("[CALL] r1 [HEAD] number(value=4) [END][CALL] r2 [HEAD] echo(text='x') [END]"
             "[CALL] r3 [HEAD] boom() [END]ok.")
    second = "[CALL] r4 [HEAD] double(x=r1) [END][CALL] r5 [HEAD] echo(text=r2) [END]done."
    policy = RecordingPolicy([first, second])
    engine, log = make_engine(policy=policy)
    assert engine.ask("one", timeout=60)
    n = len(policy.seen)
    assert engine.ask("two", timeout=60)
    piece = lambda t: engine.backend.piece(t).decode("utf-8", "replace")  # noqa: E731
    digit = {d: engine.backend.tokenize(d)[0] for d in "1234"}

    def logits_after(text: str) -> np.ndarray:
        return next(logits for before, logits in policy.seen[n:]
                    if "".join(piece(t) for t in before).endswith(text))

    to_double, to_echo = logits_after("double(x=r"), logits_after("echo(text=r")
    assert np.isfinite(to_double[digit["1"]])
    assert all(to_double[digit[d]] == -np.inf for d in "234")
    assert np.isfinite(to_echo[digit["2"]])
    assert all(to_echo[digit[d]] == -np.inf for d in "134")
    assert [e.refs for e in log.of(ev.CallDetected)][-2:] == [("r1",), ("r2",)]
    assert log.first(ev.CallFinished, call_id="r4") is not None and not log.of(ev.CallRejected)
