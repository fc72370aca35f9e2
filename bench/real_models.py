"""Real models through the real engine: a fixed set of requests, per dialect and mode.

Nothing is forced: the model decodes greedily, its calls run on real or emulated tools, results enter
as they come. A built-in request's calls are exact when the model made each call asked for (same tool,
and the same result, or for the clock the same zone) and no other, refused calls included; its answer
has every value when each number a call returned appears in it (as written or rounded). A BFCL task's
calls are exact when they are its answer as BFCL checks it (each expected call once, every argument
one of its allowed values). A turn ended by itself when its reason is ``done``.

    python bench/real_models.py --model qwen2.5-coder-0.5b --dialect tools --dialect text
    python bench/real_models.py --model qwen2.5-coder-0.5b --requests 3 --mode async   # a quick look

The set: 21 requests over the built-in tools (one to four independent calls, a dependent pair, a
message typed while the model answers, a timer beside a calculation, two that need no tool), then
``--bfcl`` tasks of each of BFCL's parallel, parallel-multiple and multiple categories, their functions
emulated with latencies of 30-500 ms (``bench/bfcl.py``). Prints a table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asynclm.core import events as ev  # noqa: E402
from asynclm.core.catalog import resolve  # noqa: E402
from asynclm.core.cml import CallSyntaxError, parse_call  # noqa: E402
from asynclm.core.engine import Engine, EngineConfig, Mode  # noqa: E402
from asynclm.core.llama import LlamaBackend  # noqa: E402
from asynclm.core.promptcache import PromptCache  # noqa: E402
from asynclm.core.reducer import SessionState  # noqa: E402
from asynclm.core.sampling import SamplingSettings  # noqa: E402
from asynclm.tools.builtins import default_registry  # noqa: E402
from asynclm.tools.registry import Registry  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))

from bfcl import Task, bfcl_tasks, matches, registry_for  # noqa: E402

BFCL_CATEGORIES = ("parallel", "parallel_multiple", "multiple")
# the chat dialect's worked example (core/chat.py): its made-up tools, opening and values
EXAMPLE = re.compile(r"slow_lookup|fast_lookup|Starting both|\bA is 1\b|\bB is 2\b")

MODES = ("sync", "sync-parallel", "async")
MARKUP = re.compile(r'\[(CALL|INTR|HEAD|END|TRAP)\]|</?tool_call>|</?tool_response>|<\||\{\s*"name"\s*:')


@dataclass(frozen=True)
class Request:
    text: str
    calls: tuple[str, ...]  # the calls asked for, as CML expressions
    typed: str = ""  # typed once the answer's first call has started
    typed_calls: tuple[str, ...] = ()
    task: Task | None = None  # a BFCL task: its emulated functions are the tools, its answers the calls asked for
    dependent: bool = False  # a call takes another's result


REQUESTS = [
    Request("What is 4096 divided by 16?", ('calculator(expression="4096/16")',)),
    Request("What is the square root of 144?", ('calculator(expression="sqrt(144)")',)),
    Request("What is 7 times 8?", ('calculator(expression="7*8")',)),
    Request("What is 2 to the power of 10?", ('calculator(expression="2**10")',)),
    Request("Convert 100 fahrenheit to celsius.", ('convert_units(value=100, from_unit="degF", to_unit="degC")',)),
    Request("How many kilometers is 26.2 miles?", ('convert_units(value=26.2, from_unit="mile", to_unit="km")',)),
    Request("How many pounds is 5 kilograms?", ('convert_units(value=5, from_unit="kg", to_unit="lb")',)),
    Request("What time is it in Berlin?", ('current_time(timezone="Europe/Berlin")',)),
    Request("What is 12*34, and what time is it in Tokyo?",
            ('calculator(expression="12*34")', 'current_time(timezone="Asia/Tokyo")')),
    Request("Convert 5 km to miles and 30 celsius to fahrenheit.",
            ('convert_units(value=5, from_unit="km", to_unit="mile")',
             'convert_units(value=30, from_unit="degC", to_unit="degF")')),
    Request("What is 99*101 and what is 1024/8?", ('calculator(expression="99*101")', 'calculator(expression="1024/8")')),
    Request("What time is it in London and in New York?",
            ('current_time(timezone="Europe/London")', 'current_time(timezone="America/New_York")')),
    Request("Set a timer for 2 seconds and tell me what 17*23 is.",
            ('wait(seconds=2)', 'calculator(expression="17*23")')),
    Request("What is 15% of 80, how many gallons is 10 liters, and what time is it in Sydney?",
            ('calculator(expression="0.15*80")', 'convert_units(value=10, from_unit="liter", to_unit="gallon")',
             'current_time(timezone="Australia/Sydney")')),
    Request("Compute 3*3, 4*4 and 5*5.",
            ('calculator(expression="3*3")', 'calculator(expression="4*4")', 'calculator(expression="5*5")')),
    Request("Compute 11*11, 12*12, 13*13 and 14*14.",
            ('calculator(expression="11*11")', 'calculator(expression="12*12")', 'calculator(expression="13*13")',
             'calculator(expression="14*14")')),
    Request("Convert 1, 2, 3 and 4 miles to kilometers.",
            tuple(f'convert_units(value={n}, from_unit="mile", to_unit="km")' for n in range(1, 5))),
    Request("What is 6*7? Then convert that many kilometers to miles.",
            ('calculator(expression="6*7")', 'convert_units(value=42, from_unit="km", to_unit="mile")'),
            dependent=True),
    Request("What is 8*9?", ('calculator(expression="8*9")',), typed="Also, what is 10*11?",
            typed_calls=('calculator(expression="10*11")',)),
    Request("Hi! What can you do?", ()),
    Request("Say hello in French.", ()),
]


def bfcl_requests(bfcl_dir: Path, per_category: int) -> tuple[list[Request], dict[str, str]]:
    """The first runnable tasks of BFCL's parallel, parallel-multiple and multiple categories, and the
    tasks skipped because their answers could not run."""
    requests: list[Request] = []
    skipped: dict[str, str] = {}
    for category in BFCL_CATEGORIES:
        loaded = bfcl_tasks(bfcl_dir, category, per_category)
        skipped.update(loaded.skipped)
        requests += [Request(t.requests[0], tuple(c.expr() for c in t.segments[0]), task=t) for t in loaded.tasks]
    return requests, skipped


def bfcl_exact(task: Task, tools, made: list[str]) -> bool:
    """Whether the calls made are the task's answer: each a distinct made call that BFCL accepts."""
    named = []
    for expr in made:
        try:
            call = parse_call(expr)
            tool = tools.get(call.name)
            named.append((call.name, tool.bind(call.args, call.kwargs) if tool is not None and not call.refs else None))
        except (CallSyntaxError, TypeError, ValueError):
            named.append((expr, None))
    if len(named) != len(task.answers):
        return False
    left = list(named)
    for truth in task.answers:
        hit = next((m for m in left if m[1] is not None and matches(truth, m[0], m[1])), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


def use_tools(registry: Registry, tools) -> None:
    """Make ``registry`` hold exactly ``tools`` (a new session then gives the model the new list)."""
    for name in registry.names():
        registry.remove(name)
    for tool in tools:
        registry.add(tool)


class Oracle:
    """Runs the calls asked for once on the real tools, to compare the model's calls by their results."""

    def __init__(self, tools) -> None:
        self.tools = tools

    def result(self, expr: str) -> str | None:
        import asyncio

        try:
            call = parse_call(expr)
            tool = self.tools.get(call.name)
            if tool is None or call.refs:
                return None
            args = tool.bind(call.args, call.kwargs)
            if call.name == "wait":
                return f"wait {float(args['seconds']):g}"
            value = asyncio.run(tool.invoke(args))
        except (CallSyntaxError, Exception):  # a call that fails matches no asked-for call
            return None
        text = str(value)
        if call.name == "current_time":  # the clock moves: the zone is what is asked for
            return text.rsplit("(", 1)[-1]
        if call.name == "convert_units":  # units spelled either way (km, kilometer): the amount
            return " ".join(NUMBER.findall(text.split("=")[-1])[:1])
        return text

    def same(self, asked: str, made: str, results: dict[str, str]) -> bool:
        a, m = parse_call(asked), parse_call(made)
        if a.name != m.name:
            return False
        if m.refs:  # a dataflow reference takes its value from a call that is checked itself
            return True
        return self.result(asked) is not None and self.result(asked) == self.result(made)


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def values_in(answer: str, results: list[str]) -> bool:
    """Each result's first number is in the answer, as written or rounded to 0-3 decimals."""
    for result in results:
        found = NUMBER.findall(result.split("(", 1)[0].split(" = ")[-1]) or NUMBER.findall(result)
        if not found:
            continue
        x = float(found[0])
        forms = {found[0], f"{x:g}"} | {f"{x:.{d}f}" for d in range(4)} | ({str(int(x))} if x == int(x) else set())
        if not any(f in answer.replace(",", "") for f in forms):
            return False
    return True


@dataclass
class Outcome:
    exact: bool = False
    values: bool | None = False  # None where the results have no values to repeat (BFCL's emulated ones)
    ended: bool = False
    reason: str = ""
    leaked: bool = False
    tokens: int = 0
    first_token: float | None = None
    turn_seconds: float = 0.0
    waits: list[float] = field(default_factory=list)  # a result's arrival to the start of its injection
    prefills: list[float] = field(default_factory=list)  # and the injection itself
    step: float = 0.0  # the median decode step of the turn
    answer: str = ""
    calls: list[str] = field(default_factory=list)
    parallel: bool = False  # two or more independent calls asked for
    example: bool = False  # the answer or its calls repeat the prompt's worked example


def run_request(engine: Engine, req: Request, oracle: Oracle, timeout: float) -> Outcome:
    events: list[ev.Event] = []
    typed = threading.Event()

    def sink(e: ev.Event) -> None:
        events.append(e)
        if req.typed and isinstance(e, ev.CallStarted) and not typed.is_set():
            typed.set()
            engine.interrupt("user", req.typed)

    engine.new_session()
    engine.subscribe(sink)
    try:
        engine.ask(req.text, timeout=timeout)
    finally:
        engine.unsubscribe(sink)
    out = Outcome()
    started = next((e for e in events if isinstance(e, ev.TurnStarted)), None)
    ends = [e for e in events if isinstance(e, ev.TurnEnded)]
    if started is None or not ends:
        out.reason = "no end"
        return out
    end = ends[-1]
    out.reason, out.answer = end.reason, " ".join(e.text for e in ends)
    out.ended = all(e.reason == "done" for e in ends)
    out.turn_seconds = end.t - started.t
    tokens = [e for e in events if isinstance(e, ev.TokenGenerated)]
    out.tokens = len(tokens)
    out.first_token = tokens[0].t - started.t if tokens else None
    out.leaked = MARKUP.search(out.answer) is not None
    session = SessionState()
    for e in events:
        session.apply(e)
    calls = [c for turn in session.turns for c in turn.calls]
    made = {c.call_id: c.expr for c in calls if c.detected is not None}
    results = {c.call_id: c.result for c in calls if c.state == "done"}
    out.calls = list(made.values())
    entered = [e for e in events if isinstance(e, ev.InterruptInjected) if any(s in results for s in e.sources)]
    out.waits = [e.latency - e.prefill for e in entered]
    out.prefills = [e.prefill for e in entered]
    out.step = statistics.median(e.seconds for e in tokens) if tokens else 0.0
    refused = [r for turn in session.turns for r in turn.rejected]
    out.calls += [f"refused: {r.raw}" for r in refused]
    asked = list(req.calls + req.typed_calls)
    out.parallel = len(req.calls) >= 2 and not req.dependent
    out.example = EXAMPLE.search(out.answer + " ".join(out.calls)) is not None
    if req.task is not None:
        out.exact = not refused and bfcl_exact(req.task, engine.tools, list(made.values()))
        out.values = None
        return out
    unmatched = list(made.values())
    for a in asked:
        hit = next((m for m in unmatched if oracle.same(a, m, results)), None)
        if hit is None:
            break
        unmatched.remove(hit)
    else:
        out.exact = not unmatched and not refused
    out.values = bool(asked) == bool(results) and values_in(out.answer, [results[c] for c in made if c in results])
    return out


def summarise(outcomes: list[Outcome]) -> dict:
    n = len(outcomes)
    waits = sorted(w for o in outcomes for w in o.waits)
    firsts = [o.first_token for o in outcomes if o.first_token is not None]

    def pct(key: str, among: list[Outcome] = outcomes) -> float | None:
        scored = [getattr(o, key) for o in among if getattr(o, key) is not None]
        return round(100 * sum(scored) / len(scored), 1) if scored else None

    builtin = outcomes[:len(REQUESTS)]
    parallel = [o.turn_seconds for o in outcomes if o.parallel]
    return {
        "requests": n, "exact_calls": pct("exact"), "exact_calls_builtin": pct("exact", builtin),
        "exact_calls_bfcl": pct("exact", outcomes[len(REQUESTS):]),
        "every_value": pct("values"), "ended_by_itself": pct("ended"),
        "mentions_example": sum(o.example for o in outcomes),
        "parallel_turn_median_s": round(statistics.median(parallel), 2) if parallel else None,
        "loops": sum(o.reason in ("repetition", "idle_trap", "refused_calls", "length", "timeout") for o in outcomes),
        "leaked_markup": sum(o.leaked for o in outcomes),
        "tokens_mean": round(statistics.mean(o.tokens for o in outcomes), 1) if n else None,
        "first_token_median_s": round(statistics.median(firsts), 2) if firsts else None,
        "turn_median_s": round(statistics.median(o.turn_seconds for o in outcomes), 2) if n else None,
        "result_wait_median_s": round(statistics.median(waits), 3) if waits else None,
        "result_wait_p99_s": round(waits[min(len(waits) - 1, int(0.99 * len(waits)))], 3) if waits else None,
        "result_prefill_median_s": round(statistics.median(p for o in outcomes for p in o.prefills), 3) if waits else None,
        "decode_step_median_s": round(statistics.median(o.step for o in outcomes if o.step), 3) if n else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a named model, hf: file or GGUF path")
    p.add_argument("--dialect", action="append", choices=["tools", "chat", "text"], help="(repeatable; default: tools)")
    p.add_argument("--mode", action="append", choices=MODES, help="(repeatable; default: all three)")
    p.add_argument("--requests", type=int, default=None, help="the first N requests of the set")
    p.add_argument("--bfcl", type=int, default=8, metavar="N",
                   help="tasks of each BFCL category (parallel, parallel_multiple, multiple) after the built-in "
                        "requests (default 8; 0: none)")
    p.add_argument("--bfcl-dir", type=Path, default=ROOT.parent / "shared" / "bfcl",
                   help="the BFCL data folder (default: ../shared/bfcl)")
    p.add_argument("--max-tokens", type=int, default=300)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds a turn may take")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    model = resolve(args.model)
    builtins = list(default_registry())
    tools = Registry(builtins)
    oracle = Oracle(default_registry())
    bfcl, skipped = bfcl_requests(args.bfcl_dir, args.bfcl) if args.bfcl else ([], {})
    requests = (REQUESTS + bfcl)[:args.requests]
    backend = LlamaBackend(model, n_ctx=4096, n_threads=args.threads)
    report = {"model": args.model, "requests": [r.text for r in requests], "bfcl_skipped": skipped, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="asynclm-openings-") as openings:
        cache = PromptCache(Path(openings), keep=len(requests) + 4)  # each request's opening, across the modes
        for dialect in args.dialect or ["tools"]:
            for mode in args.mode or list(MODES):
                config = EngineConfig(mode=Mode(mode), max_turn_tokens=args.max_tokens, turn_seconds=args.timeout)
                engine = Engine(backend, tools, dialect=dialect, config=config, prompt_cache=cache,
                                sampling=SamplingSettings(temperature=0.0, repeat_penalty=1.0))
                outcomes = []
                with engine:
                    for req in requests:
                        use_tools(tools, registry_for(req.task, 1.0) if req.task is not None else builtins)
                        o = run_request(engine, req, oracle, args.timeout + 30)
                        outcomes.append(o)
                        print(f"{dialect:5} {mode:13} {'exact' if o.exact else '-----'} "
                              f"{'values' if o.values else '------'} {o.reason:13} {req.text[:40]:40} | "
                              f"{'; '.join(o.calls)[:80]} | {o.answer[:80]!r}", flush=True)
                summary = summarise(outcomes)
                report["runs"][f"{dialect}/{mode}"] = {"summary": summary, "outcomes": [o.__dict__ for o in outcomes]}
                print(json.dumps({f"{dialect}/{mode}": summary}), flush=True)
                if args.out:  # after each run, so that a long evaluation stopped early keeps what it measured
                    args.out.write_text(json.dumps(report, indent=1))
    backend.close()
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    print(f"\n{len(report['requests'])} requests; BFCL tasks skipped because their answers could not run: "
          f"{len(report['bfcl_skipped'])}")
    print("\n| dialect/mode | exact calls (built-in / BFCL) | every value | ended by itself | loops | leaked | "
          "example | tokens | first token | turn | parallel turn | result wait (median / p99) | its prefill | "
          "decode step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, run in report["runs"].items():
        s = run["summary"]
        print(f"| {key} | {s['exact_calls']}% ({s['exact_calls_builtin']}% / {s['exact_calls_bfcl']}%) | "
              f"{s['every_value']}% | {s['ended_by_itself']}% | {s['loops']} | {s['leaked_markup']} | "
              f"{s['mentions_example']} | {s['tokens_mean']} | {s['first_token_median_s']}s | {s['turn_median_s']}s | "
              f"{s['parallel_turn_median_s']}s | {s['result_wait_median_s']}s / {s['result_wait_p99_s']}s | "
              f"{s['result_prefill_median_s']}s | {s['decode_step_median_s']}s |")
    for dialect in dict.fromkeys(key.split("/")[0] for key in report["runs"]):
        sync, fast = report["runs"].get(f"{dialect}/sync"), report["runs"].get(f"{dialect}/async")
        if sync and fast and fast["summary"]["parallel_turn_median_s"]:
            ratio = sync["summary"]["parallel_turn_median_s"] / fast["summary"]["parallel_turn_median_s"]
            print(f"{dialect}: on the parallel requests, async answers {ratio:.2f}x as fast as sync (median turn)")


if __name__ == "__main__":
    sys.exit(main())
