"""What the completion check costs the embedded model's turns in the app: turn time and first call start.

Each run is a new engine on the embedded model, set up as ``asynclm-chat`` sets it up (its tools, copy
bias, greedy decoding, async mode), answering one request; the settings alternate run by run, so that a
slower spell of the machine falls on all of them:

- ``off``: no completion check (``--no-complete-calls``);
- ``check``: the check without longest first (``EngineConfig.longest_first`` off);
- ``app``: the check as the app runs it, longest first included.

    python bench/check_cost.py                  # three requests x 3 settings x 3 runs, about 30 seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asynclm.core import events as ev

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = ["what time is it in Paris", "what is 12*34 and what time is it in Berlin",
            "how big is pyproject.toml, what is 17*23 and what time is it in Tokyo"]
SETTINGS = {"off": {"complete_calls": False}, "check": {"complete_calls": True, "longest_first": False},
            "app": {"complete_calls": True, "longest_first": True}}


def run_once(request: str, setting: dict) -> dict:
    """One request on a new engine with ``setting`` applied to the app's engine configuration."""
    from asynclm.tui.cli import apply_settings, build_engine, build_parser, build_tools

    args = build_parser().parse_args(["--no-session", "--root", str(ROOT)])
    apply_settings(args)
    tools, _ = build_tools(args)
    args.complete_calls = setting["complete_calls"]
    engine = build_engine(args, tools)
    engine.config = dataclasses.replace(engine.config, **setting)
    seen: dict = {"calls": []}

    def sink(e: ev.Event) -> None:
        if isinstance(e, ev.TurnStarted):
            seen["start"] = e.t
        elif isinstance(e, ev.CallStarted):
            seen["calls"].append((e.t, e.call_id))
        elif isinstance(e, ev.TurnEnded):
            seen["end"], seen["reason"] = e.t, e.reason

    engine.subscribe(sink)
    engine.start()
    try:
        if not engine.ask(request, timeout=60):
            raise RuntimeError(f"no answer to {request!r} within 60 s")
    finally:
        engine.close()
        engine.backend.close()
    first = seen["calls"][0][0] - seen["start"] if seen["calls"] else None
    return {"turn": seen["end"] - seen["start"], "first_call": first, "calls": len(seen["calls"]),
            "reason": seen["reason"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "check_cost.json"))
    args = p.parse_args(argv)
    results: dict[str, dict[str, list[dict]]] = {r: {s: [] for s in SETTINGS} for r in REQUESTS}
    for _ in range(args.runs):
        for request in REQUESTS:
            for name, setting in SETTINGS.items():
                results[request][name].append(run_once(request, setting))
    table = Table(title="the completion check's cost: turn time, first call start (seconds, each run)")
    table.add_column("request")
    for name in SETTINGS:
        table.add_column(name)
    for request, by_setting in results.items():
        table.add_row(request, *(" ".join(f"{r['turn']:.2f}" for r in runs) + "\nfirst call "
                                 + " ".join("-" if r["first_call"] is None else f"{r['first_call']:.2f}"
                                            for r in runs)
                                 for runs in by_setting.values()))
    Console().print(table)
    Path(args.out).write_text(json.dumps({"requests": results, "settings": SETTINGS}, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
