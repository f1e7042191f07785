"""Split as-of months by time so that no split sees a later split's outcomes.

A training example at as-of month t carries a label about t+1 .. t+H. If that
window reached past the first validation month, the booster would learn from
outcomes that were still in the future when the validation households were
scored, and validation would flatter it. So every month of an earlier split
satisfies ``t + H <= first month of the next split``; quarter-ends that fall in
the gap are left out rather than given to either side.

Counties hold two to four years of data (the national monitoring system
started in 2021), and the full layout (train | gap | validation | gap | four
test quarter-ends) needs about four. :func:`time_split` therefore gives way in
a fixed order, keeping the test months longest, since they are the measurement:

1. validation on held-out households of the training months
   (:data:`HELD_OUT_HOUSEHOLDS`) instead of later months: early stopping and
   calibration still see only rows the booster never trained on, but no longer
   a later month;
2. then fewer test quarter-ends, down to one;
3. below that, a refusal that says how many months of data are needed.

The split only shapes the *backtest*, which measures the training procedure.
The model that serves is refit on every labelled month (:func:`training.train.refit_production_model`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from relapse_risk.features.contract import format_month, month_index
from relapse_risk.features.errors import RelapseRiskError

LATER_MONTHS: Final = "later_months"
HELD_OUT_HOUSEHOLDS: Final = "held_out_households"
ValidationKind = Literal["later_months", "held_out_households"]

QUARTER_ALIGNMENT_MONTHS = 2
"""Months a test as-of month may have to wait for the next quarter-end."""


class TrainingDataError(RelapseRiskError, ValueError):
    """The data cannot support an honest training run (too little history, too few positives)."""


@dataclass(frozen=True)
class TimeSplit:
    """As-of months of each split, ascending; ``gap`` holds months given to no split.

    With ``validation_kind == "held_out_households"`` the validation rows are a share of
    the households at the *training* months, and ``validation`` repeats those months.
    """

    horizon: int
    train: tuple[dt.date, ...]
    validation: tuple[dt.date, ...]
    test: tuple[dt.date, ...]
    gap: tuple[dt.date, ...]
    validation_kind: ValidationKind = LATER_MONTHS

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

    def summary(self) -> str:
        """One line for the console: the months of each split and how validation was done."""
        validation = (
            "held-out households of the training months"
            if self.validation_kind == HELD_OUT_HOUSEHOLDS
            else ", ".join(format_month(m) for m in self.validation)
        )
        return (
            "split by time: train "
            + ", ".join(format_month(m) for m in self.train)
            + f" | validation {validation} | test "
            + ", ".join(format_month(m) for m in self.test)
        )


def months_needed(horizon: int, test_months: int, validation_months: int, min_train_months: int) -> int:
    """Fewest quarterly as-of months that admit the full split, counting the quarter-ends lost to gaps."""
    lost_per_gap = math.ceil(horizon / 3) - 1
    return test_months + validation_months + min_train_months + 2 * lost_per_gap


def data_months_needed(horizon: int, min_train_months: int, history_months: int) -> int:
    """Fewest months of data any split can train on: the held-out-household layout with one test month.

    ``history_months`` of records come before the first as-of month; then ``min_train_months``
    training as-of months; their last label window (``horizon``) must end by the test month,
    which may have to wait up to :data:`QUARTER_ALIGNMENT_MONTHS` for a quarter-end; the test
    month's own label window follows.
    """
    return history_months + min_train_months + horizon + QUARTER_ALIGNMENT_MONTHS + horizon


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
    allow_held_out_validation: bool = True,
) -> TimeSplit:
    """Train on the earliest labelled months, validate on later ones, test on the latest.

    ``as_of_months`` are labelled as-of months (t + H <= data_end), in any order.
    Test takes the last ``test_months``; validation the last ``validation_months``
    whose label windows end by the first test month; train every month whose label
    window ends by the first validation month. ``learning_months``, when given, are
    the candidates for train and validation instead of ``as_of_months`` (for example
    every month, while testing stays on quarter-ends).

    When the history is too short, the split gives way as the module docstring says
    (held-out households for validation unless ``allow_held_out_validation`` is false,
    then fewer test months). Raises :class:`TrainingDataError` naming
    what is missing when even one test month leaves fewer than ``min_train_months``.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 month, got {horizon}")
    months = sorted(set(as_of_months))
    learning = sorted(set(learning_months)) if learning_months is not None else months

    def build(tests: int, kind: ValidationKind) -> TimeSplit | None:
        if len(months) < tests:
            return None
        test = months[-tests:]
        if kind == LATER_MONTHS:
            validation = _before(learning, test[0], horizon)[-validation_months:]
            if len(validation) < validation_months:
                return None
            train = _before(learning, validation[0], horizon)
        else:
            train = _before(learning, test[0], horizon)
            validation = train
        if len(train) < min_train_months:
            return None
        assigned = set(train) | set(validation) | set(test)
        gap = [m for m in sorted(set(months) | set(learning)) if m not in assigned and m < test[-1]]
        return TimeSplit(horizon, tuple(train), tuple(validation), tuple(test), tuple(gap), kind)

    kinds: tuple[ValidationKind, ...] = (
        (LATER_MONTHS, HELD_OUT_HOUSEHOLDS) if allow_held_out_validation else (LATER_MONTHS,)
    )
    for tests in range(test_months, 0, -1):
        for kind in kinds:
            split = build(tests, kind)
            if split is not None:
                return split
    span = f"{format_month(months[0])}..{format_month(months[-1])}" if months else "none"
    raise TrainingDataError(
        f"too little history to train honestly: {len(months)} labelled as-of month(s) ({span}); "
        f"with horizon {horizon}, even one test quarter-end needs at least {min_train_months} "
        f"training as-of month(s) whose {horizon}-month label windows end by it"
    )
