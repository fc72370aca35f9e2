"""Saved openings: the KV state of a session's fixed start (system message and tool list), on disk.

Every session of a model with the same tools opens with the same tokens: in the tools dialect the
template's tool schemas make that 600-1,500 tokens, seconds of prefill on a CPU. The first session
evaluates them and saves the context's state; later ones, in this process or another, restore it
and evaluate only the user's message. A state is keyed by the model (file, llama.cpp version, buffer
layout) and the tokens; the newest few are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from .backend import Backend
from .llama import user_cache_dir

log = logging.getLogger("asynclm.promptcache")
KEEP = 8  # saved openings kept: a handful of models and tool sets


def default_dir() -> Path:
    return user_cache_dir() / "prompts"


class PromptCache:
    def __init__(self, directory: Path | None = None, keep: int = KEEP) -> None:
        self.directory = directory or default_dir()
        self.keep = keep

    def _path(self, backend: Backend, tokens: list[int]) -> Path:
        digest = hashlib.sha256(backend.identity.encode())
        digest.update(b"".join(t.to_bytes(4, "little") for t in tokens))
        return self.directory / f"{digest.hexdigest()[:32]}.state"

    def restore(self, backend: Backend, tokens: list[int]) -> bool:
        """Put ``tokens`` into the empty context from a saved state; False if none fits."""
        path = self._path(backend, tokens)
        if not path.is_file() or not backend.load_state(path, tokens):
            return False
        try:
            os.utime(path)  # the newest are kept
        except OSError:
            pass
        return True

    def save(self, backend: Backend, tokens: list[int]) -> None:
        """Save the context, which holds exactly ``tokens``; old states beyond ``keep`` are removed."""
        path = self._path(backend, tokens)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            if backend.save_state(partial, tokens):
                os.replace(partial, path)
            partial.unlink(missing_ok=True)
            states = sorted(self.directory.glob("*.state"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in states[self.keep:]:
                old.unlink(missing_ok=True)
        except OSError as exc:  # a full or read-only disk: the next session evaluates the opening again
            log.info("could not save the opening's state: %s", exc)
