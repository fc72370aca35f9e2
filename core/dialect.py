"""Dialects: how CML markers and injected text become tokens for a given model.

- ``native``: the five markers are control tokens of the vocabulary (the embedded model, models
  fine-tuned for CML). Engine-written markers are those token ids; every text run, including what a
  user or a tool wrote, is tokenized with special-token parsing off, so it can never yield a marker.
- ``text``: any instruct model, prompted with the protocol through its own chat template (see
  ``chat``). The markers are literal strings in the assistant's text; the monitor finds the model's
  markers however the tokenizer splits them, and a mask keeps it from completing ``[INTR`` or writing
  the template's control tokens. Interrupts enter as CML text inside the assistant's turn.
- ``chat``: as ``text``, but an interrupt closes the assistant's message, enters as the template's
  tool message (a user message for what the user typed) and reopens the assistant's message. Offered
  where the template renders tool messages. Calls may also be written in the family's own syntax
  (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``); they become CML calls with fresh ids.

- ``tools``: the template's own tool-call format (``ToolsDialect``): no CML in the prompt; calls in the
  family's JSON syntax, results as tool messages that name their call. Offered where the template
  lists tools and renders tool messages.

In all but native, injected text (user messages, tool results) has CML markers, the family call
syntax and the template's special strings neutralised, so it can forge neither a call nor a turn.
``auto`` picks native when all five markers are control tokens, else tools where the template has a
tool-call format, else chat where it has tool messages, else text.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np

from .backend import Backend
from .chat import (DEFAULT_TEMPLATES, SENTINEL, ChatTemplate, TemplateError, default_template_name,
                   system_prompt, tools_prompt)
from .cml import MARKERS, Atom, BlockState, Marker, format_interrupt, interrupt_atoms, neutralise, tool_estimates
from .interrupts import Interrupt
from .monitor import Monitor
from .toolcalls import ToolCallSyntax, neutralise_call_tags

DIALECTS = ("native", "text", "chat", "tools")


class DialectError(ValueError):
    pass


class Dialect:
    name = "?"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._text_cache: dict[str, list[int]] = {}
        self._adds_space = backend.detokenize(backend.tokenize("a", special=False)).startswith(" ")

    # --- what the engine writes ---------------------------------------------------------------

    def marker_tokens(self, marker: Marker) -> list[int]:
        raise NotImplementedError

    def text_tokens(self, text: str) -> list[int]:
        """Plain text (model or injected), with special-token parsing off.

        SentencePiece vocabularies that add a space prefix would put a space before every separately
        tokenized run; the run is tokenized after a newline instead, which is then cut off.
        """
        if not self._adds_space or not text:
            return self.backend.tokenize(text, special=False)
        tokens = self.backend.tokenize("\n" + text, special=False)
        for k in range(1, min(3, len(tokens)) + 1):
            if self.backend.detokenize(tokens[:k]) in ("\n", " \n"):
                rest = tokens[k:]
                if self.backend.detokenize(rest) == text:
                    return rest
                break
        return self.backend.tokenize(text, special=False)

    def encode(self, atoms: Iterable[Atom]) -> list[int]:
        out: list[int] = []
        for atom in atoms:
            if isinstance(atom, Marker):
                out.extend(self.marker_tokens(atom))
            elif atom:
                cached = self._text_cache.get(atom)
                if cached is None:
                    cached = self.text_tokens(atom)
                    if len(atom) <= 32:
                        self._text_cache[atom] = cached
                out.extend(cached)
        return out

    def prepare_injected(self, text: str) -> str:
        return text

    fixed = 0  # how many of the last encoded opening's tokens are the session's fixed start
    # A trap with nothing pending is answered with a note (a model trained on CML reads it); a model
    # prompted with the protocol took the note as a cue for another trap, so it is passed over there.
    notes_idle_traps = False

    def encode_interrupts(self, interrupts: Iterable[Interrupt], opening: bool = False) -> tuple[list[int], str]:
        """Tokens and text for interrupts; ``opening``: they open a turn (the native dialect makes
        no difference)."""
        atoms: list[Atom] = []
        for intr in interrupts:
            atoms += interrupt_atoms(intr.source, self.prepare_injected(intr.payload))
        text = "".join(a.value if isinstance(a, Marker) else a for a in atoms)
        return self.encode(atoms), text

    def session_start(self) -> list[int]:
        b = self.backend
        return [b.bos] if b.add_bos and b.bos >= 0 else []

    def turn_separator(self) -> list[int]:
        """What follows a finished answer in the context, before the next turn's interrupts."""
        eos = self.backend.eos
        return [eos] if eos >= 0 else []

    def after_answer(self, token: int) -> list[int]:
        """The end-of-generation token that finished an answer, as the next turn's prefix."""
        return [token]

    def describe(self) -> str:
        return self.name

    def set_tools(self, schemas: list[dict]) -> None:
        """The tools' JSON schemas, for a dialect that gives them to the template."""

    def note_call(self, call_id: str, expr: str) -> None:
        """A call started (a dialect may name it when its result enters)."""

    def notice(self) -> str | None:
        """What the user should be told about this dialect, once a session."""
        return None

    # --- what the model writes ----------------------------------------------------------------

    def new_monitor(self, max_block_tokens: int = 1024, taken=lambda call_id: False,
                    quoted=lambda body: False) -> Monitor:
        """``taken(call_id)``: the id is used; ``quoted(body)``: a family-syntax call's body is a
        quotation of injected text, not a call."""
        raise NotImplementedError


def _as_ids(ids: Iterable[int]) -> np.ndarray:
    return np.array(sorted(set(ids)), dtype=np.int64)


class NativeDialect(Dialect):
    name = "native"
    notes_idle_traps = True

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        ids: dict[Marker, int] = {}
        for marker in MARKERS:
            tok = backend.control_token(marker.value)
            if tok is None:
                raise DialectError(
                    f"the model's vocabulary has no control token for {marker.value}, "
                    "so it cannot use the native dialect"
                )
            ids[marker] = tok
        self.ids = ids
        self._by_id = {tok: m for m, tok in ids.items()}
        eog = backend.eog_tokens.tolist()
        c, i, t, e, h = (ids[m] for m in (Marker.CALL, Marker.INTR, Marker.TRAP, Marker.END, Marker.HEAD))
        self._banned = {
            BlockState.OUTSIDE: _as_ids([i, h, e]),
            BlockState.CALL_ID: _as_ids([i, c, t, e, *eog]),
            BlockState.CALL_BODY: _as_ids([i, c, t, h, *eog]),
            BlockState.TRAP: _as_ids([i, c, t, h, *eog]),
        }
        # Other control tokens (BOS and the like) add nothing to the answer text.
        self._silent = frozenset(
            tok for tok in range(backend.n_vocab)
            if tok not in self._by_id and backend.is_control(tok)
        )

    def marker_tokens(self, marker: Marker) -> list[int]:
        return [self.ids[marker]]

    def new_monitor(self, max_block_tokens: int = 1024, taken=lambda call_id: False,
                    quoted=lambda body: False) -> Monitor:
        return Monitor(self.backend.piece, marker_ids=self._by_id, banned=self._banned,
                       silent_ids=self._silent, max_block_tokens=max_block_tokens)


INTR_PREFIXES = ("", "[", "[I", "[IN", "[INT")
END_PREFIXES = ("", "[", "[E", "[EN", "[END")


class TemplateDialect(Dialect):
    """The ``text`` and ``chat`` dialects: literal markers, the model's own chat template."""

    bare_calls = False  # calls in the family syntax only when tagged (``core.toolcalls``)

    def __init__(self, backend: Backend, *, messages: bool = False,
                 template: ChatTemplate | None = None) -> None:
        super().__init__(backend)
        self.template = template or template_for(backend)
        if messages and not self.template.info.tool:
            raise DialectError(f"the {self.template.info.name} chat template has no tool messages, "
                               "so it cannot carry interrupts as messages; use the text dialect")
        self.messages = messages
        self.name = "chat" if messages else "text"
        self._markers = {m: self.text_tokens(m.value) for m in MARKERS}
        eog = backend.eog_tokens.tolist()
        # The model may end its turn (end of generation) but not write the template's other control
        # tokens (a new turn header would forge a turn).
        controls = [t for t in range(backend.n_vocab) if backend.is_control(t)]
        self._silent = frozenset(controls)
        control = [t for t in controls if not backend.is_eog(t)]
        outside = _as_ids(control)
        inside = _as_ids(control + eog)
        self._banned = {BlockState.OUTSIDE: outside, BlockState.CALL_ID: inside,
                        BlockState.CALL_BODY: inside, BlockState.TRAP: inside}
        self._intr_bans, self._end_bans = self._completing_markers()
        self._masks: dict[tuple[BlockState, str, str], np.ndarray] = {}

    def describe(self) -> str:
        return f"{self.name} ({self.template.info.name} template)"

    def notice(self) -> str | None:
        if self.template.info.name == "model":
            return None
        return f"This model has no chat template; using the built-in {self.template.info.name} template."

    def _completing_markers(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """For each way the text may end in a prefix of ``[INTR``, the tokens that would complete it;
        and for each way it may end in a prefix of ``[END]``, the tokens that would complete it and go
        on in the same piece (Qwen's ``][``): a block's end is then written as a token of its own, so
        that nothing after it is in the context or on screen when an interrupt enters there."""
        intr: dict[str, list[int]] = {p: [] for p in INTR_PREFIXES}
        end: dict[str, list[int]] = {p: [] for p in END_PREFIXES}
        for tok in range(self.backend.n_vocab):
            piece = self.backend.piece(tok).decode("utf-8", errors="ignore")
            if not piece:
                continue
            for prefix in INTR_PREFIXES:
                if "[INTR" in prefix + piece:
                    intr[prefix].append(tok)
            for prefix in END_PREFIXES:
                text = prefix + piece
                at = text.find(Marker.END.value)
                if at != -1 and at + len(Marker.END.value) < len(text):
                    end[prefix].append(tok)
        return {p: _as_ids(v) for p, v in intr.items()}, {p: _as_ids(v) for p, v in end.items()}

    def banned(self, state: BlockState, tail: str) -> np.ndarray:
        intr = next((p for p in reversed(INTR_PREFIXES) if p and tail.endswith(p)), "")
        end = next((p for p in reversed(END_PREFIXES) if p and tail.endswith(p)), "") if state in (
            BlockState.CALL_BODY, BlockState.TRAP) else None
        key = (state, intr, end)
        mask = self._masks.get(key)
        if mask is None:
            mask = np.union1d(self._banned[state], self._intr_bans[intr])
            if end is not None:
                mask = np.union1d(mask, self._end_bans[end])
            self._masks[key] = mask
        return mask

    # --- what the engine writes ---------------------------------------------------------------

    def marker_tokens(self, marker: Marker) -> list[int]:
        return self._markers[marker]

    def prepare_injected(self, text: str) -> str:
        """Neutralise CML markers, the family call syntax and the spellings of the vocabulary's special
        tokens."""
        text = neutralise_call_tags(neutralise(text))
        for _ in range(4):
            specials = {self.backend.piece(t).decode("utf-8", errors="ignore")
                        for t in self.backend.tokenize(text, special=True) if self.backend.is_special(t)}
            specials.discard("")
            if not specials:
                break
            for spelling in specials:  # a zero-width joiner after the first character breaks the match
                text = text.replace(spelling, spelling[0] + "\u200d" + spelling[1:])
        return text

    def session_start(self) -> list[int]:
        return []  # the template's opening renders the start of the conversation

    def turn_separator(self) -> list[int]:
        return []  # the template's suffix closes the assistant's message

    def after_answer(self, token: int) -> list[int]:
        return []

    def encode_interrupts(self, interrupts: Iterable[Interrupt], opening: bool = False) -> tuple[list[int], str]:
        """As ``Dialect.encode_interrupts``; a session's first opening is tokenized as its fixed start
        (the system message and tools, the same every session: ``fixed`` tokens) and the rest."""
        items = list(interrupts)
        self.fixed, self._fixed_text = 0, ""
        if not opening and not self.messages:
            text = "".join(format_interrupt(i.source, self.prepare_injected(i.payload)) for i in items)
            return self.text_tokens(text), text
        if opening:
            text = self._opening(items)
        else:
            text = self.template.after_assistant([self._message(i) for i in items])
        b = self.backend
        tokens = b.tokenize(text, special=True)
        start = self._fixed_text if text.startswith(self._fixed_text) else ""
        if start:  # in two pieces, where that reads the same (SentencePiece adds a space to the second)
            head = b.tokenize(start, special=True)
            split = head + b.tokenize(text[len(start):], special=True)
            if b.detokenize(split) == b.detokenize(tokens):
                tokens, self.fixed = split, len(head)
        if opening and b.n_past == 0 and b.add_bos and b.bos >= 0 and tokens[:1] != [b.bos]:
            tokens.insert(0, b.bos)
            self.fixed += 1 if self.fixed else 0
        return tokens, text

    def _first_opening(self, system: str, user: str, tools: list[dict] | None = None) -> str:
        """The first turn's prompt; what precedes the user's words is kept as the fixed start."""
        self._fixed_text = self.template.opening(system, SENTINEL, tools=tools).split(SENTINEL)[0]
        return self.template.opening(system, user, tools=tools)

    def _message(self, item: Interrupt) -> dict[str, str]:
        payload = self.prepare_injected(item.payload)
        if item.source == "user":
            return {"role": "user", "content": payload}
        return {"role": "tool", "content": format_interrupt(item.source, payload)}

    def _opening(self, items: list[Interrupt]) -> str:
        """A new turn: the system message (first turn), then one user message holding the user's words
        after anything else that arrived (results of a stopped answer, notes) as CML interrupts."""
        first = self.backend.n_past == 0
        system = [i for i in items if i.source == "system"] if first else []
        rest = [i for i in items if i not in system]
        user = "\n".join(self.prepare_injected(i.payload) for i in rest if i.source == "user")
        notes = "".join(format_interrupt(i.source, self.prepare_injected(i.payload))
                        for i in rest if i.source != "user")
        content = f"{notes}\n{user}" if notes and user else notes or user
        if first:
            return self._first_opening(system_prompt("\n".join(i.payload for i in system)), content)
        return self.template.after_assistant([{"role": "user", "content": content}])

    # --- what the model writes ----------------------------------------------------------------

    def new_monitor(self, max_block_tokens: int = 1024, taken=lambda call_id: False,
                    quoted=lambda body: False) -> Monitor:
        return Monitor(self.backend.piece, marker_ids=None, banned=self._banned,
                       silent_ids=self._silent, max_block_tokens=max_block_tokens,
                       tail_banned=self.banned, translate=ToolCallSyntax(taken, quoted, bare=self.bare_calls))


class ToolsDialect(TemplateDialect):
    """The template's own tool-call format: the tools are given to the template (its ``tools``), the
    system message says only how calls run; calls are read in the family's JSON syntax, tagged, bare or
    fenced (``core.toolcalls``), and each result enters as the template's tool message, naming its call.
    There is no trap: an answer that ends while calls run waits for them (end of sequence acts as one)."""

    def __init__(self, backend: Backend, template: ChatTemplate | None = None) -> None:
        super().__init__(backend, messages=True, template=template)
        if not self.template.info.tools:
            raise DialectError(f"the {self.template.info.name} chat template has no tool-call format, "
                               "so it cannot use the tools dialect; use the chat or text dialect")
        self.name = "tools"
        self.bare_calls = True  # also bare and fenced JSON calls, as small models write them
        self._tools: list[dict] = []
        self._calls: dict[str, str] = {}

    def set_tools(self, schemas: list[dict]) -> None:
        # Without the ``required`` list: Qwen2.5-Coder-0.5B wrote it into its calls' arguments (3 of 4
        # requests); a parameter's default, in its schema, still says it may be left out.
        self._tools = [{"type": "function", "function": {**schema, "parameters": {
            k: v for k, v in schema["parameters"].items() if k != "required"}}} for schema in schemas]

    def note_call(self, call_id: str, expr: str) -> None:
        self._calls[call_id] = expr

    def _message(self, item: Interrupt) -> dict[str, str]:
        payload = self.prepare_injected(item.payload)
        if item.source == "user":
            return {"role": "user", "content": payload}
        if item.source == "system":
            return {"role": "tool", "content": json.dumps({"note": payload}, ensure_ascii=False)}
        name = self._calls.get(item.source, item.source).split("(", 1)[0]
        return {"role": "tool", "content": json.dumps({"name": self.prepare_injected(name), "content": payload},
                                                      ensure_ascii=False)}

    def _opening(self, items: list[Interrupt]) -> str:
        first = self.backend.n_past == 0
        system = [i for i in items if i.source == "system"] if first else []
        rest = [i for i in items if i not in system]
        user = "\n".join(self.prepare_injected(i.payload) for i in rest if i.source == "user")
        messages = [self._message(i) for i in rest if i.source != "user"]
        if first:  # anything but the user's words (rare: notes) goes ahead of them in the user message
            user = "\n".join([*(m["content"] for m in messages), user]) if messages else user
            estimates = tool_estimates("\n".join(i.payload for i in system))
            return self._first_opening(tools_prompt(estimates), user, tools=self._tools)
        return self.template.after_assistant([*messages, {"role": "user", "content": user}])


def template_for(backend: Backend) -> ChatTemplate:
    """The model's own chat template, or the built-in one that suits its vocabulary."""
    bos = backend.piece(backend.bos).decode("utf-8", errors="replace") if backend.bos >= 0 else ""
    eos = backend.piece(backend.eos).decode("utf-8", errors="replace") if backend.eos >= 0 else ""
    source = backend.info.metadata.get("tokenizer.chat_template")
    if source:
        try:
            return ChatTemplate(source, name="model", bos=bos, eos=eos)
        except TemplateError:
            pass  # fall back to a built-in one below; describe() says which
    name = default_template_name(lambda text: backend.control_token(text) is not None)
    return ChatTemplate(DEFAULT_TEMPLATES[name], name=name, bos=bos, eos=eos)


def select_dialect(backend: Backend, name: str | None = None) -> Dialect:
    """The dialect named, or the best one the model supports."""
    if name in (None, "auto"):
        try:
            return NativeDialect(backend)
        except DialectError:
            template = template_for(backend)
            if template.info.tools and template.info.tool:
                return ToolsDialect(backend, template=template)
            return TemplateDialect(backend, messages=template.info.tool, template=template)
    if name == "native":
        return NativeDialect(backend)
    if name in ("text", "chat"):
        return TemplateDialect(backend, messages=name == "chat")
    if name == "tools":
        return ToolsDialect(backend)
    raise DialectError(f"unknown dialect {name!r}; choose one of: auto, {', '.join(DIALECTS)}")
