"""In-memory tables load exactly as a dataset folder holding the same rows does.

``load_tables`` is the loader's entry for rows that are already in memory (the
API's requests): the same row rules, keys, foreign keys and reject rows with
1-based row numbers of each table as ``load_dataset`` gives for a folder. Each
test builds one small county with a few bad rows, loads it both ways and
compares everything a caller can see.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from builders import (
    POLICY,
    Rows,
    csv_folder,
    household,
    income,
    member,
    parquet_folder,
    text_tables,
    typed_tables,
)
from relapse_risk.features import loading
from relapse_risk.features.contract import TABLES
from relapse_risk.features.dataset import Dataset, DatasetError, load_dataset
from relapse_risk.features.loading import load_tables
from relapse_risk.features.policy import Policy

# A valid county except for the rows marked: every kind of check fires at least once.
COUNTY: Rows = {
    "households": [
        household("0001"),
        household("0002", terrain="Plain"),  # enum: the household and its rows go
        household("0003", registered_poor="false", escape_year=""),
        household("0001", terrain="hill"),  # duplicate key
    ],
    "members": [
        member("M01", "0001"),
        member("M02", "0002"),  # its household was rejected
        member("M03", "0003", relation="cousin"),  # enum
        member("M04", "0003", "spouse", joined_month="2024-02"),
    ],
    "income": [
        income("0001", "2024-01", "wage_local", "1000"),
        income("0001", "2024-02", "agriculture", "-50"),
        income("0001", "2024-02", "wage_local", "-5"),  # negative
        income("0003", "2024-07", "wage_local", "10"),  # after data_end
        income("0001", "2024-01", "wage_local", "900"),  # duplicate key
        income("0009", "2024-01", "wage_local", "900"),  # unknown household
        income("0002", "2024-01", "wage_local", "900"),  # rejected household
    ],
    "employment": [
        {"member_id": "M01", "month": "2024-01", "status": "migrant"},
        {"member_id": "M03", "month": "2024-01", "status": "farming"},  # its member was rejected
    ],
    "expenses": [
        {
            "household_id": "0001",
            "member_id": "M04",  # a member of another household
            "date": "2024-03-05",
            "category": "medical",
            "amount": "500",
            "reimbursed": "300",
        },
        {
            "household_id": "0003",
            "member_id": "M04",
            "date": "2024-03-05",
            "category": "medical",
            "amount": "500",
            "reimbursed": "600",  # more than billed
        },
    ],
    "events": [],
    "loans": [
        {
            "loan_id": "L01",
            "household_id": "0003",
            "kind": "bank",
            "issued_month": "2023-06",
            "principal": "30000",
            "term_months": "36",
            "annual_rate": "0.0435",
        }
    ],
    "loan_status": [
        {"loan_id": "L01", "month": "2024-01", "balance": "25000", "overdue_days": "0"},
        {"loan_id": "L09", "month": "2024-01", "balance": "100", "overdue_days": "3"},  # unknown loan
    ],
    "assistance": [
        {
            "household_id": "0003",
            "measure": "dibao",
            "start_month": "2024-03",
            "end_month": "2024-01",
            "monthly_amount": "500",
        },  # ends before it starts
    ],  # fmt: skip
    "monitoring": [],
}


def _policy() -> Policy:
    return Policy.model_validate(POLICY)


def assert_same_load(from_tables: Dataset, from_folder: Dataset) -> None:
    """Equal clean tables, rejects (listed, counted, per household) and input row counts."""
    for table in TABLES:
        pd.testing.assert_frame_equal(from_tables.frame(table.name), from_folder.frame(table.name))
    assert from_tables.rejects == from_folder.rejects
    assert from_tables.reject_counts == from_folder.reject_counts
    assert from_tables.rejected_households() == from_folder.rejected_households()
    assert from_tables.input_rows == from_folder.input_rows
    rejects = "SELECT * FROM _rejects ORDER BY position"
    assert from_tables.sql(rejects).fetchall() == from_folder.sql(rejects).fetchall()


def test_text_tables_load_exactly_like_a_csv_folder_of_the_same_rows(tmp_path: Path) -> None:
    from_folder = load_dataset(csv_folder(tmp_path / "county", COUNTY))
    from_tables = load_tables(text_tables(COUNTY), _policy(), text_cells=True)

    assert_same_load(from_tables, from_folder)
    assert {(r.table, r.row, r.rule) for r in from_tables.rejects} == {
        ("households", 2, "enum"),
        ("households", 4, "duplicate_key"),
        ("members", 2, "foreign_key"),
        ("members", 3, "enum"),
        ("income", 3, "negative"),
        ("income", 4, "after_data_end"),
        ("income", 5, "duplicate_key"),
        ("income", 6, "foreign_key"),
        ("income", 7, "foreign_key"),
        ("employment", 2, "foreign_key"),
        ("expenses", 1, "foreign_key"),
        ("expenses", 2, "reimbursed_exceeds_amount"),
        ("loan_status", 2, "foreign_key"),
        ("assistance", 1, "date_order"),
    }


def test_typed_tables_load_exactly_like_a_parquet_folder_and_pandas_frames_alike(tmp_path: Path) -> None:
    from_folder = load_dataset(parquet_folder(tmp_path / "county", COUNTY))
    typed = typed_tables(COUNTY)
    from_arrow = load_tables(typed, _policy())
    from_pandas = load_tables({name: table.to_pandas() for name, table in typed.items()}, _policy())

    assert_same_load(from_arrow, from_folder)
    assert_same_load(from_pandas, from_folder)
    assert len(from_folder.rejects) == 14


def test_text_cells_are_trimmed_and_keep_leading_zeros_as_in_a_csv_file(tmp_path: Path) -> None:
    rows = copy.deepcopy(COUNTY)
    rows["households"][0] |= {"terrain": " mountain ", "cultivated_land_mu": " 3.0"}

    from_tables = load_tables(text_tables(rows), _policy(), text_cells=True)

    assert_same_load(from_tables, load_dataset(csv_folder(tmp_path / "county", rows)))
    first = from_tables.sql("SELECT household_id, terrain FROM households LIMIT 1").fetchall()
    assert first == [("0001", "mountain")]


def test_a_load_without_rejects_has_the_same_rejects_table_as_one_with_rejects() -> None:
    clean = copy.deepcopy(COUNTY)
    clean["households"] = [clean["households"][0], clean["households"][2]]
    clean["members"] = [clean["members"][0], clean["members"][3]]
    for name in ("income", "employment", "expenses", "loan_status", "assistance"):
        clean[name] = clean[name][:1]
    clean["expenses"][0] |= {"member_id": "M01"}
    clean["assistance"][0] |= {"end_month": ""}

    without = load_tables(text_tables(clean), _policy(), text_cells=True)
    with_rejects = load_tables(text_tables(COUNTY), _policy(), text_cells=True)

    assert without.rejects == [] and without.reject_counts == {} and without.rejected_households() == {}
    assert without.sql("DESCRIBE _rejects").fetchall() == with_rejects.sql("DESCRIBE _rejects").fetchall()
    assert without.input_rows["households"] == without.row_count("households") == 2


def test_only_the_contract_tables_remain_after_a_load() -> None:
    dataset = load_tables(text_tables(COUNTY), _policy(), text_cells=True)

    names = {row[0] for row in dataset.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
    views = dataset.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    assert names == {t.name for t in TABLES} | {"_rejects"}
    assert views == []


def test_the_fingerprint_follows_the_rows_and_the_policy() -> None:
    tables = text_tables(COUNTY)
    changed = copy.deepcopy(COUNTY)
    changed["income"][0]["amount"] = "1001"

    first = load_tables(tables, _policy(), text_cells=True).fingerprint
    assert first == load_tables(text_tables(COUNTY), _policy(), text_cells=True).fingerprint
    assert first != load_tables(text_tables(changed), _policy(), text_cells=True).fingerprint
    later = Policy.model_validate(POLICY | {"data_end": "2024-05"})
    assert first != load_tables(tables, later, text_cells=True).fingerprint


def test_a_missing_table_or_column_stops_the_load_naming_the_source_and_table() -> None:
    tables = text_tables(COUNTY)

    with pytest.raises(DatasetError, match=r"^request: required table\(s\) missing: events$"):
        load_tables({k: v for k, v in tables.items() if k != "events"}, _policy())
    with pytest.raises(DatasetError, match=r"^request: unknown table\(s\): incomes$"):
        load_tables(tables | {"incomes": tables["income"]}, _policy())
    with pytest.raises(DatasetError, match=r"^batch table members: required column\(s\) missing: sex$"):
        load_tables(tables | {"members": tables["members"].drop_columns(["sex"])}, _policy(), source="batch")


def test_a_numeric_identifier_column_stops_the_load_as_in_a_parquet_file() -> None:
    tables = typed_tables(COUNTY)
    numeric = tables["loans"].set_column(0, "loan_id", pa.array([1], type=pa.int64()))

    with pytest.raises(DatasetError, match=r"^request table loans: column 'loan_id' is stored as BIGINT"):
        load_tables(tables | {"loans": numeric}, _policy())


def test_no_valid_household_stops_the_load_with_the_rules_that_rejected_them() -> None:
    rows = copy.deepcopy(COUNTY)
    for row in rows["households"]:
        row["terrain"] = "Plain"

    with pytest.raises(DatasetError, match=r"^request table households: no valid rows remain: all 4 rows"):
        load_tables(text_tables(rows), _policy(), text_cells=True)


def test_large_tables_checked_step_by_step_give_the_same_load_as_small_ones_in_one_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = csv_folder(tmp_path / "county", COUNTY)
    rows = copy.deepcopy(COUNTY)
    rows["income"].append(rows["income"][0])  # one more duplicate key, found after a repeat is seen
    in_one_statement = load_dataset(csv_folder(tmp_path / "more", rows))
    small = load_dataset(folder)

    # Every table counts as large: typed as a view, checked one statement per step.
    monkeypatch.setattr(loading, "MATERIALIZE_ROWS", 0)
    monkeypatch.setattr(loading, "CHECKPOINT_ROWS", 0)
    assert_same_load(load_dataset(folder), small)
    assert_same_load(load_tables(text_tables(COUNTY), _policy(), text_cells=True), small)
    step_by_step = load_dataset(tmp_path / "more")
    assert_same_load(step_by_step, in_one_statement)
    assert ("income", 8, "duplicate_key") in {(r.table, r.row, r.rule) for r in step_by_step.rejects}


@pytest.mark.parametrize("materialize_rows", [loading.MATERIALIZE_ROWS, 0])
def test_rows_of_an_empty_parent_table_are_rejected_with_their_household(
    materialize_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "MATERIALIZE_ROWS", materialize_rows)
    rows = copy.deepcopy(COUNTY)
    rows["loans"] = []
    rows["members"][1:3] = []  # M02 and M03 gone: employment's M03 row has no member at all

    dataset = load_tables(text_tables(rows), _policy(), text_cells=True)

    assert [(r.table, r.row, r.rule, r.reason, r.household_id) for r in dataset.rejects if r.table in (
        "employment", "loan_status")] == [
        ("employment", 2, "foreign_key", "'M03' is not in members", None),
        ("loan_status", 1, "foreign_key", "'L01' is not in loans", None),
        ("loan_status", 2, "foreign_key", "'L09' is not in loans", None),
    ]  # fmt: skip
    assert dataset.row_count("loans") == 0 and dataset.row_count("loan_status") == 0
