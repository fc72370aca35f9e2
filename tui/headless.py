"""The headless front end: stream the answer to stdout, then a timing summary (or every event as JSON).

It consumes only engine events, like every front end.
"""

from __future__ import annotations

import sys
import threading
from typing import NamedTuple, TextIO

from asynclm.core import events as ev
from asynclm.core.reducer import SessionState, TurnState


class TurnRecorder(SessionState):
    """The session's events, folded (they arrive on the engine's threads); ``summary`` describes its
    latest turn."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def __call__(self, e: ev.Event) -> None:
        with self._lock:
            self.apply(e)

    def summary(self, dialect: str, mode: str) -> str:
        with self._lock:
            return "\n".join(self._summary(dialect, mode) + [f"note: {note}" for note in self.notices])

    def _summary(self, dialect: str, mode: str) -> list[str]:
        turn = self.turn
        if turn is None:
            return [f"turn 0.000s · {mode} mode · {dialect} dialect"]
        t0 = turn.started

        def at(t: float | None) -> str:
            return "-" if t is None else f"+{t - t0:.3f}s"

        s = turn.stats
        total = (turn.ended - t0) if turn.ended is not None else 0.0
        head = f"turn {total:.3f}s · {mode} mode · {dialect} dialect"
        if s is not None:
            head += (f" · {s.generated} tokens generated at {s.tokens_per_second:.0f} tok/s"
                     f" · {s.injected} injected · context {s.n_past}/{s.n_ctx}")
        if turn.reason:
            head += f" · ended: {turn.reason}"
        lines = [head]
        if turn.traps:
            lines.append(f"waited at {len(turn.traps)} trap(s) for {turn.waited:.3f}s in all")
        rows = _rows(turn)
        if rows:
            lines.append("calls:")
            width = min(48, max(len(r.expr) for r in rows))
            for r in rows:
                took = f"{r.took:.3f}s" if r.took is not None else ""
                expr = r.expr if len(r.expr) <= width else r.expr[:width - 1] + "…"
                line = (f"  {r.call_id:<6} {expr:<{width}}  detected {at(r.detected)}"
                        f"  started {at(r.started)}  {r.outcome} {at(r.ended)} {took}")
                if r.detail:
                    line += f"  [{r.detail[:80]}]"
                lines.append(line.rstrip())
        mid = [i for i in turn.injections if turn.answering and i.t >= turn.first_token]
        if mid:
            lines.append("interrupts entered:")
            for inj in mid:
                lines.append(f"  {at(inj.t)}  {', '.join(inj.sources)}  ({inj.n_tokens} tokens at "
                             f"position {inj.position}, {inj.latency * 1000:.1f} ms after queueing)")
        return lines


class _Row(NamedTuple):
    call_id: str
    expr: str
    detected: float | None
    started: float | None
    outcome: str
    ended: float | None
    took: float | None
    detail: str


def _rows(turn: TurnState) -> list[_Row]:
    """The turn's calls and refused calls, in the order they were written."""
    rows = [(c.detected or 0.0, _Row(c.call_id, c.expr, c.detected, c.started,
                                     c.outcome, c.ended, c.took,
                                     c.detail if c.state == "failed" else ""))
            for c in turn.calls]
    rows += [(r.t, _Row(r.call_id, r.raw, None, None, "rejected", r.t, None, r.reason)) for r in turn.rejected]
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


class Printer:
    """Writes to standard output from the engine's threads. A reader that goes away (``| head``) ends
    the writing quietly: ``closed`` is set and ``on_closed`` called, once."""

    def __init__(self, out: TextIO = sys.stdout, on_closed=lambda: None) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.closed = False
        self.on_closed = on_closed

    def write(self, text: str) -> None:
        text = ev.LONE_SURROGATE.sub("\ufffd", text)  # an undecodable byte the model or a tool passed on
        with self.lock:
            if self.closed:
                return
            try:
                self.out.write(text)
                self.out.flush()
            except BrokenPipeError:
                self.closed = True
            else:
                return
        self.on_closed()


class AnswerPrinter(Printer):
    """Streams the visible answer text as it is generated."""

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.TokenGenerated) and e.text:
            self.write(e.text)
        elif isinstance(e, ev.TurnEnded):
            self.write("\n")


class JsonPrinter(Printer):
    """Every event, one JSON object per line."""

    def __call__(self, e: ev.Event) -> None:
        self.write(e.to_json() + "\n")
