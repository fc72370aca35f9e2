"""Types to JSON schema, and validation of the model's arguments against a parameter's type.

Supported: str, int, float, bool, None, Any, list[T], tuple[T, ...], set[T], dict[str, T],
Literal[...], Optional[T] / T | None, other unions, TypedDicts and dataclasses (nested objects).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin


class SchemaError(TypeError):
    """A parameter whose type asynclm cannot describe to a model."""


class ArgumentError(ValueError):
    """An argument the model wrote that does not fit the parameter."""


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__annotations__") and hasattr(tp, "__total__")


def _type_hints(tp: Any) -> dict[str, Any]:
    return typing.get_type_hints(tp)


def json_schema(tp: Any) -> dict[str, Any]:
    if tp is Any:
        return {}
    if tp is type(None) or tp is None:
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    origin = get_origin(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (Union, types.UnionType):
        return {"anyOf": [json_schema(a) for a in get_args(tp)]}
    if origin in (list, set, frozenset) or tp in (list, set):
        args = get_args(tp)
        return {"type": "array", "items": json_schema(args[0]) if args else {}}
    if origin is tuple or tp is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": json_schema(args[0])}
        if args:
            return {"type": "array", "prefixItems": [json_schema(a) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        return {"type": "array"}
    if origin is dict or tp is dict:
        args = get_args(tp)
        if args and args[0] is not str:
            raise SchemaError("dict keys must be str")
        return {"type": "object", "additionalProperties": json_schema(args[1]) if args else {}}
    if _is_typeddict(tp) or dataclasses.is_dataclass(tp):
        hints = _type_hints(tp)
        if dataclasses.is_dataclass(tp):
            required = [f.name for f in dataclasses.fields(tp)
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        else:
            required = sorted(getattr(tp, "__required_keys__", hints))
        return {"type": "object", "properties": {k: json_schema(v) for k, v in hints.items()},
                "required": required, "additionalProperties": False}
    raise SchemaError(f"type {getattr(tp, '__name__', tp)!r} cannot be described to a model")


def type_text(tp: Any) -> str:
    """A short, Python-like spelling of a type for the tool list the model reads."""
    if tp is Any:
        return "any"
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not get_args(tp) and get_origin(tp) is None:
        return tp.__name__
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a) for a in get_args(tp))
    args = get_args(tp)
    name = getattr(origin, "__name__", str(origin))
    if args:
        return f"{name}[{', '.join('...' if a is Ellipsis else type_text(a) for a in args)}]"
    return name


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def check(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, or raise ArgumentError."""
    if tp is Any:
        return value
    if tp is type(None) or tp is None:
        if value is None:
            return None
        raise ArgumentError(f"{where} should be None, got {_describe(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ArgumentError(f"{where} should be true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ArgumentError(f"{where} should be an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ArgumentError(f"{where} should be a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ArgumentError(f"{where} should be a string, got {_describe(value)}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise ArgumentError(f"{where} should be one of {allowed}, got {_describe(value)}") from None
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        raise ArgumentError(
            f"{where} should be one of {', '.join(repr(a) for a in allowed)}, got {_describe(value)}")
    if origin in (Union, types.UnionType):
        errors = []
        for alt in get_args(tp):
            try:
                return check(value, alt, where)
            except ArgumentError as exc:
                errors.append(str(exc))
        raise ArgumentError(f"{where} should be {type_text(tp)}, got {_describe(value)}")
    if origin in (list, set, frozenset, tuple) or tp in (list, set, tuple):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ArgumentError(f"{where} should be a list, got {_describe(value)}")
        args = get_args(tp)
        items = list(value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise ArgumentError(f"{where} should have {len(args)} items, got {len(items)}")
            return tuple(check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
        item_tp = args[0] if args else Any
        checked = [check(v, item_tp, f"{where}[{i}]") for i, v in enumerate(items)]
        if origin in (set, frozenset) or tp is set:
            return set(checked)
        return tuple(checked) if (origin is tuple or tp is tuple) else checked
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ArgumentError(f"{where} should be an object (dict), got {_describe(value)}")
        args = get_args(tp)
        val_tp = args[1] if args else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ArgumentError(f"{where} keys should be strings, got {_describe(k)}")
            out[k] = check(v, val_tp, f"{where}[{k!r}]")
        return out
    if _is_typeddict(tp) or dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ArgumentError(f"{where} should be an object (dict), got {_describe(value)}")
        hints = _type_hints(tp)
        unknown = sorted(set(value) - set(hints))
        if unknown:
            raise ArgumentError(f"{where} has no field {unknown[0]!r}")
        schema = json_schema(tp)
        missing = [k for k in schema["required"] if k not in value]
        if missing:
            raise ArgumentError(f"{where} is missing the field {missing[0]!r}")
        fields = {k: check(v, hints[k], f"{where}.{k}") for k, v in value.items()}
        return tp(**fields)
    raise ArgumentError(f"{where} has a type asynclm cannot check")


def _kinds(tp: Any) -> frozenset[str] | None:
    """The kinds of value ``tp`` stands for (``number``, ``str``, ``bool``, ``none``, ``list``,
    ``object``), or None when that is not known (``Any``, enums, a type asynclm does not describe)."""
    if tp is Any:
        return None
    if tp is type(None) or tp is None:
        return frozenset({"none"})
    if tp is bool:
        return frozenset({"bool"})
    if tp in (int, float):
        return frozenset({"number"})
    if tp is str:
        return frozenset({"str"})
    origin = get_origin(tp)
    if origin in (Literal, Union, types.UnionType):
        parts = [_kinds(type(a) if origin is Literal else a) for a in get_args(tp)]
        return None if any(p is None for p in parts) else frozenset().union(*parts)
    if origin in (list, set, frozenset, tuple) or tp in (list, set, frozenset, tuple):
        return frozenset({"list"})
    if origin is dict or tp is dict or _is_typeddict(tp) or dataclasses.is_dataclass(tp):
        return frozenset({"object"})
    return None


def may_fit(produced: Any, expected: Any) -> bool:
    """Whether a value of type ``produced`` (a tool's return annotation) could pass ``check`` against
    ``expected`` (a parameter's type): False only when no such value can (a ``str`` result for a
    ``float`` parameter), True whenever either side is not known."""
    have, want = _kinds(produced), _kinds(expected)
    return have is None or want is None or bool(have & want)
