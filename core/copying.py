"""Copy bias: steers the values a call's arguments hold toward words and numbers the conversation has.

A small model often picks the right tool and the right shape of call but writes a value it made up
(``calculator(expression="32*40")`` for "what is 12*34"). The values of most calls are copied from the
user's words or from earlier results, so while the model writes an argument value this bias lowers,
by ``strength`` (in logits), every token that would make the value hold a word or number that
appears nowhere in the conversation:

- the value is cut into *runs*: maximal runs of letters and maximal runs of digits;
- a *source run* is a run of a user message or of a call's result, plus Python's ``True``,
  ``False`` and ``None``, and ``100`` where a source has a per cent sign; a call id's runs are
  source runs only in a value that is a bare name so far (a dataflow reference), so ``seconds=1``
  is not taken for a copy of ``c1``;
- the run being written must stay the prefix of a source run, and may end only where a source run
  ends; once a run is under way as a copy (a strict prefix of a source run, not one itself), what
  would cut it short or turn it into another is lowered ``MID_RUN`` times as much: a value that
  stops inside a copied word (``list_dir(path="do")`` for "list docs") is almost never meant;
- a block may not close (``closers``: the native dialect's ``[END]``) inside an open string: that
  call could only fail to parse;
- a word that the sources join to a capitalised word by a space or a hyphen (``Rio Branco``,
  ``Porto-Novo``) is part of a name: after it, only that joiner or more letters are left unlowered,
  so the value does not stop at ``Rio`` nor become ``Porto Novo``; inside a string, a capitalised
  word the sources never join to another is a whole name: no space or hyphen after it (``Ponape``,
  not ``Ponape As``, a small model's habit of two-word places).

Punctuation, operators, quotes and spaces are never lowered, so values the model builds from copied
parts (``531*89``) stay possible, and so do values the request does not hold, when the model is surer
of them than ``strength``: the bias is a thumb on the scale, not a grammar. ``math.inf`` makes it one.
Keyword names and the tool's name are left alone: only argument values are steered.

Answer text (``apply_text``) is steered more lightly, only where a word is visibly a copy: when the
part of the word already written ends with a separator and, from a run of two or more characters on,
appears in a source (``zohedux.``, ``93.``, ``11:``, ``Porto-``), the run after it must go on as it
does in the sources (``zohedux.toml``, not ``zohedux.txt``). Everything else in answers is free: the
first run of every word, words after spaces, punctuation, and a run the sources do not follow the
same way. Argument values follow this rule too, on top of the run rule above: a file's extension is
a run the sources hold whenever another file has it (``nax/shopizi.csv`` for the ``nax/shopizi.txt``
asked for, with ``lum/thainokek.csv`` in the same request).
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

MID_RUN = 3.0  # how many times ``strength`` cuts what would end a copy under way (see above)

_RUN = re.compile(r"[^\W\d_]+|\d+")
_JOINED = re.compile(r"([^\W\d_]+)([ -])(?=[^\W\d_a-z])")  # a word, then a joiner before a capital
LITERALS = ("True", "False", "None")
LITERALS_TEXT = " ".join(LITERALS)
_WORD_END = re.compile(r"\S*$")
_ID_VALUE = re.compile(r"\s*(?:[^\W\d]\w*)?$")  # a value written so far as a bare name (or nothing)


def _kind(ch: str) -> int:
    """1 for a letter, 2 for a digit, 0 for anything else (runs are made of one kind)."""
    if ch.isdigit():
        return 2
    if ch.isalpha():
        return 1
    return 0


def runs(text: str) -> list[str]:
    return _RUN.findall(text)


def open_value(body: str) -> str | None:
    """The part of the argument value being written at the end of a call body, or None when the
    body does not end inside a value (the tool name, a keyword, between arguments)."""
    depth, quote, start, in_value = 0, "", -1, False
    i = 0
    while i < len(body):
        ch = body[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            if depth >= 1 and not in_value:
                in_value, start = True, i
        elif ch in "([{":
            depth += 1
            if depth == 1:
                in_value, start = False, i + 1  # the first argument's keyword (or a positional value)
            elif depth == 2 and not in_value:
                in_value, start = True, i
        elif ch in ")]}":
            depth -= 1
            if depth <= 0:
                return None
        elif depth == 1 and ch == ",":
            in_value, start = False, i + 1
        elif depth == 1 and ch == "=" and not in_value:
            in_value, start = True, i + 1
        elif depth >= 1 and not in_value and not ch.isspace() and _kind(ch) != 1 and ch != "_":
            in_value, start = True, i  # a positional value: a number, a list, a minus sign
        i += 1
    if depth < 1 or not in_value:
        return None
    return body[start:]


def token_texts(n_vocab: int, piece: Callable[[int], bytes], is_control: Callable[[int], bool]) -> list[str | None]:
    """The text every token adds, or None for a control token or a byte of a longer character."""
    texts: list[str | None] = []
    for token in range(n_vocab):
        if is_control(token):
            texts.append(None)
            continue
        try:
            texts.append(piece(token).decode("utf-8"))
        except UnicodeDecodeError:  # a byte of a longer character: never part of a run
            texts.append(None)
    return texts


class CopyBias:
    """Lowers the logits of tokens that would put an unseen word or number into an argument value.

    ``texts`` maps every token id to the text it adds (None for tokens that add none: markers and
    other control tokens). The engine feeds what the conversation holds with ``learn`` and asks for
    the adjusted logits with ``apply`` while the model writes a call's body."""

    def __init__(self, texts: list[str | None], strength: float, closers: tuple[int, ...] = ()) -> None:
        if strength <= 0:
            raise ValueError("the copy bias strength must be positive")
        self.strength = strength
        self._closers = np.array(closers, dtype=np.int64)
        self._by_text: dict[str, list[int]] = {}
        first = np.zeros(len(texts), dtype=np.int8)
        for token, text in enumerate(texts):
            if text:
                self._by_text.setdefault(text, []).append(token)
                first[token] = _kind(text[0])
        self._starts_run = first > 0
        self._has_text = np.array([bool(t) for t in texts], dtype=bool)
        self._texts = texts
        self._runs: set[str] = set()
        self._sources: list[str] = []
        self._text_cache: dict[str, np.ndarray | None] = {}
        self._prefixes: set[str] = set()
        # runs only call ids hold (the ``1`` of ``c1``): allowed in a value that is itself an id, a
        # dataflow reference, and nowhere else, so that ``seconds=1`` is not a copy of ``c1``
        self._id_runs: set[str] = set()
        self._id_heads: set[str] = set()  # the first run of each id: where a reference begins
        self._id_prefixes: set[str] = set()
        self._joiners: dict[str, set[str]] = {}  # a word -> how the sources join it to a capitalised word
        # (open run, how far the value is a bare name, inside a string) -> the tokens to lower, and
        # whether the run is a copy under way
        self._cache: dict[tuple[str, int, bool], tuple[np.ndarray | None, bool]] = {}
        self._joining = np.array([bool(t) and t[0] in " -" for t in texts], dtype=bool)
        self.reset()

    def reset(self) -> None:
        """A new conversation: forget every source run but the literals."""
        self._runs.clear()
        self._sources.clear()
        self._prefixes.clear()
        self._id_runs.clear()
        self._id_heads.clear()
        self._id_prefixes.clear()
        self._joiners.clear()
        self._cache.clear()
        self._text_cache.clear()
        self.learn(LITERALS_TEXT)

    def learn(self, text: str) -> None:
        """Add the runs of ``text`` (a user message, a result, a call id) to the sources."""
        if text != LITERALS_TEXT:
            self._sources.append(text)
            self._text_cache.clear()
        joins = [(w, j) for w, j in _JOINED.findall(text) if j not in self._joiners.get(w, ())]
        # a per cent is a value over 100 ("37% of 245" is 37/100*245)
        new = [r for r in runs(text) + (["100"] if "%" in text else []) if r not in self._runs]
        for word, joiner in joins:
            self._joiners.setdefault(word, set()).add(joiner)
        for r in new:
            self._runs.add(r)
            self._prefixes.update(r[:k] for k in range(1, len(r) + 1))
        if joins or new:
            self._cache.clear()

    def learn_id(self, call_id: str) -> None:
        """Add a call id, which a later value may name as a dataflow reference."""
        parts = runs(call_id)
        new = [r for r in parts if r not in self._id_runs]
        for r in new:
            self._id_runs.add(r)
            self._id_prefixes.update(r[:k] for k in range(1, len(r) + 1))
        if parts and parts[0] not in self._id_heads:
            self._id_heads.add(parts[0])
            new.append(parts[0])
        if new:
            self._cache.clear()

    def apply(self, logits: np.ndarray, body: str) -> np.ndarray:
        """``logits`` steered for the next token of a call whose body so far is ``body``: a changed
        copy, or the array itself when there is nothing to steer."""
        value = open_value(body)
        if value is None:
            return logits
        steered = logits
        quoted = _in_string(value)
        if self._closers.size and quoted:
            steered = logits.copy()
            steered[self._closers] -= self.strength
        run = _trailing_run(value)
        # a value that is a bare name so far may be a dataflow reference: then the ids' runs count
        # (only their first runs where nothing is written yet), and nowhere else
        named = 0 if _ID_VALUE.match(value) is None else 2 if value.strip() else 1
        if run and run not in self._prefixes and not (named and run in self._id_prefixes):
            return steered  # already off the sources: nothing left to steer toward
        key = (run, named, quoted)
        if key not in self._cache:
            sources = self._runs  # a union only where ids count: built on a cache miss, once per key
            if named:
                sources = sources | (self._id_heads if named == 1 else self._id_runs)
            self._cache[key] = (self._lowered(run, sources, quoted), bool(run) and run not in sources)
        lowered, mid_run = self._cache[key]
        # and a visibly copied word goes on as its source does (``nax/shopizi.`` then ``txt``, where
        # the conversation also has ``.csv`` files), as in answers
        in_word = self._word_lowered(value)
        if in_word is not None:
            lowered = in_word if lowered is None else lowered | in_word
        if lowered is None:
            return steered
        return self._take(lowered, logits, steered, MID_RUN if mid_run else 1.0)

    def apply_text(self, logits: np.ndarray, text: str) -> np.ndarray:
        """``logits`` steered for the next token of answer text that so far ends with ``text``: a
        changed copy, or the array itself when the word being written is not a visible copy."""
        lowered = self._word_lowered(text)
        if lowered is None:
            return logits
        return self._take(lowered, logits)

    def _word_lowered(self, text: str) -> np.ndarray | None:
        word = _WORD_END.search(text).group()
        if word not in self._text_cache:
            self._text_cache[word] = self._lowered_in_word(word)
        return self._text_cache[word]

    def _take(self, lowered: np.ndarray, logits: np.ndarray, steered: np.ndarray | None = None,
              times: float = 1.0) -> np.ndarray:
        """``steered`` (a copy of ``logits`` when it is none yet) with ``times`` the strength taken
        from the ``lowered`` tokens."""
        if steered is None or steered is logits:
            steered = logits.copy()
        n = min(len(lowered), len(logits))
        steered[:n][lowered[:n]] -= self.strength * times
        return steered

    def _lowered_in_word(self, word: str) -> np.ndarray | None:
        """The tokens to lower after ``word`` (the answer's text since its last space), or None."""
        run = _trailing_run(word)
        head = word[: len(word) - len(run)]
        if not head:
            return None
        following = self._following(head)
        if not following:
            return None
        if run in following:
            return None  # a complete copied run: what comes next is free
        ahead = [f[len(run):] for f in following if f.startswith(run)]
        if not ahead:
            return None  # already off the sources
        allowed = np.zeros(len(self._texts), dtype=bool)
        for rest in ahead:
            self._allow(allowed, rest)
        lowered = self._starts_run & ~allowed
        if run:  # a run that stopped here would not be the sources' run
            lowered |= ~self._starts_run & self._has_text
        return lowered if lowered.any() else None

    def _following(self, head: str) -> set[str]:
        """The runs that follow the longest copied end of ``head`` in the sources: the empty set when
        no end of it from a run of two or more characters on appears in them, or when a source has no
        run right after it (a word may end there)."""
        starts = [m.start() for m in _RUN.finditer(head) if m.end() - m.start() >= 2]
        for i in starts:
            anchor = head[i:]
            end_kind = _kind(anchor[-1])
            found: set[str] = set()
            for source in self._sources:
                at = source.find(anchor)
                while at >= 0:
                    end = at + len(anchor)
                    inside = end_kind and end < len(source) and _kind(source[end]) == end_kind
                    if (at == 0 or _kind(source[at - 1]) != _kind(anchor[0])) and not inside:
                        after = _RUN.match(source, end)
                        if after is None:
                            return set()
                        found.add(after.group())
                    at = source.find(anchor, at + 1)
            if found:
                return found
        return set()

    def _lowered(self, run: str, sources: set[str], quoted: bool = False) -> np.ndarray | None:
        """The tokens to lower after ``run`` (the open run of the value, maybe empty), given the
        source runs the value may copy; ``quoted``: the value is an open string."""
        allowed = np.zeros(len(self._texts), dtype=bool)
        kind = _kind(run[0]) if run else 0
        complete = not run or run in sources
        for source in sources:
            if run and _kind(source[0]) == kind:
                if source.startswith(run) and len(source) > len(run):
                    self._allow(allowed, source[len(run):])
            elif complete:  # a new run may begin: of the other kind, or anything after a separator
                self._allow(allowed, source)
        lowered = self._starts_run & ~allowed
        if not complete:  # ending the run here would leave an unseen value
            lowered |= ~self._starts_run & self._has_text
        elif run in self._joiners:  # part of a name: go on as the sources join it
            joiners = self._joiners[run]
            for token, text in enumerate(self._texts):
                if text and not self._starts_run[token] and text[0] not in joiners:
                    lowered[token] = True
        elif quoted and run[:1].isupper() and run.isalpha():
            # a name the sources never join to another ends here (not ``Ponape As``)
            lowered |= self._joining
        return lowered if lowered.any() else None

    def _allow(self, allowed: np.ndarray, rest: str) -> None:
        for k in range(1, len(rest) + 1):
            for token in self._by_text.get(rest[:k], ()):
                allowed[token] = True


def _in_string(value: str) -> bool:
    """Whether a value being written (as ``open_value`` cuts it) ends inside a string literal."""
    quote, i = "", 0
    while i < len(value):
        ch = value[i]
        if quote and ch == "\\":
            i += 2
            continue
        if ch in "\"'" and (not quote or ch == quote):
            quote = "" if quote else ch
        i += 1
    return bool(quote)


def _trailing_run(value: str) -> str:
    if not value:
        return ""
    kind = _kind(value[-1])
    if kind == 0:
        return ""
    i = len(value)
    while i > 0 and _kind(value[i - 1]) == kind:
        i -= 1
    return value[i:]
