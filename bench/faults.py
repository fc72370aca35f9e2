"""Fault injection: tools that fail in every way a tool can, called through the real command line.

Each run is one ``asynclm-chat --headless --json`` process on the embedded model, whose output is
forced (``--script``) to write a batch of calls drawn at random from the faults below, then to end its
answer. What is counted, from the process's events, standard error and exit:

- tracebacks: "Traceback" or an asyncio complaint on standard error (none is expected at all);
- hung turns: a turn that did not end ``done``, or a process that had to be killed;
- calls without exactly one result interrupt: a call whose result, error or cancellation did not
  enter the model's context exactly once, or a call that was never detected;
- the time from the end of the last turn to the end of the process (goal: under 2 s).

    python bench/faults.py                      # 1,000 calls, 20 runs of 50
    python bench/faults.py --calls 200 --seed 3 --out faults.json   # 1,000 take about 3 minutes on two cores
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = '''
import asyncio
import time

from asynclm.tools.loader import tool


@tool(timeout=0.3)
def raises(n: int) -> str:
    """Raises an ordinary exception."""
    raise ValueError(f"bad value {n}")


@tool(timeout=0.3)
def stops(n: int, kind: str) -> str:
    """Raises a BaseException that is not an Exception."""
    raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
           "GeneratorExit": GeneratorExit}[kind](n)


@tool(timeout=0.3)
async def stops_async(n: int) -> str:
    """Raises SystemExit from a coroutine."""
    raise SystemExit(n)


@tool(timeout=0.3)
def hang_sync(n: int) -> str:
    """Blocks its thread for an hour."""
    time.sleep(3600)
    return "never"


@tool(timeout=0.3)
async def hang_async(n: int) -> str:
    """Awaits for an hour."""
    await asyncio.sleep(3600)
    return "never"


@tool(timeout=0.3)
async def deaf(n: int) -> str:
    """Swallows every cancellation."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


@tool(timeout=0.3)
def oversleeps(n: int) -> str:
    """Returns, but only after its timeout."""
    time.sleep(0.6)
    return "late"


@tool(timeout=5)
def floods(n: int) -> str:
    """Five megabytes of text."""
    return "flood " * 873_814


@tool(timeout=0.3)
def bad_bytes(n: int) -> bytes:
    """Bytes that are not UTF-8."""
    return b"ok \\xff\\xfe\\x80 " + str(n).encode()


@tool(timeout=0.3)
def surrogates(n: int) -> str:
    """Text with lone surrogates."""
    return f"half \\udc80 a pair \\ud800 {n}"


@tool(timeout=0.3)
def nothing(n: int) -> None:
    """Returns None."""
    return None


@tool(timeout=0.3)
def typed(n: int, flag: bool) -> str:
    """Called with arguments of the wrong types."""
    return "unreachable"
'''

FAULTS = {  # what a call to each fault looks like, given a distinct number n
    "raise": "raises(n={n})",
    "SystemExit": 'stops(n={n}, kind="SystemExit")',
    "KeyboardInterrupt": 'stops(n={n}, kind="KeyboardInterrupt")',
    "GeneratorExit": 'stops(n={n}, kind="GeneratorExit")',
    "SystemExit (async)": "stops_async(n={n})",
    "hang (sync)": "hang_sync(n={n})",
    "hang (async)": "hang_async(n={n})",
    "ignore cancel": "deaf(n={n})",
    "sleep past timeout": "oversleeps(n={n})",
    "5 MB output": "floods(n={n})",
    "bad bytes": "bad_bytes(n={n})",
    "lone surrogates": "surrogates(n={n})",
    "None": "nothing(n={n})",
    "wrong argument types": 'typed(n="{n}", flag="yes")',
}
NOISE = ("Traceback", "Task exception was never retrieved", "Task was destroyed", "Exception ignored",
         "Exception in thread")


@dataclass
class Run:
    calls: dict[str, str]  # call id -> fault
    results: Counter = field(default_factory=Counter)  # call id -> result interrupts entered
    detected: set[str] = field(default_factory=set)
    ended: str = ""
    killed: bool = False
    tracebacks: int = 0
    exit_delay: float = 0.0
    stderr: str = ""


def script_for(calls: dict[str, str], numbers: dict[str, int]) -> str:
    body = "".join(f"[CALL] {cid} [HEAD] {FAULTS[fault].format(n=numbers[cid])} [END]" for cid, fault in calls.items())
    return body + "All calls are back."


def run_once(calls: dict[str, str], numbers: dict[str, int], folder: Path, model: str | None,
             timeout: float) -> Run:
    run = Run(calls)
    (folder / "script.cml").write_text(script_for(calls, numbers) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "asynclm.tui.cli", "--headless", "--json", "--no-session",
           "--tools", str(folder / "faults.py"), "--script", f"@{folder / 'script.cml'}",
           "--payload-limit", "32", "--n-ctx", "8192", "--prompt", "Run the faults."]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=folder,
                            text=True, encoding="utf-8", errors="surrogateescape")
    deadline = time.monotonic() + timeout
    ended_at = None
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        event = json.loads(line)
        kind = event["type"]
        if kind == "InterruptInjected":
            for source in event["sources"]:
                if source in calls:
                    run.results[source] += 1
        elif kind == "CallDetected":
            run.detected.add(event["call_id"])
        elif kind == "TurnEnded":
            run.ended, ended_at = event["reason"], time.monotonic()
        if time.monotonic() > deadline:
            break
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        run.killed = True
    exited = time.monotonic()
    run.stderr = proc.stderr.read()
    run.tracebacks = sum(run.stderr.count(word) for word in NOISE)
    run.exit_delay = exited - ended_at if ended_at is not None else float("inf")
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=1000, help="calls in all (default 1000)")
    p.add_argument("--per-run", type=int, default=50, help="calls per process (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="a GGUF model (default: the embedded model)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take before it counts as hung")
    p.add_argument("--out", type=Path, help="write the counts as JSON")
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    kinds = list(FAULTS)
    runs: list[Run] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asynclm-faults-") as tmp:
        folder = Path(tmp)
        (folder / "faults.py").write_text(TOOLS, encoding="utf-8")
        left, n = args.calls, 0
        while left > 0:
            size = min(args.per_run, left)
            calls, numbers = {}, {}
            for i in range(size):
                n += 1
                cid = f"c{n}"
                calls[cid], numbers[cid] = rng.choice(kinds), n
            runs.append(run_once(calls, numbers, folder, args.model, args.timeout))
            left -= size
            last = runs[-1]
            print(f"run {len(runs)}: {size} calls, ended {last.ended or 'never'}, exit {last.exit_delay:.2f}s "
                  f"after the turn", file=sys.stderr, flush=True)

    by_fault: Counter = Counter()
    unanswered: Counter = Counter()
    for run in runs:
        for cid, fault in run.calls.items():
            by_fault[fault] += 1
            if run.results[cid] != 1 or cid not in run.detected:
                unanswered[fault] += 1
    report = {
        "calls": sum(by_fault.values()),
        "runs": len(runs),
        "tracebacks": sum(r.tracebacks for r in runs),
        "hung_turns": sum(1 for r in runs if r.killed or r.ended != "done"),
        "calls_without_exactly_one_result": sum(unanswered.values()),
        "slowest_exit_after_turn_s": round(max(r.exit_delay for r in runs), 3),
        "seconds": round(time.monotonic() - started, 1),
        "calls_by_fault": dict(sorted(by_fault.items())),
        "unanswered_by_fault": dict(sorted(unanswered.items())),
        "stderr": [r.stderr for r in runs if r.tracebacks][:3],
    }
    width = max(map(len, FAULTS))
    print(f"{'fault':<{width}}  calls  without one result")
    for fault in FAULTS:
        print(f"{fault:<{width}}  {by_fault[fault]:>5}  {unanswered[fault]:>5}")
    print(f"{report['calls']} calls in {report['runs']} runs, {report['seconds']}s: "
          f"{report['tracebacks']} tracebacks, {report['hung_turns']} hung turns, "
          f"{report['calls_without_exactly_one_result']} calls without exactly one result interrupt, "
          f"slowest exit {report['slowest_exit_after_turn_s']}s after the last turn")
    for text in report["stderr"]:
        print(text, file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    clean = (report["tracebacks"] == report["hung_turns"] == report["calls_without_exactly_one_result"] == 0
             and report["slowest_exit_after_turn_s"] < 2.0)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
