"""The headless front end: stream the answer to stdout, then a timing summary (or every event as JSON).

It consumes only engine events, like every front end.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from asynclm.core import events as ev


@dataclass
class _CallRow:
    call_id: str
    expr: str = ""
    detected: float | None = None
    started: float | None = None
    ended: float | None = None
    outcome: str = "pending"
    detail: str = ""


@dataclass
class TurnRecorder:
    """Collects what a summary needs from the events of a session."""

    t0: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    ended: float | None = None
    calls: dict[str, _CallRow] = field(default_factory=dict)
    injections: list[ev.InterruptInjected] = field(default_factory=list)
    traps: list[tuple[float, float]] = field(default_factory=list)
    stats: ev.Stats | None = None
    end: ev.TurnEnded | None = None
    session: ev.SessionStarted | None = None
    notices: list[str] = field(default_factory=list)
    _trap_start: float | None = None

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.SessionStarted):
            self.session = e
        elif isinstance(e, ev.TurnStarted):
            self.t0 = e.t
        elif isinstance(e, ev.TokenGenerated):
            if self.first_token is None:
                self.first_token = e.t
            self.last_token = e.t
        elif isinstance(e, ev.CallDetected):
            self.calls[e.call_id] = _CallRow(e.call_id, e.expr, detected=e.t)
        elif isinstance(e, ev.CallStarted):
            self._row(e.call_id).started = e.t
        elif isinstance(e, ev.CallFinished):
            row = self._row(e.call_id)
            row.ended, row.outcome = e.t, "done"
        elif isinstance(e, ev.CallFailed):
            row = self._row(e.call_id)
            row.ended, row.outcome, row.detail = e.t, "failed", e.error
        elif isinstance(e, ev.CallCancelled):
            row = self._row(e.call_id)
            row.ended, row.outcome = e.t, "cancelled"
        elif isinstance(e, ev.CallRejected):
            row = self._row(e.call_id or "?")
            row.expr, row.ended, row.outcome, row.detail = e.raw, e.t, "rejected", e.reason
        elif isinstance(e, ev.InterruptInjected):
            self.injections.append(e)
        elif isinstance(e, ev.TrapEntered):
            self._trap_start = e.t
        elif isinstance(e, ev.TrapLeft) and self._trap_start is not None:
            self.traps.append((self._trap_start, e.t))
            self._trap_start = None
        elif isinstance(e, ev.Stats):
            self.stats = e
        elif isinstance(e, ev.Notice):
            self.notices.append(e.message)
        elif isinstance(e, ev.TurnEnded):
            self.ended, self.end = e.t, e

    def _row(self, call_id: str) -> _CallRow:
        return self.calls.setdefault(call_id, _CallRow(call_id))

    def summary(self, dialect: str, mode: str) -> str:
        t0 = self.t0 or 0.0

        def at(t: float | None) -> str:
            return "-" if t is None else f"+{t - t0:.3f}s"

        lines = []
        s = self.stats
        total = (self.ended - t0) if self.ended is not None else 0.0
        head = f"turn {total:.3f}s · {mode} mode · {dialect} dialect"
        if s is not None:
            head += (f" · {s.generated} tokens generated at {s.tokens_per_second:.0f} tok/s"
                     f" · {s.injected} injected · context {s.n_past}/{s.n_ctx}")
        if self.end is not None:
            head += f" · ended: {self.end.reason}"
        lines.append(head)
        waited = sum(b - a for a, b in self.traps)
        if self.traps:
            lines.append(f"waited at {len(self.traps)} trap(s) for {waited:.3f}s in all")
        if self.calls:
            lines.append("calls:")
            width = min(48, max(len(r.expr) for r in self.calls.values()))
            for row in self.calls.values():
                took = (f"{row.ended - row.started:.3f}s" if row.ended is not None and row.started is not None
                        else "")
                expr = row.expr if len(row.expr) <= width else row.expr[:width - 1] + "…"
                line = (f"  {row.call_id:<6} {expr:<{width}}  detected {at(row.detected)}"
                        f"  started {at(row.started)}  {row.outcome} {at(row.ended)} {took}")
                if row.detail:
                    line += f"  [{row.detail[:80]}]"
                lines.append(line.rstrip())
        mid = [i for i in self.injections if self.first_token is not None and i.t >= self.first_token]
        if mid:
            lines.append("interrupts entered:")
            for inj in mid:
                lines.append(f"  {at(inj.t)}  {', '.join(inj.sources)}  ({inj.n_tokens} tokens at "
                             f"position {inj.position}, {inj.latency * 1000:.1f} ms after queueing)")
        for note in self.notices:
            lines.append(f"note: {note}")
        return "\n".join(lines)


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
