"""The call ledger: every call id of a session, and the one answer to "would this call run?".

The engine asks it before a call starts, the completion check before it writes a draft, and the
executor before it runs one, so the model gets one message per kind of error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cml import CallExpr

if TYPE_CHECKING:
    from .executor import Toolbox


class CallLedger:
    """Ids written, refused, run and failed this session. Touched by the decode thread only (or while
    it is idle); the executor reads it for calls the engine has already entered."""

    def __init__(self, tools: Toolbox) -> None:
        self.tools = tools
        self.ids: set[str] = set()  # every id written, run or refused
        self.refused: set[str] = set()  # ids of calls that never ran
        self.producers: dict[str, str] = {}  # id -> tool, of every call started (or collected)
        self.failed: set[str] = set()  # ids whose error or cancellation has entered the context

    def clear(self) -> None:
        self.ids.clear()
        self.refused.clear()
        self.producers.clear()
        self.failed.clear()

    def taken(self, call_id: str) -> bool:
        return call_id in self.ids

    def fresh_id(self, used: str) -> str:
        """An id like ``used`` that the session has not used: the next number after its stem's highest."""
        stem = used.rstrip("0123456789") or "c"
        numbers = [int(i[len(stem):]) for i in self.ids if i.startswith(stem) and i[len(stem):].isdigit()]
        n = max(numbers, default=0) + 1
        while f"{stem}{n}" in self.ids:
            n += 1
        return f"{stem}{n}"

    def why_not(self, expr: CallExpr, call_id: str = "") -> tuple[str, str] | None:
        """Why call ``call_id`` would not run: the error's kind and message, or None. It must name a
        tool and take the results only of earlier calls that ran."""
        if self.tools.get(expr.name) is None:
            names = self.tools.names()
            known = f"; the tools are: {', '.join(names)}" if names else ""
            return "UnknownTool", f"there is no tool named {expr.name!r}{known}"
        for ref in expr.refs:
            if ref not in self.ids or ref == call_id:
                return "UnknownReference", f"{ref} is not the id of an earlier call"
            if ref in self.refused:
                return "DependencyFailed", f"depends on {ref}, which was not run"
        return None

    def results_for(self, tool_name: str, param: str) -> list[str]:
        """Ids of calls whose results argument ``param`` of ``tool_name`` could take: calls that ran
        and did not fail, of a tool whose result fits the parameter."""
        tool = self.tools.get(tool_name)
        return [cid for cid, name in self.producers.items() if cid not in self.failed
                and (tool is None or (source := self.tools.get(name)) is None
                     or tool.takes_result(param, source))]
