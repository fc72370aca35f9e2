"""A real model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), installed through ``asynclm[qwen-0-5b]``.

It loads and evaluates batches on this CPU (llama.cpp's extra buffer types crash on CPUs with AMX:
the probe decides), and answers requests end to end through the real engine, greedily, in the
dialect ``auto`` picks for it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from asynclm.core import events as ev
from asynclm.core.catalog import NAMED_MODELS, assemble, status
from asynclm.core.engine import Engine, EngineConfig
from asynclm.core.llama import LlamaBackend, extra_buffers_work, has_amx, run_probe
from asynclm.core.sampling import SamplingSettings
from asynclm.tools.builtins import default_registry
from asynclm.tools.registry import Registry

from conftest import EventLog

QWEN = NAMED_MODELS["qwen2.5-coder-0.5b"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not status(QWEN).present, reason=f"the real model is not installed: {QWEN.install_hint()}"),
]


@pytest.fixture(scope="module")
def qwen():
    return assemble(QWEN)


def test_a_crashing_probe_says_no_and_a_clean_one_yes():
    assert not run_probe([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]), "a segfault"
    assert run_probe([sys.executable, "-c", "pass"])


def test_the_real_q4_k_m_model_evaluates_batches_with_the_default_buffers(qwen):
    """The default (auto) is safe on this CPU: a batch of many tokens, then single tokens, as a prompt
    and an answer are evaluated; with the extra buffer types off the model computes the same."""
    works = extra_buffers_work(qwen)
    assert works or has_amx(), "only CPUs with AMX have been seen to crash"
    logits = []
    for setting in ("auto", "off"):
        backend = LlamaBackend(qwen, n_ctx=512, n_threads=2, extra_buffers=setting)
        assert backend.extra_buffers == (setting == "auto" and works)
        tokens = backend.tokenize("The capital of France is Paris. The capital of Italy is", special=False)
        backend.eval(tokens)
        first = int(np.argmax(backend.logits()))
        backend.eval([first])
        assert np.isfinite(backend.logits()).all()
        logits.append((first, backend.detokenize([first])))
        backend.close()
    assert logits[0][0] == logits[1][0] and "Rome" in logits[0][1]


@pytest.fixture(scope="module")
def engine(qwen):
    """The real model in the dialect ``auto`` picks for it (its template's tool-call format), greedy,
    with the three tools the requests need."""
    full = default_registry()
    tools = Registry([full.get(name) for name in ("calculator", "convert_units", "current_time")])
    backend = LlamaBackend(qwen, n_ctx=4096, n_threads=2)
    engine = Engine(backend, tools, config=EngineConfig(max_turn_tokens=150, turn_seconds=240),
                    sampling=SamplingSettings(temperature=0.0, repeat_penalty=1.0))
    log = EventLog()
    engine.subscribe(log)
    engine.start()
    yield engine, log
    engine.close()
    backend.close()


@pytest.mark.parametrize("request_, call, value", [
    ("What is 4096 divided by 16?", "calculator(expression='4096 / 16')", "256"),
    ("What is the square root of 144?", "calculator(expression='sqrt(144)')", "12"),
    ("Convert 100 fahrenheit to celsius.", "convert_units(value=100, from_unit='fahrenheit', to_unit='celsius')",
     "37.7778"),
])
def test_the_real_model_calls_in_its_own_format_and_answers_with_the_result(engine, request_, call, value):
    engine, log = engine
    assert engine.dialect.name == "tools"
    engine.new_session()
    start = len(log.events)
    assert engine.ask(request_, timeout=300)
    events = log.events[start:]
    end = next(e for e in events if isinstance(e, ev.TurnEnded))
    assert [e.expr for e in events if isinstance(e, ev.CallDetected)][:1] == [call]
    assert value in end.text and end.reason == "done", end
    for markup in ("[CALL]", "[INTR]", "<tool_call>", "<tool_response>", "<|im_", '"name"'):
        assert markup not in end.text
