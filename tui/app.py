"""The Textual app: a chat screen over the engine's events.

The engine emits events on its own threads; ``EventBridge`` only appends them to a deque. The app
drains it about 30 times a second on the UI thread and updates widgets in batches, so the decode
thread never waits for the screen and the screen never re-renders per token.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import time
from functools import partial
from pathlib import Path
from typing import Callable

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.keys import KEY_NAME_REPLACEMENTS, Keys, key_to_character
from textual.notifications import SeverityLevel
from textual.widgets import Footer, Header, ProgressBar, Static

from asynclm.core import events as ev
from asynclm.core.engine import Engine, Mode
from asynclm.core.reducer import CallState, SessionState, TurnState

from .demo import Demo, DemoRecorder, play
from .export import export_transcript
from .widgets import PromptArea, StatusBar, Timeline, TimelineModel, ToolPane, TurnView

DRAIN_HZ = 20  # answer text reaches the screen this often; each refresh costs the compositor ~10-20 ms
CHROME_HZ = 5  # the timeline, elapsed times and status bar need less
# While the user types, the screen updates right after a keystroke has been drawn instead of on the
# timer, so a keystroke does not arrive in the middle of a refresh and wait for it.
TYPING = 0.15  # seconds after a keystroke during which the timer leaves the updates to the keystrokes
MAX_DEFER = 0.2  # but answer text never waits longer than this


def settle_garbage() -> None:
    """Collect now, while nothing is typed into a running answer, then exempt what survives from
    later collections.

    Python's full collection walks every tracked object: with the app, the model and a transcript in
    memory that is a pause of 60 ms or more, which a keystroke arriving then must wait out. Frozen
    objects are never walked again (nor freed if they later form a cycle: the loaded app, and turns
    that stay in the transcript, are not expected to)."""
    gc.collect()
    gc.freeze()


class EventBridge:
    """An engine sink that only queues; the app drains on its own thread."""

    def __init__(self) -> None:
        self.queue: collections.deque[ev.Event] = collections.deque()

    def __call__(self, event: ev.Event) -> None:
        self.queue.append(event)

    def drain(self) -> list[ev.Event]:
        out = []
        while True:
            try:
                out.append(self.queue.popleft())
            except IndexError:
                return out


class ChatCommands(Provider):
    """The command palette's entries."""

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: ChatApp = self.app  # type: ignore[assignment]
        out = [(f"Mode: {m.value}", partial(app.action_set_mode, m.value), f"switch to {m.value} mode")
               for m in Mode]
        out += [
            ("Export transcript", app.action_export, "write Markdown and JSON Lines files"),
            ("New session", app.action_new_session, "forget the context and start over"),
            ("Toggle timeline", app.action_timeline, "show or hide the timeline strip"),
            ("Stop the answer", app.action_stop, "stop generating; pending calls are cancelled"),
            ("Help", app.action_help, "keys and what they do"),
        ]
        return out

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield Hit(1.0, name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


HELP = """\
Enter sends. While the model answers, what you send enters its answer as an interrupt.
Shift+Enter or Ctrl+J adds a line; Up/Down walk your history.
Esc stops the answer (the partial reply stays; pending calls are cancelled).
Ctrl+G cancels the selected call (Tab to a pane); Enter on a pane expands its result.
F2 cycles the mode (async → sync → sync-parallel). Ctrl+T toggles the timeline.
Ctrl+S exports the transcript (Markdown and JSON Lines). Ctrl+N starts a new session.
Ctrl+P opens the command palette. Ctrl+Q quits. Keys can be remapped in the config file by id."""


class ChatApp(App):
    CSS_PATH = Path(__file__).parent / "chat.tcss"  # absolute, so subclasses elsewhere find it
    TITLE = "asynclm"
    COMMANDS = App.COMMANDS | {ChatCommands}
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="stop", priority=True),
        Binding("ctrl+g", "cancel_call", "Cancel call", id="cancel_call"),
        Binding("f2", "cycle_mode", "Mode", id="mode"),
        Binding("ctrl+t", "timeline", "Timeline", id="timeline"),
        Binding("ctrl+s", "export", "Export", id="export"),
        Binding("ctrl+n", "new_session", "New", id="new_session"),
        Binding("f1", "help", "Help", id="help"),
    ]

    def __init__(
        self,
        make_engine: Callable[[Callable[[float], None]], Engine],
        *,
        session_path: Path | None = None,
        show_timeline: bool = True,
        keymap: dict[str, str] | None = None,
        theme: str | None = None,
        notices: list[str] | None = None,
        export_dir: Path | None = None,
        history: list[ev.Event] | None = None,
        demo: Demo | None = None,
        screenshot: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        greeting: str | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock  # what elapsed times and the timeline are measured against
        self.demo = demo
        self.demo_recorder: DemoRecorder | None = None
        self.demo_state = "none"  # none, playing, finished, taken over
        self._screenshot = screenshot
        self._demo_keys: dict[int, events.Key] = {}
        self._history = history or []
        self._make_engine = make_engine
        self.engine: Engine | None = None
        self.bridge = EventBridge()
        self.session_path = session_path
        self.show_timeline = show_timeline
        self.export_dir = export_dir or Path.cwd()
        self._keymap = keymap or {}
        self._theme = theme
        self._startup_notices = notices or []
        self._greeting = greeting  # shown atop a new, empty session (what the model is good for)
        self.turns: dict[int, TurnView] = {}
        self.current: TurnView | None = None
        self.panes: dict[str, ToolPane] = {}
        self.session = SessionState()  # the events applied so far, folded
        self.timeline_model = TimelineModel()
        self.events: list[ev.Event] = []
        self.busy = False
        self.tokens_per_second = 0.0
        self.n_past = 0
        self._pending_user: list[str] = []
        self._writer = None
        self.updates = 0  # UI batches applied, for the responsiveness benchmark
        self._chrome_at = 0.0
        self._drained_at = 0.0
        self._typed_at = 0.0
        self._draining = False
        self._status_text = ""

    # --- layout -------------------------------------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """As Textual's, but plain text unless asked: notices carry the model's words, file names and
        tool errors, and Textual reads ``[red]`` in them as a style and a stray ``[/]`` as an error
        that stops the app."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield VerticalScroll(id="transcript")
        yield Static("", id="loading")
        yield ProgressBar(total=1.0, show_eta=False, id="progress")
        yield Timeline(self.timeline_model, id="timeline")
        yield PromptArea(id="prompt")
        yield StatusBar("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        if self._theme:
            try:
                self.theme = self._theme
            except Exception:
                self.notify(f"Unknown theme {self._theme!r}; using the default.", severity="warning")
        if self._keymap:
            self._keymap = self._checked_keymap(self._keymap)
            self.set_keymap(self._keymap)
        self.query_one("#timeline").display = self.show_timeline
        # Follow the bottom as the answer grows, until the user scrolls up to read.
        self.query_one("#transcript", VerticalScroll).anchor()
        self.query_one("#prompt", PromptArea).focus()
        for notice in self._startup_notices:
            self.notify(notice, severity="warning", timeout=10)
        self.query_one("#loading", Static).update("Loading the model…")
        for event in self._history:  # a resumed session: show what was said, as it was
            self.bridge(event)
        self._greet()
        self.set_interval(1 / DRAIN_HZ, self._tick)
        self._load_engine()

    @work(thread=True, exclusive=True, group="load")
    def _load_engine(self) -> None:
        bar = self.query_one("#progress", ProgressBar)

        def progress(fraction: float) -> None:
            self.call_from_thread(bar.update, progress=fraction)

        try:
            engine = self._make_engine(progress)
        except Exception as exc:  # one sentence on screen; the app stays usable to quit
            self.call_from_thread(self._load_failed, str(exc))
            return
        engine.subscribe(self.bridge)
        engine.start()
        self.call_from_thread(self._loaded, engine)

    def _load_failed(self, message: str) -> None:
        self.query_one("#loading", Static).update(Text(message, style="bold red"))
        self.query_one("#progress").display = False

    def _loaded(self, engine: Engine) -> None:
        self.engine = engine
        settle_garbage()
        self.query_one("#loading").display = False
        self.query_one("#progress").display = False
        self.sub_title = f"{engine.backend.info.name} · {engine.dialect.describe()} dialect"
        for text in self._pending_user:
            engine.send(text)
        self._pending_user.clear()
        self._update_status()
        if self.demo is not None:
            self.demo_recorder = DemoRecorder()
            engine.subscribe(self.demo_recorder)
            self.demo_state = "playing"
            self.notify(f"Playing the demo {self.demo.name}: {self.demo.description} "
                        "Type anything to take over.", title="demo", timeout=8)
            self._play_demo()

    async def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.stop_and_wait()
            if self._writer is not None:
                self._writer.close()
            self.engine.close()

    def attach_writer(self, writer) -> None:
        self._writer = writer

    # --- demo playback ------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and self.demo is not None:
            from_demo = self._demo_keys.pop(id(event), None) is not None
            if not from_demo and self.demo_state == "playing":  # the keyboard: the user takes over
                self.demo_state = "taken over"
                self.workers.cancel_group(self, "demo")
                self.notify("Demo stopped: the keyboard is yours.", title="demo")
            elif from_demo and self.demo_state == "taken over":
                return  # a demo key still on its way when the user took over
        await super().on_event(event)

    def _post_key(self, key: str, character: str | None) -> None:
        event = events.Key(key, character)
        self._demo_keys[id(event)] = event
        self.post_message(event)

    def _checked_keymap(self, keymap: dict[str, str]) -> dict[str, str]:
        """The config file's keymap less what cannot be used, each such entry named in a notice: an
        unknown binding id, a key that is no key, or a key that another binding has."""
        defaults = {b.id: b.key for b in self.BINDINGS if b.id}
        kept: dict[str, str] = {}
        for binding_id, keys in keymap.items():
            if binding_id not in defaults:
                self.notify(f"keymap: there is no binding {binding_id!r} (there are: {', '.join(defaults)}); "
                            "it was left out.", severity="warning", timeout=10)
            elif bad := next((k for k in keys.split(",") if not is_key(k.strip())), None):
                self.notify(f"keymap: {bad.strip()!r} for {binding_id} is not a key name (such as ctrl+x or "
                            "f5); it keeps its key.", severity="warning", timeout=10)
            else:
                kept[binding_id] = keys
        def keys(binding_id: str) -> list[str]:
            return [k.strip() for k in kept.get(binding_id, defaults[binding_id]).split(",")]

        for binding_id in list(kept):  # a new key that another binding has is refused: that one keeps it
            owner = next((other for other in defaults if other != binding_id
                          for k in keys(binding_id) if k in keys(other)), None)
            if owner is not None:
                clash = next(k for k in keys(binding_id) if k in keys(owner))
                self.notify(f"keymap: {clash} is already the key of {owner}, so {binding_id} keeps "
                            f"{defaults[binding_id]}.", severity="warning", timeout=10)
                del kept[binding_id]
        return kept

    def _binding_key(self, binding_id: str) -> str:
        """The first key of a binding, as remapped by the config file's keymap."""
        default = next(b.key for b in self.BINDINGS if b.id == binding_id)
        return self._keymap.get(binding_id, default).split(",")[0].strip()

    @work(exclusive=True, group="demo")
    async def _play_demo(self) -> None:
        """The demo's steps as key presses and the app's own actions, with the script's timing."""
        assert self.demo is not None and self.demo_recorder is not None
        recorder = self.demo_recorder
        await play(self.demo, _AppPerformer(self), recorder)
        while self.busy or self.bridge.queue:  # let the last answer reach the screen
            await asyncio.sleep(0.05)
        await asyncio.sleep(2 / DRAIN_HZ)
        self.demo_state = "finished"
        message = f"Demo {self.demo.name} finished."
        if self.demo.compare:
            message += " " + recorder.comparison(self.demo.compare)
        if self._screenshot is not None:  # the screenshot shows the closing message, and only it
            self.clear_notifications()
            self.notify(message, title="demo", timeout=30)
            await asyncio.sleep(0.3)
            path = Path(self._screenshot).expanduser()
            self.save_screenshot(path.name, str(path.parent.resolve()))
            message = f"Screenshot saved to {path}."
        self.notify(message, title="demo", timeout=30)

    # --- input --------------------------------------------------------------------------------

    def on_prompt_area_submitted(self, message: PromptArea.Submitted) -> None:
        if self.engine is None:
            self._pending_user.append(message.text)
            self.notify("The model is still loading; your message will be sent when it is ready.")
            return
        self.engine.send(message.text)

    def on_tool_pane_confirmed(self, message: ToolPane.Confirmed) -> None:
        if self.engine is not None:
            self.engine.confirm(message.call_id, message.allowed)

    # --- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.busy  # Esc does nothing (and is not shown) unless an answer is running
        if action == "cancel_call":
            return any(p.active for p in self.panes.values())
        return True

    def action_stop(self) -> None:
        if self.engine is not None and self.engine.stop():
            self.notify("Stopping: the partial reply stays, pending calls are cancelled.")

    def action_cancel_call(self) -> None:
        if self.engine is None:
            return
        focused = self.focused
        pane = focused if isinstance(focused, ToolPane) else None
        if pane is None or not pane.active:
            running = [p for p in self.panes.values() if p.active]
            pane = running[-1] if running else None
        if pane is not None:
            self.engine.cancel(pane.call_id)

    def action_set_mode(self, mode: str) -> None:
        if self.engine is not None:
            self.engine.set_mode(mode)
            self._update_status()

    def action_cycle_mode(self) -> None:
        if self.engine is not None:
            modes = [m.value for m in Mode]
            self.action_set_mode(modes[(modes.index(self.engine.mode.value) + 1) % len(modes)])

    def action_timeline(self) -> None:
        timeline = self.query_one("#timeline")
        timeline.display = not timeline.display

    def action_help(self) -> None:
        self.notify(HELP, title="asynclm keys", timeout=20)

    def action_new_session(self) -> None:
        if self.engine is None:
            return
        self.engine.new_session()
        self.query_one("#transcript").remove_children()
        self.turns.clear()
        self.panes.clear()
        self.session = SessionState()
        self.current = None
        self._history = []  # what a resumed session showed is gone with it
        self._greet()
        self.notify("New session: the context is empty.")

    def _greet(self) -> None:
        if self._greeting and not self._history and self.demo is None:
            self.query_one("#transcript").mount(Static(self._greeting, classes="greeting", markup=False))

    def action_export(self) -> None:
        paths = export_transcript(self.events, self.export_dir)
        self.notify(f"Exported {paths[0].name} and {paths[1].name} to {self.export_dir}.")

    # --- events -> widgets --------------------------------------------------------------------

    def on_prompt_area_typed(self, message: PromptArea.Typed) -> None:
        """A keystroke reached the prompt: update the screen once it has been drawn, if an update is due."""
        now = time.monotonic()
        self._typed_at = now
        if now - self._drained_at >= 1 / DRAIN_HZ:
            self.call_after_refresh(self._drain)

    async def _tick(self) -> None:
        now = time.monotonic()
        if now - self._typed_at < TYPING and now - self._drained_at < MAX_DEFER:
            return  # the keystrokes are driving the updates
        await self._drain()

    async def _drain(self) -> None:
        if self._draining or not self.query("#timeline"):  # one at a time; or shutting down
            return
        self._draining = True
        try:
            await self._drain_once()
        except NoMatches:  # the app closed while the batch was applied: its widgets are gone
            if self.is_running and self.query("#status"):
                raise
        finally:
            self._draining = False
            self._drained_at = time.monotonic()

    async def _drain_once(self) -> None:
        batch = self.bridge.drain()
        now = self.clock()
        if batch:
            self.updates += 1
            text_run: list[str] = []
            try:
                for e in batch:
                    if isinstance(e, ev.TokenGenerated):
                        if e.text:
                            text_run.append(e.text)
                        continue
                    if text_run and self.current is not None:
                        await self.current.write("".join(text_run))
                    text_run = []
                    await self._apply(e)
                if text_run and self.current is not None:
                    await self.current.write("".join(text_run))
            finally:  # recorded once applied, so the events never run ahead of the screen
                self.events.extend(batch)
        if now - self._chrome_at < 1 / CHROME_HZ:
            return
        self._chrome_at = now
        self._update_status()
        for pane in self.panes.values():
            if pane.active:
                pane.tick(now)
        timeline = self.query_one("#timeline", Timeline)
        if timeline.display and (self.busy or batch):
            timeline.refresh_now(now)

    async def _apply(self, e: ev.Event) -> None:
        changed = self.session.apply(e)
        handler = self._HANDLERS.get(type(e))
        if handler is not None:
            await handler(self, e, changed)

    async def _turn_started(self, e: ev.TurnStarted, turn: TurnState) -> None:
        self.busy = True
        view = TurnView(e.turn, e.text)
        self.turns[e.turn] = view
        self.current = view
        await self.query_one("#transcript").mount(view)
        self.timeline_model.reset(e.t)
        self.refresh_bindings()

    async def _turn_ended(self, e: ev.TurnEnded, turn: TurnState | None) -> None:
        self.busy = False
        settle_garbage()
        self.timeline_model.state(e.t, "idle")
        self.timeline_model.end = e.t
        view = self.turns.get(e.turn)
        if view is not None:
            await view.finish()
            if e.reason == "stopped":
                view.add_class("-stopped")
                await view.answer.mount(Static(Text("■ stopped", style="bold yellow"), classes="stopped-marker"))
            elif e.reason != "done":
                await view.answer.mount(Static(Text(f"■ ended: {e.reason}", style="bold red"), classes="stopped-marker"))
        self.refresh_bindings()

    async def _call_detected(self, e: ev.CallDetected, call: CallState) -> None:
        pane = ToolPane(e.call_id, e.expr, e.t)
        self.panes[e.call_id] = pane
        self.timeline_model.calls[e.call_id] = [None, None]
        if self.current is not None:
            await self.current.panes.mount(pane)
        self.refresh_bindings()

    async def _call_moved(self, e: ev.Event, call: CallState | None) -> None:
        """A call waits, asks, starts or ends: its pane and its span on the timeline follow it."""
        pane = self.panes.get(call.call_id) if call is not None else None
        if pane is None:
            return
        pane.show(call, e.t)
        if call.call_id in self.timeline_model.calls:
            self.timeline_model.calls[call.call_id] = [call.started or call.ended, call.ended]
        if not call.active:
            self.refresh_bindings()

    async def _call_rejected(self, e: ev.CallRejected, _) -> None:
        if self.current is not None:
            await self.current.mark(Text(f"✗ call {e.call_id or '?'} rejected: {e.reason}", style="red"))

    async def _injected(self, e: ev.InterruptInjected, _) -> None:
        view = self.current
        if view is None or not self.busy or view.segment is None and not view.answer_parts:
            return  # a turn's opening interrupts are the user's message, already shown
        when = e.t - (self.timeline_model.start or e.t)
        for source, payload in e.said():
            label = Text(f"↳ +{when:.1f}s ", style="dim")
            if source == "user":
                label.append("you: ", style="bold magenta")
                label.append(payload.strip() or "(message)")
            elif source == "system":
                label.append("system notice", style="yellow")
            else:
                label.append(f"{source} result entered", style="cyan")
            await view.mark(label)

    async def _trap(self, e: ev.TrapEntered | ev.TrapLeft, _) -> None:
        self.timeline_model.state(e.t, "trap" if isinstance(e, ev.TrapEntered) else "decode")

    async def _stats(self, e: ev.Stats, _) -> None:
        self.tokens_per_second = e.tokens_per_second
        self.n_past = e.n_past

    async def _notice(self, e: ev.Notice, _) -> None:
        self.notify(e.message, severity="error" if e.level == "error" else "warning", timeout=10)

    async def _not_sent(self, e: ev.MessageNotSent, _) -> None:
        if any(e is old for old in self._history):
            return
        prompt = self.query_one("#prompt", PromptArea)
        if not prompt.text.strip():  # back in the prompt to shorten or send again, not over new typing
            prompt.load_text(e.text)
            prompt.move_cursor(prompt.document.end)
        if e.fits_new_session:
            key = self._binding_key("new_session").title()  # ctrl+n: Ctrl+N
            self.notify(f"Press {key} for a new session, then Enter to send the message again.",
                        title="The context is full", timeout=15)

    async def _mode_changed(self, e: ev.ModeChanged, _) -> None:
        self.notify(f"Mode: {e.mode}")

    _HANDLERS = {
        ev.TurnStarted: _turn_started,
        ev.TurnEnded: _turn_ended,
        ev.CallDetected: _call_detected,
        ev.CallWaiting: _call_moved,
        ev.CallNeedsConfirmation: _call_moved,
        ev.CallStarted: _call_moved,
        ev.CallFinished: _call_moved,
        ev.CallFailed: _call_moved,
        ev.CallCancelled: _call_moved,
        ev.CallRejected: _call_rejected,
        ev.InterruptInjected: _injected,
        ev.TrapEntered: _trap,
        ev.TrapLeft: _trap,
        ev.Stats: _stats,
        ev.Notice: _notice,
        ev.MessageNotSent: _not_sent,
        ev.ModeChanged: _mode_changed,
    }

    def _update_status(self) -> None:
        engine = self.engine
        if engine is None:
            return
        pending = sum(1 for p in self.panes.values() if p.active)
        n_past = engine.backend.n_past
        parts = [
            engine.backend.info.name,
            f"{engine.dialect.describe()} dialect",
            f"{engine.mode.value} mode",
            f"{self.tokens_per_second:.0f} tok/s" if self.tokens_per_second else "- tok/s",
            f"ctx {n_past}/{engine.backend.n_ctx}",
            f"{pending} pending",
        ]
        if self.session_path is not None:
            parts.append(f"session {self.session_path}")
        text = " · ".join(parts)
        if text != self._status_text:
            self._status_text = text
            self.query_one("#status", StatusBar).update(Text(text))  # a model's name is not markup


def is_key(name: str) -> bool:
    """Whether ``name`` is a key as Textual names them: modifiers, then a key (ctrl+x, f5, shift+tab)."""
    *mods, key = name.lower().split("+")
    if not key or not set(mods) <= {"ctrl", "shift", "alt", "meta", "super", "hyper"}:
        return False
    return (len(key) == 1 or key in {k.value for k in Keys} or key in KEY_NAME_REPLACEMENTS.values()
            or key_to_character(key) is not None)


class _AppPerformer:
    """A demo's steps as the keys a person would press in the app."""

    def __init__(self, app: ChatApp) -> None:
        self.app = app

    async def type(self, text: str, speed: float) -> None:
        from textual.keys import _character_to_key

        for char in text:
            if char == "\n":
                self.app._post_key("shift+enter", None)
            else:
                self.app._post_key(char if char.isalnum() else _character_to_key(char), char)
            await asyncio.sleep(1 / speed)

    async def press(self, key: str) -> None:
        self.app.query_one("#prompt", PromptArea).focus()
        self.app._post_key(key, "\r" if key == "enter" else None)

    async def cancel(self, call_id: str) -> bool:
        pane = self.app.panes.get(call_id)
        if pane is None or not pane.active:
            return False
        pane.focus()
        await asyncio.sleep(0.05)
        self.app._post_key(self.app._binding_key("cancel_call"), None)
        await asyncio.sleep(0.05)
        self.app.query_one("#prompt", PromptArea).focus()
        return True

    def set_mode(self, mode: str) -> None:
        self.app.action_set_mode(mode)

    def new_session(self) -> None:
        self.app.action_new_session()

    def warn(self, message: str) -> None:
        self.app.notify(message, severity="warning")

    def busy(self) -> bool:
        return self.app.busy or bool(self.app.bridge.queue)
