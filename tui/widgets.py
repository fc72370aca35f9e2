"""The chat screen's widgets: tool panes, the turn view, the timeline, the status bar, the prompt."""

from __future__ import annotations

from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Label, Markdown, Static, TextArea

from asynclm.core.reducer import CallState

class ToolPane(Vertical, can_focus=True):
    """One call: the tool and its arguments, its state (a CSS class), elapsed time, result or error."""

    class Confirmed(Message):
        def __init__(self, call_id: str, allowed: bool) -> None:
            super().__init__()
            self.call_id = call_id
            self.allowed = allowed

    state: reactive[str] = reactive("queued")

    def __init__(self, call_id: str, expr: str, detected: float) -> None:
        super().__init__(id=f"call-{call_id}", classes="tool-pane -queued")
        self.call_id = call_id
        self.expr = expr
        self.detected = detected
        self.started: float | None = None
        self.ended: float | None = None
        self.result = ""
        self.expanded = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="pane-head"):
            yield Label(self.call_id, classes="pane-id")
            yield Label("queued", classes="pane-state")
            yield Label("", classes="pane-elapsed")
        yield Static(Text(self.expr), classes="pane-expr")
        yield Static("", classes="pane-result")
        with Horizontal(classes="pane-confirm"):
            yield Label("Run it?", classes="pane-question")
            yield Button("Allow", id=f"allow-{self.call_id}", variant="success", compact=True)
            yield Button("Deny", id=f"deny-{self.call_id}", variant="error", compact=True)

    def on_mount(self) -> None:
        # Events may have arrived before the children existed; show what is known now.
        self.query_one(".pane-state", Label).update(self.state)
        if self.result:
            self._show_result(self.state == "failed")

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(f"-{old}")
        self.add_class(f"-{new}")
        for label in self.query(".pane-state"):
            label.update(new)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "waiting", "confirm", "running")

    def set_state(self, state: str, when: float, detail: str = "") -> None:
        if state == "running":
            self.started = when
        if state in ("done", "failed", "cancelled"):
            self.ended = when
        if state == "waiting" and detail:
            for widget in self.query(".pane-result"):
                widget.update(Text(f"waiting on {detail}", style="dim"))
        self.state = state
        self.tick(when)

    def show(self, call: CallState, when: float) -> None:
        """Show where ``call`` stands."""
        self.set_state("queued" if call.state == "pending" else call.state, when, call.detail)
        if call.state == "done":
            self.set_result(call.result)
        elif call.state == "failed":
            self.set_result(call.detail, error=True)

    def set_result(self, text: str, error: bool = False) -> None:
        self.result = text
        self._show_result(error)

    def _show_result(self, error: bool = False) -> None:
        text = self.result
        if not self.expanded:
            lines = text.splitlines() or [""]
            preview = "\n".join(line[:200] for line in lines[:3])
            more = len(text) - len(preview)
            if more > 0:
                preview += f"\n… {more} more chars (Enter to expand)"
            text = preview
        for widget in self.query(".pane-result"):
            widget.update(Text(text, style="red" if error else ""))

    def tick(self, now: float) -> None:
        start = self.started or self.detected
        end = self.ended or now
        for label in self.query(".pane-elapsed"):
            label.update(f"{end - start:.1f}s")

    def on_click(self, event: events.Click) -> None:
        if event.button == 1 and not isinstance(event.widget, Button):
            self.toggle_expanded()

    def key_enter(self) -> None:
        self.toggle_expanded()

    def toggle_expanded(self) -> None:
        if self.result:
            self.expanded = not self.expanded
            self._show_result(self.state == "failed")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Confirmed(self.call_id, event.button.id.startswith("allow-")))


def answer_markdown() -> MarkdownIt:
    """The answer's Markdown parser: Textual's own, except that what answers copy stays as written.

    Answers repeat expressions and names from calls and results, and plain Markdown garbles them:
    ``12*34 is 408 ... 12*34`` turns italic between the stars, ``__init__.py`` becomes a bold
    ``init``, and a bare file name such as ``main.py`` becomes a link to ``http://main.py``. So
    ``_`` is always a character (not emphasis), so is a ``*`` run between two letters or digits, and
    only links with a scheme (``https://...``) are linked. Code spans and ``**bold**`` are kept. HTML
    is text too: Textual draws no HTML, so ``a<b and c>d`` lost everything between ``<`` and ``>``."""
    parser = MarkdownIt("gfm-like", {"html": False})
    parser.inline.ruler.before("emphasis", "copied_text", _copied_delimiters)
    if parser.linkify is not None:
        parser.linkify.set({"fuzzy_link": False, "fuzzy_email": False})
    return parser


def _copied_delimiters(state: StateInline, silent: bool) -> bool:
    """An inline rule before emphasis: take a ``_`` run, or a ``*`` run inside a word, as text."""
    src, start = state.src, state.pos
    mark = src[start]
    if mark not in "*_":
        return False
    end = start
    while end < state.posMax and src[end] == mark:
        end += 1
    if mark == "*" and not (start > 0 and src[start - 1].isalnum() and end < state.posMax
                            and src[end].isalnum()):
        return False
    if not silent:
        state.pending += src[start:end]
    state.pos = end
    return True


class AnswerSegment(Markdown):
    """A stretch of the answer between two interrupts, streamed."""

    def __init__(self, markdown: str = "", *, classes: str | None = None) -> None:
        super().__init__(markdown, classes=classes, parser_factory=answer_markdown)


class TurnView(Vertical):
    """One turn: the user's message, the live tool panes, the answer with interrupt markers."""

    def __init__(self, turn: int, user_text: str) -> None:
        super().__init__(classes="turn")
        self.turn = turn
        self.user_text = user_text
        self.segment: AnswerSegment | None = None
        self.stream = None
        self.answer_parts: list[str] = []
        self._markers: list[Text] = []  # interrupts that entered mid-word, shown at the next break

    def compose(self) -> ComposeResult:
        yield Static(Text(self.user_text), classes="user-message")
        yield Horizontal(classes="panes")
        yield Vertical(classes="answer")

    @property
    def panes(self) -> Horizontal:
        return self.query_one(".panes", Horizontal)

    @property
    def answer(self) -> Vertical:
        return self.query_one(".answer", Vertical)

    async def write(self, text: str) -> None:
        self.answer_parts.append(text)  # the exact answer; what follows only decides the display
        if self._markers:
            # The interrupt entered at a token boundary; show it at the next word boundary.
            cut = next((i for i, ch in enumerate(text) if ch.isspace()), None)
            before = "".join(self.answer_parts[:-1])
            if cut is None and before and not before[-1:].isspace():
                await self._show(text)
                return
            head, text = (text[:cut], text[cut:]) if cut is not None else ("", text)
            if head:
                await self._show(head)
            await self.close_segment()
            markers, self._markers = self._markers, []
            for marker in markers:
                await self.answer.mount(Static(marker, classes="interrupt-marker"))
            text = text.lstrip(" ")
            if not text:
                return
        await self._show(text)

    async def _show(self, text: str) -> None:
        if self.segment is None:
            self.segment = AnswerSegment("", classes="answer-segment")
            await self.answer.mount(self.segment)
            self.stream = Markdown.get_stream(self.segment)
        await self.stream.write(text)

    async def close_segment(self) -> None:
        if self.stream is not None:
            await self.stream.stop()
        self.segment, self.stream = None, None

    async def mark(self, text: Text) -> None:
        """An interrupt entered the answer here."""
        if self.answer_parts and not self.answer_parts[-1][-1:].isspace():
            self._markers.append(text)  # mid-word: wait for the word to end
            return
        await self.close_segment()
        await self.answer.mount(Static(text, classes="interrupt-marker"))

    async def finish(self) -> None:
        """The answer ended: flush markers still waiting for a word boundary."""
        await self.close_segment()
        markers, self._markers = self._markers, []
        for marker in markers:
            await self.answer.mount(Static(marker, classes="interrupt-marker"))


@dataclass
class TimelineModel:
    """What the timeline draws: the model's states and each call's run, for the current turn."""

    start: float = 0.0
    end: float | None = None
    states: list[tuple[float, str]] = field(default_factory=list)  # (since, "decode"/"trap"/"idle")
    calls: dict[str, list[float | None]] = field(default_factory=dict)  # id -> [start, end]

    def reset(self, t: float) -> None:
        self.start, self.end = t, None
        self.states = [(t, "decode")]
        self.calls = {}

    def state(self, t: float, state: str) -> None:
        if not self.states or self.states[-1][1] != state:
            self.states.append((t, state))


class Timeline(Static):
    """A Gantt-like strip: when the model decoded, trapped or idled, and when each call ran."""

    GLYPH = {"decode": ("█", "green"), "trap": ("░", "yellow"), "idle": (" ", "")}

    EMPTY = Text("timeline: no turn yet", style="dim")

    def __init__(self, model: TimelineModel, **kwargs) -> None:
        super().__init__(self.EMPTY, **kwargs)
        self.model = model

    def refresh_now(self, now: float) -> None:
        m = self.model
        label_w = 8
        width = max(10, self.content_size.width - label_w - 8)
        if not m.states:
            self.update(self.EMPTY)
            return
        end = m.end or now
        span = max(end - m.start, 1e-3)

        def col(t: float) -> int:
            return min(width - 1, max(0, int((t - m.start) / span * width)))

        out = Text()
        out.append(f"{'model':<{label_w}}", style="bold")
        cells = [" "] * width
        styles = [""] * width
        bounds = m.states + [(end, "idle")]
        for (t0, st), (t1, _) in zip(bounds, bounds[1:]):
            glyph, style = self.GLYPH.get(st, ("?", ""))
            for c in range(col(t0), max(col(t0) + 1, col(t1))):
                cells[c], styles[c] = glyph, style
        for c in range(width):
            out.append(cells[c], style=styles[c])
        out.append(f"  {span:.1f}s\n", style="dim")
        for call_id, (s, e) in list(m.calls.items())[-6:]:
            out.append(f"{call_id[:label_w - 1]:<{label_w}}", style="bold")
            row = [" "] * width
            if s is not None:
                for c in range(col(s), max(col(s) + 1, col(e if e is not None else end))):
                    row[c] = "▬"
            out.append("".join(row), style="cyan")
            out.append("\n")
        self.update(out)


class StatusBar(Static):
    pass


class PromptArea(TextArea):
    """The input: Enter sends, Shift+Enter or Ctrl+J adds a line, Up/Down walk the history."""

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Typed(Message):
        """A keystroke was handled (the app times its screen updates by these)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)
        self.input_history: list[str] = []
        self._cursor: int | None = None

    async def _on_key(self, event: events.Key) -> None:
        self.post_message(self.Typed())
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            text = self.text.strip()
            if text:
                self.input_history.append(self.text)
                self._cursor = None
                self.clear()
                self.post_message(self.Submitted(text))
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        if event.key == "up" and self.cursor_location[0] == 0 and self.input_history:
            event.prevent_default()
            event.stop()
            self._cursor = len(self.input_history) - 1 if self._cursor is None else max(0, self._cursor - 1)
            self.load_text(self.input_history[self._cursor])
            return
        if event.key == "down" and self._cursor is not None and self.cursor_location[0] == self.document.line_count - 1:
            event.prevent_default()
            event.stop()
            self._cursor += 1
            if self._cursor >= len(self.input_history):
                self._cursor = None
                self.clear()
            else:
                self.load_text(self.input_history[self._cursor])
            return
        await super()._on_key(event)
