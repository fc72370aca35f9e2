"""The llama.cpp backend: load a GGUF, tokenize, evaluate into the KV cache, read the last logits.

Built on llama-cpp-python's low-level bindings rather than its ``Llama`` class: the decode loop needs
exactly one thing per token (append it, read the new logits) and nothing else on the hot path. The
logits are read from the context itself with ``llama_get_logits_ith`` (``Llama.scores`` is only
filled with ``logits_all=True`` and is otherwise stale).

Evaluation only ever appends: the context's positions are assigned by llama.cpp from what the KV cache
already holds, so an injected interrupt costs exactly its own tokens and the prefix is never
re-evaluated.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger("asynclm.llama")

GGUF_MAGIC = b"GGUF"
TOKEN_ATTR_CONTROL = 1 << 3  # llama_token_attr: LLAMA_TOKEN_ATTR_CONTROL
TOKEN_ATTR_USER_DEFINED = 1 << 4  # LLAMA_TOKEN_ATTR_USER_DEFINED


DEFAULT_MAX_CTX = 8192
PROBE_SECONDS = 180  # a probe load of the largest model that fits memory, with room to spare


class ModelError(Exception):
    """A model that cannot be used; the message is one sentence for the user."""


class ContextFull(Exception):
    """The context window has no room for the tokens asked to evaluate."""

    def __init__(self, n_ctx: int, n_past: int, n_new: int):
        super().__init__(
            f"The context window of {n_ctx} tokens is full ({n_past} used, {n_new} more needed)."
        )
        self.n_ctx, self.n_past, self.n_new = n_ctx, n_past, n_new


# llama.cpp logs through a process-wide callback; keep recent lines to explain load failures.
_recent_log: collections.deque[str] = collections.deque(maxlen=40)
_log_callback = None


def _install_log_callback() -> None:
    global _log_callback
    import llama_cpp

    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").rstrip()
        if line:
            _recent_log.append(line)
            log.debug("%s", line)

    _log_callback = on_log  # keep a reference: llama.cpp holds only the raw pointer
    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_model_file(path: str | os.PathLike[str]) -> Path:
    """Refuse, with one sentence, a path that cannot be a usable GGUF model."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"No model file at {p}.")
    if p.is_dir():
        raise ModelError(f"{p} is a directory, not a GGUF model file.")
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except PermissionError:
        raise ModelError(f"Cannot read the model file {p}: permission denied.") from None
    except OSError as exc:
        raise ModelError(f"Cannot read the model file {p}: {exc.strerror or exc}.") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"{p} is not a GGUF model file (it does not start with the GGUF magic bytes).")
    size = p.stat().st_size
    available = _available_memory()
    if available is not None and size > available:
        raise ModelError(
            f"{p} is {size / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB of memory is "
            "available; choose a smaller or more quantised model."
        )
    return p


def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_amx() -> bool:
    """The CPU has Intel AMX, where llama.cpp's extra buffer types crash on some quantisations."""
    return any(flag.startswith("amx") for flag in cpu_flags())


def _probe_key(path: Path) -> str:
    import llama_cpp

    st = path.stat()
    cpu = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16]
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{llama_cpp.__version__}|{cpu}"


def user_cache_dir() -> Path:
    """asynclm's folder in the user cache (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "asynclm"


def _probe_cache() -> Path:
    return user_cache_dir() / "extra-buffers.json"


def run_probe(argv: list[str], timeout: float = PROBE_SECONDS) -> bool:
    """Whether a probe process ran to a clean exit (a segfault or a hang says no)."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def extra_buffers_work(path: str | os.PathLike[str]) -> bool:
    """Whether llama.cpp's extra buffer types (the CPU repack and AMX layouts) evaluate ``path``'s model
    without crashing on this CPU. They speed up single-token decoding, but on CPUs with AMX the first
    batch of several tokens of a Q4_K_M model segfaults inside ``llama_decode``: the whole process
    dies, so the answer comes from a probe process, once per model file, CPU and llama.cpp version."""
    p = Path(path)
    key = _probe_key(p)
    cache = _probe_cache()
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), bool):
        return known[key]
    works = run_probe([sys.executable, "-m", "asynclm.core.llama", "--probe", str(p)])
    known[key] = works
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        pass  # probed again next time
    if not works:
        log.info("llama.cpp's extra buffer types crash on %s here; loading without them", p)
    return works


def use_extra_buffers(path: str | os.PathLike[str], setting: str = "auto") -> bool:
    """``setting``: on, off, or auto (on, unless this CPU has AMX and a probe of the model crashes)."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"extra buffer setting {setting!r}: choose auto, on or off")
    if setting != "auto":
        return setting == "on"
    return not has_amx() or extra_buffers_work(path)


@dataclass(frozen=True)
class ModelInfo:
    path: str
    name: str
    description: str
    n_params: int
    size_bytes: int
    n_ctx_train: int
    metadata: dict[str, str]


def available_cores() -> int:
    """The cores this process may run on (its affinity, where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> tuple[int, int]:
    """Decode and prompt threads when none are given: half the cores for decoding, all for prompts.

    A decode step is one small graph whose threads meet at a barrier after every operation; when
    another thread needs the same core (a tool, the interface, a build beside the session), one
    of them waits for the other's time slice at each barrier and decoding collapses (figures in
    docs/performance.md). Prompts and interrupts are evaluated in batches, with far fewer barriers
    per token, and keep every core."""
    cores = available_cores()
    return max(1, cores // 2), cores


class LlamaBackend:
    """One model, one context, one sequence: append tokens, read logits."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        progress: "Callable[[float], None] | None" = None,
        extra_buffers: str = "auto",
    ) -> None:
        p = check_model_file(path)
        self.extra_buffers = use_extra_buffers(p, extra_buffers)
        import llama_cpp

        self._lib = llama_cpp
        _install_log_callback()
        llama_cpp.llama_backend_init()
        _recent_log.clear()

        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.use_extra_bufts = self.extra_buffers
        if progress is not None:
            @llama_cpp.llama_progress_callback
            def on_progress(fraction: float, user_data: ctypes.c_void_p) -> bool:
                try:
                    progress(float(fraction))
                except Exception:
                    pass
                return True

            self._progress_cb = on_progress  # kept alive for the duration of the load
            mparams.progress_callback = on_progress
        model = llama_cpp.llama_model_load_from_file(str(p).encode(), mparams)
        if not model:
            raise ModelError(
                f"llama.cpp could not load {p}: {self._load_failure_reason()}."
            )
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)

        threads, batch_threads = (n_threads, n_threads) if n_threads else default_threads()
        cparams = llama_cpp.llama_context_default_params()
        # 0 means the model's own trained context (capped: a 128k-token cache would not fit memory).
        cparams.n_ctx = n_ctx if n_ctx > 0 else min(n_ctx_train, DEFAULT_MAX_CTX)
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_threads = threads
        cparams.n_threads_batch = batch_threads
        cparams.no_perf = False
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            self._model = None
            raise ModelError(
                f"llama.cpp could not create a context of {cparams.n_ctx} tokens for {p}: "
                f"{self._load_failure_reason()}."
            )
        self._ctx = ctx
        self._memory = llama_cpp.llama_get_memory(ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        # llama.cpp may lower the batch size (it never exceeds n_ctx); chunk by what it chose.
        self.n_batch = min(llama_cpp.llama_n_batch(ctx), llama_cpp.llama_n_ubatch(ctx))
        self._logits_row = ctypes.c_float * self.n_vocab
        self.n_past = 0
        self.n_evaluated = 0  # tokens evaluated since load (never reset): the prefix-reuse witness

        self._one = (llama_cpp.llama_token * 1)()
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        self._eog = np.zeros(self.n_vocab, dtype=bool)
        for tok in range(self.n_vocab):
            if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                self._eog[tok] = True
        self.eos = llama_cpp.llama_vocab_eos(self._vocab)
        self.bos = llama_cpp.llama_vocab_bos(self._vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.info = self._read_info(p, n_ctx_train)

    # --- model facts --------------------------------------------------------------------------

    @staticmethod
    def _load_failure_reason() -> str:
        lines = list(_recent_log)
        # Prefer llama.cpp's specific "error loading model: <why>" over its generic last words.
        for marker in ("error loading model: ", "error: ", "failed to "):
            for line in reversed(lines):
                if marker in line and "failed to load model" not in line:
                    reason = line.split(marker, 1)[1] if marker != "failed to " else line
                    return reason.strip().rstrip(".")
        return "the file is corrupt, truncated, or of an architecture this llama.cpp does not support"

    def _read_info(self, p: Path, n_ctx_train: int) -> ModelInfo:
        lib = self._lib
        meta: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1 << 16)
        for i in range(lib.llama_model_meta_count(self._model)):
            n = lib.llama_model_meta_key_by_index(self._model, i, buf, ctypes.sizeof(buf))
            key = buf.value.decode("utf-8", errors="replace") if n >= 0 else ""
            n = lib.llama_model_meta_val_str_by_index(self._model, i, buf, ctypes.sizeof(buf))
            if n >= ctypes.sizeof(buf):  # a long value (a large chat template): read it whole
                big = ctypes.create_string_buffer(n + 1)
                lib.llama_model_meta_val_str_by_index(self._model, i, big, n + 1)
                meta[key] = big.value.decode("utf-8", errors="replace")
            elif key and n >= 0:
                meta[key] = buf.value.decode("utf-8", errors="replace")
        desc_buf = ctypes.create_string_buffer(256)
        lib.llama_model_desc(self._model, desc_buf, ctypes.sizeof(desc_buf))
        return ModelInfo(
            path=str(p),
            name=meta.get("general.name") or p.stem,
            description=desc_buf.value.decode("utf-8", errors="replace"),
            n_params=int(lib.llama_model_n_params(self._model)),
            size_bytes=int(lib.llama_model_size(self._model)),
            n_ctx_train=int(n_ctx_train),
            metadata=meta,
        )

    def is_eog(self, token: int) -> bool:
        return bool(self._eog[token])

    @property
    def eog_tokens(self) -> np.ndarray:
        return np.flatnonzero(self._eog)

    def is_control(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_get_attr(self._vocab, token) & TOKEN_ATTR_CONTROL)

    def is_special(self, token: int) -> bool:
        """A token that special-token parsing can produce from its spelling (control or user-defined)."""
        attr = self._lib.llama_vocab_get_attr(self._vocab, token)
        return bool(attr & (TOKEN_ATTR_CONTROL | TOKEN_ATTR_USER_DEFINED))

    def control_token(self, text: str) -> int | None:
        """The id of the control token spelled ``text``, if the vocabulary has one."""
        toks = self.tokenize(text, special=True)
        if len(toks) == 1 and self.is_control(toks[0]):
            return toks[0]
        return None

    # --- text <-> tokens ----------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = False, add_bos: bool = False) -> list[int]:
        """Tokenize; ``special`` parses control-token spellings and is only for engine-written text."""
        data = text.encode("utf-8", errors="replace")  # lone surrogates from a tool never crash
        cap = len(data) + 8
        buf = (self._lib.llama_token * cap)()
        n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        if n < 0:
            cap = -n
            buf = (self._lib.llama_token * cap)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
            if n < 0:
                raise ValueError(f"could not tokenize a text of {len(data)} bytes")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token contributes to the text (control tokens render as their spelling)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        n = self._lib.llama_token_to_piece(self._vocab, token, self._piece_buf, 256, 0, True)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, big, -n, 0, True)
            data = big.raw[:n]
        else:
            data = self._piece_buf.raw[:n]
        self._pieces[token] = data
        return data

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    # --- evaluation ---------------------------------------------------------------------------

    def eval(self, tokens: list[int]) -> None:
        """Append ``tokens`` to the context; afterwards ``logits()`` is for the last one."""
        n = len(tokens)
        if n == 0:
            return
        if self.n_past + n > self.n_ctx:
            raise ContextFull(self.n_ctx, self.n_past, n)
        lib = self._lib
        if n == 1:
            self._one[0] = tokens[0]
            rc = lib.llama_decode(self._ctx, lib.llama_batch_get_one(self._one, 1))
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
        else:
            for start in range(0, n, self.n_batch):
                chunk = tokens[start:start + self.n_batch]
                arr = (lib.llama_token * len(chunk))(*chunk)
                rc = lib.llama_decode(self._ctx, lib.llama_batch_get_one(arr, len(chunk)))
                if rc != 0:
                    raise RuntimeError(f"llama_decode failed with code {rc}")
        self.n_past += n
        self.n_evaluated += n

    @property
    def identity(self) -> str:
        """What a saved context state is valid for: this model file, llama.cpp and buffer layout."""
        st = Path(self.info.path).stat()
        return (f"{Path(self.info.path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{self._lib.__version__}|"
                f"{self.extra_buffers}|{self.n_vocab}")

    def save_state(self, path: Path, tokens: list[int]) -> bool:
        """Write the KV state of a context that holds exactly ``tokens`` to ``path``, with them."""
        if self.n_past != len(tokens) or not tokens:
            return False
        arr = (self._lib.llama_token * len(tokens))(*tokens)
        return bool(self._lib.llama_state_seq_save_file(self._ctx, str(path).encode(), 0, arr, len(tokens)))

    def load_state(self, path: Path, tokens: list[int]) -> bool:
        """Restore into an empty context the state saved at ``path``, if it holds exactly ``tokens``;
        ``logits()`` is stale until the next ``eval``."""
        if self.n_past != 0 or not tokens:
            return False
        out = (self._lib.llama_token * len(tokens))()
        count = ctypes.c_size_t(0)
        read = self._lib.llama_state_seq_load_file(self._ctx, str(path).encode(), 0, out, len(tokens),
                                                   ctypes.byref(count))
        if read == 0 or count.value != len(tokens) or list(out[:count.value]) != tokens:
            self.reset()
            return False
        self.n_past = len(tokens)
        return True

    def truncate(self, n_past: int) -> None:
        """Take every position from ``n_past`` on back out of the context (a draft that is not kept);
        the next ``eval`` goes on from there. ``logits()`` is stale until then."""
        if not 0 <= n_past <= self.n_past:
            raise ValueError(f"cannot truncate a context of {self.n_past} positions to {n_past}")
        if not self._lib.llama_memory_seq_rm(self._memory, 0, n_past, -1):
            raise RuntimeError("llama.cpp could not take positions back out of the context")
        self.n_past = n_past

    def logits(self) -> np.ndarray:
        """The last evaluated token's logits, read from the context (a view, valid until next eval)."""
        ptr = self._lib.llama_get_logits_ith(self._ctx, -1)  # asked for after every eval: never stale
        return np.frombuffer(self._logits_row.from_address(ctypes.addressof(ptr.contents)), dtype=np.float32)

    def kv_positions(self) -> int:
        """How many positions the KV cache holds for the sequence, as llama.cpp itself reports."""
        return int(self._lib.llama_memory_seq_pos_max(self._memory, 0)) + 1

    def perf_eval_counts(self) -> tuple[int, int]:
        """llama.cpp's own counts of (prompt-evaluated, generated) tokens since the last reset."""
        data = self._lib.llama_perf_context(self._ctx)
        return int(data.n_p_eval), int(data.n_eval)

    @property
    def n_threads(self) -> int:
        """Threads llama.cpp decodes single tokens with."""
        return self._lib.llama_n_threads(self._ctx)

    @property
    def n_threads_batch(self) -> int:
        """Threads llama.cpp evaluates batches (prompts, interrupts) with."""
        return self._lib.llama_n_threads_batch(self._ctx)

    def set_threads(self, decode: int, batch: int) -> None:
        """Threads for single-token decoding and for batches from now on (takes effect at once)."""
        self._lib.llama_set_n_threads(self._ctx, decode, batch)

    def reset(self) -> None:
        """Empty the context (a new session)."""
        self._lib.llama_memory_clear(self._memory, True)
        self.n_past = 0

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._lib.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            self._lib.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _probe(path: str) -> int:
    """Load ``path`` with the extra buffer types and evaluate a batch, then a token; exit 0 if it lived."""
    backend = LlamaBackend(path, n_ctx=256, n_threads=2, extra_buffers="on")
    tokens = backend.tokenize("The quick brown fox jumps over the lazy dog.", special=False)
    backend.eval(tokens[:16] or [0, 0])
    backend.eval([tokens[0] if tokens else 0])
    if not np.isfinite(backend.logits()).all():
        return 1
    backend.close()
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--probe"] and len(sys.argv) == 3:
    sys.exit(_probe(sys.argv[2]))
