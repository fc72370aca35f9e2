"""How many threads llama.cpp should decode with, on an idle machine and on a busy one.

asynclm decodes while its tools run, and people run it beside other work (a build, a training run).
This measures, for each thread count, the bare decode speed (``llama_decode`` + logits + argmax) and
the prefill time of the session's opening context, first on an idle machine and then beside ``--busy``
processes that each keep one core busy. Thread counts alternate round by round within one run
(``llama_set_n_threads`` on one context), so machine noise hits them alike; the figures are medians.

    python bench/threads.py                      # the embedded model and the `realistic` shape
    python bench/threads.py --model my.gguf      # any GGUF
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loop_speed import bare_loop, off_main_thread, opening_tokens, write_shape

from asynclm import EMBEDDED_MODEL
from asynclm.core.llama import LlamaBackend, available_cores


def _spin() -> None:
    while True:
        pass


def prefill_ms(backend: LlamaBackend, tokens: list[int]) -> float:
    backend.reset()
    start = time.perf_counter()
    backend.eval(tokens)
    elapsed = time.perf_counter() - start
    backend.reset()
    return 1000 * elapsed


def measure(backend: LlamaBackend, counts: list[int], n: int, rounds: int) -> dict[int, dict]:
    """Per thread count: decode tok/s of each round, their median, and the median prefill."""
    opening = opening_tokens(backend)
    speeds: dict[int, list[float]] = {c: [] for c in counts}
    prefills: dict[int, list[float]] = {c: [] for c in counts}
    for _ in range(rounds):
        for c in counts:
            backend.set_threads(c, c)
            speeds[c].append(off_main_thread(bare_loop, backend, n))
            prefills[c].append(off_main_thread(prefill_ms, backend, opening))
    return {c: {"tok_s": [round(s, 1) for s in speeds[c]], "tok_s_median": round(statistics.median(speeds[c]), 1),
                "prefill_ms": round(statistics.median(prefills[c]), 1), "prompt_tokens": len(opening)}
            for c in counts}


def run(name: str, path: Path, counts: list[int], busy: int, n: int, rounds: int) -> dict:
    backend = LlamaBackend(path, n_ctx=max(2048, n + 1024), n_threads=max(counts))
    print(f"{name}: idle ...", file=sys.stderr, flush=True)
    idle = measure(backend, counts, n, rounds)
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for h in hogs:
        h.start()
    try:
        print(f"{name}: beside {busy} busy process(es) ...", file=sys.stderr, flush=True)
        loaded = measure(backend, counts, n, rounds)
    finally:
        for h in hogs:
            h.terminate()
            h.join()
    backend.close()
    return {"model": name, "params": backend.info.n_params, "tokens": n, "rounds": rounds, "busy": busy,
            "idle": idle, "loaded": loaded}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], help="measure this GGUF (repeatable)")
    p.add_argument("--no-defaults", action="store_true", help="only the --model files")
    p.add_argument("--threads", default="", help="thread counts, e.g. 1,2 (default: 1 to the cores)")
    p.add_argument("--busy", type=int, default=0, help="busy processes for the loaded half (default: the cores)")
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    args = p.parse_args(argv)
    cores = available_cores()
    counts = [int(c) for c in args.threads.split(",") if c] or list(range(1, cores + 1))
    busy = args.busy or cores
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        todo = [] if args.no_defaults else [("embedded", EMBEDDED_MODEL, args.tokens), ("realistic", None, 60)]
        todo += [(Path(m).name, Path(m), args.tokens) for m in args.model]
        for name, path, n in todo:
            if path is None:
                path = write_shape(name, Path(tmp))
            results.append(run(name, path, counts, busy, n, args.rounds))
    print(f"{'model':<12} {'threads':>7} {'idle tok/s':>11} {'idle prefill':>13} "
          f"{'busy tok/s':>11} {'busy prefill':>13}")
    for r in results:
        for c in counts:
            i, b = r["idle"][c], r["loaded"][c]
            print(f"{r['model']:<12} {c:>7} {i['tok_s_median']:>11.1f} {i['prefill_ms']:>10.1f} ms "
                  f"{b['tok_s_median']:>11.1f} {b['prefill_ms']:>10.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": cores, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
