"""The engine: a token-by-token decode loop on its own thread, with interrupts at safe points.

One iteration: inject whatever interrupts are queued (if this is a safe point), read the logits, let
the policy choose a token under the monitor's mask, feed the monitor, hand any finished call to the
executor (it starts before its ``[END]`` is even evaluated), evaluate the token, and trap if the
model asked to. Interrupts are appended to the KV cache; the prefix is never re-evaluated.

Modes, as the CML spec defines them:
- ``async``: calls start at their ``[END]``; decoding waits only at a trap.
- ``sync``: decoding waits at each call's ``[END]`` until its result has been injected.
- ``sync-parallel``: calls are collected; at a trap or end of sequence they run together and decoding
  resumes when all have returned.

Thread-safe entry points: ``send``, ``interrupt``, ``stop``, ``cancel``, ``confirm``, ``set_mode``,
``new_session``, ``close``. Everything the engine does is reported as events (``core.events``).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from . import events as ev
from . import notes
from .cml import (
    BlockState, CallClosed, Malformed, Marker, TrapClosed, Text, CallSyntaxError, error_payload,
    is_call_id, parse_call, tool_estimates, cut, uncut, CANCELLED_PAYLOAD,
)
from .backend import Backend
from .dialect import Dialect, select_dialect
from .drafting import WITHHELD, Answer, Drafter
from .executor import Call, Executor, Toolbox
from .interrupts import Interrupt, InterruptQueue
from .ledger import CallLedger
from .llama import ContextFull
from .monitor import Monitor
from .policy import Policy, SampledPolicy, ScriptViolation
from .promptcache import PromptCache
from .quotation import Quotations
from .replay import read_recording
from .sampling import Sampler, SamplingSettings
from .steering import LoopBreaker, Steering, Vocabulary

log = logging.getLogger("asynclm.engine")


class Mode(str, enum.Enum):
    ASYNC = "async"
    SYNC = "sync"
    SYNC_PARALLEL = "sync-parallel"

    @classmethod
    def parse(cls, text: str) -> "Mode":
        try:
            return cls(text)
        except ValueError:
            raise ValueError(
                f"unknown mode {text!r}; choose one of: {', '.join(m.value for m in cls)}"
            ) from None


@dataclass(frozen=True)
class EngineConfig:
    mode: Mode = Mode.ASYNC
    payload_limit: int = 1000  # tokens of one result the model reads; fewer where the free context is less
    max_concurrency: int = 8
    max_block_tokens: int = 1024
    max_turn_tokens: int = 4096
    default_timeout: float = 60.0
    copy_bias: float = 0.0  # logits taken from unseen words in argument values (0: off; core.copying)
    copy_text: bool = True  # with copy_bias: steer the answer's visibly copied words too
    stop_settle: float = 2.0  # seconds a stopped answer waits for its calls to report their cancellation
    typed_references: bool = True  # a dataflow reference names only a call whose result fits (core.references)
    complete_calls: bool = False  # write the calls the model leaves out or would repeat (core.completion)
    longest_first: bool = True  # with complete_calls, in async mode: a call with a longer estimate first
    break_loops: bool = False  # the answer's text may not start a piece a fourth time in a row (``starts_loop``)
    turn_seconds: float = 300.0  # wall time a turn may take, waits included (0: no limit)
    idle_traps: int = 3  # traps with nothing pending that decoding goes on past; the next one ends the turn
    refused_calls: int = 5  # calls in a row that could not run (no text or started call between) end the turn


REPEATS = 8  # a piece of text written this many times in a row is a loop (``repeating``)
ANSWER_ROOM = 256  # tokens results leave free for the answer to go on (an eighth of a smaller context)
CHARS_PER_TOKEN = 16  # more than any token's length: a result is pre-cut to payload_limit times this
# answers the engine or the user ended before the model did; the context closes them as finished ones
CUT_SHORT = ("stopped", "repetition", "length", "timeout", "idle_trap", "refused_calls")
SAME_CHARACTER = 200  # one character this many times in a row is a loop: longer than any rule or number
RECENT_CHARS = 400  # how much of the model's latest text the loop check and the copy bias look at
DRAFTS_PER_TURN = 32  # enough for every call a request names; a bound on the time drafts can take


def repeating(text: str, repeats: int = REPEATS) -> str:
    """The piece of 2-40 characters that ``text`` ends with ``repeats`` times in a row when it holds a
    letter (``walse walse walse ...``: a small model's loop), or twice as many times when it holds
    digits and no letter (``646464...``: longer than any number a float prints), or "". One character
    over and over (``-----``, the zeros of ``10**40``) is a loop only from ``SAME_CHARACTER`` times on
    (``////...`` ran an answer to the end of the context)."""
    if len(text) >= SAME_CHARACTER and text[-SAME_CHARACTER:] == text[-1] * SAME_CHARACTER:
        return text[-1]
    for size in range(2, min(40, len(text) // repeats) + 1):
        unit = text[-size:]
        if text[-2 * size:-size] != unit:
            continue  # not even twice in a row: most sizes, on every token, decided by one comparison
        if any(ch.isalpha() for ch in unit):
            times = repeats
        elif any(ch.isdigit() for ch in unit) and len(set(unit)) > 1:
            times = 2 * repeats
        else:
            continue
        if text.endswith(unit * times):
            return unit
    return ""


class Engine:
    def __init__(
        self,
        backend: Backend,
        tools: Toolbox,
        *,
        policy: Policy | None = None,
        dialect: Dialect | str | None = None,
        config: EngineConfig = EngineConfig(),
        sampling: SamplingSettings | None = None,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        self.backend = backend
        self.tools = tools
        self.config = config
        self.prompt_cache = prompt_cache  # saved openings (``core.promptcache``); None: evaluate every time
        self.mode = config.mode
        self.dialect = dialect if isinstance(dialect, Dialect) else select_dialect(backend, dialect)
        self.policy: Policy = policy or SampledPolicy(Sampler(sampling or SamplingSettings()))
        self.queue = InterruptQueue()
        self._sinks: list[Callable[[ev.Event], None]] = []
        # Session state, touched only by the decode thread (or while it is idle).
        self.ledger = CallLedger(tools)
        self.answer = Answer()  # the answer being written, as the completion check reads it
        self._heard: list[str] = []  # the user's messages and the results, as they entered
        vocab = Vocabulary(backend)
        self.steering = Steering(vocab, self.dialect, tools, self.ledger, copy_bias=config.copy_bias,
                                 copy_text=config.copy_text, typed_references=config.typed_references)
        self.loop_breaker = LoopBreaker(vocab, self._heard, lambda logits, banned: self.policy.choose(logits, banned))
        self.drafter = Drafter(self.backend, self.dialect, tools, self.ledger, self.answer, self.steering.apply,
                               self._emit,
                               is_async=lambda: self.mode is Mode.ASYNC, max_block_tokens=config.max_block_tokens,
                               longest_first=config.longest_first, stopped=lambda: self._stop.is_set())
        self._call_opener = self.drafter.opener if config.complete_calls else None  # the check drafts from it
        self.executor = Executor(tools, self.queue, self._emit, self.ledger,
                                 max_concurrency=config.max_concurrency,
                                 payload_limit=config.payload_limit * CHARS_PER_TOKEN,
                                 default_timeout=config.default_timeout)
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="asynclm-decode", daemon=True)
        self._turn_cond = threading.Condition()
        self._turns_ended = 0
        self._in_turn = False
        self.turn = 0
        self._outstanding: set[str] = set()
        self._collected: list[Call] = []
        self._quotes = Quotations()  # the same, for telling a call quoted from them (``core.quotation``)
        self._prefix: list[int] = []
        self._monitor: Monitor | None = None
        self._restore: tuple[list[int], str] | None = None
        self._lost: list[tuple[str, str]] = []
        # Per answer, for the completion check: the user's messages and the calls written.
        self._ran: dict[str, str] = {}  # this answer's calls that started: the call as rendered -> its id
        self._renaming = False  # a used id was refused once: from now on such a call runs under a fresh id
        self._refused_in_row = 0  # calls refused since the answer's last text or started call

    # --- events -------------------------------------------------------------------------------

    def subscribe(self, sink: Callable[[ev.Event], None]) -> None:
        self._sinks.append(sink)

    def unsubscribe(self, sink: Callable[[ev.Event], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def _emit(self, event: ev.Event) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:  # a front end's bug must never stop decoding
                log.exception("event subscriber failed on %s", event.type)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "Engine":
        self.executor.start()
        if self._restore is None:
            self._begin_session()
        self._thread.start()
        return self

    def resume(self, events: list[ev.Event], path: str = "") -> None:
        """Continue a recorded session: call before ``start``. The decode thread re-evaluates the
        recorded context (every token, in order) before serving, so the model sees what it saw."""
        recorded = read_recording(events)
        session = recorded.session
        if session.model != self.backend.info.name or session.dialect != self.dialect.name:
            raise ValueError(
                f"the session was recorded with model {session.model!r} ({session.dialect} dialect), "
                f"not {self.backend.info.name!r} ({self.dialect.name} dialect)")
        for kind, value in recorded.learned:
            if kind == "id":
                self.ledger.ids.add(value)
                self.steering.learn_id(value)
            else:
                self._hear(value)
        self.ledger.producers.update(recorded.producers)
        self.ledger.failed.update(recorded.failed)
        for interrupt in recorded.pending:
            self.queue.put(interrupt)
        self._lost = recorded.lost
        self.ledger.failed.update(call_id for call_id, _ in recorded.lost)
        self.turn = recorded.turn
        # A finished answer is followed by the end-of-sequence token, evaluated when the next turn opens.
        self._prefix = self.dialect.turn_separator() if recorded.last_end in ("done", *CUT_SHORT) else []
        self.answer.tools_text = session.tools
        self._restore = (recorded.tokens, path)

    def _hear(self, text: str) -> None:
        """A user message or a result entered the context: the loop breaker, the quotation check and
        the copy bias know it from now on."""
        self._heard.append(text)
        self._quotes.add(text)
        self.steering.learn(text)

    def _begin_session(self) -> None:
        self.steering.reset()
        self.ledger.clear()
        self._outstanding.clear()
        self._collected.clear()
        self._heard.clear()
        self._quotes.clear()
        self._renaming = False
        self._prefix = self.dialect.session_start()
        tools_text = self.answer.tools_text = self.tools.describe()
        self.dialect.set_tools(self.tools.json_schema())
        self._emit(ev.SessionStarted(model=self.backend.info.name, dialect=self.dialect.name,
                                     mode=self.mode.value, n_ctx=self.backend.n_ctx, tools=tools_text))
        self._queue(Interrupt("system", tools_text, "system"))
        notice = self.dialect.notice()
        if notice:
            self._emit(ev.Notice(level="info", message=notice))
        if self.config.complete_calls and self._call_opener is None:
            self._emit(ev.Notice(level="warning", message=(
                f"The completion check needs a call marker of one token, which the {self.dialect.name} dialect "
                "does not have: it is off.")))

    def stop_and_wait(self, timeout: float = 5.0) -> None:
        """Stop the running answer, if any, and wait until its turn has ended (and been reported)."""
        before = self._turns_ended
        if self.stop():
            self.wait_turn(before, timeout)

    def close(self) -> None:
        self._stop.set()
        self._closed.set()
        self.queue.wake()
        if self._thread.is_alive():
            self._thread.join(10)
            if self._thread.is_alive():  # the caller frees the backend next: never while it is in use
                log.warning("the decode thread is still running after 10 s; waiting for it")
                self._thread.join()
        self.executor.cancel_all()
        self.executor.close()

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- thread-safe entry points -------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._in_turn

    def send(self, text: str) -> None:
        """What the user typed: starts a turn when idle, or enters the running answer."""
        self.interrupt("user", text)

    def interrupt(self, source: str, text: str) -> None:
        kind = source if source in ("user", "system") else "result"
        self._queue(Interrupt(source, text, kind))

    def _queue(self, interrupt: Interrupt, front: bool = False) -> None:
        if front:
            self.queue.put_front([interrupt])
        else:
            self.queue.put(interrupt)
        self._emit(ev.InterruptQueued(source=interrupt.source, kind=interrupt.kind,
                                      payload=interrupt.payload))

    def stop(self) -> bool:
        """End the answer at the next token boundary; pending calls are cancelled."""
        if not self._in_turn:
            return False
        self._stop.set()
        self.queue.wake()
        return True

    def cancel(self, call_id: str) -> bool:
        return self.executor.cancel(call_id)

    def confirm(self, call_id: str, allowed: bool) -> None:
        self.executor.confirm(call_id, allowed)

    def set_mode(self, mode: Mode | str) -> None:
        self.mode = Mode.parse(mode) if isinstance(mode, str) else mode
        self._emit(ev.ModeChanged(mode=self.mode.value))

    def wait_turn(self, after: int, timeout: float | None = None) -> bool:
        """Block until more than ``after`` turns have ended (see ``turns_ended``)."""
        with self._turn_cond:
            return self._turn_cond.wait_for(lambda: self._turns_ended > after, timeout)

    @property
    def turns_ended(self) -> int:
        return self._turns_ended

    def ask(self, text: str, timeout: float | None = None) -> bool:
        """Send ``text`` and wait until the turn it belongs to has ended."""
        before = self._turns_ended
        self.send(text)
        return self.wait_turn(before, timeout)

    def new_session(self, timeout: float = 10.0) -> None:
        """Stop whatever runs, forget the context and start over with the same model and tools."""
        before = self._turns_ended
        if self.stop():
            self.wait_turn(before, timeout)
        self.executor.cancel_all()
        self.queue.drain()
        self.backend.reset()
        self._begin_session()

    # --- the decode thread --------------------------------------------------------------------

    def _serve(self) -> None:
        def user_waiting(items: list[Interrupt]) -> bool:
            return any(i.source == "user" for i in items)

        if self._restore is not None:
            self._replay(*self._restore)

        while not self._closed.is_set():
            if not self.queue.wait(user_waiting, self._closed.is_set):
                break
            try:
                self._run_turn()
            except Exception:  # keep the session alive whatever happened in one turn
                log.exception("turn failed")

    def _replay(self, tokens: list[int], path: str) -> None:
        try:
            self.backend.eval(tokens)  # on the decode thread, like every evaluation
        except ContextFull:
            self._emit(ev.Notice(level="error", message=notes.session_too_long(
                path, len(tokens), self.backend.n_ctx, self.backend.info.n_ctx_train)))
            self.backend.reset()
            self._begin_session()
            return
        self._emit(ev.SessionResumed(path=path, tokens=len(tokens), turns=self.turn))
        for call_id, name in self._lost:  # running when the session stopped: the model hears what became of it
            self._emit(ev.CallFailed(call_id=call_id, name=name, error=notes.LOST, elapsed=0.0))
            self.queue.put(Interrupt(call_id, notes.LOST, "error"))
            self._emit(ev.InterruptQueued(source=call_id, kind="error", payload=notes.LOST))
        self._lost = []

    def _pending(self) -> bool:
        return bool(self._outstanding or self._collected or len(self.queue))

    def _run_turn(self) -> None:
        self.turn += 1
        self._stop.clear()
        first_user = next((i.payload for i in self.queue.snapshot() if i.source == "user"), "")
        with self._turn_cond:
            self._in_turn = True
        self._emit(ev.TurnStarted(turn=self.turn, text=first_user))
        self._refresh_tool_list()
        monitor = self._monitor = self.dialect.new_monitor(self.config.max_block_tokens,
                                                               taken=self.ledger.taken,
                                                               quoted=self._quotes.quotes)
        backend, policy = self.backend, self.policy
        answer: list[str] = []
        recent, injected = "", 0  # the end of the model's text since the last interrupt
        generated = 0
        self._injected = 0
        self.answer.asked, self.answer.made, self._ran = [], [], {}
        self.loop_breaker.reset()
        idle_traps, self._refused_in_row = 0, 0
        deadline = time.monotonic() + self.config.turn_seconds if self.config.turn_seconds > 0 else None
        after_call, drafts, forced, in_kv = False, 0, deque(), 0  # the completion check (``core.drafting``)
        decode_seconds = 0.0
        reason = "done"
        try:
            prefix, self._prefix = self._prefix, []
            self._inject(prefix, notify=False, opening=True)
            policy.start_turn(self.turn, self.dialect)
            while True:
                if self._stop.is_set():
                    reason = "stopped"
                    break
                if len(self.queue) and monitor.safe:
                    self._inject()
                if generated >= self.config.max_turn_tokens:
                    reason = "length"
                    self._emit(ev.Notice(level="warning", message=(
                        f"The answer reached {generated} tokens and was ended there.")))
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    reason = "timeout"
                    self._emit(ev.Notice(level="warning", message=(
                        f"The answer took longer than {self.config.turn_seconds:g}s and was ended there.")))
                    break
                if injected != self._injected:  # neither a word nor a loop runs on across an interrupt
                    injected, recent = self._injected, ""
                t0, stuck = time.perf_counter(), ""
                if forced:
                    token = forced.popleft()
                else:
                    logits, banned = self.steering.apply(backend.logits(), monitor, recent), monitor.banned()
                    token = policy.choose(logits, banned)
                    if self.config.break_loops and monitor.state is BlockState.OUTSIDE:
                        token, stuck = self.loop_breaker.check(logits, banned, token, recent)
                    opens = self._call_opener is not None and token == self._call_opener
                    if (after_call or opens) and drafts < DRAFTS_PER_TURN:
                        drafts += 1
                        logits = logits.copy() if opens else logits  # drafts overwrite the backend's
                        drafted = self.drafter.complete(opens)
                        if drafted is WITHHELD:  # a call that could not run: the model's next choice
                            token = policy.choose(logits, np.append(banned, token))
                        elif drafted is not None:
                            (token, *rest), in_kv = drafted
                            forced = deque(rest)
                    after_call = False
                if backend.is_eog(token):
                    if self._pending():
                        decode_seconds += time.perf_counter() - t0
                        self._trap("end-of-sequence", deadline)
                        continue
                    self._prefix = self.dialect.after_answer(token)
                    break
                items = monitor.feed(token)
                policy.accept(token)
                text, trap, sync_ids = "", False, []
                for item in items:
                    if isinstance(item, Text):
                        text += item.text
                    elif isinstance(item, CallClosed):
                        after_call = self._call_opener is not None
                        started = self._handle_call(item)
                        if started and self.mode is Mode.SYNC:
                            sync_ids.append(started)
                    elif isinstance(item, TrapClosed):
                        trap = True
                    elif isinstance(item, Malformed):
                        self._malformed(item)
                if in_kv:  # a draft's token, already in the context
                    in_kv -= 1
                else:
                    backend.eval([token])
                generated += 1
                took = time.perf_counter() - t0
                decode_seconds += took
                if text:
                    answer.append(text)
                    recent = (recent + text)[-RECENT_CHARS:]
                    if text.strip():
                        self._refused_in_row = 0
                if self._refused_in_row >= self.config.refused_calls > 0:
                    reason = "refused_calls"
                    self._emit(ev.Notice(level="warning", message=(
                        f"The model wrote {self._refused_in_row} calls in a row that could not run; "
                        "the answer was ended there.")))
                    break
                self._emit(ev.TokenGenerated(token=token, text=text, in_block=monitor.in_block, seconds=took))
                if sync_ids:
                    self._wait_for(sync_ids, "sync", deadline)
                if trap and not self._pending():  # it would wait for nothing: go on, or end the turn
                    idle_traps += 1
                    if idle_traps > self.config.idle_traps:
                        reason = "idle_trap"
                        self._emit(ev.Notice(level="warning", message=(
                            f"The model waited {idle_traps} times with no call running and no message "
                            "coming; the answer was ended there.")))
                        break
                    if self.dialect.notes_idle_traps:
                        self._queue(Interrupt("system", notes.NOTHING_PENDING, "system"))
                        self._trap("trap", deadline)
                elif trap:
                    self._trap("trap", deadline)
                elif text and monitor.safe and (unit := stuck or repeating(recent)):
                    if not self._pending():
                        reason = "repetition"
                        self._emit(ev.Notice(level="warning", message=(
                            f"The model was repeating itself ({((unit * 3).strip() or unit * 3)!r} ...); "
                            "the answer was ended there.")))
                        break
                    self._trap("repetition", deadline)  # what it waits for may break the loop
        except ContextFull as exc:
            reason = "context_full"
            self._context_full(exc)
        except ScriptViolation as exc:  # forced decoding asked for what the protocol bans: said, not logged
            reason = "error"
            self._emit(ev.Notice(level="error", message=f"The script broke the call protocol: {exc}."))
        except Exception as exc:
            reason = "error"
            log.exception("decode loop failed")
            self._emit(ev.Notice(level="error", message=f"The answer failed: {type(exc).__name__}: {exc}"))
        finally:
            if in_kv:  # a draft's tokens the answer did not get to: out of the context, as never written
                backend.truncate(backend.n_past - in_kv)
            tail = [i.text for i in monitor.flush() if isinstance(i, Text)]
            if tail:
                answer.extend(tail)
            if reason != "done":
                self._abort(monitor, reason)
            if reason in CUT_SHORT:  # the answer is over: the next turn opens as after a finished one
                self._prefix = self.dialect.turn_separator()
            self._emit(ev.Stats(
                generated=generated, injected=self._injected, decode_seconds=decode_seconds,
                tokens_per_second=generated / decode_seconds if decode_seconds > 0 else 0.0,
                n_past=backend.n_past, n_ctx=backend.n_ctx, pending=len(self._outstanding)))
            self._monitor = None
            with self._turn_cond:
                self._in_turn = False
            self._emit(ev.TurnEnded(turn=self.turn, reason=reason, text="".join(answer)))
            with self._turn_cond:
                self._turns_ended += 1
                self._turn_cond.notify_all()

    def _context_full(self, exc: ContextFull) -> None:
        """The context cannot take what comes next, so the turn ends. Messages the user typed that are
        still waiting cannot enter it either: they are handed back (``MessageNotSent``) rather than
        left to open turn after turn, and the notice says what would make room."""
        items = self.queue.drain()
        self.queue.put_front([i for i in items if i.source != "user"])
        typed = [i for i in items if i.source == "user"]
        fits = True
        if typed:
            message, fits = self._not_sent(exc, typed)
        else:
            message = notes.turn_ended_full(str(exc))
        self._emit(ev.Notice(level="error", message=message))
        for item in typed:
            self._emit(ev.MessageNotSent(text=item.payload, fits_new_session=fits))

    def _not_sent(self, exc: ContextFull, typed: list[Interrupt]) -> tuple[str, bool]:
        """Why typed messages were not sent, and what would make room: a new session, or (for one
        longer than an empty context after the tool list) a shorter message or a larger context; and
        whether a new session would take them."""
        def tokens(item: Interrupt) -> int:
            return len(self.dialect.encode_interrupts([item], opening=True)[0])

        n_ctx = self.backend.n_ctx
        fresh = len(self.dialect.session_start()) + tokens(Interrupt("system", self.answer.tools_text, "system"))
        longest = max(map(tokens, typed))
        if fresh + longest < n_ctx:
            return notes.message_held_back(str(exc)), True
        return notes.message_too_long(longest, n_ctx, fresh, self.backend.info.n_ctx_train), False

    def _refresh_tool_list(self) -> None:
        """Tell the model when observed latencies have moved the LPT estimates it was given, ahead of
        what opens the turn, so that the user's words stay the last thing before the answer. Only the
        moved estimates are sent (``updated estimates: wait ~2s | calculator ~12ms``, a tenth of the
        list's tokens); the whole list again only when the tools themselves changed."""
        current = self.tools.describe()
        if current == self.answer.tools_text:
            return
        now, before = tool_estimates(current), tool_estimates(self.answer.tools_text)
        self.answer.tools_text = current
        if now.keys() == before.keys():
            note = notes.estimates_updated({name: shown for name, shown in now.items() if before[name] != shown})
        else:
            note = f"updated {current}"
        self._queue(Interrupt("system", note, "system"), front=True)

    # --- injection and waiting ----------------------------------------------------------------

    def _extend(self, tokens: list[int], reason: str, fixed: int = 0) -> None:
        """Evaluate tokens the model did not generate, and report them (sessions rebuild from this).
        The first ``fixed`` of a session's opening come from the prompt cache where it has them."""
        backend, cache = self.backend, self.prompt_cache
        if fixed and cache is not None and backend.n_past == 0:
            start = tokens[:fixed]
            if not cache.restore(backend, start):
                backend.eval(start)
                cache.save(backend, start)
            backend.eval(tokens[fixed:])
        else:
            backend.eval(tokens)
        self._emit(ev.ContextExtended(tokens=tuple(tokens), reason=reason))

    def _inject(self, prefix: list[int] | None = None, notify: bool = True, opening: bool = False,
                items: list[Interrupt] | None = None) -> None:
        """Evaluate what is queued (or ``items``, already drained), after ``prefix``, and report it."""
        items = self.queue.drain() if items is None else items
        if prefix:
            try:
                self._extend(prefix, "turn-prefix")
            except ContextFull:
                self.queue.put_front(items)
                self._prefix = prefix
                raise
        if not items:
            return
        items = self._fit(items, opening)
        tokens, text = self.dialect.encode_interrupts(items, opening=opening)
        position = self.backend.n_past
        started = time.monotonic()
        try:
            self._extend(tokens, "interrupts", fixed=self.dialect.fixed if opening else 0)
        except ContextFull:
            self.queue.put_front(items)
            raise
        if self._monitor is not None:
            self._monitor.reopened()
        now = time.monotonic()
        sources = tuple(i.source for i in items)
        self.answer.asked.extend((i.payload, len(self.answer.made)) for i in items if i.source == "user")
        for item in items:
            if item.kind != "system":  # user messages and results (call ids are learnt as calls start)
                self._hear(item.payload)
        self._outstanding.difference_update(sources)
        self.ledger.failed.update(i.source for i in items if i.kind in ("error", "cancelled"))
        self._injected += len(tokens)
        self._emit(ev.InterruptInjected(sources=sources, n_tokens=len(tokens), position=position,
                                        text=text, latency=now - min(i.queued_at for i in items),
                                        prefill=now - started, payloads=tuple(i.payload for i in items)))
        if notify:
            self.policy.injected(items)

    def _fit(self, items: list[Interrupt], opening: bool) -> list[Interrupt]:
        """``items`` with each call's result cut to what the context can take: ``payload_limit`` tokens,
        and no more than an equal share of the free context, less room for the answer to go on, where
        one share more is kept back for what comes later (a result takes at most half of it)."""
        cut_here = [i.source not in ("user", "system") for i in items]
        if not any(cut_here):
            return items
        n_ctx = self.backend.n_ctx
        bare = [replace(i, payload="") if c else i for i, c in zip(items, cut_here)]
        overhead = len(self.dialect.encode_interrupts(bare, opening=opening)[0])
        free = n_ctx - self.backend.n_past - min(ANSWER_ROOM, n_ctx // 8) - overhead
        share = min(self.config.payload_limit, free // (sum(cut_here) + 1))
        return [self._cut(i, share) if c else i for i, c in zip(items, cut_here)]

    def _cut(self, item: Interrupt, budget: int) -> Interrupt:
        """``item`` with its payload cut to ``budget`` tokens, a note of how much was cut included."""
        text, total = uncut(item.payload)
        n = len(self.backend.tokenize(text))
        if n <= budget:
            return item
        room = budget - len(self.backend.tokenize(cut("x", 1, total)))  # what the note itself takes
        keep = len(text) * max(room, 0) // n
        while keep > 0 and (n := len(self.backend.tokenize(text[:keep]))) > room:
            keep = keep * room // n - 1
        return replace(item, payload=cut(text, max(keep, 1), total))

    def _wait(self, reason: str, ready: Callable[[list[Interrupt]], bool], deadline: float | None = None) -> None:
        """Wait until ``ready`` holds, the answer is stopped, or the turn's ``deadline`` passes."""
        started = time.monotonic()
        self._emit(ev.TrapEntered(reason=reason, waiting_on=tuple(sorted(self._outstanding))))
        timeout = None if deadline is None else max(0.0, deadline - started)
        arrived = self.queue.wait(ready, self._stop.is_set, timeout)
        self._emit(ev.TrapLeft(waited=time.monotonic() - started))
        if arrived:
            self._inject()

    def _wait_for(self, call_ids: list[str], reason: str, deadline: float | None = None) -> None:
        wanted = set(call_ids)
        self._wait(reason, lambda items: wanted <= {i.source for i in items}, deadline)

    def _trap(self, reason: str, deadline: float | None = None) -> None:
        """Wait for what is pending (called only while something is)."""
        if self._collected:
            batch, self._collected = self._collected, []
            for call in batch:
                self.executor.submit(call)
                self._outstanding.add(call.call_id)
            self._wait_for([c.call_id for c in batch], "sync-parallel", deadline)
            return
        self._wait(reason, lambda items: bool(items), deadline)

    def _abort(self, monitor: Monitor, reason: str) -> None:
        """Leave the context consistent after an answer ended early."""
        if monitor.in_block:
            monitor.abandon()
            try:
                self._extend(self.dialect.encode([Marker.END]), "close-block")
            except ContextFull:
                pass
        for call in self._collected:
            self._emit(ev.CallCancelled(call_id=call.call_id, name=call.name, elapsed=0.0))
            self._queue(Interrupt(call.call_id, CANCELLED_PAYLOAD, "cancelled"))
        self._collected.clear()
        self.executor.cancel_all()
        if reason == "stopped":
            self._close_stopped()

    def _close_stopped(self) -> None:
        """A stopped answer takes in its calls' cancellations and the stop note before it ends, as
        any answer takes in interrupts, so that the next message opens a turn the way it always does
        (a model that met them at the head of the next turn took that message for an addition). A
        call that has not reported within ``stop_settle`` seconds reports in the next turn (all of
        them, and the note, with ``stop_settle=0``); a message the user has already sent waits for
        it too."""
        cancelled = set(self._outstanding)
        settle = self.config.stop_settle
        if settle > 0:
            self.queue.wait(lambda items: cancelled <= {i.source for i in items}, lambda: False, settle)
        self._queue(Interrupt("system", notes.STOPPED, "system"))
        if settle <= 0:
            return
        items = self.queue.drain()
        self.queue.put_front([i for i in items if i.source == "user"])
        try:
            self._inject(items=[i for i in items if i.source != "user"], notify=False)
        except ContextFull:
            pass  # they stay queued and open the next turn

    # --- calls --------------------------------------------------------------------------------

    def _reject(self, call_id: str, raw: str, kind: str, message: str) -> None:
        self._refused_in_row += 1
        source = call_id if is_call_id(call_id) else "system"
        self._emit(ev.CallRejected(call_id=call_id, raw=raw, reason=error_payload(kind, message)))
        if source == "system":
            message = f"a call with id {call_id!r} was not run: {message}"
        self._queue(Interrupt(source, error_payload(kind, message), "error"))

    def _malformed(self, item: Malformed) -> None:
        self._emit(ev.Notice(level="warning", message=f"The model wrote a broken block: {item.reason}."))
        if "block ran past" in item.reason:
            # The block was abandoned mid-way; close it in the context so the grammar holds.
            self._extend(self.dialect.encode([Marker.END]), "close-block")
            self._queue(Interrupt("system", error_payload("MalformedBlock", item.reason), "error"))

    def _handle_call(self, item: CallClosed) -> str | None:
        """Validate a finished call block and start it (or collect it); returns its id if started."""
        cid, raw = item.call_id, item.raw
        self.dialect.note_call(cid, item.expr.strip())
        if not cid:
            self._reject(cid, raw, "MissingCallId", "every call needs an id before [HEAD]")
            return None
        if not is_call_id(cid):
            self._reject(cid, raw, "BadCallId", f"{cid!r} is not a Python identifier")
            return None
        if self._quotes.quotes(raw):
            self._reject(cid, raw, "QuotedCall", "this call is a copy of text from a tool result or a message, "
                                                 "and such text is never run")
            return None
        if cid in self.ledger.ids:
            fresh = self.ledger.fresh_id(cid)
            if not self._renaming:
                self._renaming = True
                self._reject(cid, raw, "DuplicateCallId",
                             f"the id {cid} is already used in this session; give each call a new id, such as {fresh}")
                return None
            self._emit(ev.Notice(level="info", message=f"The model used the id {cid} again; the call runs as {fresh}."))
            cid = fresh
        self.ledger.ids.add(cid)
        self.steering.learn_id(cid)
        try:
            expr = parse_call(item.expr)
        except CallSyntaxError as exc:
            self.ledger.refused.add(cid)
            self._reject(cid, raw, "CallSyntaxError", str(exc))
            return None
        self.answer.made.append(expr)
        if (why := self.ledger.why_not(expr, cid)) is not None:
            self.ledger.refused.add(cid)
            self._reject(cid, raw, *why)
            return None
        rendered = expr.render()
        if rendered in self._ran:
            self.ledger.refused.add(cid)
            self._reject(cid, raw, "RepeatedCall",
                         f"the same call as {self._ran[rendered]} of this answer, whose result comes as {self._ran[rendered]}")
            return None
        self._ran[rendered] = cid
        self._refused_in_row = 0
        self._emit(ev.CallDetected(call_id=cid, name=expr.name, expr=rendered, refs=expr.refs))
        self.dialect.note_call(cid, rendered)
        self.ledger.producers[cid] = expr.name
        call = Call(cid, expr)
        if self.mode is Mode.SYNC_PARALLEL:
            self._collected.append(call)
            return None
        self._outstanding.add(cid)
        self.executor.submit(call)
        return cid
