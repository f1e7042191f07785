"""The in-memory path of small rounds equals the DuckDB path: same clean tables, same features.

``features.household_rows`` re-executes the loader's checks and the feature
parts in numpy for the few households of a ``POST /score`` round. These tests
hold it to the DuckDB path (``load_tables`` + ``build_features``) on rounds
built from a generated county exactly as the API builds them:

- a round the loader loads without a reject reads into the same typed tables
  and gives the same feature frame, float for float (money is summed in whole
  fen on both paths, so equality is exact, NaN where the other has NaN);
- a round with anything the loader would reject (a broken cell, a duplicate,
  an orphan) is never read: the caller must take the loader's path.

Rounds cover as-of months from the first month of the records on, members who
left, loans closed, months without income, negative business income, and
tables emptied or thinned by the mutations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import GeneratedCounty
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relapse_risk.features.contract import TABLES, TABLES_BY_NAME, month_index, month_start
from relapse_risk.features.dataset import Dataset, DatasetError
from relapse_risk.features.history import build_features
from relapse_risk.features.household_rows import NotExact, household_features, read_clean_tables
from relapse_risk.features.loading import load_tables
from relapse_risk.features.policy import Policy, read_policy
from relapse_risk.serving.api.folder_payloads import score_entries
from relapse_risk.serving.api.schemas import HouseholdInput
from relapse_risk.serving.api.score_rounds import cell_text, policy_at, round_tables

Cells = dict[str, dict[str, list[str | None]]]


@pytest.fixture(scope="module")
def county(tiny_county: GeneratedCounty) -> Path:
    """The tiny county: its villages of 20 to 60 households put a round's households in several."""
    return tiny_county.folder


@pytest.fixture(scope="module")
def household_ids(county: Path) -> list[str]:
    return sorted(pd.read_parquet(county / "households.parquet")["household_id"].astype(str))


def _before_data_end(county: Path, months: int) -> dt.date:
    """The as-of month ``months`` before the county's data_end, so the county has rows after it."""
    return month_start(month_index(read_policy(county / "policy.json").data_end) - months)


def _round(county: Path, ids: list[str], as_of: dt.date) -> tuple[dict[str, pa.Table], Policy]:
    items = [HouseholdInput.model_validate(e) for e in score_entries(county, ids, as_of)]
    tables, _ = round_tables(items)
    return tables, policy_at(read_policy(county / "policy.json"), as_of)


def _loader(tables: dict[str, pa.Table], policy: Policy) -> Dataset | None:
    try:
        return load_tables(tables, policy, text_cells=True)
    except DatasetError:
        return None


def _assert_same_tables(fast: dict[str, pd.DataFrame], dataset: Dataset) -> None:
    for table in TABLES:
        mine, theirs = fast[table.name], dataset.frame(table.name)
        assert len(mine) == len(theirs), table.name
        for column in table.columns:
            a, b = mine[column.name].to_numpy(), theirs[column.name].to_numpy()
            if column.kind in ("month", "date"):
                a, b = a.astype("datetime64[D]"), b.astype("datetime64[D]")
                assert np.array_equal(a, b, equal_nan=True), (table.name, column.name)
            elif column.kind in ("int", "money", "float"):
                assert np.array_equal(a.astype(float), b.astype(float), equal_nan=True), (
                    table.name,
                    column.name,
                )
            else:
                assert a.tolist() == b.tolist(), (table.name, column.name)


def _assert_same_features(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    assert list(fast.columns) == list(slow.columns)
    assert fast["household_id"].tolist() == slow["household_id"].tolist()
    different = [
        c
        for c in fast.columns[1:]
        if not np.array_equal(fast[c].to_numpy(), slow[c].to_numpy(), equal_nan=True)
    ]
    assert different == []


def _check(tables: dict[str, pa.Table], policy: Policy, as_of: dt.date) -> bool:
    """Assert the fast path agrees with the loader; True when it took the round."""
    clean = read_clean_tables(tables, policy)
    if clean is None:  # the caller takes the loader's path: nothing to compare
        return False
    dataset = _loader(tables, policy)
    assert dataset is not None, "the fast path read a round the loader refuses"
    assert dataset.rejects == [], f"the fast path read a round with rejects: {dataset.rejects[:3]}"
    _assert_same_tables({t.name: clean.frame(t.name) for t in TABLES}, dataset)
    try:
        fast = household_features(clean, as_of)
    except NotExact:  # amounts too large to sum exactly in memory: the caller takes the DuckDB path
        return False
    _assert_same_features(fast, build_features(dataset, as_of))
    dataset.connection.close()
    return True


def _months(policy: Policy) -> list[dt.date]:
    first, last = policy.first_month_index, policy.last_month_index
    return [month_start(m) for m in (first, first + 1, first + 3, first + 12, first + 14, last - 1, last)]


def test_clean_rounds_give_the_loaders_tables_and_features(county: Path, household_ids: list[str]) -> None:
    full = read_policy(county / "policy.json")
    rng = np.random.default_rng(3)
    for as_of in _months(full):
        for size in (1, 7, 40):
            ids = [str(x) for x in rng.choice(household_ids, size=size, replace=False)]
            tables, policy = _round(county, ids, as_of)
            assert _check(tables, policy, as_of), f"a clean round at {as_of} fell back to the loader"


def _cells(tables: dict[str, pa.Table]) -> Cells:
    return {name: table.to_pydict() for name, table in tables.items()}


def _tables(cells: Cells) -> dict[str, pa.Table]:
    return {
        name: pa.table({c: pa.array(v, type=pa.string()) for c, v in columns.items()})
        for name, columns in cells.items()
    }


# Cell texts that are valid for some columns and break others.
_ODD_CELLS = (
    None,
    "",
    " ",
    " 1",
    "1\u3000",
    "\u00a0x",
    "x\t",
    "2.0",
    "2.5",
    "-1",
    "0",
    "1e3",
    "98765432.1",
    "0.005",
    "nan",
    "inf",
    "1e400",
    "TRUE",
    "yes",
    "2021-13",
    "2021-02-30",
    "2021-03-15",
    "2099-01",
    "2021-03",
    "2021-03-01",
    "Plain",
    "plain",
    "business",
    "head",
    "110101199001011234",
    "张三",
    "x",
)


@st.composite
def _mutations(draw: st.DrawFn) -> list[tuple[str, ...]]:
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        what = draw(
            st.sampled_from(["cell", "drop_row", "duplicate_row", "empty_table", "negative_business"])
        )
        table = draw(st.sampled_from([t.name for t in TABLES]))
        column = draw(st.sampled_from(TABLES_BY_NAME[table].column_names))
        steps.append(
            (what, table, column, draw(st.sampled_from(_ODD_CELLS) | st.none()), draw(st.integers(0, 10**6)))
        )
    return steps


def _mutate(cells: Cells, steps: list[tuple[str, ...]]) -> None:
    for what, table, column, text, seed in steps:
        columns = cells[table]
        rows = len(next(iter(columns.values())))
        if what == "empty_table":
            for values in columns.values():
                values.clear()
            continue
        if what == "negative_business":
            income = cells["income"]
            for i, source in enumerate(income["source"]):
                if source == "business":
                    income["amount"][i] = "-" + str(income["amount"][i]).lstrip("-")
            continue
        if rows == 0:
            continue
        row = int(seed) % rows
        if what == "cell":
            columns[column][row] = text
        elif what == "drop_row":
            for values in columns.values():
                del values[row]
        else:
            for values in columns.values():
                values.append(values[row])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=_mutations(),
    size=st.integers(1, 6),
    month=st.integers(0, 6),
    seed=st.integers(0, 10**6),
)
def test_broken_or_thinned_rounds_never_differ_from_the_loader(
    county: Path, household_ids: list[str], steps: list[tuple[str, ...]], size: int, month: int, seed: int
) -> None:
    as_of = _months(read_policy(county / "policy.json"))[month]
    ids = [str(x) for x in np.random.default_rng(seed).choice(household_ids, size=size, replace=False)]
    tables, policy = _round(county, ids, as_of)
    cells = _cells(tables)
    _mutate(cells, steps)
    mutated = _tables(cells)
    if read_clean_tables(mutated, policy) is None:
        _loader(mutated, policy)  # where the caller sends it: the loader rejects rows, never crashes
    else:
        _check(mutated, policy, as_of)


def test_a_rejected_cell_sends_the_round_to_the_loader(county: Path, household_ids: list[str]) -> None:
    as_of = _before_data_end(county, 2)
    tables, policy = _round(county, household_ids[:3], as_of)
    assert read_clean_tables(tables, policy) is not None
    for table, column, text in (
        ("households", "terrain", "Plain"),
        ("members", "birth_year", "1890"),
        ("income", "month", "2099-01"),
        ("expenses", "reimbursed", "1e9"),
        ("members", "member_id", "110101199001011234"),
    ):
        cells = _cells(tables)
        if not cells[table][column]:
            continue
        cells[table][column][0] = text
        broken = _tables(cells)
        assert read_clean_tables(broken, policy) is None, (table, column, text)
        dataset = _loader(broken, policy)
        assert dataset is None or dataset.rejects, (table, column, text)


# -- the text of JSON cells, and typing a round's columns a group at a time ---------------------

# JSON scalars as a request may hold them: numbers as ints, floats (exponents, negative zero, beyond
# int64, not finite), booleans and strings, padded or empty text, and nulls.
_JSON_CELLS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 7, 1980, 2**63, -(2**63) - 1, 10**20]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, 1e-05, 1e16, 1e15, 123456789012345.6, 5e-324, 1e300, 330.0]),
    st.text(max_size=6),
    st.sampled_from(["", " ", " 1", "1 ", "1e3", "-0", "0012", "true", "2021-03", "\u3000x", "x\t"]),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(st.sampled_from(["household_id", "month", "source", "amount", "x"]), _JSON_CELLS),
        max_size=8,
    ),
    split=st.lists(st.integers(0, 8), max_size=3),
)
def test_round_tables_hold_the_csv_text_of_every_json_cell(
    rows: list[dict[str, object]], split: list[int]
) -> None:
    """Any mix of JSON types in a column reads as cell_text's text, cell by cell; rows keep their origin.

    And each household's rows can be taken back out of the round, as the rows it has alone.
    """
    cuts = sorted([min(c, len(rows)) for c in split] + [0, len(rows)])  # households with no row too
    parts = [rows[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    items = [
        HouseholdInput.model_validate(
            {"as_of": "2024-06", "tables": {"households": [{"household_id": "h"}], "income": part}}
        )
        for part in parts
    ]
    tables, origins = round_tables(items)
    income = [row for item in items for row in item.tables.income]
    assert tables["income"].column_names == list(TABLES_BY_NAME["income"].column_names)
    for column in TABLES_BY_NAME["income"].column_names:
        assert tables["income"][column].to_pylist() == [cell_text(r.get(column)) for r in income], column
    expected = [
        (position, n) for position, item in enumerate(items) for n in range(1, len(item.tables.income) + 1)
    ]
    assert list(origins["income"]) == expected
    assert len(origins["income"]) == len(expected)
    assert [origins["income"][i] for i in range(-len(expected), 0)] == expected
    assert origins["income"][1:3] == expected[1:3]
    with pytest.raises(IndexError):
        origins["income"][len(expected)]
    assert [tables[t.name].num_rows for t in TABLES if t.name not in ("households", "income")] == [0] * 8
    # A household taken out of the round (to be scored on its own) has the rows it has alone.
    for position, item in enumerate(items):
        part, alone = round_tables(items).household(position), round_tables([item])
        assert all(part.tables[name].equals(alone.tables[name]) for name in alone.tables)
        assert {n: list(o) for n, o in part.origins.items()} == {n: list(o) for n, o in alone.origins.items()}


# Cells given as JSON values of another type than the export's: each must read as the loader reads its text.
_RETYPED = (
    ("households", "escape_year", lambda v: None if v is None else float(v)),
    ("households", "escape_year", lambda v: -0.0 if v is None else v),
    ("households", "cultivated_land_mu", lambda v: int(v) if v == int(v) else v),
    ("households", "cultivated_land_mu", lambda v: f" {v}"),
    ("households", "registered_poor", lambda v: int(v)),
    ("households", "registered_poor", lambda v: "TRUE" if v else "0"),
    ("households", "relocated", lambda v: str(v)),
    ("members", "birth_year", lambda v: float(v)),
    ("members", "birth_year", lambda v: f"{v}.0"),
    ("members", "birth_year", lambda v: f"{v / 1000}e3"),
    ("members", "disability_grade", lambda v: -0.0 if v == 0 else v),
    ("members", "disability_grade", lambda v: "-0" if v == 0 else v),
    ("members", "joined_month", lambda v: "" if v is None else v),
    ("income", "amount", lambda v: int(v) if v == int(v) else v),
    ("income", "amount", lambda v: f"{v:e}"),
    ("income", "amount", lambda v: -0.0 if v == 0 else v),
    ("income", "amount", lambda v: str(v)),
    ("income", "amount", lambda v: 10**20),
    ("income", "amount", lambda v: 2**64),
    ("expenses", "reimbursed", lambda v: 0),
    ("events", "value", lambda v: None),
    ("events", "severity", lambda v: float(v)),
    ("loans", "principal", lambda v: 5e-324),
    ("loans", "principal", lambda v: 0),
    ("loans", "term_months", lambda v: True),
    ("loan_status", "overdue_days", lambda v: float(v)),
    ("loan_status", "balance", lambda v: 1e-05),
    ("assistance", "end_month", lambda v: "" if v is None else v),
)


@pytest.mark.parametrize("table,column,retype", _RETYPED)
def test_json_numbers_booleans_and_strings_read_as_the_loader_reads_them(
    county: Path, household_ids: list[str], table: str, column: str, retype: Callable[[Any], object]
) -> None:
    as_of = _before_data_end(county, 1)
    entries = score_entries(county, household_ids[:12], as_of)
    for entry in entries:
        for row in entry["tables"][table]:  # type: ignore[index]
            row[column] = retype(row[column])
    items = [HouseholdInput.model_validate(e) for e in entries]
    tables, _ = round_tables(items)
    _check(tables, policy_at(read_policy(county / "policy.json"), as_of), as_of)


# Number texts at the edges of the spellings and bounds read in memory.
_NUMBER_TEXTS = (
    "0",
    "-0",
    "-0.0",
    "0.0",
    "1e3",
    "1E3",
    "1e-3",
    "1e+03",
    "1.5e2",
    "1e1000",
    "12345678901234567890",
    "999999999999999",
    "1000000000000000",
    "0.5",
    "5e-324",
    "-5e-324",
    ".5",
    "5.",
    "+1",
    "1_000",
    "0x10",
)


@pytest.mark.parametrize(
    "table,column",
    [
        ("members", "birth_year"),
        ("members", "disability_grade"),
        ("loans", "principal"),
        ("loans", "annual_rate"),
        ("households", "escape_year"),
        ("income", "amount"),
        ("events", "value"),
    ],
)
def test_number_spellings_and_bounds_read_as_the_loader_reads_them(
    county: Path, household_ids: list[str], table: str, column: str
) -> None:
    """Each spelling, alone in a round, is refused in memory or read; those read go each into a row
    of their own of one round (those too large to sum exactly in another), read as the loader reads."""
    as_of = _before_data_end(county, 1)
    tables, policy = _round(county, household_ids[:100], as_of)  # a row for each spelling
    year = policy.data_end.year
    exact, too_large = [], []
    for text in (*_NUMBER_TEXTS, str(year), str(year + 1), "1900", "1926", "1949", "2000"):
        clean = read_clean_tables(_spelled(tables, table, column, [text]), policy)
        if clean is None:
            continue  # the caller takes the loader's path: nothing to compare
        try:
            household_features(clean, as_of)
            exact.append(text)
        except NotExact:
            too_large.append(text)

    if exact:
        assert _check(_spelled(tables, table, column, exact), policy, as_of), exact
    if too_large:
        spelled = _spelled(tables, table, column, too_large)
        assert read_clean_tables(spelled, policy) is not None, too_large
        assert not _check(spelled, policy, as_of)  # the tables compared, the features left to DuckDB


def _spelled(tables: dict[str, pa.Table], table: str, column: str, texts: list[str]) -> dict[str, pa.Table]:
    """The round with the first cells of ``table.column`` spelled ``texts``, one a row."""
    cells = _cells(tables)
    assert len(cells[table][column]) >= len(texts), (table, len(cells[table][column]))
    cells[table][column][: len(texts)] = texts
    return _tables(cells)


# A space, tab, line break or ideographic space at an edge of a cell of each kind: text kinds are
# checked for padding, the others are read only when they match their spelling.
_PADDINGS = (" {}", "{} ", "{}\n", "\t{}", "{}\u3000")


@pytest.mark.parametrize(
    "table,column",
    [
        ("households", "household_id"),
        ("households", "county_code"),
        ("households", "registered_poor"),
        ("members", "member_id"),
        ("members", "sex"),
        ("members", "birth_year"),
        ("income", "month"),
        ("income", "source"),
        ("income", "amount"),
        ("employment", "month"),
        ("expenses", "date"),
        ("loans", "loan_id"),
    ],
)
def test_padded_cells_of_every_kind_read_as_the_loader_reads_them(
    county: Path, household_ids: list[str], table: str, column: str
) -> None:
    as_of = _before_data_end(county, 1)
    tables, policy = _round(county, household_ids[:8], as_of)
    for padding in _PADDINGS:
        cells = _cells(tables)
        present = [i for i, v in enumerate(cells[table][column]) if v is not None]
        if not present:
            continue
        cells[table][column][present[0]] = padding.format(cells[table][column][present[0]])
        assert read_clean_tables(_tables(cells), policy) is None
        _check(_tables(cells), policy, as_of)


def test_a_key_repeated_in_another_month_spelling_is_a_duplicate(
    county: Path, household_ids: list[str]
) -> None:
    as_of = _before_data_end(county, 1)
    tables, policy = _round(county, household_ids[:5], as_of)
    for table in ("income", "employment", "loan_status"):
        cells = _cells(tables)
        rows = cells[table]
        if not rows["month"]:
            continue
        for values in rows.values():
            values.append(values[0])
        month = rows["month"][0]
        assert month is not None
        rows["month"][-1] = month[:7] if len(month) == 10 else f"{month}-01"  # the same month
        assert read_clean_tables(_tables(cells), policy) is None, table
        _check(_tables(cells), policy, as_of)


def test_every_row_belongs_to_the_household_its_ids_name(county: Path, household_ids: list[str]) -> None:
    as_of = _before_data_end(county, 1)
    tables, policy = _round(county, household_ids[20:31], as_of)
    clean = read_clean_tables(tables, policy)
    assert clean is not None
    owners, columns = clean.owners, clean.columns
    ids = owners.household_ids.tolist()
    assert ids == sorted(set(columns["households"]["household_id"].tolist()))
    of_member = dict(zip(columns["members"]["member_id"], columns["members"]["household_id"], strict=True))
    of_loan = dict(zip(columns["loans"]["loan_id"], columns["loans"]["household_id"], strict=True))
    for table in TABLES:
        rows = columns[table.name]
        if "household_id" in rows:
            named = rows["household_id"].tolist()
        elif table.name == "employment":
            named = [of_member[m] for m in rows["member_id"]]
        else:
            named = [of_loan[loan] for loan in rows["loan_id"]]
        assert [ids[i] for i in owners.household_of(table.name)] == named, table.name
    member_ids, loan_ids = columns["members"]["member_id"], columns["loans"]["loan_id"]
    assert member_ids[owners.employment_members].tolist() == columns["employment"]["member_id"].tolist()
    assert loan_ids[owners.status_loans].tolist() == columns["loan_status"]["loan_id"].tolist()
