"""The session file: every event appended as one JSON line, as it happens.

Writes go through aiofiles on the executor's loop, one line-buffered write per event, so a crash or a
kill loses at most the event being written. ``read_transcript`` reads a file back into events, skipping
a torn last line.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import aiofiles

from .events import Event, event_from_dict


def sessions_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "asynclm" / "sessions"


def new_session_path() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = sessions_dir() / f"{stamp}.jsonl"
    n = 1
    while path.exists():
        n += 1
        path = sessions_dir() / f"{stamp}-{n}.jsonl"
    return path


class TranscriptWriter:
    """An event sink that appends to a session file from its own small event loop thread, so it
    outlives (and never waits on) the engine's threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8"):  # a path that cannot be written fails here, not later
            pass
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asynclm-transcript", daemon=True)
        self._thread.start()
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._done = asyncio.run_coroutine_threadsafe(self._write_all(), self._loop)
        self.errors = 0

    def __call__(self, event: Event) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    async def _write_all(self) -> None:
        async with aiofiles.open(self.path, "a", encoding="utf-8", errors="replace", buffering=1) as f:
            while True:
                event = await self._queue.get()
                if event is None:
                    return
                try:
                    await f.write(event.to_json() + "\n")
                except (OSError, ValueError):
                    self.errors += 1

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then close the file."""
        if not self._done.done():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
            try:
                self._done.result(timeout)
            except Exception:
                pass
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)


def read_transcript(path: str | os.PathLike[str]) -> Iterator[Event]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield event_from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line torn by a crash, or from a newer version
