"""What the engine does to the model's choices, beside the protocol's masks: logit processors (the
copy bias, typed references, used ids kept open) and a token override (the loop breaker).

Both see the vocabulary, the tools and the call ledger, never the engine. Which of them a model gets
is its profile's choice (``core.profiles``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .backend import Backend
from .cml import BlockState, Marker
from .copying import CopyBias, token_texts
from .dialect import Dialect
from .executor import Toolbox
from .ledger import CallLedger
from .monitor import Monitor
from .references import ReferenceGuide, reference_target

LOOP_COPIES = 3  # with break_loops: a piece written this many times in a row may not start again
LOOP_BREAKS = 2  # loops an answer may have broken; the next one ends it (``LoopBreaker``)


class Vocabulary:
    """What each token adds to the text (``copying.token_texts``), read from the model once."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._texts: list[str | None] | None = None

    def texts(self) -> list[str | None]:
        if self._texts is None:
            self._texts = token_texts(self.backend.n_vocab, self.backend.piece, self.backend.is_control)
        return self._texts


class Steering:
    """The logit processors, applied where the monitor stands: the copy bias in a call's arguments and
    the answer's text (``core.copying``), typed references (``core.references``), a used id kept open."""

    def __init__(self, vocab: Vocabulary, dialect: Dialect, tools: Toolbox, ledger: CallLedger, *,
                 copy_bias: float, copy_text: bool, typed_references: bool) -> None:
        self.vocab, self.dialect, self.tools, self.ledger = vocab, dialect, tools, ledger
        self.copy_text, self.typed_references = copy_text, typed_references
        self.copy_bias: CopyBias | None = None
        if copy_bias > 0:
            end = dialect.marker_tokens(Marker.END)  # one control token in the native dialect
            self.copy_bias = CopyBias(vocab.texts(), copy_bias, tuple(end) if len(end) == 1 else ())
        self._id_continuations: np.ndarray | None = None  # tokens that go on with an id
        self._references: ReferenceGuide | None = None  # built at the first reference

    # --- what the model has read ---------------------------------------------------------------

    def reset(self) -> None:
        if self.copy_bias is not None:
            self.copy_bias.reset()

    def learn(self, text: str) -> None:
        """A user message or a result entered: its words may be copied."""
        if self.copy_bias is not None:
            self.copy_bias.learn(text)

    def learn_id(self, call_id: str) -> None:
        """A call id was written: a later call may name it as a dataflow reference."""
        if self.copy_bias is not None:
            self.copy_bias.learn_id(call_id)

    # --- the processors ------------------------------------------------------------------------

    def apply(self, logits: np.ndarray, monitor: Monitor, recent: str) -> np.ndarray:
        if monitor.state is BlockState.CALL_BODY:
            if self.copy_bias is not None:
                logits = self.copy_bias.apply(logits, monitor.call_body)
            if self.typed_references:
                logits = self._typed_reference(logits, monitor.call_body)
        elif self.copy_bias is not None and self.copy_text and monitor.state is BlockState.OUTSIDE:
            logits = self.copy_bias.apply_text(logits, recent)
        elif monitor.state is BlockState.CALL_ID and monitor.call_id.strip() in self.ledger.ids:
            logits = self._keep_id_open(logits, monitor.call_id)
        return logits

    def _keep_id_open(self, logits: np.ndarray, written: str) -> np.ndarray:
        """An id the session has used may not end here: the model writes on (``c5`` becomes ``c55``)
        rather than have its call rejected. Only letters, digits and underscores may follow, so the id
        stays an id. Only where [HEAD] is one token (the native dialect) and the id has not already
        ended with a space."""
        if written[-1:].isspace():
            return logits
        if self._id_continuations is None:
            allowed = np.zeros(self.vocab.backend.n_vocab, dtype=bool)
            if len(self.dialect.marker_tokens(Marker.HEAD)) == 1:
                for t, text in enumerate(self.vocab.texts()):
                    allowed[t] = text is not None and text.isascii() and text.replace("_", "a").isalnum()
            self._id_continuations = allowed
        if not self._id_continuations.any():
            return logits
        return np.where(self._id_continuations, logits, -np.inf).astype(logits.dtype, copy=False)

    def _typed_reference(self, logits: np.ndarray, body: str) -> np.ndarray:
        """Within a dataflow reference, only the ids of earlier calls whose results the argument could
        take."""
        target = reference_target(body)
        tool = self.tools.get(target[0]) if target is not None else None
        if tool is None:
            return logits
        _, param, written = target
        fits = self.ledger.results_for(target[0], param)
        if self._references is None:
            self._references = ReferenceGuide(self.vocab.texts())
        allowed = self._references.allowed(written, self.ledger.ids, fits)
        if allowed is None:
            return logits
        return np.where(allowed, logits, -np.inf).astype(logits.dtype, copy=False)


class LoopBreaker:
    """A token override: where the chosen token would start a piece of the answer a fourth time in a
    row (``starts_loop``), and no user message or result holds it four times (a file's ``hi hi hi
    hi``), the model's likeliest punctuation, marker or end comes instead: it ends the phrase or quote.
    Measured in docs/model-card.md."""

    def __init__(self, vocab: Vocabulary, heard: list[str],
                 choose: Callable[[np.ndarray, np.ndarray], int]) -> None:
        self.vocab, self.heard, self.choose = vocab, heard, choose
        self.broken = 0  # loops broken in this answer
        self._worded: np.ndarray | None = None  # tokens of words, numbers or spaces

    def reset(self) -> None:
        self.broken = 0

    def check(self, logits: np.ndarray, banned: np.ndarray, token: int, recent: str) -> tuple[int, str]:
        """The token to write, and the piece where the answer has broken ``LOOP_BREAKS`` loops
        already: this one ends it, as ``repeating`` would."""
        unit = starts_loop(recent + (self.vocab.texts()[token] or ""))
        if not unit or any((unit * (LOOP_COPIES + 1)).strip() in heard for heard in self.heard):
            return token, ""
        self.broken += 1
        if self.broken > LOOP_BREAKS:
            return token, unit
        if self._worded is None:
            self._worded = np.flatnonzero([text is not None and (text.isspace() or any(map(str.isalnum, text)))
                                           for text in self.vocab.texts()])
        return self.choose(logits, np.union1d(banned, self._worded)), ""


def starts_loop(text: str, copies: int = LOOP_COPIES) -> str:
    """The piece of 2-40 characters, with a letter or digit in it, that ends ``text`` ``copies`` times in
    a row and then more of it, a letter or digit at least (``Done. walse walse walse w``: `` walse``; a
    space alone is not yet a fourth ``walse``), or "". A small model that has written a word or number
    three times in a row most often goes on writing it until the answer is cut short (``repeating``) or
    the context is full (``099.099.099.0999999.29999999.2999...``); a person seldom writes the same thing
    a fourth time. One character over and over is a piece of two (``lllllll``, ``0000000``)."""
    for size in range(2, 41):
        if len(text) < copies * size + 1:
            break
        if text[-1] != text[-1 - size]:
            continue  # no run of this size: most sizes, on every token, decided by one comparison
        start = len(text) - size
        while start > 0 and text[start - 1] == text[start - 1 + size]:
            start -= 1
        full, more = divmod(len(text) - start, size)
        unit = text[start:start + size]
        if any(ch.isalnum() for ch in unit) and (
                full > copies or full == copies and any(ch.isalnum() for ch in text[len(text) - more:])):
            return unit
    return ""
