"""The loader enforces the data contract: bad rows are rejected and reported, bad files stop the run.

Every test starts from one tiny valid county (three households, a row or two in
every table), written as CSV text exactly as a spreadsheet export would have
it, changes one thing, and checks the exact report.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import (
    POLICY,
    Rows,
    csv_folder,
    csv_text,
    household,
    member,
    parquet_folder,
    parquet_table,
)
from conftest import GeneratedCounty
from relapse_risk.features import loading
from relapse_risk.features.contract import TABLES
from relapse_risk.features.dataset import Dataset, DatasetError, Reject, load_dataset
from relapse_risk.features.validation import MASKED_IDENTIFIER, write_rejects
from typer.testing import CliRunner

from relapse_risk.cli import app

BASE: Rows = {
    "households": [
        household("0001", "001"),
        household("0002", "001", registered_poor="false", escape_year="", terrain="hill"),
        household("0003", "002", terrain="mountain"),
        household("0004", "003"),  # no rows in other tables: its own faults cascade nowhere
    ],
    "members": [
        member("M01", "0001", "head", "1975"),
        member("M02", "0001", "spouse", "1978", joined_month="2024-02"),
        member("M03", "0002", "head", "1950", labor_capacity="weak", disability_grade="2"),
        member("M04", "0003", "head", "1990", left_month="2024-05"),
    ],
    "income": [
        {"household_id": "0001", "month": "2024-01", "source": "wage_local", "amount": "1000"},
        {"household_id": "0001", "month": "2024-02", "source": "agriculture", "amount": "-50"},
        {"household_id": "0002", "month": "2024-01", "source": "transfer_dibao", "amount": "500"},
        {"household_id": "0003", "month": "2024-03", "source": "wage_migrant", "amount": "3000"},
    ],
    "employment": [
        {"member_id": "M01", "month": "2024-01", "status": "migrant"},
        {"member_id": "M03", "month": "2024-01", "status": "farming"},
    ],
    "expenses": [
        {
            "household_id": "0001",
            "member_id": "M01",
            "date": "2024-03-05",
            "category": "medical",
            "amount": "500",
            "reimbursed": "300",
        }
    ],
    "events": [
        {
            "household_id": "0002",
            "member_id": "",
            "date": "2024-02-10",
            "kind": "natural_disaster",
            "severity": "2",
            "value": "8000",
        }
    ],
    "loans": [
        {
            "loan_id": "L01",
            "household_id": "0003",
            "kind": "poverty_microcredit",
            "issued_month": "2023-06",
            "principal": "30000",
            "term_months": "36",
            "annual_rate": "0.0435",
        },
        {
            "loan_id": "L02",
            "household_id": "0001",
            "kind": "bank",
            "issued_month": "2024-02",
            "principal": "5000",
            "term_months": "12",
            "annual_rate": "0.06",
        },
    ],
    "loan_status": [{"loan_id": "L01", "month": "2024-01", "balance": "25000", "overdue_days": "0"}],
    "assistance": [
        {
            "household_id": "0002",
            "measure": "dibao",
            "start_month": "2023-01",
            "end_month": "",
            "monthly_amount": "500",
        }
    ],
    "monitoring": [
        {
            "household_id": "0002",
            "identified_month": "2023-05",
            "category": "marginal",
            "risk_type": "income_shortfall",
            "primary_cause": "illness",
            "eliminated_month": "2024-02",
        }
    ],
}


def changed(table: str, row: int, **values: str) -> Rows:
    """The base county with some cells of one row (1-based) replaced."""
    rows = copy.deepcopy(BASE)
    rows[table][row - 1].update(values)
    return rows


def appended(table: str, **values: str) -> Rows:
    """The base county with one more row at the end of ``table``: a copy of its first row, changed."""
    rows = copy.deepcopy(BASE)
    rows[table].append(rows[table][0] | values)
    return rows


def load_rows(tmp_path: Path, rows: Rows, **options: object) -> Dataset:
    return load_dataset(csv_folder(tmp_path / "county", rows), **options)


def as_tuples(rejects: list[Reject]) -> list[tuple[str, int, str, str]]:
    return [(r.table, r.row, r.column, r.rule) for r in rejects]


# ---------------------------------------------------------------- the valid county


def test_a_valid_county_loads_every_row_with_canonical_types(tmp_path: Path) -> None:
    dataset = load_rows(tmp_path, BASE)

    assert dataset.rejects == []
    assert dataset.reject_counts == {}
    assert {t.name: dataset.row_count(t.name) for t in TABLES} == {t: len(r) for t, r in BASE.items()}
    households = dataset.frame("households")
    assert households["household_id"].tolist() == ["0001", "0002", "0003", "0004"]  # leading zeros kept
    assert households["escape_year"].tolist()[0] == 2019 and pd.isna(households["escape_year"].tolist()[1])
    assert households["registered_poor"].tolist() == [True, False, True, True]
    members = dataset.frame("members")
    assert members["joined_month"].tolist()[1] == pd.Timestamp("2024-02-01")
    types = dict(
        dataset.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'income'"
        ).fetchall()
    )
    assert types == {"household_id": "VARCHAR", "month": "DATE", "source": "VARCHAR", "amount": "DOUBLE"}
    assert dataset.rejected_households() == {}
    assert dataset.source == tmp_path / "county"
    assert dataset.input_files["income"].name == "income.csv"


# ---------------------------------------------------------------- one bad row at a time

# (what is wrong, the county, expected (table, row, column, rule), stable part of the reason, household)
# fmt: off
ROW_CASES = [
    ("number with thousands separator", changed("income", 1, amount="1,000"),
     ("income", 1, "amount", "type"), "'1,000' is not a number", "0001"),
    ("fractional whole number", changed("members", 4, birth_year="1975.5"),
     ("members", 4, "birth_year", "type"), "'1975.5' is not a whole number", "0003"),
    ("boolean spelled yes", changed("households", 4, registered_poor="yes"),
     ("households", 4, "registered_poor", "type"), "'yes' is not a boolean (true/false or 1/0)", "0004"),
    ("month with slashes", changed("income", 3, month="2024/01/01"),
     ("income", 3, "month", "type"), "'2024/01/01' is not a month (YYYY-MM or YYYY-MM-DD)", "0002"),
    ("month as MM-YYYY", changed("income", 4, month="03-2024"),
     ("income", 4, "month", "type"), "'03-2024' is not a month (YYYY-MM or YYYY-MM-DD)", "0003"),
    ("impossible date", changed("expenses", 1, date="2024-02-30"),
     ("expenses", 1, "date", "type"), "'2024-02-30' is not a date (YYYY-MM-DD)", "0001"),
    ("date without day", changed("events", 1, date="2024-02"),
     ("events", 1, "date", "type"), "'2024-02' is not a date (YYYY-MM-DD)", "0002"),
    ("enum in capitals", changed("households", 4, terrain="Plain"),
     ("households", 4, "terrain", "enum"), "'Plain' is not one of: plain, hill, mountain", "0004"),
    ("unknown income source", changed("income", 1, source="salary"),
     ("income", 1, "source", "enum"), "'salary' is not one of: wage_local, wage_migrant", "0001"),
    ("missing required value", changed("members", 4, sex=""),
     ("members", 4, "sex", "not_null"), "required value is missing", "0003"),
    ("missing amount", changed("loans", 2, principal=" "),
     ("loans", 2, "principal", "not_null"), "required value is missing", "0001"),
    ("infinite money", changed("income", 3, amount="inf"),
     ("income", 3, "amount", "not_finite"), "'inf' is not a finite number", "0002"),
    ("NaN money", changed("expenses", 1, amount="NaN"),
     ("expenses", 1, "amount", "not_finite"), "'NaN' is not a finite number", "0001"),
    ("negative wage", changed("income", 1, amount="-5"),
     ("income", 1, "amount", "negative"), "'-5' is negative; only business and agriculture", "0001"),
    ("negative bill", changed("expenses", 1, amount="-1", reimbursed="0"),
     ("expenses", 1, "amount", "negative"), "'-1' is negative", "0001"),
    ("negative reimbursement", changed("expenses", 1, reimbursed="-1"),
     ("expenses", 1, "reimbursed", "negative"), "'-1' is negative", "0001"),
    ("negative assistance", changed("assistance", 1, monthly_amount="-500"),
     ("assistance", 1, "monthly_amount", "negative"), "'-500' is negative", "0002"),
    ("negative balance", changed("loan_status", 1, balance="-1"),
     ("loan_status", 1, "balance", "negative"), "'-1' is negative", "0003"),
    ("negative overdue days", changed("loan_status", 1, overdue_days="-3"),
     ("loan_status", 1, "overdue_days", "negative"), "'-3' is negative", "0003"),
    ("negative land", changed("households", 4, cultivated_land_mu="-0.5"),
     ("households", 4, "cultivated_land_mu", "negative"), "'-0.5' is negative", "0004"),
    ("reimbursed more than billed", changed("expenses", 1, reimbursed="600"),
     ("expenses", 1, "reimbursed", "reimbursed_exceeds_amount"), "reimbursed 600 exceeds amount 500", "0001"),
    ("zero principal", changed("loans", 2, principal="0"),
     ("loans", 2, "principal", "range"), "'0' must be greater than 0", "0001"),
    ("zero term", changed("loans", 2, term_months="0"),
     ("loans", 2, "term_months", "range"), "'0' must be at least 1", "0001"),
    ("disability grade 5", changed("members", 4, disability_grade="5"),
     ("members", 4, "disability_grade", "range"), "'5' is outside 0..4", "0003"),
    ("severity 4", changed("events", 1, severity="4"),
     ("events", 1, "severity", "range"), "'4' is outside 1..3", "0002"),
    ("county code of 5 digits", changed("households", 4, county_code="53010"),
     ("households", 4, "county_code", "code_format"), "'53010' is not a 6-digit code", "0004"),
    ("village code of 9 digits", changed("households", 4, village_code="530101001"),
     ("households", 4, "village_code", "code_format"), "'530101001' is not a 12-digit code", "0004"),
    ("township outside its county",
     changed("households", 4, township_code="530102001", village_code="530102001003"),
     ("households", 4, "township_code", "code_prefix"),
     "'530102001' does not start with county_code '530101'", "0004"),
    ("village outside its township", changed("households", 4, village_code="530101002002"),
     ("households", 4, "village_code", "code_prefix"),
     "'530101002002' does not start with township_code '530101001'", "0004"),
    ("income month after data_end", changed("income", 4, month="2024-07"),
     ("income", 4, "month", "after_data_end"), "2024-07 is after data_end 2024-06", "0003"),
    ("bill dated after data_end", changed("expenses", 1, date="2024-07-01"),
     ("expenses", 1, "date", "after_data_end"), "2024-07-01 is after data_end 2024-06", "0001"),
    ("loan status after data_end", changed("loan_status", 1, month="2025-01-01"),
     ("loan_status", 1, "month", "after_data_end"), "2025-01 is after data_end 2024-06", "0003"),
    ("month in the middle of a month", changed("employment", 1, month="2024-03-15"),
     ("employment", 1, "month", "not_first_of_month"),
     "'2024-03-15' is not the first day of a month", "0001"),
    ("support ends before it starts", changed("assistance", 1, end_month="2022-12"),
     ("assistance", 1, "end_month", "date_order"), "end_month 2022-12 is before start_month 2023-01", "0002"),
    ("risk eliminated before identified", changed("monitoring", 1, eliminated_month="2023-04"),
     ("monitoring", 1, "eliminated_month", "date_order"),
     "eliminated_month 2023-04 is before identified_month 2023-05", "0002"),
    ("member leaves the month they join", changed("members", 2, left_month="2024-02"),
     ("members", 2, "left_month", "date_order"),
     "left_month 2024-02 is not after joined_month 2024-02", "0001"),
    ("born in 1850", changed("members", 4, birth_year="1850"),
     ("members", 4, "birth_year", "implausible_year"), "'1850' is not a plausible year (1904..2024)", "0003"),
    ("two-digit escape year", changed("households", 4, escape_year="19"),
     ("households", 4, "escape_year", "implausible_year"),
     "'19' is not a plausible year (1980..2024)", "0004"),
    ("repeated household", appended("households", village_code="530101001009"),
     ("households", 5, "household_id", "duplicate_key"), "duplicates row 1 (same household_id)", "0001"),
    ("repeated income source in a month", appended("income", amount="7"),
     ("income", 5, "household_id,month,source", "duplicate_key"),
     "duplicates row 1 (same household_id, month, source)", "0001"),
    ("repeated employment month", appended("employment", month="2024-01-01", status="farming"),
     ("employment", 3, "member_id,month", "duplicate_key"),
     "duplicates row 1 (same member_id, month)", "0001"),
    ("member of an unknown household", changed("members", 4, household_id="0009"),
     ("members", 4, "household_id", "foreign_key"), "'0009' is not in households", "0009"),
    ("income of an unknown household", changed("income", 2, household_id="9999"),
     ("income", 2, "household_id", "foreign_key"), "'9999' is not in households", "9999"),
    ("employment of an unknown member", changed("employment", 2, member_id="M99"),
     ("employment", 2, "member_id", "foreign_key"), "'M99' is not in members", None),
    ("bill of an unknown household", changed("expenses", 1, household_id="0009"),
     ("expenses", 1, "household_id", "foreign_key"), "'0009' is not in households", "0009"),
    ("bill of an unknown member", changed("expenses", 1, member_id="M77"),
     ("expenses", 1, "member_id", "foreign_key"), "'M77' is not in members", "0001"),
    ("bill of another household's member", changed("expenses", 1, member_id="M03"),
     ("expenses", 1, "member_id", "foreign_key"), "'M03' belongs to household '0002', not '0001'", "0001"),
    ("event of an unknown household", changed("events", 1, household_id="0005"),
     ("events", 1, "household_id", "foreign_key"), "'0005' is not in households", "0005"),
    ("event of an unknown member", changed("events", 1, member_id="M55"),
     ("events", 1, "member_id", "foreign_key"), "'M55' is not in members", "0002"),
    ("loan of an unknown household", changed("loans", 2, household_id="0006"),
     ("loans", 2, "household_id", "foreign_key"), "'0006' is not in households", "0006"),
    ("status of an unknown loan", changed("loan_status", 1, loan_id="L09"),
     ("loan_status", 1, "loan_id", "foreign_key"), "'L09' is not in loans", None),
    ("assistance to an unknown household", changed("assistance", 1, household_id="0007"),
     ("assistance", 1, "household_id", "foreign_key"), "'0007' is not in households", "0007"),
    ("monitoring of an unknown household", changed("monitoring", 1, household_id="0008"),
     ("monitoring", 1, "household_id", "foreign_key"), "'0008' is not in households", "0008"),
]
# fmt: on


@pytest.mark.parametrize(
    ("rows", "where", "reason", "household"),
    [
        pytest.param(rows, where, reason, household, id=name)
        for name, rows, where, reason, household in ROW_CASES
    ],
)
@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_a_bad_row_is_rejected_with_its_place_and_reason_and_the_rest_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: Rows,
    where: tuple[str, int, str, str],
    reason: str,
    household: str | None,
    large: bool,
) -> None:
    if large:
        # Every table counts as large and is checked in the large-table path's few scans.
        monkeypatch.setattr(loading, "MATERIALIZE_ROWS", 0)
    dataset = load_rows(tmp_path, rows)

    assert as_tuples(dataset.rejects) == [where]
    (reject,) = dataset.rejects
    assert reason in reject.reason
    assert reject.household_id == household
    table = where[0]
    assert dataset.row_count(table) == len(rows[table]) - 1
    others = [t.name for t in TABLES if t.name != table]
    assert all(dataset.row_count(t) == len(rows[t]) for t in others)
    assert dataset.reject_counts == {(table, where[2], where[3]): 1}


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_a_repeated_key_is_found_beside_rows_that_fail_a_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    """Rows that fail a check (here: an unknown household, a negative wage) do not hide a repeated key,
    whether the repeat is between two such rows or between two valid ones."""
    if large:  # the first scan finds suspects: the key is then checked around them
        monkeypatch.setattr(loading, "MATERIALIZE_ROWS", 0)
    rows = copy.deepcopy(BASE)
    unknown = {"household_id": "9999", "month": "2024-04", "source": "wage_local", "amount": "10"}
    rows["income"] += [unknown, unknown | {"amount": "20"}, rows["income"][2] | {"amount": "-5"}]
    base = len(BASE["income"])

    dataset = load_rows(tmp_path, rows)

    assert as_tuples(dataset.rejects) == [
        ("income", base + 1, "household_id", "foreign_key"),
        ("income", base + 2, "household_id,month,source", "duplicate_key"),
        ("income", base + 3, "amount", "negative"),
    ]
    rows["income"].append(rows["income"][0] | {"amount": "7"})  # and a repeat of two valid rows
    repeated = load_rows(tmp_path / "again", rows)
    last = as_tuples(repeated.rejects)[-1]
    assert last == ("income", base + 4, "household_id,month,source", "duplicate_key")
    assert repeated.row_count("income") == base


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_a_repeated_key_is_found_in_months_before_the_data_as_inside_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    if large:  # a large table looks for repeats with a bitmap of the data's months, and past it for these
        monkeypatch.setattr(loading, "MATERIALIZE_ROWS", 0)
    rows = copy.deepcopy(BASE)
    early = rows["income"][0] | {"month": "2015-06"}  # before data_start: kept, as the contract allows
    rows["income"] += [early, dict(early), rows["income"][1] | {"month": "2015-07"}]
    base = len(BASE["income"])

    dataset = load_rows(tmp_path, rows)

    assert as_tuples(dataset.rejects) == [("income", base + 2, "household_id,month,source", "duplicate_key")]
    assert dataset.row_count("income") == base + 2


def test_a_large_parquet_table_is_read_in_place_without_its_few_rejected_rows_and_copied_past_a_tenth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = copy.deepcopy(BASE)
    rows["income"] += [  # twelve rows, one of them rejected: read in place
        {
            "household_id": "0002",
            "month": f"2024-0{m}",
            "source": "property",
            "amount": "-5" if m == 4 else "80",
        }
        for m in range(1, 7)
    ] + [
        {"household_id": "0003", "month": f"2024-0{m}", "source": "property", "amount": "90"}
        for m in range(1, 3)
    ]
    rows["employment"][1]["status"] = "Farming"  # one of two rows rejected: copied
    small = load_dataset(parquet_folder(tmp_path / "small", rows))
    monkeypatch.setattr(loading, "MATERIALIZE_ROWS", 0)

    large = load_dataset(parquet_folder(tmp_path / "large", rows))

    views = {
        row[0] for row in large.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    tables = {row[0] for row in large.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"households", "members", "income"} <= views
    assert "employment" in tables and "employment" not in views
    assert as_tuples(large.rejects) == [
        ("income", 8, "amount", "negative"),
        ("employment", 2, "status", "enum"),
    ]
    assert large.rejects == small.rejects
    for table in TABLES:
        pd.testing.assert_frame_equal(large.frame(table.name), small.frame(table.name))


def test_a_row_is_reported_for_every_rule_it_breaks(tmp_path: Path) -> None:
    dataset = load_rows(
        tmp_path, changed("households", 4, terrain="valley", relocated="maybe", county_code="x")
    )

    assert as_tuples(dataset.rejects) == [
        ("households", 4, "county_code", "code_format"),
        ("households", 4, "relocated", "type"),
        ("households", 4, "terrain", "enum"),
    ]
    assert dataset.rejects[0].value == "x"


def test_a_rejected_household_takes_its_rows_in_other_tables_with_it(tmp_path: Path) -> None:
    dataset = load_rows(tmp_path, changed("households", 1, terrain="forest"))

    assert as_tuples(dataset.rejects) == [
        ("households", 1, "terrain", "enum"),
        ("members", 1, "household_id", "foreign_key"),
        ("members", 2, "household_id", "foreign_key"),
        ("income", 1, "household_id", "foreign_key"),
        ("income", 2, "household_id", "foreign_key"),
        ("employment", 1, "member_id", "foreign_key"),
        ("expenses", 1, "household_id", "foreign_key"),
        ("loans", 2, "household_id", "foreign_key"),
    ]
    assert {r.household_id for r in dataset.rejects} == {"0001"}
    assert dataset.rejects[1].reason == "'0001' refers to households row 1, which was rejected"
    assert dataset.rejects[5].reason == "'M01' refers to members row 1, which was rejected"
    assert dataset.frame("households")["household_id"].tolist() == ["0002", "0003", "0004"]
    assert dataset.row_count("employment") == 1
    assert list(dataset.rejected_households()) == ["0001"]
    assert (
        dataset.rejected_households()["0001"]
        == "households row 1, terrain: 'forest' is not one of: plain, hill, mountain"
    )


def test_households_with_any_rejected_row_are_listed_with_their_first_reason(tmp_path: Path) -> None:
    rows = changed("income", 4, amount="-1")
    rows["loan_status"][0]["overdue_days"] = "soon"
    dataset = load_rows(tmp_path, rows)

    assert dataset.rejected_households() == {
        "0003": "income row 4, amount: '-1' is negative; only business and agriculture income may be below 0"
    }
    assert dataset.row_count("households") == 4  # the household itself stays


def test_the_first_occurrence_of_a_key_stays_and_a_rejected_row_does_not_hold_a_key(tmp_path: Path) -> None:
    rows = copy.deepcopy(BASE)
    rows["income"].insert(0, rows["income"][0] | {"amount": "bad"})  # rejected: row 2 keeps the key
    rows["income"].append(rows["income"][1] | {"amount": "9"})  # a real repeat of row 2

    dataset = load_rows(tmp_path, rows)

    assert as_tuples(dataset.rejects) == [
        ("income", 1, "amount", "type"),
        ("income", 6, "household_id,month,source", "duplicate_key"),
    ]
    assert dataset.rejects[1].reason == "duplicates row 2 (same household_id, month, source)"
    assert dataset.rejects[1].value == "0001, 2024-01, wage_local"
    assert dataset.frame("income")["amount"].tolist() == [1000.0, -50.0, 500.0, 3000.0]


def test_identifiers_that_look_like_personal_data_are_rejected_and_never_echoed(tmp_path: Path) -> None:
    identity_number = "53010119900307123X"
    rows = copy.deepcopy(BASE)
    for table in ("households", "members", "income"):
        for row in rows[table]:
            if row["household_id"] == "0003":
                row["household_id"] = identity_number
    rows["loans"][0]["household_id"] = identity_number
    rows["members"][0]["member_id"] = "张三"
    rows["employment"][0]["member_id"] = "张三"
    rows["expenses"][0]["member_id"] = "张三"

    dataset = load_rows(tmp_path, rows)

    assert as_tuples(dataset.rejects) == [
        ("households", 3, "household_id", "not_pseudonymous"),
        ("members", 1, "member_id", "not_pseudonymous"),
        ("members", 4, "household_id", "foreign_key"),
        ("income", 4, "household_id", "foreign_key"),
        ("employment", 1, "member_id", "foreign_key"),
        ("expenses", 1, "member_id", "foreign_key"),
        ("loans", 1, "household_id", "foreign_key"),
        ("loan_status", 1, "loan_id", "foreign_key"),
    ]
    report = json.dumps([r.__dict__ for r in dataset.rejects], ensure_ascii=False)
    assert identity_number not in report and "张三" not in report
    assert dataset.rejects[0].value == MASKED_IDENTIFIER
    assert dataset.rejects[0].household_id is None
    assert (
        dataset.rejects[2].reason == f"'{MASKED_IDENTIFIER}' refers to households row 3, which was rejected"
    )


# ---------------------------------------------------------------- CSV as counties write it


def test_csv_quirks_of_spreadsheet_exports_are_read(tmp_path: Path) -> None:
    rows = copy.deepcopy(BASE)
    rows["income"][0]["month"] = "2024-01-01"  # mixed month formats in one column
    rows["income"][1]["month"] = " 2024-02 "
    rows["households"][0]["terrain"] = " plain "  # padded cells are trimmed
    rows["households"][1]["registered_poor"] = "FALSE"
    rows["households"][2]["relocated"] = "0"
    rows["members"][0]["birth_year"] = "1975.0"
    rows["events"] = []  # header only
    rows["monitoring"][0]["notes"] = "a column the contract does not know"
    folder = csv_folder(tmp_path / "county", rows)
    households = folder / "households.csv"
    households.write_bytes(b"\xef\xbb\xbf" + households.read_bytes().replace(b"\n", b"\r\n"))  # BOM, CRLF

    dataset = load_dataset(folder)

    assert dataset.rejects == []
    assert dataset.frame("households")["terrain"].tolist() == ["plain", "hill", "mountain", "plain"]
    assert dataset.frame("households")["registered_poor"].tolist() == [True, False, True, True]
    assert dataset.frame("households")["relocated"].tolist() == [False, False, False, False]
    assert dataset.frame("income")["month"].tolist()[:2] == [
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-02-01"),
    ]
    assert dataset.frame("members")["birth_year"].tolist()[0] == 1975
    assert dataset.row_count("events") == 0
    assert "notes" not in dataset.frame("monitoring").columns


def test_identifiers_that_look_numeric_keep_their_leading_zeros(tmp_path: Path) -> None:
    rows = copy.deepcopy(BASE)
    rows["loans"][0]["loan_id"] = "000123"
    rows["loan_status"][0]["loan_id"] = "000123"

    dataset = load_rows(tmp_path, rows)

    assert dataset.frame("loan_status")["loan_id"].tolist() == ["000123"]
    assert dataset.frame("income")["household_id"].tolist() == ["0001", "0001", "0002", "0003"]


def test_parquet_wins_over_csv_and_only_the_file_read_is_fingerprinted(tmp_path: Path) -> None:
    folder = csv_folder(tmp_path / "county", BASE)
    before = load_dataset(folder).fingerprint
    pq.write_table(parquet_table("households", BASE["households"]), folder / "households.parquet")
    (folder / "households.csv").write_text("this file is not read\n", encoding="utf-8")

    dataset = load_dataset(folder)

    assert dataset.input_files["households"].name == "households.parquet"
    assert dataset.rejects == []
    assert dataset.fingerprint != before
    (folder / "households.csv").write_text("still not read\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not part of the contract\n", encoding="utf-8")
    assert load_dataset(folder).fingerprint == dataset.fingerprint


def test_the_fingerprint_is_stable_and_follows_the_bytes(tmp_path: Path) -> None:
    folder = csv_folder(tmp_path / "county", BASE)
    first = load_dataset(folder).fingerprint
    assert len(first) == 64 and load_dataset(folder).fingerprint == first
    csv_folder(folder, changed("income", 1, amount="1001"))
    assert load_dataset(folder).fingerprint != first


# ---------------------------------------------------------------- Parquet


def test_a_parquet_county_loads_exactly_like_its_csv_export(tmp_path: Path) -> None:
    from_csv = load_dataset(csv_folder(tmp_path / "csv", BASE))
    from_parquet = load_dataset(parquet_folder(tmp_path / "parquet", BASE))

    assert from_parquet.rejects == []
    for table in TABLES:
        pd.testing.assert_frame_equal(from_parquet.frame(table.name), from_csv.frame(table.name))


def test_parquet_rows_are_numbered_from_one_and_checked_like_csv(tmp_path: Path) -> None:
    folder = parquet_folder(tmp_path / "county", changed("members", 4, disability_grade="7"))

    dataset = load_dataset(folder)

    assert as_tuples(dataset.rejects) == [("members", 4, "disability_grade", "range")]
    assert dataset.rejects[0].reason == "'7' is outside 0..4"


def test_parquet_timestamps_at_midnight_on_the_first_are_months(tmp_path: Path) -> None:
    folder = parquet_folder(tmp_path / "county", BASE)
    rows = copy.deepcopy(BASE["income"])
    table = parquet_table("income", rows, month=pa.timestamp("ns"))
    pq.write_table(table, folder / "income.parquet")
    assert load_dataset(folder).rejects == []

    months = table.column("month").to_pylist()
    months[1] = dt.datetime(2024, 2, 15)
    months[2] = dt.datetime(2024, 1, 1, 8, 30)
    pq.write_table(
        table.set_column(1, "month", pa.array(months, pa.timestamp("ns"))), folder / "income.parquet"
    )
    dataset = load_dataset(folder)

    assert as_tuples(dataset.rejects) == [
        ("income", 2, "month", "not_first_of_month"),
        ("income", 3, "month", "type"),
    ]
    assert (
        dataset.rejects[1].reason
        == "'2024-01-01 08:30:00' has a time of day; a month (YYYY-MM or YYYY-MM-DD) is expected"
    )


def test_parquet_whole_numbers_written_as_floats_are_read_and_fractions_rejected(tmp_path: Path) -> None:
    folder = parquet_folder(tmp_path / "county", BASE)
    households = parquet_table("households", BASE["households"], escape_year=pa.float64())
    years = households.column("escape_year").to_pylist()
    years[3] = 2019.5
    pq.write_table(
        households.set_column(5, "escape_year", pa.array(years, pa.float64())), folder / "households.parquet"
    )

    dataset = load_dataset(folder)

    assert as_tuples(dataset.rejects) == [("households", 4, "escape_year", "type")]
    assert dataset.rejects[0].reason == "'2019.5' is not a whole number"
    assert dataset.frame("households")["escape_year"].tolist()[0] == 2019


def test_a_parquet_column_without_any_value_may_have_the_null_type(tmp_path: Path) -> None:
    folder = parquet_folder(tmp_path / "county", BASE)
    events = parquet_table("events", BASE["events"])
    pq.write_table(events.set_column(1, "member_id", pa.nulls(1)), folder / "events.parquet")

    dataset = load_dataset(folder)

    assert dataset.rejects == []
    assert dataset.frame("events")["member_id"].isna().all()


# ---------------------------------------------------------------- faults that stop the run


def _without(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


STOP_CASES = [
    ("folder missing", lambda f: f / "nowhere", r"nowhere: dataset folder does not exist"),
    ("policy missing", lambda f: _without(f, "policy.json"), r"policy\.json: required file is missing"),
    (
        "policy not JSON",
        lambda f: _write(f, "policy.json", "{'data_end': 2024"),
        r"policy\.json: not valid JSON",
    ),
    (
        "policy without a year's line",
        lambda f: _write(f, "policy.json", json.dumps(POLICY | {"monitoring_line": {"2023": 6900}})),
        r"policy\.json: .*monitoring_line has no line for year\(s\) 2024",
    ),
    (
        "table missing",
        lambda f: _without(f, "loans.csv"),
        r"required table file missing: loans\.parquet \(or loans\.csv\)",
    ),
    (
        "column missing",
        lambda f: _write(f, "income.csv", "household_id,month,source\n0001,2024-01,wage_local\n"),
        r"income\.csv: required column\(s\) missing: amount",
    ),
    (
        "no households",
        lambda f: _write(f, "households.csv", csv_text([], list(TABLES[0].column_names))),
        r"households\.csv: has no data rows; the contract requires at least one row in households",
    ),
    (
        "no members",
        lambda f: _write(f, "members.csv", csv_text([], list(TABLES[1].column_names))),
        r"members\.csv: has no data rows",
    ),
    ("empty file", lambda f: _write(f, "events.csv", ""), r"events\.csv: file is empty; a header row"),
    (
        "ragged CSV row",
        lambda f: _write(f, "employment.csv", "member_id,month,status\nM01,2024-01,migrant,extra\n"),
        r"employment\.csv: cannot be parsed as CSV \(.*Line: 2",
    ),
    (
        "CSV in another encoding",
        lambda f: _write(
            f,
            "monitoring.csv",
            "household_id,identified_month,category,risk_type,primary_cause,eliminated_month\n"
            "0002,2023-05,marginal,income_shortfall,illness,\n"
            "0003,2023-05,marginal,income_shortfall,疾病,\n",
            encoding="gbk",
        ),
        r"monitoring\.csv: cannot be parsed as CSV \(CSV Error on Line: 3; Invalid unicode .* not utf-8",
    ),
    (
        "corrupt Parquet",
        lambda f: _write(f, "loans.parquet", "PAR1 garbage"),
        r"loans\.parquet: cannot be read as Parquet",
    ),
    (
        "numeric identifiers in Parquet",
        lambda f: _write_parquet(
            f,
            "loan_status",
            pa.table(
                {"loan_id": [123], "month": [dt.date(2024, 1, 1)], "balance": [1.0], "overdue_days": [0]}
            ),
        ),
        r"loan_status\.parquet: column 'loan_id' is stored as BIGINT.*leading zeros",
    ),
    (
        "time-zone timestamps in Parquet",
        lambda f: _write_parquet(
            f,
            "employment",
            parquet_table("employment", BASE["employment"]).set_column(
                1, "month", pa.array([dt.datetime(2024, 1, 1)] * 2, pa.timestamp("us", tz="Asia/Shanghai"))
            ),
        ),
        r"employment\.parquet: column 'month' is stored as TIMESTAMP WITH TIME ZONE.*which calendar day",
    ),
    (
        "every household rejected",
        lambda f: csv_folder(f, _all_households(terrain="forest")),
        r"households\.csv: no valid rows remain: all 4 rows were rejected \(enum on terrain: 4 rows",
    ),
]


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    (folder / name).write_text(text, encoding=encoding)
    return folder


def _write_parquet(folder: Path, table: str, data: pa.Table) -> Path:
    pq.write_table(data, folder / f"{table}.parquet")
    return folder


def _all_households(**values: str) -> Rows:
    rows = copy.deepcopy(BASE)
    for row in rows["households"]:
        row.update(values)
    return rows


@pytest.mark.parametrize(("breaks", "message"), [pytest.param(b, m, id=n) for n, b, m in STOP_CASES])
def test_a_fault_of_a_whole_file_stops_with_one_message_naming_the_file(
    tmp_path: Path, breaks: Callable[[Path], Path], message: str
) -> None:
    folder = breaks(csv_folder(tmp_path / "county", BASE))

    with pytest.raises(DatasetError, match=message):
        load_dataset(folder)


# ---------------------------------------------------------------- the report


def test_rejects_beyond_the_cap_are_counted_but_not_listed_except_households(tmp_path: Path) -> None:
    rows = copy.deepcopy(BASE)
    for row in rows["income"]:
        row["source"] = "gift"
    for row in rows["households"][1:3]:
        row["relocated"] = "perhaps"

    dataset = load_rows(tmp_path, rows, max_rejects_per_rule=1)

    assert as_tuples(dataset.rejects) == [
        ("households", 2, "relocated", "type"),
        ("households", 3, "relocated", "type"),
        ("members", 3, "household_id", "foreign_key"),
        ("income", 1, "source", "enum"),
        ("employment", 2, "member_id", "foreign_key"),
        ("events", 1, "household_id", "foreign_key"),
        ("loans", 1, "household_id", "foreign_key"),
        ("loan_status", 1, "loan_id", "foreign_key"),
        ("assistance", 1, "household_id", "foreign_key"),
        ("monitoring", 1, "household_id", "foreign_key"),
    ]
    assert dataset.reject_counts[("income", "source", "enum")] == 4
    assert dataset.reject_counts[("members", "household_id", "foreign_key")] == 2
    assert dataset.total_rejects == 14 and len(dataset.rejects) == 10 and dataset.rejects_truncated
    assert set(dataset.rejected_households()) == {"0001", "0002", "0003"}


def test_write_rejects_writes_the_same_records_as_csv_and_json(tmp_path: Path) -> None:
    rejects = [
        Reject(
            "income",
            3,
            "month",
            "type",
            "'2024/03/01' is not a month (YYYY-MM or YYYY-MM-DD)",
            "0002",
            "2024/03/01",
        ),
        Reject("employment", 1, "member_id", "foreign_key", "'M9' is not in members", None, "M9"),
    ]

    csv_path, json_path = write_rejects(rejects, tmp_path / "report")

    assert csv_path.read_bytes().startswith(
        b"\xef\xbb\xbftable,row,column,rule,reason,household_id,value\r\n"
    )
    from_csv = pd.read_csv(csv_path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    assert from_csv.to_dict("records")[0] == {
        "table": "income",
        "row": "3",
        "column": "month",
        "rule": "type",
        "reason": "'2024/03/01' is not a month (YYYY-MM or YYYY-MM-DD)",
        "household_id": "0002",
        "value": "2024/03/01",
    }
    records = json.loads(json_path.read_text(encoding="utf-8"))
    assert [Reject(**r) for r in records] == rejects


# ---------------------------------------------------------------- relapse validate


def test_validate_reports_a_usable_county_with_bad_rows_and_exits_0(tmp_path: Path) -> None:
    folder = csv_folder(tmp_path / "county", changed("income", 2, month="2024/02"))

    result = CliRunner().invoke(app, ["validate", str(folder)])

    assert result.exit_code == 0, result.output
    report = tmp_path / "county-validation"
    assert "Dataset is usable" in result.output and "1 rejects" in result.output
    rejects = json.loads((report / "rejects.json").read_text(encoding="utf-8"))
    assert [(r["table"], r["row"], r["column"], r["rule"]) for r in rejects] == [
        ("income", 2, "month", "type")
    ]
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    assert summary["tables"]["income"] == {
        "file": "income.csv",
        "rows_read": 4,
        "rows_loaded": 3,
        "rows_rejected": 1,
    }
    assert summary["households_affected"] == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["policy.json", *(f"{t.name}.csv" for t in TABLES)]
    )


def test_validate_writes_where_it_is_told(tmp_path: Path) -> None:
    folder = csv_folder(tmp_path / "county", BASE)

    result = CliRunner().invoke(app, ["validate", str(folder), "--out", str(tmp_path / "checks")])

    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "checks" / "rejects.json").read_text(encoding="utf-8")) == []
    assert "No rejects" in result.output


def test_validate_exits_2_with_the_message_when_the_county_cannot_be_used(tmp_path: Path) -> None:
    folder = _without(csv_folder(tmp_path / "county[2024]", BASE), "members.csv")

    result = CliRunner().invoke(app, ["validate", str(folder)])

    assert result.exit_code == 2
    message = " ".join(result.output.split())  # rich wraps long lines
    assert "Dataset cannot be used" in message and "county[2024]" in message
    assert "members.parquet (or members.csv)" in message
    assert not (tmp_path / "county[2024]-validation").exists()


def test_validate_refuses_to_write_inside_the_dataset_folder(tmp_path: Path) -> None:
    folder = csv_folder(tmp_path / "county", BASE)

    result = CliRunner().invoke(app, ["validate", str(folder), "--out", str(folder / "report")])

    assert result.exit_code == 2
    assert not (folder / "report").exists()


# ---------------------------------------------------------------- a generated county


def _export_as_csv(generated: Path, exported: Path) -> None:
    """Every table as a spreadsheet would export it: months as YYYY-MM, dates as YYYY-MM-DD."""
    exported.mkdir()
    (exported / "policy.json").write_bytes((generated / "policy.json").read_bytes())
    connection = duckdb.connect()
    for table in TABLES:
        columns = ", ".join(
            f"strftime({c.name}, '%Y-%m') AS {c.name}" if c.kind == "month" else c.name for c in table.columns
        )
        source, target = generated / f"{table.name}.parquet", exported / f"{table.name}.csv"
        connection.execute(f"COPY (SELECT {columns} FROM read_parquet('{source}')) TO '{target}' (HEADER)")
    connection.close()


def test_a_generated_county_keeps_the_contract_and_loads_alike_from_parquet_and_csv(
    tiny_county: GeneratedCounty, tmp_path: Path
) -> None:
    from_parquet = load_dataset(tiny_county.folder)
    _export_as_csv(tiny_county.folder, tmp_path / "as-csv")
    from_csv = load_dataset(tmp_path / "as-csv")

    assert from_parquet.rejects == [] and from_csv.rejects == []
    assert from_parquet.row_count("households") == tiny_county.households
    for table in TABLES:
        pd.testing.assert_frame_equal(from_csv.frame(table.name), from_parquet.frame(table.name))


def test_a_generated_county_read_in_place_holds_the_rows_of_a_copied_one(
    tiny_county: GeneratedCounty, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = load_dataset(tiny_county.folder)
    monkeypatch.setattr(loading, "MATERIALIZE_ROWS", 0)  # every table large: views of the clean files

    in_place = load_dataset(tiny_county.folder)

    assert in_place.rejects == []
    for table in TABLES:
        pd.testing.assert_frame_equal(in_place.frame(table.name), copied.frame(table.name))
