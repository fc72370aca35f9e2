"""Our own sampler over llama.cpp's logits, with the monitor's mask applied first.

Order, as llama.cpp's default chain: ban (mask) -> repetition penalty -> temperature -> top-k ->
top-p -> min-p -> draw. Temperature 0 is greedy. All on numpy, no per-token allocation beyond what
numpy needs for the candidates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be 0 (greedy) or more")
        if self.top_k < 0:
            raise ValueError("top_k must be 0 (off) or more")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if not 0 <= self.min_p < 1:
            raise ValueError("min_p must be in [0, 1)")
        if self.repeat_penalty <= 0:
            raise ValueError("repeat_penalty must be positive")


GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0)


class Sampler:
    def __init__(self, settings: SamplingSettings = SamplingSettings()) -> None:
        self.settings = settings
        self._rng = np.random.default_rng(settings.seed)
        self._recent: deque[int] = deque(maxlen=max(1, settings.repeat_last_n))

    def accept(self, token: int) -> None:
        """Record a token that entered the context as model output (for the repetition penalty)."""
        self._recent.append(token)

    def sample(self, logits: np.ndarray, banned: np.ndarray | None = None) -> int:
        s = self.settings
        work = logits.astype(np.float32, copy=True)
        if banned is not None and banned.size:
            work[banned] = -np.inf
        if s.repeat_penalty != 1.0 and self._recent:
            ids = np.fromiter(set(self._recent), dtype=np.int64)
            vals = work[ids]
            work[ids] = np.where(vals > 0, vals / s.repeat_penalty, vals * s.repeat_penalty)
        if s.temperature == 0:
            return int(np.argmax(work))

        if 0 < s.top_k < work.size:
            idx = np.argpartition(work, -s.top_k)[-s.top_k:]
        else:
            idx = np.arange(work.size)
        cand = work[idx] / s.temperature
        finite = np.isfinite(cand)
        if not finite.any():
            return int(np.argmax(work))
        idx, cand = idx[finite], cand[finite]
        order = np.argsort(-cand, kind="stable")
        idx, cand = idx[order], cand[order]
        probs = np.exp(cand - cand[0])
        probs /= probs.sum()
        if s.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), s.top_p) + 1)
            idx, probs = idx[:keep], probs[:keep]
        if s.min_p > 0:
            mask = probs >= s.min_p * probs[0]
            idx, probs = idx[mask], probs[mask]
        probs = probs / probs.sum()
        return int(idx[self._rng.choice(idx.size, p=probs)])
