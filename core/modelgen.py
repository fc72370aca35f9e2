"""Write llama-architecture GGUF files with random weights, for tests and benchmarks.

A model built here loads in llama.cpp like any other: real tokenizer, real KV cache, real decode cost,
just no knowledge. The default vocabulary is a character-level SentencePiece-style one with the five
CML markers as control tokens; any other vocabulary (a real model family's) can be passed in.

Needs the ``gguf`` package (the ``test`` and ``bench`` extras), imported only when a file is written.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cml import MARKERS

# gguf.TokenType values, spelled out so this module can describe a vocabulary without importing gguf.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    model: str = "llama"  # tokenizer.ggml.model
    bos: int | None = 1
    eos: int | None = 2
    unk: int | None = 0
    extra: dict[str, Any] = field(default_factory=dict)  # further tokenizer.* keys, written as is


def cml_char_vocab(words: tuple[str, ...] = (), size: int | None = None) -> Vocab:
    """Characters, bytes and the CML markers as control tokens; ``words`` become merged pieces.

    ``size`` pads the vocabulary with inert pieces, for models whose output layer should cost what a
    real model's does.
    """
    tokens = ["<unk>", "<s>", "</s>"] + [m.value for m in MARKERS]
    types = [UNKNOWN, CONTROL, CONTROL] + [CONTROL] * len(MARKERS)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    chars = ["▁"] + [c for c in string.printable if c not in " \t\n\r\x0b\x0c"] + ["\n"]
    tokens += chars
    types += [NORMAL] * len(chars)
    scores = [0.0] * len(tokens)
    # Merged pieces need every prefix to exist so the SentencePiece merge can reach them.
    pieces: list[str] = []
    for word in words:
        w = word.replace(" ", "▁")
        for i in range(2, len(w) + 1):
            if w[:i] not in pieces and w[:i] not in tokens:
                pieces.append(w[:i])
    for rank, piece in enumerate(pieces):
        tokens.append(piece)
        types.append(NORMAL)
        scores.append(-float(rank + 1))
    n = 0
    while size is not None and len(tokens) < size:
        tokens.append(f"⟨pad{n}⟩")
        types.append(NORMAL)
        scores.append(-1e6)
        n += 1
    return Vocab(tokens=tokens, scores=scores, types=types,
                 extra={"tokenizer.ggml.add_space_prefix": False,
                        "tokenizer.ggml.add_bos_token": True,
                        "tokenizer.ggml.add_eos_token": False})


@dataclass(frozen=True)
class Shape:
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 4
    n_ff: int = 128
    n_ctx_train: int = 4096
    rms_eps: float = 1e-5
    rope_base: float = 10000.0


TINY = Shape()
# The embedded model's planned size: about 5M parameters with a 1000-token vocabulary.
SMALL = Shape(n_embd=256, n_layer=6, n_head=8, n_head_kv=8, n_ff=688, n_ctx_train=4096)
# A realistic shape (grouped-query attention, 32k vocabulary) whose decode takes 10-30 ms a token
# on two cores: the AsyncLM paper's fine-tuning range was 5-30 ms a token.
REALISTIC = Shape(n_embd=1024, n_layer=16, n_head=16, n_head_kv=4, n_ff=2816, n_ctx_train=8192)


def write_random_llama(
    path: str | Path,
    *,
    vocab: Vocab | None = None,
    shape: Shape = TINY,
    seed: int = 0,
    name: str = "random-llama",
    dtype: str = "f32",
    chat_template: str | None = None,
) -> Path:
    """Write a llama GGUF with random weights and return its path."""
    vocab = vocab or cml_char_vocab()
    rng = np.random.default_rng(seed)
    n_vocab = len(vocab.tokens)
    e, ff, hd = shape.n_embd, shape.n_ff, shape.n_embd // shape.n_head
    kv = hd * shape.n_head_kv
    np_dtype = np.float16 if dtype == "f16" else np.float32

    def rand(*dims: int) -> np.ndarray:
        return (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np_dtype)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)  # norms stay f32, as llama.cpp's converters write them

    weights = {"token_embd.weight": rand(n_vocab, e)}
    for i in range(shape.n_layer):
        weights[f"blk.{i}.attn_norm.weight"] = ones(e)
        weights[f"blk.{i}.attn_q.weight"] = rand(e, e)
        weights[f"blk.{i}.attn_k.weight"] = rand(kv, e)
        weights[f"blk.{i}.attn_v.weight"] = rand(kv, e)
        weights[f"blk.{i}.attn_output.weight"] = rand(e, e)
        weights[f"blk.{i}.ffn_norm.weight"] = ones(e)
        weights[f"blk.{i}.ffn_gate.weight"] = rand(ff, e)
        weights[f"blk.{i}.ffn_up.weight"] = rand(ff, e)
        weights[f"blk.{i}.ffn_down.weight"] = rand(e, ff)
    weights["output_norm.weight"] = ones(e)
    weights["output.weight"] = rand(n_vocab, e)
    return write_llama(path, vocab=vocab, shape=shape, weights=weights, name=name,
                       f16=dtype == "f16", chat_template=chat_template)


def write_llama(
    path: str | Path,
    *,
    vocab: Vocab,
    shape: Shape,
    weights: dict[str, np.ndarray],
    name: str,
    f16: bool = False,
    chat_template: str | None = None,
) -> Path:
    """Write a llama-architecture GGUF from named tensors (llama.cpp's names and layouts)."""
    import gguf

    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(shape.n_ctx_train)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_rope_freq_base(shape.rope_base)
    writer.add_file_type(1 if f16 else 0)

    writer.add_tokenizer_model(vocab.model)
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if vocab.bos is not None:
        writer.add_bos_token_id(vocab.bos)
    if vocab.eos is not None:
        writer.add_eos_token_id(vocab.eos)
    if vocab.unk is not None:
        writer.add_unk_token_id(vocab.unk)
    for key, value in vocab.extra.items():
        _add_kv(writer, key, value)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for tensor_name, array in weights.items():
        writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_kv(writer: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        writer.add_array(key, list(value))
    else:
        raise TypeError(f"cannot write {key!r} of type {type(value).__name__} to GGUF")
