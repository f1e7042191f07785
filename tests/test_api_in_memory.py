"""``POST /score`` answers a round without DuckDB exactly as it answers it through the loader.

``score_households(..., in_memory=True)`` (the server's setting) checks and
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
from relapse_risk.features import loading
from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from relapse_risk.features.contract import month_index, month_start
from relapse_risk.features.policy import read_policy
from relapse_risk.models.model import RiskModel
from relapse_risk.serving.api_models import HouseholdInput
from relapse_risk.serving.api_payloads import score_entries
from relapse_risk.serving.api_scoring import ServedModel, score_households
from relapse_risk.serving.village_context import village_feature_names


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from relapse_risk.generator.config import CountyConfig
    from relapse_risk.generator.run import generate

    folder = tmp_path_factory.mktemp("api-rows") / "county"
    config = CountyConfig(
        households=120, months=30, seed=9, households_per_village=(20, 60), villages_per_township=(2, 4)
    )
    generate(config, folder, truth=None)
    return folder


@pytest.fixture(scope="module")
def served() -> ServedModel:
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
    return ServedModel(
        model=model, name="relapse-risk", version="3", uri="models:/relapse-risk@champion", horizon=6
    )


def _items(county: Path, count: int, as_of_offset: int, seed: int) -> list[HouseholdInput]:
    policy = read_policy(county / "policy.json")
    as_of = month_start(month_index(policy.data_end) - as_of_offset)
    ids = sorted(pd.read_parquet(county / "households.parquet")["household_id"].astype(str))
    chosen = [str(x) for x in np.random.default_rng(seed).choice(ids, size=count, replace=False)]
    return [HouseholdInput.model_validate(e) for e in score_entries(county, chosen, as_of)]


def _both(items: list[HouseholdInput], served: ServedModel, county: Path, contexts=lambda _: None):  # type: ignore[no-untyped-def]
    policy = read_policy(county / "policy.json")
    fast = score_households(items, served=served, policy=policy, village_contexts=contexts, in_memory=True)
    slow = score_households(items, served=served, policy=policy, village_contexts=contexts, in_memory=False)
    return fast, slow


def _assert_same(fast, slow) -> None:  # type: ignore[no-untyped-def]
    assert [a.model_dump() for a in fast.answers] == [a.model_dump() for a in slow.answers]
    pd.testing.assert_frame_equal(fast.features.sort_index(), slow.features.sort_index())


def test_clean_rounds_are_answered_without_the_loader_and_as_the_loader_answers(
    county: Path, served: ServedModel, monkeypatch: pytest.MonkeyPatch
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
    score_households(items, served=served, policy=policy, village_contexts=lambda _: None, in_memory=True)


def test_a_round_with_a_broken_household_is_answered_in_the_loaders_words(
    county: Path, served: ServedModel
) -> None:
    items = _items(county, 6, 1, 5)
    broken = items[2].model_copy(deep=True)
    broken.tables.members[0]["sex"] = "x"
    items[2] = broken
    fast, slow = _both(items, served, county)
    _assert_same(fast, slow)
    assert fast.answers[2].status == "rejected"
    assert fast.answers[2].problems[0].rule == "enum"


def test_village_figures_of_a_batch_run_are_applied_alike(county: Path, served: ServedModel) -> None:
    items = _items(county, 7, 0, 6)
    villages = sorted({i.tables.households[0]["village_code"] for i in items})
    names = village_feature_names(served.model.feature_names_)
    context = pd.DataFrame(
        {"village_code": villages[:-1], **{n: [0.25] * (len(villages) - 1) for n in names}}
    )
    context["village_households"] = 180.0
    fast, slow = _both(items, served, county, lambda _: ("2023-03", context))
    _assert_same(fast, slow)
    assert any(a.village_context_as_of == "2023-03" for a in fast.answers)
