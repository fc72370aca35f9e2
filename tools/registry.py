"""The tool registry: plain typed Python functions become tools the model can call.

A tool's parameter schema comes from its signature (types) and docstring (descriptions, Google
``Args:`` or Sphinx ``:param x:`` style). The model's arguments are validated against it before the
call runs. Each tool carries an estimated execution time for the LPT hint, starting from a declared
value and then following the running median of observed latencies; a timeout; whether it can be
cancelled; and whether it is dangerous (needs the user's confirmation before each run).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import statistics
import threading
import typing
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .schema import ArgumentError, SchemaError, check, json_schema, may_fit, type_text

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    default: Any
    description: str

    @property
    def required(self) -> bool:
        return self.default is _EMPTY

    def text(self) -> str:
        out = f"{self.name}: {type_text(self.annotation)}"
        if not self.required:
            out += f" = {self.default!r}"
        return out


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and per-parameter descriptions."""
    doc = inspect.cleandoc(doc or "")
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    for m in re.finditer(r"^\s*:param\s+(?:\w+\s+)?(\w+)\s*:\s*(.+)$", doc, re.M):
        params[m.group(1)] = m.group(2).strip()
    section = re.search(r"^(?:Args|Arguments|Parameters)\s*:\s*\n((?:[ \t]+.+\n?|\s*\n)+)", doc, re.M)
    if section:
        current = None
        for line in section.group(1).splitlines():
            m = re.match(r"^\s{1,8}(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)$", line)
            if m:
                current = m.group(1)
                params[current] = m.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return summary, params


def _shown(seconds: float) -> float:
    """An estimate as the tool list shows it: whole milliseconds under a second, tenths above."""
    ms = seconds * 1000
    return max(1, round(ms)) / 1000 if ms < 1000 else round(seconds, 1)


def longest_first(estimates: dict[str, float]) -> list[str]:
    """Tool names in the order the tool list gives them: longest shown estimate first, ties in the
    dict's order (the order the tools were added)."""
    return sorted(estimates, key=lambda name: -_shown(estimates[name]))


def _format_ms(seconds: float) -> str:
    shown = _shown(seconds)
    if shown < 1:
        return f"~{round(shown * 1000)}ms"
    return f"~{shown:.1f}s".replace(".0s", "s")


class Tool:
    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        estimate: float = 0.1,
        timeout: float | None = 30.0,
        cancellable: bool = True,
        dangerous: bool = False,
        description: str | None = None,
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        self.declared_estimate = float(estimate)
        self.timeout = timeout
        self.cancellable = cancellable
        self.dangerous = dangerous
        summary, docs = _parse_docstring(func.__doc__ or "")
        self.description = description or summary
        try:
            sig = inspect.signature(func)
            hints = typing.get_type_hints(func)
        except (TypeError, ValueError, NameError) as exc:
            raise SchemaError(f"its signature cannot be read ({exc})") from None
        params = []
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise SchemaError(f"parameter {p.name!r} is *args or **kwargs, which a model cannot fill")
            if p.name not in hints:
                raise SchemaError(f"parameter {p.name!r} has no type annotation")
            tp = hints[p.name]
            try:
                json_schema(tp)
            except SchemaError as exc:
                raise SchemaError(f"parameter {p.name!r}: {exc}") from None
            params.append(Param(p.name, tp, p.default, docs.get(p.name, "")))
        self.params = params
        self.returns = hints.get("return", Any)
        self._by_name = {p.name: p for p in params}
        self._is_async = inspect.iscoroutinefunction(func)
        self._observed: deque[float] = deque(maxlen=25)

    # --- LPT estimate -------------------------------------------------------------------------

    @property
    def estimate(self) -> float:
        """Seconds: the running median of observed latencies, or the declared value before any."""
        if self._observed:
            return statistics.median(self._observed)
        return self.declared_estimate

    def observe(self, seconds: float) -> None:
        self._observed.append(seconds)

    # --- describing ---------------------------------------------------------------------------

    def signature_text(self) -> str:
        return f"{self.name}({', '.join(p.text() for p in self.params)})"

    def schema(self) -> dict[str, Any]:
        properties = {}
        for p in self.params:
            prop = json_schema(p.annotation)
            if p.description:
                prop = {**prop, "description": p.description}
            if not p.required:
                prop = {**prop, "default": p.default}
            properties[p.name] = prop
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {"type": "object", "properties": properties,
                           "required": [p.name for p in self.params if p.required]},
        }

    # --- calling ------------------------------------------------------------------------------

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.params):
            raise ArgumentError(
                f"{self.name} takes {len(self.params)} arguments but {len(args)} were given")
        given: dict[str, Any] = {}
        for p, value in zip(self.params, args):
            given[p.name] = value
        for key, value in kwargs.items():
            if key not in self._by_name:
                known = ", ".join(p.name for p in self.params) or "none"
                raise ArgumentError(f"{self.name} has no argument {key!r} (its arguments: {known})")
            if key in given:
                raise ArgumentError(f"argument {key!r} of {self.name} is given twice")
            given[key] = value
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = check(given[p.name], p.annotation, f"argument {p.name!r}")
            elif p.required:
                raise ArgumentError(f"{self.name} is missing the required argument {p.name!r}")
        return out

    def takes_result(self, param: str, source: "Tool") -> bool:
        """Whether argument ``param`` could take, as a dataflow reference, the result of a call to
        ``source`` (by its return annotation): False only where it never could (a ``str`` result
        for a ``float`` parameter); True for a parameter this tool does not have."""
        p = self._by_name.get(param)
        return p is None or may_fit(getattr(source, "returns", Any), p.annotation)

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        if self._is_async:
            return await self.func(**arguments)
        return await in_daemon_thread(self.func, **arguments)


async def in_daemon_thread(func: Callable[..., Any], /, **arguments: Any) -> Any:
    """Run a blocking function on a thread of its own and await its value.

    The thread is a daemon: a function that never returns is abandoned by the executor at its
    timeout, runs on unseen until it returns (its value is dropped), and never keeps the process
    from exiting. A thread per call costs far less than any tool worth a thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def work() -> None:
        try:
            ok, value = True, func(**arguments)
        except BaseException as exc:  # the awaiting side decides what a tool's exception means
            ok, value = False, exc
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop has closed: nobody waits for this value any more
            pass

    threading.Thread(target=work, name=f"asynclm-tool-{getattr(func, '__name__', 'call')}", daemon=True).start()
    return await future


class Registry:
    """The session's tools, by name."""

    DRIFT = 2.0  # an estimate is re-published when observations move it by more than this factor

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._published: dict[str, float] = {}
        for t in tools:
            self.add(t)

    def add(self, tool: Tool | Callable[..., Any], **options: Any) -> Tool:
        if not isinstance(tool, Tool):
            tool = Tool(tool, **options)
        self._tools[tool.name] = tool
        return tool

    def tool(self, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of ``add``."""
        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            self.add(func, **options)
            return func
        return register

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __iter__(self):
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def describe(self) -> str:
        """The session's tool list as the model reads it (the spec's ``system`` interrupt), longest
        shown estimate first (ties in the order the tools were added): issuing ready calls in LPT
        order is then issuing them in list order."""
        if not self._tools:
            return "tools: none"
        shown = {name: self.published_estimate(t) for name, t in self._tools.items()}
        return "tools: " + " | ".join(f"{self._tools[name].signature_text()} {_format_ms(shown[name])}"
                                      for name in longest_first(shown))

    def published_estimate(self, tool: Tool) -> float:
        """The estimate the model is shown: it follows the observed median only when that has moved
        by more than ``DRIFT``, so the tool list changes rarely but never stays badly wrong."""
        current = tool.estimate
        shown = self._published.get(tool.name)
        if shown is None or not shown / self.DRIFT <= current <= shown * self.DRIFT:
            self._published[tool.name] = shown = current
        return shown

    def json_schema(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self._tools.values()]


__all__ = ["ArgumentError", "Param", "Registry", "SchemaError", "Tool", "in_daemon_thread", "longest_first"]
