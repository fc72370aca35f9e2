"""Completion check: whether a call drafted where the model stopped calling asks for something new.

A small model often stops calling before a request's last task, and its confidence does not tell an
early stop from a finished request. So where it chooses anything but another call right after one, the
engine drafts the call it would write next (greedy, through the real context, then taken back out of
the KV cache: ``core.drafting``) and keeps it only if it *adds a task*: it repeats no call of the
answer, and a value of it holds a word or number of the user's message that no call holds yet, from a
part of the message (split at commas, "and", "then", ...) that no call has taken a word from; or it
takes a result that no other call takes yet. If the model's own draft adds nothing, the likeliest call
of each other tool is drafted (``likely_enough`` sets how likely it must be). Where the model opens a
call, its draft is written from the draft, or, if it could not run, the call is not opened. In async
mode, ready calls with longer estimates are drafted first (the paper's LPT rule). Measurements and the
floors' derivation: docs/model-card.md, "the completion check".
"""

from __future__ import annotations

import re
from typing import Sequence

from .cml import CallExpr, Ref

# How likely (natural log, the tool's name and arguments as steered) a drafted call must be to be written:
# the model's own next call, and the likeliest call of another tool (measured on held-out requests other
# than the evaluation's: docs/model-card.md).
OWN_FLOOR = -3.0
SEARCH_FLOOR = -2.0
# Or, for another tool's call where the model stopped calling: its name, written for it, at least
# NAME_FLOOR likely and its arguments then at least ARGS_FLOOR (``likely_enough``).
NAME_FLOOR = -3.0
ARGS_FLOOR = -0.25
_WORD = re.compile(r"[^\W\d_]{3,}|\d+")
_PARTS = re.compile(r"[,;!?\n]|[.:](?:\s|$)|\s(?:and|also|then|plus)\s", re.IGNORECASE)
FUNCTION_WORDS = frozenset("""
    about after all also and any are been but can could did does for from had has have her here his how
    into its just many may more most much not now off our out over please some than that the their them
    then there these they this those too under very was were what when where which while who why will
    with would you your
""".split())


def likely_enough(logprob: float, named: float) -> bool:
    """Whether another tool's call, drafted where the model stopped calling, is likely enough to be
    written: ``logprob`` (its name, written for it, and its arguments) at least ``SEARCH_FLOOR``, or its
    name at least ``NAME_FLOOR`` (``named``) and its arguments then at least ``ARGS_FLOOR``: the model is
    often unsure which tool comes next and sure of what the call for a task left out holds."""
    return logprob >= SEARCH_FLOOR or (named >= NAME_FLOOR and logprob - named >= ARGS_FLOOR)


def value_words(text: str) -> set[str]:
    """The words (three or more letters, lower-cased, no function words) and numbers of ``text``."""
    return {w for w in map(str.lower, _WORD.findall(text)) if w not in FUNCTION_WORDS}


def _literal_words(call: CallExpr) -> set[str]:
    words: set[str] = set()
    for value in (*call.args, *call.kwargs.values()):
        if not isinstance(value, Ref):
            words |= value_words(str(value))
    return words


def adds_task(draft: CallExpr, made: Sequence[CallExpr], asked: Sequence[tuple[str, int]]) -> bool:
    """Whether ``draft`` asks for something the answer's calls ``made`` do not (the module's docstring).
    ``asked``: the user's messages in the answer, each with how many of ``made`` came before it."""
    if draft in made:
        return False
    taken = {ref for call in made for ref in call.refs}
    if any(ref not in taken for ref in draft.refs):
        return True
    used = set().union(*(_literal_words(call) for call in made)) if made else set()
    return bool(_literal_words(draft) & open_words(asked, made) - used)


def open_words(asked: Sequence[tuple[str, int]], made: Sequence[CallExpr]) -> set[str]:
    """The words of the messages' parts (the module's docstring) that no call written after the
    message has taken a word from."""
    words: set[str] = set()
    for text, before in asked:
        later = set().union(*(_literal_words(call) for call in made[before:]))
        for part in _PARTS.split(text):
            held = value_words(part)
            if not held & later:
                words |= held
    return words
