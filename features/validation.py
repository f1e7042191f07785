"""The integrity rules of the data contract, written as SQL over a staged table.

The loader (:mod:`features.loading`) stages each table file as a DuckDB view with
one column per contract column plus ``_row`` (1-based data-row number). This
module turns those raw values into canonical types and states every row-level
rule as a SQL condition, so that a county of a million households is checked by
DuckDB in a few scans instead of row by row in Python.

How a raw value becomes a typed one (decided per column from the file):

- ``text``: CSV cells, and Parquet string columns of non-string kinds. Surrounding
  whitespace is trimmed and an empty cell is null. Numbers use ``.`` as decimal
  point and no thousands separators; whole numbers may be written ``2`` or
  ``2.0``; booleans are ``true``/``false``/``1``/``0`` in any letter case; months
  are ``YYYY-MM`` or ``YYYY-MM-DD`` (the day must then be 01); dates are
  ``YYYY-MM-DD``. Enumerated values are *not* lower-cased: ``Plain`` is rejected,
  `` plain `` (padded) is accepted as ``plain``.
- ``native``: a Parquet column already of a usable type (strings taken exactly,
  except that an empty string counts as missing).
- ``float_to_int``: a Parquet float or decimal column for an ``int`` kind (pandas
  writes nullable integers as floats); values must be whole.
- ``int_to_bool``: a Parquet integer column for a ``bool`` kind; values must be 0 or 1.
- ``timestamp``: a Parquet timestamp without time zone for a month or date; the
  time of day must be midnight.
- ``all_null``: a column whose Parquet type is wrong but which holds no value
  at all (pyarrow writes an all-None column with the null type).

Rule names (the ``rule`` of a :class:`~features.dataset.Reject`) are stable:

- ``type``: the value cannot be read as the column's type (names the value).
- ``not_null``: a required value is missing.
- ``enum``: not one of the contract's lower-case values.
- ``not_finite``: NaN or infinity in a money or float column.
- ``negative``: below 0 where the contract says >= 0 (income only for sources
  other than business and agriculture).
- ``range``: outside a stated range (disability_grade 0-4, severity 1-3,
  term_months >= 1, principal > 0).
- ``implausible_year``: birth_year more than 120 years before data_end or after
  it; escape_year before 1980 or after data_end.
- ``code_format``, ``code_prefix``: county 6 digits, township 9 digits starting
  with the county code, village 12 digits starting with the township code.
- ``not_first_of_month``: a month value on another day than the 1st.
- ``after_data_end``: a month or date after policy.json's data_end month.
- ``date_order``: left_month not after joined_month, end_month before
  start_month, eliminated_month before identified_month.
- ``reimbursed_exceeds_amount``: more paid back than billed.
- ``not_pseudonymous``: a household or member id that looks like a resident
  identity card number or contains Chinese characters (a name); the value is
  never written to the report.
- ``duplicate_key``: a repeated key; every occurrence after the first is rejected.
- ``foreign_key``: the referenced household, member or loan was not loaded
  (missing, or rejected itself), or a bill's or event's member belongs to
  another household.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import RenderableType
from rich.table import Table as RichTable

from .contract import INCOME_SOURCES, NET_INCOME_SOURCES, Column, ForeignKey, Table, format_month
from .dataset import Dataset, Reject, duckdb_type
from .policy import Policy

Reading = Literal["text", "native", "float_to_int", "int_to_bool", "timestamp", "all_null"]

REJECT_FIELDS = ("table", "row", "column", "rule", "reason", "household_id", "value")

# The contract requires pseudonymous keys, never an identity card number or a name.
# They are checked where each key is defined; a child row using such a key then
# fails its foreign key, and the loader masks any such value in the report.
IDENTIFIER_KEYS = {"households": "household_id", "members": "member_id"}
_RESIDENT_ID_PATTERN = (
    r"[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
)
MASKED_IDENTIFIER = "(not shown: looks like personal data)"


def looks_personal_sql(expression: str) -> str:
    """True where a text looks like a resident identity card number or holds Chinese characters (a name)."""
    return (
        f"((length({expression}) = 18 AND regexp_full_match({expression}, {literal(_RESIDENT_ID_PATTERN)})) "
        rf"OR (strlen({expression}) > length({expression}) AND regexp_matches({expression}, '\p{{Han}}')))"
    )


# A person recorded with a birth year more than this many years before the end
# of the data is a typing error, not a centenarian.
MAX_AGE_YEARS = 120
# Households were first declared out of poverty under the programmes of the 1980s:
# an earlier escape year is a typing error (19 for 2019, say).
EARLIEST_ESCAPE_YEAR = 1980


def quote(name: str) -> str:
    """A SQL identifier, quoted so that any column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def raw_column(name: str) -> str:
    """Name of the typed view's column that passes the file's value through unchanged."""
    return quote(f"{name}__raw")


def text_column(name: str) -> str:
    """Name of the typed view's column holding a text cell as read (trimmed, empty as null)."""
    return quote(f"{name}__text")


def bad_column(name: str) -> str:
    """Name of the staged flag that is true when the value could not be read as its type."""
    return quote(f"{name}__bad")


def _shown(expression: str) -> str:
    """SQL for ``'value'`` in a reason, quoted like Python's repr of a short string."""
    return f"('''' || {expression} || '''')"


# ---------------------------------------------------------------- typing


@dataclass(frozen=True)
class TypedColumn:
    """SQL that reads one contract column from its staged source value."""

    typed: str
    """Expression of the canonical type; null when the value is missing or unreadable (``bad``)."""
    bad: str
    """Condition that is true when a value is present but cannot be read as the type."""
    bad_reason: str
    """Expression of the reason text, evaluated only where ``bad`` holds."""
    text: str
    """Expression of the value as text, for reasons and the report."""


_TYPE_WORDS = {
    "int": "a whole number",
    "money": "a number",
    "float": "a number",
    "bool": "a boolean (true/false or 1/0)",
    "month": "a month (YYYY-MM or YYYY-MM-DD)",
    "date": "a date (YYYY-MM-DD)",
}


def cell_text_sql(source: str) -> str:
    """A text cell as read: surrounding whitespace trimmed, an empty cell null."""
    return f"NULLIF(trim(CAST({source} AS VARCHAR)), '')"


def typed_column(
    column: Column, reading: Reading, source: str, text_source: str | None = None
) -> TypedColumn:
    """How to read ``column`` from the SQL expression ``source`` given how the file stores it.

    ``text_source`` names a column already holding :func:`cell_text_sql` of
    ``source`` (text readings only), so that the typing expressions, which use
    the text several times, stay small to plan.
    """
    target = duckdb_type(column)
    kind = column.kind
    if reading == "all_null":
        return TypedColumn(f"CAST(NULL AS {target})", "FALSE", "NULL", "CAST(NULL AS VARCHAR)")
    if reading == "text":
        return _typed_from_text(column, text_source or cell_text_sql(source))
    text = f"CAST({source} AS VARCHAR)"
    not_a = f"{_shown(text)} || ' is not {_TYPE_WORDS.get(kind, 'readable')}'"
    if kind in ("str", "enum"):
        # Parquet strings are taken exactly as written; an empty string is no value.
        return TypedColumn(f"NULLIF(CAST({source} AS VARCHAR), '')", "FALSE", "NULL", text)
    if kind in ("money", "float"):
        return TypedColumn(f"CAST({source} AS DOUBLE)", "FALSE", "NULL", text)
    if kind == "int" and reading == "native":
        typed = f"TRY_CAST({source} AS BIGINT)"
        return TypedColumn(typed, f"({source} IS NOT NULL AND {typed} IS NULL)", not_a, text)
    if kind == "int" and reading == "float_to_int":
        return _whole_number(f"CAST({source} AS DOUBLE)", text)
    if kind == "bool" and reading == "native":
        return TypedColumn(f"CAST({source} AS BOOLEAN)", "FALSE", "NULL", text)
    if kind == "bool" and reading == "int_to_bool":
        typed = f"(CASE WHEN {source} = 1 THEN TRUE WHEN {source} = 0 THEN FALSE END)"
        return TypedColumn(typed, f"({source} IS NOT NULL AND {typed} IS NULL)", not_a, text)
    if kind in ("month", "date") and reading == "native":
        return TypedColumn(f"CAST({source} AS DATE)", "FALSE", "NULL", text)
    if kind in ("month", "date") and reading == "timestamp":
        midnight = f"CAST(CAST({source} AS DATE) AS TIMESTAMP) = CAST({source} AS TIMESTAMP)"
        typed = f"(CASE WHEN {midnight} THEN CAST({source} AS DATE) END)"
        bad = f"({source} IS NOT NULL AND NOT {midnight})"
        reason = f"{_shown(text)} || ' has a time of day; {_TYPE_WORDS[kind]} is expected'"
        return TypedColumn(typed, bad, reason, text)
    raise ValueError(f"no reading {reading!r} for a {kind} column")  # the loader never asks for one


def _whole_number(number: str, text: str) -> TypedColumn:
    # Whole numbers written as 2.0 (spreadsheets, pandas floats) are fine; 2.5 is not.
    whole = (
        f"({number} IS NOT NULL AND isfinite({number}) AND {number} = trunc({number}) "
        f"AND abs({number}) < 1e15)"
    )
    typed = f"(CASE WHEN {whole} THEN CAST({number} AS BIGINT) END)"
    bad = f"({text} IS NOT NULL AND NOT coalesce({whole}, FALSE))"
    return TypedColumn(typed, bad, f"{_shown(text)} || ' is not a whole number'", text)


_YEAR_MONTH = "'[0-9]{4}-[0-9]{2}'"
_YEAR_MONTH_DAY = "'[0-9]{4}-[0-9]{2}-[0-9]{2}'"


def _typed_from_text(column: Column, text: str) -> TypedColumn:
    kind = column.kind
    not_a = f"{_shown(text)} || ' is not {_TYPE_WORDS.get(kind, 'readable')}'"
    if kind in ("str", "enum"):
        return TypedColumn(text, "FALSE", "NULL", text)
    if kind in ("money", "float"):
        typed = f"TRY_CAST({text} AS DOUBLE)"
    elif kind == "int":
        return _whole_number(f"TRY_CAST({text} AS DOUBLE)", text)
    elif kind == "bool":
        typed = (
            f"(CASE lower({text}) WHEN 'true' THEN TRUE WHEN '1' THEN TRUE "
            f"WHEN 'false' THEN FALSE WHEN '0' THEN FALSE END)"
        )
    elif kind == "month":
        typed = (
            f"(CASE WHEN regexp_full_match({text}, {_YEAR_MONTH}) THEN TRY_CAST({text} || '-01' AS DATE) "
            f"WHEN regexp_full_match({text}, {_YEAR_MONTH_DAY}) THEN TRY_CAST({text} AS DATE) END)"
        )
    elif kind == "date":
        typed = f"(CASE WHEN regexp_full_match({text}, {_YEAR_MONTH_DAY}) THEN TRY_CAST({text} AS DATE) END)"
    else:  # pragma: no cover - ColumnKind is closed
        raise ValueError(f"unknown column kind {kind!r}")
    return TypedColumn(typed, f"({text} IS NOT NULL AND {typed} IS NULL)", not_a, text)


@dataclass(frozen=True)
class StagedTable:
    """A contract table and how each of its columns is read from the file."""

    table: Table
    readings: dict[str, Reading]

    def column(self, name: str) -> TypedColumn:
        """SQL for one column over the typed view (expressions read the ``__raw`` and ``__text`` columns)."""
        reading = self.readings[name]
        text_source = text_column(name) if reading == "text" else None
        return typed_column(self.table.column(name), reading, raw_column(name), text_source)

    def text(self, name: str) -> str:
        """The value as text, for reasons and the report.

        An expression rather than a view column, so that it is only computed for
        the rows that break a rule.
        """
        return self.column(name).text


def typed_view_sql(staged: StagedTable, raw_relation: str) -> str:
    """A SELECT over the staged raw relation: ``_row``, each column typed, its raw value and its bad flag.

    Text readings also keep the trimmed text of the cell (``__text``), computed once per row.
    """
    raw = ", ".join(
        f"{quote(c.name)} AS {raw_column(c.name)}"
        + (
            f", {cell_text_sql(quote(c.name))} AS {text_column(c.name)}"
            if staged.readings[c.name] == "text"
            else ""
        )
        for c in staged.table.columns
    )
    parts = ["*"]
    for column in staged.table.columns:
        typed = staged.column(column.name)
        parts.append(f"{typed.typed} AS {quote(column.name)}")
        parts.append(f"{typed.bad} AS {bad_column(column.name)}")
    return f"SELECT {', '.join(parts)} FROM (SELECT _row, {raw} FROM {raw_relation})"


# ---------------------------------------------------------------- row rules


@dataclass(frozen=True)
class RowRule:
    """One row-level integrity rule as SQL over the typed view."""

    column: str
    rule: str
    condition: str
    """True where the row breaks the rule."""
    reason: str
    """Reason text, evaluated where ``condition`` holds."""
    value: str
    """Offending value as text."""


def _ok(name: str) -> str:
    """The typed value is present (and so was read without error: unreadable values type as null)."""
    return f"({quote(name)} IS NOT NULL)"


def _number_ok(name: str) -> str:
    return f"({_ok(name)} AND isfinite({quote(name)}))"


def _month_text(expression: str) -> str:
    return f"strftime({expression}, '%Y-%m')"


def row_rules(staged: StagedTable, policy: Policy) -> list[RowRule]:
    """Every rule that one row can break on its own, for one table under one policy."""
    rules: list[RowRule] = []
    for column in staged.table.columns:
        rules.extend(_column_rules(staged, column, policy))
    rules.extend(_cross_column_rules(staged))
    return rules


def _column_rules(staged: StagedTable, column: Column, policy: Policy) -> list[RowRule]:
    table = staged.table
    name = column.name
    col = quote(name)
    text = staged.text(name)
    typed = staged.column(name)
    can_be_bad = typed.bad != "FALSE"
    # Rules that cannot fire for this file's column are left out: fewer branches, cheaper queries.
    rules = [RowRule(name, "type", bad_column(name), typed.bad_reason, text)] if can_be_bad else []
    if not column.nullable:
        missing = f"({col} IS NULL AND NOT {bad_column(name)})" if can_be_bad else f"({col} IS NULL)"
        rules.append(RowRule(name, "not_null", missing, "'required value is missing'", "NULL"))
    if IDENTIFIER_KEYS.get(table.name) == name:
        rules.append(
            RowRule(
                name,
                "not_pseudonymous",
                f"({_ok(name)} AND {looks_personal_sql(col)})",
                "'looks like an identity card number or a name; identifiers must be pseudonymous'",
                literal(MASKED_IDENTIFIER),
            )
        )
    if column.kind == "enum":
        allowed = ", ".join(literal(v) for v in column.values)
        rules.append(
            RowRule(
                name,
                "enum",
                f"({_ok(name)} AND {col} NOT IN ({allowed}))",
                f"{_shown(col)} || {literal(' is not one of: ' + ', '.join(column.values))}",
                text,
            )
        )
    if column.kind in ("money", "float"):
        rules.append(
            RowRule(
                name,
                "not_finite",
                f"({_ok(name)} AND NOT isfinite({col}))",
                f"{_shown(text)} || ' is not a finite number'",
                text,
            )
        )
    rules.extend(_bound_rules(staged, column, policy))
    if column.digits is not None:
        rules.append(
            RowRule(
                name,
                "code_format",
                f"({_ok(name)} AND NOT regexp_full_match({col}, '[0-9]{{{column.digits}}}'))",
                f"{_shown(col)} || ' is not a {column.digits}-digit code'",
                text,
            )
        )
    if column.kind == "month":
        rules.append(
            RowRule(
                name,
                "not_first_of_month",
                f"({_ok(name)} AND day({col}) <> 1)",
                f"{_shown(text)} || ' is not the first day of a month'",
                text,
            )
        )
    if column.kind in ("month", "date"):
        rules.append(_after_data_end(staged, column, policy))
    return rules


def _after_data_end(staged: StagedTable, column: Column, policy: Policy) -> RowRule:
    name = column.name
    col = quote(name)
    end = format_month(policy.data_end)
    # data_end names a whole month: a bill dated on its 20th is still inside the data.
    first_day_after = (policy.data_end.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    shown = _month_text(col) if column.kind == "month" else f"strftime({col}, '%Y-%m-%d')"
    return RowRule(
        name,
        "after_data_end",
        f"({_ok(name)} AND {col} >= DATE '{first_day_after.isoformat()}')",
        f"{shown} || {literal(f' is after data_end {end}')}",
        staged.text(name),
    )


def _bound_rules(staged: StagedTable, column: Column, policy: Policy) -> list[RowRule]:
    table = staged.table
    name = column.name
    col = quote(name)
    text = staged.text(name)
    present = _number_ok(name) if column.kind in ("money", "float") else _ok(name)
    if table.name == "income" and name == "amount":
        # Judged only against a known source: with an unknown one the enum reject says what is wrong.
        gross = ", ".join(literal(s) for s in INCOME_SOURCES if s not in NET_INCOME_SOURCES)
        return [
            RowRule(
                name,
                "negative",
                f"({present} AND {col} < 0 AND source IN ({gross}))",
                f"{_shown(text)} || ' is negative; only business and agriculture income may be below 0'",
                text,
            )
        ]
    if table.name == "loans" and name == "principal":
        return [
            RowRule(
                name,
                "range",
                f"({present} AND {col} <= 0)",
                f"{_shown(text)} || ' must be greater than 0'",
                text,
            )
        ]
    if name == "birth_year":
        return [_year_rule(name, text, policy.data_end.year - MAX_AGE_YEARS, policy.data_end.year)]
    if name == "escape_year":
        return [_year_rule(name, text, EARLIEST_ESCAPE_YEAR, policy.data_end.year)]
    low, high = column.minimum, column.maximum
    if low is None and high is None:
        return []
    if low == 0 and high is None:
        return [
            RowRule(name, "negative", f"({present} AND {col} < 0)", f"{_shown(text)} || ' is negative'", text)
        ]
    conditions = []
    if low is not None:
        conditions.append(f"{col} < {low}")
    if high is not None:
        conditions.append(f"{col} > {high}")
    if low is not None and high is not None:
        wanted = f" is outside {_bound(low)}..{_bound(high)}"
    elif low is not None:
        wanted = f" must be at least {_bound(low)}"
    else:
        assert high is not None  # both bounds None returned [] above
        wanted = f" must be at most {_bound(high)}"
    return [
        RowRule(
            name,
            "range",
            f"({present} AND ({' OR '.join(conditions)}))",
            f"{_shown(text)} || {literal(wanted)}",
            text,
        )
    ]


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _year_rule(name: str, text: str, low: int, high: int) -> RowRule:
    col = quote(name)
    return RowRule(
        name,
        "implausible_year",
        f"({_ok(name)} AND ({col} < {low} OR {col} > {high}))",
        f"{_shown(text)} || {literal(f' is not a plausible year ({low}..{high})')}",
        text,
    )


def _cross_column_rules(staged: StagedTable) -> list[RowRule]:
    table = staged.table
    rules: list[RowRule] = []
    names = set(table.column_names)
    for child, parent in (("township_code", "county_code"), ("village_code", "township_code")):
        if child in names and parent in names:
            child_digits = table.column(child).digits
            parent_digits = table.column(parent).digits
            formatted = (
                f"regexp_full_match({quote(child)}, '[0-9]{{{child_digits}}}') "
                f"AND regexp_full_match({quote(parent)}, '[0-9]{{{parent_digits}}}')"
            )
            rules.append(
                RowRule(
                    child,
                    "code_prefix",
                    f"({_ok(child)} AND {_ok(parent)} AND {formatted} "
                    f"AND NOT starts_with({quote(child)}, {quote(parent)}))",
                    f"{_shown(quote(child))} || ' does not start with {parent} ' || {_shown(quote(parent))}",
                    staged.text(child),
                )
            )
    orders = {
        "members": ("left_month", "joined_month", "<=", "is not after"),
        "assistance": ("end_month", "start_month", "<", "is before"),
        "monitoring": ("eliminated_month", "identified_month", "<", "is before"),
    }
    if table.name in orders:
        later, earlier, broken, words = orders[table.name]
        rules.append(
            RowRule(
                later,
                "date_order",
                f"({_ok(later)} AND {_ok(earlier)} AND {quote(later)} {broken} {quote(earlier)})",
                f"'{later} ' || {_month_text(quote(later))} || {literal(f' {words} {earlier} ')} || "
                f"{_month_text(quote(earlier))}",
                staged.text(later),
            )
        )
    if table.name == "expenses":
        rules.append(
            RowRule(
                "reimbursed",
                "reimbursed_exceeds_amount",
                # Only between two valid amounts: a negative amount is reported as such, not as this.
                f"({_number_ok('reimbursed')} AND {_number_ok('amount')} AND reimbursed >= 0 AND amount >= 0 "
                "AND reimbursed > amount)",
                f"'reimbursed ' || {staged.text('reimbursed')} || "
                f"' exceeds amount ' || {staged.text('amount')}",
                staged.text("reimbursed"),
            )
        )
    return rules


# Tables without a household column reach their household through a parent row.
HOUSEHOLD_LINKS: dict[str, tuple[str, str]] = {
    "employment": ("member_id", "members"),
    "loan_status": ("loan_id", "loans"),
}

REJECT_COLUMNS_SQL = "row, column_name, rule, reason, household_id, value, link"
"""Columns every reject query returns, in this order."""


def _household(table: Table, alias: str = "") -> tuple[str, str]:
    """SQL for the row's household id (when the table has one) and for its link to a parent row."""
    prefix = f"{alias}." if alias else ""
    household = (
        f"{prefix}{quote(table.household_column)}" if table.household_column else "CAST(NULL AS VARCHAR)"
    )
    link = (
        f"{prefix}{quote(HOUSEHOLD_LINKS[table.name][0])}"
        if table.name in HOUSEHOLD_LINKS
        else "CAST(NULL AS VARCHAR)"
    )
    return household, link


def row_rejects_sql(table: Table, rules: Sequence[RowRule], typed_relation: str, *, single_scan: bool) -> str:
    """Every broken row rule, with the columns of :data:`REJECT_COLUMNS_SQL`.

    ``single_scan`` builds one query that reads the relation once (for large
    tables); otherwise one small SELECT per rule, which DuckDB plans faster.
    """
    household, link = _household(table)
    if not single_scan:
        return " UNION ALL ".join(
            f"SELECT _row AS row, {literal(r.column)} AS column_name, {literal(r.rule)} AS rule, "
            f"CAST({r.reason} AS VARCHAR) AS reason, {household} AS household_id, "
            f"CAST({r.value} AS VARCHAR) AS value, {link} AS link FROM {typed_relation} WHERE {r.condition}"
            for r in rules
        )
    problems = ", ".join(
        f"CASE WHEN {r.condition} THEN {{'column': {literal(r.column)}, 'rule': {literal(r.rule)}, "
        f"'reason': CAST({r.reason} AS VARCHAR), 'value': CAST({r.value} AS VARCHAR)}} END"
        for r in rules
    )
    any_broken = " OR ".join(r.condition for r in rules)
    # Filter first so that the list of problems is only built for the (few) broken rows.
    return f"""
        SELECT _row AS row, p.column AS column_name, p.rule AS rule, p.reason AS reason,
               household_id, p.value AS value, link
        FROM (
            SELECT _row, {household} AS household_id, {link} AS link,
                   unnest(list_filter([{problems}], lambda x: x IS NOT NULL)) AS p
            FROM {typed_relation}
            WHERE {any_broken}
        )
    """


# ---------------------------------------------------------------- keys


def repeated_key_hashes_sql(key: tuple[str, ...], candidates: str) -> str:
    """Hashes of keys that occur more than once among ``candidates``.

    Grouping by one 64-bit hash instead of the full key keeps the aggregate small
    for 100 million income rows; rows behind a repeated hash are compared exactly
    by :func:`duplicate_rejects_sql`, so a hash collision rejects nothing.
    """
    columns = ", ".join(quote(k) for k in key)
    return f"SELECT hash({columns}) AS h FROM {candidates} GROUP BY h HAVING count(*) > 1"


def any_repeated_key_sql(key: tuple[str, ...], candidates: str) -> str:
    """Rows (at most one) when some key hash occurs more than once among ``candidates``; else none.

    Equivalent to asking whether :func:`repeated_key_hashes_sql` is empty, at about
    half its cost on 100 million rows: sorting the hashes and comparing neighbours
    needs no hash table with one entry per key.
    """
    columns = ", ".join(quote(k) for k in key)
    return f"""
        SELECT 1 FROM (
            SELECT h, lag(h) OVER (ORDER BY h) AS previous
            FROM (SELECT hash({columns}) AS h FROM {candidates})
        )
        WHERE h = previous
        LIMIT 1
    """


def duplicate_rejects_sql(staged: StagedTable, key: tuple[str, ...], candidates: str) -> str:
    """Every occurrence of a key after its first among ``candidates``, naming the first."""
    household, link = _household(staged.table)
    columns = ", ".join(quote(k) for k in key)
    shown = " || ', ' || ".join(staged.text(k) for k in key)
    same = ", ".join(key)
    return f"""
        SELECT _row AS row, {literal(",".join(key))} AS column_name, 'duplicate_key' AS rule,
               'duplicates row ' || first_row || {literal(f" (same {same})")} AS reason,
               household_id, value, link
        FROM (
            SELECT _row, {household} AS household_id, {link} AS link, {shown} AS value,
                   min(_row) OVER (PARTITION BY {columns}) AS first_row
            FROM {candidates}
            WHERE hash({columns}) IN ({repeated_key_hashes_sql(key, candidates)})
        )
        WHERE _row > first_row
    """


def foreign_key_rejects_sql(
    table: Table, foreign_key: ForeignKey, candidates: str, parent_clean: str, parent_typed: str
) -> str:
    """Rows whose key does not resolve to a loaded row of the parent table.

    When the parent file has the key but that row was rejected, the reason says so,
    so that cascades read as one story in the report.
    """
    household, link = _household(table, "child")
    col = quote(foreign_key.column)
    target = quote(foreign_key.target)
    return f"""
        WITH missing AS MATERIALIZED (
            SELECT _row, child.{col} AS key, {household} AS household_id, {link} AS link
            FROM {candidates} AS child
            WHERE {col} IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM {parent_clean} AS parent WHERE parent.{target} = child.{col})
        ),
        parent_rows AS (
            SELECT {target} AS key, min(_row) AS parent_row
            FROM {parent_typed}
            WHERE {target} IN (SELECT key FROM missing)
            GROUP BY {target}
        )
        SELECT m._row AS row, {literal(foreign_key.column)} AS column_name, 'foreign_key' AS rule,
               CASE WHEN p.parent_row IS NULL
                    THEN {_shown("m.key")} || {literal(f" is not in {foreign_key.table}")}
                    ELSE {_shown("m.key")} || {literal(f" refers to {foreign_key.table} row ")}
                         || p.parent_row
                         || ', which was rejected'
               END AS reason,
               m.household_id, m.key AS value, m.link
        FROM missing AS m LEFT JOIN parent_rows AS p ON p.key = m.key
    """


def member_household_rejects_sql(candidates: str, members_clean: str) -> str:
    """Rows naming a member of another household than the row's own."""
    return f"""
        SELECT child._row AS row, 'member_id' AS column_name, 'foreign_key' AS rule,
               {_shown("child.member_id")} || ' belongs to household ' || {_shown("m.household_id")}
               || ', not ' || {_shown("child.household_id")} AS reason,
               child.household_id AS household_id, child.member_id AS value, CAST(NULL AS VARCHAR) AS link
        FROM {candidates} AS child JOIN {members_clean} AS m ON m.member_id = child.member_id
        WHERE child.household_id IS NOT NULL AND m.household_id <> child.household_id
    """


def chained_rejects_sql(steps: Sequence[Callable[[str], str]], typed_relation: str) -> str:
    """All rejects of a table's check steps in one query, each step seeing only the rows earlier steps kept.

    Each step maps a relation of candidate rows to its reject query (the columns of
    :data:`REJECT_COLUMNS_SQL`). The first step sees ``typed_relation``; step *k*
    sees the rows no step before it rejected: the same order of checks as running
    the steps one statement at a time, in a single statement for small tables.
    """
    ctes: list[str] = []
    candidates = typed_relation
    for index, step in enumerate(steps):
        ctes.append(f"_step{index} AS MATERIALIZED ({step(candidates)})")
        if index < len(steps) - 1:
            ctes.append(
                f"_kept{index} AS MATERIALIZED (SELECT * FROM {candidates} "
                f"WHERE _row NOT IN (SELECT row FROM _step{index}))"
            )
            candidates = f"_kept{index}"
    union = " UNION ALL ".join(f"SELECT {REJECT_COLUMNS_SQL} FROM _step{i}" for i in range(len(steps)))
    return f"WITH {', '.join(ctes)} {union}"


# ---------------------------------------------------------------- report


def write_rejects(rejects: Sequence[Reject], out_dir: Path) -> tuple[Path, Path]:
    """Write ``rejects.csv`` (UTF-8 with BOM, for spreadsheets) and ``rejects.json`` into ``out_dir``.

    Both hold one record per reject with the fields table, row, column, rule,
    reason, household_id, value, in the order given.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "rejects.csv"
    json_path = out_dir / "rejects.json"
    records = [asdict(r) for r in rejects]
    with csv_path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=REJECT_FIELDS)
        writer.writeheader()
        writer.writerows(records)
    json_path.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return csv_path, json_path


def default_report_dir(data: Path) -> Path:
    """The default report folder: ``<DATA>-validation`` beside the dataset folder, never inside it."""
    data = data.resolve()
    return data.parent / f"{data.name}-validation"


def validation_summary(dataset: Dataset) -> dict[str, Any]:
    """Counts of a load: rows read and loaded per table, rejects per (table, column, rule), households hit."""
    tables = {}
    for name, rows_read in dataset.input_rows.items():
        loaded = dataset.row_count(name)
        path = dataset.input_files.get(name)
        tables[name] = {
            "file": path.name if path else None,
            "rows_read": rows_read,
            "rows_loaded": loaded,
            "rows_rejected": rows_read - loaded,
        }
    households = dataset.rejected_households()
    return {
        "source": str(dataset.source) if dataset.source else None,
        "fingerprint": dataset.fingerprint,
        "data_start": format_month(dataset.policy.data_start),
        "data_end": format_month(dataset.policy.data_end),
        "tables": tables,
        "rejects": [
            {"table": t, "column": c, "rule": r, "count": n} for (t, c, r), n in dataset.reject_counts.items()
        ],
        "rejects_total": dataset.total_rejects,
        "rejects_listed": len(dataset.rejects),
        "households_affected": len(households),
        "households_rejected": tables["households"]["rows_rejected"] if "households" in tables else 0,
    }


def write_validation_report(dataset: Dataset, summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """The rejects (csv, json) and ``summary.json`` (from :func:`validation_summary`) in ``out_dir``."""
    csv_path, json_path = write_rejects(dataset.rejects, out_dir)
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return {"rejects_csv": csv_path, "rejects_json": json_path, "summary": summary_path}


def summary_renderables(summary: dict[str, Any], written: dict[str, Path]) -> list[RenderableType]:
    """Rich tables for the console: rows per table, rejects per table and rule, where the report is."""
    rows = RichTable(title="Rows per table", title_justify="left")
    for heading in ("table", "file", "read", "loaded", "rejected"):
        rows.add_column(
            heading, justify="right" if heading in ("read", "loaded", "rejected") else "left", overflow="fold"
        )
    for name, counts in summary["tables"].items():
        rejected = counts["rows_rejected"]
        rows.add_row(
            name,
            counts["file"],
            f"{counts['rows_read']:,}",
            f"{counts['rows_loaded']:,}",
            f"[red]{rejected:,}[/red]" if rejected else "0",
        )
    parts: list[RenderableType] = [rows]
    if summary["rejects"]:
        rules = RichTable(title="Rejects per table and rule", title_justify="left")
        for heading in ("table", "column", "rule", "count"):
            rules.add_column(heading, justify="right" if heading == "count" else "left", overflow="fold")
        for item in summary["rejects"]:
            rules.add_row(item["table"], item["column"], item["rule"], f"{item['count']:,}")
        parts.append(rules)
    verdict = (
        f"{summary['rejects_total']:,} rejects; "
        f"{summary['households_affected']:,} households have a rejected row "
        f"({summary['households_rejected']:,} of them rejected outright)."
        if summary["rejects_total"]
        else "No rejects: every row keeps the contract."
    )
    if summary["rejects_listed"] < summary["rejects_total"]:
        listed = summary["rejects_listed"]
        verdict += f" The rejects files list the first {listed:,}; summary.json counts all of them."
    parts.append(f"Dataset is usable. {verdict}")
    parts.append("Report: " + ", ".join(str(p) for p in written.values()))
    return parts
