"""Evaluate a GGUF on held-out requests through the real engine, in async mode, with the real tools.

    python -m training.evaluate --model asynclm/models/asynclm-tiny.gguf --episodes 200

Each episode draws a request from a held-out seed with held-out entity values (cities, numbers, file
and folder names, search words that never appear in training), builds its folder tree, gives the tools
estimates the way training does, and runs one turn: the engine decodes greedily, the executor runs the
real tools, results enter as interrupts whenever they arrive, and a planned user interrupt is typed
mid-answer: right after the model has written as many calls as it was asked for, or when it writes
text after fewer (it has written the calls it means to), or at its first trap.
``--mode`` runs the same episodes in sync or sync-parallel mode instead. ``--copy-bias 8`` steers the
decoding as the app does for the embedded model (argument values, and the words an answer visibly
copies; ``--no-copy-text`` leaves the answer alone).

Measures (each over the episodes it applies to):

- valid CML: no rejected or malformed block, and the turn ended normally;
- exact calls: the calls written are exactly the expected ones (name and bound arguments; a dataflow
  reference counts as the call it points to; whitespace in calculator expressions is ignored);
- LPT order: the request's ready calls were written longest shown estimate first (ties either way);
- every result value: the answer text contains the key values of every result it should use;
- user interrupts acted on: the calls a mid-answer message asked for were written after it;
- errors reported honestly: a failed call is reported as a failure ("couldn't", "failed", ...).

``--everyday`` runs a fixed list of hand-written requests instead, the kind people type first (a
greeting, "what is 2+3", "list the files here", a time, a conversion), each with the calls it needs
(none for small talk), each alone in a new session (``EVERYDAY``). A request is right when its turn
is valid, makes exactly those calls, and its answer holds every result value and reports failures.

``--second-turns`` measures later turns instead: each session answers one held-out request with calls
(``--stop-first``: stops that answer at its first words after its calls, as Esc does), then a second
request, and reports how many second requests got exactly the calls they ask for.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asynclm.core import events as ev
from asynclm.core.cml import Ref, parse_call
from asynclm.core.engine import Engine, EngineConfig, Mode
from asynclm.core.reducer import SessionState
from asynclm.core.llama import LlamaBackend
from asynclm.core.policy import Policy
from asynclm.core.sampling import GREEDY

from asynclm.tools.registry import Registry

from .traces import (PROFILES, Call, Planner, Task, ToolRunner, Turn, _format_ms, _ms, key_values, plan_turn,
                     tools_text)

HELDOUT_EVAL_BASE = 950_000_000
HONEST = ("couldn't", "could not", "failed", "can't", "cannot", "unable")


def _canon_value(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical(name: str, kwargs: dict[str, Any], registry, by_id: dict[str, str]) -> str:
    """A call as a comparable string: bound arguments, references replaced by what they point to; an
    argument given its default is left out (``list_dir(path=".")`` is ``list_dir()``)."""
    tool = registry.get(name)
    args = dict(kwargs)
    if tool is not None:
        try:
            args = tool.bind((), {k: (0 if isinstance(v, Ref) else v) for k, v in kwargs.items()})
        except Exception:
            args = dict(kwargs)
        for k, v in kwargs.items():
            if isinstance(v, Ref):
                args[k] = v
        for param in tool.params:
            if not param.required and param.name in args and not isinstance(args[param.name], Ref) \
                    and args[param.name] == param.default:
                del args[param.name]
    parts = []
    for k in sorted(args):
        v = args[k]
        if isinstance(v, Ref):
            v = "->" + by_id.get(v.call_id, "?" + v.call_id)
        elif name == "calculator" and k == "expression" and isinstance(v, str):
            v = v.replace(" ", "")
        parts.append(f"{k}={_canon_value(v)!r}")
    return f"{name}({', '.join(parts)})"


def written_call(expr_text: str, registry, by_id: dict[str, str]):
    """A call the model wrote: its parsed expression, its keyword arguments (positional ones bound to
    the tool's parameters) and its comparable string. Raises when it does not parse."""
    expr = parse_call(expr_text)
    tool = registry.get(expr.name)
    kwargs = dict(expr.kwargs)
    if expr.args and tool is not None:
        kwargs.update({p.name: a for p, a in zip(tool.params, expr.args)})
    return expr, kwargs, canonical(expr.name, kwargs, registry, by_id)


def expected_calls(calls: list[Call], registry) -> list[str]:
    by_id: dict[str, str] = {}
    out = []
    for c in calls:
        text = canonical(c.name, c.kwargs, registry, by_id)
        by_id[c.call_id] = text
        out.append(text)
    return out


@dataclass
class Episode:
    seed: int
    request: str
    user_interrupt: str | None
    expected: list[str]
    expected_after_user: list[str]
    written: list[str] = field(default_factory=list)
    written_after_user: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # the ids the model gave its calls, in order
    answer: str = ""
    end_reason: str = ""
    rejected: list[str] = field(default_factory=list)
    lpt_applicable: bool = False
    lpt_ok: bool = False
    values_needed: list[str] = field(default_factory=list)
    values_missing: list[str] = field(default_factory=list)
    errors: int = 0
    errors_honest: bool = True
    tokens_per_second: float = 0.0
    generated: int = 0
    user_sent: bool = False  # the planned message was typed (it is not when the turn ended first)
    # the completion check's drafts: "+" kept, "s" another tool's, "l" to go first (a longer estimate), "a" adds
    # a task, then @logprob/the part the name written for it took
    drafts: list[str] = field(default_factory=list)
    context_kept: bool = True  # the context holds exactly the tokens the events report (drafts taken back)

    @property
    def valid(self) -> bool:
        return not self.rejected and self.end_reason == "done"

    @property
    def exact(self) -> bool:
        return sorted(self.written) == sorted(self.expected + self.expected_after_user)

    @property
    def acted_on_user(self) -> bool:
        return all(c in self.written_after_user for c in self.expected_after_user)

    @property
    def fully_correct(self) -> bool:
        return (self.valid and self.exact and (self.lpt_ok or not self.lpt_applicable)
                and not self.values_missing and self.errors_honest
                and (self.user_interrupt is None or self.acted_on_user))


def _held_out(seed: int, shape=PROFILES["full"], real: bool = False, long: bool = False):
    """An episode's draws, as training draws a session's: its tools on a held-out folder tree (with
    ``real``, one with real-looking names; with ``long`` too, long files and a crowded folder), their
    estimates (set on the tools, as the tool list will show them) and a planner of held-out requests."""
    rng = random.Random(seed)
    runner = ToolRunner(rng, heldout=True, real=real, long=long)
    estimates = {tool.name: math.exp(rng.uniform(math.log(0.001), math.log(1.0))) for tool in runner.registry}
    registry = runner.registry if shape.tools is None else Registry(
        [t for t in runner.registry if t.name in shape.tools])
    tools_text(registry, estimates)
    return rng, runner, estimates, registry, Planner(rng, True, runner.tree, shape.kinds)


def run_episode(model: Path, seed: int, n_ctx: int = 0, timeout: float = 60.0,
                mode: Mode = Mode.ASYNC, profile: str = "full", copy_bias: float = 0.0,
                copy_text: bool = True, n_threads: int = 2, policy: Policy | None = None,
                typed_references: bool = True, real: bool = False, long: bool = False,
                complete_calls: bool = False, longest_first: bool = True, break_loops: bool = False) -> Episode:
    """One held-out episode; ``policy`` replaces greedy decoding (tests script what the model writes);
    ``real``: on a folder tree with real-looking names; ``long``: one with long results too."""
    shape = PROFILES[profile]
    rng, runner, estimates, registry, planner = _held_out(seed, shape, real or long, long)
    try:
        turn = plan_turn(rng, planner, shape.max_calls, shape.interrupts)
        first = [c for t in turn.tasks for c in t.calls]
        later = [c for t in turn.interrupt_tasks for c in t.calls]
        episode = Episode(seed, turn.request, turn.user_interrupt, expected_calls(first, registry),
                          expected_calls(first + later, registry)[len(first):] if later else [])
        config = EngineConfig(mode=mode, copy_bias=copy_bias, copy_text=copy_text,
                              typed_references=typed_references, complete_calls=complete_calls,
                              longest_first=longest_first, break_loops=break_loops)
        return _drive(model, episode, turn, registry, estimates, len(first), n_ctx, timeout, config, n_threads,
                      policy)
    finally:
        runner.close()


def _drive(model: Path, episode: Episode, turn, registry, estimates, n_first: int, n_ctx: int,
           timeout: float, config: EngineConfig, n_threads: int = 2, policy: Policy | None = None) -> Episode:
    backend = LlamaBackend(model, n_ctx=n_ctx, n_threads=n_threads)
    engine = Engine(backend, registry, policy=policy, config=config, sampling=GREEDY)
    by_id: dict[str, str] = {}
    order: list[str] = []  # tool names of calls in the order written
    session = SessionState()
    names: dict[str, tuple[str, dict]] = {}
    state = {"user_sent": False, "calls": 0, "context": 0}
    done = threading.Event()
    lock = threading.RLock()  # send_user's interrupt is reported back into this sink, on this thread

    def send_user() -> None:
        if turn.user_interrupt and not state["user_sent"]:
            state["user_sent"] = episode.user_sent = True
            engine.interrupt("user", turn.user_interrupt)

    def sink(e: ev.Event) -> None:
        with lock:
            session.apply(e)
            if isinstance(e, (ev.ContextExtended, ev.TokenGenerated)):  # what the context holds
                state["context"] += len(e.tokens) if isinstance(e, ev.ContextExtended) else 1
            if isinstance(e, ev.CallDetected):
                episode.ids.append(e.call_id)
                try:
                    expr, kwargs, text = written_call(e.expr, registry, by_id)
                except Exception as exc:  # noqa: BLE001 - an unparsable call is a finding
                    episode.rejected.append(f"{e.call_id}: {exc}")
                    return
                by_id[e.call_id] = text
                names[e.call_id] = (expr.name, kwargs)
                order.append(expr.name)
                episode.written.append(text)
                if state["user_sent"]:
                    episode.written_after_user.append(text)
                state["calls"] += 1
                if state["calls"] >= n_first:
                    send_user()
            elif isinstance(e, ev.CallRejected):
                episode.rejected.append(f"{e.call_id}: {e.reason}")
            elif isinstance(e, ev.CallDrafted):
                flags = "+" if e.kept else "-"
                flags += "s" * e.searched + "l" * e.longer + "a" * e.adds
                episode.drafts.append(f"{flags} {e.expr} @{e.logprob:g}/{e.name_logprob:g}")
            elif isinstance(e, ev.Notice) and e.level == "error":
                episode.rejected.append(e.message)
            elif isinstance(e, ev.TrapEntered) and e.reason in ("trap", "end-of-sequence"):
                send_user()  # the model's own wait (not a sync mode's), so every mode gets the same task
            elif isinstance(e, ev.TokenGenerated) and state["calls"] and not e.in_block and e.text.strip():
                send_user()  # text after its calls: the model has written the calls it means to
            elif isinstance(e, ev.Stats):
                episode.tokens_per_second = e.tokens_per_second
                episode.generated = e.generated
            elif isinstance(e, ev.TurnEnded):
                episode.answer = e.text
                episode.end_reason = e.reason
                done.set()

    engine.subscribe(sink)
    engine.start()
    try:
        engine.send(turn.request)
        if not done.wait(timeout):
            engine.stop_and_wait(5)
            episode.end_reason = "timeout"  # (stopping it ended the turn as "stopped")
        with lock:
            episode.context_kept = backend.kv_positions() == backend.n_past == state["context"]
    finally:
        engine.close()
        backend.close()

    # LPT: the ready calls of the request, in the order they were written
    shown = {name: _ms(_format_ms(s)) for name, s in estimates.items()}
    ready = [text for text in episode.written[:n_first] if "->" not in text]
    if len(ready) >= 2:
        episode.lpt_applicable = True
        est = [shown.get(t.split("(")[0], 0) for t in ready]
        episode.lpt_ok = all(a >= b for a, b in zip(est, est[1:]))

    superseded = {t.replaces for t in turn.interrupt_tasks if t.replaces}
    superseded_texts = set()
    if superseded:
        first = [c for t in turn.tasks for c in t.calls]
        exp = dict(zip([c.call_id for c in first], episode.expected))
        superseded_texts = {exp[s] for s in superseded if s in exp}
    answer = episode.answer
    ended = sorted((c for c in session.calls.values() if c.state in ("done", "failed")), key=lambda c: c.ended)
    for result in ended:
        call_id = result.call_id
        name, kwargs = names.get(call_id, ("", {}))
        if by_id.get(call_id) in superseded_texts:
            continue
        if result.state == "failed":
            episode.errors += 1
            if not any(h in answer.lower() for h in HONEST):
                episode.errors_honest = False
            continue
        call = Call(call_id, name, kwargs, payload=result.result, value=None)
        needed = key_values(call)
        episode.values_needed += needed
        episode.values_missing += [v for v in needed if v not in answer]
    return episode


# (request, the calls it needs: (tool, arguments)); small talk needs none. The training's templates
# write none of the small talk, no "here" or "this folder", and no spaces inside an expression.
EVERYDAY: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
    ("hello", []),
    ("Hi there!", []),
    ("what can you do?", []),
    ("who are you", []),
    ("hey, what can you help me with?", []),
    ("what is 2+3", [("calculator", {"expression": "2+3"})]),
    ("what's 7*8?", [("calculator", {"expression": "7*8"})]),
    ("calculate 15 - 4", [("calculator", {"expression": "15 - 4"})]),
    ("what is 12*34", [("calculator", {"expression": "12*34"})]),
    ("what time is it in Paris", [("current_time", {"timezone": "Paris"})]),
    ("time in London?", [("current_time", {"timezone": "London"})]),
    ("what's the time in Sydney right now", [("current_time", {"timezone": "Sydney"})]),
    ("list the files here", [("list_dir", {})]),
    ("what's in this folder?", [("list_dir", {})]),
    ("ls", [("list_dir", {})]),
    ("show me the files in the current folder", [("list_dir", {})]),
    ("convert 5 miles to km", [("convert_units", {"value": 5, "from_unit": "miles", "to_unit": "km"})]),
    ("how many kg is 20 lb", [("convert_units", {"value": 20, "from_unit": "lb", "to_unit": "kg"})]),
    ("what is 30 degC in degF?", [("convert_units", {"value": 30, "from_unit": "degC", "to_unit": "degF"})]),
    ("wait 2 seconds", [("wait", {"seconds": 2})]),
    ("set a timer for 3 seconds", [("wait", {"seconds": 3})]),
    ("search for TODO here", [("search_files", {"pattern": "TODO"})]),
    ("find hello in this folder", [("search_files", {"pattern": "hello"})]),
    ("what is 12*34 and what time is it in Berlin", [("calculator", {"expression": "12*34"}),
                                                    ("current_time", {"timezone": "Berlin"})]),
    ("list the files here and what is 9*9?", [("list_dir", {}), ("calculator", {"expression": "9*9"})]),
    ("what time is it in Paris and in London?", [("current_time", {"timezone": "Paris"}),
                                                 ("current_time", {"timezone": "London"})]),
]
EVERYDAY_SEED = HELDOUT_EVAL_BASE + 100_000  # the folder tree and the tools' estimates


def run_everyday(model: Path, index: int, copy_bias: float = 0.0, n_threads: int = 2,
                 mode: Mode = Mode.ASYNC, timeout: float = 60.0, policy: Policy | None = None,
                 complete_calls: bool = False, break_loops: bool = False) -> Episode:
    """One of ``EVERYDAY``, alone in a new session, on a held-out folder tree."""
    request, wanted = EVERYDAY[index]
    _, runner, estimates, registry, _ = _held_out(EVERYDAY_SEED)
    try:
        calls = [Call(f"p{i}", name, kwargs) for i, (name, kwargs) in enumerate(wanted)]
        turn = Turn(request, [Task("everyday", [(request, False)], calls)] if calls else [])
        episode = Episode(index, request, None, expected_calls(calls, registry), [])
        return _drive(model, episode, turn, registry, estimates, len(calls), 0, timeout,
                      EngineConfig(mode=mode, copy_bias=copy_bias, complete_calls=complete_calls,
                                   break_loops=break_loops), n_threads, policy)
    finally:
        runner.close()


def summarise(episodes: list[Episode]) -> dict[str, Any]:
    def rate(flags: list[bool]) -> dict[str, Any]:
        return {"rate": round(sum(flags) / len(flags), 4) if flags else None, "n": len(flags)}

    with_values = [e for e in episodes if e.values_needed]
    with_user = [e for e in episodes if e.user_interrupt]
    with_errors = [e for e in episodes if e.errors]
    tps = [e.tokens_per_second for e in episodes if e.tokens_per_second]
    right = written = 0
    for e in episodes:  # calls written that were asked for, each asked-for call matched once
        wanted = Counter(e.expected + e.expected_after_user)
        got = Counter(e.written)
        right += sum((wanted & got).values())
        written += len(e.written)
    sizes = sorted({len(e.expected) for e in episodes})
    return {
        "episodes": len(episodes),
        "valid_cml": rate([e.valid for e in episodes]),
        "exact_calls": rate([e.exact for e in episodes]),
        "lpt_order": rate([e.lpt_ok for e in episodes if e.lpt_applicable]),
        "every_result_value": rate([not e.values_missing for e in with_values]),
        "user_interrupts_acted_on": rate([e.acted_on_user for e in with_user]),
        "user_interrupts_typed": rate([e.user_sent for e in with_user]),
        "errors_reported_honestly": rate([e.errors_honest for e in with_errors]),
        "fully_correct": rate([e.fully_correct for e in episodes]),
        "calls_written_right": {"rate": round(right / written, 4) if written else None, "n": written},
        "exact_by_request_size": {str(n): rate([e.exact for e in episodes if len(e.expected) == n])
                                  for n in sizes},
        "tokens_per_second_median": round(statistics.median(tps), 1) if tps else None,
    }


@dataclass
class SecondTurn:
    """A second request in the same session, after a first one with calls (answered, or stopped)."""

    seed: int
    first: str
    request: str
    expected: list[str]
    written: list[str] = field(default_factory=list)
    answer: str = ""
    end_reason: str = ""

    @property
    def exact(self) -> bool:
        return self.end_reason == "done" and sorted(self.written) == sorted(self.expected)


def run_second_turn(model: Path, seed: int, stop_first: bool = False, copy_bias: float = 0.0,
                    n_threads: int = 2, timeout: float = 60.0, mode: Mode = Mode.ASYNC,
                    typed_references: bool = True, complete_calls: bool = False,
                    break_loops: bool = False) -> SecondTurn:
    """Two held-out requests of the evaluation's kind in one session. The first is answered (or, with
    ``stop_first``, stopped at its first words after its calls, as a user pressing Esc); then the
    second is sent, and its calls are compared with the ones it asks for."""
    rng, runner, _, registry, planner = _held_out(seed)
    try:
        first = plan_turn(rng, planner, interrupts=False)
        second = plan_turn(rng, planner, interrupts=False)
        result = SecondTurn(seed, first.request, second.request,
                            expected_calls([c for t in second.tasks for c in t.calls], registry))
        backend = LlamaBackend(model, n_threads=n_threads)
        engine = Engine(backend, registry, config=EngineConfig(mode=mode, copy_bias=copy_bias,
                                                               typed_references=typed_references,
                                                               complete_calls=complete_calls,
                                                               break_loops=break_loops),
                        sampling=GREEDY)
        by_id: dict[str, str] = {}
        state = {"turn": 1, "stopped": False}

        def sink(e: ev.Event) -> None:
            if state["turn"] == 1:
                if (stop_first and not state["stopped"] and isinstance(e, ev.TokenGenerated)
                        and e.text.strip() and not e.in_block and by_id):
                    state["stopped"] = True
                    engine.stop()
                elif isinstance(e, ev.CallDetected):
                    by_id[e.call_id] = e.call_id
            elif isinstance(e, ev.CallDetected):
                try:
                    text = written_call(e.expr, registry, by_id)[2]
                except Exception:  # noqa: BLE001 - an unparsable call is a wrong call
                    text = "?" + e.expr
                by_id[e.call_id] = text
                result.written.append(text)
            elif isinstance(e, ev.TurnEnded):
                result.answer, result.end_reason = e.text, e.reason

        engine.subscribe(sink)
        engine.start()
        try:
            engine.ask(first.request, timeout=timeout)
            state["turn"] = 2
            if not engine.ask(second.request, timeout=timeout):
                engine.stop_and_wait(5)
                result.end_reason = "timeout"
        finally:
            engine.close()
            backend.close()
        return result
    finally:
        runner.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(Path(__file__).resolve().parent.parent / "asynclm" / "models"
                                          / "asynclm-tiny.gguf"))
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--first-seed", type=int, default=HELDOUT_EVAL_BASE)
    p.add_argument("--out", default=None, help="write the figures and every episode as JSON here")
    p.add_argument("--mode", choices=[m.value for m in Mode], default="async")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="the requests' regime, as in training (probe: four tools, 1-3 calls)")
    p.add_argument("--copy-bias", type=float, default=0.0, metavar="LOGITS",
                   help="steer argument values toward the conversation's words (0: off; inf: only those)")
    p.add_argument("--no-copy-text", dest="copy_text", action="store_false",
                   help="with --copy-bias: leave the answer text alone (steer call arguments only)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    p.add_argument("--untyped-references", dest="typed_references", action="store_false",
                   help="let a dataflow reference name any earlier call (core.references)")
    p.add_argument("--complete-calls", action="store_true",
                   help="where the model stops calling or would repeat a call, draft another and write it if "
                        "it adds a task (core.completion)")
    p.add_argument("--no-longest-first", dest="longest_first", action="store_false",
                   help="with --complete-calls: write each call where the model opens it, whatever its estimate")
    p.add_argument("--break-loops", action="store_true",
                   help="where the answer would write a piece of text a fourth time in a row, the model's "
                        "likeliest punctuation instead (core.steering.starts_loop)")
    p.add_argument("--second-turns", action="store_true",
                   help="measure second requests instead: each episode's session answers one request "
                        "with calls, then a second, whose calls are compared")
    p.add_argument("--stop-first", action="store_true",
                   help="with --second-turns: stop the first answer at its first words after its calls")
    p.add_argument("--real-files", action="store_true",
                   help="put each episode's folder tree in real-looking names (README.md, src, test_api.py)")
    p.add_argument("--long-files", action="store_true",
                   help="as --real-files, with long files and a crowded folder in each tree (long results)")
    p.add_argument("--everyday", action="store_true",
                   help="run the fixed list of everyday requests instead (EVERYDAY; --episodes is ignored)")
    args = p.parse_args(argv)
    if args.everyday:
        episodes = [run_everyday(Path(args.model), i, args.copy_bias, args.threads, Mode(args.mode),
                                 complete_calls=args.complete_calls, break_loops=args.break_loops)
                    for i in range(len(EVERYDAY))]
        rows = [dict(request=e.request, expected=e.expected, written=e.written, answer=e.answer,
                     right=e.valid and e.exact and not e.values_missing and e.errors_honest and bool(e.answer.strip()))
                for e in episodes]
        for row in rows:
            print(("ok  " if row["right"] else "NO  ") + f"{row['request']!r}: {row['written']} -> {row['answer']!r}")
        summary = {"everyday": len(rows), "right": sum(r["right"] for r in rows),
                   "small_talk_right": sum(r["right"] for r in rows if not r["expected"]),
                   "small_talk": sum(not r["expected"] for r in rows),
                   "exact_calls": sum(e.exact for e in episodes), "valid_cml": sum(e.valid for e in episodes)}
        print(json.dumps(summary, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps({"summary": summary, "requests": rows}, indent=1))
        return
    if args.second_turns:
        turns = [run_second_turn(Path(args.model), args.first_seed + i, args.stop_first, args.copy_bias,
                                 args.threads, mode=Mode(args.mode), typed_references=args.typed_references,
                                 complete_calls=args.complete_calls, break_loops=args.break_loops)
                 for i in range(args.episodes)]
        exact = sum(t.exact for t in turns)
        summary = {"second_turns": len(turns), "second_turn_exact_calls": round(exact / max(len(turns), 1), 4),
                   "stopped_first": args.stop_first, "mode": args.mode}
        print(json.dumps(summary, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps({"summary": summary, "turns": [
                dict(t.__dict__, exact=t.exact) for t in turns]}, indent=1))
        return
    episodes = []
    t0 = time.time()
    for i in range(args.episodes):
        episodes.append(run_episode(Path(args.model), args.first_seed + i, mode=Mode(args.mode),
                                    profile=args.profile, copy_bias=args.copy_bias,
                                    copy_text=args.copy_text, n_threads=args.threads,
                                    typed_references=args.typed_references, real=args.real_files,
                                    long=args.long_files, complete_calls=args.complete_calls,
                                    longest_first=args.longest_first, break_loops=args.break_loops))
        if (i + 1) % 25 == 0:
            print(f"{i + 1} episodes, {time.time() - t0:.0f}s: {json.dumps(summarise(episodes))}", flush=True)
    summary = summarise(episodes)
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"summary": summary, "command": "python -m training.evaluate " + " ".join(argv or []),
             "episodes": [dict(e.__dict__, valid=e.valid, exact=e.exact, fully_correct=e.fully_correct)
                          for e in episodes]}, indent=1))


if __name__ == "__main__":
    main()
