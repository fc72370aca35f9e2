"""The copy bias: which tokens it lowers inside argument values, and the engine writing under it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asynclm import EMBEDDED_MODEL
from asynclm.core import events as ev
from asynclm.core.copying import CopyBias, open_value, runs
from asynclm.core.cml import parse_call
from asynclm.core.engine import Engine, EngineConfig
from asynclm.core.llama import LlamaBackend
from asynclm.core.sampling import GREEDY
from asynclm.tools.builtins import default_registry

TEXTS = [None, "Sai", "gon", "Saigon", "S", "a", "i", "g", "o", "n", "Tok", "yo", "5", "3", "1", "8", "9",
         "0", "*", '"', "'", ")", " ", ",", "ci", "ty", "x", "True", "=", "/"]


def ids(*texts: str) -> set[int]:
    return {TEXTS.index(t) for t in texts}


def lowered(bias: CopyBias, body: str) -> set[int]:
    out = bias.apply(np.zeros(len(TEXTS), dtype=np.float32), body)
    return {int(i) for i in np.flatnonzero(out < 0)}


@pytest.mark.parametrize("body, value", [
    ('current_time(timezone="Sai', '"Sai'),
    ("calculator(expression='531*8", "'531*8"),
    ("convert_units(value=53", "53"),
    ('f("a", 12', "12"),
    ("f(a=[1, 2", "[1, 2"),
    ("f(city='Oslo', n=", ""),
])
def test_open_value_finds_the_value_being_written(body, value):
    assert open_value(body) == value


@pytest.mark.parametrize("body", ["current_time", "current_time(", "current_time(time", "f(a=1, ",
                                  'f(a="x")', "f(a='x', b=2)"])
def test_open_value_is_none_outside_values(body):
    assert open_value(body) is None


def test_runs_split_letters_from_digits():
    assert runs("read notes/a_b.txt, 12km and 3.5") == ["read", "notes", "a", "b", "txt", "12", "km", "and", "3", "5"]


def test_a_value_may_only_begin_a_run_the_conversation_holds():
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("what time is it in Saigon? also 531 times 89")
    low = lowered(bias, 'current_time(timezone="')
    assert ids("Tok", "yo", "x", "ci", "0", "gon") <= low  # no word or number seen starts so
    assert not low & ids("Sai", "Saigon", "S", "5", "8", "a", "i", "True", '"', ")", " ")


def test_an_open_run_continues_or_ends_only_as_a_source_run_does():
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("time in Saigon")
    low = lowered(bias, 'current_time(timezone="Sai')
    assert not low & ids("gon", "g")
    assert ids("n", "Tok", '"', ")", " ", ",") <= low  # "Sain", "SaiTok" or ending at "Sai": unseen
    assert not lowered(bias, 'current_time(timezone="Saigon') & ids('"', ")", ",")


def test_a_word_joined_to_a_capitalised_word_goes_on_as_the_name_does():
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("what time is it in Sai Tokyo, and in Saigon")  # "Sai Tokyo": a two-word name
    low = lowered(bias, 'current_time(timezone="Sai')
    assert ids('"', "'", ")", ",") <= low  # stopping at "Sai" would cut the name
    assert not low & ids(" ", "gon", "g")  # the joiner the sources use, or more letters ("Saigon")
    assert not lowered(bias, 'current_time(timezone="Sai Tok') & ids("yo")
    assert not lowered(bias, 'current_time(timezone="Saigon') & ids('"', ")", ",")  # a name on its own

    plain = CopyBias(TEXTS, 5.0)
    plain.learn("time in Sai and then Tokyo")  # a lower-case word follows: "Sai" is a whole value
    assert not lowered(plain, 'current_time(timezone="Sai') & ids('"', ")", ",")

    hyphen = CopyBias(TEXTS, 5.0)
    hyphen.learn("time in Sai-Tokyo")
    assert ids(" ", '"') <= lowered(hyphen, 'current_time(timezone="Sai')  # not "Sai Tokyo", not "Sai"


def test_numbers_are_copied_digit_by_digit_and_operators_stay_free():
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("what is 531 times 89")
    assert ids("1", "0", "9", "*") & lowered(bias, "calculator(expression='53") == ids("0", "9", "*")
    assert not lowered(bias, "calculator(expression='531") & ids("*", "/", "'")
    assert not lowered(bias, "calculator(expression='531*") & ids("8")
    assert ids("3") <= lowered(bias, "calculator(expression='531*")


def test_keywords_tool_names_and_off_source_runs_are_left_alone():
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("time in Saigon")
    assert lowered(bias, "current_time(") == set()
    assert lowered(bias, "current_time(ci") == set()
    assert lowered(bias, 'current_time(timezone="Tok') == set()  # already unseen: nothing to steer to


def test_call_ids_and_literals_are_sources():
    bias = CopyBias(TEXTS, 5.0)
    assert not lowered(bias, "f(flag=") & ids("True")
    bias.learn("ci")
    assert not lowered(bias, "f(x=") & ids("ci")


def test_reset_forgets_the_conversation_and_strength_must_be_positive():
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("Saigon")
    bias.reset()
    assert ids("Sai") <= lowered(bias, 'f(city="')
    with pytest.raises(ValueError):
        CopyBias(TEXTS, 0)


def test_infinite_strength_makes_unseen_tokens_impossible():
    bias = CopyBias(TEXTS, math.inf)
    bias.learn("in Saigon")
    out = bias.apply(np.zeros(len(TEXTS), dtype=np.float32), 'f(city="')
    assert out[TEXTS.index("Tok")] == -np.inf and out[TEXTS.index("Sai")] == 0


@pytest.mark.skipif(not EMBEDDED_MODEL.is_file(), reason="the embedded model is not built")
def test_the_engine_writes_only_copied_values_under_a_strict_bias():
    """The real model, engine and tools: with the bias at infinity every word and number in every
    argument value the model writes is one the conversation held."""
    backend = LlamaBackend(EMBEDDED_MODEL, n_ctx=0, n_threads=2)
    request = "what time is it in Hebron, and what is 632 multiplied by 61"
    engine = Engine(backend, default_registry(), config=EngineConfig(copy_bias=math.inf), sampling=GREEDY)
    calls: list[ev.CallDetected] = []
    engine.subscribe(lambda e: calls.append(e) if isinstance(e, ev.CallDetected) else None)
    with engine:
        assert engine.ask(request, timeout=60)
    assert calls, "the embedded model calls a tool for this request"
    allowed = set(runs(request)) | {"True", "False", "None"} | {c.call_id for c in calls}
    for call in calls:
        expr = parse_call(call.expr)
        for value in list(expr.kwargs.values()) + list(expr.args):
            assert set(runs(str(value))) <= allowed, call.expr


def test_a_call_may_not_close_inside_an_open_string():
    end = len(TEXTS)  # the native dialect's [END]: a control token, no text
    bias = CopyBias(TEXTS + [None], 5.0, closers=(end,))
    bias.learn("time in Saigon")
    zeros = np.zeros(len(TEXTS) + 1, dtype=np.float32)
    assert bias.apply(zeros, 'current_time(timezone="Saigon')[end] == -5.0
    assert bias.apply(zeros, 'current_time(timezone="Saigon"')[end] == 0.0
    assert bias.apply(zeros, 'current_time(timezone="Saigon")')[end] == 0.0
    assert bias.apply(zeros, "current_time(timezone='it\\'s")[end] == -5.0
