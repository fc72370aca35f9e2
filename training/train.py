"""Build the embedded model from nothing: traces, tokenizer, training, GGUF export. One command:

    python -m training.train                      # the shipped model (under 90 minutes on 2 cores)
    python -m training.train --first-steps 20 --steps 20 --sessions 200 --first-sessions 200 \
        --work /tmp/w --out /tmp/m.gguf           # a smoke run

Two stages. The first trains on simpler sessions (four tools, one turn, short rows) at a high learning
rate for long enough that the model learns to copy values from the request into its calls (copying
appears after about 1000 steps of 12 x 512 tokens; the model card has the measurements). The second
continues from its weights and tokenizer on the full sessions (every tool, several turns, 2048-token
rows). ``--first-steps 0`` trains the full sessions alone. ``--finish-steps`` adds a short last stage
from the second's weights, at a low learning rate, on sessions of its own (``--finish-profile``: by
default the full sessions, half of them on folders with real-looking names).

A checkpoint is written every ``--checkpoint-every`` steps; ``--resume`` continues from it (with a
larger ``--steps`` to train longer), so a run can be split over several sittings. A resumed run keeps
the checkpoint's tokenizer, even when the sessions have changed since.

Every stage is deterministic from ``--seed``: the sessions (seeds ``seed*10**6 + i``), the BPE, the
packing order, the initial weights and the batch order (``--first-seed`` gives the first stage a seed of
its own, so that another ``--seed`` trains the second stage again on other sessions from the same
first stage; the last stage's seed is ``--seed`` + 100 unless ``--finish-seed`` says). Work files go
to ``--work`` and are reused
when their inputs have not changed (so an interrupted run restarts from the data, not from zero).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np

from .traces import PROFILES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "asynclm" / "models" / "asynclm-tiny.gguf"
HELDOUT_BASE = 900_000_000  # validation sessions: held-out seeds and held-out entity values


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def build_data(args: argparse.Namespace, work: Path, pieces: list[str] | None = None):
    """Sessions, tokenized and packed into rows; the BPE is learnt from them unless ``pieces`` is given
    (a later stage keeps the tokenizer of the stage it continues)."""
    from .data import Packed, fit_to_row, generate, pack, token_pointers
    from .tokenizer import Tokenizer, build_vocab, load_pieces, save_pieces, text_runs, train_bpe

    # the generator's own source is part of the key: a change to the traces regenerates the data
    source = hashlib.sha256(b"".join((ROOT / "training" / name).read_bytes()
                                     for name in ("traces.py", "entities.py", "data.py", "tokenizer.py")))
    key = (f"seed={args.seed} sessions={args.sessions} vocab={args.vocab} row={args.row} "
           f"traces={source.hexdigest()[:12]}")
    if args.profile != "full":
        key += f" profile={args.profile}"
    learnt_key = key  # the same sessions with the pieces learnt from them
    if pieces is not None:
        key += " pieces=" + hashlib.sha256("\n".join(pieces).encode()).hexdigest()[:16]
    meta = work / "data.json"
    if meta.exists() and json.loads(meta.read_text()).get("key") in (key, learnt_key):
        saved = load_pieces(work / "pieces.txt")
        # data made with the given pieces, or data that learnt exactly those pieces itself (a resumed run)
        if pieces is None or saved == pieces:
            _log("data: reusing " + str(work))
            return saved, Packed.load(work / "train.npz"), Packed.load(work / "val.npz")

    t0 = time.time()
    base = args.seed * 1_000_000
    train_atoms = generate(range(base, base + args.sessions), workers=args.workers, profile=args.profile)
    val_atoms = generate(range(HELDOUT_BASE, HELDOUT_BASE + args.val_sessions), heldout=True,
                         workers=args.workers, profile=args.profile)
    _log(f"data: {len(train_atoms)} training + {len(val_atoms)} held-out sessions in {time.time() - t0:.0f}s")

    if pieces is None:
        sample = train_atoms[: min(len(train_atoms), 4000)]
        pieces = train_bpe((t for atoms, _ in sample for t in text_runs(atoms)), args.vocab)
    save_pieces(pieces, work / "pieces.txt")
    vocab = build_vocab(pieces)
    tok = Tokenizer(vocab, work)

    def encode(all_atoms: list) -> list:
        out, dropped = [], 0
        for atoms, spans in all_atoms:
            ids, mask, pointers = token_pointers(tok, atoms, spans)
            fitted = fit_to_row(ids, mask, tok.eos, args.row + 1)
            if fitted is None:
                dropped += 1
            else:
                out.append((*fitted, pointers))
        return out, dropped

    train_seqs, dropped = encode(train_atoms)
    val_seqs, _ = encode(val_atoms)
    tok.close()
    random.Random(args.seed).shuffle(train_seqs)
    train = pack([s[:2] for s in train_seqs], args.row, [s[2] for s in train_seqs])
    val = pack([s[:2] for s in val_seqs], args.row, [s[2] for s in val_seqs])
    n_tok = sum(len(s[0]) for s in train_seqs)
    n_model = sum(sum(s[1]) for s in train_seqs)
    stats = {"key": key, "sessions": len(train_seqs), "dropped_too_long": dropped, "tokens": n_tok,
             "model_tokens": n_model, "rows": int(train.ids.shape[0]), "fill": round(train.fill, 3),
             "val_rows": int(val.ids.shape[0]), "vocab": len(vocab.tokens),
             "pointers": int(train.pointers.shape[0]),
             "seconds": round(time.time() - t0)}
    train.save(work / "train.npz")
    val.save(work / "val.npz")
    meta.write_text(json.dumps(stats, indent=1))
    _log("data: " + json.dumps(stats))
    return pieces, train, val


def copy_rows(rng: np.random.Generator, n: int, width: int, tokens: np.ndarray,
              span: tuple[int, int] = (3, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Rows that only copying can predict: random text tokens whose spans come back later in the row.

    Each row is a run of spans, each followed by a random gap and then a copy of either that span or an
    earlier one, so the distances vary from a few tokens to most of the row. The mask marks the copies
    after their first token (which cannot be known). The sessions need the same skill (values of a
    request copied into calls, results into answers). Measured: the 5M model did not learn these rows
    in 700 steps of 16 x 256 tokens (loss 6.8 to 6.7 nats), with short or long spans, in bf16 or fp32;
    see the model card.
    """
    ids = np.empty((n, width), dtype=np.int32)
    mask = np.zeros((n, width), dtype=bool)
    for r in range(n):
        row: list[int] = []
        marks: list[bool] = []
        spans: list[list[int]] = []
        while len(row) < width:
            piece = rng.choice(tokens, int(rng.integers(span[0], span[1] + 1))).tolist()
            row += piece
            marks += [False] * len(piece)
            spans.append(piece)
            gap = rng.choice(tokens, int(rng.integers(0, 40))).tolist()
            row += gap
            marks += [False] * len(gap)
            again = spans[-1] if rng.random() < 0.5 else spans[int(rng.integers(0, len(spans)))]
            row += again
            marks += [False] + [True] * (len(again) - 1)
        ids[r] = row[:width]
        mask[r] = marks[:width]
    return ids, mask


def induction_rows(rng: np.random.Generator, n: int, width: int, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Short rows whose second half repeats the first. The 5M model learns these within about 150 steps
    of 16 x 256 tokens, but by position (the copy is always half a row back): it did not carry over to
    ``copy_rows`` nor to the sessions (see the model card)."""
    half = width // 2
    first = rng.choice(tokens, (n, half))
    ids = np.concatenate([first, first, rng.choice(tokens, (n, width - 2 * half))], axis=1).astype(np.int32)
    mask = np.zeros((n, width), dtype=bool)
    mask[:, half + 1:2 * half] = True
    return ids, mask


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(args: argparse.Namespace, init: Path | None = None) -> Path:
    """Train one stage and return its checkpoint. ``init``: a checkpoint whose weights and tokenizer this
    stage starts from (with a fresh optimiser and learning-rate schedule)."""
    import torch
    import torch.nn.functional as F

    from .data import CALLS, DECISIONS, PAD
    from .model import Config, Model, pointer_loss
    from asynclm.core.modelgen import NORMAL

    from .tokenizer import build_vocab

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    # compiled kernels on more than one thread otherwise accumulate some gradients in an order that
    # varies from run to run; with this, the same command trains the same weights
    torch.use_deterministic_algorithms(True)
    start = torch.load(init, map_location="cpu", weights_only=False) if init else None
    ckpt = work / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False) if args.resume and ckpt.exists() else None
    # a stage that continues another keeps its tokenizer; so does a resumed run, even where the data
    # has changed since (a changed generator learns other pieces, and the weights would read them wrong)
    keep = start["pieces"] if start else state["pieces"] if state is not None else None
    pieces, train_rows, val_rows = build_data(args, work, keep)
    vocab = build_vocab(pieces)
    tokens_of_vocab = vocab.tokens
    eos = tokens_of_vocab.index("</s>")
    text_tokens = np.array([i for i, kind in enumerate(vocab.types) if kind == NORMAL])

    torch.manual_seed(args.seed)
    if start:
        cfg = Config(**{**start["config"], "n_ctx": args.row})
    else:
        cfg = Config(n_vocab=len(tokens_of_vocab), n_embd=args.embd, n_layer=args.layers,
                     n_head=args.heads, n_ff=args.ff, n_ctx=args.row)
    model = Model(cfg)
    if start:
        model.load_state_dict(start["model"])
        _log(f"starting from {init} (step {start['step']})")
        del start
    step_fn = torch.compile(model) if args.compile else model
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    _log(f"model: {model.n_params() / 1e6:.2f}M parameters, {cfg}")

    def batch(rows_ids: np.ndarray, rows_mask: np.ndarray):
        ids = torch.from_numpy(rows_ids.astype(np.int64))
        mask = torch.from_numpy(rows_mask)
        mask = mask & (ids != PAD)
        ids = ids.masked_fill(ids == PAD, eos)
        return ids[:, :-1], ids[:, 1:], mask[:, 1:]

    # the heads whose attention the pointer losses steer (when weighted) and measure (held out, always):
    # one while calls are written, one where the model chooses between a call and words
    tap = (cfg.n_layer // 2 if args.pointer_layer is None else args.pointer_layer,
           (args.pointer_head, args.decision_head))
    if not (0 <= tap[0] < cfg.n_layer and all(0 <= head < cfg.n_head for head in tap[1])):
        if args.pointer_weight or args.decision_weight:
            raise SystemExit(f"--pointer-layer {tap[0]} --pointer-head {tap[1][0]} --decision-head {tap[1][1]} "
                             f"is no head of a model of {cfg.n_layer} layers of {cfg.n_head} heads.")
        tap = None

    def pointers_of(rows: Packed, idx: np.ndarray):
        """The pointers of rows ``idx`` of ``rows``, numbered as the batch's rows (None without any)."""
        if tap is None or rows.pointers is None:
            return None
        found = rows.pointers[np.isin(rows.pointers[:, 0], idx)].copy()
        found[:, 0] = np.searchsorted(idx, found[:, 0])
        return torch.from_numpy(found)

    def loss_of(net, x, y, m, copy_part=None, pointers=None, kinds=(CALLS, DECISIONS)):
        """The mean loss over the masked targets; the mean over those of the copy rows (None without
        any); and, given ``pointers``, the ``pointer_loss`` of those of each kind, CALLS and DECISIONS,
        each on its own tapped head (None for a kind not in ``kinds``, and in place of the pair without
        ``pointers``)."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x) if pointers is None else net(x, tap)
        logits, q, k = (out, None, None) if pointers is None else out
        losses = F.cross_entropy(logits.float().reshape(-1, cfg.n_vocab), y.reshape(-1),
                                 reduction="none").view_as(y)
        m = m.float()
        mean = (losses * m).sum() / m.sum().clamp(min=1)
        pointed = None if pointers is None else tuple(
            pointer_loss(q[:, n], k[:, n], pointers[pointers[:, 5] == kind, :5]) if kind in kinds else None
            for n, kind in enumerate((CALLS, DECISIONS)))
        if copy_part is None:
            return mean, None, pointed
        mc = m[copy_part]
        return mean, float((losses[copy_part].detach() * mc).sum() / mc.sum().clamp(min=1)), pointed

    def validate() -> tuple[float, tuple[float, float] | None]:
        """The held-out loss, and the tapped heads' held-out pointer losses of each kind (None if the
        model has no such heads)."""
        model.eval()
        total, n, pointed, batches = 0.0, 0, np.zeros(2), 0
        with torch.no_grad():
            for i in range(0, len(val_rows.ids), args.batch):
                x, y, m = batch(val_rows.ids[i:i + args.batch], val_rows.mask[i:i + args.batch])
                w = float(m.sum())
                mean, _, p = loss_of(model, x, y, m,
                                     pointers=pointers_of(val_rows, np.arange(i, i + len(x))))
                total += float(mean) * w
                n += w
                if p is not None:
                    pointed, batches = pointed + [float(part) for part in p], batches + 1
        model.train()
        return total / max(n, 1), (tuple((pointed / batches).tolist()) if batches else None)

    # the pointer kinds the training steps steer by: those with a weight (held out, both are measured)
    weights = (args.pointer_weight, args.decision_weight)
    steered = tuple(kind for kind, weight in zip((CALLS, DECISIONS), weights) if weight)

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(train_rows.ids))
    log_path = work / "log.jsonl"
    first, tokens, cursor, spent = 0, 0, 0, 0.0
    if state is not None:  # continue a run: weights, optimiser, batch order, counters
        model.load_state_dict(state["model"])
        if state.get("optimizer") is not None:  # a checkpoint without one restarts the moments
            opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        order, cursor = np.array(state["order"]), state["cursor"]
        first, tokens, spent = state["step"] + 1, state["tokens"], state["seconds"]
        _log(f"resuming after step {state['step']}")
    log = log_path.open("a" if first else "w")
    t0 = time.time() - spent

    def save(step: int) -> None:
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "pieces": pieces, "args": vars(args),
                    "optimizer": opt.state_dict(), "rng": rng.bit_generator.state, "order": order.tolist(),
                    "cursor": cursor, "step": step, "tokens": tokens, "seconds": time.time() - t0}, ckpt)

    for step in range(first, args.steps):
        if cursor + args.batch > len(order):  # a further pass, in a new order
            order, cursor = rng.permutation(len(train_rows.ids)), 0
        if step < args.copy_steps:  # the induction warm-up: short copy rows only
            n_real, n_copy = 0, args.copy_batch
            half = round(n_copy * args.copy_fixed)  # repeats at a fixed offset (learnt fast, by position)
            a_ids, a_mask = induction_rows(rng, half, args.copy_row + 1, text_tokens)
            b_ids, b_mask = copy_rows(rng, n_copy - half, args.copy_row + 1, text_tokens, args.copy_span)
            rows_ids, rows_mask = np.concatenate([a_ids, b_ids]), np.concatenate([a_mask, b_mask])
            lr = args.copy_lr * min(1.0, (step + 1) / 20)
        else:
            n_copy = int(rng.binomial(args.batch, args.copy_mix)) if args.copy_mix else 0  # (no draw: same run)
            n_real = args.batch - n_copy
            idx = np.sort(order[cursor:cursor + n_real])
            cursor += n_real
            rows_ids, rows_mask = train_rows.ids[idx], train_rows.mask[idx]
            if n_copy:
                extra_ids, extra_mask = copy_rows(rng, n_copy, rows_ids.shape[1], text_tokens, args.copy_span)
                rows_ids = np.concatenate([rows_ids, extra_ids])
                rows_mask = np.concatenate([rows_mask, extra_mask])
            lr = lr_at(step - args.copy_steps, args.steps - args.copy_steps, args.lr, args.warmup)
        x, y, m = batch(rows_ids, rows_mask)
        copy_part = slice(n_real, None) if n_copy else None
        for group in opt.param_groups:
            group["lr"] = lr
        pointers = pointers_of(train_rows, idx) if n_real and steered else None
        loss, copy_loss, pointed = loss_of(step_fn, x, y, m, copy_part, pointers, steered)
        total = loss
        for weight, part in zip(weights, pointed or ()):
            if part is not None:
                total = total + weight * part
        if step >= args.copy_steps and args.copy_keep:  # keep the skill: a few copy rows every step
            cx, cy, cm = batch(*copy_rows(rng, args.copy_keep, args.copy_keep_row + 1, text_tokens, args.copy_span))
            aux, *_ = loss_of(step_fn, cx, cy, cm)
            total = total + aux
            copy_loss = float(aux.detach())
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += x.numel()
        record = None
        if step % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.time() - t0
            record = {"step": step, "loss": round(loss.item(), 4), "lr": round(lr, 6),
                      "tokens": tokens, "seconds": round(elapsed, 1),
                      "tok_per_s": round(tokens / max(elapsed, 1e-9))}
            if copy_loss is not None:
                record["copy_loss"] = round(copy_loss, 4)
            for name, part in zip(("pointer_loss", "decision_loss"), pointed or ()):
                if part is not None:
                    record[name] = round(part.item(), 4)
        if (step % args.val_every == 0 and step) or step == args.steps - 1:
            record = record or {"step": step}
            val_loss, val_pointed = validate()
            record["val_loss"] = round(val_loss, 4)
            if val_pointed is not None:
                record["val_pointer_loss"] = round(val_pointed[0], 4)
                record["val_decision_loss"] = round(val_pointed[1], 4)
        if record:
            log.write(json.dumps(record) + "\n")
            log.flush()
            _log(json.dumps(record))
        if step % args.checkpoint_every == 0 and step:
            save(step)
    log.close()
    save(args.steps - 1)
    summary = summarise(log_path, work)
    _log("summary: " + json.dumps(summary))
    return ckpt


def summarise(log_path: Path, work: Path) -> dict:
    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    val_rows = [r for r in rows if "val_loss" in r]
    last = train_rows[-1]
    data = json.loads((work / "data.json").read_text())
    summary = {"steps": last["step"] + 1, "tokens": last["tokens"], "minutes": round(last["seconds"] / 60, 1),
               "tok_per_s": last["tok_per_s"], "final_loss": last["loss"],
               "final_val_loss": val_rows[-1]["val_loss"] if val_rows else None, "data": data}
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def plot(logs: Path | list[Path], out: Path) -> None:
    """The loss curve; with several stage logs, one after the other on the same token axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    offset = 0.0
    logs = [logs] if isinstance(logs, Path) else logs
    for n, log_path in enumerate(logs):
        rows = [json.loads(line) for line in log_path.read_text().splitlines()]
        tr = [(offset + r["tokens"] / 1e6, r["loss"]) for r in rows if "loss" in r]
        va = [(offset + r["tokens"] / 1e6, r["val_loss"]) for r in rows if "val_loss" in r and "tokens" in r]
        stage = f"stage {n + 1}: " if len(logs) > 1 else ""
        ax.plot(*zip(*tr), label=stage + "training (model-written tokens)", lw=1)
        if va:
            ax.plot(*zip(*va), "o-", label=stage + "held-out sessions", lw=1.5)
        offset = tr[-1][0]
        if n + 1 < len(logs):
            ax.axvline(offset, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("asynclm-tiny training")
    fig.tight_layout()
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=None,
                   help="seed of the first stage (default: --seed); another --seed then changes only the second")
    p.add_argument("--sessions", type=int, default=10000, help="training sessions to generate")
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="what sessions hold: all tools and turns (full), the earlier probe's simpler regime "
                        "(probe), or full with half on real-looking folders (real) and some of those long (long)")
    p.add_argument("--first-steps", type=int, default=1500,
                   help="steps of a first stage on simpler sessions, where copying is learnt (0: none)")
    p.add_argument("--first-profile", choices=sorted(PROFILES), default="probe")
    p.add_argument("--first-sessions", type=int, default=30000)
    p.add_argument("--first-row", type=int, default=512)
    p.add_argument("--first-batch", type=int, default=12)
    p.add_argument("--first-lr", type=float, default=2e-3)
    p.add_argument("--val-sessions", type=int, default=240)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--row", type=int, default=2048, help="tokens per training row (the model's context)")
    p.add_argument("--batch", type=int, default=4, help="rows per step")
    p.add_argument("--copy-steps", type=int, default=0,
                   help="first steps trained on short synthetic copy rows only (an experiment: see the model card)")
    p.add_argument("--copy-row", type=int, default=256, help="tokens per row in those first steps")
    p.add_argument("--copy-batch", type=int, default=16, help="rows per step in those first steps")
    p.add_argument("--copy-lr", type=float, default=1e-3, help="learning rate in those first steps")
    p.add_argument("--copy-mix", type=float, default=0.0, help="chance that a later row is a copy row")
    p.add_argument("--copy-fixed", type=float, default=0.5,
                   help="share of the first steps' rows that repeat at a fixed offset (the rest at varied ones)")
    p.add_argument("--copy-span", type=int, nargs=2, default=(3, 32), metavar=("MIN", "MAX"),
                   help="tokens in a copy row's spans (long spans teach copying sooner: see the model card)")
    p.add_argument("--copy-keep", type=int, default=0, help="copy rows trained beside every later step")
    p.add_argument("--copy-keep-row", type=int, default=512, help="tokens per row of those")
    p.add_argument("--finish-steps", type=int, default=0,
                   help="steps of a last stage on other sessions, from the main stage's weights (0: none)")
    p.add_argument("--finish-profile", choices=sorted(PROFILES), default="real")
    p.add_argument("--finish-sessions", type=int, default=3000,
                   help="its sessions (a short stage reads under half of the rows they fill)")
    p.add_argument("--finish-seed", type=int, default=None, help="seed of the last stage (default: --seed + 100)")
    p.add_argument("--finish-lr", type=float, default=3e-4)
    p.add_argument("--finish-warmup", type=int, default=20)
    p.add_argument("--pointer-weight", type=float, default=0.1,
                   help="weight of a loss steering one attention head, while a call is written, to the "
                        "words of the message that asked for it (0: off)")
    p.add_argument("--first-pointer-weight", type=float, default=0.0, help="the same in the first stage")
    p.add_argument("--decision-weight", type=float, default=0.0,
                   help="weight of a loss steering a head (--decision-head), where the model chooses between another "
                        "call and words, to the words of the task it calls next, or to the end of the "
                        "user's message when none is left (0: off)")
    p.add_argument("--first-decision-weight", type=float, default=0.0, help="the same in the first stage")
    p.add_argument("--decision-head", type=int, default=1, help="that head (of the same layer)")
    p.add_argument("--pointer-layer", type=int, default=None, help="the layer of that head (default: the middle one)")
    p.add_argument("--pointer-head", type=int, default=0, help="that head")
    p.add_argument("--steps", type=int, default=1150)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--embd", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ff", type=int, default=688)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--workers", type=int, default=2, help="processes generating sessions")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--val-every", type=int, default=300)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true",
                   help="continue from the work folder's checkpoint (raise --steps to train longer)")
    p.add_argument("--work", default=str(ROOT / "training" / "work"))
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--f32", action="store_true", help="export F32 matrices instead of F16")
    return p.parse_args(argv)


def first_stage(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of the first stage: the same run, on the ``--first-*`` data and schedule, in
    ``WORK/first``."""
    first = argparse.Namespace(**vars(args))
    first.profile, first.steps, first.sessions = args.first_profile, args.first_steps, args.first_sessions
    first.row, first.batch, first.lr = args.first_row, args.first_batch, args.first_lr
    first.pointer_weight = args.first_pointer_weight
    first.decision_weight = args.first_decision_weight
    first.work = str(Path(args.work) / "first")
    if args.first_seed is not None:
        first.seed = args.first_seed
    return first


def last_stage(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of the last stage: the same run, on the ``--finish-*`` sessions and schedule, in
    ``WORK/finish``."""
    last = argparse.Namespace(**vars(args))
    last.profile, last.steps, last.sessions = args.finish_profile, args.finish_steps, args.finish_sessions
    last.lr, last.warmup, last.copy_steps = args.finish_lr, args.finish_warmup, 0  # no copy warm-up again
    last.seed = args.seed + 100 if args.finish_seed is None else args.finish_seed
    last.work = str(Path(args.work) / "finish")
    return last


def stage_works(args: argparse.Namespace) -> list[Path]:
    """The work folders of the stages the command runs, in order."""
    return ([Path(first_stage(args).work)] if args.first_steps else []) + [Path(args.work)] + (
        [Path(last_stage(args).work)] if args.finish_steps else [])


def run(args: argparse.Namespace) -> Path:
    """Every stage: the first (if any) on its own data, then the main one starting from its weights and
    tokenizer, then the last (if any) from the main one's. Returns the final checkpoint."""
    init = train(first_stage(args)) if args.first_steps else None
    ckpt = train(args, init=init)
    return train(last_stage(args), init=ckpt) if args.finish_steps else ckpt


def main(argv: list[str] | None = None) -> None:
    from .export import export

    args = parse_args(argv)
    ckpt = run(args)
    digest = export(ckpt, Path(args.out), f16=not args.f32)
    work = Path(args.work)
    stages = stage_works(args)
    plot([stage / "log.jsonl" for stage in stages], work / "loss.png")
    summaries = [json.loads((stage / "summary.json").read_text()) for stage in stages]
    minutes = sum(s["minutes"] + s["data"]["seconds"] / 60 for s in summaries)  # training and data
    (work / "training-summary.json").write_text(json.dumps(
        {"minutes": round(minutes, 1), "stages": summaries}, indent=1))
    _log(f"export: {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB, sha256 {digest})")


if __name__ == "__main__":
    main()
