"""Write llama-architecture GGUF files with random weights, for tests and benchmarks.

A model built here loads in llama.cpp like any other: real tokenizer, real KV cache, real decode cost,
just no knowledge. The default vocabulary is a character-level SentencePiece-style one with the five
CML markers as control tokens; any other vocabulary (a real model family's) can be passed in.

Needs the ``gguf`` package (the ``test`` and ``bench`` extras), imported only when a file is written.
"""

from __future__ import annotations

import string
import struct
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
# For models that carry a real model family's vocabulary (150k-260k tokens): small enough to build
# and load in about a second.
VOCAB_TEST = Shape(n_embd=32, n_layer=1, n_head=2, n_head_kv=2, n_ff=64, n_ctx_train=4096)
# The embedded model's planned size: about 5M parameters with a 1000-token vocabulary.
SMALL = Shape(n_embd=256, n_layer=6, n_head=8, n_head_kv=8, n_ff=688, n_ctx_train=4096)
# A realistic shape (grouped-query attention, 32k vocabulary) whose decode takes 10-30 ms a token
# on two cores: the AsyncLM paper's fine-tuning range was 5-30 ms a token.
REALISTIC = Shape(n_embd=1024, n_layer=16, n_head=16, n_head_kv=4, n_ff=2816, n_ctx_train=8192)


def random_weights(shape: Shape, n_vocab: int, *, seed: int = 0, dtype: str = "f32",
                   tied: bool = False) -> dict[str, np.ndarray]:
    """Random llama tensors by llama.cpp's names; ``tied``: no output matrix (the embeddings serve)."""
    rng = np.random.default_rng(seed)
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
    if not tied:
        weights["output.weight"] = rand(n_vocab, e)
    return weights


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
    weights = random_weights(shape, len(vocab.tokens), seed=seed, dtype=dtype)
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
        if value:
            writer.add_array(key, list(value))
    else:
        raise TypeError(f"cannot write {key!r} of type {type(value).__name__} to GGUF")


# --- a random model with a real model family's tokenizer, written directly --------------------------
# The ``gguf`` package's reader and writer take tens of seconds over a 500k-merge vocabulary; these few
# functions copy the tokenizer's key-value records byte for byte instead, in well under a second.

_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF scalar sizes
_STRING, _ARRAY = 8, 9


def _skip_value(data: bytes, pos: int, kind: int) -> int:
    if kind in _FIXED:
        return pos + _FIXED[kind]
    if kind == _STRING:
        (n,) = struct.unpack_from("<Q", data, pos)
        return pos + 8 + n
    if kind == _ARRAY:
        item, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if item in _FIXED:
            return pos + count * _FIXED[item]
        for _ in range(count):
            pos = _skip_value(data, pos, item)
        return pos
    raise ValueError(f"unknown GGUF value type {kind}")


def gguf_records(path: str | Path) -> dict[str, tuple[bytes, Any]]:
    """Each key-value record of a GGUF file: its raw bytes, and its value when it is a scalar/string."""
    data = Path(path).read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    _version, _n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos, out = 24, {}
    for _ in range(n_kv):
        start = pos
        (n,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8:pos + 8 + n].decode()
        (kind,) = struct.unpack_from("<I", data, pos + 8 + n)
        pos = _skip_value(data, pos + 12 + n, kind)
        value: Any = None
        if kind == _STRING:
            value = data[start + 20 + n:pos].decode("utf-8", errors="replace")
        elif kind in (4, 5, 7):
            value = struct.unpack_from({4: "<I", 5: "<i", 7: "<?"}[kind], data, start + 12 + n)[0]
        out[key] = (data[start:pos], value)
    return out


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, value: Any) -> bytes:
    if isinstance(value, str):
        return _string(key) + struct.pack("<I", _STRING) + _string(value)
    if isinstance(value, float):
        return _string(key) + struct.pack("<If", 6, value)
    return _string(key) + struct.pack("<II", 4, value)


def write_with_vocab(path: str | Path, vocab_gguf: str | Path, *, shape: Shape = VOCAB_TEST,
                     seed: int = 0, name: str | None = None) -> Path:
    """A llama GGUF with random F16 weights (tied output) and every ``tokenizer.*`` record of
    ``vocab_gguf`` (tokens, merges, flags, special ids, chat template), copied unchanged."""
    records = gguf_records(vocab_gguf)
    tokenizer = {k: raw for k, (raw, _) in records.items() if k.startswith("tokenizer.")}
    tokens_raw = tokenizer.get("tokenizer.ggml.tokens")
    if tokens_raw is None:
        raise ValueError(f"{vocab_gguf} has no tokenizer.ggml.tokens")
    klen = struct.unpack_from("<Q", tokens_raw)[0]
    n_vocab = struct.unpack_from("<Q", tokens_raw, 8 + klen + 8)[0]
    family = records.get("general.name", (b"", None))[1] or Path(vocab_gguf).stem
    hd = shape.n_embd // shape.n_head
    tensors = random_weights(shape, n_vocab, seed=seed, dtype="f16", tied=True)
    meta = [
        _kv("general.architecture", "llama"), _kv("general.name", name or f"random {family}"),
        _kv("general.file_type", 1), _kv("llama.context_length", shape.n_ctx_train),
        _kv("llama.embedding_length", shape.n_embd), _kv("llama.block_count", shape.n_layer),
        _kv("llama.feed_forward_length", shape.n_ff), _kv("llama.attention.head_count", shape.n_head),
        _kv("llama.attention.head_count_kv", shape.n_head_kv),
        _kv("llama.attention.layer_norm_rms_epsilon", float(shape.rms_eps)),
        _kv("llama.rope.dimension_count", hd), _kv("llama.rope.freq_base", float(shape.rope_base)),
        *tokenizer.values()]
    align = 32
    infos, blobs, offset = [], [], 0
    for tensor_name, array in tensors.items():
        kind = 1 if array.dtype == np.float16 else 0
        dims = list(reversed(array.shape))
        infos.append(_string(tensor_name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", kind, offset))
        raw = array.tobytes()
        pad = (-len(raw)) % align
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta) + b"".join(infos)
    path = Path(path)
    with path.open("wb") as f:
        f.write(head + b"\0" * ((-len(head)) % align))
        for blob in blobs:
            f.write(blob)
    return path
