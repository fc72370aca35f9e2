"""From sessions to training rows: tokenize with llama.cpp, cut at turn ends, pack into fixed rows."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .traces import decision_spans, make_session, task_spans

# What a pointer steers the head by: to the words of the task a call is for while the call is written,
# or, where the model chooses between another call and words, to what settles that choice.
CALLS, DECISIONS = 0, 1


def spans_of(session) -> list[tuple]:
    """The session's pointers in atoms: ``(first, last, message, start, end, kind)``, the queries at the
    last token of each atom from ``first`` to ``last``, the words ``start:end`` of atom ``message`` (the
    whole atom when None), ``kind`` one of ``CALLS`` (``task_spans``: a call's [HEAD] and body) and
    ``DECISIONS`` (``decision_spans``)."""
    return ([(body - 1, body, message, start, end, CALLS) for body, message, start, end in task_spans(session)]
            + [(*span, DECISIONS) for span in decision_spans(session)])


def _make(args: tuple[int, bool, str]) -> tuple[list, list]:
    seed, heldout, profile = args
    session = make_session(seed, heldout, profile=profile)
    return session.atoms, spans_of(session)


def generate(seeds: Iterable[int], heldout: bool = False, workers: int = 2,
             profile: str = "full") -> list[tuple[list, list]]:
    """Each seed's session atoms and pointers (``spans_of``), in seed order (worker processes share the
    generation)."""
    jobs = [(s, heldout, profile) for s in seeds]
    if workers <= 1:
        return [_make(j) for j in jobs]
    with mp.get_context("fork").Pool(workers) as pool:
        return pool.map(_make, jobs, chunksize=64)


# A pointer: at positions ``q0..q1`` of a row (e.g. a call's [HEAD] to its last token), the words
# the head should read are positions ``t0..t1 - 1`` of the same row; ``kind`` is CALLS or DECISIONS.
Pointer = tuple[int, int, int, int, int]


def token_pointers(tok, atoms: list, spans: list) -> tuple[list[int], list[bool], list[Pointer]]:
    """A session's tokens, loss mask and pointers (``spans_of`` turned into token positions)."""
    ids, mask, starts = tok.encode_atoms(atoms)
    starts.append(len(ids))
    out = []
    for first, last, message, start, end, kind in spans:
        if start is None:
            t0, t1 = starts[message], starts[message + 1]
        else:
            text = atoms[message][0]
            t0 = starts[message] + len(tok.text(text[:start]))
            t1 = starts[message] + len(tok.text(text[:end]))
        out.append((starts[first + 1] - 1, starts[last + 1] - 1, t0, t1, kind))
    return ids, mask, out


def fit_to_row(ids: list[int], mask: list[bool], eos: int, row: int) -> tuple[list[int], list[bool]] | None:
    """The session cut after its last whole turn that fits in ``row`` tokens (None if none fits)."""
    if len(ids) <= row:
        return ids, mask
    ends = [i for i, (tok, m) in enumerate(zip(ids, mask)) if tok == eos and m and i < row]
    if not ends:
        return None
    cut = ends[-1] + 1
    return ids[:cut], mask[:cut]


@dataclass
class Packed:
    ids: np.ndarray  # (rows, row + 1) int32
    mask: np.ndarray  # (rows, row + 1) bool: the target at this position is trained on
    # (n, 6) int32: row, q0, q1, t0, t1, kind of each pointer (``Pointer``) whose queries fit the row
    pointers: np.ndarray | None = None

    def save(self, path: Path) -> None:
        extra = {} if self.pointers is None else {"pointers": self.pointers}
        np.savez_compressed(path, ids=self.ids, mask=self.mask, **extra)

    @classmethod
    def load(cls, path: Path) -> "Packed":
        data = np.load(path)
        return cls(data["ids"], data["mask"], data["pointers"] if "pointers" in data else None)

    @property
    def fill(self) -> float:
        return float((self.ids != PAD).mean())


PAD = -1


def pack(sequences: list[tuple[list[int], list[bool]]], row: int,
         pointers: list[list[Pointer]] | None = None) -> Packed:
    """First-fit packing of whole sessions into rows of ``row + 1`` tokens (inputs and shifted targets),
    with each session's pointers (if given) moved to where it lands."""
    width = row + 1
    rows: list[list[int]] = []
    masks: list[list[bool]] = []
    free: list[int] = []
    placed: list[tuple[int, ...]] = []
    for k, (ids, mask) in enumerate(sequences):
        n = len(ids)
        for i in range(max(0, len(rows) - 64), len(rows)):  # a window keeps this linear
            if free[i] >= n:
                break
        else:
            rows.append([])
            masks.append([])
            free.append(width)
            i = len(rows) - 1
        if pointers is not None:
            at = len(rows[i])
            placed += [(i, q0 + at, q1 + at, t0 + at, t1 + at, kind) for q0, q1, t0, t1, kind in pointers[k]
                       if q1 < n - 1]  # the last query's target is in the session as cut
        rows[i] += ids
        masks[i] += mask
        free[i] -= n
    out_ids = np.full((len(rows), width), PAD, dtype=np.int32)
    out_mask = np.zeros((len(rows), width), dtype=bool)
    for r, (ids, mask) in enumerate(zip(rows, masks)):
        out_ids[r, :len(ids)] = ids
        out_mask[r, :len(mask)] = mask
    found = None if pointers is None else np.array(placed, dtype=np.int32).reshape(-1, 6)
    return Packed(out_ids, out_mask, found)  # PAD marks the unused tail; the trainer masks it out
