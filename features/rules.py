"""The monitoring rules of docs/rules-and-labels.md, vectorised over every household and month.

Two steps, both stable interfaces for the rest of the project:

``build_panel(dataset, through)``
    Dense household x month arrays (household size, reported months, income,
    rigid expenditure, monitoring status) aggregated in DuckDB and scattered
    into numpy. Column 0 is ``policy.data_start`` (with ``months``, the first
    of the last months); the last column is ``through`` (default
    ``policy.data_end``). Rows dated after ``through`` are never read.

``rule_state(panel, policy)``
    The quantities of docs/rules-and-labels.md (r, I, E, I_prev, L), the three rules, their
    priority, eligibility and the rule-baseline margin, for every household and
    month of the panel.

Point in time: every array at column m is a function of rows dated in or
before month m only. The panel scatters each row into the month of its own
date, member and monitoring spans only ever add to months at or after their
start, and every window of :func:`rule_state` looks backwards (m-11 .. m,
m-12). So column t of a panel built through ``data_end`` equals column t of a
panel built through t; the labels below rely on this to read the present at t
and the future after t from one panel. tests/test_rules.py checks it on
hand-made and on random datasets.

Labels (docs/rules-and-labels.md): y(h, t) = 1 when any rule fires in t+1 .. t+H, defined only
for households eligible at t and when t+H <= data_end.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from .contract import (
    EXPENSE_CATEGORIES,
    INCOME_SOURCES,
    RIGID_EXPENSE_CATEGORIES,
    RISK_TYPES,
    format_month,
    month_index,
    month_start,
)
from .dataset import Dataset
from .expense_sums import RigidExpenseSums
from .income_sources import IncomeSourceSums
from .policy import Policy, RuleParameters

RISK_TYPE_NAMES: tuple[str, ...] = RISK_TYPES
"""Names of the ``risk_type`` codes of :class:`RuleState`: code i is ``RISK_TYPE_NAMES[i]``."""
NO_RISK = -1
"""``risk_type`` code of a household-month where no rule fires."""
INCOME_SHORTFALL = RISK_TYPE_NAMES.index("income_shortfall")
"""Code of rule R1."""
RIGID_EXPENDITURE = RISK_TYPE_NAMES.index("rigid_expenditure")
"""Code of rule R2."""
INCOME_DROP = RISK_TYPE_NAMES.index("income_drop")
"""Code of rule R3."""

WINDOW_MONTHS = 12
"""Length of the trailing windows m-11 .. m of docs/rules-and-labels.md."""
STATE_MONTHS = 2 * WINDOW_MONTHS
"""Months of a panel that the rule state at its last month reads, that month included: the rules
compare I(t), which sums t-11 .. t, with I(t-12), which sums t-23 .. t-12."""

LABEL_COLUMNS: tuple[str, ...] = (
    "household_id",
    "as_of",
    "eligible",
    "under_monitoring",
    "triggered_now",
    "triggered_rule",
    "margin",
    "label",
    "lead_time_months",
    "first_rule",
)
"""Columns of :func:`labels_frame` and :func:`labels_for_months`, in order."""


@dataclass(frozen=True, eq=False)
class MonthlyPanel:
    """Household x month facts the rules need; rows follow ``household_ids``.

    All arrays have shape (households, months) except ``household_ids``.
    """

    household_ids: np.ndarray
    """Household ids of the households table, sorted ascending (object array of str)."""
    first_month: dt.date
    """Month of column 0: ``policy.data_start``, or later for a panel of the last months only."""
    size: np.ndarray
    """n(m): members with joined_month null or <= m and left_month null or > m, at least 1 (int16)."""
    reported: np.ndarray
    """True where the household has any income row in the month (bool)."""
    income: np.ndarray
    """Sum of income amounts in the month, yuan; 0.0 where not reported (float64).

    Amounts are added in whole fen (0.01 yuan), exactly, so totals do not depend
    on row order; a part of a fen in an amount is rounded away."""
    rigid_expense: np.ndarray
    """Out-of-pocket (amount - reimbursed) of rigid bills (medical, education, disaster, accident,
    funeral) dated in the month, yuan (float64), added in whole fen like ``income``."""
    under_monitoring: np.ndarray
    """A monitoring row has identified_month <= m and eliminated_month null or > m (bool)."""
    income_sources: IncomeSourceSums | None = None
    """For the features, not the rules: each household's income per source over the look-back
    windows before the last month, gathered by the panel's own pass over income when
    :func:`build_panel` is asked for it (None otherwise, or when an amount was too large for
    exact sums of squares)."""
    rigid_expenses: RigidExpenseSums | None = None
    """For the features, likewise: rigid out-of-pocket spending per group and window, and the
    year's medical bills, gathered by the panel's pass over rigid bills (None unless asked for)."""
    earlier_report: np.ndarray | None = None
    """For a panel that starts after data_start: for each household with no income row in the
    panel, the months from its first column back to the household's latest income row before it
    (1 = the month just before); NaN for the others and where there is none. None for a panel
    from data_start, which holds every income row up to its last month."""

    @property
    def n_households(self) -> int:
        return len(self.household_ids)

    @property
    def n_months(self) -> int:
        return int(self.size.shape[1])

    @property
    def last_month(self) -> dt.date:
        return month_start(month_index(self.first_month) + self.n_months - 1)

    @property
    def months(self) -> list[dt.date]:
        first = month_index(self.first_month)
        return [month_start(first + i) for i in range(self.n_months)]

    def column(self, month: dt.date) -> int:
        """Position of ``month`` on the month axis; ValueError when outside the panel."""
        return _column(self.first_month, self.n_months, month)

    def months_since_report(self) -> np.ndarray:
        """Months from the last column back to each household's latest income row up to it
        (0: in the last month), also when that row is before the panel; NaN where there is none."""
        within = self.reported.any(axis=1)
        since = np.argmax(self.reported[:, ::-1], axis=1).astype(np.float64)  # the newest first
        before = np.nan if self.earlier_report is None else self.n_months - 1 + self.earlier_report
        return np.where(within, since, before)


@dataclass(frozen=True, eq=False)
class RuleState:
    """docs/rules-and-labels.md's quantities and rules at every household and month of a panel.

    Arrays have shape (households, months) except ``L`` (months,). Undefined
    quantities are NaN, and a rule whose quantities are undefined does not fire.
    Names follow docs/rules-and-labels.md so the code can be read against it.
    """

    household_ids: np.ndarray
    first_month: dt.date
    r: np.ndarray
    """Reported months among m-11 .. m that lie inside the panel (int8)."""
    I: np.ndarray  # noqa: E741 - docs/rules-and-labels.md's name for annualised income
    """Annualised income: sum of income over m-11 .. m x 12 / r; NaN when r < min_reported_months."""
    E: np.ndarray
    """Rigid expenditure over m-11 .. m, yuan."""
    I_prev: np.ndarray
    """I(m-12); NaN when m-12 is before the panel or I(m-12) is undefined."""
    L: np.ndarray
    """Monitoring line of the calendar year of each month, yuan per person per year (months,)."""
    R1: np.ndarray
    """income_shortfall: I / n < L."""
    R2: np.ndarray
    """rigid_expenditure: E > rigid_expense_ratio x I_prev and (I - E) / n < L."""
    R3: np.ndarray
    """income_drop: I < (1 - income_drop_share) x I_prev and I / n < income_drop_band x L."""
    triggered: np.ndarray
    """Any rule fires."""
    risk_type: np.ndarray
    """Code of the reported rule (priority R2, R3, R1) or :data:`NO_RISK` (int8); names in RISK_TYPE_NAMES."""
    margin: np.ndarray
    """Rule-baseline margin min(I / n, (I - E) / n) / L; NaN where I is undefined."""
    under_monitoring: np.ndarray
    """The panel's monitoring status (same array, not a copy)."""
    eligible: np.ndarray
    """Not under monitoring and not triggered: the households docs/rules-and-labels.md ranks and labels."""

    @property
    def n_months(self) -> int:
        return int(self.r.shape[1])

    @property
    def last_month(self) -> dt.date:
        return month_start(month_index(self.first_month) + self.n_months - 1)

    def column(self, month: dt.date) -> int:
        """Position of ``month`` on the month axis; ValueError when outside the state."""
        return _column(self.first_month, self.n_months, month)


def build_panel(
    dataset: Dataset,
    through: dt.date | None = None,
    *,
    months: int | None = None,
    feature_sums: bool = False,
) -> MonthlyPanel:
    """Aggregate the dataset into dense household x month arrays, point in time.

    ``through`` (any day of the month; default ``policy.data_end``) is the last
    month of the panel, and no row dated after it is read: income by ``month``,
    expenses by ``date``, members by joined/left month, monitoring by
    identified/eliminated month. Households are those of the households table,
    sorted by id. Memory is about 20 bytes per household-month (1,000,000 x 48
    is about 1 GB).

    ``months``: only the last ``months`` months through ``through`` (every month
    from data_start when the data holds fewer), and no row dated before them is
    read either. The rule state of such a panel is that of the whole data only
    from its column :data:`STATE_MONTHS` - 1 on (I, E, r and the margin from
    column WINDOW_MONTHS - 1), since earlier windows reach before it; a panel
    of STATE_MONTHS months serves the rule state at ``through`` at two thirds
    of the cost of three years. :meth:`MonthlyPanel.months_since_report` still
    sees income rows before it (:attr:`MonthlyPanel.earlier_report`).

    ``feature_sums``: also sum, from the same rows, each household's income per
    source and rigid spending per group for the features at ``through``
    (:attr:`MonthlyPanel.income_sources`, :attr:`MonthlyPanel.rigid_expenses`),
    so that building features from this panel reads income and bills once.

    Raises ValueError when ``through`` is outside data_start .. data_end.
    """
    policy = dataset.policy
    last = policy.data_end if through is None else through.replace(day=1)
    if not policy.data_start <= last <= policy.data_end:
        raise ValueError(
            f"through={format_month(last)} is outside the data "
            f"({format_month(policy.data_start)} .. {format_month(policy.data_end)})"
        )
    if months is not None and months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    first_index = policy.first_month_index
    if months is not None:
        first_index = max(first_index, month_index(last) - months + 1)
    n_months = month_index(last) - first_index + 1
    household_ids = dataset.sql(
        "SELECT DISTINCT household_id FROM households ORDER BY household_id"
    ).fetchnumpy()["household_id"]
    n_households = len(household_ids)
    window = _Window(first_index=first_index, n_months=n_months, last=last)

    sources = IncomeSourceSums.empty(n_households) if feature_sums else None
    income_fen, reported = _money_by_month(
        dataset,
        window,
        n_households,
        table="income",
        day_column="month",
        fen="round(amount * 100)",
        condition="TRUE",
        also=None if sources is None else _income_source_rows(sources),
    )
    rigid_expenses = RigidExpenseSums.empty(n_households) if feature_sums else None
    rigid_fen = _out_of_pocket_fen(
        dataset,
        window,
        n_households,
        RIGID_EXPENSE_CATEGORIES,
        also=None if rigid_expenses is None else _rigid_expense_rows(rigid_expenses),
    )

    members = _span_counts(dataset, window, n_households, "members", "joined_month", "left_month")
    size = np.maximum(members, 1).astype(np.int16)
    del members
    monitoring = _span_counts(
        dataset, window, n_households, "monitoring", "identified_month", "eliminated_month"
    )
    under_monitoring = monitoring > 0

    earlier_report = None
    if first_index > policy.first_month_index:
        earlier_report = _months_back_to_earlier_report(dataset, window, household_ids, reported)

    return MonthlyPanel(
        household_ids=household_ids,
        first_month=window.first,
        size=size,
        reported=reported,
        income=_yuan(income_fen),
        rigid_expense=_yuan(rigid_fen),
        under_monitoring=under_monitoring,
        income_sources=sources if sources is not None and sources.exact else None,
        rigid_expenses=rigid_expenses,
        earlier_report=earlier_report,
    )


def _months_back_to_earlier_report(
    dataset: Dataset, window: _Window, household_ids: np.ndarray, reported: np.ndarray
) -> np.ndarray:
    """:attr:`MonthlyPanel.earlier_report`: looked up only for the households silent in the window.

    Usually few or none: a semi-join on their ids reads the earlier months without the
    join of every row to its household that the panel's own pass pays.
    """
    months_back = np.full(len(household_ids), np.nan)
    silent = np.flatnonzero(~reported.any(axis=1))
    if not len(silent):
        return months_back
    ids = pa.table({"household_id": pa.array(household_ids[silent], type=pa.string())})
    name = "_households_silent_in_panel"
    dataset.connection.register(name, ids)
    try:
        found = dataset.sql(
            f"""SELECT household_id, {window.first_index} - max(year(month) * 12 + month(month) - 1) AS back
                FROM income
                WHERE month < DATE '{window.first.isoformat()}'
                  AND household_id IN (SELECT household_id FROM {name})
                GROUP BY household_id"""
        ).fetchnumpy()
    finally:
        dataset.connection.unregister(name)
    months_back[silent[pd.Index(household_ids[silent]).get_indexer(found["household_id"])]] = found["back"]
    return months_back


def rule_state(panel: MonthlyPanel, policy: Policy) -> RuleState:
    """Evaluate docs/rules-and-labels.md at every household and month of ``panel``.

    Months before the panel are not read: r(m) counts only panel months, and
    I_prev(m) is NaN for the first twelve columns. For a panel from data_start
    that is the data itself; for one of the last months only, the state equals
    the whole data's from its column STATE_MONTHS - 1 (see :func:`build_panel`).
    The result at column m depends only on panel columns <= m. Memory is about 38 bytes per
    household-month (1,000,000 x 48 is about 1.8 GB).
    """
    line = np.array([policy.line(m.year) for m in panel.months], dtype=np.float64)
    shape = panel.size.shape
    state: dict[str, np.ndarray] = {
        name: np.empty(shape, dtype=dtype) for name, dtype in _STATE_ARRAYS.items()
    }

    def evaluate_block(start: int) -> None:
        rows = slice(start, start + _ROWS_PER_BLOCK)
        block = _evaluate_rules(
            size=panel.size[rows],
            reported=panel.reported[rows],
            income=panel.income[rows],
            rigid_expense=panel.rigid_expense[rows],
            under_monitoring=panel.under_monitoring[rows],
            line=line,
            params=policy.rules,
        )
        for name, values in block.items():
            state[name][rows] = values

    # Blocks of households keep the many temporaries small enough to stay in cache. Each block
    # writes its own rows, and numpy releases the interpreter in its loops, so blocks run on every
    # core with the same result: at 1,000,000 households x 36 months, 3.0 s against 4.7 s on 2 cores.
    on_every_core(evaluate_block, range(0, panel.n_households, _ROWS_PER_BLOCK))
    return RuleState(
        household_ids=panel.household_ids,
        first_month=panel.first_month,
        L=line,
        under_monitoring=panel.under_monitoring,
        **state,
    )


def on_every_core(work: Callable[[int], None], starts: range) -> None:
    """``work(start)`` for every block start, on a thread per core when there are several blocks.

    For numpy work on disjoint rows: numpy releases the interpreter in its loops.
    A block's error is raised here.
    """
    if len(starts) > 1:
        with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, len(starts))) as pool:
            for _ in pool.map(work, starts):
                pass  # draining the results re-raises a block's error here
    else:
        for start in starts:
            work(start)


_STATE_ARRAYS: dict[str, type] = {
    "r": np.int8,
    "I": np.float64,
    "E": np.float64,
    "I_prev": np.float64,
    "R1": np.bool_,
    "R2": np.bool_,
    "R3": np.bool_,
    "triggered": np.bool_,
    "risk_type": np.int8,
    "margin": np.float64,
    "eligible": np.bool_,
}
_ROWS_PER_BLOCK = 8192


def _evaluate_rules(
    *,
    size: np.ndarray,
    reported: np.ndarray,
    income: np.ndarray,
    rigid_expense: np.ndarray,
    under_monitoring: np.ndarray,
    line: np.ndarray,
    params: RuleParameters,
) -> dict[str, np.ndarray]:
    """The rules (docs/rules-and-labels.md) on a block of households: :class:`RuleState` arrays by name."""
    r = _trailing_sum(reported.astype(np.int8), WINDOW_MONTHS)
    income_sum = _trailing_sum(income, WINDOW_MONTHS)
    income_sum *= WINDOW_MONTHS
    annual_income = np.full(income.shape, np.nan)
    np.divide(income_sum, r, out=annual_income, where=r >= params.min_reported_months)
    rigid = _trailing_sum(rigid_expense, WINDOW_MONTHS)
    previous_income = np.full(income.shape, np.nan)
    previous_income[:, WINDOW_MONTHS:] = annual_income[:, :-WINDOW_MONTHS]

    per_capita = annual_income / size
    after_expense_per_capita = (annual_income - rigid) / size
    # Comparisons with NaN are False, so a rule with an undefined quantity does not fire.
    r1 = per_capita < line
    r2 = (rigid > params.rigid_expense_ratio * previous_income) & (after_expense_per_capita < line)
    r3 = (annual_income < (1.0 - params.income_drop_share) * previous_income) & (
        per_capita < params.income_drop_band * line
    )
    triggered = r1 | r2 | r3
    risk_type = np.full(income.shape, NO_RISK, dtype=np.int8)
    # Lowest priority first, so higher-priority rules overwrite: R2 > R3 > R1.
    risk_type[r1] = INCOME_SHORTFALL
    risk_type[r3] = INCOME_DROP
    risk_type[r2] = RIGID_EXPENDITURE
    margin = np.minimum(per_capita, after_expense_per_capita)
    margin /= line
    return {
        "r": r,
        "I": annual_income,
        "E": rigid,
        "I_prev": previous_income,
        "R1": r1,
        "R2": r2,
        "R3": r3,
        "triggered": triggered,
        "risk_type": risk_type,
        "margin": margin,
        "eligible": ~under_monitoring & ~triggered,
    }


def labels_frame(dataset: Dataset, as_of: dt.date, horizon: int = 6) -> pd.DataFrame:
    """Labels and present rule facts of every household at one as-of month.

    One row per household (sorted by id) with the columns of
    :data:`LABEL_COLUMNS`:

    - present at t, from rows dated <= t only: ``eligible``,
      ``under_monitoring``, ``triggered_now``, ``triggered_rule`` (risk_type
      at t or null), ``margin`` (rule-baseline margin, NaN where I(t) is
      undefined);
    - future, t+1 .. t+H: ``label`` (nullable Int8: null when not eligible or
      t+H > data_end), ``lead_time_months`` (first firing month minus t, null
      unless label is 1), ``first_rule`` (risk_type at that first firing).

    Raises ValueError when ``as_of`` is outside the data or ``horizon`` < 1. A
    horizon that runs past data_end is not an error: labels are then null and
    the present columns remain, for audits of eligibility alone.
    """
    return labels_for_months(dataset, [as_of], horizon)


def labels_for_months(dataset: Dataset, as_of_months: Sequence[dt.date], horizon: int = 6) -> pd.DataFrame:
    """:func:`labels_frame` for many as-of months from one panel, stacked in the given order.

    The panel and rule state are built once through data_end; each as-of
    month then reads its present columns at t and its label from t+1 .. t+H
    (see the module docstring for why the present columns cannot see the
    future).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 month, got {horizon}")
    policy = dataset.policy
    months = [m.replace(day=1) for m in as_of_months]
    outside = [format_month(m) for m in months if not policy.data_start <= m <= policy.data_end]
    if outside:
        raise ValueError(
            f"as-of month(s) {', '.join(outside)} outside the data "
            f"({format_month(policy.data_start)} .. {format_month(policy.data_end)})"
        )
    state = rule_state(build_panel(dataset), policy)
    frames = [_labels_at(state, month, horizon) for month in months]
    if not frames:
        return _labels_at(state, policy.data_start, horizon).iloc[0:0]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def label_defined(policy: Policy, as_of: dt.date, horizon: int) -> bool:
    """True when t+H <= data_end, i.e. the labels at ``as_of`` are known."""
    return month_index(as_of) + horizon <= policy.last_month_index


def risk_type_categorical(codes: np.ndarray) -> pd.Categorical:
    """risk_type codes as a pandas Categorical of their names; :data:`NO_RISK` becomes null."""
    # pandas-stubs ask for a Sequence[int] and an Index; pandas takes an ndarray and a list.
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=list(RISK_TYPE_NAMES))  # type: ignore[arg-type]


def _labels_at(state: RuleState, as_of: dt.date, horizon: int) -> pd.DataFrame:
    t = state.column(as_of)
    n = len(state.household_ids)
    eligible = state.eligible[:, t]
    triggered_now = state.triggered[:, t]

    label = np.zeros(n, dtype=np.int8)
    label_missing = np.ones(n, dtype=bool)
    lead = np.zeros(n, dtype=np.int16)
    lead_missing = np.ones(n, dtype=bool)
    first_rule = np.full(n, NO_RISK, dtype=np.int8)
    if t + horizon < state.n_months:
        future = state.triggered[:, t + 1 : t + horizon + 1]
        fires = future.any(axis=1) & eligible
        first_offset = np.argmax(future, axis=1)  # first True; 0 when none, masked by `fires`
        label[fires] = 1
        label_missing = ~eligible
        lead[fires] = first_offset[fires] + 1
        lead_missing = ~fires
        rows = np.flatnonzero(fires)
        first_rule[rows] = state.risk_type[rows, t + 1 + first_offset[rows]]

    return pd.DataFrame(
        {
            "household_id": state.household_ids,
            "as_of": pd.Series(np.full(n, np.datetime64(as_of, "ns"))),
            "eligible": eligible,
            "under_monitoring": state.under_monitoring[:, t],
            "triggered_now": triggered_now,
            "triggered_rule": risk_type_categorical(state.risk_type[:, t]),
            "margin": state.margin[:, t],
            "label": pd.arrays.IntegerArray(label, label_missing),
            "lead_time_months": pd.arrays.IntegerArray(lead, lead_missing),
            "first_rule": risk_type_categorical(first_rule),
        },
        columns=list(LABEL_COLUMNS),
    )


@dataclass(frozen=True)
class _Window:
    first_index: int
    n_months: int
    last: dt.date

    @property
    def first(self) -> dt.date:
        return month_start(self.first_index)

    @property
    def after_last(self) -> dt.date:
        return month_start(month_index(self.last) + 1)

    def relative_month_sql(self, column: str) -> str:
        return f"(year({column}) * 12 + month({column}) - 1 - {self.first_index})"


ROWS_PER_BATCH = 1 << 20
"""Rows streamed from DuckDB into numpy at a time, here and in the feature parts. Each batch only
touches the cells of its rows (np.add.at), so smaller batches cost no extra pass; at 1,000,000
households 2^20 rows a batch were 1-2 s faster than 2^23 for each of the employment and
income-source feature parts (a batch's arrays stay in cache)."""

HOUSEHOLD_POSITIONS_SQL = (
    "SELECT household_id, CAST(row_number() OVER (ORDER BY household_id) - 1 AS BIGINT) AS h "
    "FROM (SELECT DISTINCT household_id FROM households)"
)
"""Each household's row ``h`` in the sorted order of build_panel's household_ids (the same
ORDER BY, so the same collation): the row of the panel's and the features' arrays."""
_HOUSEHOLD_POSITIONS = f"household_position AS ({HOUSEHOLD_POSITIONS_SQL})"


def _money_by_month(
    dataset: Dataset,
    window: _Window,
    n_households: int,
    *,
    table: str,
    day_column: str,
    fen: str,
    condition: str,
    also: _AlsoAdd | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Total per (household, month) of a dated money table in whole fen, and which cells had a row.

    Rows stream from DuckDB in batches and are added with np.add.at: memory stays
    at the two dense arrays, and sums of integers do not depend on the order in
    which DuckDB's threads deliver rows, so a rerun gives identical totals.
    ``also`` is handed the same rows, with the columns it asks for.
    """
    extra = "".join(f", {sql} AS _also{i}" for i, sql in enumerate(also.columns)) if also else ""
    query = f"""
        WITH {_HOUSEHOLD_POSITIONS}
        SELECT household_position.h * {window.n_months} + {window.relative_month_sql(f't."{day_column}"')}
                   AS cell,
               CAST({fen} AS BIGINT) AS fen{extra}
        FROM {table} AS t JOIN household_position USING (household_id)
        WHERE t."{day_column}" >= DATE '{window.first.isoformat()}'
          AND t."{day_column}" < DATE '{window.after_last.isoformat()}'
          AND {condition}
    """
    totals = np.zeros((n_households, window.n_months), dtype=np.int64)
    seen = np.zeros((n_households, window.n_months), dtype=bool)
    flat_totals, flat_seen = totals.reshape(-1), seen.reshape(-1)
    for batch in dataset.sql(query).to_arrow_reader(ROWS_PER_BATCH):
        cells, fen_values = batch.column(0).to_numpy(), batch.column(1).to_numpy()
        np.add.at(flat_totals, cells, fen_values)
        flat_seen[cells] = True
        if also is not None:
            household, month = np.divmod(cells, window.n_months)
            columns = [batch.column(2 + i).to_numpy() for i in range(len(also.columns))]
            also.add(household, window.n_months - 1 - month, fen_values, columns)
    return totals, seen


@dataclass(frozen=True)
class _AlsoAdd:
    """Rows of a pass of :func:`_money_by_month` handed on, with more of their columns.

    ``add(household, months_back, fen, columns)`` gets each batch: household rows, months
    before the panel's last, the pass's own fen, and ``columns`` (SQL over the table ``t``,
    BIGINT) as int64 arrays.
    """

    columns: tuple[str, ...]
    add: Callable[[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]], None]


def _income_source_rows(sums: IncomeSourceSums) -> _AlsoAdd:
    def add(
        household: np.ndarray, months_back: np.ndarray, fen: np.ndarray, columns: list[np.ndarray]
    ) -> None:
        sums.add(household * len(INCOME_SOURCES) + columns[0], months_back, fen)

    return _AlsoAdd((f"CAST(list_position({list(INCOME_SOURCES)}, t.source) - 1 AS BIGINT)",), add)


def _rigid_expense_rows(sums: RigidExpenseSums) -> _AlsoAdd:
    def add(
        household: np.ndarray, months_back: np.ndarray, fen: np.ndarray, columns: list[np.ndarray]
    ) -> None:
        category, amount, reimbursed = columns
        sums.add(household, months_back, category, fen, amount, reimbursed)

    return _AlsoAdd(
        (
            f"CAST(list_position({list(EXPENSE_CATEGORIES)}, t.category) - 1 AS BIGINT)",
            "CAST(round(t.amount * 100) AS BIGINT)",
            "CAST(round(t.reimbursed * 100) AS BIGINT)",
        ),
        add,
    )


def _yuan(fen: np.ndarray) -> np.ndarray:
    yuan = fen.astype(np.float64)
    yuan /= 100.0
    return yuan


def _span_counts(
    dataset: Dataset, window: _Window, n_households: int, table: str, start_column: str, end_column: str
) -> np.ndarray:
    """Rows whose span [start, end) covers each household-month; a null start is "before the data",
    a null end "still open". Counted with +1/-1 steps and a cumulative sum so it stays linear in rows."""
    width = window.n_months + 1
    start = window.relative_month_sql(f't."{start_column}"')
    end = window.relative_month_sql(f't."{end_column}"')
    query = f"""
        WITH {_HOUSEHOLD_POSITIONS},
        spans AS (
            SELECT household_position.h AS h,
                   greatest(coalesce({start}, 0), 0) AS s,
                   least(coalesce({end}, {window.n_months}), {window.n_months}) AS e
            FROM {table} AS t JOIN household_position USING (household_id)
        ),
        covering AS (SELECT h, s, e FROM spans WHERE s < e)
        SELECT cell, CAST(sum(step) AS INTEGER) AS step FROM (
            SELECT h * {width} + s AS cell, 1 AS step FROM covering
            UNION ALL
            SELECT h * {width} + e AS cell, -1 AS step FROM covering
        ) GROUP BY cell
    """
    result = dataset.sql(query).fetchnumpy()
    steps = np.zeros((n_households, width), dtype=np.int32)
    steps.reshape(-1)[np.asarray(result["cell"], dtype=np.int64)] = result["step"]
    return np.cumsum(steps, axis=1, dtype=np.int32)[:, : window.n_months]


def _trailing_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sum over columns m-window+1 .. m (those inside the array), same dtype as ``values``.

    Added lag by lag rather than by cumulative sums, so each cell is the plain
    sum of its own window: no rounding carried over from earlier months, and a
    column's value does not depend on how long the panel is.
    """
    total = values.copy()
    for lag in range(1, min(window, values.shape[1])):
        total[:, lag:] += values[:, :-lag]
    return total


def _column(first_month: dt.date, n_months: int, month: dt.date) -> int:
    position = month_index(month) - month_index(first_month)
    if not 0 <= position < n_months:
        last = month_start(month_index(first_month) + n_months - 1)
        raise ValueError(
            f"{format_month(month)} is outside the months {format_month(first_month)} .. {format_month(last)}"
        )
    return position


def out_of_pocket_by_month(dataset: Dataset, categories: Sequence[str]) -> np.ndarray:
    """Out-of-pocket (amount - reimbursed) of the bills of ``categories`` per household and month
    of :func:`build_panel`'s axes (households sorted by id, data_start .. data_end), yuan."""
    policy = dataset.policy
    window = _Window(
        first_index=policy.first_month_index,
        n_months=policy.last_month_index - policy.first_month_index + 1,
        last=policy.data_end,
    )
    counted = dataset.sql("SELECT count(DISTINCT household_id) AS n FROM households").fetchnumpy()["n"]
    return _yuan(_out_of_pocket_fen(dataset, window, int(counted[0]), categories))


def _out_of_pocket_fen(
    dataset: Dataset,
    window: _Window,
    n_households: int,
    categories: Sequence[str],
    also: _AlsoAdd | None = None,
) -> np.ndarray:
    listed = ", ".join("'" + category.replace("'", "''") + "'" for category in categories) or "NULL"
    fen, _ = _money_by_month(
        dataset,
        window,
        n_households,
        table="expenses",
        day_column="date",
        fen="round((amount - reimbursed) * 100)",
        condition=f"category IN ({listed})",
        also=also,
    )
    return fen
