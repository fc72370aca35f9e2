"""The accuracy side: does the embedded model call tools as well in every mode?

The speed benchmark (``function_calling.py``) forces what the model writes. This one does not: the
embedded model decodes greedily on the training pipeline's held-out requests (held-out seeds and entity
values never seen in training), with the real built-in tools, once in each mode. The AsyncLM paper
reports that its fine-tuned models' call accuracy is the same under sync and async function calling;
this measures that for asynclm-tiny, which was trained on async sessions only.

    python bench/accuracy.py --episodes 60                 # embedded model, all three modes
    python bench/accuracy.py --model my.gguf --episodes 20

The argument values are steered as the app steers them (``--copy-bias``: on for the embedded model), and
where the model stops writing calls the engine checks for a task left out as the app does
(``--complete-calls``: on for the embedded model).
Reported per mode (a turn still running after ``--timeout`` seconds counts as not valid): valid CML,
exact calls, every result value in the answer, user interrupts acted on, fully correct; and across modes, the share of episodes whose calls were the same in all three.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asynclm import EMBEDDED_MODEL  # noqa: E402
from asynclm.core.engine import Mode  # noqa: E402
from asynclm.core.profiles import profile_for  # noqa: E402
from training.evaluate import HELDOUT_EVAL_BASE, run_episode, summarise  # noqa: E402

MODES = ("sync", "sync-parallel", "async")
MEASURES = ("valid_cml", "exact_calls", "every_result_value", "user_interrupts_acted_on", "fully_correct")


def run(model: Path, episodes: int, first_seed: int, progress=None, timeout: float = 15.0,
        copy_bias: float = 0.0, complete_calls: bool = False, break_loops: bool = False) -> dict:
    results: dict[str, list] = {m: [] for m in MODES}
    for i in range(episodes):
        for mode in MODES:
            results[mode].append(run_episode(model, first_seed + i, mode=Mode(mode), timeout=timeout,
                                             copy_bias=copy_bias, complete_calls=complete_calls,
                                             break_loops=break_loops))
        if progress:
            progress(i + 1)
    same = sum(1 for i in range(episodes)
               if len({tuple(sorted(results[m][i].written)) for m in MODES}) == 1)
    exact_in = {m: [e.exact for e in results[m]] for m in MODES}
    return {
        "model": str(model),
        "episodes": episodes,
        "first_seed": first_seed,
        "copy_bias": copy_bias,
        "complete_calls": complete_calls,
        "break_loops": break_loops,
        "modes": {m: summarise(results[m]) for m in MODES},
        "same_calls_in_every_mode": round(same / episodes, 4) if episodes else None,
        "exact_in_every_mode": round(sum(all(exact_in[m][i] for m in MODES) for i in range(episodes))
                                     / episodes, 4) if episodes else None,
        "per_episode": [{"seed": first_seed + i, "request": results["async"][i].request,
                         **{m: {"written": results[m][i].written, "exact": results[m][i].exact,
                                "valid": results[m][i].valid} for m in MODES}}
                        for i in range(episodes)],
    }


def table(report: dict) -> "object":
    from rich.table import Table

    bias = report.get("copy_bias") or 0
    t = Table(title=f"call accuracy by mode: {Path(report['model']).name}, {report['episodes']} held-out "
                    f"requests, greedy, copy bias {bias:g}"
                    + (", completion check" if report.get("complete_calls") else "")
                    + (", loops broken" if report.get("break_loops") else ""))
    t.add_column("measure")
    for m in MODES:
        t.add_column(m, justify="right")

    def cell(figure: dict) -> str:
        return "-" if figure["rate"] is None else f"{figure['rate']:.0%} of {figure['n']}"

    for measure in MEASURES:
        t.add_row(measure.replace("_", " "), *(cell(report["modes"][m][measure]) for m in MODES))
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/accuracy.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(EMBEDDED_MODEL))
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--first-seed", type=int, default=HELDOUT_EVAL_BASE)
    p.add_argument("--timeout", type=float, default=15.0,
                   help="seconds a turn may take; one still running then counts as not valid")
    p.add_argument("--copy-bias", type=float, default=None, metavar="LOGITS",
                   help="steer argument values toward the conversation's words, as the app does "
                        "(default: the app's default for the model)")
    p.add_argument("--complete-calls", action=argparse.BooleanOptionalAction, default=None,
                   help="check for calls left out, as the app does (default: the app's default for the model)")
    p.add_argument("--break-loops", action=argparse.BooleanOptionalAction, default=None,
                   help="break loops in answers, as the app does (default: the app's default for the model)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "accuracy.json"))
    args = p.parse_args(argv)
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    model = Path(args.model).expanduser()
    if not model.is_file():
        console.print(f"accuracy: no model file at {model}.")
        return 2
    for name, value in profile_for(model).engine_settings().items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    t0 = time.time()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("episodes (each in three modes)", total=args.episodes)
        report = run(model, args.episodes, args.first_seed, lambda n: bar.update(task, completed=n),
                     args.timeout, args.copy_bias, args.complete_calls, args.break_loops)
    report["seconds"] = round(time.time() - t0)
    report["command"] = "python bench/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Console().print(table(report))
    print(f"same calls in every mode: {report['same_calls_in_every_mode']:.0%}; "
          f"exact in every mode: {report['exact_in_every_mode']:.0%}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
