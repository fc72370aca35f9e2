"""Tools from outside the project: a Python file (``--tools my_tools.py``) or installed packages
(entry-point group ``asynclm.tools``).

A file that fails to import, or a function that cannot become a tool, gives one sentence naming the
file, the function and the problem; everything else still loads.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import sys
import traceback
import types
from pathlib import Path
from typing import Any, Callable

from .registry import Registry, Tool
from .schema import SchemaError

TOOL_OPTIONS = "__asynclm_tool__"
ENTRY_POINT_GROUP = "asynclm.tools"


def tool(func: Callable[..., Any] | None = None, **options: Any):
    """Mark a function as a tool, with options: estimate, timeout, cancellable, dangerous, name."""
    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, TOOL_OPTIONS, options)
        return f
    return mark(func) if func is not None else mark


def _candidates(module: types.ModuleType) -> list[Callable[..., Any]]:
    """The module's tools: marked functions if any are marked, else its public functions."""
    names = getattr(module, "__all__", None)
    funcs = [
        obj for name, obj in vars(module).items()
        if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
        and (names is None or name in names)
    ]
    marked = [f for f in funcs if hasattr(f, TOOL_OPTIONS)]
    return marked or funcs


def _add(registry: Registry, func: Callable[..., Any], where: str, errors: list[str]) -> None:
    try:
        tool = Tool(func, **getattr(func, TOOL_OPTIONS, {}))
    except (SchemaError, TypeError, ValueError) as exc:
        errors.append(f"{where}: function {func.__name__!r} cannot be a tool: {exc}.")
        return
    if registry.get(tool.name) is not None:  # a tool the model already knows keeps its name
        errors.append(f"{where}: function {func.__name__!r} was not loaded: there is already a tool named "
                      f"{tool.name!r} (rename it, or give it another name with @tool(name=...)).")
        return
    registry.add(tool)


def load_tool_file(path: str | Path, registry: Registry) -> list[str]:
    """Add the tools of a Python file; returns one sentence per problem."""
    p = Path(path).expanduser()
    if not p.is_file():
        return [f"{p}: no such tool file."]
    name = f"asynclm_user_tools_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        return [f"{p}: not a Python file that can be imported."]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        return [f"{p}: could not be imported: SyntaxError at line {exc.lineno}: {exc.msg}."]
    except BaseException as exc:  # anything the file does at import must not take the app down
        sys.modules.pop(name, None)
        if isinstance(exc, (KeyboardInterrupt,)):
            raise
        line = _line_in(exc, p)
        return [f"{p}: could not be imported: {type(exc).__name__}{line}: {exc}."]
    errors: list[str] = []
    funcs = _candidates(module)
    if not funcs:
        errors.append(f"{p}: defines no public functions to use as tools.")
    for func in funcs:
        _add(registry, func, str(p), errors)
    return errors


def _line_in(exc: BaseException, path: Path) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename) == path:
            return f" at line {frame.lineno}"
    return ""


def load_entry_points(registry: Registry, group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Add tools that installed packages provide: each entry point names a function, a list of
    functions, or a module."""
    errors: list[str] = []
    for ep in importlib.metadata.entry_points(group=group):
        where = f"package tool {ep.name!r} ({ep.value})"
        try:
            obj = ep.load()
        except Exception as exc:
            errors.append(f"{where}: could not be imported: {type(exc).__name__}: {exc}.")
            continue
        if inspect.ismodule(obj):
            funcs = _candidates(obj)
        elif isinstance(obj, (list, tuple)):
            funcs = list(obj)
        else:
            funcs = [obj]
        for func in funcs:
            if callable(func):
                _add(registry, func, where, errors)
            else:
                errors.append(f"{where}: {func!r} is not a function.")
    return errors
