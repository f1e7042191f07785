"""``POST /score`` entries from a dataset folder: what a county's system would send at an as-of month.

For tests, the benchmark and integrators who want to see a valid request. Each
household becomes ``{"as_of": "YYYY-MM", "tables": {table: [row, ...]}}`` with
its rows in every contract table, cut at the as-of month the way the records
stood then:

- rows dated after the month (income, employment and loan months, bills,
  events, loans issued, support started, identifications, members who joined
  later) are left out, with the rows of those members and loans;
- end dates after the month (a member leaving, support ending, a risk marked
  eliminated) were not known yet and become null, as is an escape year after
  the as-of year.

Months are written ``YYYY-MM`` and dates ``YYYY-MM-DD``; every other value as
the JSON scalar it is. A CSV table's cells stay text, which the loader reads
exactly as it reads the CSV.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from relapse_risk.features.contract import TABLES, Table, format_month, month_index, month_start

# Columns dating a row: a row dated after the as-of month is not sent.
_DATED_BY = {
    "income": "month",
    "employment": "month",
    "loan_status": "month",
    "expenses": "date",
    "events": "date",
    "loans": "issued_month",
    "assistance": "start_month",
    "monitoring": "identified_month",
    "members": "joined_month",
}
# End dates not yet known at the as-of month when they fall after it.
_ENDED_BY = {"members": "left_month", "assistance": "end_month", "monitoring": "eliminated_month"}


def read_contract_table(folder: Path, table: Table) -> pa.Table:
    """A table file of a dataset folder (Parquet wins; CSV cells as text), contract columns only."""
    parquet, text = folder / f"{table.name}.parquet", folder / f"{table.name}.csv"
    if parquet.is_file():
        data = pq.read_table(parquet, columns=list(table.column_names))
    else:
        data = pa_csv.read_csv(
            text,
            read_options=pa_csv.ReadOptions(encoding="utf-8"),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(table.column_names, pa.string()),
                include_columns=list(table.column_names),
                strings_can_be_null=True,
            ),
        )
    return data


def _json_value(value: object, kind: str) -> object:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return format_month(value) if kind == "month" else value.isoformat()
    if isinstance(value, dt.datetime):
        return format_month(value.date()) if kind == "month" else value.date().isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _month_of(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return month_index(value.date())
    if isinstance(value, dt.date):
        return month_index(value)
    text = str(value).strip()
    if len(text) < 7:
        return None
    try:
        return int(text[:4]) * 12 + int(text[5:7]) - 1
    except ValueError:
        return None


def _year_of(value: object) -> int | None:
    try:
        return int(float(str(value))) if value is not None and str(value).strip() else None
    except ValueError:
        return None


class ScoreEntry(TypedDict):
    """One household of a ``/score`` body, as JSON: its as-of month and its rows in every contract table."""

    as_of: str
    tables: dict[str, list[dict[str, object]]]


def score_entries(folder: Path, household_ids: Sequence[str], as_of: dt.date) -> list[ScoreEntry]:
    """One ``/score`` entry per household id, in the given order; unknown ids raise ``KeyError``."""
    wanted = pa.array(list(dict.fromkeys(household_ids)), type=pa.string())
    limit = month_index(as_of)
    rows: dict[str, list[dict[str, object]]] = {}
    members_of: dict[str, str] = {}
    loans_of: dict[str, str] = {}
    for table in TABLES:
        data = read_contract_table(folder, table)
        if "household_id" in table.column_names:
            data = data.filter(pc.is_in(pc.cast(data["household_id"], pa.string()), value_set=wanted))
        elif table.name == "employment":
            data = data.filter(
                pc.is_in(data["member_id"], value_set=pa.array(list(members_of), type=pa.string()))
            )
        elif table.name == "loan_status":
            data = data.filter(
                pc.is_in(data["loan_id"], value_set=pa.array(list(loans_of), type=pa.string()))
            )
        kinds = {c.name: c.kind for c in table.columns}
        kept: list[dict[str, object]] = []
        for row in data.to_pylist():
            dated = _DATED_BY.get(table.name)
            if dated is not None and (month := _month_of(row.get(dated))) is not None and month > limit:
                continue
            ended = _ENDED_BY.get(table.name)
            if ended is not None and (month := _month_of(row.get(ended))) is not None and month > limit:
                row[ended] = None
            if (
                table.name == "households"
                and (year := _year_of(row.get("escape_year")))
                and year > as_of.year
            ):
                row["escape_year"] = None
            member = row.get("member_id")
            if (
                table.name in ("employment", "expenses", "events")
                and member is not None
                and str(member) not in members_of
            ):
                continue
            if table.name == "loan_status" and str(row["loan_id"]) not in loans_of:
                continue
            kept.append({name: _json_value(value, kinds[name]) for name, value in row.items()})
        if table.name == "members":
            members_of = {str(r["member_id"]): str(r["household_id"]) for r in kept}
        if table.name == "loans":
            loans_of = {str(r["loan_id"]): str(r["household_id"]) for r in kept}
        rows[table.name] = kept

    by_household: dict[str, dict[str, list[dict[str, object]]]] = {
        h: {t.name: [] for t in TABLES} for h in household_ids
    }
    for table in TABLES:
        for row in rows[table.name]:
            owner = _owner(table.name, row, members_of, loans_of)
            if owner in by_household:
                by_household[owner][table.name].append(row)
    entries: list[ScoreEntry] = []
    for household_id in household_ids:
        if not by_household[household_id]["households"]:
            raise KeyError(f"{folder}: household {household_id!r} is not in households")
        entries.append({"as_of": format_month(month_start(limit)), "tables": by_household[household_id]})
    return entries


def _owner(
    table: str, row: dict[str, object], members_of: dict[str, str], loans_of: dict[str, str]
) -> str | None:
    if "household_id" in row:
        return None if row["household_id"] is None else str(row["household_id"])
    if table == "employment":
        return members_of.get(str(row["member_id"]))
    if table == "loan_status":
        return loans_of.get(str(row["loan_id"]))
    return None
