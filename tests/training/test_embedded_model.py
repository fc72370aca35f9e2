"""The shipped model: small, native CML vocabulary, and what asynclm-chat loads with no --model."""

from __future__ import annotations

import json
import subprocess
import sys

from asynclm import EMBEDDED_MODEL
from asynclm.core.dialect import select_dialect
from asynclm.core.llama import LlamaBackend
from conftest import EMPTY_CONFIG


def test_the_embedded_model_ships_small_with_markers_as_control_tokens():
    assert EMBEDDED_MODEL.is_file()
    assert EMBEDDED_MODEL.stat().st_size <= 25 * 1024 * 1024
    backend = LlamaBackend(EMBEDDED_MODEL, n_ctx=0, n_threads=2)
    try:
        assert backend.info.name == "asynclm-tiny"
        assert backend.n_ctx == backend.info.n_ctx_train == 2048  # 0 asks for the trained context
        assert select_dialect(backend).name == "native"
    finally:
        backend.close()


def test_asynclm_chat_with_no_model_answers_on_the_embedded_model(tmp_path):
    r = subprocess.run([sys.executable, "-m", "asynclm.tui.cli", "--headless", "--json", "--no-session",
                        "--temperature", "0", "--prompt", "what is 12*34", "--config", str(EMPTY_CONFIG)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    started = next(e for e in events if e["type"] == "SessionStarted")
    assert started["model"] == "asynclm-tiny" and started["dialect"] == "native"
    calls = [e for e in events if e["type"] == "CallDetected"]
    assert calls and calls[0]["name"] == "calculator"  # the tool asked for, in well-formed CML
    assert not [e for e in events if e["type"] == "CallRejected"]
    assert any(e["type"] == "CallFinished" for e in events)
    assert events[-1]["type"] == "TurnEnded" and events[-1]["reason"] == "done"
