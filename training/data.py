"""From sessions to training rows: tokenize with llama.cpp, cut at turn ends, pack into fixed rows."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .traces import make_session


def _make(args: tuple[int, bool, str]) -> list:
    seed, heldout, profile = args
    return make_session(seed, heldout, profile=profile).atoms


def generate(seeds: Iterable[int], heldout: bool = False, workers: int = 2, profile: str = "full") -> list[list]:
    """Session atoms for each seed, in seed order (worker processes share the generation)."""
    jobs = [(s, heldout, profile) for s in seeds]
    if workers <= 1:
        return [_make(j) for j in jobs]
    with mp.get_context("fork").Pool(workers) as pool:
        return pool.map(_make, jobs, chunksize=64)


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

    def save(self, path: Path) -> None:
        np.savez_compressed(path, ids=self.ids, mask=self.mask)

    @classmethod
    def load(cls, path: Path) -> "Packed":
        data = np.load(path)
        return cls(data["ids"], data["mask"])

    @property
    def fill(self) -> float:
        return float((self.ids != PAD).mean())


PAD = -1


def pack(sequences: list[tuple[list[int], list[bool]]], row: int) -> Packed:
    """First-fit packing of whole sessions into rows of ``row + 1`` tokens (inputs and shifted targets)."""
    width = row + 1
    rows: list[list[int]] = []
    masks: list[list[bool]] = []
    free: list[int] = []
    for ids, mask in sequences:
        n = len(ids)
        for i in range(max(0, len(rows) - 64), len(rows)):  # a window keeps this linear
            if free[i] >= n:
                break
        else:
            rows.append([])
            masks.append([])
            free.append(width)
            i = len(rows) - 1
        rows[i] += ids
        masks[i] += mask
        free[i] -= n
    out_ids = np.full((len(rows), width), PAD, dtype=np.int32)
    out_mask = np.zeros((len(rows), width), dtype=bool)
    for r, (ids, mask) in enumerate(zip(rows, masks)):
        out_ids[r, :len(ids)] = ids
        out_mask[r, :len(mask)] = mask
    return Packed(out_ids, out_mask)  # PAD marks the unused tail; the trainer masks it out
