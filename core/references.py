"""Typed dataflow references: a reference names an earlier call whose result the argument can take.

A small model that has to feed one call's result into another often names the wrong call: the one
written just before, whatever it was (``convert_units(value=c2, ...)`` where ``c2`` read a clock and
``c1`` computed the number). That call can only fail: ``value`` takes a number, the clock gives
text. So while the model writes an argument value that is so far the start of an earlier call's id,
the engine keeps only the tokens that lead to the id of a call that could fit, and then end it:

- a call *could fit* an argument when its tool's return annotation could pass the parameter's type
  (``tools.schema.may_fit``: a ``str`` result never fits a ``float``; anything unknown fits) and it
  has not already failed or been cancelled;
- ids of calls not written yet, the call's own id and ids of rejected calls are not references;
- a value that is not the start of any id (a number, ``True``, a quoted string) is left alone, and
  so is a positional argument, and a value whose every candidate is out (the call then fails with an
  error saying why, as before).
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from .copying import open_value

_NAME = re.compile(r"[^\W\d]\w*")
_KEYWORD = re.compile(r"(\w+)\s*=\s*$")  # the keyword right before the value


def reference_target(body: str) -> tuple[str, str, str] | None:
    """(tool, keyword, name written so far) when a call body ends inside a keyword argument whose
    value is, so far, a bare name; else None."""
    value = open_value(body)
    if value is None or not _NAME.fullmatch(value.lstrip()):
        return None
    keyword = _KEYWORD.search(body[: len(body) - len(value)])
    if keyword is None:
        return None
    return body.split("(", 1)[0].strip(), keyword.group(1), value.lstrip()


class ReferenceGuide:
    """Which tokens may come next in a dataflow reference. ``texts`` maps every token id to the text
    it adds (None for control tokens), as ``copying.token_texts`` gives it."""

    def __init__(self, texts: list[str | None]) -> None:
        self.n_vocab = len(texts)
        self._by_text: dict[str, list[int]] = {}
        self._by_head: dict[str, list[int]] = {}  # a token's word characters before a non-word one
        ends = np.zeros(len(texts), dtype=bool)  # tokens that end a name (a comma, a bracket, a space)
        for token, text in enumerate(texts):
            if not text:
                continue
            self._by_text.setdefault(text, []).append(token)
            head = re.match(r"\w*", text).group()
            if len(head) < len(text):
                if head:
                    self._by_head.setdefault(head, []).append(token)
                else:
                    ends[token] = True
        self._ends = ends

    def allowed(self, written: str, ids: Iterable[str], fits: Iterable[str]) -> np.ndarray | None:
        """The tokens that may follow ``written`` (a bare name so far): those that go on toward, or
        end, an id in ``fits``. None, for no constraint, when ``written`` starts no id in ``ids``
        (the session's) or none of ``fits``."""
        if not any(i.startswith(written) for i in ids):
            return None
        targets = [i for i in fits if i.startswith(written)]
        if not targets:
            return None
        mask = np.zeros(self.n_vocab, dtype=bool)
        for target in targets:
            rest = target[len(written):]
            if not rest:
                mask |= self._ends
                continue
            for k in range(1, len(rest) + 1):
                mask[self._by_text.get(rest[:k], [])] = True
            mask[self._by_head.get(rest, [])] = True  # the rest of the id and what ends it, in one
        return mask
