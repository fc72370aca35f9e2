"""A few training steps, then export, then llama.cpp: the GGUF computes what the torch model computes."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from asynclm.core import events as ev  # noqa: E402
from asynclm.core.engine import Engine  # noqa: E402
from asynclm.core.llama import LlamaBackend  # noqa: E402
from asynclm.core.sampling import GREEDY  # noqa: E402
from asynclm.tools.builtins import default_registry  # noqa: E402
from training import train as pipeline  # noqa: E402
from training.export import export, load_checkpoint  # noqa: E402
from training.tokenizer import Tokenizer, build_vocab  # noqa: E402
from training.traces import make_session  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    args = pipeline.parse_args([
        "--steps", "6", "--sessions", "40", "--val-sessions", "4", "--vocab", "600", "--row", "512",
        "--batch", "2", "--embd", "64", "--layers", "2", "--heads", "4", "--ff", "128",
        "--copy-steps", "2", "--copy-batch", "2", "--copy-row", "64", "--copy-keep", "1", "--copy-keep-row", "64",
        "--no-compile", "--workers", "1", "--log-every", "1", "--val-every", "3", "--threads", "2",
        "--work", str(work), "--out", str(work / "m.gguf")])
    ckpt = pipeline.train(args)
    return work, ckpt


def test_training_logs_a_falling_loss_and_a_held_out_loss(trained):
    work, _ = trained
    summary = pipeline.summarise(work / "log.jsonl", work)
    assert summary["steps"] == 6 and summary["final_val_loss"] is not None
    rows = [r for r in map(__import__("json").loads, (work / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"]
    pipeline.plot(work / "log.jsonl", work / "loss.png")
    assert (work / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_copy_rows_train_only_positions_that_repeat_an_earlier_span():
    rng = np.random.default_rng(0)
    tokens = np.arange(300, 1000)
    for make in (pipeline.copy_rows, pipeline.induction_rows):
        ids, mask = make(rng, 6, 257, tokens)
        assert ids.shape == mask.shape == (6, 257) and 0.2 < mask.mean() < 0.6
        assert set(np.unique(ids)) <= set(tokens.tolist())
        for row, marks in zip(ids, mask):
            for i in np.flatnonzero(marks):
                # induction: the token before i occurred earlier, followed by the token at i
                assert any(row[j] == row[i - 1] and row[j + 1] == row[i] for j in range(i - 1)), (make, i)


def test_export_is_bit_for_bit_and_matches_torch_in_llama_cpp(trained):
    work, ckpt = trained
    a = export(ckpt, work / "a.gguf", f16=False)
    b = export(ckpt, work / "b.gguf", f16=False)
    assert a == b == hashlib.sha256((work / "a.gguf").read_bytes()).hexdigest()

    model, pieces = load_checkpoint(ckpt)
    tok = Tokenizer(build_vocab(pieces), work)
    ids, _ = tok.encode(make_session(123, heldout=True).atoms)
    tok.close()
    ids = ids[:200]
    backend = LlamaBackend(work / "a.gguf", n_ctx=512, n_threads=2)
    try:
        llama_rows = []
        for i in range(0, len(ids), 50):  # incremental evaluation, as the engine does it
            backend.eval(ids[i:i + 50])
            llama_rows.append(np.array(backend.logits()))
        with torch.no_grad():
            full = model(torch.tensor([ids]))[0].numpy()
        torch_rows = [full[min(i + 50, len(ids)) - 1] for i in range(0, len(ids), 50)]
        for got, want in zip(llama_rows, torch_rows):
            # A wrong rotary layout loads fine and is off by whole units; this agrees to rounding.
            assert np.abs(got - want).max() < 1e-2
            assert got.argmax() == want.argmax()
    finally:
        backend.close()


def test_the_exported_model_runs_a_turn_in_the_engine(trained, tmp_path):
    work, ckpt = trained
    path = work / "engine.gguf"
    export(ckpt, path)
    backend = LlamaBackend(path, n_ctx=512, n_threads=2)
    engine = Engine(backend, default_registry(str(tmp_path)), sampling=GREEDY)
    seen: list[ev.Event] = []
    ended = threading.Event()

    def sink(e: ev.Event) -> None:
        seen.append(e)
        if isinstance(e, ev.TurnEnded):
            ended.set()

    engine.subscribe(sink)
    engine.start()
    try:
        assert engine.dialect.name == "native"  # the markers are control tokens of the vocabulary
        engine.send("what is 2+2")
        assert ended.wait(120)
    finally:
        engine.close()
        backend.close()
    started = next(e for e in seen if isinstance(e, ev.SessionStarted))
    assert started.model == "asynclm-tiny" and started.tools.startswith("tools: wait(")
    assert any(isinstance(e, ev.TokenGenerated) for e in seen)


def test_a_resumed_run_continues_where_the_checkpoint_left_off(trained, capsys):
    work, ckpt = trained
    args = pipeline.parse_args([
        "--steps", "8", "--sessions", "40", "--val-sessions", "4", "--vocab", "600", "--row", "512",
        "--batch", "2", "--embd", "64", "--layers", "2", "--heads", "4", "--ff", "128",
        "--copy-steps", "2", "--copy-batch", "2", "--copy-row", "64", "--copy-keep", "1", "--copy-keep-row", "64",
        "--no-compile", "--workers", "1", "--log-every", "1", "--val-every", "3", "--threads", "2",
        "--work", str(work), "--out", str(work / "m.gguf"), "--resume"])
    capsys.readouterr()
    pipeline.train(args)
    assert "data: reusing" in capsys.readouterr().out  # the same sessions, the checkpoint's own pieces
    steps = [r["step"] for r in map(__import__("json").loads, (work / "log.jsonl").read_text().splitlines())]
    assert steps[:6] == [0, 1, 2, 3, 4, 5] and steps[-2:] == [6, 7]
    assert torch.load(ckpt, weights_only=False)["step"] == 7


def test_a_resumed_run_keeps_its_tokenizer_when_the_data_has_changed(trained, tmp_path, capsys):
    work, _ = trained
    resumed = tmp_path / "resumed"
    shutil.copytree(work, resumed)
    before = torch.load(resumed / "checkpoint.pt", weights_only=False)
    shape = ["--sessions", "40", "--val-sessions", "4", "--vocab", "600", "--row", "512", "--batch", "2",
             "--embd", "64", "--layers", "2", "--heads", "4", "--ff", "128", "--no-compile", "--workers", "1",
             "--threads", "2", "--seed", "7"]  # another seed: other sessions, from which other pieces are learnt
    (tmp_path / "fresh").mkdir()
    learnt, _, _ = pipeline.build_data(pipeline.parse_args(shape + ["--work", str(tmp_path / "fresh")]),
                                       tmp_path / "fresh")
    assert learnt != before["pieces"], "the new data would learn another tokenizer"
    capsys.readouterr()
    pipeline.train(pipeline.parse_args(shape + ["--steps", str(before["step"] + 2), "--resume",
                                                "--work", str(resumed)]))
    after = torch.load(resumed / "checkpoint.pt", weights_only=False)
    assert after["step"] == before["step"] + 1 and after["pieces"] == before["pieces"]
    # the sessions are generated once, straight into the checkpoint's pieces
    assert capsys.readouterr().out.count("held-out sessions in") == 1


def test_the_second_stage_starts_from_the_first_stages_weights_and_tokenizer(tmp_path):
    work = tmp_path / "two"
    args = pipeline.parse_args([
        "--first-steps", "2", "--first-sessions", "30", "--first-row", "256", "--first-batch", "2", "--first-lr", "0.06",
        "--steps", "2", "--sessions", "30", "--row", "512", "--batch", "2", "--lr", "1e-9",
        "--val-sessions", "4", "--vocab", "600", "--embd", "64", "--layers", "2", "--heads", "4", "--ff", "128",
        "--no-compile", "--workers", "1", "--log-every", "1", "--threads", "2", "--seed", "3", "--first-seed", "1",
        "--work", str(work), "--out", str(work / "m.gguf")])
    ckpt = pipeline.run(args)
    first = torch.load(work / "first" / "checkpoint.pt", weights_only=False)
    second = torch.load(ckpt, weights_only=False)
    assert first["args"]["profile"] == "probe" and second["args"]["profile"] == "full"
    assert (first["args"]["seed"], second["args"]["seed"]) == (1, 3)  # --first-seed: the first stage's own
    assert json.loads((work / "first" / "data.json").read_text())["key"].startswith("seed=1 ")
    assert json.loads((work / "data.json").read_text())["key"].startswith("seed=3 ")
    assert second["pieces"] == first["pieces"]  # the tokenizer is kept
    assert (first["config"]["n_ctx"], second["config"]["n_ctx"]) == (256, 512)
    for name, weight in first["model"].items():  # a learning rate of 1e-9 leaves the first stage's weights
        assert torch.allclose(second["model"][name], weight, atol=1e-5), name
    pipeline.plot([work / "first" / "log.jsonl", work / "log.jsonl"], work / "loss.png")
    assert (work / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_last_stage_continues_the_main_one_on_sessions_of_its_own(tmp_path):
    work = tmp_path / "three"
    args = pipeline.parse_args([
        "--first-steps", "0", "--steps", "2", "--sessions", "30", "--row", "512", "--batch", "2",
        "--finish-steps", "2", "--finish-sessions", "30", "--finish-lr", "1e-9", "--finish-warmup", "1",
        "--val-sessions", "4", "--vocab", "600", "--embd", "64", "--layers", "2", "--heads", "4", "--ff", "128",
        "--no-compile", "--workers", "1", "--log-every", "1", "--threads", "2", "--seed", "3",
        "--work", str(work), "--out", str(work / "m.gguf")])
    ckpt = pipeline.run(args)
    assert ckpt == work / "finish" / "checkpoint.pt"
    assert pipeline.stage_works(args) == [work, work / "finish"]
    main = torch.load(work / "checkpoint.pt", weights_only=False)
    last = torch.load(ckpt, weights_only=False)
    assert (main["args"]["profile"], last["args"]["profile"]) == ("full", "real")
    assert (main["args"]["seed"], last["args"]["seed"]) == (3, 103)  # other sessions than the main stage's
    assert json.loads((work / "finish" / "data.json").read_text())["key"].startswith("seed=103 sessions=30 ")
    assert last["pieces"] == main["pieces"] and last["step"] == 1
    for name, weight in main["model"].items():  # a learning rate of 1e-9 leaves the main stage's weights
        assert torch.allclose(last["model"][name], weight, atol=1e-5), name
