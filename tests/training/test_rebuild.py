"""The build command, run twice from the same seed, writes the same GGUF byte for byte.

Both runs go through everything the real build does (two stages, ``torch.compile``, two threads,
export), at a tiny size, each in its own process as a user would run it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--first-steps", "12", "--first-sessions", "60", "--first-row", "512", "--first-batch", "2",
        "--steps", "24", "--sessions", "40", "--val-sessions", "4", "--vocab", "600", "--row", "512",
        "--batch", "2", "--embd", "64", "--layers", "2", "--heads", "4", "--ff", "128", "--copy-steps", "0",
        "--workers", "1", "--log-every", "4", "--val-every", "100", "--threads", "2"]


def build(work: Path) -> bytes:
    out = work / "m.gguf"
    done = subprocess.run([sys.executable, "-m", "training.train", *TINY, "--work", str(work), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return out.read_bytes()


def test_the_same_command_builds_the_same_bytes(tmp_path):
    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert len(first) > 100_000
    assert first == second, "two builds from one seed differ"
