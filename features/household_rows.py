"""The loader and the features for a few households held in memory, without DuckDB.

``POST /score`` checks and scores rounds of a handful of households. DuckDB
costs milliseconds per statement however few rows it reads, so a round through
:func:`features.loading.load_tables` and :func:`features.history.build_features`
cannot be fast. This module is the same two steps in numpy and pyarrow for
such rounds:

:func:`read_clean_tables`
    Types the text cells of a round (as :func:`~.loading.load_tables` reads
    them with ``text_cells=True``) and checks every rule of the contract. It
    only ever answers for rounds the loader would load **without a single
    reject**: a cell it cannot read exactly as the loader would, and any row
    that breaks a rule, make it return None, and the caller loads the round
    through the loader, which reports the rejects in its words. The rules are
    those of :mod:`.contract` (kinds, nullability, enums, bounds, digits, keys)
    and the few that :mod:`.validation` states beside them (net income sources,
    principal above 0, plausible years, code prefixes, date order, reimbursed
    not above amount, pseudonymous identifiers).

:func:`household_features`
    The rules panel of :mod:`.rules` and the table parts of
    :func:`~.history.build_features` from those clean tables; every feature
    built from them comes from :func:`~.history.features_from_parts`, the
    function the DuckDB path uses too.

tests/test_household_rows.py proves both equal to the DuckDB path on
generated counties, clean and broken: the same tables when the loader has no
reject, None whenever it has one, and the same feature frame.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .catalogue import (
    EDUCATION_CODES,
    HISTORY_MONTHS,
    RISK_TYPE_CODES,
    SHOCK_KINDS,
    TERRAIN_CODES,
    VILLAGE_SHOCK_KINDS,
)
from .contract import (
    ASSISTANCE_MEASURES,
    EMPLOYED_STATUSES,
    EMPLOYMENT_STATUSES,
    EVENT_KINDS,
    EXPENSE_CATEGORIES,
    INCOME_SOURCES,
    NET_INCOME_SOURCES,
    RIGID_EXPENSE_CATEGORIES,
    TABLES,
    Column,
    Table,
    format_month,
    month_index,
)
from .expense_sums import RigidExpenseSums
from .history import (
    ELDER_AGE,
    LOAN_DUE_SOON_MONTHS,
    LOAN_DUE_VERY_SOON_MONTHS,
    LOCAL_WORK_STATUSES,
    SCHOOL_AGE,
    WAGE_STATUSES,
    WORKING_AGE,
    Clock,
    Columns,
    PanelInputs,
    features_from_parts,
)
from .income_sources import EXACT_SQUARES_FEN, IncomeSourceSums
from .policy import Policy
from .rules import MonthlyPanel, RuleState, rule_state
from .validation import EARLIEST_ESCAPE_YEAR, IDENTIFIER_KEYS, MAX_AGE_YEARS

_EPOCH_MONTH = month_index(dt.date(1970, 1, 1))

# Spellings read here exactly as DuckDB reads them; anything else goes to the loader.
_NUMBER = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$"
_MONTH = r"^[1-9][0-9]{3}-[0-9]{2}(-01)?$"
_DATE = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}$"
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_LARGEST_WHOLE = 1e15
_RESIDENT_ID_LIKE = re.compile(r"[0-9]{17}[0-9Xx]")


class NotExact(Exception):  # noqa: N818 - a signal to take the other path, not an error
    """The rows hold something this module does not compute exactly as the DuckDB path: use that path."""


@dataclass(frozen=True, eq=False)
class CleanTables:
    """Typed columns of every contract table of a round that keeps the contract, rows in input order.

    ``str`` and ``enum`` columns are object arrays of str (None for null);
    ``month`` and ``date`` columns are ``datetime64[D]`` (NaT for null);
    ``int``, ``money`` and ``float`` columns are float64 (NaN for null; whole
    numbers below 1e15 are exact); ``bool`` columns are bool.
    """

    policy: Policy
    columns: dict[str, dict[str, np.ndarray]]
    owners: RowOwners
    """The household of every row, read once for the rules panel and the features."""

    def rows(self, table: str) -> int:
        return len(next(iter(self.columns[table].values())))

    def frame(self, table: str) -> pd.DataFrame:
        """One table as pandas (for tests and the request log)."""
        return pd.DataFrame(self.columns[table])


def read_clean_tables(tables: Mapping[str, pa.Table], policy: Policy) -> CleanTables | None:
    """The round's tables typed as the loader types text cells; None unless the loader rejects nothing.

    ``tables`` maps every contract table to its rows as text cells (the
    arguments of ``load_tables(tables, policy, text_cells=True)``).
    """
    if set(tables) != {t.name for t in TABLES}:
        return None
    try:
        columns, codes = _typed_tables(tables, policy)
        _check_keys(columns, codes)
        _check_cross_rules(columns)
    except NotExact:
        return None
    if any(len(columns[name]["household_id"]) == 0 for name in ("households", "members")):
        return None  # the loader refuses the round as a whole
    return CleanTables(policy, columns, RowOwners.of(columns))


# -- typing and the rules of one cell -----------------------------------------------------------


_Tables = dict[str, dict[str, np.ndarray]]
"""Arrays by table and column."""

_EMPTY = {
    "str": np.zeros(0, dtype=object),
    "enum": np.zeros(0, dtype=object),
    "month": np.zeros(0, dtype="datetime64[D]"),
    "date": np.zeros(0, dtype="datetime64[D]"),
    "bool": np.zeros(0, dtype=bool),
}

# Kinds read from their text by the same kernels. A round's ~60 columns are typed a group at a time:
# a pyarrow kernel or a numpy call costs microseconds however few cells it reads.
_GROUP_OF_KIND = {
    "str": "text",
    "enum": "text",
    "bool": "text",
    "int": "number",
    "money": "number",
    "float": "number",
    "month": "month",
    "date": "date",
}
_GROUPS = ("text", "number", "month", "date")


@dataclass(frozen=True)
class _Span:
    """One column's cells within its group's cells."""

    table: Table
    column: Column
    start: int
    stop: int


def _typed_tables(tables: Mapping[str, pa.Table], policy: Policy) -> tuple[_Tables, _Tables]:
    """Every contract table typed as the loader types text cells; NotExact for a cell it would not load.

    Also the code of every cell of the text kinds: cells of equal value have equal codes, others not.
    """
    typed: _Tables = {table.name: {} for table in TABLES}
    codes: _Tables = {table.name: {} for table in TABLES}
    spans: dict[str, list[_Span]] = {group: [] for group in _GROUPS}
    chunks: dict[str, list[pa.Array]] = {group: [] for group in _GROUPS}
    for table in TABLES:
        rows = tables[table.name]
        if not set(rows.column_names).issuperset(table.column_names):
            raise NotExact
        cells = [rows.column(name) for name in table.column_names]
        if any(not pa.types.is_string(c.type) and not pa.types.is_null(c.type) for c in cells):
            raise NotExact
        if rows.num_rows == 0:  # no row, no rule to break
            typed[table.name] = {c.name: _EMPTY.get(c.kind, np.zeros(0)).copy() for c in table.columns}
            continue
        for column, text in zip(table.columns, cells, strict=True):
            group = _GROUP_OF_KIND[column.kind]
            start = spans[group][-1].stop if spans[group] else 0
            spans[group].append(_Span(table, column, start, start + rows.num_rows))
            chunks[group] += (text if pa.types.is_string(text.type) else text.cast(pa.string())).chunks
    if not any(chunks.values()):
        return typed, codes
    # Every cell of the round in one array, group after group.
    every = pa.concat_arrays([chunk for group in _GROUPS for chunk in chunks[group]])
    every = pc.if_else(pc.equal(every, ""), pa.scalar(None, pa.string()), every)
    missing = np.asarray(pc.is_null(every).to_numpy(zero_copy_only=False), dtype=bool)
    start = 0
    for group in _GROUPS:
        if not spans[group]:
            continue
        size = spans[group][-1].stop
        text, absent = every.slice(start, size), missing[start : start + size]
        start += size
        nullable = _per_cell(spans[group], [s.column.nullable for s in spans[group]])
        if np.any(absent & ~nullable):
            raise NotExact
        if group == "text":
            values, where = _texts(text)
            for span in spans[group]:
                typed[span.table.name][span.column.name] = _text_rules(span, values[span.start : span.stop])
                codes[span.table.name][span.column.name] = where[span.start : span.stop]
            continue
        if group == "number":
            values = _numbers(text, absent)
            _number_rules(spans[group], values, absent, policy)
        else:
            values = _days(group, text, absent, policy)
        for span in spans[group]:
            typed[span.table.name][span.column.name] = values[span.start : span.stop]
    return {table.name: {c.name: typed[table.name][c.name] for c in table.columns} for table in TABLES}, codes


def _distinct(cells: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of ``cells`` (null too if a cell is null), and per cell its value's position.

    Ids, codes and months repeat a few values over thousands of cells: each
    value is read once and its cells take the result. That is the same as
    reading every cell, as every rule and conversion here reads a cell on its own.
    """
    encoded = pc.dictionary_encode(cells, null_encoding="encode")
    return encoded.dictionary, encoded.indices.to_numpy()


def _texts(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Text cells as str (None for null) once none is padded, and their codes (:func:`_distinct`)."""
    distinct, where = _distinct(text)
    # The loader trims every cell; a padded one is read here only if it is not padded at all. Cells
    # of other groups are read only when they match a pattern, which has no space at either end.
    if pc.any(pc.not_equal(pc.utf8_trim_whitespace(distinct), distinct)).as_py():
        raise NotExact
    return np.asarray(distinct.to_numpy(zero_copy_only=False), dtype=object)[where], where


def _per_cell(spans: list[_Span], values: list[float] | list[bool]) -> np.ndarray:
    """One value per column, repeated for each of its cells."""
    return np.repeat(values, [span.stop - span.start for span in spans])


def _text_rules(span: _Span, values: np.ndarray) -> np.ndarray:
    """A ``str``, ``enum`` or ``bool`` column's cells (None for null) once they keep the one-cell rules."""
    table, column = span.table, span.column
    if column.kind == "bool":
        words = [None if v is None else _BOOLEANS.get(v.lower()) for v in values.tolist()]
        if None in words:
            raise NotExact
        return np.asarray(words, dtype=bool)
    if column.kind == "enum" and not {None, *column.values}.issuperset(values.tolist()):
        raise NotExact
    if IDENTIFIER_KEYS.get(table.name) == column.name and any(
        _looks_personal(v) for v in values.tolist() if v is not None
    ):
        raise NotExact
    if column.digits is not None:
        digits = re.compile(f"[0-9]{{{column.digits}}}")
        if not all(digits.fullmatch(v) for v in values.tolist() if v is not None):
            raise NotExact
    return values


def _number_rules(spans: list[_Span], numbers: np.ndarray, missing: np.ndarray, policy: Policy) -> None:
    """Whole numbers where the column is ``int`` and the bounds of every column, checked in place.

    ``numbers`` are the group's cells (NaN for null); a negative zero of an
    ``int`` column becomes 0, as the loader's integer.
    """
    whole = _per_cell(spans, [s.column.kind == "int" for s in spans]) & ~missing
    if not np.all(np.abs(numbers[whole]) < _LARGEST_WHOLE):
        raise NotExact
    if not np.all(numbers[whole] == np.trunc(numbers[whole])):
        raise NotExact
    numbers[whole] += 0.0  # "-0" is the integer 0 for the loader, not a negative zero
    bounds = [_bounds(s.table, s.column, policy) for s in spans]
    low = _per_cell(spans, [b[0] for b in bounds])
    high = _per_cell(spans, [b[1] for b in bounds])
    above_low = np.where(_per_cell(spans, [b[2] for b in bounds]), numbers > low, numbers >= low)
    if not np.all(missing | (above_low & (numbers <= high))):
        raise NotExact


def _bounds(table: Table, column: Column, policy: Policy) -> tuple[float, float, bool]:
    """(low, high, whether low itself is out) of a number column's present cells."""
    name = column.name
    if table.name == "income" and name == "amount":
        return -np.inf, np.inf, False  # judged against the source in _check_cross_rules
    if table.name == "loans" and name == "principal":
        return 0.0, np.inf, True
    if name == "birth_year":
        return policy.data_end.year - MAX_AGE_YEARS, policy.data_end.year, False
    if name == "escape_year":
        return EARLIEST_ESCAPE_YEAR, policy.data_end.year, False
    low = -np.inf if column.minimum is None else column.minimum
    high = np.inf if column.maximum is None else column.maximum
    return low, high, False


def _all_match(text: pa.Array, pattern: str) -> bool:
    """Every present cell matches ``pattern`` (nulls are judged by the not_null rule)."""
    return pc.all(pc.match_substring_regex(text, pattern)).as_py() is not False


def _looks_personal(value: str) -> bool:
    # Stricter than the loader (any non-ASCII character, any 18 digits): such ids take the loader's path.
    return not value.isascii() or bool(_RESIDENT_ID_LIKE.fullmatch(value))


def _numbers(text: pa.Array, missing: np.ndarray) -> np.ndarray:
    if not _all_match(text, _NUMBER):
        raise NotExact
    try:
        numbers = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise NotExact from None
    numbers = np.asarray(numbers, dtype=np.float64).copy()
    numbers[missing] = np.nan
    if not np.all(np.isfinite(numbers[~missing])):
        raise NotExact
    return numbers


def _days(kind: str, text: pa.Array, missing: np.ndarray, policy: Policy) -> np.ndarray:
    if kind == "month":  # a few dozen months over thousands of cells
        distinct, where = _distinct(text)
        absent = np.asarray(distinct.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        days: np.ndarray = _days_of(kind, distinct, absent, policy)[where]
        return days
    return _days_of(kind, text, missing, policy)


def _days_of(kind: str, text: pa.Array, missing: np.ndarray, policy: Policy) -> np.ndarray:
    pattern = _MONTH if kind == "month" else _DATE
    if not _all_match(text, pattern):
        raise NotExact
    if kind == "month":  # YYYY-MM or YYYY-MM-01 (above): the first day of the month
        text = pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, 7), "-01", "")
    try:
        days = pc.cast(text, pa.date32()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise NotExact from None
    days = np.asarray(days, dtype="datetime64[D]")
    after_data_end = np.datetime64(_month_after(policy.data_end), "D")
    if np.any(days[~missing] >= after_data_end):
        raise NotExact
    return days


def _month_after(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


# -- rules across columns, keys and references ---------------------------------------------------


def _check_cross_rules(columns: _Tables) -> None:
    households = columns["households"]
    for child, parent in (("township_code", "county_code"), ("village_code", "township_code")):
        if not all(c.startswith(p) for c, p in zip(households[child], households[parent], strict=True)):
            raise NotExact
    orders = (
        ("members", "left_month", "joined_month", True),
        ("assistance", "end_month", "start_month", False),
        ("monitoring", "eliminated_month", "identified_month", False),
    )
    for table, later, earlier, equal_is_broken in orders:
        late, early = columns[table][later], columns[table][earlier]
        both = ~np.isnat(late) & ~np.isnat(early)
        broken = late[both] <= early[both] if equal_is_broken else late[both] < early[both]
        if broken.any():
            raise NotExact
    income = columns["income"]
    gross = ~np.isin(income["source"], NET_INCOME_SOURCES)
    if np.any(gross & (income["amount"] < 0)):
        raise NotExact
    expenses = columns["expenses"]
    if np.any(expenses["reimbursed"] > expenses["amount"]):
        raise NotExact


def _check_keys(tables: _Tables, codes: _Tables) -> None:
    """Unique keys, references that name a row, and members named with their own household.

    ``codes`` are :func:`_typed_tables`' codes of the text cells.
    """
    for table in TABLES:
        columns = tables[table.name]
        for key in table.unique:
            if len(columns[key[0]]) < 2:
                continue
            # Rows sorted by their key: a key twice over is two equal neighbours.
            parts = [codes[table.name].get(k, _hashable(columns[k])) for k in key]
            order = np.lexsort(parts)
            if np.logical_and.reduce([part[order][1:] == part[order][:-1] for part in parts]).any():
                raise NotExact
        for foreign_key in table.foreign_keys:
            targets = set(tables[foreign_key.table][foreign_key.target].tolist())
            targets.add(None)  # a null reference is judged by the not_null rule
            if not targets.issuperset(columns[foreign_key.column].tolist()):
                raise NotExact
    members = tables["members"]
    # Member ids are unique and every reference names one (checked above): each pair must be a member's.
    memberships = set(zip(members["member_id"].tolist(), members["household_id"].tolist(), strict=True))
    for name in ("expenses", "events"):
        rows = tables[name]
        pairs = set(zip(rows["member_id"].tolist(), rows["household_id"].tolist(), strict=True))
        if any(member is not None and (member, household) not in memberships for member, household in pairs):
            raise NotExact


def _hashable(values: np.ndarray) -> np.ndarray:
    """Cells of a kind that is not text as numbers to sort and compare; days as whole numbers (NaT as one)."""
    return values.view(np.int64) if values.dtype.kind == "M" else values


# -- the rules panel and the feature parts -------------------------------------------------------


def household_features(
    clean: CleanTables,
    as_of: dt.date,
    *,
    panel: MonthlyPanel | None = None,
    state: RuleState | None = None,
) -> pd.DataFrame:
    """:func:`~.history.build_features` of the round at ``as_of``: the same frame, without DuckDB.

    ``panel`` and ``state``, when the caller has them, are :func:`household_panel`'s.
    Raises ValueError when ``as_of`` lies outside data_start .. data_end, and
    :class:`NotExact` when an amount is too large to be summed exactly here.
    """
    if panel is None or state is None:
        panel, state = household_panel(clean, as_of)
    inputs = PanelInputs.of(panel, state)
    return features_from_parts(inputs, clean.policy, lambda clock: _parts(clean, clock))


def household_panel(clean: CleanTables, as_of: dt.date) -> tuple[MonthlyPanel, RuleState]:
    """:func:`~.rules.build_panel` through ``as_of`` and its :func:`~.rules.rule_state`."""
    policy = clean.policy
    as_of = as_of.replace(day=1)
    if not policy.data_start <= as_of <= policy.data_end:
        raise ValueError(
            f"as_of {format_month(as_of)} is outside the data "
            f"({format_month(policy.data_start)} .. {format_month(policy.data_end)})"
        )
    rows = clean.owners
    first = policy.first_month_index
    n_months = month_index(as_of) - first + 1
    n = len(rows.household_ids)

    def money_by_month(h: np.ndarray, month: np.ndarray, fen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = (month >= first) & (month < first + n_months)
        totals = np.zeros((n, n_months), dtype=np.int64)
        seen = np.zeros((n, n_months), dtype=bool)
        np.add.at(totals, (h[inside], month[inside] - first), fen[inside])
        seen[h[inside], month[inside] - first] = True
        return totals, seen

    income = clean.columns["income"]
    income_fen, reported = money_by_month(
        rows.household_of("income"), _month_of(income["month"]), _fen(income["amount"])
    )
    expenses = clean.columns["expenses"]
    rigid = np.isin(expenses["category"], RIGID_EXPENSE_CATEGORIES)
    rigid_fen, _ = money_by_month(
        rows.household_of("expenses")[rigid],
        _month_of(expenses["date"])[rigid],
        _fen(expenses["amount"][rigid] - expenses["reimbursed"][rigid]),
    )
    members = clean.columns["members"]
    size = _span_counts(
        rows.household_of("members"), members["joined_month"], members["left_month"], first, n_months, n
    )
    monitoring = clean.columns["monitoring"]
    under = _span_counts(
        rows.household_of("monitoring"),
        monitoring["identified_month"],
        monitoring["eliminated_month"],
        first,
        n_months,
        n,
    )
    panel = MonthlyPanel(
        household_ids=rows.household_ids,
        first_month=policy.data_start,
        size=np.maximum(size, 1).astype(np.int16),
        reported=reported,
        income=income_fen.astype(np.float64) / 100.0,
        rigid_expense=rigid_fen.astype(np.float64) / 100.0,
        under_monitoring=under > 0,
    )
    return panel, rule_state(panel, policy)


def _span_counts(
    h: np.ndarray, start: np.ndarray, end: np.ndarray, first: int, n_months: int, n: int
) -> np.ndarray:
    s = np.where(np.isnat(start), 0, _month_of(start) - first)
    e = np.where(np.isnat(end), n_months, _month_of(end) - first)
    s, e = np.maximum(s, 0), np.minimum(e, n_months)
    months = np.arange(n_months)
    covers = (months >= s[:, None]) & (months < e[:, None])
    counts = np.zeros((n, n_months), dtype=np.int32)
    np.add.at(counts, h, covers.astype(np.int32))
    return counts


def _month_of(days: np.ndarray) -> np.ndarray:
    """Month index (:func:`~.contract.month_index`) of each day; NaT gives a meaningless number."""
    return days.astype("datetime64[M]").astype(np.int64) + _EPOCH_MONTH


def _round_half_away(values: np.ndarray) -> np.ndarray:
    """DuckDB's round(): halves away from zero."""
    whole = np.trunc(values)
    rounded: np.ndarray = whole + np.where(np.abs(values - whole) >= 0.5, np.sign(values), 0.0)
    return rounded


def _fen(yuan: np.ndarray) -> np.ndarray:
    """Whole fen as the DuckDB path computes them: CAST(round(yuan * 100) AS BIGINT)."""
    fen = _round_half_away(yuan * 100.0)
    # Larger amounts could overflow the per-source sums of squares, which the DuckDB path then sums
    # in HUGEINT.
    if np.any(np.abs(fen[np.isfinite(fen)]) >= EXACT_SQUARES_FEN):
        raise NotExact
    return np.where(np.isfinite(fen), fen, 0).astype(np.int64)


@dataclass(frozen=True, eq=False)
class RowOwners:
    """Household positions (sorted ids, as build_panel orders them) of each table's rows.

    Only for tables whose keys and references keep the contract: every id looked up is there.
    """

    household_ids: np.ndarray
    households: dict[str, np.ndarray]
    """Per table, the household position of each row."""
    employment_members: np.ndarray
    """The members row of each employment row."""
    status_loans: np.ndarray
    """The loans row of each loan_status row."""

    @classmethod
    def of(cls, tables: Mapping[str, Mapping[str, np.ndarray]]) -> RowOwners:
        household_ids = np.asarray(sorted(set(tables["households"]["household_id"].tolist())), dtype=object)
        households = {
            name: _positions(household_ids, columns["household_id"])
            for name, columns in tables.items()
            if "household_id" in columns
        }
        # employment and loan_status rows belong to the household of their member and loan
        members = _positions(tables["members"]["member_id"], tables["employment"]["member_id"])
        loans = _positions(tables["loans"]["loan_id"], tables["loan_status"]["loan_id"])
        households["employment"] = households["members"][members]
        households["loan_status"] = households["loans"][loans]
        for positions in (*households.values(), members, loans):
            positions.flags.writeable = False  # shared by the panel and every feature part
        return cls(household_ids, households, members, loans)

    def household_of(self, table: str) -> np.ndarray:
        return self.households[table]


def _positions(keys: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The position in ``keys`` (distinct) of each cell's key."""
    position = {key: i for i, key in enumerate(keys.tolist())}
    return np.fromiter(map(position.__getitem__, cells.tolist()), dtype=np.int64, count=len(cells))


def _parts(clean: CleanTables, clock: Clock) -> Iterator[tuple[str, Columns]]:
    rows = clean.owners
    parts = (
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
    for part in parts:
        stage = part.__name__.strip("_").replace("_part", "").replace("_", " ")
        yield f"{stage} (numpy)", part(clean, rows, clock)


def _sum_by(h: np.ndarray, values: np.ndarray, n: int, where: np.ndarray | None = None) -> np.ndarray:
    """Sum per household of ``values`` (int64 or float64) on the rows ``where`` holds."""
    if where is not None:
        h, values = h[where], values[where]
    out = np.zeros(n, dtype=values.dtype)
    np.add.at(out, h, values)
    return out


def _count_by(h: np.ndarray, where: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(h[where], minlength=n).astype(np.float64)


def _max_by(h: np.ndarray, values: np.ndarray, n: int, where: np.ndarray, empty: float) -> np.ndarray:
    """Maximum per household over the rows ``where`` holds; ``empty`` where there are none."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, h[where], values[where].astype(np.float64))
    return np.where(np.isneginf(out), empty, out)


def _min_by(h: np.ndarray, values: np.ndarray, n: int, where: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, h[where], values[where].astype(np.float64))
    return np.where(np.isposinf(out), empty, out)


def _yuan(fen: np.ndarray) -> np.ndarray:
    return fen.astype(np.float64) / 100


def _household_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    table = clean.columns["households"]
    order = np.argsort(rows.household_of("households"), kind="stable")
    year = clock.as_of.year
    escape = table["escape_year"][order]
    with np.errstate(invalid="ignore"):
        since_escape = np.where(escape <= year, year - escape, np.nan)
    villages = table["village_code"][order]
    _, village_index = np.unique(villages.astype(str), return_inverse=True)
    return {
        "registered_poor": table["registered_poor"][order].astype(np.float64),
        "years_since_escape": since_escape,
        "relocated": table["relocated"][order].astype(np.float64),
        "housing_safe": table["housing_safe"][order].astype(np.float64),
        "cultivated_land_mu": table["cultivated_land_mu"][order],
        "terrain_code": np.asarray([TERRAIN_CODES[v] for v in table["terrain"][order]], dtype=np.float64),
        "_village_index": village_index.astype(np.float64),
    }


def _member_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    n, t = clock.households, clock.t
    members = clean.columns["members"]
    member_ids = members["member_id"].tolist()
    grade = members["disability_grade"].copy()
    chronic = members["chronic_disease"].copy()
    events = clean.columns["events"]
    event_month = _month_of(events["date"])
    position = {m: i for i, m in enumerate(member_ids)}
    # The latest certified grade up to t; on the same day the most severe one.
    best: dict[int, float] = {}
    for member, kind, day, value, month in zip(
        events["member_id"].tolist(),
        events["kind"].tolist(),
        events["date"].astype(np.int64).tolist(),
        events["value"].tolist(),
        event_month.tolist(),
        strict=True,
    ):
        if member is None or month > t:
            continue
        if kind == "chronic_illness":
            chronic[position[member]] = True
        elif kind == "disability_certified" and value == value and 0 <= value <= 4:
            key = day * 10 + (5 - value)
            i = position[member]
            if i not in best or key > best[i]:
                best[i] = key
                grade[i] = value
    grade = _round_half_away(grade)
    h = rows.household_of("members")
    joined, left = members["joined_month"], members["left_month"]
    joined_month = np.where(np.isnat(joined), -1, _month_of(joined))
    left_month = np.where(np.isnat(left), -1, _month_of(left))
    counted = np.isnat(joined) | (joined_month <= t)
    current = counted & (np.isnat(left) | (left_month > t))
    age = clock.as_of.year - members["birth_year"]
    head = current & (members["relation"] == "head")
    capacity = members["labor_capacity"]
    education = np.asarray([EDUCATION_CODES[v] for v in members["education"]], dtype=np.float64)
    lo_work, hi_work = WORKING_AGE
    lo_school, hi_school = SCHOOL_AGE
    disabled = current & (grade >= 1)
    return {
        "household_size": _count_by(h, current, n),
        "n_working_age": _count_by(h, current & (age >= lo_work) & (age <= hi_work), n),
        "n_elders": _count_by(h, current & (age >= ELDER_AGE), n),
        "n_children": _count_by(h, current & (age < lo_work), n),
        "n_full_labor": _count_by(h, current & (capacity == "full"), n),
        "n_weak_or_no_labor": _count_by(h, current & np.isin(capacity, ("weak", "none")), n),
        "n_uninsured": _count_by(h, current & ~members["medical_insurance"], n),
        "members_left_12m": _count_by(
            h, counted & ~np.isnat(left) & (left_month <= t) & (left_month >= t - 11), n
        ),
        "members_joined_12m": _count_by(h, counted & ~np.isnat(joined) & (joined_month >= t - 11), n),
        "n_chronic": _count_by(h, current & chronic, n),
        "n_disabled": _count_by(h, disabled, n),
        "n_severely_disabled": _count_by(h, current & np.isin(grade, (1.0, 2.0)), n),
        "disability_severity_max": _max_by(h, 5 - grade, n, disabled, 0.0),
        "n_school_age": _count_by(h, current & (age >= lo_school) & (age <= hi_school), n),
        "head_age": _max_by(h, age, n, head, np.nan),
        "head_female": _max_by(h, (members["sex"] == "f").astype(np.float64), n, head, np.nan),
        "head_education_code": _max_by(h, education, n, head, np.nan),
        "max_education_code": _max_by(h, education, n, current, np.nan),
    }


def _income_source_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    t = clock.t
    income = clean.columns["income"]
    month = _month_of(income["month"])
    first_on_record = max(t - (HISTORY_MONTHS - 1), clock.first_index)
    keep = (month <= t) & (month >= first_on_record)
    source = _codes(_SOURCE_INDEX, income["source"][keep])
    known = source >= 0
    sums = IncomeSourceSums.empty(clock.households)
    # The same accumulator as the DuckDB path; _fen keeps every amount small enough for exact sums.
    sums.add(
        (rows.household_of("income")[keep] * len(INCOME_SOURCES) + source)[known],
        (t - month)[keep][known],
        _fen(income["amount"])[keep][known],
    )
    return sums.columns()


_SOURCE_INDEX = {name: j for j, name in enumerate(INCOME_SOURCES)}
_STATUS_INDEX = {name: j for j, name in enumerate(EMPLOYMENT_STATUSES)}
_KIND_INDEX = {name: j for j, name in enumerate(EVENT_KINDS)}


def _codes(index: Mapping[str, int], values: np.ndarray) -> np.ndarray:
    """The code of each value (-1 for one without): one compare per row and code, not per row and string."""
    return np.fromiter(map(index.get, values.tolist(), repeat(-1)), dtype=np.int64, count=len(values))


def _employment_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    n, t = clock.households, clock.t
    employment = clean.columns["employment"]
    members = clean.columns["members"]
    month = _month_of(employment["month"])
    member = rows.employment_members
    joined, left = members["joined_month"][member], members["left_month"][member]
    joined_month = np.where(np.isnat(joined), 0, _month_of(joined))
    left_month = np.where(np.isnat(left), 0, _month_of(left))
    window_start = t - (HISTORY_MONTHS - 1)
    mover = (~np.isnat(joined) & (joined_month > window_start)) | (~np.isnat(left) & (left_month <= t))
    member_then = (np.isnat(joined) | (joined_month <= month)) & (np.isnat(left) | (left_month > month))
    keep = (month <= t) & (month >= window_start) & (~mover | member_then)
    h = rows.household_of("employment")[keep]
    k = (t - month)[keep]
    status = _codes(_STATUS_INDEX, employment["status"][keep])
    age = clock.as_of.year - members["birth_year"][member][keep]

    def status_is(*statuses: str) -> np.ndarray:
        chosen = np.zeros(len(EMPLOYMENT_STATUSES) + 1, dtype=bool)  # the last for code -1: no status
        chosen[[_STATUS_INDEX[s] for s in statuses]] = True
        is_status: np.ndarray = chosen[status]
        return is_status

    employed, wage_work = status_is(*EMPLOYED_STATUSES), status_is(*WAGE_STATUSES)
    lo_work, hi_work = WORKING_AGE
    counts = {
        "employment_months_12m": (k < 12) & employed,
        "employment_months_3m": (k < 3) & employed,
        "_wage_work_months_12m": (k < 12) & wage_work,
        "_wage_workers_now": (k == 0) & wage_work,
        "_records_12m": k < 12,
        "_employed_prev_12m": (k >= 12) & employed,
        "_records_prev_12m": k >= 12,
        "migrants_now": (k == 0) & status_is("migrant"),
        "migrants_year_ago": (k == 12) & status_is("migrant"),
        "local_workers_now": (k == 0) & status_is(*LOCAL_WORK_STATUSES),
        "public_welfare_post_now": (k == 0) & status_is("public_welfare_post"),
        "farming_now": (k == 0) & status_is("farming"),
        "unemployed_now": (k == 0) & status_is("unemployed"),
        "students_now": (k == 0) & status_is("student"),
        "unemployed_months_12m": (k < 12) & status_is("unemployed"),
        "_working_age_reported_now": (k == 0) & (age >= lo_work) & (age <= hi_work),
    }
    columns = {name: _count_by(h, where, n) for name, where in counts.items()}
    if not clock.on_record(12):
        columns["migrants_year_ago"] = np.full(n, np.nan)
    return columns


def _expense_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    t = clock.t
    expenses = clean.columns["expenses"]
    month = _month_of(expenses["date"])
    keep = (month <= t) & (month >= t - (HISTORY_MONTHS - 1))
    amount, reimbursed = expenses["amount"][keep], expenses["reimbursed"][keep]
    category = _codes(_CATEGORY_INDEX, expenses["category"][keep])
    known = category >= 0
    sums = RigidExpenseSums.empty(clock.households)
    # The accumulator the rules panel's pass feeds: the same windows, whole fen, exact in any order.
    sums.add(
        rows.household_of("expenses")[keep][known],
        (t - month)[keep][known],
        category[known],
        _fen(amount - reimbursed)[known],
        _fen(amount)[known],
        _fen(reimbursed)[known],
    )
    return sums.columns()


_CATEGORY_INDEX = {name: j for j, name in enumerate(EXPENSE_CATEGORIES)}


def _event_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    n, t = clock.households, clock.t
    events = clean.columns["events"]
    month = _month_of(events["date"])
    keep = month <= t
    h = rows.household_of("events")[keep]
    k = (t - month)[keep]
    kind = events["kind"][keep]
    severity = events["severity"][keep]
    value = events["value"][keep]
    value_fen = _fen(value)
    has_value = ~np.isnan(value)
    # Every (household, kind) count and latest month at once, not kind by kind.
    code = _codes(_KIND_INDEX, kind)
    known = code >= 0
    n3 = np.zeros((n, len(EVENT_KINDS)))
    n12 = np.zeros((n, len(EVENT_KINDS)))
    np.add.at(n3, (h[known & (k < 3)], code[known & (k < 3)]), 1.0)
    np.add.at(n12, (h[known & (k < 12)], code[known & (k < 12)]), 1.0)
    since = np.full((n, len(EVENT_KINDS)), np.inf)
    np.minimum.at(since, (h[known], code[known]), k[known].astype(np.float64))
    since[np.isposinf(since)] = np.nan
    out: Columns = {}
    for i, name in enumerate(EVENT_KINDS):
        out[f"events_{name}_12m"] = n12[:, i]
        out[f"months_since_{name}"] = since[:, i]
    out["events_total_3m"] = n3.sum(axis=1)
    out["events_total_12m"] = n12.sum(axis=1)
    out["event_max_severity_12m"] = _max_by(h, severity, n, k < 12, 0.0)
    disaster = (kind == "natural_disaster") & (k < 12) & has_value
    out["disaster_loss_12m"] = _yuan(_sum_by(h, value_fen, n, disaster))
    column = {name: i for i, name in enumerate(EVENT_KINDS)}
    shocks = [column[name] for name in SHOCK_KINDS]
    for w, counts in ((3, n3), (12, n12)):
        for name in VILLAGE_SHOCK_KINDS:
            out[f"_hit_{name}_{w}m"] = (counts[:, column[name]] > 0).astype(np.float64)
        out[f"_hit_any_shock_{w}m"] = (counts[:, shocks].sum(axis=1) > 0).astype(np.float64)
    return out


def _loan_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    n, t = clock.households, clock.t
    loans = clean.columns["loans"]
    issued = _month_of(loans["issued_month"])
    exists = issued <= t
    loan_h = rows.household_of("loans")
    due = issued + loans["term_months"].astype(np.int64)
    issued_k = t - issued
    status = clean.columns["loan_status"]
    loan = rows.status_loans
    month = _month_of(status["month"])
    keep = exists[loan] & (month <= t) & (month >= t - 11)
    loan = loan[keep]
    h = loan_h[loan]
    k = (t - month)[keep]
    balance = _fen(status["balance"][keep])
    interest = _fen(status["balance"][keep] * loans["annual_rate"][loan])
    overdue_days = status["overdue_days"][keep]
    kind = loans["kind"][loan]
    to_due = (due[loan] - t).astype(np.float64)
    now = k == 0
    out: Columns = {
        "loan_count_open": _count_by(h, now, n),
        "loan_balance_total": _yuan(_sum_by(h, balance, n, now)),
        "loan_balance_microcredit": _yuan(_sum_by(h, balance, n, now & (kind == "poverty_microcredit"))),
        "loan_balance_informal": _yuan(_sum_by(h, balance, n, now & (kind == "informal"))),
        "loan_balance_due_6m": _yuan(_sum_by(h, balance, n, now & (to_due <= LOAN_DUE_SOON_MONTHS))),
        "loan_balance_due_3m": _yuan(_sum_by(h, balance, n, now & (to_due <= LOAN_DUE_VERY_SOON_MONTHS))),
        "loan_interest_annual": _yuan(_sum_by(h, interest, n, now)),
        "loan_overdue_days_now": _max_by(h, overdue_days, n, now, 0.0),
        "loan_overdue_days_max_12m": _max_by(h, overdue_days, n, np.ones(len(h), dtype=bool), 0.0),
        "loans_issued_12m": _count_by(loan_h, exists & (issued_k < 12), n),
        "loan_principal_issued_12m": _yuan(
            _sum_by(loan_h, _fen(loans["principal"]), n, exists & (issued_k < 12))
        ),
        "loan_months_to_maturity": _min_by(h, to_due, n, now, np.nan),
    }
    # Months (k) in which the household's worst loan was overdue.
    worst = np.full((n, 12), -1.0)
    np.maximum.at(worst, (h, k), overdue_days)
    out["loan_overdue_months_12m"] = (worst > 0).sum(axis=1).astype(np.float64)
    before = _max_by(h, overdue_days, n, k == 3, 0.0)
    out["loan_overdue_trend_3m"] = (
        out["loan_overdue_days_now"] - before if clock.on_record(3) else np.full(n, np.nan)
    )
    return out


def _assistance_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    n, t = clock.households, clock.t
    assistance = clean.columns["assistance"]
    start = _month_of(assistance["start_month"])
    keep = start <= t
    h = rows.household_of("assistance")[keep]
    end = assistance["end_month"][keep]
    # an end after t was not known at t: the measure was simply running
    end_index = np.where(np.isnat(end), np.nan, _month_of(end).astype(np.float64))
    end_index[end_index > t] = np.nan
    known_end = ~np.isnan(end_index)
    running = ~known_end | (end_index >= t)
    measure = assistance["measure"][keep]
    out: Columns = {
        f"assist_{m}_now": (_count_by(h, running & (measure == m), n) > 0).astype(np.float64)
        for m in ASSISTANCE_MEASURES
    }
    out["assist_monthly_amount_now"] = _yuan(_sum_by(h, _fen(assistance["monthly_amount"][keep]), n, running))
    recent = ~known_end | (end_index >= t - 11)
    distinct = set(zip(h[recent].tolist(), measure[recent].tolist(), strict=True))
    out["assist_measures_12m"] = np.bincount(
        np.asarray([i for i, _ in distinct], dtype=np.int64), minlength=n
    ).astype(np.float64)
    ended = known_end & (end_index < t)
    out["assist_months_since_ended"] = t - _max_by(h, end_index, n, ended, np.nan)
    return out


def _monitoring_part(clean: CleanTables, rows: RowOwners, clock: Clock) -> Columns:
    n, t = clock.households, clock.t
    monitoring = clean.columns["monitoring"]
    identified = _month_of(monitoring["identified_month"])
    keep = identified <= t
    h = rows.household_of("monitoring")[keep]
    identified = identified[keep].astype(np.float64)
    eliminated_at = monitoring["eliminated_month"][keep]
    eliminated = np.where(np.isnat(eliminated_at), np.nan, _month_of(eliminated_at).astype(np.float64))
    eliminated[eliminated > t] = np.nan  # an elimination after t was not known at t
    risk = np.asarray([RISK_TYPE_CODES[v] for v in monitoring["risk_type"][keep]], dtype=np.float64)
    everyone = np.ones(len(h), dtype=bool)
    # arg_max(risk_code, identified * 10 + risk_code): the latest identification, on a tie the highest code
    order = _max_by(h, identified * 10 + risk, n, everyone, np.nan)
    return {
        "times_identified": _count_by(h, everyone, n),
        "under_monitoring_now": (_count_by(h, np.isnan(eliminated), n) > 0).astype(np.float64),
        "months_since_identified": t - _max_by(h, identified, n, everyone, np.nan),
        "months_since_eliminated": t - _max_by(h, eliminated, n, ~np.isnan(eliminated), np.nan),
        "last_risk_type_code": np.where(np.isnan(order), 0.0, np.mod(order, 10)),
    }
