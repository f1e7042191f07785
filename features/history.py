"""Point-in-time household features: one row per household at an as-of month t.

:func:`build_features` reads a :class:`~.dataset.Dataset` and returns the
columns of :data:`~.catalogue.FEATURE_CATALOGUE`, computed only from rows dated
up to the end of month t:

- monthly tables (income, employment, loan_status) by ``month`` <= t;
- bills and events by ``date`` <= the last day of t;
- members count from ``joined_month`` <= t and stop at ``left_month`` <= t;
- a loan exists from its ``issued_month``; assistance from its ``start_month``,
  and an ``end_month`` after t reads as "still running at t"; monitoring rows
  count from ``identified_month``, and an ``eliminated_month`` after t reads as
  "not eliminated yet" (what the county knew at t).

Each table is aggregated in one DuckDB pass grouped by household (income and
events by household and source or kind, spread into columns with numpy), with
``FILTER`` clauses for the windows (k = months before t, 0 = the as-of month),
so a million households stay in SQL. The passes run on all of the connection's
threads and still give bit-identical features run after run: money is summed
as whole fen in integers (exact in any order), and every other aggregate is a
count, a minimum or maximum, or an ``arg_max`` whose ordering key determines
its value. Total income and the rule quantities (I,
E, n, margin) come from the panel of :mod:`.rules`, so they mean exactly what
the monitoring rules mean. Finished features go straight into one float32
block; only the final table is a pandas frame.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from .catalogue import (
    EDUCATION_CODES,
    FEATURE_NAMES,
    HISTORY_MONTHS,
    RISK_TYPE_CODES,
    SHOCK_KINDS,
    TERRAIN_CODES,
    VILLAGE_SHOCK_KINDS,
    WINDOWS,
)
from .contract import (
    ASSISTANCE_MEASURES,
    EMPLOYED_STATUSES,
    EMPLOYMENT_STATUSES,
    EVENT_KINDS,
    EXPENSE_CATEGORIES,
    INCOME_SOURCES,
    format_month,
    month_index,
    month_start,
)
from .dataset import Dataset
from .errors import MonthOutsideDataError
from .expense_sums import RigidExpenseSums
from .income_sources import IncomeSourceSums
from .policy import Policy, RuleParameters
from .rules import (
    HOUSEHOLD_POSITIONS_SQL,
    ROWS_PER_BATCH,
    STATE_MONTHS,
    WINDOW_MONTHS,
    MonthlyPanel,
    RuleState,
    build_panel,
    on_every_core,
    rule_state,
)
from .stages import StageTimes

_log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]

WORKING_AGE = (16, 64)
ELDER_AGE = 65
SCHOOL_AGE = (6, 22)
LOCAL_WORK_STATUSES = ("local_wage", "public_welfare_post", "self_employed")
WAGE_STATUSES = ("migrant", "local_wage", "public_welfare_post")
"""Work paid as wages (local or migrant); self-employment earns business income."""
WAGE_SOURCES = ("wage_local", "wage_migrant")
TRANSFER_SOURCES = ("transfer_dibao", "transfer_pension", "transfer_subsidy", "transfer_other")
LOAN_DUE_SOON_MONTHS = 6
LOAN_DUE_VERY_SOON_MONTHS = 3
PROJECTION_MONTHS = 6
SEASONAL_GROWTH_CAP = 3.0
"""Last year's months are scaled by at most this much: a tiny base year must not explode the projection."""


@dataclass(frozen=True)
class Clock:
    """The as-of month and the SQL fragments that place rows relative to it."""

    as_of: dt.date
    first_index: int
    """Month index of policy.data_start: months before it are not in the records."""
    households: int
    """Distinct households of the households table: the rows of every feature column."""

    @property
    def t(self) -> int:
        return month_index(self.as_of)

    @property
    def months_on_record(self) -> int:
        return self.t - self.first_index + 1

    def on_record(self, k: int) -> bool:
        """Whether the month k months before t lies inside the records."""
        return self.t - k >= self.first_index

    def month_of(self, column: str) -> str:
        return f"(year({column}) * 12 + month({column}) - 1)"

    def months_before(self, column: str) -> str:
        """k: how many months before t the row's month or date falls (0 = the as-of month)."""
        return f"({self.t} - {self.month_of(column)})"

    def upto(self, column: str) -> str:
        """The row is dated in or before the as-of month."""
        return f"{column} < DATE '{month_start(self.t + 1).isoformat()}'"

    def since(self, column: str, k: int) -> str:
        """The row is dated in or after the month k months before t."""
        return f"{column} >= DATE '{month_start(self.t - k).isoformat()}'"


def build_features(
    dataset: Dataset,
    as_of: dt.date,
    timings: dict[str, float] | None = None,
    *,
    panel: MonthlyPanel | None = None,
    state: RuleState | None = None,
) -> pd.DataFrame:
    """Feature table of every household at ``as_of`` (any day of the month).

    One row per household of the households table, sorted by household_id,
    with the column ``household_id`` followed by :data:`~.catalogue.FEATURE_NAMES`
    as float32 (NaN where a value cannot be known at ``as_of``). Raises
    ValueError when ``as_of`` lies outside data_start .. data_end.

    ``timings``, when given, receives the seconds spent in each stage (for benchmarks);
    the same stages are logged at DEBUG, below the level the command line shows.

    ``panel`` (:func:`features_panel`, or any ``build_panel(dataset,
    through=as_of)`` of at least :data:`PANEL_MONTHS` months) and ``state`` (its
    ``rule_state``), when the caller already built them, are used instead of
    building them again; a panel built with ``feature_sums=True`` also spares
    the features their own passes over income and rigid bills.
    """
    policy = dataset.policy
    as_of = as_of.replace(day=1)
    if not policy.data_start <= as_of <= policy.data_end:
        raise MonthOutsideDataError(
            f"as_of {format_month(as_of)} is outside the data "
            f"({format_month(policy.data_start)} .. {format_month(policy.data_end)})"
        )

    stopwatch = StageTimes(_log, level=logging.DEBUG)
    if panel is None:
        panel = features_panel(dataset, as_of)
    elif panel.last_month != as_of:
        raise ValueError(
            f"the panel given ends at {format_month(panel.last_month)}, not at {format_month(as_of)}"
        )
    elif panel.first_month > policy.data_start and panel.n_months < PANEL_MONTHS:
        raise ValueError(
            f"the panel given starts at {format_month(panel.first_month)}: the features need "
            f"{PANEL_MONTHS} months of it, or all since data_start"
        )
    if state is None:
        state = rule_state(panel, policy)
    inputs = PanelInputs.of(panel, state)
    # Parts whose sums the panel's own passes gathered (None where it did not).
    gathered: dict[object, IncomeSourceSums | RigidExpenseSums | None] = {
        _income_source_part: panel.income_sources,
        _expense_part: panel.rigid_expenses,
    }
    # The panel and rule state are the largest arrays here: let them go before the SQL passes.
    del panel, state
    stopwatch.lap("rules panel and state")

    def sql_parts(clock: Clock) -> Iterator[tuple[str, Columns]]:
        for part in _SQL_PARTS:
            stage = part.__name__.strip("_").replace("_part", "").replace("_", " ")
            sums = gathered.get(part)
            if sums is not None:
                yield f"{stage} (rules panel)", sums.columns()
            else:
                yield f"{stage} (SQL)", part(dataset, clock)

    frame = features_from_parts(inputs, policy, sql_parts, stopwatch)
    if timings is not None:
        for stage, seconds in stopwatch.wall.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    return frame


PANEL_MONTHS = max(HISTORY_MONTHS, STATE_MONTHS)
"""Months of the rules panel the features at t read, t included: their look-back and the rule state at t."""


def features_panel(dataset: Dataset, as_of: dt.date) -> MonthlyPanel:
    """The rules panel through ``as_of`` that :func:`build_features` and the rule state at ``as_of`` need.

    Its last :data:`PANEL_MONTHS` months only: nothing the features or the rules
    at ``as_of`` read lies earlier, and a county with three years of data then
    reads a third fewer income rows. With the per-source sums of the features.
    """
    return build_panel(dataset, through=as_of, months=PANEL_MONTHS, feature_sums=True)


PartSource = Callable[["Clock"], Iterator[tuple[str, Columns]]]
"""Yields (stage name, columns) for every table part of :func:`build_features` at a clock.

The parts are the per-table aggregates (household, member, income source,
employment, expense, event, loan, assistance, monitoring); everything else
(the rule quantities, income history, projections and derived features) is
computed from them and the rules panel by :func:`features_from_parts`.
"""


@dataclass(frozen=True, eq=False)
class PanelInputs:
    """What the features take from the rules panel and its state at the as-of month (the last column)."""

    household_ids: np.ndarray
    as_of: dt.date
    rules: Columns
    history: _IncomeHistory

    @classmethod
    def of(cls, panel: MonthlyPanel, state: RuleState) -> PanelInputs:
        n = panel.n_households
        last = panel.n_months - 1
        rules = {
            "n": panel.size[:, last].astype(np.float64),
            # I(t+h-12), last year's income as the rules will see it h = 1 .. 6 months ahead
            **{
                f"I_prev_in_{h}m": state.I[:, last - 12 + h] if last >= 12 - h else np.full(n, np.nan)
                for h in range(1, PROJECTION_MONTHS + 1)
            },
            "I": state.I[:, last],
            "E": state.E[:, last],
            "I_prev": state.I_prev[:, last],
            "L": np.full(n, state.L[last]),
            "margin": state.margin[:, last],
            "margin_3m_ago": state.margin[:, last - 3] if last >= 3 else np.full(n, np.nan),
            "margin_12m_ago": state.margin[:, last - 12] if last >= 12 else np.full(n, np.nan),
            "triggered": state.triggered[:, last].astype(np.float64),
        }
        return cls(panel.household_ids, panel.last_month, rules, _IncomeHistory.from_panel(panel))


def features_from_parts(
    inputs: PanelInputs, policy: Policy, parts: PartSource, stopwatch: StageTimes | None = None
) -> pd.DataFrame:
    """The feature table at the as-of month from the rules panel's inputs and the table parts.

    The one home of every feature computed from those: :func:`build_features`
    feeds it DuckDB parts, and :mod:`.household_rows` numpy parts of a few households.
    """
    stopwatch = stopwatch or StageTimes()
    household_ids, rules, history = inputs.household_ids, inputs.rules, inputs.history
    n = len(household_ids)
    clock = Clock(as_of=inputs.as_of, first_index=policy.first_month_index, households=n)
    table = _FeatureTable(n)
    for stage, columns in parts(clock):
        table.add(columns, stage)
        stopwatch.lap(stage)

    sums = table.take_extras(_is_source_sum)
    work = {name: table[name] for name in ("_wage_work_months_12m", "_wage_workers_now")}
    _add_income_history_features(table, history, rules, sums, work, policy.rules)
    del history
    table.add(_derived(table, rules, clock))
    frame = table.frame(household_ids)
    stopwatch.lap("derived features and assembly")
    return frame


def _income_history_features(
    history: _IncomeHistory, rules: Columns, sums: Columns, work: Columns, params: RuleParameters
) -> Columns:
    """Every feature of the income history: totals, sources, projections and breaks (``work``: the
    employment part's wage-work counts)."""
    out = _income_total_features(history)
    out.update(_income_source_features(history, sums))
    wages = {**work, "_wage_3m": out["_wage_3m"], "_wage_12m": out["_wage_12m"]}
    out.update(_projected_rule_features(history, rules, params, wages))
    out.update(_income_break_features(history, rules))
    return out


_HOUSEHOLDS_PER_BLOCK = 16384
"""At 1,000,000 households on 2 cores these features took 3.5-3.6 s in blocks of 16,384, 3.6-3.9 s
in blocks of 4,096 and 4.7-5.1 s in blocks of 65,536; 6-7 s on the whole columns in one thread."""


def _add_income_history_features(
    table: _FeatureTable,
    history: _IncomeHistory,
    rules: Columns,
    sums: Columns,
    work: Columns,
    params: RuleParameters,
) -> None:
    """Add :func:`_income_history_features` of every household to ``table``, computed block of
    households by block on every core.

    Each of these features is a function of its own household's row, so a block
    gives the values the whole table would, bit for bit. Blocks keep the many
    temporaries in cache, and numpy releases the interpreter in its loops, as in
    :func:`~.rules.rule_state`; each block writes its own rows of the table.
    """

    def of_block(start: int) -> Columns:
        rows = slice(start, start + _HOUSEHOLDS_PER_BLOCK)
        return _income_history_features(
            history.rows(rows), _rows(rules, rows), _rows(sums, rows), _rows(work, rows), params
        )

    def fill(start: int) -> None:
        table.add_rows(of_block(start), start)

    first = of_block(0)  # also gives the names and types of the columns
    table.reserve(first)
    table.add_rows(first, 0)
    on_every_core(fill, range(_HOUSEHOLDS_PER_BLOCK, table.households, _HOUSEHOLDS_PER_BLOCK))


def _rows(columns: Columns, rows: slice) -> Columns:
    return {name: values[rows] for name, values in columns.items()}


_FEATURE_POSITION = {name: i for i, name in enumerate(FEATURE_NAMES)}


class _FeatureTable:
    """The float32 feature matrix, filled column by column as the passes finish.

    Writing each finished column straight into one preallocated block keeps
    peak memory at one float32 table instead of a float64 copy of every column
    plus the table built from them. Intermediate columns that are not features
    (their names start with ``_`` or name an income sum) wait in ``extras``.
    """

    def __init__(self, households: int) -> None:
        self.households = households
        self.values = np.empty((len(FEATURE_NAMES), households), dtype=np.float32)
        self.filled = np.zeros(len(FEATURE_NAMES), dtype=bool)
        self.extras: Columns = {}

    def add(self, columns: Columns, stage: str = "derived") -> None:
        for name, values in columns.items():
            if len(values) != self.households:
                raise ValueError(
                    f"households: {len(values)} rows in the {stage} features for "
                    f"{self.households} distinct household ids; household_id must be unique"
                )
            position = _FEATURE_POSITION.get(name)
            if position is None:
                self.extras[name] = values
            else:
                self.values[position] = values
                self.filled[position] = True

    def reserve(self, columns: Columns) -> None:
        """Make room for columns like ``columns`` (name and type), to be filled by :meth:`add_rows`."""
        for name, values in columns.items():
            if name not in _FEATURE_POSITION:
                self.extras[name] = np.empty(self.households, dtype=values.dtype)

    def add_rows(self, columns: Columns, start: int) -> None:
        """Write ``columns`` (reserved first) into the rows from ``start`` on; disjoint rows may be
        written from several threads at once."""
        for name, values in columns.items():
            rows = slice(start, start + len(values))
            position = _FEATURE_POSITION.get(name)
            if position is None:
                self.extras[name][rows] = values
            else:
                self.values[position, rows] = values
                self.filled[position] = True

    def __getitem__(self, name: str) -> np.ndarray:
        """A feature (as float64) or an intermediate column."""
        if name in self.extras:
            return self.extras[name]
        feature: np.ndarray = self.values[_FEATURE_POSITION[name]].astype(np.float64)
        return feature

    def take_extras(self, wanted: Callable[[str], bool]) -> Columns:
        return {name: self.extras.pop(name) for name in [n for n in self.extras if wanted(n)]}

    def frame(self, household_ids: np.ndarray) -> pd.DataFrame:
        missing = [name for name, done in zip(FEATURE_NAMES, self.filled, strict=True) if not done]
        if missing:  # a programming error: the catalogue promises a column nobody computed
            raise RuntimeError(f"features not computed: {', '.join(missing)}")
        frame = pd.DataFrame(self.values.T, columns=list(FEATURE_NAMES), copy=False)
        frame.insert(0, "household_id", household_ids)
        return frame


# -- derived columns (numpy, on whole columns) --------------------------------------------------


def _sum_of(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """Elementwise sum of one or more arrays (sum() types its start, 0, into the result)."""
    return cast(np.ndarray, sum(arrays))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator where the denominator is known and positive, else NaN.

    A share of nothing or of a loss is undefined, not 0 and not infinite.
    """
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)  # NaN > 0 is False
    return out


def _village_share(village: np.ndarray, flag: np.ndarray, households: np.ndarray) -> np.ndarray:
    share: np.ndarray = (np.bincount(village, weights=flag, minlength=len(households)) / households)[village]
    return share


def _derived(table: _FeatureTable, rules: Columns, clock: Clock) -> Columns:
    """Features that combine tables or use the rule quantities of docs/rules-and-labels.md at t."""
    n, income, expense, line = rules["n"], rules["I"], rules["E"], rules["L"]
    margin = rules["margin"]
    margin_change_3m = margin - rules["margin_3m_ago"]
    working_age = table["n_working_age"]
    employment_months = table["employment_months_12m"]
    out: Columns = {
        "income_per_capita_12m": income / n,
        "income_line_ratio": income / n / line,
        "rigid_margin_ratio": (income - expense) / n / line,
        "rule_margin": margin,
        "rule_margin_change_3m": margin_change_3m,
        "rule_margin_change_12m": margin - rules["margin_12m_ago"],
        # Linear continuation of the last quarter's change: the margin moves by
        # the same amount every 3 months for the next 6.
        "projected_margin_6m": margin + margin_change_3m * (PROJECTION_MONTHS / 3),
        "run_rate_margin": (12.0 * table["income_total_mean_3m"] - expense) / n / line,
        "income_to_prev_income": _ratio(income, rules["I_prev"]),
        "rigid_expense_to_prev_income": _ratio(expense, rules["I_prev"]),
        "medical_oop_to_income_12m": _ratio(table["medical_oop_12m"], income),
        "education_oop_to_income_12m": _ratio(table["education_oop_12m"], income),
        "loan_balance_to_income": _ratio(table["loan_balance_total"], income),
        "employment_rate_12m": _ratio(employment_months, table["_records_12m"]),
        "employment_months_per_member_12m": _ratio(employment_months, working_age),
        "employment_missing_now": np.maximum(working_age - table["_working_age_reported_now"], 0.0),
        "dependency_ratio": _ratio(table["n_children"] + table["n_elders"], working_age),
        "land_per_capita": _ratio(table["cultivated_land_mu"], table["household_size"]),
        # rows dated before data_start are not records: never count them as more than "all reported"
        "income_missing_months_12m": np.maximum(
            min(12, clock.months_on_record) - table["income_reported_months_12m"], 0.0
        ),
        "migrants_change_12m": table["migrants_now"] - table["migrants_year_ago"],
    }
    rate_prev = _ratio(table["_employed_prev_12m"], table["_records_prev_12m"])
    out["employment_rate_change_12m"] = out["employment_rate_12m"] - rate_prev
    out["loan_due_6m_to_income"] = _ratio(table["loan_balance_due_6m"], income)

    village = table["_village_index"].astype(np.int64)
    households = np.bincount(village).astype(np.float64)
    out["village_households"] = households[village]
    for kind in (*VILLAGE_SHOCK_KINDS, "any_shock"):
        for w in (3, 12):
            flag = table[f"_hit_{kind}_{w}m"]
            out[f"village_share_{kind}_{w}m"] = _village_share(village, flag, households)
    out["village_share_under_monitoring"] = _village_share(village, table["under_monitoring_now"], households)
    out["village_share_triggered"] = _village_share(village, rules["triggered"], households)
    return out


# -- one DuckDB pass per table ------------------------------------------------------------------


def _fetch(dataset: Dataset, aggregate: str, select: str) -> Columns:
    """Run ``aggregate`` (a query with one row per household_id) left-joined onto every household.

    ``select`` lists the output expressions over the aggregate's columns; the
    result follows build_panel's household order (ORDER BY household_id).
    """
    query = f"""
        WITH agg AS ({aggregate})
        SELECT {select}
        FROM (SELECT DISTINCT household_id FROM households) AS h
        LEFT JOIN agg USING (household_id)
        ORDER BY h.household_id
    """
    result = dataset.sql(query).fetchnumpy()
    return {name: _as_float(values) for name, values in result.items()}


def _as_float(values: np.ndarray) -> np.ndarray:
    if isinstance(values, np.ma.MaskedArray):
        return np.ma.filled(values.astype(np.float64), np.nan)
    return np.asarray(values, dtype=np.float64)


def _zero(column: str) -> str:
    """A count or amount where "no rows" is a real zero."""
    return f'coalesce("{column}", 0) AS "{column}"'


def _keep(column: str) -> str:
    return f'"{column}"'


def _code_case(column: str, codes: dict[str, int]) -> str:
    whens = " ".join(f"WHEN '{value}' THEN {code}" for value, code in codes.items())
    return f"CASE {column} {whens} END"


def _household_part(dataset: Dataset, clock: Clock) -> Columns:
    year = clock.as_of.year
    query = f"""
        SELECT
            CAST(registered_poor AS DOUBLE) AS registered_poor,
            -- an escape declared after t was not known at t
            CASE WHEN escape_year <= {year} THEN {year} - escape_year END AS years_since_escape,
            CAST(relocated AS DOUBLE) AS relocated,
            CAST(housing_safe AS DOUBLE) AS housing_safe,
            cultivated_land_mu,
            {_code_case("terrain", TERRAIN_CODES)} AS terrain_code,
            dense_rank() OVER (ORDER BY village_code) - 1 AS _village_index
        FROM households
        ORDER BY household_id
    """
    result = dataset.sql(query).fetchnumpy()
    return {name: _as_float(values) for name, values in result.items()}


def _member_part(dataset: Dataset, clock: Clock) -> Columns:
    year = clock.as_of.year
    lo_work, hi_work = WORKING_AGE
    lo_school, hi_school = SCHOOL_AGE
    current = f"(left_month IS NULL OR NOT {clock.upto('left_month')})"
    head = f"{current} AND relation = 'head'"
    working = f"{current} AND age BETWEEN {lo_work} AND {hi_work}"
    aggregate = f"""
        WITH certified AS (
            -- the latest certified grade up to t; on the same day the most severe one
            SELECT member_id,
                   arg_max(value, (date - DATE '1970-01-01') * 10 + (5 - value)) AS grade
            FROM events
            WHERE kind = 'disability_certified' AND member_id IS NOT NULL
              AND value BETWEEN 0 AND 4 AND {clock.upto("date")}
            GROUP BY member_id
        ),
        diagnosed AS (
            SELECT DISTINCT member_id FROM events
            WHERE kind = 'chronic_illness' AND member_id IS NOT NULL AND {clock.upto("date")}
        ),
        m AS (
            SELECT m.household_id, m.relation, m.sex, m.labor_capacity, m.medical_insurance,
                   m.joined_month, m.left_month,
                   {year} - m.birth_year AS age,
                   {_code_case("m.education", EDUCATION_CODES)} AS education_code,
                   round(coalesce(certified.grade, m.disability_grade)) AS grade,
                   m.chronic_disease OR diagnosed.member_id IS NOT NULL AS chronic
            FROM members AS m
            LEFT JOIN certified USING (member_id)
            LEFT JOIN diagnosed USING (member_id)
            WHERE m.joined_month IS NULL OR {clock.upto("m.joined_month")}
        )
        SELECT household_id,
            count(*) FILTER (WHERE {current}) AS household_size,
            count(*) FILTER (WHERE {working}) AS n_working_age,
            count(*) FILTER (WHERE {current} AND age >= {ELDER_AGE}) AS n_elders,
            count(*) FILTER (WHERE {current} AND age < {lo_work}) AS n_children,
            count(*) FILTER (WHERE {current} AND labor_capacity = 'full') AS n_full_labor,
            count(*) FILTER (WHERE {current} AND labor_capacity IN ('weak', 'none')) AS n_weak_or_no_labor,
            max(age) FILTER (WHERE {head}) AS head_age,
            max(CASE WHEN sex = 'f' THEN 1 ELSE 0 END) FILTER (WHERE {head}) AS head_female,
            count(*) FILTER (WHERE {current} AND NOT medical_insurance) AS n_uninsured,
            count(*) FILTER (WHERE left_month IS NOT NULL AND {clock.upto("left_month")}
                                   AND {clock.since("left_month", 11)}) AS members_left_12m,
            count(*) FILTER (WHERE joined_month IS NOT NULL AND {clock.since("joined_month", 11)})
                AS members_joined_12m,
            count(*) FILTER (WHERE {current} AND chronic) AS n_chronic,
            count(*) FILTER (WHERE {current} AND grade >= 1) AS n_disabled,
            count(*) FILTER (WHERE {current} AND grade IN (1, 2)) AS n_severely_disabled,
            max(5 - grade) FILTER (WHERE {current} AND grade >= 1) AS disability_severity_max,
            count(*) FILTER (WHERE {current} AND age BETWEEN {lo_school} AND {hi_school}) AS n_school_age,
            max(education_code) FILTER (WHERE {head}) AS head_education_code,
            max(education_code) FILTER (WHERE {current}) AS max_education_code
        FROM m GROUP BY household_id
    """
    counts = [
        "household_size",
        "n_working_age",
        "n_elders",
        "n_children",
        "n_full_labor",
        "n_weak_or_no_labor",
        "n_uninsured",
        "members_left_12m",
        "members_joined_12m",
        "n_chronic",
        "n_disabled",
        "n_severely_disabled",
        "disability_severity_max",
        "n_school_age",
    ]
    unknown_without_head = ["head_age", "head_female", "head_education_code", "max_education_code"]
    select = ", ".join([*map(_zero, counts), *map(_keep, unknown_without_head)])
    return _fetch(dataset, aggregate, select)


def _income_source_part(dataset: Dataset, clock: Clock) -> Columns:
    """Per-source sums over the income windows (:class:`IncomeSourceSums`); the statistics are formed
    in :func:`_income_features`.

    Rows are unique per (household, month, source), so every sum is a sum of
    rows into (household, source) cells. DuckDB only joins each row to its
    household's position; numpy adds the rows into dense cells, several times
    cheaper than DuckDB's hash aggregate into five million groups. A county
    with a month of :data:`~.income_sources.EXACT_SQUARES_FEN` fen or more, whose squares could
    overflow, is summed by DuckDB in HUGEINT instead (same figures).
    :func:`build_features` only runs this when the rules panel did not gather
    the sums in its own pass over income.
    """
    k = clock.months_before("month")
    first_on_record = max(clock.t - (HISTORY_MONTHS - 1), clock.first_index)
    window = f"{clock.upto('month')} AND month >= DATE '{month_start(first_on_record).isoformat()}'"
    query = f"""
        WITH positions AS ({_POSITIONS})
        SELECT positions._h * {len(INCOME_SOURCES)} + list_position({list(INCOME_SOURCES)}, source) - 1
                   AS cell,
               CAST({k} AS BIGINT) AS k, {_fen("amount")} AS fen
        FROM income JOIN positions USING (household_id)
        WHERE {window}
    """
    sums = IncomeSourceSums.empty(clock.households)
    with dataset.sql(query).to_arrow_reader(ROWS_PER_BATCH) as reader:
        for batch in reader:
            sums.add(*(batch.column(i).to_numpy() for i in range(3)))
            if not sums.exact:
                break
    if not sums.exact:  # the reader is closed: the connection can run another query
        return _income_source_part_in_sql(dataset, clock, window)
    return sums.columns()


def _income_source_part_in_sql(dataset: Dataset, clock: Clock, window: str) -> Columns:
    """:func:`_income_source_part` grouped by DuckDB, squares in HUGEINT: for any amount."""
    k = clock.months_before("month")
    sums = {
        "s3": _yuan_sum("fen", "k < 3"),
        "s6": _yuan_sum("fen", "k < 6"),
        "s12": _yuan_sum("fen", "k < 12"),
        "sprev": _yuan_sum("fen", "k >= 12"),
        "sq12": "CAST(sum(CAST(fen AS HUGEINT) * fen) FILTER (WHERE k < 12) AS DOUBLE) / 10000",
        "kx12": _yuan_sum("fen * k", "k < 12"),
    }
    query = f"""
        SELECT _h, source, {", ".join(f"{sql} AS {name}" for name, sql in sums.items())}
        FROM (
            SELECT positions._h, source, {_fen("amount")} AS fen, {k} AS k
            FROM income JOIN positions USING (household_id)
            WHERE {window}
        )
        GROUP BY _h, source
    """
    spread = _by_household_and_key(dataset, clock, query, "source", INCOME_SOURCES, list(sums))
    return {
        f"{source}_{name}": spread[name][:, i] for name in sums for i, source in enumerate(INCOME_SOURCES)
    }


_POSITIONS = f"SELECT household_id, h AS _h FROM ({HOUSEHOLD_POSITIONS_SQL})"
"""Each household's row in build_panel's order, as ``_h``."""


def _by_household_and_key(
    dataset: Dataset, clock: Clock, query: str, key: str, keys: tuple[str, ...], values: list[str]
) -> dict[str, np.ndarray]:
    """Spread a long result (one row per household and key) into (households, keys) arrays.

    A value absent from the result, or NULL in it, is 0.0 (callers use this for
    counts and sums only) unless it is named in ``values`` with a ``!nan``
    suffix, which keeps absence as NaN. See :class:`_LongResult` for ``query``.
    """
    names = [value.removesuffix("!nan") for value in values]
    found = _LongResult.of(dataset, clock, query, key, keys, names)
    return {
        name: found.spread(name, np.nan if value.endswith("!nan") else 0.0)
        for value, name in zip(values, names, strict=True)
    }


@dataclass(frozen=True)
class _LongResult:
    """A query's rows, one per household and key, each key coded as its position in a tuple of keys.

    The query names each household by ``_h``, its row in build_panel's order,
    which it finds in the relation ``positions`` (household_id, _h): joining the
    rows to it before grouping lets DuckDB group by integers rather than by
    identifier strings, several times faster on a hundred million income rows.
    Spreading every value over (households x keys) costs a fresh array each,
    so callers that need only a total or one key's column ask for just that.
    """

    households: int
    n_keys: int
    rows: np.ndarray
    """Each result row's household position."""
    keys: np.ndarray
    """Each result row's key position."""
    values: dict[str, np.ndarray]
    """Each value as returned (masked where NULL)."""

    @classmethod
    def of(
        cls, dataset: Dataset, clock: Clock, query: str, key: str, keys: tuple[str, ...], names: list[str]
    ) -> _LongResult:
        key_codes = f"list_position({list(keys)}, long.{key}) - 1"
        result = dataset.sql(
            f"""
            WITH positions AS ({_POSITIONS}), long AS ({query})
            SELECT long._h, {key_codes} AS _key, {", ".join(f"long.{name}" for name in names)}
            FROM long
            """
        ).fetchnumpy()
        return cls(
            households=clock.households,
            n_keys=len(keys),
            rows=np.asarray(result["_h"], dtype=np.int64),
            keys=np.asarray(result["_key"], dtype=np.int64),
            values={name: result[name] for name in names},
        )

    def filled(self, name: str, absent: float) -> np.ndarray:
        """``name`` per result row as float64, ``absent`` where NULL."""
        return np.asarray(np.ma.filled(np.ma.asarray(self.values[name], dtype=np.float64), absent))

    def spread(self, name: str, absent: float) -> np.ndarray:
        """(households, keys) array of ``name``: ``absent`` for a missing row or NULL."""
        array = np.full((self.households, self.n_keys), absent)
        array[self.rows, self.keys] = self.filled(name, absent)
        return array

    def of_key(self, name: str, key: int) -> np.ndarray:
        """One key's column of :meth:`spread` with 0.0 for absent and NULL."""
        column = np.zeros(self.households)
        chosen = self.keys == key
        column[self.rows[chosen]] = self.filled(name, 0.0)[chosen]
        return column

    def total(self, name: str, keys: Iterable[int] | None = None) -> np.ndarray:
        """Per household, ``name`` added over the keys (all, or those given); absent and NULL add 0.

        The sum of :meth:`spread`'s row only where every value is a whole number below 2^53
        (counts, whole fen), which any order adds exactly.
        """
        chosen = np.ones(len(self.rows), dtype=bool) if keys is None else np.isin(self.keys, list(keys))
        return np.bincount(
            self.rows[chosen], weights=self.filled(name, 0.0)[chosen], minlength=self.households
        ).astype(np.float64)

    def largest(self, name: str) -> np.ndarray:
        """Per household, the largest ``name`` over its keys, or 0.0 (absent and NULL count as 0.0)."""
        largest = np.zeros(self.households)
        np.maximum.at(largest, self.rows, self.filled(name, 0.0))
        return largest


@dataclass(frozen=True)
class _Window:
    """Moments of one look-back window k in [lo, hi) over each household's reported months."""

    n: np.ndarray
    """Reported months in the window."""
    k_sum: np.ndarray
    k_square_sum: np.ndarray

    @classmethod
    def of(cls, reported: np.ndarray, lo: int, hi: int) -> _Window:
        k = np.arange(lo, hi, dtype=np.float64)
        mask = reported[:, lo:hi]
        return cls(n=mask.sum(axis=1).astype(np.float64), k_sum=mask @ k, k_square_sum=mask @ (k * k))

    def mean(self, total: np.ndarray) -> np.ndarray:
        return _ratio(total, self.n)

    def std(self, total: np.ndarray, square_sum: np.ndarray) -> np.ndarray:
        """Sample standard deviation from sums; NaN with fewer than two months."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / self.n
            variance = (square_sum - total * mean) / (self.n - 1)
        # Summed squares cancel to rounding noise for a steady source: that is no variation.
        variance[variance <= 1e-12 * mean * mean] = 0.0
        variance[self.n < 2] = np.nan
        deviation: np.ndarray = np.sqrt(variance)
        return deviation

    def slope(self, total: np.ndarray, k_weighted_sum: np.ndarray) -> np.ndarray:
        """Least-squares change per month forward in time; NaN with fewer than two months."""
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = self.k_square_sum - self.k_sum * self.k_sum / self.n
            # time runs opposite to k (k counts months back from t)
            slope: np.ndarray = (self.k_sum * total / self.n - k_weighted_sum) / spread
        slope[self.n < 2] = np.nan
        return slope


@dataclass(frozen=True, eq=False)
class _IncomeHistory:
    """The last 24 months of the rules panel's income, newest first: column k is k months before t.

    Months before the records stay unreported (income 0, reported False).
    """

    reported: np.ndarray
    income: np.ndarray
    rigid: np.ndarray
    """Rigid expenditure (docs/rules-and-labels.md) dated in each month."""
    months_since_report: np.ndarray
    """Since the latest reported month up to t, however long ago; NaN if none."""

    @classmethod
    def from_panel(cls, panel: MonthlyPanel) -> _IncomeHistory:
        last = panel.n_months - 1
        depth = min(HISTORY_MONTHS, panel.n_months)
        reported = np.zeros((panel.n_households, HISTORY_MONTHS), dtype=bool)
        income = np.zeros((panel.n_households, HISTORY_MONTHS))
        rigid = np.zeros((panel.n_households, HISTORY_MONTHS))
        reported[:, :depth] = panel.reported[:, last - depth + 1 :][:, ::-1]
        income[:, :depth] = panel.income[:, last - depth + 1 :][:, ::-1]
        rigid[:, :depth] = panel.rigid_expense[:, last - depth + 1 :][:, ::-1]
        return cls(
            reported=reported, income=income, rigid=rigid, months_since_report=panel.months_since_report()
        )

    def rows(self, rows: slice) -> _IncomeHistory:
        """The history of a block of households (views, not copies)."""
        return _IncomeHistory(
            reported=self.reported[rows],
            income=self.income[rows],
            rigid=self.rigid[rows],
            months_since_report=self.months_since_report[rows],
        )

    def window(self, lo: int, hi: int) -> _Window:
        return _Window.of(self.reported, lo, hi)

    def total(self, lo: int, hi: int) -> np.ndarray:
        total: np.ndarray = self.income[:, lo:hi].sum(axis=1)
        return total

    def mean(self, lo: int, hi: int) -> np.ndarray:
        return _ratio(self.total(lo, hi), self.reported[:, lo:hi].sum(axis=1).astype(np.float64))


def _income_total_features(history: _IncomeHistory) -> Columns:
    """Level, trend and volatility of total income; windows count only reported months
    (docs/data-contract.md: a month without income rows is not reported, not zero)."""
    out: Columns = {f"income_total_mean_{w}m": history.mean(0, w) for w in WINDOWS}
    year = history.window(0, 12)
    k = np.arange(12, dtype=np.float64)
    income, reported = history.income, history.reported
    out["income_total_yoy_change_3m"] = history.mean(0, 3) - history.mean(12, 15)
    out["income_total_yoy_change_12m"] = history.mean(0, 12) - history.mean(12, 24)
    out["income_total_change_3m"] = history.mean(0, 3) - history.mean(3, 6)
    out["income_total_slope_6m"] = history.window(0, 6).slope(history.total(0, 6), income[:, :6] @ k[:6])
    out["income_total_slope_12m"] = year.slope(history.total(0, 12), income[:, :12] @ k)
    # Two passes (deviations from the mean) keep a steady income's spread exactly zero.
    year_mean = out["income_total_mean_12m"]
    deviation = np.where(reported[:, :12], income[:, :12] - year_mean[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt((deviation * deviation).sum(axis=1) / (year.n - 1))
    std[year.n < 2] = np.nan
    out["income_total_std_12m"] = std
    out["income_total_cv_12m"] = _ratio(std, np.abs(year_mean))
    lowest = np.where(reported[:, :12], income[:, :12], np.inf).min(axis=1)
    out["income_total_min_12m"] = np.where(np.isinf(lowest), np.nan, lowest)
    out["income_reported_months_3m"] = reported[:, :3].sum(axis=1).astype(np.float64)
    out["income_reported_months_12m"] = year.n
    out["income_months_since_report"] = history.months_since_report
    return out


def _projected_rule_features(
    history: _IncomeHistory, rules: Columns, params: RuleParameters, wages: Columns
) -> Columns:
    """The rules of docs/rules-and-labels.md evaluated 1 .. 6 months ahead, had income gone on at a run rate.

    At t+h the 12-month window still holds the known months t-11+h .. t (k < 12 - h)
    and h months not yet seen; those are filled with a monthly run rate. Rigid
    expenditure counts only the bills already paid that stay in the window:
    future bills are unknown. Last year's income I(t+h-12) is already known at
    t. The line and household size are those of t, so nothing outside the
    records up to t is used.

    Three run rates: the mean monthly income of the last 3 reported months (a
    household whose income just fell carries the fall forward); the same with
    its wages replaced by what the members in wage work in the as-of month earn
    at the household's pay per month worked over the year (a member who left or
    stopped working this month no longer brings a wage in); and each month's
    income a year earlier scaled by how the last 3 months compare with the same
    3 months a year earlier (harvests and festivals come back at their season).
    """
    recent = history.mean(0, 3)
    pay_per_month = _ratio(wages["_wage_12m"], wages["_wage_work_months_12m"])
    wage_now = np.where(wages["_wage_workers_now"] > 0, pay_per_month * wages["_wage_workers_now"], 0.0)
    at_current_work = recent - history.window(0, 3).mean(wages["_wage_3m"]) + wage_now
    flat = np.repeat(recent[:, None], PROJECTION_MONTHS, axis=1)
    ahead = _WindowAhead.of(history, rules)
    out = _projection(ahead, rules, params, flat, detailed=True)
    at_work = _projection(
        ahead, rules, params, np.repeat(at_current_work[:, None], PROJECTION_MONTHS, axis=1), detailed=False
    )
    out["work_projected_rule_margin_min_6m"] = at_work["projected_rule_margin_min_6m"]
    out["work_projected_rule_months_6m"] = at_work["projected_rule_months_6m"]
    # Month t+h a year earlier is k = 12 - h; without a comparable year the flat rate stands in.
    growth = np.clip(_ratio(recent, history.mean(12, 15)), 0.0, SEASONAL_GROWTH_CAP)
    last_year = history.income[:, WINDOW_MONTHS - PROJECTION_MONTHS : WINDOW_MONTHS][:, ::-1]
    known = history.reported[:, WINDOW_MONTHS - PROJECTION_MONTHS : WINDOW_MONTHS][:, ::-1]
    seasonal = np.where(known & np.isfinite(growth)[:, None], last_year * growth[:, None], flat)
    out["seasonal_projected_rule_margin_min_6m"] = _projection(
        ahead, rules, params, seasonal, detailed=False
    )["projected_rule_margin_min_6m"]
    return out


@dataclass(frozen=True, eq=False)
class _WindowAhead:
    """What the records up to t hold of the rules' 12-month window at t+h, a row per h = 1 .. 6.

    The same for every run rate: each projection reads these sums instead of summing them again.
    """

    reported: np.ndarray
    """Reported months of t-11+h .. t."""
    income: np.ndarray
    rigid: np.ndarray
    previous: np.ndarray
    """I(t+h-12), last year's income as the rules will see it."""
    rigid_run_rate: np.ndarray
    """Rigid expenditure per month over the last 3 months (one value per household)."""

    @classmethod
    def of(cls, history: _IncomeHistory, rules: Columns) -> _WindowAhead:
        known = [WINDOW_MONTHS - h for h in range(1, PROJECTION_MONTHS + 1)]
        return cls(
            reported=np.stack([history.reported[:, :k].sum(axis=1) for k in known]),
            income=np.stack([history.total(0, k) for k in known]),
            rigid=np.stack([history.rigid[:, :k].sum(axis=1) for k in known]),
            previous=np.stack([rules[f"I_prev_in_{h}m"] for h in range(1, PROJECTION_MONTHS + 1)]),
            rigid_run_rate=history.rigid[:, :3].sum(axis=1) / 3.0,
        )


def _projection(
    ahead: _WindowAhead, rules: Columns, params: RuleParameters, future: np.ndarray, detailed: bool
) -> Columns:
    """See :func:`_projected_rule_features`: ``future`` holds the income of months t+1 .. t+6 (a column
    each); ``detailed`` adds the per-rule distances.

    Every quantity is a (month ahead, household) array: each cell is computed as it would be month
    by month, and the minimum over the months is taken in month order.
    """
    h = np.arange(1, PROJECTION_MONTHS + 1)[:, None]
    future_sum = np.cumsum(future, axis=1).T
    n, line = rules["n"], rules["L"]
    reported = ahead.reported + h
    income = (ahead.income + future_sum) * WINDOW_MONTHS / reported
    income[reported < params.min_reported_months] = np.nan
    expense, previous = ahead.rigid, ahead.previous
    per_capita = income / n / line
    after_expense = (income - expense) / n / line
    with np.errstate(invalid="ignore"):
        r1 = per_capita < 1
        r2 = (expense > params.rigid_expense_ratio * previous) & (after_expense < 1)
        r3 = (income < (1 - params.income_drop_share) * previous) & (per_capita < params.income_drop_band)
    fires = (r1 | r2 | r3).sum(axis=0).astype(np.float64)
    # fmin ignores NaN: the lowest margin among the months where it is defined
    out = {
        "projected_rule_margin_min_6m": np.fmin.reduce(np.fmin(per_capita, after_expense)),
        "projected_rule_months_6m": fires,
    }
    if not detailed:
        return out
    # Each (month ahead, household) array is reduced as soon as it is made: a million households
    # hold six columns of each.
    out["projected_income_line_ratio_min_6m"] = np.fmin.reduce(per_capita)
    out["projected_income_to_prev_min_6m"] = np.fmin.reduce(_ratio(income, previous))
    out["projected_rigid_margin_run_rate_min_6m"] = np.fmin.reduce(
        (income - expense - h * ahead.rigid_run_rate) / n / line
    )
    # R2 fires once rigid expenditure passes both last year's income and what income can spare
    # above the line; new bills of this many yuan would do it.
    out["rigid_bill_to_trigger_6m"] = np.fmin.reduce(
        np.maximum(params.rigid_expense_ratio * previous, income - n * line) - expense
    )
    # R1 fires below the line; R3 below both the halved prior income and the band.
    drop_floor = np.minimum((1 - params.income_drop_share) * previous, params.income_drop_band * n * line)
    floor = np.fmax(n * line, drop_floor)  # fmax: with I_prev unknown only R1 can fire
    out["income_loss_to_trigger_6m"] = np.fmin.reduce(1.0 - _ratio(floor, income))
    return out


def _income_break_features(history: _IncomeHistory, rules: Columns) -> Columns:
    """Months whose income alone would be under the line, and how recently income broke downwards."""
    n, line = rules["n"], rules["L"]
    reported, income = history.reported, history.income
    below = reported[:, :6] & (income[:, :6] * 12.0 < (n * line)[:, None])
    # A drop: a reported month with less than two thirds of the income of the reported month before it.
    with np.errstate(invalid="ignore"):
        dropped = (
            reported[:, :-1]
            & reported[:, 1:]
            & (income[:, 1:] > 0)
            & (income[:, :-1] < income[:, 1:] * (2.0 / 3.0))
        )
    newest = np.argmax(dropped, axis=1).astype(np.float64)  # the first True is the newest drop
    since = np.where(dropped.any(axis=1), newest, np.nan)
    latest = np.where(reported[:, 0], income[:, 0], np.nan)
    return {
        "income_total_change_1m": latest - history.mean(1, 4),
        "income_months_below_line_6m": below.sum(axis=1).astype(np.float64),
        "months_since_income_drop": since,
    }


def _is_source_sum(name: str) -> bool:
    return name.startswith(INCOME_SOURCES)


def _income_source_features(history: _IncomeHistory, sums: Columns) -> Columns:
    """Level, trend and volatility of each income source from the per-source window sums."""
    windows = {w: history.window(0, w) for w in WINDOWS}
    year, previous = windows[12], history.window(12, 24)
    out: Columns = {}
    for source in INCOME_SOURCES:
        total = sums[f"{source}_s12"]
        for w in WINDOWS:
            out[f"income_{source}_mean_{w}m"] = windows[w].mean(sums[f"{source}_s{w}"])
        out[f"income_{source}_slope_12m"] = year.slope(total, sums[f"{source}_kx12"])
        out[f"income_{source}_std_12m"] = year.std(total, sums[f"{source}_sq12"])
        out[f"income_{source}_yoy_change_12m"] = year.mean(total) - previous.mean(sums[f"{source}_sprev"])
    # Net business income of the last 3 months against the 3 before them: a business slides before it fails.
    recent, before = windows[3], history.window(3, 6)
    wage = {name: _sum_of(sums[f"{s}_{name}"] for s in WAGE_SOURCES) for name in ("s3", "s12")}
    business_3m, business_6m = sums["business_s3"], sums["business_s6"]
    out["income_business_change_3m"] = recent.mean(business_3m) - before.mean(business_6m - business_3m)
    # Wage sums in yuan for the projection at current work (with the employment counts).
    out["_wage_3m"], out["_wage_12m"] = wage["s3"], wage["s12"]
    year_total = history.total(0, 12)
    out["income_wage_share_12m"] = _ratio(_sum_of(sums[f"{s}_s12"] for s in WAGE_SOURCES), year_total)
    out["income_transfer_share_12m"] = _ratio(_sum_of(sums[f"{s}_s12"] for s in TRANSFER_SOURCES), year_total)
    return out


_EMPLOYMENT_COUNTS: dict[str, tuple[range, tuple[str, ...] | None]] = {
    "employment_months_12m": (range(0, 12), EMPLOYED_STATUSES),
    "employment_months_3m": (range(0, 3), EMPLOYED_STATUSES),
    "_wage_work_months_12m": (range(0, 12), WAGE_STATUSES),
    "_wage_workers_now": (range(0, 1), WAGE_STATUSES),
    "_records_12m": (range(0, 12), None),
    "_employed_prev_12m": (range(12, HISTORY_MONTHS), EMPLOYED_STATUSES),
    "_records_prev_12m": (range(12, HISTORY_MONTHS), None),
    "migrants_now": (range(0, 1), ("migrant",)),
    "migrants_year_ago": (range(12, 13), ("migrant",)),
    "local_workers_now": (range(0, 1), LOCAL_WORK_STATUSES),
    "public_welfare_post_now": (range(0, 1), ("public_welfare_post",)),
    "farming_now": (range(0, 1), ("farming",)),
    "unemployed_now": (range(0, 1), ("unemployed",)),
    "students_now": (range(0, 1), ("student",)),
    "unemployed_months_12m": (range(0, 12), ("unemployed",)),
}
"""Member-months counted per household: months back k (0 = the as-of month) and statuses (None: any)."""


def _employment_part(dataset: Dataset, clock: Clock) -> Columns:
    """Employment counts per household: each member's months count for the household while a member.

    DuckDB joins each status row to its member (for the membership check and
    the household's position); numpy counts the rows into one (household,
    months-back class, status) grid, from which every count is a sum. Grouping
    57 million rows in DuckDB instead cost several times more.
    """
    lo_work, hi_work = WORKING_AGE
    # The months-back classes: the intervals between every window's bounds, so each window is a union.
    bounds = np.array(
        sorted(
            {0, HISTORY_MONTHS}
            | {b for months, _ in _EMPLOYMENT_COUNTS.values() for b in (months.start, months.stop)}
        )
    )
    n_classes, n_codes = len(bounds) - 1, len(EMPLOYMENT_STATUSES) + 1  # the last code: no status
    query = f"""
        WITH positions AS ({_POSITIONS}),
        -- materialized: left to itself, DuckDB joins the status rows to members and then each of
        -- them again to positions, rather than the few million members to positions once
        member AS MATERIALIZED (
            SELECT member_id, positions._h,
                   -- month numbers, so each status row compares integers, not dates: at 1,000,000
                   -- households the part took 5.5 s against 6.0 s. Null: joined before the
                   -- records, or still a member.
                   coalesce({clock.month_of("joined_month")}, 0) AS joined,
                   coalesce({clock.month_of("left_month")}, {2**31 - 1}) AS left_,
                   coalesce({clock.as_of.year} - birth_year BETWEEN {lo_work} AND {hi_work}, FALSE)
                       AS working_age
            FROM members JOIN positions USING (household_id)
        )
        SELECT CAST(member._h AS INTEGER) AS _h, CAST({clock.months_before("month")} AS TINYINT) AS k,
               CAST(coalesce(list_position({list(EMPLOYMENT_STATUSES)}, status), {n_codes}) - 1 AS TINYINT)
                   AS code,
               member.working_age
        FROM employment JOIN member USING (member_id)
        WHERE {clock.upto("month")} AND {clock.since("month", HISTORY_MONTHS - 1)}
          AND joined <= {clock.month_of("month")} AND left_ > {clock.month_of("month")}
    """
    households = clock.households
    # Float cells: every count is an integer far below 2^53, so float64 holds it exactly, and the
    # counts below come out of one BLAS product instead of a fancy-indexed copy per count.
    grid = np.zeros(households * n_classes * n_codes, dtype=np.float64)
    working_age_reported_now = np.zeros(households, dtype=np.float64)
    for batch in dataset.sql(query).to_arrow_reader(ROWS_PER_BATCH):
        h, k, code = (batch.column(i).to_numpy().astype(np.int64) for i in range(3))
        k_class = np.searchsorted(bounds, k, side="right") - 1
        # add.at touches only the cells of the batch; bincount would build and add a whole grid.
        np.add.at(grid, (h * n_classes + k_class) * n_codes + code, 1.0)
        now = (k == 0) & batch.column(3).to_numpy(zero_copy_only=False)
        np.add.at(working_age_reported_now, h[now], 1.0)
    # Column j of `counted` marks the (months-back class, status) cells the j-th count adds up.
    counted = np.zeros((n_classes, n_codes, len(_EMPLOYMENT_COUNTS)))
    for j, (months, statuses) in enumerate(_EMPLOYMENT_COUNTS.values()):
        classes = [c for c in range(n_classes) if months.start <= bounds[c] and bounds[c + 1] <= months.stop]
        codes = [EMPLOYMENT_STATUSES.index(s) for s in statuses] if statuses else list(range(n_codes))
        counted[np.ix_(classes, codes, [j])] = 1.0
    counts = grid.reshape(households, n_classes * n_codes) @ counted.reshape(n_classes * n_codes, -1)
    del grid
    columns: Columns = {name: counts[:, j].copy() for j, name in enumerate(_EMPLOYMENT_COUNTS)}
    columns["_working_age_reported_now"] = working_age_reported_now
    if not clock.on_record(12):
        columns["migrants_year_ago"] = np.full_like(columns["migrants_year_ago"], np.nan)
    return columns


def _expense_part(dataset: Dataset, clock: Clock) -> Columns:
    def category_is(*categories: str) -> str:
        # integer codes: a province has tens of millions of bills
        return f"code IN ({', '.join(str(EXPENSE_CATEGORIES.index(c) + 1) for c in categories)})"

    medical, education = category_is("medical"), category_is("education")
    oop: list[tuple[str, str, int]] = [
        ("medical_oop_3m", medical, 3),
        ("medical_oop_6m", medical, 6),
        ("medical_oop_12m", medical, 12),
        ("medical_oop_24m", medical, 24),
        ("education_oop_3m", education, 3),
        ("education_oop_12m", education, 12),
        ("education_oop_24m", education, 24),
        ("other_rigid_oop_12m", category_is("disaster", "accident", "funeral"), 12),
    ]
    medical_12m = f"{medical} AND k < 12"
    out_of_pocket = ", ".join(
        f"{_yuan_sum('oop_fen', f'{condition} AND k < {w}')} AS {name}" for name, condition, w in oop
    )
    aggregate = f"""
        WITH x AS (
            SELECT household_id, {_fen("amount")} AS amount_fen,
                   {_fen("reimbursed")} AS reimbursed_fen, {_fen("amount - reimbursed")} AS oop_fen,
                   {clock.months_before("date")} AS k,
                   list_position({list(EXPENSE_CATEGORIES)}, category) AS code
            FROM expenses
            WHERE {clock.upto("date")} AND {clock.since("date", HISTORY_MONTHS - 1)}
        )
        SELECT household_id,
            {out_of_pocket},
            count(*) FILTER (WHERE {medical_12m}) AS medical_bills_12m,
            CASE WHEN sum(amount_fen) FILTER (WHERE {medical_12m}) > 0
                 THEN CAST(sum(reimbursed_fen) FILTER (WHERE {medical_12m}) AS DOUBLE)
                      / CAST(sum(amount_fen) FILTER (WHERE {medical_12m}) AS DOUBLE)
            END AS medical_reimbursed_share_12m
        FROM x GROUP BY household_id
    """
    select = ", ".join(
        [
            *(_zero(name) for name, _, _ in oop),
            _zero("medical_bills_12m"),
            _keep("medical_reimbursed_share_12m"),
        ]
    )
    return _fetch(dataset, aggregate, select)


def _fen(amount: str) -> str:
    """Money in whole fen: integer sums do not depend on the order DuckDB's threads add them in."""
    return f"CAST(round(({amount}) * 100) AS BIGINT)"


def _yuan_sum(fen_column: str, condition: str | None = None) -> str:
    """Sum of a fen column back in yuan (NULL over no rows), exact whatever the order of the rows."""
    where = f" FILTER (WHERE {condition})" if condition else ""
    return f"CAST(sum({fen_column}){where} AS DOUBLE) / 100"


def _event_part(dataset: Dataset, clock: Clock) -> Columns:
    query = f"""
        SELECT _h, kind,
            count(*) FILTER (WHERE k < 3) AS n3,
            count(*) FILTER (WHERE k < 12) AS n12,
            min(k) AS since,
            max(severity) FILTER (WHERE k < 12) AS severity12,
            {_yuan_sum("value_fen", "k < 12")} AS value12
        FROM (
            SELECT positions._h, kind, severity, {_fen("value")} AS value_fen,
                   {clock.months_before("date")} AS k
            FROM events JOIN positions USING (household_id) WHERE {clock.upto("date")}
        )
        GROUP BY _h, kind
    """
    values = ["n3", "n12", "since", "severity12", "value12"]
    found = _LongResult.of(dataset, clock, query, "kind", EVENT_KINDS, values)
    # Only the per-kind features need (households x kinds) arrays; the rest are totals or one kind.
    n12, since = found.spread("n12", 0.0), found.spread("since", np.nan)
    column = {kind: i for i, kind in enumerate(EVENT_KINDS)}
    out: Columns = {}
    for kind, i in column.items():
        out[f"events_{kind}_12m"] = n12[:, i]
        out[f"months_since_{kind}"] = since[:, i]
    out["events_total_3m"] = found.total("n3")
    out["events_total_12m"] = found.total("n12")
    # 0.0 without events in the year; severity is 1-3 (the contract), so 0.0 never beats a real one.
    out["event_max_severity_12m"] = found.largest("severity12")
    out["disaster_loss_12m"] = found.of_key("value12", column["natural_disaster"])
    # Flags for the village shock rates; they leave the table once the rates are computed.
    shocks = [column[kind] for kind in SHOCK_KINDS]
    for w in (3, 12):
        for kind in VILLAGE_SHOCK_KINDS:
            out[f"_hit_{kind}_{w}m"] = (found.of_key(f"n{w}", column[kind]) > 0).astype(np.float64)
        out[f"_hit_any_shock_{w}m"] = (found.total(f"n{w}", shocks) > 0).astype(np.float64)
    return out


def _loan_part(dataset: Dataset, clock: Clock) -> Columns:
    t = clock.t
    aggregate = f"""
        WITH loan AS (
            -- a loan issued after t does not exist yet
            SELECT loan_id, household_id, kind, annual_rate, {_fen("principal")} AS principal_fen,
                   {clock.month_of("issued_month")} + term_months AS due,
                   {clock.months_before("issued_month")} AS issued_k
            FROM loans WHERE {clock.upto("issued_month")}
        ),
        status AS (
            SELECT loan.household_id, loan.kind, loan.due,
                   {clock.months_before("s.month")} AS k, s.overdue_days,
                   {_fen("s.balance")} AS balance, {_fen("s.balance * loan.annual_rate")} AS interest
            FROM loan_status AS s JOIN loan USING (loan_id)
            WHERE {clock.upto("s.month")} AND {clock.since("s.month", 11)}
        ),
        open_now AS (
            SELECT household_id,
                count(*) AS loan_count_open,
                {_yuan_sum("balance")} AS loan_balance_total,
                {_yuan_sum("balance", "kind = 'poverty_microcredit'")} AS loan_balance_microcredit,
                {_yuan_sum("balance", "kind = 'informal'")} AS loan_balance_informal,
                min(due - {t}) AS loan_months_to_maturity,
                {_yuan_sum("balance", f"due - {t} <= {LOAN_DUE_SOON_MONTHS}")} AS loan_balance_due_6m,
                {_yuan_sum("balance", f"due - {t} <= {LOAN_DUE_VERY_SOON_MONTHS}")} AS loan_balance_due_3m,
                {_yuan_sum("interest")} AS loan_interest_annual
            FROM status WHERE k = 0 GROUP BY household_id
        ),
        overdue_by_month AS (
            SELECT household_id, k, max(overdue_days) AS overdue FROM status GROUP BY household_id, k
        ),
        overdue AS (
            SELECT household_id,
                max(overdue) FILTER (WHERE k = 0) AS loan_overdue_days_now,
                max(overdue) FILTER (WHERE k = 3) AS _overdue_3m_ago,
                max(overdue) AS loan_overdue_days_max_12m,
                count(*) FILTER (WHERE overdue > 0) AS loan_overdue_months_12m
            FROM overdue_by_month GROUP BY household_id
        ),
        issued AS (
            SELECT household_id,
                count(*) FILTER (WHERE issued_k < 12) AS loans_issued_12m,
                {_yuan_sum("principal_fen", "issued_k < 12")} AS loan_principal_issued_12m
            FROM loan GROUP BY household_id
        )
        SELECT * FROM (SELECT DISTINCT household_id FROM loan)
            LEFT JOIN open_now USING (household_id)
            LEFT JOIN overdue USING (household_id)
            LEFT JOIN issued USING (household_id)
    """
    amounts = [
        "loan_count_open",
        "loan_balance_total",
        "loan_balance_microcredit",
        "loan_balance_informal",
        "loan_balance_due_6m",
        "loan_balance_due_3m",
        "loan_interest_annual",
        "loan_overdue_days_now",
        "_overdue_3m_ago",
        "loan_overdue_days_max_12m",
        "loan_overdue_months_12m",
        "loans_issued_12m",
        "loan_principal_issued_12m",
    ]
    select = ", ".join([*map(_zero, amounts), _keep("loan_months_to_maturity")])
    columns = _fetch(dataset, aggregate, select)
    before = columns.pop("_overdue_3m_ago")
    columns["loan_overdue_trend_3m"] = (
        columns["loan_overdue_days_now"] - before if clock.on_record(3) else np.full_like(before, np.nan)
    )
    return columns


def _assistance_part(dataset: Dataset, clock: Clock) -> Columns:
    t = clock.t
    running = f"(end_index IS NULL OR end_index >= {t})"
    measures = [
        f"max(CASE WHEN measure = '{m}' AND {running} THEN 1 ELSE 0 END) AS assist_{m}_now"
        for m in ASSISTANCE_MEASURES
    ]
    measures += [
        f"{_yuan_sum(_fen('monthly_amount'), running)} AS assist_monthly_amount_now",
        f"count(DISTINCT measure) FILTER (WHERE end_index IS NULL OR end_index >= {t - 11})"
        " AS assist_measures_12m",
        f"{t} - max(end_index) FILTER (WHERE end_index < {t}) AS assist_months_since_ended",
    ]
    aggregate = f"""
        WITH a AS (
            -- an end after t was not known at t: the measure was simply running
            SELECT household_id, measure, monthly_amount,
                   CASE WHEN end_month IS NULL OR NOT {clock.upto("end_month")} THEN NULL
                        ELSE {clock.month_of("end_month")} END AS end_index
            FROM assistance WHERE {clock.upto("start_month")}
        )
        SELECT household_id, {", ".join(measures)} FROM a GROUP BY household_id
    """
    counts = [f"assist_{m}_now" for m in ASSISTANCE_MEASURES]
    counts += ["assist_monthly_amount_now", "assist_measures_12m"]
    select = ", ".join([*map(_zero, counts), _keep("assist_months_since_ended")])
    return _fetch(dataset, aggregate, select)


def _monitoring_part(dataset: Dataset, clock: Clock) -> Columns:
    t = clock.t
    aggregate = f"""
        WITH mo AS (
            -- an elimination after t was not known at t
            SELECT household_id, {clock.month_of("identified_month")} AS identified,
                   {_code_case("risk_type", RISK_TYPE_CODES)} AS risk_code,
                   CASE WHEN eliminated_month IS NULL OR NOT {clock.upto("eliminated_month")} THEN NULL
                        ELSE {clock.month_of("eliminated_month")} END AS eliminated
            FROM monitoring WHERE {clock.upto("identified_month")}
        )
        SELECT household_id,
            count(*) AS times_identified,
            CAST(bool_or(eliminated IS NULL) AS INTEGER) AS under_monitoring_now,
            {t} - max(identified) AS months_since_identified,
            {t} - max(eliminated) AS months_since_eliminated,
            arg_max(risk_code, identified * 10 + risk_code) AS last_risk_type_code
        FROM mo GROUP BY household_id
    """
    select = ", ".join(
        [
            _zero("times_identified"),
            _zero("under_monitoring_now"),
            _keep("months_since_identified"),
            _keep("months_since_eliminated"),
            _zero("last_risk_type_code"),
        ]
    )
    return _fetch(dataset, aggregate, select)


_SQL_PARTS: tuple[Callable[[Dataset, Clock], Columns], ...] = (
    _household_part,
    _member_part,
    _income_source_part,
    _employment_part,
    _expense_part,
    _event_part,
    _loan_part,
    _assistance_part,
    _monitoring_part,
)


def write_feature_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a feature table as Parquet (``.parquet``) or CSV (``.csv``), creating the folder."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(
            f"{path}: the feature table is written as .parquet or .csv, not {suffix or 'no suffix'}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
