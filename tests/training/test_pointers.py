"""The pointer losses: while a call is written, one attention head can be steered to the words of the
message that asked for it, and where the model chooses between another call and words, to the task it
calls next or to the end of the message when none is left. The pointers survive tokenizing and packing,
the loss is what the head's causal attention puts on those words, and weighting it trains the head
toward them."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from asynclm.core.cml import Marker  # noqa: E402
from training import train as pipeline  # noqa: E402
from training.data import CALLS, DECISIONS, fit_to_row, generate, pack, token_pointers  # noqa: E402
from training.model import pointer_loss  # noqa: E402
from training.tokenizer import Tokenizer, build_vocab, text_runs, train_bpe  # noqa: E402


def test_packed_pointers_run_from_a_calls_head_to_its_end_and_point_at_the_words_that_asked(tmp_path):
    made = generate(range(500, 512), workers=1)
    pieces = train_bpe((t for atoms, _ in made for t in text_runs(atoms)), 400)
    tok = Tokenizer(build_vocab(pieces), tmp_path)
    try:
        sessions, pointers, asked = [], [], []
        for atoms, spans in made:
            ids, mask, found = token_pointers(tok, atoms, spans)
            fitted = fit_to_row(ids, mask, tok.eos, 2049)
            if fitted is None:
                continue
            kept = [(p, span) for p, span in zip(found, spans) if p[1] < len(fitted[0]) - 1 and p[4] == CALLS]
            sessions.append(fitted)
            pointers.append([p for p, _ in kept])
            asked += [atoms[message][0][start:end] for _, (_, _, message, start, end, _) in kept]
        packed = pack(sessions, 2048, pointers)
        assert len(packed.pointers) == len(asked) > 20
        assert len(set(packed.pointers[:, 0].tolist())) > 1, "sessions land in several rows"
        for (row, q0, q1, t0, t1, _), words in zip(packed.pointers.tolist(), asked):
            ids = packed.ids[row].tolist()
            assert ids[q0] == tok.markers[Marker.HEAD] and ids[q1 + 1] == tok.markers[Marker.END]
            assert tok.markers[Marker.END] not in ids[q0:q1 + 1]
            assert t1 <= q0 and tok.decode(ids[t0:t1]) == words
    finally:
        tok.close()


def test_where_the_model_chooses_between_a_call_and_words_the_head_points_at_what_it_calls_next(tmp_path):
    made = generate(range(520, 528), workers=1)
    pieces = train_bpe((t for atoms, _ in made for t in text_runs(atoms)), 400)
    tok = Tokenizer(build_vocab(pieces), tmp_path)
    call, head, end = (tok.markers[m] for m in (Marker.CALL, Marker.HEAD, Marker.END))
    try:
        nexts = dones = 0
        for atoms, spans in made:
            ids, mask, found = token_pointers(tok, atoms, spans)
            calls = {(q0, t0, t1) for q0, _, t0, t1, kind in found if kind == CALLS}  # at [HEAD]
            for q0, q1, t0, t1, kind in found:
                if kind != DECISIONS:
                    continue
                assert t1 <= q0 <= q1
                written = next(i for i in range(q1 + 1, len(ids)) if mask[i])  # what the model writes next
                if ids[written] in (call, head):  # another call (or its id): the head reads that call's task
                    at = ids.index(head, written)
                    assert (at, t0, t1) in calls, "the words the call itself points at"
                    assert call in ids[q0 + 1:at + 1] or ids[q0] == end, "at most the previous call's [END] before"
                    nexts += 1
                else:  # words: the head reads the end of the user's message, and every call was made
                    assert (t0, t1) == (t0, t0 + 1) and ids[t0] == end and not mask[t0]
                    assert ids[q0] == end and ids[q1] == end
                    dones += 1
        assert nexts > 40 and dones > 10
    finally:
        tok.close()


def test_the_pointer_loss_is_minus_the_log_of_the_causal_attention_on_the_words():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 40, 8, generator=gen), torch.randn(2, 40, 8, generator=gen)
    pointers = torch.tensor([[0, 20, 24, 3, 7], [1, 30, 30, 10, 12]])
    expected = []
    for row, q0, q1, t0, t1 in pointers.tolist():
        for pos in range(q0, q1 + 1):
            weights = torch.softmax(q[row, pos] @ k[row, :pos + 1].T / 8 ** 0.5, -1)
            expected.append(-torch.log(weights[t0:t1].sum()))
    assert pointer_loss(q, k, pointers).item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    # keys after the query are never attended to, so they cannot change it
    later = k.clone()
    later[:, 31:] = 100.0
    assert pointer_loss(q, later, pointers).item() == pytest.approx(pointer_loss(q, k, pointers).item(), rel=1e-5)


def test_weighting_the_pointer_losses_trains_the_head_toward_the_words(tmp_path):
    def held_out_pointer_losses(weight: float) -> tuple[float, float]:
        work = tmp_path / f"w{weight}"
        args = pipeline.parse_args([
            "--first-steps", "0", "--steps", "30", "--sessions", "40", "--val-sessions", "6", "--vocab", "600",
            "--row", "1024", "--batch", "2", "--embd", "64", "--layers", "2", "--heads", "4", "--ff", "128",
            "--lr", "3e-3", "--warmup", "5", "--no-compile", "--workers", "1", "--threads", "1",
            "--val-every", "10", "--pointer-weight", str(weight), "--decision-weight", str(weight),
            "--pointer-layer", "1", "--work", str(work), "--out", str(work / "m.gguf")])
        pipeline.train(args)
        rows = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
        last = [r for r in rows if "val_pointer_loss" in r][-1]
        return last["val_pointer_loss"], last["val_decision_loss"]

    # measured either way; only the weighted run trains on them
    steered, left = held_out_pointer_losses(5.0), held_out_pointer_losses(0.0)
    assert steered[0] < 0.7 * left[0], "while calls are written"
    assert steered[1] < 0.7 * left[1], "where the model chooses between a call and words"


@pytest.mark.parametrize("flags", [("--pointer-layer", "3"), ("--decision-head", "2")])
def test_a_pointer_head_the_model_does_not_have_is_refused_in_one_sentence(tmp_path, flags):
    args = pipeline.parse_args([
        "--first-steps", "0", "--steps", "1", "--sessions", "8", "--val-sessions", "2", "--vocab", "400",
        "--row", "1024", "--batch", "1", "--embd", "32", "--layers", "2", "--heads", "2", "--ff", "64",
        "--no-compile", "--workers", "1", "--threads", "1", "--pointer-weight", "1", *flags,
        "--work", str(tmp_path), "--out", str(tmp_path / "m.gguf")])
    with pytest.raises(SystemExit, match="no head of a model of 2 layers of 2 heads"):
        pipeline.train(args)
