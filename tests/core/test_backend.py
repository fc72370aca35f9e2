"""The llama.cpp backend: loading errors as one sentence, tokenization rules, incremental evaluation."""

import os

import numpy as np
import pytest

from asynclm.core.cml import Marker
from asynclm.core.llama import ContextFull, LlamaBackend, ModelError


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.gguf", "No model file at"),
    (lambda d: d, "is a directory, not a GGUF model file"),
    (lambda d: _write(d / "notes.gguf", b"hello world"), "is not a GGUF model file"),
])
def test_unusable_paths_give_one_sentence(tmp_path, make, message):
    with pytest.raises(ModelError) as exc:
        LlamaBackend(make(tmp_path))
    text = str(exc.value)
    assert message in text and "\n" not in text and text.endswith(".")


def _write(path, data):
    path.write_bytes(data)
    return path


def test_truncated_model_names_llama_cpps_reason(tiny_model, tmp_path):
    broken = _write(tmp_path / "broken.gguf", tiny_model.read_bytes()[:60_000])
    with pytest.raises(ModelError) as exc:
        LlamaBackend(broken)
    assert "could not load" in str(exc.value) and "corrupted or incomplete" in str(exc.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_model(tiny_model, tmp_path):
    locked = _write(tmp_path / "locked.gguf", tiny_model.read_bytes())
    locked.chmod(0)
    with pytest.raises(ModelError, match="permission denied"):
        LlamaBackend(locked)


def test_model_larger_than_memory_is_refused(tmp_path, monkeypatch):
    from asynclm.core import llama

    big = _write(tmp_path / "big.gguf", b"GGUF" + b"\0" * 4096)
    monkeypatch.setattr(llama, "_available_memory", lambda: 1024)  # the machine, not our code
    with pytest.raises(ModelError, match="of memory is available"):
        LlamaBackend(big)


def test_special_parsing_only_for_engine_text(tiny_model):
    b = LlamaBackend(tiny_model, n_ctx=256)
    call = b.control_token("[CALL]")
    assert call is not None and b.is_control(call)
    assert b.tokenize("[CALL]", special=True) == [call]
    plain = b.tokenize("[CALL]", special=False)
    assert call not in plain and len(plain) > 1
    assert b.detokenize(plain) == "[CALL]"
    for m in Marker:
        assert b.control_token(m.value) is not None


def test_eval_appends_and_reads_fresh_logits(tiny_model):
    b = LlamaBackend(tiny_model, n_ctx=128)
    b.eval(b.tokenize("hello", add_bos=True))
    first = b.logits().copy()
    n = b.n_past
    b.eval([b.tokenize("x")[0]])
    assert b.n_past == n + 1 == b.kv_positions()
    assert not np.allclose(first, b.logits()), "logits follow the newest token"
    b.eval([5] * 200)  # more than one batch: chunked by the batch size llama.cpp chose
    with pytest.raises(ContextFull):
        b.eval([5] * (b.n_ctx - b.n_past + 1))
    n = b.n_past
    assert b.n_past == n == b.kv_positions(), "a refused eval changes nothing"
    b.reset()
    assert b.n_past == 0 and b.kv_positions() == 0


def test_a_truncated_draft_leaves_the_context_as_if_it_had_never_been_written(tiny_model):
    b = LlamaBackend(tiny_model, n_ctx=128)
    prefix, draft, word = b.tokenize("hello there", add_bos=True), b.tokenize(" a drafted call"), b.tokenize(" x")
    b.eval(prefix + word)
    straight = b.logits().copy()
    b.reset()
    b.eval(prefix + draft + word)
    assert not np.allclose(b.logits(), straight, atol=1e-4), "what was drafted changes what comes after it"
    b.truncate(len(prefix))
    assert b.n_past == len(prefix) == b.kv_positions()
    b.eval(word)
    assert b.n_past == len(prefix) + len(word) == b.kv_positions()
    np.testing.assert_allclose(b.logits(), straight, atol=1e-4)
    with pytest.raises(ValueError):
        b.truncate(b.n_past + 1)


def test_decoding_leaves_half_the_cores_to_tools_unless_told(tiny_model, monkeypatch):
    import llama_cpp

    from asynclm.core import llama

    assert llama.available_cores() == len(os.sched_getaffinity(0))
    for cores, decode in ((1, 1), (2, 1), (8, 4)):
        monkeypatch.setattr(llama, "available_cores", lambda cores=cores: cores)
        b = LlamaBackend(tiny_model, n_ctx=64)
        got = llama_cpp.llama_n_threads(b._ctx), llama_cpp.llama_n_threads_batch(b._ctx)
        assert got == (decode, cores) == (b.n_threads, b.n_threads_batch), (cores, got)
        b.close()
    b = LlamaBackend(tiny_model, n_ctx=64, n_threads=3)
    assert (llama_cpp.llama_n_threads(b._ctx), llama_cpp.llama_n_threads_batch(b._ctx)) == (3, 3)
    b.set_threads(1, 2)
    assert (llama_cpp.llama_n_threads(b._ctx), llama_cpp.llama_n_threads_batch(b._ctx)) == (1, 2)
    assert (b.n_threads, b.n_threads_batch) == (1, 2)
    b.close()
