"""Events folded into the state of a session: its turns and their calls.

Every front end (the app, the headless summary, the demo recorder, the export, the evaluations) reads
what happened to a call or a turn from here, so what an event means is written once.
``SessionState.apply`` is not thread-safe: a front end applies events on one thread, or under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import events as ev

OUTCOMES: dict[type[ev.Event], str] = {
    ev.CallFinished: "done",
    ev.CallFailed: "failed",
    ev.CallCancelled: "cancelled",
}
ACTIVE = frozenset({"pending", "waiting", "confirm", "running"})


@dataclass
class CallState:
    """A call the engine accepted. ``state`` goes pending → (waiting | confirm) → running → done,
    failed or cancelled."""

    call_id: str
    name: str
    expr: str
    turn: int
    refs: tuple[str, ...] = ()
    detected: float | None = None
    started: float | None = None
    ended: float | None = None
    state: str = "pending"
    detail: str = ""  # the calls it waits on, or its error
    result: str = ""
    elapsed: float = 0.0  # seconds the tool ran, as its runner measured them
    after_user: bool = False  # written after a message the user typed mid-answer had entered

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def outcome(self) -> str:
        """"pending" until it ends, then how it ended."""
        return "pending" if self.active else self.state

    @property
    def took(self) -> float | None:
        """Seconds from start to end (None until both happened)."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


@dataclass
class RejectedCall:
    call_id: str
    raw: str
    reason: str
    t: float


@dataclass
class TurnState:
    turn: int
    text: str
    mode: str
    started: float
    first_token: float | None = None
    last_token: float | None = None
    ended: float | None = None
    reason: str = ""  # why it ended ("" while it runs)
    answer: str = ""  # the visible answer, once ended
    calls: list[CallState] = field(default_factory=list)
    rejected: list[RejectedCall] = field(default_factory=list)
    injections: list[ev.InterruptInjected] = field(default_factory=list)
    user_interrupts: list[tuple[float, str]] = field(default_factory=list)  # typed mid-answer
    results: list[tuple[float, str]] = field(default_factory=list)  # results that entered mid-answer
    traps: list[tuple[float, float | None]] = field(default_factory=list)  # (entered, left)
    stats: ev.Stats | None = None

    @property
    def answering(self) -> bool:
        """The model has written a token: interrupts from now on come mid-answer."""
        return self.first_token is not None

    @property
    def waited(self) -> float:
        return sum(left - entered for entered, left in self.traps if left is not None)


class SessionState:
    """Folds events, in order, into turns and calls. ``calls`` holds the current session's calls by
    id (a new session reuses ids); each turn keeps its own."""

    def __init__(self) -> None:
        self.session: ev.SessionStarted | None = None
        self.mode = "async"
        self.turns: list[TurnState] = []
        self.calls: dict[str, CallState] = {}
        self.notices: list[str] = []

    @property
    def turn(self) -> TurnState | None:
        """The latest turn."""
        return self.turns[-1] if self.turns else None

    def active_calls(self) -> list[CallState]:
        return [c for c in self.calls.values() if c.active]

    def apply(self, e: ev.Event) -> CallState | TurnState | None:
        """Fold one event in; returns the call or turn it changed, if any."""
        handler = _HANDLERS.get(type(e))
        return handler(self, e) if handler is not None else None

    # --- handlers -----------------------------------------------------------------------------

    def _session_started(self, e: ev.SessionStarted) -> None:
        self.session, self.mode = e, e.mode

    def _mode_changed(self, e: ev.ModeChanged) -> None:
        self.mode = e.mode

    def _turn_started(self, e: ev.TurnStarted) -> TurnState:
        turn = TurnState(e.turn, e.text, self.mode, e.t)
        self.turns.append(turn)
        return turn

    def _turn_ended(self, e: ev.TurnEnded) -> TurnState | None:
        turn = self.turn
        if turn is not None:
            turn.ended, turn.reason, turn.answer = e.t, e.reason, e.text
        return turn

    def _token(self, e: ev.TokenGenerated) -> None:
        turn = self.turn
        if turn is not None:
            if turn.first_token is None:
                turn.first_token = e.t
            turn.last_token = e.t

    def _stats(self, e: ev.Stats) -> None:
        if self.turn is not None:
            self.turn.stats = e

    def _trap_entered(self, e: ev.TrapEntered) -> None:
        if self.turn is not None:
            self.turn.traps.append((e.t, None))

    def _trap_left(self, e: ev.TrapLeft) -> None:
        turn = self.turn
        if turn is not None and turn.traps and turn.traps[-1][1] is None:
            turn.traps[-1] = (turn.traps[-1][0], e.t)

    def _notice(self, e: ev.Notice) -> None:
        self.notices.append(e.message)

    def _injected(self, e: ev.InterruptInjected) -> TurnState | None:
        turn = self.turn
        if turn is None:
            return None
        turn.injections.append(e)
        if turn.answering:
            for source, payload in e.said():
                if source == "user":
                    turn.user_interrupts.append((e.t, payload.strip()))
                elif source != "system":
                    turn.results.append((e.t, source))
        return turn

    def _detected(self, e: ev.CallDetected) -> CallState:
        turn = self.turn
        call = CallState(e.call_id, e.name, e.expr, turn.turn if turn else 0, tuple(e.refs), detected=e.t,
                         after_user=bool(turn and turn.user_interrupts))
        self.calls[e.call_id] = call
        if turn is not None:
            turn.calls.append(call)
        return call

    def _rejected(self, e: ev.CallRejected) -> None:
        if self.turn is not None:
            self.turn.rejected.append(RejectedCall(e.call_id or "?", e.raw, e.reason, e.t))

    def _waiting(self, e: ev.CallWaiting) -> CallState:
        return self._move(e, "waiting", detail=", ".join(e.on))

    def _confirming(self, e: ev.CallNeedsConfirmation) -> CallState:
        return self._move(e, "confirm")

    def _started(self, e: ev.CallStarted) -> CallState:
        call = self._move(e, "running")
        call.started = e.t
        return call

    def _ended(self, e: ev.CallFinished | ev.CallFailed | ev.CallCancelled) -> CallState:
        call = self._move(e, OUTCOMES[type(e)], detail=getattr(e, "error", ""))
        call.ended, call.elapsed = e.t, e.elapsed
        call.result = getattr(e, "result", "")
        return call

    def _move(self, e: ev.Event, state: str, detail: str = "") -> CallState:
        call = self.calls.get(e.call_id)
        if call is None:  # events that begin after its detection (part of a transcript)
            turn = self.turn
            call = self.calls[e.call_id] = CallState(e.call_id, getattr(e, "name", ""), "",
                                                     turn.turn if turn else 0)
            if turn is not None:
                turn.calls.append(call)
        call.state, call.detail = state, detail
        return call

_HANDLERS = {
    ev.SessionStarted: SessionState._session_started,
    ev.ModeChanged: SessionState._mode_changed,
    ev.TurnStarted: SessionState._turn_started,
    ev.TurnEnded: SessionState._turn_ended,
    ev.TokenGenerated: SessionState._token,
    ev.Stats: SessionState._stats,
    ev.TrapEntered: SessionState._trap_entered,
    ev.TrapLeft: SessionState._trap_left,
    ev.Notice: SessionState._notice,
    ev.InterruptInjected: SessionState._injected,
    ev.CallDetected: SessionState._detected,
    ev.CallRejected: SessionState._rejected,
    ev.CallWaiting: SessionState._waiting,
    ev.CallNeedsConfirmation: SessionState._confirming,
    ev.CallStarted: SessionState._started,
    ev.CallFinished: SessionState._ended,
    ev.CallFailed: SessionState._ended,
    ev.CallCancelled: SessionState._ended,
}
