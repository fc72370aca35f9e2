"""Sync vs sync-parallel vs async function calling, on BFCL tasks, against the LPT bound.

The AsyncLM paper's set-up, measured on this engine. Every task is played under each mode by forced
decoding (the scripted policy writes the same acknowledgement, the same calls with the ground-truth
arguments in LPT order, and the same answer tokens), so only the scheduling differs. Every token still
goes through a real model in the real engine, with real KV-cache injection of every result.

Workloads:
- ``parallel``, ``parallel_multiple``: BFCL v4 entries read from ``--bfcl-dir``;
- ``multi_step``: three independent chains of 1-5 dependent calls, written with dataflow references;
- ``user_interrupts``: three BFCL parallel tasks, the second and third typed by the user 200 ms and
  400 ms after the model starts writing.

Each BFCL function becomes a tool that sleeps an emulated latency, fixed per function name, drawn from
30-500 ms with a mean near 110 ms (the paper's range), declares that latency as its estimate, and
returns a value derived from its arguments.

    python bench/function_calling.py                               # embedded + realistic model
    python bench/function_calling.py --models tiny --tasks 3       # quick
    python bench/function_calling.py --model my.gguf               # also any GGUF
    python bench/function_calling.py --models "" --model qwen2.5-coder-0.5b --tasks 5   # a real model
    python bench/function_calling.py --ms-per-token 5              # emulate a remote model
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

from asynclm.core import events as ev
from asynclm.core.cml import split_atoms
from asynclm.core.dialect import Dialect, select_dialect
from asynclm.core.engine import Engine, EngineConfig, Mode
from asynclm.core.llama import LlamaBackend
from asynclm.core.policy import ScriptedPolicy
from asynclm.core.reducer import SessionState

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bfcl import Call, Task, bfcl_tasks, combine, latency_of, registry_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = ("sync", "sync-parallel", "async")
WORKLOADS = ("parallel", "parallel_multiple", "multi_step", "user_interrupts")
ARRIVALS = (0.0, 0.2, 0.4)  # user-triggered tasks: seconds after the model's first token

# ------------------------------------------------------------------------------------------------
# Tasks


def multi_step_tasks(n: int, seed: int) -> list[Task]:
    """Three independent chains of 1-5 calls; each call after the first takes its predecessor's result."""
    rng = random.Random(seed)
    steps = [f"step_{w}" for w in ("parse", "fetch", "rank", "merge", "score", "index", "render", "check")]
    schema = {"type": "dict", "properties": {"x": {"type": "any"}}, "required": ["x"]}
    tasks = []
    for t in range(n):
        calls, k = [], 0
        for chain in "abc":
            for depth in range(rng.randint(1, 5)):
                k += 1
                name = rng.choice(steps)
                if depth == 0:
                    calls.append(Call(f"{chain}{depth + 1}", name, {"x": rng.randint(1, 99)}))
                else:
                    calls.append(Call(f"{chain}{depth + 1}", name, {}, {"x": f"{chain}{depth}"}))
        tasks.append(Task(f"multi_step_{t}", "multi_step", [calls], ["Run the three pipelines."],
                          {name: schema for name in steps}))
    return tasks


def user_interrupt_tasks(parallel: list[Task], n: int) -> list[Task]:
    """Three parallel tasks per item; the user types the second and third while the model writes."""
    return [combine([parallel[(3 * t + k) % len(parallel)] for k in range(3)], f"user_interrupts_{t}",
                    "user_interrupts") for t in range(n)]


# ------------------------------------------------------------------------------------------------
# Scripts: the same words under every mode


def lpt_order(calls: list[Call]) -> list[Call]:
    """Ready calls longest-estimate-first; a call that takes another's result comes after it."""
    done: set[str] = set()
    left, out = list(calls), []
    while left:
        ready = [c for c in left if set(c.refs.values()) <= done]
        ready.sort(key=lambda c: -latency_of(c.name))
        out.append(ready[0])
        done.add(ready[0].call_id)
        left.remove(ready[0])
    return out


def segment_script(calls: list[Call], first: bool) -> str:
    ack = "Working on it; the calls are running." if first else "Adding that too."
    block = "".join(f"[CALL] {c.call_id} [HEAD] {c.expr()} [END]" for c in lpt_order(calls))
    answer = " ".join(f"{c.call_id} is done." for c in calls)
    return f"{ack}{block} {answer}"


# ------------------------------------------------------------------------------------------------
# Playing a task


class BenchPolicy(ScriptedPolicy):
    """The scripted policy for a task's segments: the first answers the opening message; each later
    one answers a message the user types, whether it enters mid-answer or opens a turn of its own.
    ``seconds_per_token`` adds a fixed delay per token: a remote model's output speed."""

    def __init__(self, segments: list[str], seconds_per_token: float) -> None:
        super().__init__([])
        self._segments = list(segments)
        self.seconds_per_token = seconds_per_token
        self._pace = threading.Event()

    def _next_segment(self) -> str:
        return self._segments.pop(0) if self._segments else ""

    def start_turn(self, turn: int, dialect) -> None:
        self.add_turn(self._next_segment())
        super().start_turn(turn, dialect)

    def injected(self, interrupts) -> None:
        for intr in interrupts:
            if intr.source == "user":
                self.write_next(self._next_segment())

    def choose(self, logits, banned) -> int:
        if self.seconds_per_token:
            self._pace.wait(self.seconds_per_token)
        return super().choose(logits, banned)


def play(backend: LlamaBackend, dialect: Dialect, task: Task, mode: str, scale: float,
         ms_per_token: float) -> dict:
    scripts = [segment_script(calls, k == 0) for k, calls in enumerate(task.segments)]
    engine = Engine(backend, registry_for(task, scale), policy=BenchPolicy(scripts, ms_per_token / 1000),
                    dialect=dialect, config=EngineConfig(mode=Mode.parse(mode), max_turn_tokens=8192))
    log: list[ev.Event] = []
    timers: list[threading.Timer] = []
    n_calls = sum(len(seg) for seg in task.segments)

    def sink(e: ev.Event) -> None:
        log.append(e)
        if isinstance(e, ev.TokenGenerated) and not timers:
            for k, request in enumerate(task.requests[1:], 1):
                timers.append(threading.Timer(ARRIVALS[k], engine.send, args=(request,)))
                timers[-1].daemon = True
                timers[-1].start()

    engine.subscribe(sink)
    backend.reset()
    engine.start()
    try:
        if not engine.ask(task.requests[0], timeout=600):
            raise RuntimeError(f"{task.task_id} did not finish under {mode}")
        for timer in timers:  # requests typed after the first answer ended open turns of their own
            timer.join()
        while engine.busy or sum(isinstance(e, (ev.CallFinished, ev.CallFailed)) for e in log) < n_calls:
            if not engine.wait_turn(engine.turns_ended, timeout=600):
                raise RuntimeError(f"{task.task_id} did not finish under {mode}")
    finally:
        engine.close()
    return measure(log, task, engine, scripts)


def measure(log: list[ev.Event], task: Task, engine: Engine, scripts: list[str]) -> dict:
    tokens = [e for e in log if isinstance(e, ev.TokenGenerated)]
    end = [e for e in log if isinstance(e, ev.TurnEnded)][-1]
    stats = [e for e in log if isinstance(e, ev.Stats)]
    generated = sum(s.generated for s in stats)
    t0 = tokens[0].t
    latency = end.t - t0
    per_token = sum(s.decode_seconds for s in stats) / max(generated, 1)
    # each token's own time: on a busy machine the speed moves within a task, and the bound should
    # price the tokens before a call as they really took, not at the task's mean
    token_seconds = [e.seconds for e in tokens]
    session = SessionState()
    for e in log:
        session.apply(e)
    runtime = {c.call_id: c.took for c in session.calls.values() if c.state in ("done", "failed") and c.took is not None}
    calls = {c.call_id: c for seg in task.segments for c in seg}
    if set(runtime) != set(calls):
        raise RuntimeError(f"{task.task_id}: calls {sorted(set(calls) - set(runtime))} did not run")
    bound = lpt_bound(engine.dialect, task, scripts, token_seconds if len(tokens) == generated else per_token,
                      runtime)
    injected = [e for e in log if isinstance(e, ev.InterruptInjected) and "user" not in e.sources]
    return {
        "task": task.task_id,
        "latency": latency,
        "bound": bound,
        "efficiency": bound / latency if latency > 0 else 0.0,
        "generated": generated,
        "ms_per_token": per_token * 1000,
        "calls": len(calls),
        "overhead_tokens": sum(e.n_tokens for e in injected),  # results and notes, not the user's words
        "timeline": {
            "tokens": [round(e.t - t0, 4) for e in tokens],
            "calls": {c: [round(session.calls[c].started - t0, 4), round(session.calls[c].ended - t0, 4)]
                      for c in runtime},
            "end": round(latency, 4),
        },
    }


def lpt_bound(dialect: Dialect, task: Task, scripts: list[str], per_token: float | Sequence[float],
              runtime: dict[str, float]) -> float:
    """The LPT bound: the model writes every token at ``per_token`` seconds (or the n-th token it
    writes in ``per_token[n]`` seconds, the times measured in the run) and does nothing else.

    A segment the user types enters at the first token boundary outside a block after it arrives and
    is written before the rest of the segment it interrupts, as the engine and the scripted policy do.
    The clock starts when the first token is out, as the measured latency does. Each call runs its
    measured ``runtime`` from the moment its ``[END]`` is chosen (the engine starts it there, then
    decodes the token), or from its dependency's completion, with no other delay. The answer cannot
    end before every token is written and every call is done."""
    def tokens_in(text: str) -> int:
        return len(dialect.encode(split_atoms(text)))

    segments = []  # per segment: its length in tokens, its calls' block spans and [END] positions
    for seg, script in zip(task.segments, scripts):
        spans, ends = [], {}
        for call in seg:
            start = script.index(f"[CALL] {call.call_id} [HEAD]")
            end = script.index("[END]", start) + len("[END]")
            spans.append((tokens_in(script[:start]), tokens_in(script[:end])))
            ends[spans[-1][1]] = call.call_id
        segments.append((tokens_in(script), spans, ends))

    times = [per_token] if isinstance(per_token, (int, float)) else list(per_token)
    mean = sum(times) / max(len(times), 1)
    clock, issued, written = 0.0, {}, 0
    writing: list[list[int]] = []  # [segment, tokens written], the one being written last
    arrived = 0
    while True:
        safe = not writing or not any(a < writing[-1][1] < b for a, b in segments[writing[-1][0]][1])
        due = arrived < len(segments) and (not writing or (safe and ARRIVALS[arrived] <= clock))
        if due:
            clock = max(clock, ARRIVALS[arrived])
            writing.append([arrived, 0])
            arrived += 1
        elif not writing:
            break
        elif writing[-1][1] == segments[writing[-1][0]][0]:
            writing.pop()
        else:
            writing[-1][1] += 1
            # the first token is out when the measured latency starts; the others take their time
            took = 0.0 if written == 0 else times[written] if written < len(times) else mean
            written += 1
            if (call_id := segments[writing[-1][0]][2].get(writing[-1][1])) is not None:
                issued[call_id] = clock  # the engine starts a call as its [END] is chosen, then decodes it
            clock += took
    completion: dict[str, float] = {}
    for seg in task.segments:
        for call in lpt_order(seg):  # a call that takes another's result comes after it
            ready = max([issued[call.call_id]] + [completion[d] for d in call.refs.values()])
            completion[call.call_id] = ready + runtime[call.call_id]
    return max([clock] + list(completion.values()))


# ------------------------------------------------------------------------------------------------
# Running and reporting


def summarise(rows: dict[str, list[dict]]) -> dict:
    out = {}
    sync_mean = statistics.fmean(r["latency"] for r in rows["sync"])
    for mode in MODES:
        lat = [r["latency"] for r in rows[mode]]
        mean = statistics.fmean(lat)
        out[mode] = {
            "tasks": len(lat),
            "mean_s": round(mean, 4),
            "p50_s": round(statistics.median(lat), 4),
            "speedup_vs_sync": round(sync_mean / mean, 3),
            "bound_mean_s": round(statistics.fmean(r["bound"] for r in rows[mode]), 4),
            "efficiency": round(statistics.fmean(r["efficiency"] for r in rows[mode]), 3),
            "overhead_tokens": round(statistics.fmean(r["overhead_tokens"] for r in rows[mode]), 1),
            "ms_per_token": round(statistics.fmean(r["ms_per_token"] for r in rows[mode]), 2),
        }
    return out


def workloads(args: argparse.Namespace) -> dict[str, list[Task]]:
    bfcl = Path(args.bfcl_dir)
    if not (bfcl / "BFCL_v4_parallel.json").exists():
        raise SystemExit(f"no BFCL data in {bfcl}; pass --bfcl-dir (see ../shared/bfcl/README.md)")
    loaded = {category: bfcl_tasks(bfcl, category, 3 * args.tasks) for category in ("parallel", "parallel_multiple")}
    for category, got in loaded.items():
        if got.skipped:
            print(f"{category}: skipped {len(got.skipped)} task(s) whose answers could not run: "
                  + "; ".join(f"{k} ({why})" for k, why in got.skipped.items()), file=sys.stderr)
    parallel = loaded["parallel"].tasks
    chosen = {
        "parallel": parallel[:args.tasks],
        "parallel_multiple": loaded["parallel_multiple"].tasks[:args.tasks],
        "multi_step": multi_step_tasks(args.tasks, args.seed),
        "user_interrupts": user_interrupt_tasks(parallel, args.tasks),
    }
    return {name: chosen[name] for name in args.workloads}


def model_paths(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    from asynclm import EMBEDDED_MODEL
    from asynclm.core.modelgen import REALISTIC, TINY, cml_char_vocab, write_random_llama, write_with_vocab

    paths: dict[str, Path] = {}
    for name in args.models:
        if name == "embedded":
            paths[name] = Path(EMBEDDED_MODEL)
        elif name == "tiny":
            paths[name] = write_random_llama(folder / "tiny.gguf", shape=TINY, seed=1)
        elif name == "realistic":
            paths[name] = write_random_llama(folder / "realistic.gguf", shape=REALISTIC, seed=1,
                                             vocab=cml_char_vocab(size=32000), dtype="f16")
        elif name == "realistic-bpe":  # the same shape with Llama 3's tokenizer: the chat dialect
            vocab = Path(args.vocab_dir) / "ggml-vocab-llama-bpe.gguf"
            if not vocab.exists():
                raise SystemExit(f"no {vocab.name} in {args.vocab_dir}; pass --vocab-dir (../shared/vocab)")
            paths[name] = write_with_vocab(folder / "realistic-bpe.gguf", vocab, shape=REALISTIC, seed=1)
        else:
            raise SystemExit(f"unknown model {name!r}; choose from embedded, tiny, realistic, realistic-bpe "
                             "(or --model PATH)")
    if args.model:  # a GGUF path, or a named model (asynclm-chat --models)
        from asynclm.core.catalog import resolve

        paths[Path(args.model).stem] = Path(resolve(args.model))
    return paths


def run(args: argparse.Namespace) -> dict:
    from rich.progress import Progress

    tasks = workloads(args)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "threads": args.threads},
                              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "chart")},
                              "models": {}}
    with tempfile.TemporaryDirectory() as tmp, Progress(transient=True) as progress:
        paths = model_paths(args, Path(tmp))
        total = len(paths) * sum(len(t) for t in tasks.values()) * len(MODES)
        bar = progress.add_task("tasks", total=total)
        for model, path in paths.items():
            backend = LlamaBackend(path, n_ctx=args.n_ctx, n_threads=args.threads)
            dialect = select_dialect(backend)  # once a model: it reads the whole vocabulary
            per_model: dict[str, Any] = {}
            try:
                for workload, items in tasks.items():
                    rows: dict[str, list[dict]] = {m: [] for m in MODES}
                    for task in items:
                        for mode in MODES:
                            progress.update(bar, description=f"{model} · {workload} · {task.task_id} · {mode}")
                            rows[mode].append(play(backend, dialect, task, mode, args.latency_scale,
                                                   args.ms_per_token))
                            progress.advance(bar)
                    per_model[workload] = {"summary": summarise(rows), "tasks": rows}
            finally:
                backend.close()
            report["models"][model] = per_model
    return report


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="function calling: end-to-end latency (first token to end of answer)")
    for col in ("model", "workload", "mode", "mean", "p50", "vs sync", "LPT bound", "efficiency",
                "overhead tok", "ms/token"):
        table.add_column(col, justify="left" if col in ("model", "workload", "mode") else "right")
    for model, per_model in report["models"].items():
        for workload, data in per_model.items():
            for mode, s in data["summary"].items():
                table.add_row(model, workload, mode, f"{s['mean_s'] * 1000:.0f} ms", f"{s['p50_s'] * 1000:.0f} ms",
                              f"{s['speedup_vs_sync']:.2f}x", f"{s['bound_mean_s'] * 1000:.0f} ms",
                              f"{s['efficiency']:.2f}", f"{s['overhead_tokens']:.0f}", f"{s['ms_per_token']:.1f}")
    Console(width=max(130, Console().width)).print(table)


def chart(report: dict, out: Path) -> None:
    """One task under the three modes: when the model wrote and when each call ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = next(iter(report["models"]))
    per_model = report["models"][model]
    workload = "parallel_multiple" if "parallel_multiple" in per_model else next(iter(per_model))
    rows = per_model[workload]["tasks"]
    fig, axes = plt.subplots(len(MODES), 1, figsize=(9, 1.2 + 1.1 * len(MODES)), sharex=True)
    for ax, mode in zip(axes, MODES):
        tl = rows[mode][0]["timeline"]
        calls = sorted(tl["calls"].items(), key=lambda kv: kv[1][0])
        ax.scatter(tl["tokens"], [0] * len(tl["tokens"]), s=2, color="tab:blue")
        for i, (cid, (a, b)) in enumerate(calls, 1):
            ax.plot([a, b], [i, i], lw=4, color="tab:orange")
            ax.text(b, i, f" {cid}", va="center", fontsize=7)
        ax.axvline(tl["end"], color="k", lw=0.8)
        ax.set_yticks([0] + list(range(1, len(calls) + 1)), ["model"] + [c for c, _ in calls], fontsize=7)
        ax.set_title(f"{mode}: {tl['end'] * 1000:.0f} ms", fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds from the first token")
    fig.suptitle(f"{model} · {workload} · {rows['async'][0]['task']}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="embedded,realistic",
                   help="comma-separated: embedded, tiny, realistic (a generated 246M-parameter shape with "
                        "a character vocabulary), realistic-bpe (the same shape with Llama 3's tokenizer)")
    p.add_argument("--model", help="also any GGUF file, or a named model such as qwen2.5-coder-0.5b")
    p.add_argument("--bfcl-dir", default=str(ROOT.parent / "shared" / "bfcl"))
    p.add_argument("--vocab-dir", default=str(ROOT.parent / "shared" / "vocab"),
                   help="real tokenizers, for realistic-bpe")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--tasks", type=int, default=20, help="tasks per workload")
    p.add_argument("--ms-per-token", type=float, default=0.0, help="extra delay per token (a remote model)")
    p.add_argument("--latency-scale", type=float, default=1.0, help="multiply every tool latency")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "function_calling.json"))
    p.add_argument("--chart", default=str(ROOT / "docs" / "benchmarks-timeline.png"))
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print_table(report)
    if args.chart:
        chart(report, Path(args.chart))
    print(f"results: {out}" + (f" · chart: {args.chart}" if args.chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
