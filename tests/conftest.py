"""Shared fixtures: a tiny random-weights GGUF built on the spot, engines over it, an event log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pytest

from asynclm.core import events as ev
from asynclm.core.engine import Engine, EngineConfig, Mode
from asynclm.core.llama import LlamaBackend
from asynclm.core.modelgen import write_random_llama
from asynclm.core.policy import ScriptedPolicy
from asynclm.tools.builtins import default_registry
from asynclm.tools.registry import Registry


def shared_data(name: str, env: str) -> Path | None:
    """A folder of ``shared/`` next to the checkout (real tokenizers, BFCL data), or ``$env``."""
    if os.environ.get(env):
        return Path(os.environ[env])
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / name).is_dir():
            return parent / "shared" / name
    return None


EMPTY_CONFIG = Path(os.devnull)  # --config for a test run that ignores the user's settings file

SUITE_COUNTS: list[str] = []


@pytest.fixture
def report_counts() -> Callable[[str], None]:
    """Record a line of a suite's counts, printed at the end of the test run."""
    return SUITE_COUNTS.append


def pytest_terminal_summary(terminalreporter) -> None:
    if SUITE_COUNTS:
        terminalreporter.section("reliability suites")
        for line in SUITE_COUNTS:
            terminalreporter.write_line(line)


@pytest.fixture
def bench():
    """Run ``bench/<script>`` with ``args`` as its command line runs it; it must succeed. Returns the
    finished process."""
    def run(script: str, *args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "bench" / script), *args],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    return run


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_llama(tmp_path_factory.mktemp("models") / "tiny.gguf", seed=7)


class EventLog:
    """Every event an engine emitted, in order, with helpers to query and wait."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self._cond = threading.Condition()
        self.hooks: list[Callable[[ev.Event], None]] = []

    def __call__(self, event: ev.Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        for hook in self.hooks:
            hook(event)

    def of(self, *types: type) -> list[Any]:
        with self._cond:
            return [e for e in self.events if isinstance(e, types)]

    def first(self, kind: type, **match: Any) -> Any:
        for e in self.of(kind):
            if all(getattr(e, k) == v for k, v in match.items()):
                return e
        raise AssertionError(f"no {kind.__name__} with {match}")

    def index(self, event: ev.Event) -> int:
        return next(i for i, e in enumerate(self.events) if e is event)

    def wait_for(self, pred: Callable[[ev.Event], bool], timeout: float = 10.0) -> ev.Event:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for an event")
                self._cond.wait(remaining)

    def answer(self, turn: int = 1) -> str:
        return self.first(ev.TurnEnded, turn=turn).text


def make_test_tools() -> Registry:
    """Built-in tools plus a few with known misbehaviour."""
    reg = default_registry()

    def boom(message: str = "it broke") -> str:
        """Always raises."""
        raise RuntimeError(message)

    async def hang() -> str:
        """Never returns on its own."""
        await asyncio.sleep(3600)
        return "unreachable"

    def huge(n: int = 1_000_000) -> str:
        """Returns n characters."""
        return "x" * n

    async def echo(text: str, delay: float = 0.0) -> str:
        """Returns its text after a delay."""
        await asyncio.sleep(delay)
        return text

    async def number(value: int, delay: float = 0.0) -> int:
        """Returns its value after a delay."""
        await asyncio.sleep(delay)
        return value

    async def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    reg.add(boom, estimate=0.001)
    reg.add(hang, estimate=1.0, timeout=0.3)
    reg.add(huge, estimate=0.01)
    reg.add(echo, estimate=0.01)
    reg.add(number, estimate=0.01)
    reg.add(double, estimate=0.001)
    return reg


class EngineMaker:
    """Builds engines on a model, driven by a script, and closes them all at the end."""

    def __init__(self) -> None:
        self.made: list[Engine] = []

    def __call__(
        self,
        model: Path,
        turns: Iterable[str] = (),
        *,
        reactions: dict[str, str] | None = None,
        mode: Mode = Mode.ASYNC,
        dialect: str = "native",
        tools: Registry | None = None,
        n_ctx: int = 4096,
        config: EngineConfig | None = None,
        policy: Any = None,
        start: bool = True,
    ) -> tuple[Engine, EventLog]:
        backend = LlamaBackend(model, n_ctx=n_ctx, n_threads=2)
        cfg = config or EngineConfig(mode=mode)
        engine = Engine(backend, tools or make_test_tools(),
                        policy=policy or ScriptedPolicy(list(turns), reactions),
                        dialect=dialect, config=cfg)
        log = EventLog()
        engine.subscribe(log)
        if start:
            engine.start()
        self.made.append(engine)
        return engine, log

    def close(self) -> None:
        for engine in self.made:
            engine.close()
            engine.backend.close()


@pytest.fixture
def engine_maker():
    maker = EngineMaker()
    yield maker
    maker.close()


@pytest.fixture
def make_engine(tiny_model: Path, engine_maker: EngineMaker):
    """Factory: an engine on the tiny model driven by a script; closed after the test."""
    return lambda turns=(), **options: engine_maker(tiny_model, turns, **options)


def prose(n: int, stem: str = "word") -> str:
    """``n`` numbered words (``word0 word1 ...``): a long scripted answer that is not a loop, which
    the engine would cut short (``core.engine.repeating``)."""
    return "".join(f"{stem}{i} " for i in range(n))


class RecordingPolicy(ScriptedPolicy):
    """A scripted policy that keeps, for every token it chose, the tokens written before it and the
    logits it was given (what the engine's steering did to them)."""

    def __init__(self, turns: Iterable[str]) -> None:
        super().__init__(turns)
        self.seen: list[tuple[list[int], np.ndarray]] = []
        self.written: list[int] = []

    def choose(self, logits, banned):
        self.seen.append((list(self.written), np.array(logits, copy=True)))
        return super().choose(logits, banned)

    def accept(self, token: int) -> None:
        self.written.append(token)
        super().accept(token)


def make_app(model: Path, turns: Iterable[str], tmp_path: Path, reactions=None, clock=None, threads: int = 2):
    """The app over a real engine on ``model``, driven by a script; exports go to ``tmp_path``."""
    from asynclm.tui.app import ChatApp

    def make_engine(progress):
        backend = LlamaBackend(model, n_ctx=4096, n_threads=threads, progress=progress)
        return Engine(backend, make_test_tools(), policy=ScriptedPolicy(list(turns), reactions),
                      config=EngineConfig())

    options = {"clock": clock} if clock is not None else {}
    return ChatApp(make_engine, export_dir=tmp_path, **options)
