"""The executor: every call is an asyncio task on the executor's own loop thread.

A call starts as soon as it is submitted (or, with dataflow references, as soon as every call it
references has returned, receiving their result values). Each tool has a timeout; a call can be
cancelled by id; a dangerous tool waits for the user's confirmation; concurrency is bounded. Every
outcome (result, error, cancellation) becomes an interrupt on the queue, timestamped, and an event.

No tool can stop the executor: whatever a tool raises, ``SystemExit`` and ``KeyboardInterrupt``
included, is an error result. A tool that outlives its timeout or its cancellation (an async tool
that swallows ``CancelledError``, a sync function stuck in a thread) is abandoned: its call ends at
once as timed out or cancelled, and whatever the tool does later is dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from . import events as ev
from .cml import CANCELLED_PAYLOAD, CallExpr, Ref, error_payload, render_payload, render_value
from .interrupts import Interrupt, InterruptQueue
from .ledger import CallLedger


class Tool(Protocol):
    name: str
    timeout: float | None
    dangerous: bool
    cancellable: bool

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Map the model's arguments onto the parameters, validated; raise ValueError/TypeError."""

    def invoke(self, arguments: dict[str, Any]) -> Awaitable[Any]: ...

    def observe(self, seconds: float) -> None:
        """Record an observed latency (for the LPT estimate)."""

    def takes_result(self, param: str, source: "Tool") -> bool:
        """Whether argument ``param`` could take the result of a call to ``source`` (a dataflow
        reference); True where it cannot be told."""


class Toolbox(Protocol):
    def get(self, name: str) -> Tool | None: ...

    def names(self) -> list[str]:
        """The tools' names, in the order they were added."""

    def describe(self) -> str:
        """The session's tool list as the model reads it."""

    def json_schema(self) -> list[dict[str, Any]]:
        """Each tool's name, description and parameters as a JSON schema (for a template's ``tools``)."""


@dataclass(frozen=True)
class Call:
    call_id: str
    expr: CallExpr

    @property
    def name(self) -> str:
        return self.expr.name


class CallFailure(Exception):
    """A failure with a type name and message chosen for the model (not a Python exception)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ToolStopped(Exception):
    """A ``BaseException`` (SystemExit, KeyboardInterrupt, GeneratorExit...) raised by a tool, carried
    as an ordinary exception so that it never reaches the event loop."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.kind = type(exc).__name__


async def _guarded(awaitable: Awaitable[Any]) -> Any:
    """The tool's value; SystemExit and KeyboardInterrupt, which asyncio would raise out of the event
    loop, become ToolStopped. (GeneratorExit is left alone: it is also how a coroutine is closed.)"""
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        raise ToolStopped(exc) from None


class _Outcome:
    __slots__ = ("ok", "value", "detail")

    def __init__(self, ok: bool, value: Any = None, detail: str = "") -> None:
        self.ok, self.value, self.detail = ok, value, detail


Confirmer = Callable[[Call], Awaitable[bool]]


class Executor:
    CLOSE_GRACE = 0.25  # seconds running calls get to end, once cancelled, when the executor closes

    def __init__(
        self,
        tools: Toolbox,
        queue: InterruptQueue,
        emit: Callable[[ev.Event], None],
        ledger: CallLedger,
        *,
        max_concurrency: int = 8,
        payload_limit: int = 2000,
        default_timeout: float = 60.0,
    ) -> None:
        self.tools = tools
        self.queue = queue
        self.emit = emit
        self.ledger = ledger
        self.payload_limit = payload_limit
        self.default_timeout = default_timeout
        self.max_concurrency = max_concurrency
        self.confirmer: Confirmer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="asynclm-executor", daemon=True)
        self._ready = threading.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._outcomes: dict[str, asyncio.Future[_Outcome]] = {}
        self._confirmations: dict[str, asyncio.Future[bool]] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._semaphore: asyncio.Semaphore | None = None
        self._abandoned: set[asyncio.Task[Any]] = set()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
            self._ready.wait()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(self._unhandled)
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop) - self._abandoned  # those already left behind stay so
        for task in pending:
            task.cancel()
        if pending:  # a tool that ignores its cancellation is not waited for
            self._loop.run_until_complete(asyncio.wait(pending, timeout=self.CLOSE_GRACE))
        self._abandoned.update(t for t in pending if not t.done())
        self._loop.close()

    def _unhandled(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What an abandoned tool does later is dropped; anything else is reported as asyncio would."""
        task = context.get("task") or context.get("future")
        if task in self._abandoned or isinstance(context.get("exception"), ToolStopped):
            return
        loop.default_exception_handler(context)

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        elif not self._loop.is_closed():  # never started
            self._loop.close()

    # --- thread-safe entry points -------------------------------------------------------------

    def submit(self, call: Call) -> None:
        with self._lock:
            self._running.add(call.call_id)
        self._loop.call_soon_threadsafe(self._spawn, call)

    def cancel(self, call_id: str) -> bool:
        """Cancel one call; False if it is not pending."""
        with self._lock:
            if call_id not in self._running:
                return False
        self._loop.call_soon_threadsafe(self._cancel, call_id)
        return True

    def cancel_all(self) -> list[str]:
        with self._lock:
            ids = sorted(self._running)
        for call_id in ids:
            self._loop.call_soon_threadsafe(self._cancel, call_id)
        return ids

    def confirm(self, call_id: str, allowed: bool) -> None:
        def answer() -> None:
            fut = self._confirmations.get(call_id)
            if fut is not None and not fut.done():
                fut.set_result(allowed)

        self._loop.call_soon_threadsafe(answer)

    def pending(self) -> set[str]:
        with self._lock:
            return set(self._running)

    # --- on the loop --------------------------------------------------------------------------

    def _spawn(self, call: Call) -> None:
        self._outcomes[call.call_id] = self._loop.create_future()
        self._tasks[call.call_id] = self._loop.create_task(self._run(call))

    def _cancel(self, call_id: str) -> None:
        task = self._tasks.get(call_id)
        if task is not None and not task.done():
            task.cancel()

    async def _run(self, call: Call) -> None:
        start = time.monotonic()
        tool = self.tools.get(call.name)
        outcome: _Outcome
        try:
            if (why := self.ledger.why_not(call.expr, call.call_id)) is not None:
                raise CallFailure(*why)
            assert tool is not None  # the ledger refuses a call of a tool that does not exist
            args, kwargs = await self._resolve(call)
            arguments = tool.bind(args, kwargs)
            if tool.dangerous and not await self._confirmed(call):
                raise CallFailure("NotConfirmed", f"the user did not allow {call.name} to run")
            assert self._semaphore is not None
            async with self._semaphore:
                started = time.monotonic()
                self.emit(ev.CallStarted(call_id=call.call_id, name=call.name))
                timeout = tool.timeout if tool.timeout is not None else self.default_timeout
                value = await self._invoke(tool, arguments, timeout)
                tool.observe(time.monotonic() - started)
            outcome = _Outcome(True, value)
            full = render_value(value)
            self.emit(ev.CallFinished(call_id=call.call_id, name=call.name, result=full,
                                      elapsed=time.monotonic() - start))
            self._answer(call, Interrupt(call.call_id, render_payload(full, self.payload_limit), "result"))
        except asyncio.CancelledError:
            outcome = _Outcome(False, detail="was cancelled")
            self.emit(ev.CallCancelled(call_id=call.call_id, name=call.name,
                                       elapsed=time.monotonic() - start))
            self._answer(call, Interrupt(call.call_id, CANCELLED_PAYLOAD, "cancelled"))
        except Exception as exc:  # a tool's own failure is data for the model, never a crash
            kind, message = (exc.kind, str(exc)) if isinstance(exc, (CallFailure, ToolStopped)) else (
                type(exc).__name__, str(exc))
            payload = error_payload(kind, message)
            outcome = _Outcome(False, detail=f"failed ({payload})")
            self.emit(ev.CallFailed(call_id=call.call_id, name=call.name, error=payload,
                                    elapsed=time.monotonic() - start))
            self._answer(call, Interrupt(call.call_id, render_payload(payload, self.payload_limit), "error"))
        finally:
            self._tasks.pop(call.call_id, None)
        fut = self._outcomes[call.call_id]
        if not fut.done():
            fut.set_result(outcome)

    async def _invoke(self, tool: Tool, arguments: dict[str, Any], timeout: float) -> Any:
        """The tool's value, or its exception; at the timeout, or when this call is cancelled, the
        tool's task is cancelled and left behind, never waited for."""
        task = self._loop.create_task(_guarded(tool.invoke(arguments)))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise CallFailure("TimeoutError", f"no result within {timeout:g}s")
        exc = task.exception()
        if exc is not None:
            raise exc if isinstance(exc, Exception) else ToolStopped(exc)
        return task.result()

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not report it
        self._abandoned.discard(task)

    def _answer(self, call: Call, interrupt: Interrupt) -> None:
        # Queue before marking the call done, so "nothing running" implies "its interrupt is queued".
        self.queue.put(interrupt)
        self.emit(ev.InterruptQueued(source=interrupt.source, kind=interrupt.kind,
                                     payload=interrupt.payload))
        with self._lock:
            self._running.discard(call.call_id)
        self.queue.wake()

    async def _resolve(self, call: Call) -> tuple[tuple[Any, ...], dict[str, Any]]:
        refs = call.expr.refs
        if not refs:
            return call.expr.args, call.expr.kwargs
        unknown = [r for r in refs if r not in self._outcomes]
        if unknown:  # written, but never given to this executor
            raise CallFailure("UnknownReference", f"{unknown[0]} is not the id of an earlier call")
        waiting = [r for r in refs if not self._outcomes[r].done()]
        if waiting:
            self.emit(ev.CallWaiting(call_id=call.call_id, on=tuple(waiting)))
        values: dict[str, Any] = {}
        for ref in refs:
            outcome = await asyncio.shield(self._outcomes[ref])
            if not outcome.ok:
                raise CallFailure("DependencyFailed", f"depends on {ref}, which {outcome.detail}")
            values[ref] = outcome.value

        def sub(v: Any) -> Any:
            return values[v.call_id] if isinstance(v, Ref) else v

        return tuple(sub(v) for v in call.expr.args), {k: sub(v) for k, v in call.expr.kwargs.items()}

    async def _confirmed(self, call: Call) -> bool:
        if self.confirmer is not None:
            return await self.confirmer(call)
        fut: asyncio.Future[bool] = self._loop.create_future()
        self._confirmations[call.call_id] = fut
        self.emit(ev.CallNeedsConfirmation(call_id=call.call_id, name=call.name, expr=call.expr.render()))
        try:
            return await fut
        finally:
            self._confirmations.pop(call.call_id, None)
