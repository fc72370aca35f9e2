"""The logit processors and the loop breaker on their own, over the tiny model's real vocabulary (the
loop runs them in tests/core/test_engine.py and test_references.py)."""

import numpy as np
import pytest

from asynclm.core.cml import split_atoms
from asynclm.core.engine import EngineConfig
from asynclm.core.steering import LOOP_BREAKS, LoopBreaker, Steering, Vocabulary, starts_loop


@pytest.fixture
def engine(make_engine):
    return make_engine([], start=False, config=EngineConfig(copy_bias=0.0))[0]


def loop_token(vocab: Vocabulary) -> int:
    """``w``: after ``walse walse walse `` it begins a fourth `` walse``."""
    return vocab.texts().index("w")


def test_the_loop_breaker_ends_the_phrase_instead_of_a_fourth_copy_then_gives_up(engine):
    vocab, heard = Vocabulary(engine.backend), []
    chosen = []

    def choose(logits, banned):
        chosen.append(banned)
        return int(np.argmax(np.where(np.isin(np.arange(len(logits)), banned), -np.inf, logits)))

    breaker = LoopBreaker(vocab, heard, choose)
    token, recent = loop_token(vocab), "Here: walse walse walse "
    logits = np.zeros(engine.backend.n_vocab, dtype=np.float32)
    for _ in range(LOOP_BREAKS):
        instead, unit = breaker.check(logits, np.array([], dtype=np.int64), token, recent)
        text = vocab.texts()[instead] or ""
        assert unit == "" and instead != token and not any(ch.isalnum() for ch in text), text
    assert token in chosen[0], "no word may come instead: only punctuation, a marker or the end"
    assert breaker.check(logits, np.array([], dtype=np.int64), token, recent) == (token, " walse"), \
        "past LOOP_BREAKS loops the answer is ended instead"
    breaker.reset()
    assert breaker.check(logits, np.array([], dtype=np.int64), token, "no loop here")[0] == token


def test_a_loop_that_a_result_holds_is_quoted_not_broken(engine):
    vocab = Vocabulary(engine.backend)
    token = loop_token(vocab)
    breaker = LoopBreaker(vocab, ["the file says walse walse walse walse"], lambda logits, banned: -1)
    assert breaker.check(np.zeros(engine.backend.n_vocab), np.array([], dtype=np.int64), token,
                         "It says: walse walse walse ") == (token, "")


def test_starts_loop_finds_the_piece_a_fourth_copy_would_begin():
    assert starts_loop("Here: walse walse walse w") == " walse"
    assert starts_loop("Here: walse walse w") == ""
    assert starts_loop("----------") == "", "a piece needs a letter or digit"


def test_a_used_call_id_is_kept_open_so_that_it_becomes_a_new_one(engine):
    engine.ledger.ids.add("c5")
    steering = Steering(Vocabulary(engine.backend), engine.dialect, engine.tools, engine.ledger,
                        copy_bias=0.0, copy_text=False, typed_references=True)
    monitor = engine.dialect.new_monitor()
    for token in engine.dialect.encode(split_atoms("[CALL] c5")):
        monitor.feed(token)
    logits = np.zeros(engine.backend.n_vocab, dtype=np.float32)
    steered = steering.apply(logits, monitor, "")
    open_ = np.flatnonzero(np.isfinite(steered))
    words = [steering.vocab.texts()[t] for t in open_]
    assert open_.size and all(w and w.replace("_", "a").isalnum() for w in words), "only the id may go on"
    fresh = engine.dialect.new_monitor()
    for token in engine.dialect.encode(split_atoms("[CALL] c6")):
        fresh.feed(token)
    assert np.isfinite(steering.apply(logits, fresh, "")).all(), "a fresh id is left alone"
