"""Dialects: how CML markers and injected text become tokens for a given model.

- ``native``: the five markers are control tokens of the vocabulary (the embedded model, models
  fine-tuned for CML). Engine-written markers are those token ids; every text run, including what a
  user or a tool wrote, is tokenized with special-token parsing off, so it can never yield a marker.
- ``text``: the markers are literal strings (any instruct model prompted with the protocol). Marker
  strings inside injected text are neutralised before tokenizing; the monitor finds the model's
  markers in the decoded text however the tokenizer splits them.

The dialect is chosen from the vocabulary: native when all five markers are control tokens.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .cml import MARKERS, Atom, BlockState, Marker, interrupt_atoms, neutralise
from .interrupts import Interrupt
from .llama import LlamaBackend
from .monitor import Monitor

DIALECTS = ("native", "text")


class DialectError(ValueError):
    pass


class Dialect:
    name = "?"

    def __init__(self, backend: LlamaBackend) -> None:
        self.backend = backend
        self._text_cache: dict[str, list[int]] = {}

    # --- what the engine writes ---------------------------------------------------------------

    def marker_tokens(self, marker: Marker) -> list[int]:
        raise NotImplementedError

    def text_tokens(self, text: str) -> list[int]:
        """Plain text (model or injected), with special-token parsing off."""
        return self.backend.tokenize(text, special=False)

    def encode(self, atoms: Iterable[Atom]) -> list[int]:
        out: list[int] = []
        for atom in atoms:
            if isinstance(atom, Marker):
                out.extend(self.marker_tokens(atom))
            elif atom:
                cached = self._text_cache.get(atom)
                if cached is None:
                    cached = self.text_tokens(atom)
                    if len(atom) <= 32:
                        self._text_cache[atom] = cached
                out.extend(cached)
        return out

    def prepare_injected(self, text: str) -> str:
        return text

    def encode_interrupts(self, interrupts: Iterable[Interrupt]) -> tuple[list[int], str]:
        atoms: list[Atom] = []
        for intr in interrupts:
            atoms += interrupt_atoms(intr.source, self.prepare_injected(intr.payload))
        text = "".join(a.value if isinstance(a, Marker) else a for a in atoms)
        return self.encode(atoms), text

    def session_start(self) -> list[int]:
        b = self.backend
        return [b.bos] if b.add_bos and b.bos >= 0 else []

    def turn_separator(self) -> list[int]:
        """What follows a finished answer in the context, before the next turn's interrupts."""
        eos = self.backend.eos
        return [eos] if eos >= 0 else []

    # --- what the model writes ----------------------------------------------------------------

    def new_monitor(self, max_block_tokens: int = 1024) -> Monitor:
        raise NotImplementedError


def _as_ids(ids: Iterable[int]) -> np.ndarray:
    return np.array(sorted(set(ids)), dtype=np.int64)


class NativeDialect(Dialect):
    name = "native"

    def __init__(self, backend: LlamaBackend) -> None:
        super().__init__(backend)
        ids: dict[Marker, int] = {}
        for marker in MARKERS:
            tok = backend.control_token(marker.value)
            if tok is None:
                raise DialectError(
                    f"the model's vocabulary has no control token for {marker.value}, "
                    "so it cannot use the native dialect"
                )
            ids[marker] = tok
        self.ids = ids
        self._by_id = {tok: m for m, tok in ids.items()}
        eog = backend.eog_tokens.tolist()
        c, i, t, e, h = (ids[m] for m in (Marker.CALL, Marker.INTR, Marker.TRAP, Marker.END, Marker.HEAD))
        self._banned = {
            BlockState.OUTSIDE: _as_ids([i, h, e]),
            BlockState.CALL_ID: _as_ids([i, c, t, e, *eog]),
            BlockState.CALL_BODY: _as_ids([i, c, t, h, *eog]),
            BlockState.TRAP: _as_ids([i, c, t, h, *eog]),
        }
        # Other control tokens (BOS and the like) add nothing to the answer text.
        self._silent = frozenset(
            tok for tok in range(backend.n_vocab)
            if tok not in self._by_id and backend.is_control(tok)
        )

    def marker_tokens(self, marker: Marker) -> list[int]:
        return [self.ids[marker]]

    def new_monitor(self, max_block_tokens: int = 1024) -> Monitor:
        return Monitor(self.backend.piece, marker_ids=self._by_id, banned=self._banned,
                       silent_ids=self._silent, max_block_tokens=max_block_tokens)


class TextDialect(Dialect):
    name = "text"

    def __init__(self, backend: LlamaBackend) -> None:
        super().__init__(backend)
        self._markers = {m: backend.tokenize(m.value, special=False) for m in MARKERS}
        eog = backend.eog_tokens.tolist()
        none = _as_ids([])
        self._banned = {
            BlockState.OUTSIDE: none,
            BlockState.CALL_ID: _as_ids(eog),
            BlockState.CALL_BODY: _as_ids(eog),
            BlockState.TRAP: _as_ids(eog),
        }
        self._silent = frozenset(
            tok for tok in range(backend.n_vocab) if backend.is_control(tok)
        )

    def marker_tokens(self, marker: Marker) -> list[int]:
        return self._markers[marker]

    def prepare_injected(self, text: str) -> str:
        return neutralise(text)

    def new_monitor(self, max_block_tokens: int = 1024) -> Monitor:
        return Monitor(self.backend.piece, marker_ids=None, banned=self._banned,
                       silent_ids=self._silent, max_block_tokens=max_block_tokens)


def select_dialect(backend: LlamaBackend, name: str | None = None) -> Dialect:
    """The dialect named, or the best one the vocabulary supports."""
    if name in (None, "auto"):
        try:
            return NativeDialect(backend)
        except DialectError:
            return TextDialect(backend)
    if name == "native":
        return NativeDialect(backend)
    if name == "text":
        return TextDialect(backend)
    raise DialectError(f"unknown dialect {name!r}; choose one of: auto, {', '.join(DIALECTS)}")
