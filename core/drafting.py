"""The completion check's drafting (``core.completion`` says what it decides and why).

The engine asks ``Drafter.complete`` where the model chose not to write another call right after one,
or chose to open a call. Drafts are written greedily through the real context, steered as the
engine steers, and taken back out of the KV cache; the drafter sees the backend, the dialect, the
tools, the call ledger and the current answer, and reports each draft as a ``CallDrafted`` event.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from . import events as ev
from .backend import Backend
from .cml import BlockState, CallClosed, CallExpr, CallSyntaxError, Marker, parse_call, tool_estimates
from .completion import ARGS_FLOOR, NAME_FLOOR, OWN_FLOOR, SEARCH_FLOOR, adds_task, likely_enough
from .dialect import Dialect
from .executor import Toolbox
from .ledger import CallLedger
from .llama import ContextFull
from .monitor import Monitor

DRAFT_TOKENS = 96  # the longest call the completion check drafts (the built-in tools' calls: 10-40 tokens)
NAME_STEPS = 8  # a draft keeps the logits of this many tokens after its [HEAD] (a built-in tool's name: 2-7)
WITHHELD: tuple[list[int], int] = ([], 0)  # the completion check's answer for a call not to open


def token_logprob(logits: np.ndarray, token: int) -> float:
    """The log-probability of ``token`` under ``logits`` (a log-softmax, for one token)."""
    top = float(np.max(logits))
    return float(logits[token]) - top - float(np.log(np.sum(np.exp(logits - top))))


def estimate_seconds(shown: str) -> float:
    """An estimate as the tool list shows it (``~300ms``, ``~1.5s``) in seconds; 0 if it is none."""
    match = re.fullmatch(r"~(\d+(?:\.\d+)?)(ms|s)", shown.strip())
    if match is None:
        return 0.0
    return float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)


@dataclass(frozen=True)
class Draft:
    """A call the completion check drafted (``Drafter._draft``) and took back out of the context."""

    tokens: list[int]
    expr: str  # as written ("" if the draft was no finished call)
    call: CallExpr | None  # ``expr`` parsed, if it parses
    adds: bool  # it adds a task to the answer's calls (``core.completion.adds_task``)
    head: int | None  # where its [HEAD] is in ``tokens``
    logprob: float  # of its tool and arguments, from [HEAD] on, as steered
    named: float = 0.0  # the part of ``logprob`` that the tool's name written for it took (0: not written for it)
    after_head: tuple[np.ndarray, ...] = ()  # the logits (steered) of its first tokens after [HEAD]: its tool's name
    cut_off: bool = False  # ``DRAFT_TOKENS`` ran out inside the call's arguments, before its end

    @property
    def tool(self) -> str:
        """The tool's name as written, even in a call that does not parse."""
        return self.expr.split("(")[0].strip()


@dataclass
class Answer:
    """What the drafter reads of the session and the answer being written (the engine keeps it)."""

    made: list[CallExpr] = field(default_factory=list)  # the answer's calls, as written
    asked: list[tuple[str, int]] = field(default_factory=list)  # its user messages, and the calls before each
    tools_text: str = ""  # the tool list as the model was shown it


class Drafter:
    def __init__(self, backend: Backend, dialect: Dialect, tools: Toolbox, ledger: CallLedger,
                 answer: Answer, steer: Callable[[np.ndarray, Monitor, str], np.ndarray],
                 emit: Callable[[ev.Event], None], *, is_async: Callable[[], bool], max_block_tokens: int,
                 longest_first: bool, stopped: Callable[[], bool] = lambda: False) -> None:
        self.backend, self.dialect, self.tools, self.ledger = backend, dialect, tools, ledger
        self.answer, self.steer, self.emit, self.is_async = answer, steer, emit, is_async
        self.stopped = stopped  # the answer was stopped: drafting gives up at once
        self.max_block_tokens, self.longest_first = max_block_tokens, longest_first
        opener = dialect.marker_tokens(Marker.CALL)  # drafts start from one control token
        self.opener = opener[0] if len(opener) == 1 else None
        self._name_tokens: dict[str, list[int]] = {}  # each tool's `` name(`` as a draft writes it

    def complete(self, opens: bool) -> tuple[list[int], int] | None:
        """The completion check (``core.completion``). The model chose not to write another call right
        after one, or (``opens``) chose to open a call. Draft the call it would write (greedy, steered as
        always). Where it stopped calling, that draft is written if it adds a task and is at least
        ``OWN_FLOOR`` likely; where it opens a call, unless it repeats one the answer has made. Else
        each other tool's likeliest call is drafted, its name written for it, and the likeliest that
        adds a task and is likely enough (``core.completion.likely_enough``) is written. In async mode,
        a call the model opens may give way to one of a tool whose estimate is longer by more than the
        draft took (``_longer_first``). A call the model opens that could not run (it does not parse,
        names no tool or takes a result no call gave) or has not ended within ``DRAFT_TOKENS`` is not
        opened if no other tool's draft is written:
        the model's next choice comes instead. Returns the tokens to write and how many of them the
        context already holds, ``WITHHELD`` (no call here), or None: the model's own choice stands."""
        mark, t0 = self.backend.n_past, time.perf_counter()
        own = self._draft([self.opener], keep=True)
        repeats = own.call is not None and own.call in self.answer.made
        # a call still open after DRAFT_TOKENS went wrong (answer text written into a value) or is
        # longer than the check is for: the built-in tools' calls take 10-40 tokens
        broken = opens and (not self._runs(own.call) if own.expr else own.cut_off)
        if opens:
            written = own.expr != "" and not repeats and not broken
        else:
            written = own.adds and own.logprob >= OWN_FLOOR
        if written and opens and self.longest_first and self.is_async():
            longer = self._longer_tools(own.tool, time.perf_counter() - t0)
            if longer and (ordered := self._longer_first(own, mark, longer)) is not None:
                return ordered
        if written:
            self._report([own], own, own)
            return own.tokens, len(own.tokens) - 1  # all but its [END] are in the context
        self.backend.truncate(mark)
        drafts, chosen = [own], None
        if own.head is not None and (repeats or broken or not opens):
            drafts += self._other_tools(own)
            for draft in drafts[1:]:
                if draft.adds and likely_enough(draft.logprob, draft.named) and (
                        chosen is None or draft.logprob > chosen.logprob):
                    chosen = draft
        self._report(drafts, own, chosen)
        if chosen is not None:
            return chosen.tokens, 0
        return WITHHELD if broken else None

    def _runs(self, call: CallExpr | None) -> bool:
        """Whether a drafted call would be run rather than rejected (``Engine._handle_call``): it parses, names
        a tool, and takes the results only of calls that ran."""
        return call is not None and self.ledger.why_not(call) is None


    def _report(self, drafts: list[Draft], own: Draft, chosen: Draft | None, longer: bool = False) -> None:
        """One ``CallDrafted`` event a draft (``longer``: the other drafts are ``_longer_first``'s)."""
        for draft in drafts:
            self.emit(ev.CallDrafted(expr=draft.expr, kept=draft is chosen, tokens=len(draft.tokens),
                                      logprob=round(draft.logprob, 3), searched=draft is not own,
                                      name_logprob=round(draft.named, 3), longer=longer and draft is not own,
                                      adds=draft.adds))

    def _longer_tools(self, tool: str, margin: float) -> list[str]:
        """The tools whose shown estimate is longer than ``tool``'s by more than ``margin`` seconds,
        longest first."""
        shown = {name: estimate_seconds(text) for name, text in tool_estimates(self.answer.tools_text).items()}
        if tool not in shown:
            return []
        return [name for name in shown if shown[name] > shown[tool] + margin]

    def _longer_first(self, own: Draft, mark: int, longer: list[str]) -> tuple[list[int], int] | None:
        """Longest first: the model opened a call and drafted ``own`` (in the context from ``mark``), and
        ``longer`` tools have longer estimates. Each one's likeliest call is drafted in turn, longest
        first, from the same id, and the first that adds a task beside ``own``, depends on no other call
        and is at least ``SEARCH_FLOOR`` likely is written (its tokens stay in the context); if none
        does, ``own`` is, its tokens after the id evaluated again. None where no longer tool's name is
        that likely after the id (nothing drafted: ``own`` stands, as it is in the context)."""
        names = [n for n in longer if self._name_bound(own, n) >= SEARCH_FLOOR]
        if not names:
            return None
        backend, ids = self.backend, own.tokens[:own.head + 1]
        after_id = mark + len(ids)
        backend.truncate(after_id)
        after_own = [c for c in (*self.answer.made, own.call) if c is not None]
        drafts, chosen = [], None
        for name in names:
            if self.stopped():
                break
            draft = self._draft(ids + self._name_opening(name), SEARCH_FLOOR, shared=len(ids),
                                logits=own.after_head[0], keep=True)
            draft = replace(draft, adds=draft.adds and not draft.call.refs and draft.logprob >= SEARCH_FLOOR
                            and adds_task(draft.call, after_own, self.answer.asked))
            drafts.append(draft)
            if draft.adds:
                chosen = draft
                break
            backend.truncate(after_id)
        self._report([own, *drafts], own, chosen or own, longer=True)
        if chosen is None:
            return own.tokens, len(ids)
        return chosen.tokens, len(chosen.tokens) - 1

    def _name_bound(self, own: Draft, name: str) -> float:
        """How likely, at most, the model was to write ``name`` where it wrote ``own``'s tool: its name's
        tokens as far as they are ``own``'s, and the first that is not (a draft's log-probability only
        falls as it goes on)."""
        written, bound = own.tokens[own.head + 1:], 0.0
        for i, token in enumerate(self._name_opening(name)[:len(own.after_head)]):
            bound += token_logprob(own.after_head[i], token)
            if i >= len(written) or written[i] != token:
                break
        return bound

    def _other_tools(self, own: Draft) -> list[Draft]:
        """A draft of each other tool's call, from the same id: the id is evaluated once for them all."""
        ids, backend = own.tokens[:own.head + 1], self.backend
        mark = backend.n_past
        drafts = []
        try:
            after_head = self._eval_id(ids)
            for name in self.tools.names():
                if self.stopped():
                    break
                if name != own.tool:
                    drafts.append(self._draft(ids + self._name_opening(name), SEARCH_FLOOR,
                                              shared=len(ids), logits=after_head, name_floor=NAME_FLOOR,
                                              args_floor=ARGS_FLOOR))
        except ContextFull:
            pass
        finally:
            backend.truncate(mark)
        return drafts

    def _name_opening(self, name: str) -> list[int]:
        """The tokens a draft of ``name``'s call writes after the call's ``[HEAD]`` (`` name(``), tokenized
        once a session."""
        if name not in self._name_tokens:
            self._name_tokens[name] = self.dialect.text_tokens(f" {name}(")
        return self._name_tokens[name]

    def _eval_id(self, ids: list[int]) -> np.ndarray:
        """Evaluate a call's opening up to its ``[HEAD]`` (``ids``); the logits that follow it."""
        monitor = self.dialect.new_monitor(self.max_block_tokens, taken=self.ledger.taken)
        for token in ids:
            monitor.feed(token)
        self.backend.eval(ids)
        return self._next_logits(monitor).copy()

    def _next_logits(self, monitor: Monitor) -> np.ndarray:
        """The logits a draft chooses from where ``monitor`` stands: steered, and masked as the loop's are."""
        logits = self.steer(self.backend.logits(), monitor, "")
        banned = monitor.banned()
        if banned.size:
            logits = logits.copy()
            logits[banned] = -np.inf
        return logits

    def _draft(self, opening: list[int], floor: float = -np.inf, shared: int = 0,
               logits: np.ndarray | None = None, keep: bool = False, name_floor: float = np.inf,
               args_floor: float = np.inf) -> Draft:
        """Write ``opening`` and go on greedily to the call's ``[END]``, then take it back out of the
        context. The first ``shared`` tokens of ``opening`` are in the context already, and ``logits``
        are what follows them. A draft whose log-probability falls below ``floor`` is given up (it
        would not be used), unless the name written for it is at least ``name_floor`` likely and its
        arguments, after that, at least ``args_floor``."""
        backend, mark = self.backend, self.backend.n_past
        monitor = self.dialect.new_monitor(self.max_block_tokens, taken=self.ledger.taken)
        head_marker = self.dialect.marker_tokens(Marker.HEAD)[0]
        tokens: list[int] = []
        closed, head, logprob, named, after_head = None, None, 0.0, 0.0, []
        forced = deque(opening)
        try:
            token = forced.popleft()
            while len(tokens) < DRAFT_TOKENS and not self.stopped():
                tokens.append(token)
                if token == head_marker and head is None:
                    head = len(tokens) - 1
                closed = next((i for i in monitor.feed(token) if isinstance(i, CallClosed)), None)
                if closed is not None or not monitor.in_block:
                    break
                if len(tokens) < shared:
                    token = forced.popleft()
                    continue
                if len(tokens) > shared:
                    backend.eval([token])
                    logits = self._next_logits(monitor)
                if head is not None and len(after_head) < NAME_STEPS and len(tokens) > head + len(after_head):
                    after_head.append(logits.copy())
                written_for = bool(forced)
                token = forced.popleft() if written_for else int(np.argmax(logits))
                if head is not None:  # the call's likelihood: its tool and arguments, as steered
                    logprob += token_logprob(logits, token)
                    if written_for:
                        named = logprob
                if backend.is_eog(token) or (logprob < floor and (named < name_floor
                                                                   or logprob - named < args_floor)):
                    break
        except ContextFull:
            closed, keep = None, False
        finally:
            if not keep or closed is None:
                backend.truncate(mark)
        expr = closed.expr.strip() if closed is not None else ""
        cut_off = (closed is None and len(tokens) >= DRAFT_TOKENS and monitor.state is BlockState.CALL_BODY
                   and monitor.call_body != "")
        try:
            call = parse_call(expr) if expr else None
        except CallSyntaxError:
            call = None
        adds = (call is not None and closed.call_id.strip() not in self.ledger.ids
                and self.tools.get(call.name) is not None and adds_task(call, self.answer.made, self.answer.asked))
        return Draft(tokens, expr, call, adds, head, logprob, named, tuple(after_head), cut_off)
