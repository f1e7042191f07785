"""Each household's income per source over the features' look-back windows, in whole fen.

The sums are added row by row into dense (household, source) cells, so the
pass that reads income for the rules panel can feed them too: at 1,000,000
households a pass over income costs about 5 s, most of it joining each row to
its household (docs/performance.md), and the features then need no pass of
their own. Sums of whole fen in int64 are exact and do not depend on the order
the rows arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalogue import HISTORY_MONTHS
from .contract import INCOME_SOURCES

INCOME_SOURCE_SUMS = ("s3", "s6", "s12", "sprev", "sq12", "kx12")
"""Per-source sums in fen over k months back: k < 3, < 6, < 12, 12..23, and squares and
k-weighted sums over k < 12."""

EXACT_SQUARES_FEN = 2**29
"""Below this many fen a month (5.4 million yuan), twelve squares add up within int64."""

_SUM_SCALE = {"sq12": 10000.0}
"""Fen squared back to yuan squared; every other sum is fen back to yuan (100)."""


@dataclass
class IncomeSourceSums:
    """The sums of :data:`INCOME_SOURCE_SUMS` per (household, source), filled batch by batch.

    Cell ``h * len(INCOME_SOURCES) + s`` holds household row ``h`` and source ``s``
    (its place in ``INCOME_SOURCES``). ``exact`` turns False, and nothing more is
    added, once a row reaches :data:`EXACT_SQUARES_FEN`: the squares could then
    overflow, and the caller must sum some other way.
    """

    households: int
    sums: dict[str, np.ndarray]
    exact: bool = True

    @classmethod
    def empty(cls, households: int) -> IncomeSourceSums:
        cells = households * len(INCOME_SOURCES)
        return cls(households, {name: np.zeros(cells, dtype=np.int64) for name in INCOME_SOURCE_SUMS})

    def add(self, cell: np.ndarray, months_back: np.ndarray, fen: np.ndarray) -> None:
        """Add a batch of rows; rows :data:`HISTORY_MONTHS` or more months back are not counted."""
        if not self.exact:
            return
        inside = months_back < HISTORY_MONTHS
        if not inside.all():
            cell, months_back, fen = cell[inside], months_back[inside], fen[inside]
        if len(fen) and np.abs(fen).max() >= EXACT_SQUARES_FEN:
            self.exact = False
            return
        recent = months_back < 12
        _add_where(self.sums["sprev"], cell, fen, ~recent)
        cell, months_back, fen = cell[recent], months_back[recent], fen[recent]
        np.add.at(self.sums["s12"], cell, fen)
        np.add.at(self.sums["sq12"], cell, fen * fen)
        np.add.at(self.sums["kx12"], cell, fen * months_back)
        _add_where(self.sums["s6"], cell, fen, months_back < 6)
        _add_where(self.sums["s3"], cell, fen, months_back < 3)

    def columns(self) -> dict[str, np.ndarray]:
        """``{source}_{sum}`` -> one float per household, in yuan (yuan squared for ``sq12``)."""
        if not self.exact:
            raise ValueError(
                "an amount too large for exact sums of squares was added: sum these rows another way"
            )
        n_sources = len(INCOME_SOURCES)
        columns: dict[str, np.ndarray] = {}
        for name, total in self.sums.items():
            yuan = total.astype(np.float64) / _SUM_SCALE.get(name, 100.0)
            for i, source in enumerate(INCOME_SOURCES):
                columns[f"{source}_{name}"] = yuan[i::n_sources]
        return columns


def _add_where(totals: np.ndarray, cell: np.ndarray, fen: np.ndarray, inside: np.ndarray) -> None:
    np.add.at(totals, cell[inside], fen[inside])
