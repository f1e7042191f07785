"""Hand-written counties: rows as a county's export holds them, and the folders and tables made of them.

For tests that need every row in view. A row is a dict of cell texts, ``""``
for an empty cell, exactly as a CSV export holds it; :func:`household` and
:func:`member` give a valid row that a test changes by keyword. The same rows
become a dataset folder (:func:`csv_folder`, :func:`parquet_folder`) or the
in-memory tables the API hands the loader (:func:`text_tables`,
:func:`typed_tables`). Generated counties are fixtures in ``conftest.py``;
:func:`small_model` trains a quick model on one for the batch job's tests.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from relapse_risk.features.contract import TABLES, TABLES_BY_NAME

if TYPE_CHECKING:
    from relapse_risk.serving.scoring import ResolvedModel

Rows = dict[str, list[dict[str, str]]]
"""A county: table name to its rows, every table of the contract present."""

RULES = {
    "min_reported_months": 6,
    "rigid_expense_ratio": 1.0,
    "income_drop_share": 0.5,
    "income_drop_band": 1.5,
}
"""The rule parameters of the published rules (R1-R3), as ``policy.json`` states them."""

POLICY: dict[str, object] = {
    "contract_version": 1,
    "region": "test",
    "data_start": "2024-01",
    "data_end": "2024-06",
    "monitoring_line": {"2024": 7200},
    "rules": RULES,
    "visit_share": 0.05,
}
"""Six months of 2024 under the default rules: the ``policy.json`` of every hand-written county."""


def household(household_id: str, village: str = "001", **changes: str) -> dict[str, str]:
    """A registered-poor household on the plain that escaped in 2019, in village ``village`` of
    township 530101001."""
    row = {
        "household_id": household_id,
        "county_code": "530101",
        "township_code": "530101001",
        "village_code": f"530101001{village}",
        "registered_poor": "true",
        "escape_year": "2019",
        "terrain": "plain",
        "relocated": "false",
        "housing_safe": "true",
        "cultivated_land_mu": "2.5",
    }
    return row | changes


def member(
    member_id: str, household_id: str, relation: str = "head", born: str = "1975", **changes: str
) -> dict[str, str]:
    """An insured member able to work, there all along; a spouse is a woman, anyone else a man."""
    row = {
        "member_id": member_id,
        "household_id": household_id,
        "birth_year": born,
        "sex": "f" if relation == "spouse" else "m",
        "relation": relation,
        "education": "junior",
        "labor_capacity": "full",
        "disability_grade": "0",
        "chronic_disease": "false",
        "medical_insurance": "true",
        "joined_month": "",
        "left_month": "",
    }
    return row | changes


def income(household_id: str, month: str, source: str, amount: str) -> dict[str, str]:
    return {"household_id": household_id, "month": month, "source": source, "amount": amount}


# -- folders --------------------------------------------------------------------------------------


def csv_text(rows: list[dict[str, str]], columns: list[str]) -> str:
    """A CSV file's text: a header of ``columns``, then each row's cells (a missing one empty)."""

    def cell(value: str) -> str:
        return f'"{value}"' if any(ch in value for ch in ',"\n') else value

    lines = [",".join(columns)] + [",".join(cell(row.get(c, "")) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def csv_folder(folder: Path, rows: Rows, policy: dict[str, object] | None = None) -> Path:
    """Every table as a spreadsheet exports it (columns in contract order, then any extra ones a row
    carries; a cell quoted only when it must be) and ``policy.json`` (:data:`POLICY` unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.json").write_text(json.dumps(policy or POLICY), encoding="utf-8")
    for table in TABLES:
        table_rows = rows[table.name]
        extra = [c for row in table_rows for c in row if c not in table.column_names]
        columns = list(table.column_names) + list(dict.fromkeys(extra))
        (folder / f"{table.name}.csv").write_text(csv_text(table_rows, columns), encoding="utf-8")
    return folder


def parquet_folder(folder: Path, rows: Rows, policy: dict[str, object] | None = None) -> Path:
    """Every table as Parquet with the contract's types (:func:`parquet_table`) and ``policy.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.json").write_text(json.dumps(policy or POLICY), encoding="utf-8")
    for name, table in typed_tables(rows).items():
        pq.write_table(table, folder / f"{name}.parquet")
    return folder


# -- tables ---------------------------------------------------------------------------------------


def text_tables(rows: Rows) -> dict[str, pa.Table]:
    """Every cell as the text a CSV export holds, empty cells as empty strings."""
    return {
        t.name: pa.table(
            {c: pa.array([r[c] for r in rows[t.name]], type=pa.string()) for c in t.column_names}
        )
        for t in TABLES
    }


ARROW_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "enum": pa.string(),
    "month": pa.date32(),
    "date": pa.date32(),
    "money": pa.float64(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
}
"""The Arrow type a Parquet export stores each column kind of the contract as."""


def _typed_value(kind: str, text: str) -> object:
    if text == "":
        return None
    if kind in ("month", "date"):
        return dt.date.fromisoformat(text if len(text) == 10 else f"{text}-01")
    if kind in ("money", "float"):
        return float(text)
    if kind == "int":
        return int(float(text))
    if kind == "bool":
        return text.strip().lower() in ("true", "1")
    return text


def parquet_table(name: str, rows: list[dict[str, str]], **types: pa.DataType) -> pa.Table:
    """The rows of table ``name`` with the contract's types (:data:`ARROW_TYPES`), empty cells null;
    ``types`` casts the columns it names to another type, as some exports store them."""
    table = TABLES_BY_NAME[name]
    arrays = {}
    for column in table.columns:
        values = [_typed_value(column.kind, row[column.name]) for row in rows]
        arrays[column.name] = pa.array(values, type=ARROW_TYPES[column.kind])
        if column.name in types:
            arrays[column.name] = arrays[column.name].cast(types[column.name])
    return pa.table(arrays)


def typed_tables(rows: Rows) -> dict[str, pa.Table]:
    """Every table as :func:`parquet_table` types it: what a Parquet folder holds."""
    return {t.name: parquet_table(t.name, rows[t.name]) for t in TABLES}


def small_model(
    folder: Path, *, max_rounds: int, early_stopping_rounds: int, last_quarters: int | None = None
) -> ResolvedModel:
    """A small model trained on a county folder's labelled quarter-ends (the latest ``last_quarters``,
    or all), the last two stopping and calibrating it: enough to rank, not a real evaluation; wrapped
    as the batch job takes a registered model."""
    from relapse_risk.features.catalogue import FEATURE_NAMES
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.training_table import build_training_table, quarter_ends
    from relapse_risk.models.model import RiskModel
    from relapse_risk.serving.scoring import ResolvedModel

    dataset = load_dataset(folder)
    months = quarter_ends(dataset.policy, 6)[-(last_quarters or 0) :]
    table = build_training_table(dataset, months, 6)
    cut = pd.Timestamp(months[-2])
    train, valid = table[table["as_of"] < cut], table[table["as_of"] >= cut]
    fitted = RiskModel(
        seed=3,
        learning_rate=0.1,
        max_rounds=max_rounds,
        early_stopping_rounds=early_stopping_rounds,
        num_leaves=15,
        min_child_samples=20,
    ).fit(train, train["label"], valid, valid["label"], feature_names=FEATURE_NAMES)
    return ResolvedModel(
        model=fitted, name="relapse-risk", version="1", uri="models:/relapse-risk/1", horizon=6
    )
