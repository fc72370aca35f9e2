"""The embedded model in torch: a llama-architecture decoder (RMSNorm, rotary attention, SwiGLU).

Layer names and layouts follow llama.cpp's ``llama`` architecture so the export is a renaming, except
for rotary embeddings: this module rotates halves of each head (``rotate_half``), llama.cpp rotates
interleaved pairs, so the exporter permutes the rows of the q and k projections.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Config:
    n_vocab: int = 1024
    n_embd: int = 256
    n_layer: int = 6
    n_head: int = 8
    n_ff: int = 688
    n_ctx: int = 2048
    rms_eps: float = 1e-5
    rope_base: float = 10000.0

    def to_dict(self) -> dict:
        return asdict(self)


def rope_tables(cfg: Config, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    hd = cfg.n_embd // cfg.n_head
    inv = 1.0 / (cfg.rope_base ** (torch.arange(0, hd, 2, dtype=torch.float32, device=device) / hd))
    pos = torch.arange(cfg.n_ctx, dtype=torch.float32, device=device)
    freqs = torch.outer(pos, inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        e, h = cfg.n_embd, cfg.n_head
        self.n_head, self.hd = h, e // h
        self.attn_norm = nn.RMSNorm(e, eps=cfg.rms_eps)
        self.q = nn.Linear(e, e, bias=False)
        self.k = nn.Linear(e, e, bias=False)
        self.v = nn.Linear(e, e, bias=False)
        self.o = nn.Linear(e, e, bias=False)
        self.ffn_norm = nn.RMSNorm(e, eps=cfg.rms_eps)
        self.gate = nn.Linear(e, cfg.n_ff, bias=False)
        self.up = nn.Linear(e, cfg.n_ff, bias=False)
        self.down = nn.Linear(cfg.n_ff, e, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, tap_heads: tuple[int, ...] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's output; with ``tap_heads``, also those heads' rotated queries and keys (b, heads, t, hd)."""
        b, t, e = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, t, self.n_head, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.n_head, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.n_head, self.hd).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, e))
        h = self.ffn_norm(x)
        x = x + self.down(F.silu(self.gate(h)) * self.up(h))
        if tap_heads is None:
            return x
        heads = list(tap_heads)
        return x, q[:, heads], k[:, heads]


class Model(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.n_vocab, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.n_embd, eps=cfg.rms_eps)
        cos, sin = rope_tables(cfg)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for block in self.blocks:  # scaled residual projections
            nn.init.normal_(block.o.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
            nn.init.normal_(block.down.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids: torch.Tensor, tap: tuple[int, tuple[int, ...]] | None = None):
        """Logits; with ``tap = (layer, heads)``, also those heads' rotated queries and keys (b, heads,
        t, hd), which the trainer may steer toward given positions (``pointer_loss``)."""
        t = ids.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        x = self.embed(ids)
        qk = None
        for n, block in enumerate(self.blocks):
            if tap is not None and n == tap[0]:
                x, *qk = block(x, cos, sin, tap[1])
            else:
                x = block(x, cos, sin)
        logits = F.linear(self.norm(x), self.embed.weight)  # tied output layer
        return logits if tap is None else (logits, *qk)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def pointer_loss(q: torch.Tensor, k: torch.Tensor, pointers: torch.Tensor) -> torch.Tensor:
    """How far one head's attention is from the words it should read: the mean over the pointers'
    query positions of -log(the attention's weight on the span ``t0..t1 - 1``), the weights as the
    causal attention computes them. ``q``, ``k``: (b, t, hd); ``pointers``: (n, 5) rows of
    ``row, q0, q1, t0, t1``."""
    losses = []
    scale = q.shape[-1] ** -0.5
    for row, q0, q1, t0, t1 in pointers.tolist():
        if t1 <= t0:
            continue
        pos = torch.arange(q0, q1 + 1)
        scores = (q[row, q0:q1 + 1].float() @ k[row, :q1 + 1].float().T) * scale
        keys = torch.arange(q1 + 1)
        scores = scores.masked_fill(keys[None, :] > pos[:, None], float("-inf"))
        losses.append(torch.logsumexp(scores, -1) - torch.logsumexp(scores[:, t0:t1], -1))
    if not losses:
        return q.new_zeros((), dtype=torch.float32)
    return torch.cat(losses).mean()
