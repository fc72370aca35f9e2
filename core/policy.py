"""Policies: what decides the next token.

- ``SampledPolicy``: the model decides, through our sampler with the monitor's mask.
- ``ScriptedPolicy``: a script decides (forced decoding). Every token still goes through the real
  model and the real KV cache at real decode cost, and through the monitor and executor; only the
  choice of token is fixed. Tests and the benchmark use it for exact control of what the model
  writes, as the AsyncLM paper's "cheat sheet" set-up did.

A script is CML text per turn, e.g. ``'Checking.[CALL] w1 [HEAD] weather(city="Oslo") [END][TRAP] [END]Done.'``.
When a turn's script runs out the policy writes end-of-sequence. ``reactions`` map an interrupt source
(a call id or ``user``) to more script, written as soon as an interrupt from that source has entered.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Iterable, Mapping, Protocol, Sequence

import numpy as np

from .cml import BlockParser, BlockState, Malformed, Marker, split_atoms
from .interrupts import Interrupt
from .sampling import Sampler

if TYPE_CHECKING:
    from .dialect import Dialect


class Policy(Protocol):
    def start_turn(self, turn: int, dialect: "Dialect") -> None: ...

    def choose(self, logits: np.ndarray, banned: np.ndarray) -> int: ...

    def accept(self, token: int) -> None: ...

    def injected(self, interrupts: Sequence[Interrupt]) -> None: ...


class SampledPolicy:
    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def start_turn(self, turn: int, dialect: "Dialect") -> None:
        pass

    def choose(self, logits: np.ndarray, banned: np.ndarray) -> int:
        return self.sampler.sample(logits, banned)

    def accept(self, token: int) -> None:
        self.sampler.accept(token)

    def injected(self, interrupts: Sequence[Interrupt]) -> None:
        pass


class ScriptViolation(RuntimeError):
    """The script asked for a token the protocol forbids at that point."""


def check_script(script: str) -> None:
    """Raise ``ScriptViolation`` where a turn's script breaks the block grammar: a marker out of
    place, text inside a trap, or a block left open at its end."""
    parser = BlockParser()
    written = ""
    for atom in split_atoms(script):
        item = parser.feed(atom)
        written += atom.value if isinstance(atom, Marker) else atom
        if isinstance(item, Malformed):
            what = item.reason.replace(" was ignored", "") if atom is not Marker.INTR else "[INTR] (the engine's own)"
            raise ScriptViolation(f"{what} is not allowed (after {written[-40:]!r})")
    if parser.state is not BlockState.OUTSIDE:
        raise ScriptViolation(f"it ends inside a {'trap' if parser.state is BlockState.TRAP else 'call'} block")


class ScriptedPolicy:
    def __init__(self, turns: Iterable[str], reactions: Mapping[str, str] | None = None) -> None:
        self._turns = deque(turns)
        self._reactions = dict(reactions or {})
        self._queue: deque[int] = deque()
        self._dialect: "Dialect | None" = None
        self._eos = -1

    def add_turn(self, script: str) -> None:
        self._turns.append(script)

    def start_turn(self, turn: int, dialect: "Dialect") -> None:
        self._dialect = dialect
        self._eos = dialect.backend.eos
        script = self._turns.popleft() if self._turns else ""
        self._queue = deque(dialect.encode(split_atoms(script)))

    def choose(self, logits: np.ndarray, banned: np.ndarray) -> int:
        token = self._queue[0] if self._queue else self._eos
        if banned.size and token in banned:
            raise ScriptViolation(f"the script writes token {token}, which the protocol bans here")
        return token

    def accept(self, token: int) -> None:
        if self._queue and self._queue[0] == token:
            self._queue.popleft()

    def write_next(self, script: str) -> None:
        """Write ``script`` before whatever is left of the current one (an answer to an interrupt)."""
        assert self._dialect is not None, "a turn has started"
        self._queue.extendleft(reversed(self._dialect.encode(split_atoms(script))))

    def injected(self, interrupts: Sequence[Interrupt]) -> None:
        for intr in interrupts:
            script = self._reactions.pop(intr.source, None)
            if script:
                self.write_next(script)
