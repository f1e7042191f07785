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
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relapse_risk.features.contract import TABLES, TABLES_BY_NAME, month_index, month_start
from relapse_risk.features.dataset import Dataset, DatasetError
from relapse_risk.features.history import build_features
from relapse_risk.features.household_rows import NotExact, household_features, read_clean_tables
from relapse_risk.features.loading import load_tables
from relapse_risk.features.policy import Policy, read_policy
from relapse_risk.serving.api_models import HouseholdInput
from relapse_risk.serving.api_payloads import score_entries
from relapse_risk.serving.api_scoring import policy_at, round_tables

Cells = dict[str, dict[str, list[str | None]]]


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from relapse_risk.generator.config import CountyConfig
    from relapse_risk.generator.run import generate

    folder = tmp_path_factory.mktemp("rows") / "county"
    config = CountyConfig(
        households=240, months=30, seed=5, households_per_village=(20, 60), villages_per_township=(2, 4)
    )
    generate(config, folder, truth=None)
    return folder


@pytest.fixture(scope="module")
def household_ids(county: Path) -> list[str]:
    return sorted(pd.read_parquet(county / "households.parquet")["household_id"].astype(str))


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
    dataset = _loader(tables, policy)
    if clean is None:
        return False
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
    _check(_tables(cells), policy, as_of)


def test_a_rejected_cell_sends_the_round_to_the_loader(county: Path, household_ids: list[str]) -> None:
    as_of = month_start(month_index(read_policy(county / "policy.json").data_end) - 2)
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
