"""Split as-of months by time so that no split sees a later split's outcomes.

A training example at as-of month t carries a label about t+1 .. t+H. If that
window reached past the first validation month, the booster would learn from
outcomes that were still in the future when the validation households were
scored, and validation would flatter it. So every month of an earlier split
satisfies ``t + H <= first month of the next split``; quarter-ends that fall in
the gap are left out rather than given to either side.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from relapse_risk.features.contract import format_month, month_index


class TrainingDataError(ValueError):
    """The data cannot support an honest training run (too little history, too few positives)."""


@dataclass(frozen=True)
class TimeSplit:
    """As-of months of each split, ascending; ``gap`` holds months given to no split."""

    horizon: int
    train: tuple[dt.date, ...]
    validation: tuple[dt.date, ...]
    test: tuple[dt.date, ...]
    gap: tuple[dt.date, ...]

    def role(self, month: dt.date) -> str:
        """``train``, ``validation``, ``test`` or ``gap`` for one of the split's months."""
        for name in ("train", "validation", "test", "gap"):
            if month in getattr(self, name):
                return name
        raise KeyError(f"{format_month(month)} is not one of the split's as-of months")

    def describe(self) -> dict[str, list[str]]:
        return {
            name: [format_month(m) for m in getattr(self, name)]
            for name in ("train", "validation", "test", "gap")
        }


def months_needed(horizon: int, test_months: int, validation_months: int, min_train_months: int) -> int:
    """Fewest quarterly as-of months that admit the split, counting the quarter-ends lost to gaps."""
    lost_per_gap = math.ceil(horizon / 3) - 1
    return test_months + validation_months + min_train_months + 2 * lost_per_gap


def _before(months: Sequence[dt.date], boundary: dt.date, horizon: int) -> list[dt.date]:
    """Months whose label window t+1 .. t+H ends no later than ``boundary``."""
    limit = month_index(boundary) - horizon
    return [m for m in months if month_index(m) <= limit]


def time_split(
    as_of_months: Sequence[dt.date],
    horizon: int,
    test_months: int = 4,
    validation_months: int = 1,
    min_train_months: int = 1,
    learning_months: Sequence[dt.date] | None = None,
) -> TimeSplit:
    """Train on the earliest labelled months, validate on later ones, test on the latest.

    ``as_of_months`` are labelled as-of months (t + H <= data_end), in any order.
    Test takes the last ``test_months``; validation the last ``validation_months``
    whose label windows end by the first test month; train every month whose label
    window ends by the first validation month. ``learning_months``, when given, are
    the candidates for train and validation instead of ``as_of_months`` (for example
    every month, while testing stays on quarter-ends). Raises :class:`TrainingDataError`
    naming what is missing when fewer than ``min_train_months`` remain for training.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 month, got {horizon}")
    months = sorted(set(as_of_months))
    learning = sorted(set(learning_months)) if learning_months is not None else months
    needed = months_needed(horizon, test_months, validation_months, min_train_months)
    span = f"{format_month(months[0])}..{format_month(months[-1])}" if months else "none"
    shortage = (
        f"too little history to train honestly: {len(months)} labelled as-of month(s) ({span}); "
        f"with horizon {horizon}, {test_months} test and {validation_months} validation quarter-ends "
        f"and label windows that may not reach into the next split, at least {needed} quarterly "
        f"as-of months are needed (about {3 * needed + horizon + 12} months of data including a year "
        "of history and the label window)"
    )
    if len(months) < test_months + validation_months + min_train_months:
        raise TrainingDataError(shortage)
    test = months[-test_months:]
    validation = _before(learning, test[0], horizon)[-validation_months:]
    if len(validation) < validation_months:
        raise TrainingDataError(shortage)
    train = _before(learning, validation[0], horizon)
    if len(train) < min_train_months:
        raise TrainingDataError(shortage)
    assigned = set(train) | set(validation) | set(test)
    gap = [m for m in sorted(set(months) | set(learning)) if m not in assigned and m < test[-1]]
    return TimeSplit(horizon, tuple(train), tuple(validation), tuple(test), tuple(gap))
