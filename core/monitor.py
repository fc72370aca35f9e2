"""The token monitor: an FSM over generated tokens that knows where blocks begin and end.

It turns each sampled token into block items (answer text, a finished call, a finished trap, a
grammar error), tracks the critical section (inside a call or a trap, where no interrupt may enter),
and gives the logit mask for the next token: ``[INTR]`` is always banned; ``[HEAD]`` and ``[END]``
only where the open block expects them; no block may be opened inside another; the end of sequence
is banned inside a block.
"""

from __future__ import annotations

import codecs

import numpy as np

from .cml import Atom, BlockItem, BlockParser, BlockState, Malformed, Marker, TextMarkerScanner


class Monitor:
    """Watches one stream of generated tokens. ``marker_ids`` maps control-token ids to markers
    (the native dialect); without it markers are found in the decoded text (the text dialect)."""

    def __init__(
        self,
        pieces,  # callable: token -> bytes
        *,
        marker_ids: dict[int, Marker] | None,
        banned: dict[BlockState, np.ndarray],
        silent_ids: frozenset[int] = frozenset(),
        max_block_tokens: int = 1024,
        tail_banned=None,  # callable (state, last text) -> banned ids, replacing ``banned``
        translate=None,  # a text filter with feed(str) -> str, flush() -> str and reopen() (ToolCallSyntax)
    ) -> None:
        self._piece = pieces
        self._marker_ids = marker_ids or {}
        self._scanner = None if marker_ids else TextMarkerScanner()
        self._banned = banned
        self._silent = silent_ids
        self._parser = BlockParser()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._block_tokens = 0
        self.max_block_tokens = max_block_tokens
        self._tail_banned = tail_banned
        self._translate = translate
        self._tail = ""

    @property
    def state(self) -> BlockState:
        return self._parser.state

    @property
    def in_block(self) -> bool:
        return self._parser.state is not BlockState.OUTSIDE

    @property
    def safe(self) -> bool:
        """A safe point: not inside a block, and no half-seen marker string or family-syntax call
        held back."""
        return self._parser.state is BlockState.OUTSIDE and not (
            self._scanner is not None and self._scanner.holding
        ) and not (self._translate is not None and self._translate.holding)

    @property
    def call_id(self) -> str:
        """The open call's text between [CALL] and [HEAD] so far (empty elsewhere)."""
        return self._parser.call_id if self._parser.state is BlockState.CALL_ID else ""

    @property
    def call_body(self) -> str:
        """The open call's text after its [HEAD] so far (empty outside a call body)."""
        return self._parser.body if self._parser.state is BlockState.CALL_BODY else ""

    def banned(self) -> np.ndarray:
        if self._tail_banned is not None:
            return self._tail_banned(self._parser.state, self._tail)
        return self._banned[self._parser.state]

    def feed(self, token: int) -> list[BlockItem]:
        marker = self._marker_ids.get(token)
        atoms: list[Atom]
        if marker is not None:
            tail = self._decoder.decode(b"", final=True)
            self._decoder.reset()
            atoms = [tail, marker] if tail else [marker]
        elif token in self._silent:
            atoms = []
        else:
            text = self._decoder.decode(self._piece(token))
            if text:
                self._tail = (self._tail + text)[-8:]
            if self._translate is not None and text:
                text = self._translate.feed(text)
            if self._scanner is not None:
                atoms = self._scanner.feed(text) if text else []
            else:
                atoms = [text] if text else []
        items = [item for atom in atoms if (item := self._parser.feed(atom)) is not None]
        if self._parser.state is BlockState.OUTSIDE:
            self._block_tokens = 0
        else:
            self._block_tokens += 1
            if self._block_tokens > self.max_block_tokens:
                raw = self._parser.abandon()
                self._block_tokens = 0
                items.append(Malformed(f"a block ran past {self.max_block_tokens} tokens", raw))
        return items

    def flush(self) -> list[BlockItem]:
        """End of the stream: release held-back text."""
        atoms: list[Atom] = []
        tail = self._decoder.decode(b"", final=True)
        if self._translate is not None:
            tail = self._translate.feed(tail) + self._translate.flush()
        if tail:
            atoms.extend(self._scanner.feed(tail) if self._scanner is not None else [tail])
        if self._scanner is not None:
            atoms.extend(self._scanner.flush())
        return [item for atom in atoms if (item := self._parser.feed(atom)) is not None]

    def reopened(self) -> None:
        """Interrupts entered: in a dialect that closes the model's message for them, it starts anew."""
        if self._translate is not None:
            self._translate.reopen()

    def abandon(self) -> str:
        """Forget an unfinished block (the answer was stopped inside it)."""
        self._block_tokens = 0
        return self._parser.abandon()
