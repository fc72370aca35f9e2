"""Calls written in a model family's own JSON syntax, read as they stream and turned into CML calls.

Models prompted through their template's tool format write a call as
``<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>`` (Qwen, Hermes), but small ones also
write the JSON object bare, inside a ```json fence, or with the doubled braces of a template that
renders ``{{``. Each becomes ``[CALL] t1 [HEAD] f(x=1) [END]`` with a fresh id the moment its object
closes, so the call starts while the model writes on.

A bare or fenced object counts only in call position: at the start of the message or of a line, or
right after another call; and only if it has the shape of a call (a ``name`` and ``arguments`` or
``parameters``). JSON inside a sentence or a quotation stays text. A call whose body is a quotation of
text that entered the context (``quoted(body)``) stays text too, its tags neutralised. A result that the
model writes back in the form it entered in (``{"name": ..., "content": ...}``) shows as its content.
"""

from __future__ import annotations

import json
import re

from .cml import neutralise

OPEN, CLOSE, FENCE = "<tool_call>", "</tool_call>", "```"
_CALL_TAG_LIKE = re.compile(r"<(\s*/?\s*tool_call\s*)>", re.IGNORECASE)
_CALL_OBJECT_LIKE = re.compile(r'\{(\s*"name"\s*:)')
# the opening of a call object: what a model meant as a call even where its JSON then breaks
_CALL_OPENING = re.compile(r'\s*\{\s*"name"\s*:\s*"[^"\n]+"\s*,\s*"(?:arguments|parameters)"\s*:')


def neutralise_call_tags(text: str) -> str:
    """Make the family call syntax inside injected text unreadable as a call, keeping it legible: a
    model that echoes the text writes ``＜tool_call＞``, which starts no call, and ``{⁠"name": ...}``,
    whose word joiner after the brace is no JSON whitespace, so the object is no call either."""
    text = _CALL_TAG_LIKE.sub(lambda m: f"＜{m.group(1)}＞", text)
    return _CALL_OBJECT_LIKE.sub(lambda m: "{\u2060" + m.group(1), text)


def json_object_end(text: str, start: int) -> int | None:
    """The index just past the JSON object (or array) opening at ``text[start]``, once it has closed."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def read_call(body: str) -> tuple[str, dict] | None:
    """``(name, arguments)`` if ``body`` is one call object (doubled braces allowed), else None."""
    body = body.strip()
    for text in (body, body.replace("{{", "{").replace("}}", "}")):
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        args = data.get("arguments", data.get("parameters"))
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except ValueError:
                return None
        if args is None and set(data) == {"name"}:
            args = {}
        return (data["name"], args) if isinstance(args, dict) else None
    return None


def echoed_result(body: str) -> str | None:
    """The content of a tool message that a model wrote back as its answer (``{"name": ..., "content":
    ...}``, the form results enter in), else None: the answer shows the content, not the markup."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and set(data) == {"name", "content"} and isinstance(data["content"], str):
        return data["content"]
    return None


def read_calls(block: str) -> list[tuple[str, dict]] | None:
    """The calls in a fenced block: objects one after another, or a list of them; None if it holds
    anything else."""
    block = block.strip()
    try:
        data = json.loads(block)
        if isinstance(data, list):
            calls = [read_call(json.dumps(item)) for item in data]
            return calls if calls and all(calls) else None
    except ValueError:
        pass
    calls, at = [], 0
    while at < len(block):
        if block[at].isspace():
            at += 1
            continue
        end = json_object_end(block, at) if block[at] == "{" else None
        call = read_call(block[at:end]) if end else None
        if call is None:
            return None
        calls.append(call)
        at = end
    return calls or None


def _partial_suffix(text: str, tag: str) -> int:
    """How many trailing characters of ``text`` could be the start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ToolCallSyntax:
    """A text filter: ``feed(text)`` returns what is text, with the calls in it turned into CML calls.

    ``bare``: also read bare and fenced JSON calls (the tool-call dialect). ``taken(id)`` says an id is
    used; ``quoted(body)`` that a call's body is a quotation of injected text.
    """

    def __init__(self, taken=lambda call_id: False, quoted=lambda body: False, *, bare: bool = False) -> None:
        self._taken = taken
        self._quoted = quoted
        self._bare = bare
        self._held = ""
        self._next = 1
        self._position = True  # nothing but whitespace since the message, a line or a call began

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def reopen(self) -> None:
        """The model's message was closed and reopened (results entered): a call may come first."""
        self._position = True

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        out: list[str] = []
        while text:
            at, kind = self._next_opening(text)
            if kind is None:
                keep = self._undecided_tail(text)
                self._emit(out, text[:len(text) - keep])
                self._held = text[len(text) - keep:]
                break
            self._emit(out, text[:at])
            used = self._read(text, at, kind, out)
            if used is None:  # not complete yet
                self._held = text[at:]
                break
            text = text[used:]
        return "".join(out)

    def flush(self) -> str:
        """The end of the stream: a call whose object closed but whose closing tag never came still
        runs; anything else held is text."""
        held, self._held = self._held, ""
        out: list[str] = []
        while held:
            at, kind = self._next_opening(held)
            if kind is None:
                self._emit(out, held)
                break
            self._emit(out, held[:at])
            used = self._read(held, at, kind, out, final=True)
            if used is None:
                self._emit(out, held[at:])
                break
            held = held[used:]
        return "".join(out)

    # --- reading ------------------------------------------------------------------------------

    def _next_opening(self, text: str) -> tuple[int, str | None]:
        """Where the next possible call starts in ``text`` and how (tag, object or fence)."""
        tag = text.find(OPEN)
        best: tuple[int, str | None] = (tag, "tag") if tag >= 0 else (len(text), None)
        if self._bare:
            position = self._position
            for i, ch in enumerate(text[:best[0]]):
                if position and ch == "{":
                    return i, "object"
                if position and text.startswith(FENCE, i):
                    return i, "fence"
                if ch == "\n":
                    position = True
                elif not ch.isspace():
                    position = False
        return best

    def _undecided_tail(self, text: str) -> int:
        """Trailing characters that could still begin a call (``<tool_``, or ``` in call position)."""
        keep = _partial_suffix(text, OPEN)
        if self._bare:
            stripped = text.rstrip("`")
            ticks = len(text) - len(stripped)
            if ticks and ticks < len(FENCE) and self._position_after(stripped):
                keep = max(keep, ticks)
        return keep

    def _position_after(self, text: str) -> bool:
        line = text.rsplit("\n", 1)
        return (not line[-1].strip()) and (len(line) > 1 or self._position)

    def _read(self, text: str, at: int, kind: str, out: list[str], final: bool = False) -> int | None:
        """Read the call starting at ``text[at]``; the index after it, or None to wait for more."""
        if kind == "tag":
            start = at + len(OPEN)
            close = text.find(CLOSE, start)
            body_at = len(text) - len(text[start:].lstrip())
            if close >= 0 and (body_at >= close or text[body_at] != "{"):
                self._call(text[start:close], out, tagged=text[at:close + len(CLOSE)])
                return close + len(CLOSE)
            if body_at >= len(text) or text[body_at] != "{":
                return None
            end = json_object_end(text, body_at)
            if end is None:
                return None
            rest = text[end:]
            if not final and len(rest.lstrip()) < len(CLOSE) and CLOSE.startswith(rest.lstrip()):
                return None  # the closing tag may be on its way
            after = end + (len(rest) - len(rest.lstrip())) + len(CLOSE) if rest.lstrip().startswith(CLOSE) else end
            self._call(text[body_at:end], out, tagged=text[at:after])
            return after
        if kind == "object":
            end = json_object_end(text, at)
            if end is None:
                return None
            body = text[at:end]
            if read_call(body) is not None or _CALL_OPENING.match(body):
                self._call(body, out, tagged=body)
            else:
                self._emit(out, echoed_result(body) or body)
            return end
        # a fence: ```json (or ```), a block, ```
        header_end = text.find("\n", at)
        if header_end < 0:
            return None
        close = text.find(FENCE, header_end)
        if close < 0:
            return None
        block = text[header_end + 1:close]
        json_fence = text[at + len(FENCE):header_end].strip() in ("", "json")
        calls = read_calls(block) if json_fence else None
        if calls is None and json_fence and _CALL_OPENING.match(block) and not self._quoted(block):
            self._call(block, out, tagged=text[at:close + len(FENCE)])  # meant as a call: it is refused, and why
            return close + len(FENCE)
        if calls is None or any(self._quoted(json.dumps({"name": n, "arguments": a})) for n, a in calls) \
                or self._quoted(block):
            fenced = text[at:close + len(FENCE)]
            echoed = echoed_result(block) if json_fence and calls is None else None
            self._emit(out, echoed if echoed is not None else neutralise_call_tags(fenced) if calls else fenced)
            return close + len(FENCE)
        for name, args in calls:
            out.append(self._cml(name, args))
        self._position = True
        return close + len(FENCE)

    def _call(self, body: str, out: list[str], tagged: str) -> None:
        if self._quoted(body):
            self._emit(out, neutralise_call_tags(tagged))
            return
        call = read_call(body)
        if call is None:  # a broken call: the parser rejects it, so the model hears why
            out.append(f"[CALL] {self._fresh_id()} [HEAD] {neutralise(body.strip()) or '?'} [END]")
        else:
            out.append(self._cml(*call))
        self._position = True

    def _cml(self, name: str, args: dict) -> str:
        expr = f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
        return f"[CALL] {self._fresh_id()} [HEAD] {expr} [END]"

    def _emit(self, out: list[str], text: str) -> None:
        if not text:
            return
        out.append(text)
        if self._bare:
            self._position = self._position_after(text)

    def _fresh_id(self) -> str:
        while True:
            call_id = f"t{self._next}"
            self._next += 1
            if not self._taken(call_id):
                return call_id
