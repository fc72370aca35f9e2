"""The interrupt queue: where call results and user messages wait for the next safe point.

The executor (on its asyncio loop) and front ends (on any thread) put interrupts here; the decode
thread drains them at safe points, or blocks on the queue at a trap without busy-waiting.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Interrupt:
    source: str  # a call id, "user" or "system"
    payload: str  # what the model will read (already cut)
    kind: str  # "result", "error", "cancelled", "user", "system"
    queued_at: float = field(default_factory=time.monotonic)


class InterruptQueue:
    def __init__(self) -> None:
        self._items: list[Interrupt] = []
        self._cond = threading.Condition()
        self._woken = False

    def put(self, interrupt: Interrupt) -> None:
        with self._cond:
            self._items.append(interrupt)
            self._cond.notify_all()

    def put_front(self, interrupts: list[Interrupt]) -> None:
        """Put interrupts ahead of those waiting, keeping their order (drained ones that could not be
        injected, or a note that must precede what opens a turn)."""
        with self._cond:
            self._items[:0] = interrupts
            self._cond.notify_all()

    def drain(self) -> list[Interrupt]:
        with self._cond:
            items, self._items = self._items, []
            return items

    def snapshot(self) -> list[Interrupt]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def sources(self) -> set[str]:
        with self._cond:
            return {i.source for i in self._items}

    def wake(self) -> None:
        """Release any ``wait`` so that it re-checks its exit condition (stop, close)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def wait(self, ready: Callable[[list[Interrupt]], bool], cancelled: Callable[[], bool],
             timeout: float | None = None) -> bool:
        """Block until ``ready(items)`` holds; False if ``cancelled()`` or the timeout came first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if cancelled():
                    return False
                if ready(self._items):
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._woken = False
                self._cond.wait(remaining)
