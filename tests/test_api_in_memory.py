"""``POST /score`` answers a round without DuckDB exactly as it answers it through the loader.

``score_prepared(..., in_memory=True)`` (the server's setting) checks and
scores a round that keeps the contract with ``features.household_rows``;
``in_memory=False`` sends every round through ``load_tables`` and
``score_dataset``. Both must give the same answers (status, score, band,
margin, rule, reasons, village context) and log the same feature rows, for
clean rounds, for rounds with broken households (the loader's words), and
with the batch run's village figures in place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import GeneratedCounty
from hypothesis import given, settings
from hypothesis import strategies as st
from relapse_risk.features import loading
from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from relapse_risk.features.contract import TABLES, month_index, month_start
from relapse_risk.features.policy import read_policy
from relapse_risk.models.model import RiskModel
from relapse_risk.serving.api.folder_payloads import score_entries
from relapse_risk.serving.api.schemas import HouseholdInput
from relapse_risk.serving.api.score_rounds import (
    cell_text,
    ownership_problems,
    prepare_households,
    score_prepared,
)
from relapse_risk.serving.scoring import ResolvedModel
from relapse_risk.serving.village_context import VillageFigures, village_feature_names


@pytest.fixture(scope="module")
def county(tiny_county: GeneratedCounty) -> Path:
    """The tiny county: its villages of 20 to 60 households put a round's households in several."""
    return tiny_county.folder


@pytest.fixture(scope="module")
def served() -> ResolvedModel:
    """A real RiskModel on the catalogue's columns fitted to a signal in a few features: fast to train."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(800, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    for name in CATEGORICAL_FEATURES:
        frame[name] = rng.integers(0, 3, size=800)
    signal = frame["rule_margin"] - frame["income_total_mean_3m"] + rng.normal(size=800)
    label = (signal > 1).astype(int).to_numpy()
    model = RiskModel(
        max_rounds=30, min_child_samples=10, categorical_features=CATEGORICAL_FEATURES, seed=3, num_threads=1
    )
    model.fit(frame[:600], label[:600], frame[600:], label[600:])
    return ResolvedModel(
        model=model, name="relapse-risk", version="3", uri="models:/relapse-risk@champion", horizon=6
    )


def _items(county: Path, count: int, as_of_offset: int, seed: int) -> list[HouseholdInput]:
    policy = read_policy(county / "policy.json")
    as_of = month_start(month_index(policy.data_end) - as_of_offset)
    ids = sorted(pd.read_parquet(county / "households.parquet")["household_id"].astype(str))
    chosen = [str(x) for x in np.random.default_rng(seed).choice(ids, size=count, replace=False)]
    return [HouseholdInput.model_validate(e) for e in score_entries(county, chosen, as_of)]


def _both(items: list[HouseholdInput], served: ResolvedModel, county: Path, contexts=lambda _: None):  # type: ignore[no-untyped-def]
    policy = read_policy(county / "policy.json")
    fast = score_prepared(
        prepare_households(items), served=served, policy=policy, village_contexts=contexts, in_memory=True
    )
    slow = score_prepared(
        prepare_households(items), served=served, policy=policy, village_contexts=contexts, in_memory=False
    )
    return fast, slow


def _assert_same(fast, slow) -> None:  # type: ignore[no-untyped-def]
    assert [a.model_dump() for a in fast.answers] == [a.model_dump() for a in slow.answers]
    pd.testing.assert_frame_equal(fast.features.sort_index(), slow.features.sort_index())


def test_clean_rounds_are_answered_without_the_loader_and_as_the_loader_answers(
    county: Path, served: ResolvedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    for count, offset, seed in ((1, 0, 1), (9, 3, 2), (24, 14, 3)):
        items = _items(county, count, offset, seed)
        fast, slow = _both(items, served, county)
        _assert_same(fast, slow)
        assert {a.status for a in fast.answers} <= {"scored", "under_monitoring", "triggered_now"}
        assert any(a.status == "scored" and a.reasons for a in fast.answers) or count == 1

    def no_loader(*args: object, **kwargs: object) -> None:
        raise AssertionError("a clean round went through the loader")

    monkeypatch.setattr(loading, "_load", no_loader)
    policy = read_policy(county / "policy.json")
    items = _items(county, 5, 2, 4)
    score_prepared(
        prepare_households(items),
        served=served,
        policy=policy,
        village_contexts=lambda _: None,
        in_memory=True,
    )


def test_a_round_with_a_broken_household_is_answered_in_the_loaders_words(
    county: Path, served: ResolvedModel
) -> None:
    items = _items(county, 6, 1, 5)
    broken = items[2].model_copy(deep=True)
    broken.tables.members[0]["sex"] = "x"
    items[2] = broken
    fast, slow = _both(items, served, county)
    _assert_same(fast, slow)
    assert fast.answers[2].status == "rejected"
    assert fast.answers[2].problems[0].rule == "enum"


def test_village_figures_of_a_batch_run_are_applied_alike(county: Path, served: ResolvedModel) -> None:
    items = _items(county, 7, 0, 6)
    villages = sorted({i.tables.households[0]["village_code"] for i in items})
    names = village_feature_names(served.model.feature_names_)
    context = pd.DataFrame(
        {"village_code": villages[:-1], **{n: [0.25] * (len(villages) - 1) for n in names}}
    )
    context["village_households"] = 180.0
    fast, slow = _both(items, served, county, lambda _: ("2023-03", VillageFigures.of(context)))
    _assert_same(fast, slow)
    assert any(a.village_context_as_of == "2023-03" for a in fast.answers)


def test_in_memory_answers_read_the_rows_of_the_batch_scores_table(
    county: Path, served: ResolvedModel
) -> None:
    from relapse_risk.features.household_rows import household_features, household_panel, read_clean_tables
    from relapse_risk.serving.api.score_rounds import round_tables, scores_by_household
    from relapse_risk.serving.cells import present
    from relapse_risk.serving.scoring import rejects_to_frame, roster_scores, rule_facts_at, score_roster

    items = _items(county, 24, 14, 7)
    policy = read_policy(county / "policy.json")
    as_of = items[0].as_of_month
    clean = read_clean_tables(round_tables(items)[0], policy)
    assert clean is not None
    panel, state = household_panel(clean, as_of)
    features = household_features(clean, as_of, panel=panel, state=state)
    roster = (
        clean.frame("households")[["household_id", "county_code", "township_code", "village_code"]]
        .sort_values("household_id", kind="stable", ignore_index=True)
        .astype(object)
    )
    facts = rule_facts_at(None, as_of, state=state)
    table = score_roster(
        roster,
        rejects_to_frame([]),
        policy,
        as_of,
        served.model,
        features=features,
        facts=facts,
        model_name="relapse-risk",
        model_version="3",
        explain="all",
        horizon_months=6,
    ).scores
    figures = roster_scores(roster, {}, policy, served.model, features=features, facts=facts, explain="all")
    rows = scores_by_household(roster["household_id"].to_numpy(), figures, 6)

    records = {r["household_id"]: r for r in table.to_dict("records")}
    expected = {h: {c: present(records[h].get(c)) for c in row} for h, row in rows.items()}
    assert list(records) == list(rows)
    assert {h: {c: present(row.get(c)) for c in row} for h, row in rows.items()} == expected
    assert len({row["status"] for row in rows.values()}) > 1
    assert any(row["reason_1_code"] is not None for row in rows.values())


# Reference cells for the ownership check: this household's ids, padded or not, others, and non-ids.
_ID_CELLS = st.sampled_from(
    [None, "", " ", "h1", " h1", "h1 ", "h2", "m1", " m1", "m2", "l1", "l1\t", "l2", 1, 1.0, True]
)


def _owned_row_by_row(item: HouseholdInput, household_id: str) -> list[tuple[str, int, str, str]]:
    """The rule of ownership_problems read literally, one row at a time."""

    def key(row: dict[str, object], column: str) -> str | None:
        text = cell_text(row.get(column))
        return text.strip() or None if text is not None else None

    tables = item.tables.table_rows()
    members = {k for r in tables["members"] if (k := key(r, "member_id"))}
    loans = {k for r in tables["loans"] if (k := key(r, "loan_id"))}
    found = []
    for table in TABLES:
        for number, row in enumerate(tables[table.name], start=1):
            named = key(row, "household_id") if "household_id" in table.column_names else None
            if named is not None and named != household_id:
                found.append((table.name, number, "household_id", "other_household"))
            member = key(row, "member_id") if table.name in ("employment", "expenses", "events") else None
            if member is not None and member not in members:
                found.append((table.name, number, "member_id", "foreign_key"))
            loan = key(row, "loan_id") if table.name == "loan_status" else None
            if loan is not None and loan not in loans:
                found.append((table.name, number, "loan_id", "foreign_key"))
    return found


@settings(max_examples=300, deadline=None)
@given(
    cells=st.dictionaries(
        st.sampled_from(
            [
                ("members", "household_id"),
                ("members", "member_id"),
                ("income", "household_id"),
                ("employment", "member_id"),
                ("expenses", "household_id"),
                ("expenses", "member_id"),
                ("loans", "loan_id"),
                ("loans", "household_id"),
                ("loan_status", "loan_id"),
                ("assistance", "household_id"),
            ]
        ),
        st.lists(_ID_CELLS, min_size=1, max_size=3),
    )
)
def test_ownership_problems_are_those_of_reading_every_row(
    cells: dict[tuple[str, str], list[object]],
) -> None:
    tables: dict[str, list[dict[str, object]]] = {
        "households": [{"household_id": "h1"}],
        "members": [{"household_id": "h1", "member_id": "m1"}],
        "loans": [{"household_id": "h1", "loan_id": "l1"}],
    }
    for (table, column), values in cells.items():
        rows = tables.setdefault(table, [])
        rows += [{} for _ in range(len(values) - len(rows))]
        for row, value in zip(rows, values, strict=False):
            row[column] = value
    item = HouseholdInput.model_validate({"as_of": "2024-06", "tables": tables})
    problems = ownership_problems(item, "h1")
    assert [(p.table, p.row, p.column, p.rule) for p in problems] == _owned_row_by_row(item, "h1")
