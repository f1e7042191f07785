"""The monitoring rules R1-R3 of docs/rules-and-labels.md, vectorised over households.

The county system (and so the generator) decides official identification with
these rules, the oracle labels its re-simulated futures with them, and the
calibration report applies them to a written dataset. All three go through
:func:`evaluate`, which works on window sums, so the three callers cannot
drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codes import NO_RISK, R1_SHORTFALL, R2_RIGID, R3_DROP
from .config import RuleParameters
from .state import EXPENSE_RING, RING, State


@dataclass(frozen=True)
class RuleOutcome:
    triggered: np.ndarray
    """bool: any rule fires."""
    risk: np.ndarray
    """int8 risk type of the first firing rule in the order R2, R3, R1; -1 none."""
    income: np.ndarray
    """I: annualised income; nan where fewer than min_reported_months were reported."""
    income_prev: np.ndarray
    rigid: np.ndarray
    """E: rigid out-of-pocket spending of the last 12 months."""
    per_capita_ratio: np.ndarray
    """I / n / L; nan where I is undefined."""


def evaluate(
    income_sum: np.ndarray,
    reported: np.ndarray,
    prev_income_sum: np.ndarray,
    prev_reported: np.ndarray,
    rigid: np.ndarray,
    size: np.ndarray,
    line: float | np.ndarray,
    rules: RuleParameters,
) -> RuleOutcome:
    """Rules R1-R3 from the sums over this year's window (m-11..m) and last year's (m-23..m-12).

    ``reported`` and ``prev_reported`` count reported months in each window;
    ``size`` is household size (at least 1 is used).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        income = np.where(reported >= rules.min_reported_months, income_sum * 12.0 / reported, np.nan)
        income_prev = np.where(
            prev_reported >= rules.min_reported_months, prev_income_sum * 12.0 / prev_reported, np.nan
        )
    n = np.maximum(size, 1).astype(np.float64)
    per_capita = income / n
    # Comparisons with nan are False: a rule whose quantities are undefined does not fire.
    r1 = per_capita < line
    r2 = (rigid > rules.rigid_expense_ratio * income_prev) & ((income - rigid) / n < line)
    r3 = (income < (1.0 - rules.income_drop_share) * income_prev) & (
        per_capita < rules.income_drop_band * line
    )
    risk = np.full(income.shape, NO_RISK, dtype=np.int8)
    risk[r1] = R1_SHORTFALL
    risk[r3] = R3_DROP
    risk[r2] = R2_RIGID
    return RuleOutcome(
        triggered=r1 | r2 | r3,
        risk=risk,
        income=income,
        income_prev=income_prev,
        rigid=rigid,
        per_capita_ratio=per_capita / line,
    )


def ring_rows(month: int, first_visible: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the income ring in this year's window (m-11..m) and last year's, and of the expense ring.

    Months before ``first_visible`` are left out, as not reported and without
    expenses: the dataset holds nothing before its ``data_start``.
    """

    def visible(months: range) -> list[int]:
        return [m for m in months if first_visible is None or m >= first_visible]

    this_year = [m % RING for m in visible(range(month - 11, month + 1))]
    last_year = [m % RING for m in visible(range(month - 23, month - 11))]
    expenses = [m % EXPENSE_RING for m in visible(range(month - 11, month + 1))]
    return tuple(np.array(rows, dtype=np.intp) for rows in (this_year, last_year, expenses))  # type: ignore[return-value]


def evaluate_state(
    state: State,
    month: int,
    size: np.ndarray,
    line: float,
    rules: RuleParameters,
    first_visible: int | None = None,
) -> RuleOutcome:
    """Rules at ``month`` from the state's rings (which must already hold ``month``)."""
    this_year, last_year, expenses = ring_rows(month, first_visible)
    # Plain sums over ring rows: a matrix product would hand this to a multi-threaded BLAS for no gain.
    return evaluate(
        state.income_ring[this_year].sum(axis=0),
        state.reported_ring[this_year].sum(axis=0),
        state.income_ring[last_year].sum(axis=0),
        state.reported_ring[last_year].sum(axis=0),
        state.rigid_ring[expenses].sum(axis=0),
        size,
        line,
        rules,
    )


def trailing_sums(monthly: np.ndarray, width: int = 12) -> np.ndarray:
    """Sum over the last ``width`` months (this one included) for every month; (N, T) -> (N, T)."""
    cumulative = np.cumsum(monthly, axis=1, dtype=np.float64)
    out = cumulative.copy()
    out[:, width:] -= cumulative[:, :-width]
    return out


def evaluate_panel(
    income: np.ndarray,
    reported: np.ndarray,
    rigid: np.ndarray,
    size: np.ndarray,
    lines: np.ndarray,
    rules: RuleParameters,
) -> tuple[np.ndarray, np.ndarray]:
    """Rules for every household and month of a dataset: (triggered, risk), both (N, T).

    ``income``, ``reported`` (0/1), ``rigid`` and ``size`` are (N, T) panels of
    the dataset's months (month 0 = data_start); ``lines`` is (T,). Nothing
    before month 0 exists, as in the dataset itself.
    """
    this_income = trailing_sums(income)
    this_reported = trailing_sums(reported)
    this_rigid = trailing_sums(rigid)
    prev_income = np.zeros_like(this_income)
    prev_reported = np.zeros_like(this_reported)
    prev_income[:, 12:] = this_income[:, :-12]
    prev_reported[:, 12:] = this_reported[:, :-12]
    outcome = evaluate(
        this_income, this_reported, prev_income, prev_reported, this_rigid, size, lines[None, :], rules
    )
    return outcome.triggered, outcome.risk
