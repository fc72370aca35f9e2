"""CML, the protocol between the model, the engine and the executor.

Five markers frame everything the model and the engine write into one shared context:

    [CALL] <id> [HEAD] <name>(<args>) [END]      a call, written by the model
    [INTR] <source> [HEAD] <payload> [END]       an interrupt, written by the engine only
    [TRAP] [END]                                 a trap: "wait until something arrives"

In the *native* dialect each marker is one control token of the vocabulary; in the *text* dialect the
markers are literal strings recognised in the decoded stream even when a tokenizer splits them across
tokens. This module holds what both dialects share: the streaming block parser, call-expression
parsing (``ast``, never ``eval``), payload rendering with a length cut, interrupt formatting and the
neutralising of marker strings inside injected text.

Where asynclm goes beyond or differs from the shared spec, it says so here:

- A call expression's arguments may be a bare id of an earlier call (a dataflow reference) only at the
  top level of an argument, not nested inside a list or dict literal.
- Marker strings inside injected text are neutralised by replacing their square brackets with
  full-width ones (``[CALL]`` becomes ``［CALL］``), case-insensitively and allowing inner spaces, so a
  reader still sees what was meant. The native dialect does not need this (injected text is tokenized
  with special-token parsing off and so never yields a control token) and leaves the text unchanged.
"""

from __future__ import annotations

import ast
import enum
import json
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Union


class Marker(str, enum.Enum):
    CALL = "[CALL]"
    INTR = "[INTR]"
    TRAP = "[TRAP]"
    END = "[END]"
    HEAD = "[HEAD]"

    def __str__(self) -> str:
        return self.value


MARKERS: tuple[Marker, ...] = tuple(Marker)
MARKER_BY_TEXT: dict[str, Marker] = {m.value: m for m in Marker}

# One unit of a CML stream: a marker, or a run of plain text.
Atom = Union[Marker, str]

DEFAULT_PAYLOAD_LIMIT = 2000


# --------------------------------------------------------------------------------------------
# Call expressions


class CallSyntaxError(ValueError):
    """A call block whose expression is not ``name(literal or id, ...)``."""


@dataclass(frozen=True)
class Ref:
    """A dataflow reference: the bare id of an earlier call, standing for its result."""

    call_id: str

    def __repr__(self) -> str:
        return self.call_id


@dataclass(frozen=True)
class CallExpr:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def refs(self) -> tuple[str, ...]:
        """Ids this call depends on, in the order they appear, without repeats."""
        seen: dict[str, None] = {}
        for value in (*self.args, *self.kwargs.values()):
            if isinstance(value, Ref):
                seen.setdefault(value.call_id)
        return tuple(seen)

    def render(self) -> str:
        parts = [repr(v) for v in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


def is_call_id(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text)


def _dotted_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    raise CallSyntaxError("the callee must be a tool name such as get_weather or spotify.play")


def _argument_value(node: ast.expr) -> Any:
    if isinstance(node, ast.Name):
        return Ref(node.id)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        snippet = ast.unparse(node)
        if len(snippet) > 40:
            snippet = snippet[:37] + "..."
        raise CallSyntaxError(
            f"argument {snippet} is neither a literal nor the id of an earlier call"
        ) from None


def parse_call(text: str) -> CallExpr:
    """Parse ``name(arg, key=value, key=earlier_id)`` with ``ast``; nothing is evaluated."""
    source = text.strip()
    if not source:
        raise CallSyntaxError("the call is empty")
    if source.startswith("{"):  # a family-syntax call whose JSON did not parse (``core.toolcalls``)
        try:
            json.loads(source)
        except ValueError as exc:
            raise CallSyntaxError(f"the call is not valid JSON ({getattr(exc, 'msg', exc)} at character "
                                  f"{getattr(exc, 'pos', 0)}); write each argument as a JSON value, "
                                  "such as 1200, not 20 * 60") from None
        raise CallSyntaxError('the call needs a "name" string and an "arguments" object')
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise CallSyntaxError(f"not valid call syntax ({exc.msg})") from None
    except (ValueError, MemoryError, RecursionError):
        raise CallSyntaxError("not valid call syntax") from None
    node = tree.body
    if not isinstance(node, ast.Call):
        raise CallSyntaxError("expected a call such as name(arg=value)")
    name = _dotted_name(node.func)
    args = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise CallSyntaxError("*args are not allowed in a call")
        args.append(_argument_value(arg))
    kwargs: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise CallSyntaxError("**kwargs are not allowed in a call")
        if kw.arg in kwargs:
            raise CallSyntaxError(f"argument {kw.arg!r} is given twice")
        kwargs[kw.arg] = _argument_value(kw.value)
    return CallExpr(name=name, args=tuple(args), kwargs=kwargs)


# --------------------------------------------------------------------------------------------
# Payloads and interrupts


def cut(text: str, limit: int, total: int | None = None) -> str:
    """Cut ``text`` to ``limit`` characters (0: no limit), saying how much was cut (of ``total``, where
    ``text`` is itself the start of a longer text)."""
    total = len(text) if total is None else total
    if limit <= 0 or (len(text) <= limit and total == len(text)):
        return text
    kept = min(limit, len(text))
    return f"{text[:kept]} …[cut {total - kept} of {total} chars]"


_CUT_NOTE = re.compile(r"(?: …\[cut (\d+) of (\d+) chars\])\Z")


def uncut(payload: str) -> tuple[str, int]:
    """A payload ``cut`` wrote, as the text it kept and the length of the whole."""
    m = _CUT_NOTE.search(payload)
    if m is None:
        return payload, len(payload)
    return payload[:m.start()], int(m.group(2))


def render_value(value: Any) -> str:
    """A result as the model sees it: a str as is, bytes decoded, anything else compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        # Circular structures and the like: fall back to repr rather than fail the call.
        return repr(value)


def render_payload(value: Any, limit: int = DEFAULT_PAYLOAD_LIMIT) -> str:
    return cut(render_value(value), limit)


def error_payload(exc_type: str, message: str) -> str:
    return f"error: {exc_type}: {message}" if message else f"error: {exc_type}"


CANCELLED_PAYLOAD = "cancelled"

_MARKER_LIKE = re.compile(r"\[(\s*)(CALL|INTR|TRAP|END|HEAD)(\s*)\]", re.IGNORECASE)


def neutralise(text: str) -> str:
    """Make marker strings inside injected text unreadable as markers, keeping them legible."""
    return _MARKER_LIKE.sub(lambda m: f"［{m.group(1)}{m.group(2)}{m.group(3)}］", text)


def interrupt_atoms(source: str, payload: str) -> list[Atom]:
    return [Marker.INTR, f" {source} ", Marker.HEAD, f" {payload} ", Marker.END]


def call_atoms(call_id: str, expr: str) -> list[Atom]:
    return [Marker.CALL, f" {call_id} ", Marker.HEAD, f" {expr} ", Marker.END]


def atoms_text(atoms: Iterable[Atom]) -> str:
    return "".join(a.value if isinstance(a, Marker) else a for a in atoms)


def format_interrupt(source: str, payload: str) -> str:
    return atoms_text(interrupt_atoms(source, payload))


_MARKER_SPLIT = re.compile("(" + "|".join(re.escape(m.value) for m in Marker) + ")")


def split_atoms(text: str) -> list[Atom]:
    """Split CML text (as scripts and transcripts write it) into markers and text runs."""
    out: list[Atom] = []
    for part in _MARKER_SPLIT.split(text):
        if not part:
            continue
        out.append(MARKER_BY_TEXT.get(part, part))
    return out


# --------------------------------------------------------------------------------------------
# Streaming: text markers split across tokens, and the block state machine


class TextMarkerScanner:
    """Finds marker strings in a text stream that arrives in arbitrary pieces.

    Text that could still become a marker (``"[CA"``) is held back until the next piece decides it.
    """

    _prefixes = frozenset(m.value[:i] for m in Marker for i in range(1, len(m.value)))

    def __init__(self) -> None:
        self._held = ""

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, piece: str) -> list[Atom]:
        text = self._held + piece
        self._held = ""
        out: list[Atom] = []
        for part in _MARKER_SPLIT.split(text):
            if not part:
                continue
            marker = MARKER_BY_TEXT.get(part)
            if marker is not None:
                out.append(marker)
            else:
                out.append(part)
        # Hold back a trailing run that is a proper prefix of a marker.
        if out and isinstance(out[-1], str):
            tail = out[-1]
            start = tail.rfind("[")
            if start != -1 and tail[start:] in self._prefixes:
                self._held = tail[start:]
                rest = tail[:start]
                if rest:
                    out[-1] = rest
                else:
                    out.pop()
        return out

    def flush(self) -> list[Atom]:
        held, self._held = self._held, ""
        return [held] if held else []


class BlockState(enum.Enum):
    OUTSIDE = "outside"
    CALL_ID = "call-id"  # after [CALL], before [HEAD]
    CALL_BODY = "call-body"  # after [HEAD], before [END]
    TRAP = "trap"  # after [TRAP], before [END]

    @property
    def in_block(self) -> bool:
        return self is not BlockState.OUTSIDE


@dataclass(frozen=True)
class Text:
    """Answer text outside any block."""

    text: str


@dataclass(frozen=True)
class CallClosed:
    """A call block whose [END] was just written: the id and expression, not yet validated."""

    call_id: str
    expr: str

    @property
    def raw(self) -> str:
        return atoms_text(call_atoms(self.call_id, self.expr))


@dataclass(frozen=True)
class TrapClosed:
    pass


@dataclass(frozen=True)
class Malformed:
    """Something the model wrote that breaks the block grammar."""

    reason: str
    raw: str = ""


BlockItem = Union[Text, CallClosed, TrapClosed, Malformed]


class BlockParser:
    """The block grammar over a stream of atoms: what is answer text, what is a call, what a trap."""

    def __init__(self) -> None:
        self.state = BlockState.OUTSIDE
        self._id: list[str] = []
        self._body: list[str] = []

    def reset(self) -> None:
        self.state = BlockState.OUTSIDE
        self._id.clear()
        self._body.clear()

    def feed(self, atom: Atom) -> BlockItem | None:
        state = self.state
        if not isinstance(atom, Marker):
            if state is BlockState.OUTSIDE:
                return Text(atom)
            if state is BlockState.CALL_ID:
                self._id.append(atom)
            elif state is BlockState.CALL_BODY:
                self._body.append(atom)
            elif atom.strip():
                # Text inside [TRAP] ... [END] is not part of the grammar; it is dropped.
                return Malformed("text inside a trap block was ignored", atom)
            return None
        if atom is Marker.INTR:
            return Malformed("the model wrote [INTR], which only the engine may write", atom.value)
        if state is BlockState.OUTSIDE:
            if atom is Marker.CALL:
                self.state = BlockState.CALL_ID
                return None
            if atom is Marker.TRAP:
                self.state = BlockState.TRAP
                return None
            return Malformed(f"{atom.value} outside a block was ignored", atom.value)
        if state is BlockState.CALL_ID:
            if atom is Marker.HEAD:
                self.state = BlockState.CALL_BODY
                return None
            if atom is Marker.END:
                raw = "".join(self._id)
                self.reset()
                return Malformed("a call block closed before its [HEAD]", f"[CALL]{raw}[END]")
            return Malformed(f"{atom.value} inside a call id was ignored", atom.value)
        if state is BlockState.CALL_BODY:
            if atom is Marker.END:
                item = CallClosed("".join(self._id).strip(), "".join(self._body).strip())
                self.reset()
                return item
            return Malformed(f"{atom.value} inside a call was ignored", atom.value)
        # TRAP
        if atom is Marker.END:
            self.reset()
            return TrapClosed()
        return Malformed(f"{atom.value} inside a trap was ignored", atom.value)

    @property
    def call_id(self) -> str:
        """What the open call block holds between [CALL] and [HEAD] so far."""
        return "".join(self._id)

    @property
    def body(self) -> str:
        """What the open call block holds after its [HEAD] so far."""
        return "".join(self._body)

    def abandon(self) -> str:
        """Drop an unfinished block (the answer was stopped inside it); returns what it held."""
        raw = "".join(self._id) + "".join(self._body)
        self.reset()
        return raw


_ENTRY_END = re.compile(r"(?:(?<=\dms)|(?<=\ds)) \| (?=\w+\()")  # " | " after an estimate, before a tool


def tool_estimates(tools_text: str) -> dict[str, str]:
    """Each tool's shown estimate in a tool list (``tools: f(x: int) ~300ms | g() ~5ms``), in order."""
    body = tools_text.split(": ", 1)[1] if tools_text.startswith("tools: ") else ""
    entries = [e for e in _ENTRY_END.split(body) if "(" in e]
    return {e.split("(", 1)[0]: e.rsplit(" ", 1)[-1] for e in entries}
