"""Typed events: everything the engine does, as frozen dataclasses stamped with a monotonic clock.

Front ends (the headless printer, the transcript writer, the TUI, the benchmark recorder) consume only
these. Events are emitted on the thread where the thing happened (the decode thread or the executor's
loop), so a subscriber must be quick and thread-safe: hand the event over to your own thread or queue.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    t: float = field(default_factory=time.monotonic)

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            out[f.name] = getattr(self, f.name)
        return out

    def to_json(self) -> str:
        """One line of JSON; a lone surrogate (a tool's or an argument's undecodable byte) is written as
        its ``\\udXXX`` escape, so the line can be encoded as UTF-8."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, default=_jsonable)
        return LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return repr(value)


EventSink = Callable[[Event], None]


# --- session and turn -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionStarted(Event):
    model: str
    dialect: str
    mode: str
    n_ctx: int
    tools: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnStarted(Event):
    turn: int
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TurnEnded(Event):
    turn: int
    # "done"; "stopped" (by the user); ended by a limit: "length", "timeout", "context_full"; ended as
    # stuck: "refused_calls", "idle_trap", "repetition"; "error"
    reason: str
    text: str  # the visible answer of this turn


@dataclass(frozen=True, kw_only=True, slots=True)
class Notice(Event):
    level: str  # "info", "warning", "error"
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ModeChanged(Event):
    mode: str


# --- decoding ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenGenerated(Event):
    token: int
    text: str  # visible answer text this token completed (may be "")
    in_block: bool
    seconds: float = 0.0  # choosing and decoding this token (what the turn's decode_seconds adds up)


@dataclass(frozen=True, kw_only=True, slots=True)
class TrapEntered(Event):
    reason: str  # "trap", "end-of-sequence", "repetition", "sync", "sync-parallel"
    waiting_on: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class TrapLeft(Event):
    waited: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Stats(Event):
    generated: int  # tokens sampled this turn
    injected: int  # tokens injected this turn
    decode_seconds: float
    tokens_per_second: float
    n_past: int
    n_ctx: int
    pending: int


# --- calls ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CallDetected(Event):
    call_id: str
    name: str
    expr: str
    refs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRejected(Event):
    """A call block the engine would not run: bad syntax, unknown tool, bad or repeated id."""

    call_id: str
    raw: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallDrafted(Event):
    """The completion check drafted a call where the model opened one or stopped calling
    (``core.completion``): ``kept`` if it is written next; otherwise it was taken back out of the context."""

    expr: str  # the drafted call as written (``""`` if the draft was no finished call)
    kept: bool
    tokens: int  # tokens drafted (and, when not kept, taken back)
    logprob: float  # of the call's tool and arguments, as steered
    searched: bool  # a call of another tool than the model's own draft, its name written for it
    name_logprob: float = 0.0  # the part of ``logprob`` its name took, when written for it
    longer: bool = False  # another tool's call, drafted to go before the model's own (a longer estimate)
    adds: bool = False  # it adds a task (``core.completion.adds_task``)


@dataclass(frozen=True, kw_only=True, slots=True)
class CallWaiting(Event):
    call_id: str
    on: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class CallNeedsConfirmation(Event):
    call_id: str
    name: str
    expr: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallStarted(Event):
    call_id: str
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CallFinished(Event):
    call_id: str
    name: str
    result: str  # the whole rendered result, uncut
    elapsed: float


@dataclass(frozen=True, kw_only=True, slots=True)
class CallFailed(Event):
    call_id: str
    name: str
    error: str
    elapsed: float


@dataclass(frozen=True, kw_only=True, slots=True)
class CallCancelled(Event):
    call_id: str
    name: str
    elapsed: float


# --- interrupts -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class InterruptQueued(Event):
    source: str
    kind: str
    payload: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageNotSent(Event):
    """A message the user typed that the context could not take: it never entered, and a front end
    gives it back (the notice before it says why)."""

    text: str
    fits_new_session: bool = True  # a new session would take it (else it is longer than any context holds)


@dataclass(frozen=True, kw_only=True, slots=True)
class InterruptInjected(Event):
    sources: tuple[str, ...]
    n_tokens: int
    position: int  # context position where the interrupts begin
    text: str  # the exact text that entered the context
    latency: float  # seconds from the oldest one's queueing to being in the KV cache
    prefill: float = 0.0  # seconds of that spent evaluating the interrupts' own tokens
    payloads: tuple[str, ...] = ()  # what each source said, in order (empty in older transcripts)

    def said(self) -> list[tuple[str, str]]:
        """Each source with what it said; "" where an older transcript did not record it."""
        return list(itertools.zip_longest(self.sources, self.payloads, fillvalue=""))


@dataclass(frozen=True, kw_only=True, slots=True)
class ContextExtended(Event):
    """Tokens the engine evaluated that the model did not generate (session start, the end of an
    answer, interrupts, a block closed by the engine). With ``TokenGenerated`` these rebuild the
    context exactly, which is how a session is resumed."""

    tokens: tuple[int, ...]
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionResumed(Event):
    path: str
    tokens: int
    turns: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        SessionStarted, TurnStarted, TurnEnded, Notice, ModeChanged, TokenGenerated, TrapEntered,
        TrapLeft, Stats, CallDetected, CallRejected, CallDrafted, CallWaiting, CallNeedsConfirmation, CallStarted,
        CallFinished, CallFailed, CallCancelled, InterruptQueued, MessageNotSent, InterruptInjected,
        ContextExtended, SessionResumed,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event written by ``to_json`` (transcripts)."""
    cls = EVENT_TYPES[data["type"]]
    kwargs = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
    for f in dataclasses.fields(cls):
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)
