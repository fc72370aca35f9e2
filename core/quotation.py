"""Quotations: whether a call the model wrote is a copy of text that entered the context from outside.

A tool result or a user message may hold a call (``<tool_call>{...}</tool_call>``, or CML). Injected
text is neutralised on the way in, so a verbatim echo starts no call; a model that echoes it with the
call syntax restored, or wraps a quoted call body in tags of its own, writes text that still matches
what entered once case, whitespace, compatibility forms (the fullwidth brackets of neutralised
markers) and zero-width characters are set aside. Such a call is not run.
"""

from __future__ import annotations

import unicodedata

MIN_CHARS = 12  # a body shorter than this (``{}``, ``f()``) is no evidence of a quotation
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")


def fold_text(text: str) -> str:
    """``text`` as compared for a quotation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if not ch.isspace() and ch not in ZERO_WIDTH)


class Quotations:
    """The texts that entered the context from a user or a tool, folded once as they enter and kept
    end to end: a call pieced together from consecutive results is a quotation too."""

    def __init__(self) -> None:
        self._folded = ""

    def add(self, text: str) -> None:
        self._folded += fold_text(text)

    def clear(self) -> None:
        self._folded = ""

    def quotes(self, text: str) -> bool:
        """``text`` (a call, or a call's body) lies inside what entered."""
        folded = fold_text(text)
        return len(folded) >= MIN_CHARS and folded in self._folded
