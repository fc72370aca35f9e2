"""Completion check: whether a call drafted where the model stopped calling asks for something new.

A small model often stops writing calls before a request's last task (asked for five things, it
calls four and starts its acknowledgement), and the confidence of that choice does not tell an early
stop from a finished request. So, where the model chooses anything but another call right after one,
the engine can draft the call the model would write if it went on (greedy, through the real context,
taken back out of the KV cache afterwards; ``Engine._complete``) and keep it only when it *adds a
task*:

- it is not a call the answer has already written (the same tool with the same arguments), and
- one of its argument values holds a word or number of the user's messages in this answer that no
  call of the answer holds yet, from a part of a message that no call has taken a word from
  (``calculator(expression="806/0")`` after calls for ``yithaix`` and ``brari.txt``, when the request
  says "what's in yithaix, calculate 806/0 and cat brari.txt"), or it takes the result of a call whose
  result no other call takes yet (a dependent call the model did not get to).

A message's parts are what commas, semicolons, a full stop or colon before a space, a new line or the
words "and", "also", "then" and "plus" separate: a request's tasks, most of the time. A part that a
call written after the message has taken a word from is a task done, so its other words are no new
task: "set a timer for 2 seconds and what is 31*29", answered with ``wait(seconds=2)`` and
``calculator(expression="31*29")``, leaves no word open, and the model's
``search_files(pattern="set")`` is no task. Calls written before a message typed mid-answer do not
close its parts: "sorry, Urumqi instead of Manila" still asks for Urumqi after the call for Manila.

A model that has written every call drafts one again, or one built from words already used, or one
it is unsure of (less likely than ``OWN_FLOOR``: ``read_file(path="square isod")`` for "the square
root of 850"), and the draft is thrown away. A model that stopped early often does the same (asked to
search for ``zopox``, list ``meapeas`` and convert 988 MB, it drafts the conversion again), so then the
engine drafts the likeliest call of each other tool, writing the tool's name for it, and keeps the
likeliest of those that adds a task, if it is at least ``SEARCH_FLOOR`` likely, or its tool at least
``NAME_FLOOR`` and its arguments then at least ``ARGS_FLOOR`` (``likely_enough``): the right call for a
task left out is seldom much less likely than that, and a call made up for a request that is done
seldom more. Otherwise what the model chose stands.

Where the model opens a call, the engine drafts that call too, and writes it from the draft (its
tokens are in the context already); if the draft would repeat a call of the answer word for word, a
small model's other way of losing a task (asked for four things, it writes one of them twice), the
other tools' drafts are tried in the same way, and the repeat stands if none adds a task. If the draft
is a call that could not run (it does not parse: ``convert_units(value=3.5714285714285716. 2 cups =
188.571``, answer text written into a value; it names no tool; it takes a result no call gave) or has
not ended within ``DRAFT_TOKENS`` (96: answer text again, or a call longer than the built-in tools'
10-40 tokens, which this check is not for), the other tools' drafts are tried too, and if none is
written the call is not opened: the model's next choice comes instead of the call marker.

In async mode the engine also writes ready calls longest estimate first, the paper's LPT rule, which
a small model follows about a third of the time. Where the model opens a call, each tool whose shown
estimate is longer than that of the model's own draft by more than the draft took to write (less
would not pay for the drafting) and whose name the model could have written there at least
``SEARCH_FLOOR`` likely is drafted in turn, longest first; the first draft that adds a task beside the
model's own call, takes no other call's result and is at least ``SEARCH_FLOOR`` likely is written,
and the model's own call comes later. Asked for "670/61, and 794 kg in lb" with the calculator shown
at ~278ms and the conversion at ~843ms, the model opens the division; the conversion goes first.

Words of three or more letters count, and numbers; shorter words (``a``, ``to``, units such as ``g``
or ``km``) are too common to tell a task apart, and so are English function words (``the``, ``have``,
``for``): a small model that has run out of tasks makes one of them a value (``list_dir(path="have")``
for "how many lines does it have").
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
