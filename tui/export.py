"""A session written out: Markdown for reading, JSON Lines with every event."""

from __future__ import annotations

import re
import time
from pathlib import Path

from asynclm.core import events as ev
from asynclm.core.reducer import OUTCOMES, CallState, SessionState

RESULT_CHARS = 500  # of a result, in the Markdown


def export_transcript(events: list[ev.Event], folder: Path) -> tuple[Path, Path]:
    """Write the session as Markdown (for reading) and JSON Lines (every event)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md_path = folder / f"asynclm-{stamp}.md"
    jsonl_path = folder / f"asynclm-{stamp}.jsonl"
    md_path.write_text("\n".join(markdown(events)), encoding="utf-8")
    with open(jsonl_path, "w", encoding="utf-8", errors="replace") as f:
        for e in events:
            f.write(e.to_json() + "\n")
    return md_path, jsonl_path


def markdown(events: list[ev.Event]) -> list[str]:
    lines = ["# asynclm transcript", ""]
    answer: list[str] = []
    state = SessionState()

    def flush() -> None:
        if answer:
            lines.extend(["".join(answer).strip(), ""])
            answer.clear()

    for e in events:
        turn = state.turn
        answering = turn is not None and turn.answering  # before it: the user's message, already written
        changed = state.apply(e)
        if isinstance(e, ev.TurnStarted):
            lines += [f"## You (turn {e.turn})", "", e.text, "", "## asynclm", ""]
        elif isinstance(e, ev.TokenGenerated):
            answer.append(e.text)
        elif isinstance(e, ev.CallDetected):
            flush()
            lines += [f"- call `{e.call_id}`: `{e.expr}`", ""]
        elif isinstance(e, tuple(OUTCOMES)):
            flush()
            lines += [*_ended(changed), ""]
        elif isinstance(e, ev.InterruptInjected) and "user" in e.sources and answering:
            flush()
            said = " / ".join(p.strip() for s, p in e.said() if s == "user" and p.strip()) or e.text
            lines += [f"> (+{e.t - turn.started:.1f}s) you interrupted: {said}", ""]
        elif isinstance(e, ev.TurnEnded):
            flush()
            if e.reason != "done":
                lines += [f"*({e.reason})*", ""]
    return lines


def _ended(call: CallState) -> list[str]:
    if call.state == "done":
        result = call.result if len(call.result) <= RESULT_CHARS else call.result[:RESULT_CHARS] + " …"
        return [f"> `{call.call_id}` returned after {call.elapsed:.2f}s:", ">", *_quoted_block(result)]
    if call.state == "failed":
        return [f"> `{call.call_id}` failed:", ">", *_quoted_block(call.detail)]
    return [f"> `{call.call_id}` was cancelled"]


def _quoted_block(text: str) -> list[str]:
    """A tool's output as a code block inside a quote: every line of it, as it was (a file list's
    ``__init__.py`` is not bold, a ``# heading`` in a file is not a heading)."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return [f"> {fence}", *(f"> {line}" for line in text.splitlines() or [""]), f"> {fence}"]
