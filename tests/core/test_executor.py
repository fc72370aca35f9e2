"""The executor on its own asyncio loop: each call gets exactly one interrupt, results flow into the
calls that name them, and cancelling, confirming and failing end a call as they should."""

import asyncio
import threading

import pytest

from asynclm.core import events as ev
from asynclm.core.cml import parse_call
from asynclm.core.executor import Call, Executor
from asynclm.core.interrupts import InterruptQueue
from asynclm.core.ledger import CallLedger
from asynclm.tools.registry import Registry


class Run:
    """An executor over a few tools, its queue, and the events it emitted."""

    def __init__(self, payload_limit: int = 2000) -> None:
        self.registry = Registry()
        self.gate = threading.Event()  # what ``held`` waits for
        reg = self.registry

        @reg.tool()
        def double(n: int) -> int:
            """Twice n."""
            return 2 * n

        @reg.tool()
        async def held(n: int) -> int:
            """Returns n once the test opens the gate."""
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
            return n

        @reg.tool()
        def fails() -> str:
            """Always raises."""
            raise ValueError("no luck")

        @reg.tool()
        def text(size: int) -> str:
            """A long text."""
            return "x" * size

        reg.add(lambda: "gone", name="delete_all", dangerous=True, description="Deletes everything.")
        self.events: list[ev.Event] = []
        self._heard = threading.Condition()
        self.queue = InterruptQueue()
        self.ledger = CallLedger(reg)
        self.executor = Executor(reg, self.queue, self.emit, self.ledger, payload_limit=payload_limit)
        self.executor.start()

    def emit(self, e: ev.Event) -> None:
        with self._heard:
            self.events.append(e)
            self._heard.notify_all()

    def event(self, kind: type, call_id: str) -> ev.Event:
        """Wait for the executor's first ``kind`` event about ``call_id``."""
        def found():
            return next((e for e in self.events if isinstance(e, kind) and e.call_id == call_id), None)

        with self._heard:
            assert self._heard.wait_for(found, timeout=30)
            return found()

    def submit(self, call_id: str, expr: str) -> None:
        self.ledger.ids.add(call_id)
        self.executor.submit(Call(call_id, parse_call(expr)))

    def answers(self, *ids: str) -> dict[str, tuple[str, str]]:
        """Wait until every one of ``ids`` has its interrupt: {id: (kind, payload)}."""
        assert self.queue.wait(lambda items: set(ids) <= {i.source for i in items}, lambda: False, timeout=30)
        return {i.source: (i.kind, i.payload) for i in self.queue.snapshot()}

    def close(self) -> None:
        self.gate.set()
        self.executor.close()


@pytest.fixture
def run():
    r = Run()
    yield r
    r.close()


def test_a_call_gets_one_result_interrupt_and_its_events(run):
    run.submit("a", "double(n=21)")
    assert run.answers("a") == {"a": ("result", "42")}
    kinds = [type(e).__name__ for e in run.events]
    assert kinds == ["CallStarted", "CallFinished", "InterruptQueued"]
    assert run.events[1].result == "42" and not run.executor.pending()


def test_a_dependent_call_waits_for_the_result_it_names_and_takes_it(run):
    run.submit("a", "held(n=5)")
    run.submit("b", "double(n=a)")
    waiting = run.event(ev.CallWaiting, "b")  # said while a is still held
    assert waiting.on == ("a",)
    run.gate.set()
    assert run.answers("a", "b") == {"a": ("result", "5"), "b": ("result", "10")}


def test_a_call_whose_dependency_failed_does_not_run(run):
    run.submit("a", "fails()")
    run.submit("b", "double(n=a)")
    answers = run.answers("a", "b")
    assert answers["a"] == ("error", "error: ValueError: no luck")
    assert answers["b"][0] == "error" and answers["b"][1].startswith("error: DependencyFailed: depends on a, which failed")
    assert not any(isinstance(e, ev.CallStarted) and e.call_id == "b" for e in run.events)


def test_a_cancelled_call_ends_cancelled_and_an_unknown_one_cannot_be(run):
    run.submit("a", "held(n=1)")
    run.event(ev.CallStarted, "a")
    assert run.executor.cancel("a") and not run.executor.cancel("zzz")
    assert run.answers("a") == {"a": ("cancelled", "cancelled")}
    assert any(isinstance(e, ev.CallCancelled) for e in run.events)


def test_a_dangerous_call_runs_only_when_the_user_allows_it(run):
    asked = []

    async def confirmer(call):
        asked.append(call.call_id)
        return call.call_id == "yes"

    run.executor.confirmer = confirmer
    run.submit("no", "delete_all()")
    run.submit("yes", "delete_all()")
    answers = run.answers("no", "yes")
    assert answers["no"] == ("error", "error: NotConfirmed: the user did not allow delete_all to run")
    assert answers["yes"] == ("result", "gone") and sorted(asked) == ["no", "yes"]


def test_bad_arguments_and_a_call_the_ledger_refuses_are_errors_with_one_message_each(run):
    run.submit("a", "double(n='many')")
    run.submit("b", "nothing_like_it()")
    answers = run.answers("a", "b")
    assert answers["a"][0] == "error" and "n" in answers["a"][1]
    assert answers["b"] == ("error", "error: UnknownTool: there is no tool named 'nothing_like_it'; "
                                     "the tools are: double, held, fails, text, delete_all")


def test_a_long_result_is_cut_for_the_model_and_kept_whole_in_the_event():
    run = Run(payload_limit=100)
    try:
        run.submit("a", "text(size=5000)")
        kind, payload = run.answers("a")["a"]
        finished = next(e for e in run.events if isinstance(e, ev.CallFinished))
        assert kind == "result" and len(finished.result) == 5000
        assert len(payload) < 200 and payload.startswith("x" * 50)
    finally:
        run.close()
