"""Snapshots of the main screen: idle, answering with panes running, and stopped.

The app runs over a real engine on the tiny model; the turn's events are fed to it with fixed
timestamps and the app's clock is fixed, so elapsed times, interrupt markers and the timeline draw
the same every run. Update after a deliberate change of the screen with ``pytest --snapshot-update``
and look at the SVGs in ``__snapshots__``.
"""

from __future__ import annotations

import time

import pytest

from asynclm.core import events as ev
from asynclm.tui.widgets import PromptArea
from conftest import make_app

SIZE = (120, 40)
T0 = 1000.0  # the turn starts here on the fixed clock


class FixedClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def text_events(t: float, text: str) -> list[ev.Event]:
    return [ev.TokenGenerated(t=t + i * 0.01, token=0, text=word + " ", in_block=False)
            for i, word in enumerate(text.split())]


def answering(t0: float) -> list[ev.Event]:
    """A turn with three parallel calls: one done and its result in the answer, two still running."""
    out: list[ev.Event] = [ev.TurnStarted(t=t0, turn=1, text="Time a 3 s and a 5 s timer, and 23*47")]
    out += text_events(t0 + 0.05, "Starting all three now.")
    calls = [("c1", "wait", "wait(seconds=5)"), ("c2", "wait", "wait(seconds=3)"),
             ("c3", "calculator", "calculator(expression='23*47')")]
    for i, (cid, name, expr) in enumerate(calls):
        out.append(ev.CallDetected(t=t0 + 0.1 + 0.05 * i, call_id=cid, name=name, expr=expr))
        out.append(ev.CallStarted(t=t0 + 0.11 + 0.05 * i, call_id=cid, name=name))
    out.append(ev.CallFinished(t=t0 + 0.3, call_id="c3", name="calculator", result="1081", elapsed=0.04))
    out += text_events(t0 + 0.35, "While the timers run:")
    out.append(ev.InterruptInjected(t=t0 + 0.5, sources=("c3",), n_tokens=9, position=420,
                                    text="[INTR] c3 [HEAD] 1081 [END]", latency=0.002))
    out += text_events(t0 + 0.55, "23*47 is **1081**.")
    out.append(ev.TrapEntered(t=t0 + 0.7, reason="trap", waiting_on=("c1", "c2")))
    out.append(ev.Stats(t=t0 + 0.7, generated=24, injected=9, decode_seconds=0.6, tokens_per_second=40.0,
                        n_past=450, n_ctx=4096, pending=2))
    return out


def stopped(t0: float) -> list[ev.Event]:
    out = [ev.TrapLeft(t=t0 + 1.6, waited=0.9)]
    out += [ev.CallCancelled(t=t0 + 1.62, call_id=cid, name="wait", elapsed=1.5) for cid in ("c1", "c2")]
    out.append(ev.TurnEnded(t=t0 + 1.65, turn=1, reason="stopped",
                            text="Starting all three now. While the timers run: 23*47 is **1081**."))
    return out


async def settle(pilot, app) -> None:
    while app.engine is None:
        await pilot.pause(0.05)
    app.query_one("#prompt", PromptArea).cursor_blink = False
    await pilot.pause(0.3)


def feed(app, events) -> None:
    for event in events:
        app.bridge(event)


def test_idle_screen(snap_compare, tiny_model, tmp_path):
    clock = FixedClock()
    app = make_app(tiny_model, [], tmp_path, clock=clock, threads=1)

    async def run_before(pilot):
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("state, at, events, panes", [
    ("answering", T0 + 1.5, answering(T0), ["running", "running", "done"]),
    ("stopped", T0 + 2.0, answering(T0) + stopped(T0), ["cancelled", "cancelled", "done"]),
])
def test_screen_during_a_turn(snap_compare, tiny_model, tmp_path, state, at, events, panes):
    clock = FixedClock()
    app = make_app(tiny_model, [], tmp_path, clock=clock, threads=1)

    async def run_before(pilot):
        await settle(pilot, app)
        clock.now = at
        feed(app, events)
        deadline = time.monotonic() + 30
        while [p.state for p in app.panes.values()] != panes or app.bridge.queue:
            assert time.monotonic() < deadline, [p.state for p in app.panes.values()]
            await pilot.pause(0.05)
        await pilot.pause(0.3)  # one more chrome refresh (5 Hz) draws the final elapsed times

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
