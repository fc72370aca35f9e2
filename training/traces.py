"""Synthetic CML sessions for the embedded model, deterministic from a seed.

A session is what the engine's context holds: the tool list (a ``system`` interrupt), then one to five
turns, each a user request followed by the ideal answer in CML. Requests ask for 1-5 calls to the
built-in tools and are phrased in many ways. The results come from running the real tools (the file
tools on a generated folder tree; the clock fixed per session).

A simulated clock decides where interrupts land: each session draws a time per output token
(5-30 ms) and an estimated execution time per tool (1 ms - 1 s, the one shown in the tool list); the
clock advances with every token written and calls finish at their start plus their latency. Results
enter at the first token boundary outside a block after they finish; a trap jumps the clock to the next
arrival. The ideal answer, which the model learns:

- ready calls first, longest estimate first (LPT), dependent calls after them with dataflow references;
- a short acknowledgement while they run;
- a sentence using each result as it arrives (an honest one for an error);
- a trap when there is nothing else to write;
- a one-line summary holding every result value when there were two or more;
- new calls for what a user interrupt adds or changes, mid-answer.

Sessions also hold what the engine does between answers: some answers are stopped by the user part
way (the calls still running report ``cancelled``, a system note says the user stopped the answer,
and the engine ends the turn), and before some later requests a system note gives the estimates that
observed latencies have moved (``updated estimates: wait ~3s | calculator ~12ms``), which the next
answer's LPT order follows.

Only what the model writes is trained on; the prompt and injected interrupts are masked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import math
import os
import random
import re
import shutil
import tempfile
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

from asynclm.core.cml import CANCELLED_PAYLOAD, Marker, Ref, error_payload, render_payload, render_value
from asynclm.core import notes
from asynclm.tools import builtins as builtin_tools
from asynclm.tools.builtins import default_registry
from asynclm.tools.registry import Registry, _format_ms, longest_first

from . import entities as ent

BOS, EOS = "<s>", "</s>"  # sentinels in a trace's atom list, for the vocabulary's own tokens


# --------------------------------------------------------------------------------------------
# What a session is made of


@dataclass
class Call:
    call_id: str
    name: str
    kwargs: dict[str, Any]
    refs: tuple[str, ...] = ()
    # filled in when the call is run
    ok: bool = True
    payload: str = ""
    value: Any = None

    def expr(self) -> str:
        parts = []
        for key, value in self.kwargs.items():
            if isinstance(value, Ref):
                text = value.call_id
            elif isinstance(value, str):
                text = json.dumps(value, ensure_ascii=False)
            else:
                text = repr(value)
            parts.append(f"{key}={text}")
        return f"{self.name}({', '.join(parts)})"


@dataclass
class Task:
    """One thing a user asks for: a phrase and the call(s) that do it."""

    kind: str
    phrase: list[tuple[str, bool]]  # (text, is_entity) runs: typos never touch entities
    calls: list[Call]
    subject: str = ""  # the entity a later "instead" may replace
    replaces: str | None = None  # id of the call this task supersedes
    expect_error: bool = False
    surface: str = ""  # the phrase as the message typed it (typos and all)

    def text(self) -> str:
        return "".join(t for t, _ in self.phrase)


@dataclass
class Turn:
    request: str
    tasks: list[Task]
    user_interrupt: str | None = None  # what the user types mid-answer
    interrupt_tasks: list[Task] = field(default_factory=list)
    interrupt_at: float = 0.5  # where in the answer it arrives, as a fraction
    stop_after: int | None = None  # the user stops the answer after this many pieces of its text
    stopped: bool = False  # it was (the answer was not over by then)


@dataclass
class Session:
    seed: int
    estimates: dict[str, float]  # seconds, as shown in the tool list
    ms_per_token: float
    tools_text: str
    turns: list[Turn]
    atoms: list[tuple[Any, bool]] = field(default_factory=list)  # (atom, written by the model)

    def text(self) -> str:
        return "".join(a.value if isinstance(a, Marker) else a for a, _ in self.atoms)


# --------------------------------------------------------------------------------------------
# Running the real tools with a fixed clock


class _FixedClock:
    def __init__(self, moment: dt.datetime) -> None:
        fixed = moment

        class FrozenDatetime(dt.datetime):
            @classmethod
            def now(cls, tz=None):  # noqa: D401 - mirrors datetime.now
                value = fixed.astimezone(tz) if tz is not None else fixed.replace(tzinfo=None)
                return cls.combine(value.date(), value.timetz())

        self.module = types.SimpleNamespace(datetime=FrozenDatetime, time=dt.time)


async def _no_sleep(_seconds: float) -> None:
    return None


class ToolRunner:
    """The built-in tools on a generated folder tree, at a fixed moment."""

    def __init__(self, rng: random.Random, heldout: bool, real: bool = False, long: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="asynclm-trace-"))
        self.tree = FileTree.build(self.root, rng, heldout, real, long)
        self.registry: Registry = default_registry(str(self.root))
        day = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            days=rng.randint(0, 364), seconds=rng.randint(0, 86399))
        self.clock = _FixedClock(day)
        stamp = day.timestamp()
        for path in self.root.rglob("*"):
            os.utime(path, (stamp, stamp))
        os.utime(self.root, (stamp, stamp))
        self.loop = asyncio.new_event_loop()

    def run(self, call: Call, values: dict[str, Any]) -> None:
        tool = self.registry.get(call.name)
        kwargs = {k: (values[v.call_id] if isinstance(v, Ref) else v) for k, v in call.kwargs.items()}
        try:
            arguments = tool.bind((), kwargs)
            with mock.patch.object(builtin_tools, "dt", self.clock.module), \
                    mock.patch.object(builtin_tools, "asyncio", types.SimpleNamespace(sleep=_no_sleep)):
                if inspect.iscoroutinefunction(tool.func):
                    value = self.loop.run_until_complete(tool.invoke(arguments))
                else:  # what the executor runs in a worker thread, run here directly
                    value = tool.func(**arguments)
        except Exception as exc:  # the executor's own rendering of a tool's failure
            call.ok, call.value = False, None
            call.payload = render_payload(error_payload(type(exc).__name__, str(exc)))
            return
        call.ok, call.value = True, value
        call.payload = render_payload(render_value(value))

    def close(self) -> None:
        self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class FileTree:
    folders: list[str]
    files: dict[str, list[str]]  # relative path -> lines
    words: dict[str, int]  # word -> number of lines containing it
    long: bool = False  # with long files and a crowded folder (``build``)
    big: list[str] = field(default_factory=list)  # those long files and that folder

    @classmethod
    def build(cls, root: Path, rng: random.Random, heldout: bool, real: bool = False,
              long: bool = False) -> "FileTree":
        """Made-up names and words; with ``real``, a folder as people's own look: names of the kinds
        real projects and home folders hold (``README.md``, ``src``, ``test_api.py``), more files,
        and lines of everyday words among the made-up ones. ``long`` adds what real folders also
        hold and the other trees never do: files of dozens of long lines (some longer than a
        result's cut) and, half the time, 16-32 more small files in one folder, so that results run to
        hundreds of characters (``LONG_RESULT``)."""
        if real:
            folders = sorted({ent.real_folder(rng, heldout) for _ in range(rng.randint(2, 4))})
            vocabulary = [ent.fresh_word(rng, heldout) for _ in range(14)] + rng.sample(ent.REAL_WORDS, 14)
            n_files, line_words, n_lines = rng.randint(5, 12), (2, 6), (1, 3)
        else:
            folders = sorted({ent.fresh_word(rng, heldout, (1, 2)) for _ in range(rng.randint(2, 3))})
            vocabulary = [ent.fresh_word(rng, heldout) for _ in range(14)]
            n_files, line_words, n_lines = rng.randint(4, 8), (2, 5), (1, 2)
        taken = {f.lower() for f in folders}
        files: dict[str, list[str]] = {}

        def new_name() -> str:
            if real:
                return ent.real_name(rng, heldout)
            return ent.fresh_word(rng, heldout) + rng.choice(ent.EXTENSIONS)

        def text(lines: tuple[int, int], words_per_line: tuple[int, int]) -> list[str]:
            return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(*words_per_line)))
                    for _ in range(rng.randint(*lines))]

        for _ in range(n_files):
            folder = rng.choice(folders + [""])
            name = new_name()
            if name.lower() in taken:  # a file named as a folder (``NOTES`` beside ``notes``)
                continue
            files[f"{folder}/{name}" if folder else name] = text(n_lines, line_words)
        big: list[str] = []
        if long:  # drawn after the rest, so that the tree's other files are those of a short tree
            crowded = rng.choice(folders) if rng.random() < 0.5 else None
            big += [crowded] if crowded else []
            extra = [(rng.choice(folders + [""]), (12, 70), (4, 14)) for _ in range(rng.randint(1, 3))]
            extra += [(crowded, (1, 3), (2, 6)) for _ in range(rng.randint(16, 32))] if crowded else []
            for folder, lines, words_per_line in extra:
                name = new_name()
                rel = f"{folder}/{name}" if folder else name
                if name.lower() in taken or rel in files:
                    continue
                files[rel] = text(lines, words_per_line)
                if lines[0] > 3:
                    big.append(rel)
        for folder in folders:
            (root / folder).mkdir()
        for rel, lines in files.items():
            (root / rel).write_text("\n".join(lines) + "\n")
        words: dict[str, int] = {}
        for lines in files.values():
            for line in lines:
                for w in set(line.split()):
                    words[w] = words.get(w, 0) + 1
        return cls(folders, files, words, long, big)


# --------------------------------------------------------------------------------------------
# Requests


def _num(x: float | int) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class Planner:
    """Draws requests (tasks with their calls) for one session."""

    KINDS = [("calc", 20), ("time", 11), ("convert_time", 7), ("units", 14), ("calc_units", 6),
             ("list_dir", 8), ("read_file", 11), ("search", 8), ("file_info", 9), ("wait", 6)]

    def __init__(self, rng: random.Random, heldout: bool, tree: FileTree,
                 kinds: tuple[str, ...] | None = None) -> None:
        self.rng, self.heldout, self.tree = rng, heldout, tree
        self.n_calls = 0
        self.kinds = [(k, w) for k, w in self.KINDS if kinds is None or k in kinds]

    def new_id(self) -> str:
        self.n_calls += 1
        return f"p{self.n_calls}"

    def call(self, name: str, refs: tuple[str, ...] = (), **kwargs: Any) -> Call:
        return Call(self.new_id(), name, kwargs, refs)

    def num(self, lo: int, hi: int) -> int:
        return ent.number(self.rng, self.heldout, lo, hi)

    def task(self, avoid: set[str] = frozenset()) -> Task:
        kinds, weights = zip(*self.kinds)
        while True:
            kind = self.rng.choices(kinds, weights)[0]
            if kind not in avoid or self.rng.random() < 0.3:
                return getattr(self, "_" + kind)()

    # each maker returns a Task; E marks an entity run
    def _calc(self) -> Task:
        r = self.rng
        a, b = self.num(2, 999), self.num(2, 99)
        form = r.random()
        if form < 0.08:  # an error the tool reports
            expr = f"{a}/0"
            phrase = [(r.choice(["what is ", "compute ", "calculate "]), False), (expr, True)]
            return Task("calc", phrase, [self.call("calculator", expression=expr)], expr, expect_error=True)
        if form < 0.45:
            op_word, op = r.choice([("times", "*"), ("plus", "+"), ("minus", "-"), ("divided by", "/"),
                                    ("multiplied by", "*")])
            expr = f"{a}{op}{b}"
            lead = r.choice(["what is ", "what's ", "how much is ", "compute ", ""])
            phrase = [(lead, False), (str(a), True), (f" {op_word} ", False), (str(b), True)]
        elif form < 0.8:
            c = self.num(2, 99)
            shapes = [f"{a}*{b}", f"{a}+{b}*{c}", f"({a}+{b})*{c}", f"{a}-{b}", f"{a}/{b}", f"{a}**2",
                      f"{b}**3", f"{a}*{b}-{c}", f"({a}-{c})/{b}", f"{a}%{b}"]
            expr = r.choice(shapes)
            lead = r.choice(["what is ", "calculate ", "compute ", "evaluate ", "work out ", ""])
            phrase = [(lead, False), (expr, True)]
        elif form < 0.9:
            expr = f"sqrt({a})"
            phrase = [(r.choice(["the square root of ", "what is the square root of ", "sqrt of "]), False),
                      (str(a), True)]
        else:
            p = self.num(2, 95)
            expr = f"{p}/100*{a}"
            phrase = [(r.choice(["what is ", "how much is ", ""]), False), (f"{p}%", True),
                      (" of ", False), (str(a), True)]
        return Task("calc", phrase, [self.call("calculator", expression=expr)], expr)

    def _city(self) -> str:
        return ent.pick(self.rng, ent.cities(), self.heldout)

    def _time(self) -> Task:
        r = self.rng
        error = r.random() < 0.08
        city = ent.fresh_word(self.rng, self.heldout).capitalize() if error else self._city()
        lead = r.choice(["what time is it in ", "the time in ", "current time in ", "what's the time in ",
                         "local time in ", "time in "])
        phrase = [(lead, False), (city, True)]
        return Task("time", phrase, [self.call("current_time", timezone=city)], city, expect_error=error)

    def _convert_time(self) -> Task:
        r = self.rng
        a, b = self._city(), self._city()
        while b == a:
            b = self._city()
        hm = f"{r.randint(0, 23):02d}:{r.choice(range(0, 60, 5)):02d}"
        form = r.randrange(3)
        if form == 0:
            phrase = [("convert ", False), (hm, True), (" from ", False), (a, True), (" to ", False), (b, True),
                      (" time", False)]
        elif form == 1:
            phrase = [("what is ", False), (hm, True), (" ", False), (a, True), (" time in ", False),
                      (b, True)]
        else:
            phrase = [("when it is ", False), (hm, True), (" in ", False), (a, True),
                      (", what time is it in ", False), (b, True)]
        call = self.call("convert_time", time=hm, from_timezone=a, to_timezone=b)
        return Task("convert_time", phrase, [call], b)

    def _units(self) -> Task:
        r = self.rng
        error = r.random() < 0.08
        u1, u2 = r.choice(ent.BAD_UNIT_PAIRS if error else ent.UNIT_PAIRS)
        v: int | float = self.num(1, 999) if r.random() < 0.6 else ent.decimal(r, self.heldout, 1, 500)
        form = r.randrange(4)
        if form == 0:
            phrase = [("convert ", False), (_num(v), True), (" ", False), (u1, True), (" to ", False), (u2, True)]
        elif form == 1:
            phrase = [("how many ", False), (u2, True), (" is ", False), (_num(v), True), (" ", False), (u1, True)]
        elif form == 2:
            phrase = [(_num(v), True), (" ", False), (u1, True), (" in ", False), (u2, True)]
        else:
            phrase = [("what is ", False), (_num(v), True), (" ", False), (u1, True), (" in ", False),
                      (u2, True)]
        call = self.call("convert_units", value=v, from_unit=u1, to_unit=u2)
        return Task("units", phrase, [call], u2, expect_error=error)

    def _calc_units(self) -> Task:
        r = self.rng
        a, b = self.num(2, 99), self.num(2, 60)
        u1, u2 = r.choice(ent.UNIT_PAIRS)
        expr = f"{a}*{b}"
        first = self.call("calculator", expression=expr)
        second = self.call("convert_units", refs=(first.call_id,), value=Ref(first.call_id),
                           from_unit=u1, to_unit=u2)
        form = r.randrange(2)
        if form == 0:
            phrase = [("take ", False), (expr, True), (" ", False), (u1, True), (" and convert it to ", False),
                      (u2, True)]
        else:
            phrase = [("what is ", False), (str(a), True), (" times ", False), (str(b), True), (" ", False),
                      (u1, True), (" in ", False), (u2, True)]
        return Task("calc_units", phrase, [first, second], u2)

    def _folder(self) -> str:
        big = [f for f in self.tree.big if f in self.tree.folders]
        if big and self.rng.random() < 0.6:  # a long tree's requests are mostly about its long results
            return big[0]
        return self.rng.choice(self.tree.folders)

    def _file(self) -> str:
        big = [f for f in self.tree.big if f in self.tree.files]
        if big and self.rng.random() < 0.6:
            return self.rng.choice(big)
        return self.rng.choice(sorted(self.tree.files))

    def _missing_file(self) -> str:
        return ent.fresh_word(self.rng, self.heldout) + self.rng.choice(ent.EXTENSIONS)

    def _list_dir(self) -> Task:
        r = self.rng
        error = r.random() < 0.08
        folder = ent.fresh_word(r, self.heldout, (1, 2)) if error else self._folder()
        lead = r.choice(["list ", "what's in ", "what is in ", "show the files in ", "list the folder ",
                         "which files are in "])
        return Task("list_dir", [(lead, False), (folder, True)], [self.call("list_dir", path=folder)], folder,
                    expect_error=error)

    def _read_file(self) -> Task:
        r = self.rng
        error = r.random() < 0.1
        path = self._missing_file() if error else self._file()
        lead = r.choice(["read ", "show me ", "open ", "what does ", "print ", "cat "])
        tail = " say" if lead == "what does " else ""
        return Task("read_file", [(lead, False), (path, True), (tail, False)],
                    [self.call("read_file", path=path)], path, expect_error=error)

    def _search(self) -> Task:
        r = self.rng
        words = sorted(w for w, n in self.tree.words.items() if n <= 3)
        if self.tree.long and r.random() < 0.4:  # a word on many lines: a long list of hits
            words = sorted(w for w, n in self.tree.words.items() if n > 6) or words
        word = ent.fresh_word(r, self.heldout) if r.random() < 0.15 or not words else r.choice(words)
        if r.random() < 0.3:
            folder = self._folder()
            lead = r.choice(["search ", "look in "])
            phrase = [(lead, False), (folder, True), (" for ", False), (word, True)]
            call = self.call("search_files", pattern=word, path=folder)
        else:
            lead = r.choice(["search for ", "which files mention ", "find ", "grep for ", "where is "])
            phrase = [(lead, False), (word, True)]
            call = self.call("search_files", pattern=word)
        return Task("search", phrase, [call], word)

    def _file_info(self) -> Task:
        r = self.rng
        error = r.random() < 0.08
        path = self._missing_file() if error else (self._file() if r.random() < 0.8 else self._folder())
        lead, tail = r.choice([("how big is ", ""), ("how many lines does ", " have"), ("info on ", ""),
                               ("size of ", ""), ("details of ", ""), ("when was ", " last changed")])
        return Task("file_info", [(lead, False), (path, True), (tail, False)],
                    [self.call("file_info", path=path)], path, expect_error=error)

    def _wait(self) -> Task:
        r = self.rng
        n = r.randint(1, 4)
        lead, tail = r.choice([("wait ", " seconds"), ("set a timer for ", " seconds"),
                               ("start a ", " second timer"), ("remind me in ", " seconds")])
        return Task("wait", [(lead, False), (str(n), True), (tail, False)], [self.call("wait", seconds=n)],
                    str(n))

    def instead(self, task: Task) -> Task | None:
        """A mid-answer change: the same request with another subject, replacing the old call."""
        old = task.calls[-1]
        if task.kind == "time" and not task.expect_error:
            new = self._city()
            call = self.call("current_time", timezone=new)
        elif task.kind in ("read_file", "file_info") and not task.expect_error:
            new = self._file()
            call = self.call(old.name, path=new)
        elif task.kind == "units" and not task.expect_error:
            choices = [u2 for u1, u2 in ent.UNIT_PAIRS if u1 == old.kwargs["from_unit"] and u2 != task.subject]
            if not choices:
                return None
            new = self.rng.choice(choices)
            call = self.call("convert_units", value=old.kwargs["value"], from_unit=old.kwargs["from_unit"],
                             to_unit=new)
        else:
            return None
        if new == task.subject:
            return None
        lead = self.rng.choice(["actually, ", "wait, ", "sorry, ", "no, "])
        form = self.rng.randrange(2)
        if form == 0:
            phrase = [(lead, False), (new, True), (" instead of ", False), (task.subject, True)]
        else:
            phrase = [(lead, False), ("make it ", False), (new, True), (", not ", False), (task.subject, True)]
        return Task(task.kind, phrase, [call], new, replaces=old.call_id)


_POLITE = ["", "", "", "please ", "can you ", "could you ", "hey, ", "quick one: ", "i need this: "]


def _join(rng: random.Random, parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    style = rng.randrange(4)
    if style == 0:
        return ", ".join(parts[:-1]) + " and " + parts[-1]
    if style == 1:
        return "; ".join(parts)
    if style == 2:
        return ". ".join(parts[:1]) + ". Also " + ", ".join(parts[1:])
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + word[i + 1:]


def _surface(rng: random.Random, phrase: list[tuple[str, bool]], typo_rate: float) -> str:
    out = []
    for text, is_entity in phrase:
        if not is_entity and typo_rate:
            text = re.sub(r"[A-Za-z]+", lambda m: _typo(rng, m.group()) if rng.random() < typo_rate
                          else m.group(), text)
        out.append(text)
    return "".join(out)


def render_request(rng: random.Random, tasks: list[Task], typo_rate: float = 0.03) -> str:
    parts = [_surface(rng, t.phrase, typo_rate) for t in tasks]
    for task, part in zip(tasks, parts):
        task.surface = part
    text = rng.choice(_POLITE) + _join(rng, parts)
    if rng.random() < 0.5:
        text += rng.choice(["?", ".", "!", ""]) if text[-1].isalnum() else ""
    if rng.random() < 0.55 and text[0].isalpha():
        text = text[0].upper() + text[1:]
    return text


# --------------------------------------------------------------------------------------------
# What the model says about results


# A result longer than this (in characters) is too long to repeat: the answer says how it begins (its
# first lines, entries or matches, ``LONG_KEEP`` of them) and that there is more. No result of the
# short trees comes near it (the longest is about 210 characters).
LONG_RESULT = 400
LONG_KEEP = {"list_dir": 6, "read_file": 2, "search_files": 4}


def is_long(call: Call) -> bool:
    return call.ok and call.name in LONG_KEEP and len(call.payload) > LONG_RESULT


def key_values(call: Call) -> list[str]:
    """The parts of a successful result that an answer must contain."""
    if not call.ok:
        return []
    if is_long(call):
        return _all_values(call)[:LONG_KEEP[call.name]]
    return _all_values(call)


def _all_values(call: Call) -> list[str]:
    if call.name == "calculator":
        return [call.payload]
    if call.name == "current_time":
        return [call.payload.split(" ")[1]]
    if call.name == "convert_time":
        return [call.payload.split(" ")[1]]
    if call.name == "convert_units":
        return [call.payload.split(" = ", 1)[1].split(" ")[0]]
    if call.name == "list_dir":
        if call.payload == "(empty folder)":
            return []
        return [row.split("  ")[0] for row in call.payload.splitlines()]
    if call.name == "read_file":
        return [line for line in call.payload.splitlines() if line.strip()]
    if call.name == "search_files":
        if call.payload.startswith("no matches"):
            return []
        return [":".join(line.split(":")[:2]) for line in call.payload.splitlines()]
    if call.name == "file_info":
        info = json.loads(call.payload)
        return [info["size"]] + ([str(info["lines"])] if "lines" in info else [])
    if call.name == "wait":
        return [call.payload]
    return [call.payload]


def _short_error(call: Call) -> str:
    text = call.payload.removeprefix("error: ")
    kind, _, message = text.partition(": ")
    return message or kind


def result_sentence(rng: random.Random, call: Call, task: Task) -> str:
    a = call.kwargs
    if not call.ok:
        what = {
            "calculator": f"work out {a.get('expression')}",
            "current_time": f"get the time in {a.get('timezone')}",
            "convert_time": "convert that time",
            "convert_units": f"convert {a.get('from_unit')} to {a.get('to_unit')}",
            "list_dir": f"list {a.get('path')}",
            "read_file": f"read {a.get('path')}",
            "search_files": f"search for {a.get('pattern')}",
            "file_info": f"look up {a.get('path')}",
            "wait": "run the timer",
        }[call.name]
        lead = rng.choice(["I couldn't ", "I could not ", "Sorry, I couldn't "])
        return f"{lead}{what}: {_short_error(call)}."
    v = key_values(call)
    p = call.payload
    if call.name == "calculator":
        shown = task.text() if task.kind == "calc" and task.calls[0] is call and not task.expect_error else None
        expr = a["expression"]
        return rng.choice([f"{expr} is {v[0]}.", f"{expr} = {v[0]}.", f"The result of {expr} is {v[0]}."]) \
            if shown is None or rng.random() < 0.7 else f"{expr} comes to {v[0]}."
    if call.name == "current_time":
        date = p.split(" ")[0]
        return rng.choice([f"In {a['timezone']} it is {v[0]} on {date}.",
                           f"It is {v[0]} in {a['timezone']} ({date})."])
    if call.name == "convert_time":
        return f"{a['time']} in {a['from_timezone']} is {v[0]} in {a['to_timezone']}."
    if call.name == "convert_units":
        return rng.choice([f"{p}.", f"That is {p.split(' = ', 1)[1]} ({p})."])
    if is_long(call):
        return _long_sentence(rng, call, v)
    if call.name == "list_dir":
        if not v:
            return f"{a['path']} is empty."
        return rng.choice([f"{a['path']} holds {', '.join(v)}.", f"In {a['path']}: {', '.join(v)}."])
    if call.name == "read_file":
        body = " / ".join(v) if v else "(nothing)"
        return rng.choice([f'{a["path"]} says: "{body}".', f'{a["path"]} reads "{body}".'])
    if call.name == "search_files":
        if not v:
            return f"No file mentions {a['pattern']}."
        return rng.choice([f"{a['pattern']} appears at {', '.join(v)}.", f"Found {a['pattern']} at {', '.join(v)}."])
    if call.name == "file_info":
        info = json.loads(p)
        if info["kind"] == "folder":
            return f"{a['path']} is a folder of {v[0]} with {info.get('entries', 0)} entries."
        lines = (f" and {v[1]} line{'' if v[1] == '1' else 's'}") if len(v) > 1 else ""
        return f"{a['path']} is {v[0]}{lines}, last changed {info['modified']}."
    if call.name == "wait":
        return rng.choice([f"Timer done: {p}.", f"Done, {p}."])
    return f"{p}."


def _long_sentence(rng: random.Random, call: Call, v: list[str]) -> str:
    a = call.kwargs
    if call.name == "list_dir":
        return rng.choice([f"{a['path']} holds many entries, starting with {', '.join(v)}.",
                           f"{a['path']} is a long list; it starts {', '.join(v)}."])
    if call.name == "read_file":
        body = " / ".join(v)
        return rng.choice([f'{a["path"]} is long; it begins "{body}".',
                           f'{a["path"]} runs on; the first lines are "{body}".'])
    return rng.choice([f"{a['pattern']} appears in many places, first at {', '.join(v)}.",
                       f"Many matches for {a['pattern']}; the first are {', '.join(v)}."])


def summary_fact(call: Call) -> str:
    a = call.kwargs
    if not call.ok:
        return f"{call.name} failed"
    v = key_values(call)
    if call.name == "calculator":
        return f"{a['expression']} = {v[0]}"
    if call.name == "current_time":
        return f"{a['timezone']} {v[0]}"
    if call.name == "convert_time":
        return f"{a['to_timezone']} {v[0]}"
    if call.name == "convert_units":
        return call.payload.split(" = ", 1)[1]
    more = " and more" if is_long(call) else ""
    if call.name in ("list_dir", "search_files"):
        return ", ".join(v) + more if v else "nothing found"
    if call.name == "read_file":
        return " / ".join(v) + more
    if call.name == "file_info":
        return f"{a['path']} {' '.join(v)}"
    return call.payload


ACKS_ONE = ["On it.", "Working on it.", "One moment.", "Checking.", "Let me check.", "Running that now."]
ACKS_MANY = ["Running all {n} now.", "Working on these {n}.", "Starting {n} calls.", "On it, {n} things.",
             "Checking {n} things at once."]
ACKS_ADD = ["Sure, adding that.", "OK, also that.", "Got it, adding it.", "Adding that too."]
ACKS_CHANGE = ["OK, {new} instead.", "Switching to {new}.", "Got it: {new}."]


# --------------------------------------------------------------------------------------------
# The simulated clock and the ideal answer

_PIECE = re.compile(r"[A-Za-z]{1,4}|\d|\s|[^\sA-Za-z\d]")


# The share of mid-answer messages that enter right after the request's calls, before any text:
# the engine injects a message at the first safe point, which is often the end of a call block.
IMMEDIATE_USER = 0.3


def approx_tokens(text: str) -> int:
    return max(1, len(_PIECE.findall(text)))


def lpt(calls: list[Call], estimates: dict[str, float]) -> list[Call]:
    """Ready calls in tool-list order (longest shown estimate first, ties in the order the tools were
    added, as ``Registry.describe`` lists them; calls to one tool in request order), then dependent
    ones."""
    rank = {name: i for i, name in enumerate(longest_first(estimates))}
    ready = [c for c in calls if not c.refs]
    ready.sort(key=lambda c: rank[c.name])
    return ready + [c for c in calls if c.refs]


def _ms(shown: str) -> float:
    text = shown.lstrip("~")
    return float(text[:-2]) if text.endswith("ms") else float(text[:-1]) * 1000


class Simulator:
    def __init__(self, session: Session, runner: ToolRunner, rng: random.Random) -> None:
        self.s, self.runner, self.rng = session, runner, rng
        self.atoms = session.atoms
        self.values: dict[str, Any] = {}
        self.issued = 0
        self.renamed: dict[str, str] = {}

    def engine(self, *atoms: Any) -> None:
        self.atoms.extend((a, False) for a in atoms if a != "")

    def model(self, *atoms: Any) -> None:
        self.atoms.extend((a, True) for a in atoms if a != "")

    def name(self, call: Call) -> None:
        """Ids follow the order calls are written in: c1, c2, ... across the session."""
        self.issued += 1
        self.renamed[call.call_id] = final = f"c{self.issued}"
        call.call_id = final
        call.refs = tuple(self.renamed[r] for r in call.refs)
        call.kwargs = {k: Ref(self.renamed[v.call_id]) if isinstance(v, Ref) else v for k, v in call.kwargs.items()}

    def latency(self, call: Call) -> float:
        if call.name == "wait":
            return float(call.kwargs["seconds"]) * 1000
        return self.s.estimates[call.name] * 1000 * self.rng.uniform(0.6, 1.5)

    def turn(self, turn: Turn) -> None:
        mpt = self.s.ms_per_token
        t = 0.0
        pending: dict[str, float] = {}  # call id -> finish time
        calls: dict[str, Call] = {}
        tasks_of: dict[str, Task] = {}
        used: list[Call] = []
        summarised = 0
        actions: list[tuple[str, Any]] = []
        user_at: float | None = None
        scheduled = False

        def issue(task_calls: list[Call]) -> None:
            nonlocal t
            for call in lpt(task_calls, self.s.estimates):
                self.name(call)
                self.model(Marker.CALL, f" {call.call_id} ", Marker.HEAD, f" {call.expr()} ", Marker.END)
                t += (approx_tokens(call.expr()) + 5) * mpt
                start = max([t] + [pending.get(r, t) for r in call.refs])
                self.runner.run(call, self.values)
                if call.ok:
                    self.values[call.call_id] = call.value
                pending[call.call_id] = start + self.latency(call)
                calls[call.call_id] = call
                deliver()

        def deliver() -> None:
            nonlocal user_at
            due = [(f, cid) for cid, f in pending.items() if f <= t]
            if user_at is not None and user_at <= t:
                due.append((user_at, "user"))
            if not due:
                return
            due.sort()
            for _, cid in due:
                if cid == "user":
                    user_at = None
                    self.engine(Marker.INTR, " user ", Marker.HEAD, f" {turn.user_interrupt} ", Marker.END)
                    new_calls = [c for task in turn.interrupt_tasks for c in task.calls]
                    for task in turn.interrupt_tasks:
                        for c in task.calls:
                            tasks_of[id(c)] = task
                    change = next((task for task in turn.interrupt_tasks if task.replaces), None)
                    ack = (self.rng.choice(ACKS_CHANGE).format(new=change.subject) if change
                           else self.rng.choice(ACKS_ADD))
                    # acted on next: the sentence under way ends, then the new calls, before
                    # any result sentence still waiting
                    actions[0:0] = [("calls", new_calls), ("text", ack)]
                    continue
                del pending[cid]
                call = calls[cid]
                self.engine(Marker.INTR, f" {cid} ", Marker.HEAD, f" {call.payload} ", Marker.END)
                # every result is reported, a changed one's too: it is news the user may still want
                used.append(call)
                actions.append(("text", result_sentence(self.rng, call, tasks_of[id(call)])))

        self.engine(Marker.INTR, " user ", Marker.HEAD, f" {turn.request} ", Marker.END)
        pieces = 0
        first = [c for task in turn.tasks for c in task.calls]
        for task in turn.tasks:
            for c in task.calls:
                tasks_of[id(c)] = task
        n = len(first)
        ack = self.rng.choice(ACKS_ONE) if n == 1 else self.rng.choice(ACKS_MANY).format(n=n)
        actions = [("calls", first), ("text", ack)]
        while True:
            if actions:
                kind, item = actions.pop(0)
                if kind == "calls":
                    issue(item)
                    if turn.user_interrupt and not scheduled:
                        # the user speaks up somewhere while the answer is under way
                        scheduled = True
                        if self.rng.random() < IMMEDIATE_USER:
                            user_at = t  # typed while the calls were being written
                            deliver()
                        else:
                            horizon = max(pending.values(), default=t)
                            user_at = t + (horizon - t) * turn.interrupt_at + mpt
                    continue
                for piece in _PIECE.findall(" " + item):
                    self.model(piece)
                    t += mpt
                    deliver()
                    pieces += 1
                    if pieces == turn.stop_after:
                        self.stop(turn, pending)
                        return
                continue
            if pending or user_at is not None:
                self.model(Marker.TRAP, " ", Marker.END)
                t += 2 * mpt
                wake = min(list(pending.values()) + ([user_at] if user_at is not None else []))
                t = max(t, wake)
                deliver()
                continue
            if len(used) >= 2 and summarised < len(used):
                summarised = len(used)
                facts = "; ".join(summary_fact(c) for c in used)
                actions.append(("text", self.rng.choice(["In short: ", "Summary: ", "So: "]) + facts + "."))
                continue
            self.model(EOS)
            return

    def stop(self, turn: Turn, pending: dict[str, float]) -> None:
        """The user stops the answer: what still runs is cancelled, and the engine closes the turn."""
        turn.stopped = True
        for cid in sorted(pending, key=lambda c: int(c[1:])):
            self.engine(Marker.INTR, f" {cid} ", Marker.HEAD, f" {CANCELLED_PAYLOAD} ", Marker.END)
        self.engine(Marker.INTR, " system ", Marker.HEAD, f" {notes.STOPPED} ", Marker.END, EOS)

    def update_estimates(self, called: list[str]) -> None:
        """Observed latencies have moved the estimates of some tools called so far: the engine says so
        ahead of the next request (``Engine._refresh_tool_list``), and LPT follows the new ones."""
        est = self.s.estimates
        before = {name: _format_ms(v) for name, v in est.items()}
        for name in self.rng.sample(called, min(len(called), self.rng.choice([1, 1, 2]))):
            factor = math.exp(self.rng.uniform(math.log(2.2), math.log(8)))
            est[name] = min(5.0, max(0.001, est[name] * (factor if self.rng.random() < 0.5 else 1 / factor)))
        moved = {name: _format_ms(est[name]) for name in longest_first(est)
                 if _format_ms(est[name]) != before[name]}
        if moved:
            self.engine(Marker.INTR, " system ", Marker.HEAD, f" {notes.estimates_updated(moved)} ", Marker.END)


STOP_RATE = 0.2  # answers the user stops part way, among those a later request follows
UPDATE_RATE = 0.3  # later requests that moved estimates come before


def _merge_text(atoms: list[tuple[Any, bool]]) -> list[tuple[Any, bool]]:
    """Join adjacent text runs written by the same side (what the engine and model see as one run)."""
    out: list[tuple[Any, bool]] = []
    for atom, by_model in atoms:
        if (out and isinstance(atom, str) and atom not in (BOS, EOS) and not isinstance(atom, Marker)
                and isinstance(out[-1][0], str) and not isinstance(out[-1][0], Marker)
                and out[-1][0] not in (BOS, EOS) and out[-1][1] == by_model):
            out[-1] = (out[-1][0] + atom, by_model)
        else:
            out.append((atom, by_model))
    return out


# --------------------------------------------------------------------------------------------
# Sessions


def tools_text(registry: Registry, estimates: dict[str, float]) -> str:
    for tool in registry:
        tool.declared_estimate = estimates[tool.name]
    fresh = Registry(list(registry))
    return fresh.describe()


TURN_WEIGHTS = [3, 2, 2, 2, 2]  # 1-5 turns a session: long contexts, and the tool list read once


@dataclass(frozen=True)
class Profile:
    """What sessions hold. ``full`` is the shipped model's data; ``probe`` is the earlier probe's simpler
    regime (four tools, 1-3 calls, one turn, no user interrupts), where copying was seen to form."""

    max_turns: int = 5
    tools: tuple[str, ...] | None = None  # the tools shown and used (None: all)
    kinds: tuple[str, ...] | None = None
    max_calls: int = 5
    interrupts: bool = True
    interrupt_rate: float = 0.4  # turns with a mid-answer message, in training
    # how often a request needs 1, 2, ... 5 calls, in training: more of the long requests that are
    # hardest to get right (the evaluation keeps ``CALL_WEIGHTS``)
    call_weights: tuple[int, ...] = (20, 26, 24, 17, 13)
    # sessions on a folder tree with real-looking names (``FileTree.build``): none in the main stage's
    # data (half of them there, tried, cost calls on the made-up names), half in the last stage's
    # (``real``; docs/model-card.md); the evaluation's ``--real-files`` asks about such trees
    real_trees: float = 0.0
    # of those sessions, the share whose tree also has long files and a crowded folder (long results)
    long_trees: float = 0.0


PROFILES = {
    "full": Profile(),
    "probe": Profile(max_turns=1, tools=("calculator", "current_time", "convert_units", "read_file"),
                     kinds=("calc", "time", "units", "read_file"), max_calls=3, interrupts=False),
    # the full sessions, half of them on folders with real-looking names: a short last stage on these
    # teaches the names people use without costing the made-up ones (docs/model-card.md)
    "real": Profile(real_trees=0.5),
    # as ``real``, and half of those folders with long files and a crowded folder: long results
    "long": Profile(real_trees=0.5, long_trees=0.5),
}


def make_session(seed: int, heldout: bool = False, max_turns: int = 5, profile: str = "full") -> Session:
    shape = PROFILES[profile]
    max_turns = min(max_turns, shape.max_turns)
    rng = random.Random(seed)
    # drawn apart from the session's own draws, so that the other sessions stay as they were
    real = shape.real_trees > 0 and random.Random(f"real tree {seed}").random() < shape.real_trees
    long = real and shape.long_trees > 0 and random.Random(f"long tree {seed}").random() < shape.long_trees
    runner = ToolRunner(rng, heldout, real, long)
    try:
        estimates = {tool.name: math.exp(rng.uniform(math.log(0.001), math.log(1.0)))
                     for tool in runner.registry}
        shown = runner.registry if shape.tools is None else Registry(
            [t for t in runner.registry if t.name in shape.tools])
        session = Session(seed, estimates, rng.uniform(5, 30), tools_text(shown, estimates), [])
        session.atoms.append((BOS, False))
        sim = Simulator(session, runner, rng)
        sim.engine(Marker.INTR, " system ", Marker.HEAD, f" {session.tools_text} ", Marker.END)
        planner = Planner(rng, heldout, runner.tree, shape.kinds)
        n_turns = rng.choices(range(1, max_turns + 1), TURN_WEIGHTS[:max_turns])[0]
        called: list[str] = []
        for i in range(n_turns):
            turn = plan_turn(rng, planner, shape.max_calls, shape.interrupts, shape.interrupt_rate,
                             shape.call_weights)
            if called and rng.random() < UPDATE_RATE:
                sim.update_estimates(sorted(set(called)))
            if i < n_turns - 1 and not turn.user_interrupt and rng.random() < STOP_RATE:
                turn.stop_after = rng.randint(1, 12)
            session.turns.append(turn)
            sim.turn(turn)
            called += [c.name for task in turn.tasks + turn.interrupt_tasks for c in task.calls]
        session.atoms[:] = _merge_text(session.atoms)
        return session
    finally:
        runner.close()


CALL_WEIGHTS = (26, 28, 22, 14, 10)


def plan_turn(rng: random.Random, planner: Planner, max_calls: int = 5, interrupts: bool = True,
              interrupt_rate: float = 0.25, call_weights: tuple[int, ...] = CALL_WEIGHTS) -> Turn:
    """One request; with ``interrupts``, a mid-answer message in ``interrupt_rate`` of the turns.
    The evaluation keeps the defaults, so its held-out episodes do not move with the training mix."""
    budget = rng.choices([1, 2, 3, 4, 5][:max_calls], call_weights[:max_calls])[0]
    tasks: list[Task] = []
    kinds: set[str] = set()
    while sum(len(t.calls) for t in tasks) < budget:
        task = planner.task(kinds)
        if sum(len(t.calls) for t in tasks) + len(task.calls) > max_calls:
            planner.n_calls -= len(task.calls)
            continue
        tasks.append(task)
        kinds.add(task.kind)
    turn = Turn(render_request(rng, tasks), tasks)
    total = sum(len(t.calls) for t in tasks)
    if interrupts and rng.random() < interrupt_rate and total < 5:
        change = [t for t in tasks if t.kind in ("time", "read_file", "file_info", "units")]
        extra = None
        if change and rng.random() < 0.4:
            extra = planner.instead(rng.choice(change))
        if extra is None:
            extra = planner.task(kinds)
            while len(extra.calls) + total > 5:
                planner.n_calls -= len(extra.calls)
                extra = planner.task(kinds)
            lead = rng.choice(["also ", "and ", "oh, and ", "one more: ", "plus "])
            text = lead + _surface(rng, extra.phrase, 0.03)
            extra.surface = text[len(lead):]
        else:
            text = extra.surface = _surface(rng, extra.phrase, 0.03)
        turn.user_interrupt = text
        turn.interrupt_tasks = [extra]
        turn.interrupt_at = rng.uniform(0.05, 0.9)
    return turn


def _opens_user_message(atoms: list, i: int) -> bool:
    """Whether ``atoms[i:]`` (bare atoms) begins a message the user typed: ``[INTR] user [HEAD] text [END]``."""
    return atoms[i] is Marker.INTR and i + 4 < len(atoms) and atoms[i + 1] == " user " and atoms[i + 2] is Marker.HEAD


def task_spans(session: Session) -> list[tuple[int, int, int, int]]:
    """Which words of the user's messages each call answers: ``(body, message, start, end)`` for every
    call the model writes, ``body`` the atom of the call's body, ``message`` the atom of the message
    that asked for it and ``start:end`` the characters of the task's phrase in that atom. The trainer
    may point one attention head of the model at those words while it writes the call."""
    asked: dict[str, tuple[int, Task, bool]] = {}  # call id -> (turn, task, typed mid-answer)
    for n, turn in enumerate(session.turns):
        for task in turn.tasks:
            asked.update((c.call_id, (n, task, False)) for c in task.calls)
        for task in turn.interrupt_tasks:
            asked.update((c.call_id, (n, task, True)) for c in task.calls)
    atoms = [a for a, _ in session.atoms]
    spans: dict[tuple[int, bool], tuple[int, dict[int, tuple[int, int]]]] = {}
    turn_no = -1
    out = []
    for i in range(len(atoms) - 3):
        if _opens_user_message(atoms, i):
            text = atoms[i + 3]
            if turn_no + 1 < len(session.turns) and text == f" {session.turns[turn_no + 1].request} ":
                turn_no += 1
                tasks, typed = session.turns[turn_no].tasks, False
            elif turn_no >= 0 and text == f" {session.turns[turn_no].user_interrupt} ":
                tasks, typed = session.turns[turn_no].interrupt_tasks, True
            else:
                continue
            where, cursor = {}, 0
            for task in tasks:
                at = text.lower().find(task.surface.lower(), cursor) if task.surface else -1
                if at >= 0:
                    where[id(task)] = (at, at + len(task.surface))
                    cursor = at + len(task.surface)
            spans[turn_no, typed] = (i + 3, where)
        elif atoms[i] is Marker.CALL and atoms[i + 2] is Marker.HEAD and isinstance(atoms[i + 1], str):
            n_task = asked.get(atoms[i + 1].strip())
            if n_task is None:
                continue
            n, task, typed = n_task
            message, where = spans.get((n, typed), (None, {}))
            if message is not None and id(task) in where:
                out.append((i + 3, message, *where[id(task)]))
    return out


def decision_spans(session: Session) -> list[tuple[int, int, int, int | None, int | None]]:
    """Where the model chooses between another call and going on in words, and what settles it:
    ``(first, last, message, start, end)``, the choice made at the last token of each atom from
    ``first`` to ``last``, and ``start:end`` the characters of ``message`` that settle it, or the
    whole atom when they are None.

    Before a call (from the atom before its [CALL] through its id, and at the previous call's [END]
    when only results came between), it is the phrase of the task the call is for. After the last call
    of a run (at its [END], and at the end of the results that land before the model writes again),
    it is the [END] of the user's latest message: nothing that message asks for is left to call. The
    trainer may point an attention head at these too, so that what the model has still to call is
    where it looks when it decides."""
    atoms = session.atoms
    phrases = {body: (message, start, end) for body, message, start, end in task_spans(session)}
    bare = [a for a, _ in atoms]
    user_ends = [i + 4 for i in range(len(bare)) if _opens_user_message(bare, i)]

    def user_between(a: int, b: int) -> bool:
        return any(a < u < b for u in user_ends)

    out: list[tuple[int, int, int, int | None, int | None]] = []
    last_end = None  # the [END] of the model's latest call, while it has written nothing since
    i = 0
    while i < len(atoms):
        atom, by_model = atoms[i]
        if not by_model:
            i += 1
            continue
        if atom is Marker.CALL:
            if i + 3 in phrases:
                message, start, end = phrases[i + 3]
                if last_end is not None and last_end < i - 1 and not user_between(last_end, i):
                    out.append((last_end, last_end, message, start, end))
                out.append((i - 1, i + 1, message, start, end))
            last_end = i + 4
            i += 5
            continue
        asked = [u for u in user_ends if u < last_end] if last_end is not None else []
        if asked:  # the run of calls ended before this atom
            out.append((last_end, last_end, asked[-1], None, None))
            if i - 1 > last_end and not user_between(last_end, i):
                out.append((i - 1, i - 1, asked[-1], None, None))
        last_end = None
        i += 1
    return out


def sessions(start: int, count: int, heldout: bool = False) -> Iterator[Session]:
    for seed in range(start, start + count):
        yield make_session(seed, heldout)


if __name__ == "__main__":
    import sys

    for s in sessions(int(sys.argv[1]) if len(sys.argv) > 1 else 0, int(sys.argv[2]) if len(sys.argv) > 2 else 2):
        print(s.text().replace("[INTR]", "\n[INTR]"))
        print("=" * 80)
