"""A copy-friendly BPE vocabulary, served by llama.cpp's SentencePiece-style (``llama``) tokenizer.

- Merges happen only inside runs of letters or runs of punctuation; digits and spaces are never merged.
  A name or a number is then split the same way wherever it appears (in a request, in a call, in a
  result), which is what lets a small model copy values it has never seen.
- Merged pieces are scored by ``-rank``, so llama.cpp's highest-score-first merging replays the BPE
  merge order.
- The vocabulary keeps every byte (byte fallback: anything a user types can be written) and the five
  CML markers as control tokens.
- Training data is tokenized by llama.cpp itself, from a vocabulary-only model file, so training and
  inference split text identically.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any, Iterable

from asynclm.core.cml import Marker
from asynclm.core.modelgen import NORMAL, TINY, Vocab, cml_char_vocab, write_random_llama

from .traces import BOS, EOS

_RUN = re.compile(r"[A-Za-z]+|[^\sA-Za-z\d]+")


def text_runs(atoms: Iterable[tuple[Any, bool]]) -> Iterable[str]:
    """The plain-text atoms of a trace (markers and sentinels are tokens of their own)."""
    for atom, _ in atoms:
        if not isinstance(atom, Marker) and atom not in (BOS, EOS):
            yield atom


def train_bpe(texts: Iterable[str], vocab_size: int) -> list[str]:
    """Merged pieces, in merge order, so that base vocabulary + pieces has ``vocab_size`` tokens."""
    base = cml_char_vocab()
    known = set(base.tokens)
    budget = vocab_size - len(base.tokens)
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        counts.update(_RUN.findall(text))
    words = [(list(w), n) for w, n in counts.items() if len(w) > 1]
    pairs: collections.Counter[tuple[str, str]] = collections.Counter()
    where: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for i, (symbols, n) in enumerate(words):
        for a, b in zip(symbols, symbols[1:]):
            pairs[a, b] += n
            where[a, b].add(i)
    pieces: list[str] = []
    while len(pieces) < budget and pairs:
        (a, b), n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if n < 2:
            break
        merged = a + b
        for i in list(where[a, b]):
            symbols, count = words[i]
            for x, y in zip(symbols, symbols[1:]):
                pairs[x, y] -= count
                if pairs[x, y] <= 0:
                    del pairs[x, y]
            out, j = [], 0
            while j < len(symbols):
                if j + 1 < len(symbols) and symbols[j] == a and symbols[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(symbols[j])
                    j += 1
            words[i] = (out, count)
            for x, y in zip(out, out[1:]):
                pairs[x, y] += count
                where[x, y].add(i)
        pairs.pop((a, b), None)
        where.pop((a, b), None)
        if merged not in known:
            known.add(merged)
            pieces.append(merged)
    return pieces


def build_vocab(pieces: list[str]) -> Vocab:
    vocab = cml_char_vocab()
    for rank, piece in enumerate(pieces):
        vocab.tokens.append(piece)
        vocab.types.append(NORMAL)
        vocab.scores.append(-float(rank + 1))
    return vocab


def save_pieces(pieces: list[str], path: Path) -> None:
    path.write_text("\n".join(p.encode("unicode_escape").decode() for p in pieces) + "\n")


def load_pieces(path: Path) -> list[str]:
    return [line.encode().decode("unicode_escape") for line in path.read_text().splitlines() if line]


class Tokenizer:
    """llama.cpp's own tokenizer for a vocabulary, and the encoding of a trace's atoms."""

    def __init__(self, vocab: Vocab, workdir: Path) -> None:
        from asynclm.core.llama import LlamaBackend

        self.vocab = vocab
        path = write_random_llama(workdir / "vocab-only.gguf", vocab=vocab, shape=TINY, name="vocab")
        self.backend = LlamaBackend(path, n_ctx=64, n_threads=1)
        self.markers = {m: vocab.tokens.index(m.value) for m in Marker}
        self.bos = vocab.tokens.index("<s>")
        self.eos = vocab.tokens.index("</s>")
        self.n_vocab = len(vocab.tokens)

    def text(self, text: str) -> list[int]:
        return self.backend.tokenize(text, special=False)

    def encode(self, atoms: Iterable[tuple[Any, bool]]) -> tuple[list[int], list[bool]]:
        """Token ids and, for each, whether the model wrote it (what the loss counts)."""
        ids, mask, _ = self.encode_atoms(atoms)
        return ids, mask

    def encode_atoms(self, atoms: Iterable[tuple[Any, bool]]) -> tuple[list[int], list[bool], list[int]]:
        """As ``encode``, and the position of each atom's first token."""
        ids: list[int] = []
        mask: list[bool] = []
        starts: list[int] = []
        for atom, by_model in atoms:
            if isinstance(atom, Marker):
                new = [self.markers[atom]]
            elif atom == BOS:
                new = [self.bos]
            elif atom == EOS:
                new = [self.eos]
            else:
                new = self.text(atom)
            starts.append(len(ids))
            ids += new
            mask += [by_model] * len(new)
        return ids, mask, starts

    def decode(self, ids: list[int]) -> str:
        return self.backend.detokenize(ids)

    def close(self) -> None:
        self.backend.close()
