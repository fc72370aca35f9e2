"""Scripted demos: timed user actions, played in the real app or headless.

A demo is a TOML file (format in ``docs/demos.md``): a name, a description, the model settings it
needs, a list of ``[[step]]`` actions (type, press, wait, wait_for, cancel, mode, new_session), and
optionally what must have happened (``[expect]``) and two turns to compare (``compare``).

The same script drives both players. In the app, steps become key presses and the app's own actions,
the code paths a person's keystrokes take; headless, they call the engine's entry points that those
actions call. ``wait_for`` counts engine events from the start of the demo, so a step never misses an
event that happened before it began waiting.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

from asynclm.core import events as ev
from asynclm.core.reducer import OUTCOMES, SessionState

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

BUILTIN_DIR = Path(__file__).parent / "demos"

ACTIONS = ("type", "press", "wait", "wait_for", "cancel", "mode", "new_session")
KEYS = ("enter", "escape", "shift+enter", "up", "down", "tab", "f2")
WAITABLE = {
    "turn_started": "a turn started",
    "turn_ended": "a turn ended",
    "call_detected": "a call was written",
    "call_started": "a call started running",
    "call_ended": "a call ended (done, failed or cancelled)",
    "result": "a call's result entered the answer",
    "user_interrupt": "a message typed mid-answer entered the answer",
    "trap": "the model waited at a trap",
}
MODEL_KEYS = {"model": str, "mode": str, "temperature": (int, float), "seed": int, "n_ctx": int,
              "max_tokens": int, "threads": int}
EXPECT_KEYS = {"tools": list, "user_interrupts": int, "acted_on": list, "traps": bool, "refs": bool,
               "ended": list}


class DemoError(Exception):
    """A demo that cannot be played; the message is one sentence naming the file and line."""


@dataclass(frozen=True)
class Step:
    action: str
    value: Any
    line: int
    speed: float = 40.0  # characters a second, for "type"
    count: int = 1  # for "wait_for": this many such events since the demo began
    timeout: float = 60.0  # for "wait_for"


@dataclass(frozen=True)
class Demo:
    name: str
    description: str
    path: Path
    steps: tuple[Step, ...]
    model: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    compare: tuple[int, int] | None = None


# --- loading ------------------------------------------------------------------------------------


def builtin_demos() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.toml"))


def find_demo(name: str) -> Path:
    """A built-in demo by name, or a script file by path."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    builtin = BUILTIN_DIR / f"{name}.toml"
    if builtin.is_file():
        return builtin
    names = ", ".join(p.stem for p in builtin_demos())
    raise DemoError(f"No demo named {name!r} and no such file (built-in demos: {names}).")


def list_demos() -> str:
    rows = []
    for path in builtin_demos():
        try:
            demo = load_demo(path)
            rows.append((demo.name, demo.description))
        except DemoError as exc:
            rows.append((path.stem, f"(broken: {exc})"))
    width = max(len(n) for n, _ in rows) if rows else 0
    lines = ["Built-in demos (asynclm-chat --demo NAME, add --headless to play without the screen):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    return "\n".join(lines)


def load_demo(path: Path) -> Demo:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DemoError(f"Cannot read the demo {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    return parse_demo(text, path)


_STEP_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*step[ \t]*\]\]", re.MULTILINE)
_TABLE_HEADER = re.compile(r"^[ \t]*\[[ \t]*(model|expect)[ \t]*\]", re.MULTILINE)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _key_line(text: str, header_line: int | None, key: str) -> int | None:
    """The line of ``key = ...`` in the table that starts at ``header_line`` (else the header's)."""
    if header_line is None:
        return None
    lines = text.splitlines()
    pattern = re.compile(rf"^[ \t]*\"?{re.escape(key)}\"?[ \t]*=")
    for number in range(header_line + 1, len(lines) + 1):
        line = lines[number - 1]
        if re.match(r"^[ \t]*\[", line):
            break
        if pattern.match(line):
            return number
    return header_line


def parse_demo(text: str, path: Path) -> Demo:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DemoError(f"{path}: not valid TOML: {exc}.") from None
    step_lines = [_line_of(text, m.start()) for m in _STEP_HEADER.finditer(text)]
    table_lines = {m.group(1): _line_of(text, m.start()) for m in _TABLE_HEADER.finditer(text)}

    def fail(line: int | None, message: str) -> DemoError:
        where = f"{path} line {line}" if line else str(path)
        return DemoError(f"{where}: {message}.")

    known = {"name", "description", "model", "step", "expect", "compare"}
    for key in data:
        if key not in known:
            raise fail(None, f"unknown key {key!r} (expected {', '.join(sorted(known))})")
    name = data.get("name", path.stem)
    description = data.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise fail(None, "name and description must be text")
    model = _table(data, "model", MODEL_KEYS, "model setting", text, table_lines, fail)
    if "mode" in model and model["mode"] not in ("async", "sync", "sync-parallel"):
        raise fail(_key_line(text, table_lines.get("model"), "mode"),
                   f"mode must be async, sync or sync-parallel, not {model['mode']!r}")
    raw_steps = data.get("step", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise fail(None, "a demo needs at least one [[step]]")
    steps = tuple(_parse_step(raw, step_lines[i] if i < len(step_lines) else None, text, fail)
                  for i, raw in enumerate(raw_steps))
    expect = _table(data, "expect", EXPECT_KEYS, "expectation", text, table_lines, fail)
    compare = data.get("compare")
    if compare is not None:
        if (not isinstance(compare, list) or len(compare) != 2
                or not all(isinstance(n, int) and n >= 1 for n in compare)):
            raise fail(None, "compare must name two turns, e.g. compare = [1, 2]")
        compare = (compare[0], compare[1])
    return Demo(name, description, path, steps, model, expect, compare)


def _table(data: dict, name: str, schema: dict[str, Any], what: str, text: str, table_lines: dict[str, int],
           fail: Callable[[int | None, str], DemoError]) -> dict[str, Any]:
    """The ``[name]`` table, every key known to ``schema`` and of its type (bools are not numbers)."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise fail(None, f"[{name}] must be a table")
    for key, value in table.items():
        kind = schema.get(key)
        line = _key_line(text, table_lines.get(name), key)
        if kind is None:
            raise fail(line, f"unknown {what} {key!r} (expected {', '.join(schema)})")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise fail(line, f"{what} {key!r} has the wrong type")
    return table


def _parse_step(raw: Any, header: int | None, text: str, fail: Callable[[int | None, str], DemoError]) -> Step:
    if not isinstance(raw, dict):
        raise fail(header, "a step must be a table")
    actions = [k for k in raw if k in ACTIONS]
    extras = [k for k in raw if k not in ACTIONS and k not in ("speed", "count", "timeout")]
    if extras:
        raise fail(_key_line(text, header, extras[0]),
                   f"unknown key {extras[0]!r} in a step (actions: {', '.join(ACTIONS)})")
    if len(actions) != 1:
        raise fail(header, f"a step needs exactly one action of {', '.join(ACTIONS)}")
    action = actions[0]
    value = raw[action]
    line = _key_line(text, header, action)
    options: dict[str, Any] = {}
    for key, kind in (("speed", (int, float)), ("count", int), ("timeout", (int, float))):
        if key in raw:
            if not isinstance(raw[key], kind) or isinstance(raw[key], bool) or raw[key] <= 0:
                raise fail(_key_line(text, header, key), f"{key} must be a positive number")
            options[key] = raw[key]
    if action == "type" and not (isinstance(value, str) and value):
        raise fail(line, "type needs some text")
    if action == "press" and value not in KEYS:
        raise fail(line, f"press takes one of {', '.join(KEYS)}, not {value!r}")
    if action == "wait" and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
        raise fail(line, "wait takes a number of seconds")
    if action == "wait_for" and value not in WAITABLE:
        raise fail(line, f"wait_for takes one of {', '.join(WAITABLE)}, not {value!r}")
    if action == "cancel" and not (isinstance(value, str) and value):
        raise fail(line, "cancel takes a call id, or \"running\" for the newest running call")
    if action == "mode" and value not in ("async", "sync", "sync-parallel"):
        raise fail(line, f"mode takes async, sync or sync-parallel, not {value!r}")
    if action == "new_session" and value is not True:
        raise fail(line, "new_session takes true")
    return Step(action, value, line or header or 0, **options)


# --- what happened ------------------------------------------------------------------------------


COUNTED = {ev.TurnStarted: "turn_started", ev.TurnEnded: "turn_ended", ev.CallDetected: "call_detected",
           ev.CallStarted: "call_started", ev.TrapEntered: "trap"} | dict.fromkeys(OUTCOMES, "call_ended")


class DemoRecorder(SessionState):
    """An engine sink: the session's events, folded, and a count of every waitable event.

    Thread-safe: events arrive on the engine's threads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.monotonic()
        self.counts = {name: 0 for name in WAITABLE}
        self._lock = threading.RLock()

    def __call__(self, e: ev.Event) -> None:
        with self._lock:
            turn = self.turn
            heard = (len(turn.user_interrupts), len(turn.results)) if turn is not None else (0, 0)
            self.apply(e)
            if isinstance(e, ev.TurnStarted) or turn is not None and type(e) in COUNTED:
                self.counts[COUNTED[type(e)]] += 1
            elif turn is not None and isinstance(e, ev.InterruptInjected):
                self.counts["user_interrupt"] += len(turn.user_interrupts) - heard[0]
                self.counts["result"] += len(turn.results) - heard[1]

    def reached(self, name: str, count: int) -> bool:
        with self._lock:
            return self.counts[name] >= count

    async def wait_for(self, name: str, count: int, timeout: float) -> bool:
        """Whether ``count`` events of kind ``name`` happened within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.reached(name, count):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def running_call(self) -> str | None:
        with self._lock:
            running = self.active_calls()
            return running[-1].call_id if running else None

    # --- reports ------------------------------------------------------------------------------

    def at(self, t: float | None) -> str:
        return "-" if t is None else f"{t - self.t0:6.2f}s"

    def summary(self, demo: Demo) -> str:
        with self._lock:
            lines = [f"demo {demo.name}: timings from the start of the demo"]
            for turn in self.turns:
                took = f"{turn.ended - turn.started:.2f}s" if turn.ended is not None else "not ended"
                lines.append(f"turn {turn.turn} ({turn.mode} mode): {turn.text!r}")
                lines.append(f"  started {self.at(turn.started)}, ended {self.at(turn.ended)} "
                             f"({turn.reason or 'running'}), {took} to the end of the turn")
                for call in turn.calls:
                    took = f"{call.took:.2f}s" if call.took is not None else ""
                    refs = f" (uses {', '.join(call.refs)})" if call.refs else ""
                    lines.append(f"  call {call.call_id:<4} {call.expr[:60]}{refs}")
                    lines.append(f"       written {self.at(call.detected)}  ran {self.at(call.started)} "
                                 f"to {self.at(call.ended)} {took}  {call.outcome}")
                events = sorted([(t, f"result of {src} entered") for t, src in turn.results]
                                + [(t, f"your message entered: {text!r}") for t, text in turn.user_interrupts])
                for t, what in events:
                    lines.append(f"  {self.at(t)}  {what}")
                if turn.traps:
                    lines.append(f"  waited at {len(turn.traps)} trap(s)")
            if demo.compare:
                lines.append(self.comparison(demo.compare))
            for note in self.notices:
                lines.append(f"note: {note}")
            return "\n".join(lines)

    def comparison(self, pair: tuple[int, int]) -> str:
        a, b = (self.turns[n - 1] if n <= len(self.turns) else None for n in pair)
        if a is None or b is None or a.ended is None or b.ended is None:
            return f"compare: turns {pair[0]} and {pair[1]} did not both end"
        ta, tb = a.ended - a.started, b.ended - b.started
        ratio = ta / tb if tb > 0 else float("inf")
        return (f"compare: turn {a.turn} in {a.mode} mode took {ta:.2f}s, turn {b.turn} in {b.mode} mode "
                f"took {tb:.2f}s: {b.mode} is {ratio:.2f}x as fast")

    def check(self, expect: dict[str, Any]) -> list[str]:
        """What the demo's ``[expect]`` table asks for that did not happen (empty when all did)."""
        with self._lock:
            problems = []
            called = [c.name for c in self.calls.values()]
            for tool in expect.get("tools", []):
                if tool not in called:
                    problems.append(f"no call to {tool} (calls: {', '.join(called) or 'none'})")
            wanted = expect.get("user_interrupts")
            got = sum(len(t.user_interrupts) for t in self.turns)
            if wanted is not None and got < wanted:
                problems.append(f"{got} mid-answer message(s) entered, expected {wanted}")
            after = [c.name for c in self.calls.values() if c.after_user]
            for tool in expect.get("acted_on", []):
                if tool not in after:
                    problems.append(f"no call to {tool} after the mid-answer message "
                                    f"(after it: {', '.join(after) or 'none'})")
            if expect.get("traps") and not any(t.traps for t in self.turns):
                problems.append("the model never waited at a trap")
            if expect.get("refs") and not any(c.refs for c in self.calls.values()):
                problems.append("no call used another call's result")
            ended = [t.reason for t in self.turns]
            if "ended" in expect and ended != list(expect["ended"]):
                problems.append(f"turns ended {ended}, expected {list(expect['ended'])}")
            failed = [c.call_id for t in self.turns for c in t.calls if c.active]
            if failed:
                problems.append(f"calls never ended: {', '.join(failed)}")
            return problems


# --- headless playback --------------------------------------------------------------------------


class _Transcript:
    """Prints what a person would see: their messages and the streamed answer."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            self.out.write(text)
            self.out.flush()

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.TokenGenerated) and e.text:
            self.say(e.text)
        elif isinstance(e, ev.CallDetected):
            self.say(f"\n  [call {e.call_id}: {e.expr}]\n")
        elif isinstance(e, ev.CallFinished):
            result = e.result if len(e.result) <= 120 else e.result[:119] + "…"
            self.say(f"\n  [{e.call_id} done after {e.elapsed:.2f}s: {result}]\n")
        elif isinstance(e, ev.CallFailed):
            self.say(f"\n  [{e.call_id} failed: {e.error}]\n")
        elif isinstance(e, ev.CallCancelled):
            self.say(f"\n  [{e.call_id} cancelled]\n")
        elif isinstance(e, ev.TurnEnded):
            self.say("\n" if e.reason == "done" else f"\n  [{e.reason}]\n")


class Performer(Protocol):
    """What a demo's steps do in one front end: the keys a person would press, and its own actions."""

    async def type(self, text: str, speed: float) -> None: ...
    async def press(self, key: str) -> None: ...
    async def cancel(self, call_id: str) -> bool: ...  # False: no such call runs
    def set_mode(self, mode: str) -> None: ...
    def new_session(self) -> None: ...
    def warn(self, message: str) -> None: ...
    def busy(self) -> bool: ...  # an answer is still being written or shown


async def play(demo: Demo, performer: Performer, recorder: DemoRecorder) -> None:
    """Play ``demo``'s steps on ``performer``, with the script's timing; ``wait_for`` steps watch
    ``recorder``. Ends when the last answer has ended, as a person watching would wait for it."""
    for step in demo.steps:
        if step.action == "type":
            await performer.type(step.value, step.speed)
        elif step.action == "press":
            await performer.press(step.value)
        elif step.action == "wait":
            await asyncio.sleep(step.value)
        elif step.action == "wait_for":
            if not await recorder.wait_for(step.value, step.count, step.timeout):
                performer.warn(f"Demo line {step.line}: {WAITABLE[step.value]} #{step.count} did not happen "
                               f"within {step.timeout:g}s; going on.")
        elif step.action == "cancel":
            call_id = recorder.running_call() if step.value == "running" else step.value
            if call_id is None or not await performer.cancel(call_id):
                performer.warn(f"Demo line {step.line}: no running call {step.value!r} to cancel.")
        elif step.action == "mode":
            performer.set_mode(step.value)
        elif step.action == "new_session":
            performer.new_session()
    deadline = time.monotonic() + LAST_ANSWER_SECONDS
    while performer.busy() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


LAST_ANSWER_SECONDS = 60  # how long a demo waits for an answer its last step left running


class _HeadlessPerformer:
    """The steps on a started engine, calling what the app's keys call."""

    def __init__(self, engine, printer: _Transcript, log: TextIO) -> None:
        self.engine, self.printer, self.log = engine, printer, log
        self.typed = ""

    async def type(self, text: str, speed: float) -> None:
        await asyncio.sleep(len(text) / speed)  # the time a person takes to type it
        self.typed += text

    async def press(self, key: str) -> None:
        if key == "enter" and self.typed.strip():
            self.printer.say(f"\nyou> {self.typed}\n" if not self.engine.busy
                             else f"\n  [you, mid-answer: {self.typed}]\n")
            self.engine.send(self.typed)
            self.typed = ""
        elif key == "shift+enter":
            self.typed += "\n"
        elif key == "escape":
            self.engine.stop()

    async def cancel(self, call_id: str) -> bool:
        return self.engine.cancel(call_id)

    def set_mode(self, mode: str) -> None:
        self.engine.set_mode(mode)

    def new_session(self) -> None:
        self.engine.new_session()

    def warn(self, message: str) -> None:
        print(message, file=self.log)

    def busy(self) -> bool:
        return self.engine.busy


def play_headless(demo: Demo, engine, out: TextIO = sys.stdout, log: TextIO = sys.stderr) -> DemoRecorder:
    """Play ``demo`` on a started engine, printing what a person would see."""
    recorder = DemoRecorder()
    engine.subscribe(recorder)
    printer = _Transcript(out)
    engine.subscribe(printer)
    asyncio.run(play(demo, _HeadlessPerformer(engine, printer, log), recorder))
    engine.unsubscribe(printer)
    return recorder
