"""Export a trained checkpoint to a llama-architecture GGUF (F16 matrices, F32 norms)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from asynclm.core.modelgen import Shape, write_llama

from .model import Config, Model
from .tokenizer import build_vocab

MODEL_NAME = "asynclm-tiny"


def rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q/k projection from rotate-half order to llama.cpp's interleaved-pair order."""
    out, *rest = weight.shape
    return (weight.reshape(n_head, 2, out // n_head // 2, *rest)
            .swapaxes(1, 2)
            .reshape(weight.shape))


def gguf_weights(model: Model, f16: bool = True) -> dict[str, np.ndarray]:
    cfg = model.cfg
    mat = np.float16 if f16 else np.float32

    def m(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy().astype(mat)

    def v(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy().astype(np.float32)

    w = {"token_embd.weight": m(model.embed.weight)}
    for i, b in enumerate(model.blocks):
        w[f"blk.{i}.attn_norm.weight"] = v(b.attn_norm.weight)
        w[f"blk.{i}.attn_q.weight"] = rope_permute(m(b.q.weight), cfg.n_head)
        w[f"blk.{i}.attn_k.weight"] = rope_permute(m(b.k.weight), cfg.n_head)
        w[f"blk.{i}.attn_v.weight"] = m(b.v.weight)
        w[f"blk.{i}.attn_output.weight"] = m(b.o.weight)
        w[f"blk.{i}.ffn_norm.weight"] = v(b.ffn_norm.weight)
        w[f"blk.{i}.ffn_gate.weight"] = m(b.gate.weight)
        w[f"blk.{i}.ffn_up.weight"] = m(b.up.weight)
        w[f"blk.{i}.ffn_down.weight"] = m(b.down.weight)
    w["output_norm.weight"] = v(model.norm.weight)
    # No output.weight: the output layer is tied to the embeddings, which llama.cpp reuses.
    return w


def load_checkpoint(path: Path) -> tuple[Model, list[str]]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = Model(Config(**state["config"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state["pieces"]


def export(checkpoint: Path, out: Path, f16: bool = True) -> str:
    """Write the GGUF and return its sha256."""
    model, pieces = load_checkpoint(checkpoint)
    cfg = model.cfg
    shape = Shape(n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head, n_head_kv=cfg.n_head,
                  n_ff=cfg.n_ff, n_ctx_train=cfg.n_ctx, rms_eps=cfg.rms_eps, rope_base=cfg.rope_base)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_llama(out, vocab=build_vocab(pieces), shape=shape, weights=gguf_weights(model, f16),
                name=MODEL_NAME, f16=f16)
    return hashlib.sha256(out.read_bytes()).hexdigest()
