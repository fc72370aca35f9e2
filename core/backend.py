"""The backend contract: what the decode loop, the dialects, the drafts and the steering use of a
model. ``core.llama.LlamaBackend`` (a llama.cpp context) is the implementation.

The contract is a vocabulary and one growing context: tokens are appended (``eval``), the logits
after the last one are read, and the context can be cut back (``truncate``) to a position it held,
which is how drafts are taken back and how a session's opening is reused. A backend that cannot
give logits or cut back (a server that streams tokens) fits behind this only with the steering,
the completion check and the masks turned off; a second model consulted per token is a policy
(``core.policy``) over this contract, given its own context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from .llama import ModelInfo


class Backend(Protocol):
    info: ModelInfo  # the model's name, path, training context and metadata (its chat template)

    # --- the vocabulary ------------------------------------------------------------------------
    n_vocab: int
    bos: int
    eos: int

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """``special`` parses control-token spellings: only for text the engine writes."""

    def detokenize(self, tokens: list[int]) -> str: ...

    def piece(self, token: int) -> bytes:
        """The bytes a token adds to the text (control tokens as their spelling)."""

    def is_eog(self, token: int) -> bool:
        """The token ends generation (end of turn or sequence)."""

    @property
    def eog_tokens(self) -> np.ndarray: ...

    def is_control(self, token: int) -> bool: ...

    def is_special(self, token: int) -> bool:
        """Special-token parsing can produce it from its spelling."""

    def control_token(self, text: str) -> int | None:
        """The id of the control token spelled ``text``, if there is one."""

    # --- the context ---------------------------------------------------------------------------
    n_ctx: int
    n_past: int  # positions the context holds

    def eval(self, tokens: list[int]) -> None:
        """Append ``tokens``; raises ``core.llama.ContextFull`` where they do not fit."""

    def logits(self) -> np.ndarray:
        """The next token's logits, after the last evaluated one."""

    def truncate(self, n_past: int) -> None:
        """Cut the context back to its first ``n_past`` positions."""

    def reset(self) -> None:
        """An empty context."""

    # --- saved openings (``core.promptcache``) --------------------------------------------------
    @property
    def identity(self) -> str:
        """What a saved state is valid for."""

    def save_state(self, path: Path, tokens: list[int]) -> bool: ...

    def load_state(self, path: Path, tokens: list[int]) -> bool: ...
