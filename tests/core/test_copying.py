"""The copy bias: which tokens it lowers inside argument values, and the engine writing under it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asynclm import EMBEDDED_MODEL
from asynclm.core import events as ev
from asynclm.core.copying import MID_RUN, CopyBias, open_value, runs
from asynclm.core.cml import parse_call
from asynclm.core.engine import Engine, EngineConfig
from asynclm.core.llama import LlamaBackend
from asynclm.core.sampling import GREEDY
from asynclm.tools.builtins import default_registry
from conftest import RecordingPolicy

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


def test_a_copy_under_way_is_held_to_its_source_harder_than_a_value_is_steered_to_begin_one():
    """"list docs" gave ``list_dir(path="do")``: the model was surer of the quote than the bias was
    strong. A run that is a strict prefix of a source run is cut short only against ``MID_RUN`` times
    the strength; where to begin a value stays a thumb on the scale."""
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("time in Saigon")
    mid = bias.apply(np.zeros(len(TEXTS), dtype=np.float32), 'current_time(timezone="Sai')
    assert mid[TEXTS.index('"')] == mid[TEXTS.index("Tok")] == -5.0 * MID_RUN
    assert mid[TEXTS.index("gon")] == 0.0
    start = bias.apply(np.zeros(len(TEXTS), dtype=np.float32), 'current_time(timezone="')
    assert start[TEXTS.index("Tok")] == -5.0 and start[TEXTS.index("Sai")] == 0.0
    done = bias.apply(np.zeros(len(TEXTS), dtype=np.float32), 'current_time(timezone="Saigon')
    assert done[TEXTS.index("Tok")] == -5.0 and done[TEXTS.index('"')] == 0.0


def test_a_per_cent_makes_100_a_value_to_copy():
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("what is 37 % of 15")  # 37/100*15: the 1 of 100 must not be held to 15
    assert not lowered(bias, "calculator(expression='37/1") & ids("0")
    plain = CopyBias(TEXTS, 5.0)
    plain.learn("what is 37 of 15")
    assert ids("0") <= lowered(plain, "calculator(expression='37/1")


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


def test_a_name_the_conversation_never_joins_to_another_ends_where_it_ends():
    """``Ponape As``, ``Virgin Tokyo``: a small model's habit of two-word places."""
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("what time is it in Saigon and in Tokyo")
    assert ids(" ") <= lowered(bias, 'current_time(timezone="Saigon')
    assert not ids(" ") & lowered(bias, 'f(x="time')  # a lower-case word: not a name
    assert not ids(" ") & lowered(bias, "f(x=True")  # outside a string: a literal, not a name
    assert not lowered(bias, 'f(x="Saigon') & ids('"', ")", ",")


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
    bias.learn_id("ci")
    assert not lowered(bias, "f(x=") & ids("ci")


def test_a_call_ids_digits_are_a_source_only_for_a_reference():
    """``c1`` is there to be named (``value=c1``); its ``1`` is no copy for ``seconds=1`` when the
    request said 6 seconds."""
    bias = CopyBias(TEXTS, 5.0)
    bias.learn("a timer for 6 seconds, and 5*3")
    bias.learn_id("x1")
    assert ids("1") <= lowered(bias, "wait(seconds=")
    assert not ids("x") & lowered(bias, "f(value=")  # the reference x1 can be written
    assert not ids("1") & lowered(bias, "f(value=x")
    bias.learn("x1 is 15")  # a result that holds the number
    assert not ids("1") & lowered(bias, "wait(seconds=")


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


TEXT_TOKENS = [None, "zohedux", ".", "toml", "to", "t", "ml", "txt", " ", "is", "93", "8782", "87", "5", ":"]


def lowered_in_text(bias: CopyBias, text: str) -> set[str]:
    out = bias.apply_text(np.zeros(len(TEXT_TOKENS), dtype=np.float32), text)
    return {TEXT_TOKENS[int(i)] for i in np.flatnonzero(out < 0)}


def test_a_visibly_copied_word_goes_on_as_its_source_does():
    bias = CopyBias(TEXT_TOKENS, 5.0)
    bias.learn("how big is zohedux.toml")
    assert lowered_in_text(bias, "It is zohedux.") == {"txt", "zohedux", "is", "93", "8782", "87", "5", "ml"}
    assert lowered_in_text(bias, "zohedux.to") == {"toml", "to", "t", "txt", "zohedux", "is", "93", "8782", "87",
                                                   "5", ".", " ", ":"}  # only "ml" finishes the run
    assert lowered_in_text(bias, "zohedux.toml") == set()  # a finished copy: what follows is free


def test_a_visibly_copied_word_in_a_call_goes_on_as_its_source_does():
    """The model wrote ``nax/shopizi.csv`` for the ``nax/shopizi.txt`` asked for: ``csv`` was a run
    the conversation holds (another file's), so the run rule alone let it through."""
    tokens = TEXT_TOKENS + ['"', "csv"]
    bias = CopyBias(tokens, 5.0)
    bias.learn("how big is zohedux.toml, and read data.txt and lum/thainokek.csv")

    def low(body: str) -> set[str]:
        out = bias.apply(np.zeros(len(tokens), dtype=np.float32), body)
        return {tokens[int(i)] for i in np.flatnonzero(out < 0)}

    assert {"txt", "csv"} <= low('file_info(path="zohedux.') and not low('file_info(path="zohedux.') & {"toml", "to"}
    assert "txt" not in low('read_file(path="data.') and "toml" in low('read_file(path="data.')
    assert not low('read_file(path="') & {"txt", "zohedux"}  # a value's first run: the run rule only


def test_answer_text_is_free_outside_visible_copies():
    bias = CopyBias(TEXT_TOKENS, 5.0)
    bias.learn("how big is zohedux.toml, then 5.87")
    assert lowered_in_text(bias, "It is t") == set()  # the first run of a word
    assert lowered_in_text(bias, "It is ") == set()
    assert lowered_in_text(bias, "5.") == set()  # a one-character run is too short to be a visible copy
    assert lowered_in_text(bias, "zohedux.txt.") == set()  # already off the sources
    bias.learn("xzohedux.ml")  # inside a longer word: not an occurrence of "zohedux."
    assert "ml" in lowered_in_text(bias, "zohedux.")
    bias.learn("zohedux. is")  # a source where the word ends there: no steering
    assert lowered_in_text(bias, "zohedux.") == set()


def test_numbers_and_times_after_their_separator_are_copied_digit_by_digit():
    bias = CopyBias(TEXT_TOKENS, 5.0)
    bias.learn("93.8782 liters")
    bias.learn("now 11:30:48")
    assert "5" in lowered_in_text(bias, "That is 93.") and "8782" not in lowered_in_text(bias, "That is 93.")
    assert "87" not in lowered_in_text(bias, "93.")
    bias.reset()
    assert lowered_in_text(bias, "93.") == set()


def test_the_engine_steers_the_answer_only_when_asked(tmp_path, make_engine):
    """The real engine on the tiny model, writing a scripted answer: after ``notes.`` (copied from the
    request ``notes.md``), ``t`` is lowered by the strength and ``m`` is not; with ``copy_text`` off,
    neither is."""
    def logits_after(copy_text: bool, prefix: str) -> np.ndarray:
        policy = RecordingPolicy(["It is in notes.md now."])
        engine, _ = make_engine(policy=policy, config=EngineConfig(copy_bias=5.0, copy_text=copy_text))
        assert engine.ask("where is it? notes.md", timeout=30)
        for before, logits in policy.seen:
            if engine.backend.detokenize(before).endswith(prefix):
                return logits, engine.backend
        raise AssertionError(f"the script never wrote {prefix!r}")

    steered, backend = logits_after(True, "notes.")
    plain, _ = logits_after(False, "notes.")
    t, m = backend.tokenize("t")[0], backend.tokenize("m")[0]
    assert steered[t] == pytest.approx(plain[t] - 5.0)
    assert steered[m] == pytest.approx(plain[m])
    space = backend.tokenize(" ")[0]
    steered, _ = logits_after(True, "notes.m")
    plain, _ = logits_after(False, "notes.m")
    assert steered[space] == pytest.approx(plain[space] - 5.0)  # "m" alone is not the source's run
