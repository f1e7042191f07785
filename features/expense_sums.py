"""Each household's rigid out-of-pocket spending over the features' look-back windows, in whole fen.

The rules panel reads every rigid bill (medical, education, disaster,
accident, funeral) up to the as-of month to find rigid expenditure; the
expense features read the same bills over the last 24 months. Added row by
row into dense cells here, the panel's pass feeds the features too, and they
need no pass of their own (2.5 s at 1,000,000 households). Sums of whole fen
in int64 are exact and do not depend on the order the rows arrive in, so the
columns equal DuckDB's sums bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalogue import HISTORY_MONTHS
from .contract import EXPENSE_CATEGORIES

EXPENSE_GROUPS: dict[str, tuple[str, ...]] = {
    "medical": ("medical",),
    "education": ("education",),
    "other_rigid": ("disaster", "accident", "funeral"),
}
"""The expense features' groups of rigid categories."""

WINDOW_BOUNDS = (3, 6, 12, HISTORY_MONTHS)
"""Months-back classes [0, 3), [3, 6), [6, 12), [12, 24): every window of the features is a run of them."""

OUT_OF_POCKET_WINDOWS: dict[str, tuple[str, int]] = {
    "medical_oop_3m": ("medical", 3),
    "medical_oop_6m": ("medical", 6),
    "medical_oop_12m": ("medical", 12),
    "medical_oop_24m": ("medical", 24),
    "education_oop_3m": ("education", 3),
    "education_oop_12m": ("education", 12),
    "education_oop_24m": ("education", 24),
    "other_rigid_oop_12m": ("other_rigid", 12),
}
"""Each out-of-pocket feature: its group and window (months back)."""

_GROUP_OF_CODE = np.array(
    [
        next((g for g, (_, categories) in enumerate(EXPENSE_GROUPS.items()) if c in categories), -1)
        for c in EXPENSE_CATEGORIES
    ],
    dtype=np.int64,
)
"""A category's place in EXPENSE_CATEGORIES -> its group's place in EXPENSE_GROUPS (-1: none)."""
_MEDICAL = list(EXPENSE_GROUPS).index("medical")


@dataclass
class RigidExpenseSums:
    """Out-of-pocket fen per (household, group, months-back class), and the year's medical bills.

    Cell ``(h * len(EXPENSE_GROUPS) + g) * len(WINDOW_BOUNDS) + c`` holds household
    row ``h``, group ``g`` and class ``c``.
    """

    households: int
    out_of_pocket: np.ndarray
    medical_bills: np.ndarray
    """Medical bills less than 12 months back, per household."""
    medical_amount: np.ndarray
    """Their amounts, fen."""
    medical_reimbursed: np.ndarray
    """What insurance reimbursed of them, fen."""

    @classmethod
    def empty(cls, households: int) -> RigidExpenseSums:
        def zeros(cells: int) -> np.ndarray:
            return np.zeros(cells, dtype=np.int64)

        cells = households * len(EXPENSE_GROUPS) * len(WINDOW_BOUNDS)
        return cls(households, zeros(cells), zeros(households), zeros(households), zeros(households))

    def add(
        self,
        household: np.ndarray,
        months_back: np.ndarray,
        category: np.ndarray,
        out_of_pocket: np.ndarray,
        amount: np.ndarray,
        reimbursed: np.ndarray,
    ) -> None:
        """Add a batch of bills (``category`` as places in EXPENSE_CATEGORIES, money in fen).

        Bills :data:`HISTORY_MONTHS` or more months back, and of categories in no group, are not counted.
        """
        group = _GROUP_OF_CODE[category]
        inside = (months_back < HISTORY_MONTHS) & (group >= 0)
        window_class = np.searchsorted(WINDOW_BOUNDS, months_back, side="right")
        cell = (household * len(EXPENSE_GROUPS) + group) * len(WINDOW_BOUNDS) + window_class
        np.add.at(self.out_of_pocket, cell[inside], out_of_pocket[inside])
        medical = inside & (group == _MEDICAL) & (months_back < 12)
        np.add.at(self.medical_bills, household[medical], 1)
        np.add.at(self.medical_amount, household[medical], amount[medical])
        np.add.at(self.medical_reimbursed, household[medical], reimbursed[medical])

    def columns(self) -> dict[str, np.ndarray]:
        """The expense features: out-of-pocket yuan per window, medical bills and reimbursed share."""
        by_class = self.out_of_pocket.reshape(self.households, len(EXPENSE_GROUPS), len(WINDOW_BOUNDS))
        groups = list(EXPENSE_GROUPS)
        columns: dict[str, np.ndarray] = {}
        for name, (group, window) in OUT_OF_POCKET_WINDOWS.items():
            classes = WINDOW_BOUNDS.index(window) + 1
            fen = by_class[:, groups.index(group), :classes].sum(axis=1)
            columns[name] = fen.astype(np.float64) / 100
        columns["medical_bills_12m"] = self.medical_bills.astype(np.float64)
        share = np.full(self.households, np.nan)
        paid = self.medical_amount > 0
        share[paid] = self.medical_reimbursed[paid].astype(np.float64) / self.medical_amount[paid].astype(
            np.float64
        )
        columns["medical_reimbursed_share_12m"] = share
        return columns
