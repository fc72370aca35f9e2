"""BFCL tasks as the benchmarks use them: any category file of the Berkeley Function Calling Leaderboard
(``BFCL_v4_<category>.json`` with its ``possible_answer/`` file), each task's functions emulated as
tools with a latency fixed per function name.

- A task's functions are its own: tasks put together (``combine``) keep a function whose name another
  part declares differently apart, under a new name.
- An answer set becomes one concrete call: of a parameter's allowed values the first that is a value
  (``None``, ``""`` and ``"dontcare"`` mean "may be left out"), nested dicts of answer sets likewise;
  a parameter with no value is left out, as is one the function does not declare.
- A task whose ground-truth calls could not run on its own functions (an unknown function, an argument
  of the wrong type) is skipped and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asynclm.tools.registry import Registry, Tool
from asynclm.tools.schema import ArgumentError

OMITTED = ("", None, "dontcare")


@dataclass
class Call:
    call_id: str
    name: str
    args: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)  # argument -> id of the call whose result it takes

    def expr(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.args.items()] + [f"{k}={v}" for k, v in self.refs.items()]
        return f"{self.name}({', '.join(parts)})"


@dataclass
class Task:
    task_id: str
    workload: str
    segments: list[list[Call]]  # the first from the user's message, the others typed mid-answer
    requests: list[str]
    functions: dict[str, dict]  # name -> BFCL parameters schema
    answers: list[dict[str, dict]] = field(default_factory=list)  # BFCL's answer sets, one per call


@dataclass
class Loaded:
    tasks: list[Task]
    skipped: dict[str, str]  # task id -> why its ground truth could not run


def latency_of(name: str) -> float:
    """Seconds, fixed per function name: 30-500 ms, mean about 110 ms (30 + 470 * u**4.9)."""
    u = zlib.crc32(name.encode()) / 2**32
    return 0.030 + 0.470 * u ** 4.875


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT = _Omit()


def concrete(allowed: Any) -> Any:
    """One valid value of a BFCL answer set, or ``OMIT`` where the argument may be left out."""
    for value in allowed if isinstance(allowed, list) else [allowed]:
        if isinstance(value, str) and value in OMITTED or value is None:
            continue
        if isinstance(value, dict):  # a dict whose values are answer sets in turn
            return {k: v for k, sub in value.items() if (v := concrete(sub)) is not OMIT}
        return value
    return OMIT


def accepts(allowed: Any, value: Any) -> bool:
    """Whether ``value`` is in a BFCL answer set (numbers by value, strings ignoring case and spaces
    at the ends, nested dicts key by key)."""
    for option in allowed if isinstance(allowed, list) else [allowed]:
        if isinstance(option, dict) and isinstance(value, dict):
            if set(value) <= set(option) and all(
                    accepts(sub, value[k]) if k in value else any(o in OMITTED for o in _options(sub))
                    for k, sub in option.items()):
                return True
        elif _same(option, value):
            return True
    return False


def _options(allowed: Any) -> list[Any]:
    return allowed if isinstance(allowed, list) else [allowed]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def matches(truth: dict[str, dict], name: str, args: dict[str, Any]) -> bool:
    """Whether a call (name and arguments) is one of the calls a BFCL answer allows."""
    (want, params), = truth.items()
    if name != want or not set(args) <= set(params):
        return False
    return all(accepts(allowed, args[k]) if k in args else any(o in OMITTED for o in _options(allowed))
               for k, allowed in params.items())


def bfcl_tasks(bfcl_dir: Path, category: str, limit: int) -> Loaded:
    """The first ``limit`` runnable tasks of a category, and the ones skipped before them."""
    questions = _read_jsonl(bfcl_dir / f"BFCL_v4_{category}.json")
    answers = {a["id"]: a for a in _read_jsonl(bfcl_dir / "possible_answer" / f"BFCL_v4_{category}.json")}
    loaded = Loaded([], {})
    for q in questions:
        if len(loaded.tasks) >= limit:
            break
        functions = {f["name"]: f.get("parameters", {}) for f in q["function"]}
        truth = answers.get(q["id"], {}).get("ground_truth", [])
        calls = []
        for i, answer in enumerate(truth, 1):
            (name, params), = answer.items()
            declared = functions.get(name, {}).get("properties", {})
            args = {k: v for k, allowed in params.items() if k in declared and (v := concrete(allowed)) is not OMIT}
            calls.append(Call(f"c{i}", name, args))
        turns = q["question"][0] if q["question"] and isinstance(q["question"][0], list) else q["question"]
        user = " ".join(m["content"] for m in turns if m.get("role") == "user")
        task = Task(q["id"], category, [calls], [user], functions, truth)
        why = unrunnable(task)
        if why:
            loaded.skipped[q["id"]] = why
        else:
            loaded.tasks.append(task)
    return loaded


def unrunnable(task: Task) -> str:
    """Why a task's ground-truth calls could not run on its own functions ("" if they could)."""
    if not task.segments[0]:
        return "it has no ground-truth call"
    tools = registry_for(task, 0.0)
    for segment in task.segments:
        for call in segment:
            tool = tools.get(call.name)
            if tool is None:
                return f"its answer calls {call.name}, which it does not declare"
            try:
                tool.bind((), dict(call.args))
            except ArgumentError as exc:
                return f"its answer's {call.name} call does not validate: {exc}"
    return ""


def combine(parts: list[Task], task_id: str, workload: str) -> Task:
    """Tasks as the segments of one, each part's functions its own: a name that an earlier part
    declared with other parameters is renamed (``name_2``) in this part's calls and functions."""
    segments, functions, requests = [], {}, []
    for k, part in enumerate(parts, 1):
        renamed = {name: (name if functions.get(name, schema) == schema else f"{name}_{k}")
                   for name, schema in part.functions.items()}
        functions.update({renamed[name]: schema for name, schema in part.functions.items()})
        segments.append([Call(f"u{k}{c.call_id}", renamed[c.name], c.args) for c in part.segments[0]])
        requests.append(part.requests[0])
    return Task(task_id, workload, segments, requests, functions)


# ------------------------------------------------------------------------------------------------
# Tools with emulated latencies

TYPES = {"string": str, "integer": int, "float": float, "boolean": bool, "number": float}


def emulated_tool(name: str, schema: dict, scale: float) -> Tool:
    latency = latency_of(name)

    async def run(**kwargs: Any) -> str:
        await asyncio.sleep(latency * scale)
        digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{name}: {digest}"

    required = set(schema.get("required", []))
    params, hints = [], {}
    for pname, prop in schema.get("properties", {}).items():
        tp = TYPES.get(prop.get("type"), Any)
        hints[pname] = tp
        params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, annotation=tp,
                                        default=inspect.Parameter.empty if pname in required else None))
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = hints
    run.__name__ = name.replace(".", "_")
    return Tool(run, name=name, estimate=latency * scale, timeout=30.0,
                description=f"emulated, {latency * 1000:.0f} ms")


def registry_for(task: Task, scale: float) -> Registry:
    return Registry(emulated_tool(name, schema, scale) for name, schema in task.functions.items())
