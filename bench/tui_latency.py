"""Keystroke-to-screen latency of the app while the model decodes at full speed.

The real app runs headless (Textual's ``run_test``) over the real engine. A long scripted answer
streams at the model's full decode speed; meanwhile keystrokes arrive at random 20-60 ms intervals.
Latency runs from a key event's creation to the end of the first screen refresh after the prompt
changed. Also reported: UI update batches per second and the decode speed during the run.

    python bench/tui_latency.py                 # the test shape and the embedded model's shape
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from textual import events

from asynclm.core import events as ev
from asynclm.core.engine import Engine, EngineConfig
from asynclm.core.llama import LlamaBackend
from asynclm.core.modelgen import SMALL, TINY, cml_char_vocab, write_random_llama
from asynclm.core.policy import ScriptedPolicy
from asynclm.tools.builtins import default_registry
from asynclm.tui.app import ChatApp
from asynclm.tui.widgets import PromptArea


class MeasuredApp(ChatApp):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.key_times: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []

    def on_text_area_changed(self, event) -> None:
        if self.key_times:
            sent = self.key_times.popleft()
            self.call_after_refresh(lambda: self.latencies.append(time.monotonic() - sent))


async def measure(path: Path, keys: int, seed: int, switch_interval: float | None = None,
                  threads: int | None = None) -> dict:
    text = ("The answer streams on, word after word, while you type. " * 6 + "\n\n") * 300

    def make_engine(progress):
        backend = LlamaBackend(path, n_ctx=131072 if "tiny" in path.name else 32768,
                               n_threads=threads)
        return Engine(backend, default_registry(), policy=ScriptedPolicy([text]),
                      config=EngineConfig(max_turn_tokens=10**6))

    app = MeasuredApp(make_engine, export_dir=Path(tempfile.gettempdir()), show_timeline=True)
    before = sys.getswitchinterval()
    if switch_interval is not None:  # how soon a waiting thread gets the GIL from the decode thread
        sys.setswitchinterval(switch_interval)
    rng = random.Random(seed)
    async with app.run_test(size=(140, 45)) as pilot:
        while app.engine is None:
            await pilot.pause(0.05)
        app.engine.send("talk for a long time")
        while not app.busy:
            await pilot.pause(0.01)
        prompt = app.query_one("#prompt", PromptArea)
        prompt.focus()
        await pilot.pause(0.5)
        tokens_before = sum(1 for e in app.events if isinstance(e, ev.TokenGenerated))
        updates_before, start = app.updates, time.monotonic()
        for i in range(keys):
            await asyncio.sleep(rng.uniform(0.02, 0.06))
            key = events.Key("x", "x")
            app.key_times.append(key.time)
            prompt.post_message(key)
        await pilot.pause(0.3)
        elapsed = time.monotonic() - start
        tokens = sum(1 for e in app.events if isinstance(e, ev.TokenGenerated)) - tokens_before
        still_busy = app.busy
        app.engine.stop_and_wait()
    sys.setswitchinterval(before)
    lat = sorted(app.latencies)
    return {
        "model": path.stem, "threads": threads or "default", "keys": len(lat), "busy_throughout": still_busy,
        "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max_ms": 1000 * lat[-1], "mean_ms": 1000 * statistics.mean(lat),
        "ui_updates_per_s": (app.updates - updates_before) / elapsed, "decode_tok_s": tokens / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--switch-interval", type=float, default=None, metavar="SECONDS",
                   help="Python's thread switch interval for the run (default: Python's, 5 ms)")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the app's)")
    p.add_argument("--only", choices=["tiny", "small"], default=None, help="measure one model shape")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape, size in (("tiny", TINY, None), ("small", SMALL, 1000)):
            if args.only and name != args.only:
                continue
            path = write_random_llama(Path(tmp) / f"{name}.gguf", vocab=cml_char_vocab(size=size),
                                      shape=shape, name=f"random-{name}")
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            results.append(asyncio.run(measure(path, args.keys, args.seed, args.switch_interval, args.threads)))
    print(f"{'model':<8} {'keys':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'UI updates/s':>13} {'decode tok/s':>13}")
    for r in results:
        print(f"{r['model']:<8} {r['keys']:>5} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} "
              f"{r['ui_updates_per_s']:>13.1f} {r['decode_tok_s']:>13.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
