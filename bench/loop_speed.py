"""How much the engine's decode loop costs, and how fast an interrupt reaches the KV cache.

1. Loop speed: tokens per second of the engine (sampler, monitor, masks, events, all of it) as a ratio
   to a bare loop of ``llama_decode`` + read logits + argmax on the same model and thread count,
   measured alternately in one run.
2. Interrupt latency: user interrupts queued at random moments while the engine decodes at full
   speed; the time from queueing to being in the KV cache, p50 and p99, against one decode step plus
   the interrupt's own prefill.

    python bench/loop_speed.py                    # the three generated shapes
    python bench/loop_speed.py --model my.gguf    # also any GGUF
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
import time
from pathlib import Path

import numpy as np

from asynclm.core import events as ev
from asynclm.core.cml import MARKERS
from asynclm.core.dialect import select_dialect
from asynclm.core.engine import Engine, EngineConfig
from asynclm.core.interrupts import Interrupt
from asynclm.core.llama import LlamaBackend
from asynclm.core.modelgen import REALISTIC, SMALL, TINY, cml_char_vocab, write_random_llama
from asynclm.core.policy import SampledPolicy
from asynclm.core.sampling import GREEDY, Sampler
from asynclm.tools.builtins import default_registry

PROMPT = "Tell me about the weather in Oslo and Lima, then add 17 and 23."


class FreeTextPolicy(SampledPolicy):
    """Greedy sampling that never writes a marker or ends the answer, so every token is plain text,
    and never repeats one of its last ``FRESH`` tokens: a random-weights model left to itself loops,
    and the engine ends a looping answer."""

    FRESH = 48

    def __init__(self, extra: np.ndarray) -> None:
        super().__init__(Sampler(GREEDY))
        self._extra = extra
        self._cache: dict[int, np.ndarray] = {}
        self._recent = np.full(self.FRESH, extra[0] if extra.size else 0, dtype=np.int64)  # a ring
        self._written = 0

    def choose(self, logits: np.ndarray, banned: np.ndarray) -> int:
        key = id(banned)
        merged = self._cache.get(key)
        if merged is None:
            merged = self._cache[key] = np.union1d(banned, self._extra)
        token = self.sampler.sample(logits, np.concatenate((merged, self._recent)))
        self._recent[self._written % self.FRESH] = token
        self._written += 1
        return token


def _free_text_bans(backend: LlamaBackend) -> np.ndarray:
    ids = [backend.control_token(m.value) for m in MARKERS]
    return np.union1d(backend.eog_tokens, np.array([i for i in ids if i is not None], dtype=np.int64))


def opening_tokens(backend: LlamaBackend) -> list[int]:
    """Exactly the context the engine starts a session's first answer from."""
    dialect = select_dialect(backend)
    tokens, _ = dialect.encode_interrupts([Interrupt("system", default_registry().describe(), "system"),
                                           Interrupt("user", PROMPT, "user")])
    return dialect.session_start() + tokens


def bare_loop(backend: LlamaBackend, n: int) -> float:
    """Tokens per second of llama_decode + logits + argmax, nothing else, from the same context."""
    lib, ctx, n_vocab = backend._lib, backend._ctx, backend.n_vocab
    bans = _free_text_bans(backend)
    backend.reset()
    backend.eval(opening_tokens(backend))
    one = (lib.llama_token * 1)()
    logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()
    logits[bans] = -np.inf
    token = int(np.argmax(logits))
    start = time.perf_counter()
    for _ in range(n):
        one[0] = token
        lib.llama_decode(ctx, lib.llama_batch_get_one(one, 1))
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        token = int(np.argmax(logits))
    elapsed = time.perf_counter() - start
    backend.reset()
    return n / elapsed


def engine_loop(backend: LlamaBackend, n: int) -> tuple[float, int]:
    """Tokens per second of the engine generating ``n`` tokens; also the calls/traps seen (0)."""
    backend.reset()
    engine = Engine(backend, default_registry(), policy=FreeTextPolicy(_free_text_bans(backend)),
                    config=EngineConfig(max_turn_tokens=n + 1))
    tokens: list[float] = []
    other = []

    def sink(e: ev.Event) -> None:
        if isinstance(e, ev.TokenGenerated):
            tokens.append(e.t)
        elif isinstance(e, (ev.CallDetected, ev.TrapEntered)):
            other.append(e)

    engine.subscribe(sink)
    with engine:
        engine.ask(PROMPT)
    backend.reset()
    return (len(tokens) - 1) / (tokens[-1] - tokens[0]), len(other)


def interrupt_latency(backend: LlamaBackend, n: int, every: float, seed: int = 0) -> dict:
    backend.reset()
    engine = Engine(backend, default_registry(), policy=FreeTextPolicy(_free_text_bans(backend)),
                    config=EngineConfig(max_turn_tokens=n))
    latencies: list[float] = []
    waits: list[float] = []
    prefills: list[float] = []
    sizes: list[int] = []
    steps: list[float] = []
    token_times: list[float] = []
    injections: list[ev.InterruptInjected] = []
    last = [None]
    entered = threading.Event()

    def sink(e: ev.Event) -> None:
        if isinstance(e, ev.InterruptInjected) and "user" in e.sources:
            entered.set()
        if isinstance(e, ev.InterruptInjected) and e.sources == ("user",) and last[0] is not None:
            latencies.append(e.latency)
            waits.append(e.latency - e.prefill)
            prefills.append(e.prefill)
            sizes.append(e.n_tokens)
            injections.append(e)
        elif isinstance(e, ev.TokenGenerated):
            token_times.append(e.t)
            if last[0] is not None:
                steps.append(e.t - last[0])
            last[0] = e.t

    engine.subscribe(sink)
    rng = random.Random(seed)
    done = threading.Event()
    with engine:
        before = engine.turns_ended
        engine.send(PROMPT)

        def pester() -> None:
            k = 0
            while not done.is_set():
                time.sleep(rng.uniform(0.5, 1.5) * every)
                if engine.busy:
                    entered.clear()
                    engine.interrupt("user", f"note {k}: also check Paris")
                    k += 1
                    # one note at a time: on a busy machine a long decode step would otherwise let
                    # several queue and enter together, and none would be measured alone
                    while not done.is_set() and not entered.wait(0.05):
                        pass

        t = threading.Thread(target=pester, daemon=True)
        t.start()
        engine.wait_turn(before)
        done.set()
        t.join()
    step = sorted(steps)
    lat, wait = sorted(latencies), sorted(waits)

    def pct(xs: list[float], q: float) -> float:
        return 1000 * xs[min(len(xs) - 1, int(len(xs) * q))]

    # Each wait against the step it landed in: queued between two tokens, it must enter right after
    # the second one (0.5 ms allowed for the hand-over between threads).
    import bisect
    over = 0
    for inj in injections:
        queued = inj.t - inj.latency
        i = bisect.bisect_right(token_times, queued)
        if 0 < i < len(token_times):
            in_progress = token_times[i] - token_times[i - 1]
            if inj.latency - inj.prefill > in_progress + 0.0005:
                over += 1
    return {
        "interrupts": len(lat),
        "interrupt_tokens": int(statistics.median(sizes)),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "wait_p50_ms": pct(wait, 0.5),
        "wait_p99_ms": pct(wait, 0.99),
        "prefill_p50_ms": 1000 * statistics.median(prefills),
        "decode_step_ms": pct(step, 0.5),
        "decode_step_p99_ms": pct(step, 0.99),
        "goal_p50_ms": pct(step, 0.5) + 1000 * statistics.median(prefills),
        "waits_longer_than_a_step": over,
    }


def off_main_thread(fn, *args):
    """Run ``fn`` on a fresh thread. With OpenMP builds of llama.cpp, once the main thread has run a
    graph, decoding on any other thread is about 2x slower; the engine decodes on its own thread,
    so every measurement here keeps llama.cpp off the main thread too."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join()
    return out[0]


def measure(name: str, path: Path, threads: int, n: int, rounds: int) -> dict:
    backend = LlamaBackend(path, n_ctx=max(2048, n + 512), n_threads=threads)
    bare, eng, events = [], [], 0
    for _ in range(rounds):  # alternate, so machine noise hits both alike
        bare.append(off_main_thread(bare_loop, backend, n))
        speed, seen = engine_loop(backend, n)
        eng.append(speed)
        events += seen
    b, e = statistics.median(bare), statistics.median(eng)
    # Interrupts far enough apart (100 decode steps) that each one's prefill is over before the next.
    lat = interrupt_latency(backend, n=min(8 * n, 3000), every=max(0.05, 100 / b))
    backend.close()
    return {"model": name, "params": backend.info.n_params, "threads": threads, "tokens": n,
            "bare_tok_s": b, "engine_tok_s": e, "ratio": e / b, "markers_seen": events, **lat}


SHAPES = {"test": (TINY, None, "f32"), "small": (SMALL, 1000, "f32"), "realistic": (REALISTIC, 32000, "f16")}


def write_shape(name: str, folder: Path) -> Path:
    """Write the generated shape ``name`` (one of ``SHAPES``) into ``folder`` and let the disk settle."""
    shape, size, dtype = SHAPES[name]
    path = write_random_llama(folder / f"{name}.gguf", vocab=cml_char_vocab(size=size), shape=shape,
                              dtype=dtype, name=f"random-{name}")
    os.sync()
    time.sleep(2)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], help="also measure this GGUF (repeatable)")
    p.add_argument("--shapes", default="test,small,realistic",
                   help="generated shapes to measure: test, small, realistic (comma-separated, or none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    args = p.parse_args(argv)

    results = []
    todo = [(name, None) for name in args.shapes.split(",") if name and name != "none"]
    todo += [(Path(m).name, Path(m)) for m in args.model]
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in todo:
            if path is None:
                path = write_shape(name, Path(tmp))
            n = args.tokens if name != "realistic" else max(60, args.tokens // 4)
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            results.append(measure(name, path, args.threads, n, args.rounds))
            if path.parent == Path(tmp):
                path.unlink()

    print(f"{'model':<12} {'params':>11} {'bare tok/s':>10} {'engine tok/s':>12} {'ratio':>6}")
    for r in results:
        print(f"{r['model']:<12} {r['params']:>11,} {r['bare_tok_s']:>10.0f} {r['engine_tok_s']:>12.0f} "
              f"{r['ratio']:>6.3f}")
    print()
    print(f"{'model':<12} {'n':>4} {'tokens':>6} {'latency p50/p99 ms':>19} {'prefill p50':>11} "
          f"{'wait p50/p99 ms':>16} {'step p50/p99 ms':>16} {'waits > their step':>19}")
    for r in results:
        print(f"{r['model']:<12} {r['interrupts']:>4} {r['interrupt_tokens']:>6} "
              f"{r['p50_ms']:>9.2f}/{r['p99_ms']:<9.2f} {r['prefill_p50_ms']:>11.2f} "
              f"{r['wait_p50_ms']:>7.2f}/{r['wait_p99_ms']:<8.2f} {r['decode_step_ms']:>7.2f}/{r['decode_step_p99_ms']:<8.2f} "
              f"{r['waits_longer_than_a_step']:>19}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
