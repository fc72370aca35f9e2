"""Saved openings: a session's fixed start is restored from disk rather than evaluated again, and the
model computes exactly what it computes without the cache."""

from __future__ import annotations

import numpy as np
import pytest

from asynclm.core import events as ev
from asynclm.core.llama import LlamaBackend
from asynclm.core.modelgen import write_with_vocab
from asynclm.core.promptcache import PromptCache
from asynclm.core.engine import Engine

from conftest import EventLog, RecordingPolicy, make_test_tools, shared_data

VOCAB = shared_data("vocab", "ASYNCLM_VOCAB_DIR")
pytestmark = pytest.mark.skipif(VOCAB is None, reason="shared/vocab is not next to this checkout")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pc")
    return {name: write_with_vocab(folder / name, VOCAB / name, seed=3)
            for name in ("ggml-vocab-qwen2.gguf", "ggml-vocab-gemma-4.gguf")}


def run(model, cache, question="What is 17*23?", dialect="chat"):
    """One answer; the logits the model gave for its first token, what was evaluated, the opening."""
    backend = LlamaBackend(model, n_ctx=2048, n_threads=2)
    policy = RecordingPolicy(["ok"])
    engine = Engine(backend, make_test_tools(), policy=policy, dialect=dialect, prompt_cache=cache)
    log = EventLog()
    engine.subscribe(log)
    with engine:
        assert engine.ask(question, timeout=60)
    opening = log.of(ev.ContextExtended)[0]
    result = policy.seen[0][1], backend.n_evaluated, opening.tokens, engine.dialect.fixed
    backend.close()
    return result


@pytest.mark.parametrize("vocab, dialect", [("ggml-vocab-qwen2.gguf", "chat"), ("ggml-vocab-gemma-4.gguf", "tools")])
def test_a_later_session_restores_the_opening_and_computes_the_same(models, tmp_path, vocab, dialect):
    model, cache = models[vocab], PromptCache(tmp_path / "prompts")
    plain_logits, plain_evaluated, plain_tokens, fixed = run(model, None, dialect=dialect)
    assert fixed > 100, "the system message and tools are the fixed start"
    first_logits, first_evaluated, first_tokens, _ = run(model, cache, dialect=dialect)
    assert len(list((tmp_path / "prompts").glob("*.state"))) == 1
    assert first_tokens == plain_tokens and first_evaluated == plain_evaluated
    # evaluated in two batches rather than one: the same up to float rounding (a wrong state would
    # differ on the scale of the logits themselves)
    assert np.abs(first_logits - plain_logits).max() < 0.01 * np.abs(plain_logits).max()
    again_logits, again_evaluated, again_tokens, _ = run(model, cache, dialect=dialect)
    assert again_tokens == plain_tokens and again_evaluated == plain_evaluated - fixed
    assert np.allclose(again_logits, first_logits, atol=1e-5), "a restored opening computes what an evaluated one does"
    other = "Convert 3 km to miles, please"
    _, other_plain, other_tokens, _ = run(model, None, other, dialect=dialect)
    _, other_cached, _, _ = run(model, cache, other, dialect=dialect)
    assert other_tokens[:fixed] == plain_tokens[:fixed] and other_cached == other_plain - fixed


def test_a_state_of_another_opening_is_not_used(models, tmp_path):
    model = models["ggml-vocab-qwen2.gguf"]
    cache = PromptCache(tmp_path / "prompts")
    run(model, cache)
    backend = LlamaBackend(model, n_ctx=2048, n_threads=2)
    assert not cache.restore(backend, [1, 2, 3]), "other tokens"
    assert backend.n_past == 0
    backend.close()


def test_only_the_newest_states_are_kept(models, tmp_path):
    cache = PromptCache(tmp_path / "prompts", keep=2)
    backend = LlamaBackend(models["ggml-vocab-qwen2.gguf"], n_ctx=256, n_threads=2)
    for n in range(4):
        tokens = backend.tokenize(f"opening number {n}")
        backend.reset()
        backend.eval(tokens)
        cache.save(backend, tokens)
    assert len(list((tmp_path / "prompts").glob("*.state"))) == 2
    backend.reset()
    assert cache.restore(backend, backend.tokenize("opening number 3"))
    backend.close()
