"""A recorded session read back: what the engine restores to continue it (``Engine.resume``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import events as ev
from .interrupts import Interrupt


@dataclass
class Recorded:
    session: ev.SessionStarted
    tokens: list[int] = field(default_factory=list)  # the context, every token in order
    # what the model read, in order: ("id", a call id written) or ("text", a message or result)
    learned: list[tuple[str, str]] = field(default_factory=list)
    producers: dict[str, str] = field(default_factory=dict)  # call id -> tool, of calls that started
    failed: set[str] = field(default_factory=set)  # ids whose error or cancellation was queued
    pending: list[Interrupt] = field(default_factory=list)  # queued, never entered; users' messages left out
    lost: list[tuple[str, str]] = field(default_factory=list)  # (id, tool) of calls with no result recorded
    turn: int = 0
    last_end: str = ""  # why the last answer ended ("" if none did)


def read_recording(events: list[ev.Event]) -> Recorded:
    """The last session in ``events``; ValueError if there is none."""
    start = max((i for i, e in enumerate(events) if isinstance(e, ev.SessionStarted)), default=None)
    if start is None:
        raise ValueError("the session file has no session in it")
    out = Recorded(events[start])
    queued: list[ev.InterruptQueued] = []
    unanswered: dict[str, str] = {}
    for e in events[start:]:
        if isinstance(e, ev.CallDetected):
            unanswered[e.call_id] = e.name
        if isinstance(e, ev.InterruptQueued):
            unanswered.pop(e.source, None)
            queued.append(e)
        elif isinstance(e, ev.InterruptInjected):
            del queued[:len(e.sources)]  # an injection takes everything queued, in order
        if isinstance(e, ev.ContextExtended):
            out.tokens.extend(e.tokens)
        elif isinstance(e, ev.TokenGenerated):
            out.tokens.append(e.token)
        elif isinstance(e, (ev.CallDetected, ev.CallRejected)) and e.call_id:
            out.learned.append(("id", e.call_id))
            if isinstance(e, ev.CallDetected):
                out.producers[e.call_id] = e.name
        elif isinstance(e, ev.InterruptQueued) and e.kind in ("error", "cancelled"):
            out.failed.add(e.source)
        elif isinstance(e, ev.InterruptQueued) and e.kind != "system":
            out.learned.append(("text", e.payload))
        elif isinstance(e, ev.TurnStarted):
            out.turn = e.turn
        elif isinstance(e, ev.TurnEnded):
            out.last_end = e.reason
    # Results and notices that were queued but never entered (a stop's cancellations) still will;
    # a message the user sent just before quitting is not replayed as a new question.
    out.pending = [Interrupt(q.source, q.payload, q.kind) for q in queued if q.source != "user"]
    out.lost = list(unanswered.items())
    return out
