"""The hyper-parameter search: seeded, reproducible with a trial limit, never worse than not tuning."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna")

from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES  # noqa: E402
from relapse_risk.training.config import BoosterParameters, TrainingSettings  # noqa: E402
from relapse_risk.training.tune import mean_recall_at_k, tune  # noqa: E402


def rows(months: list[dt.date], households: int, seed: int) -> pd.DataFrame:
    """Training rows of every catalogue feature: one drives the label, the rest are noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for month in months:
        columns = {
            name: rng.integers(0, 3, households)
            if name in CATEGORICAL_FEATURES
            else rng.normal(size=households)
            for name in FEATURE_NAMES
        }
        frame = pd.DataFrame(columns)
        driver = next(name for name in FEATURE_NAMES if name not in CATEGORICAL_FEATURES)
        chance = 1.0 / (1.0 + np.exp(-(-2.5 + 1.5 * frame[driver].to_numpy())))
        frame.insert(0, "household_id", [f"H{i:04d}" for i in range(households)])
        frame.insert(1, "as_of", pd.Timestamp(month))
        frame["label"] = (rng.random(households) < chance).astype(np.int8)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def search() -> tuple[pd.DataFrame, pd.DataFrame, TrainingSettings]:
    train = rows([dt.date(2023, 3, 1), dt.date(2023, 6, 1)], households=400, seed=1)
    validation = rows([dt.date(2023, 9, 1)], households=400, seed=2)
    settings = TrainingSettings(
        seed=5,
        threads=1,
        tune_minutes=5,  # the trial limit ends the search, so the result does not depend on speed
        tune_max_trials=2,
        booster=BoosterParameters(max_rounds=40, early_stopping_rounds=10),
    )
    return train, validation, settings


def test_two_seeded_trials_give_the_same_result_every_time(search) -> None:  # noqa: ANN001 - a fixture
    train, validation, settings = search

    first = tune(train, validation, 0.1, settings)
    again = tune(train, validation, 0.1, settings)

    assert len(first.trials) == 2
    assert first.best == again.best
    assert first.best_value == again.best_value
    pd.testing.assert_frame_equal(
        first.trials.drop(columns="duration"), again.trials.drop(columns="duration"), check_like=True
    )


def test_the_first_trial_is_the_settings_own_parameters_and_tuning_never_does_worse(search) -> None:  # noqa: ANN001
    train, validation, settings = search

    result = tune(train, validation, 0.1, settings)

    first = result.trials.iloc[0]
    assert first["params_learning_rate"] == settings.booster.learning_rate
    assert first["params_num_leaves"] == settings.booster.num_leaves
    assert result.default_value == first["value"]
    assert result.best_value >= result.default_value
    assert 0.0 <= result.best_value <= 1.0


def test_recall_at_k_is_averaged_over_months_that_have_positives() -> None:
    frame = pd.DataFrame(
        {
            "household_id": ["a", "b", "c", "d", "e", "f"],
            "as_of": pd.to_datetime(["2023-03-01"] * 3 + ["2023-06-01"] * 3),
            "label": [1, 0, 1, 0, 0, 0],  # June has no positive: it is left out, not counted as 0
        }
    )
    score = np.array([0.9, 0.8, 0.1, 0.5, 0.4, 0.3])

    # March: visit the top third (1 household), a is found, c is not: recall 1/2.
    assert mean_recall_at_k(frame, score, 1 / 3) == pytest.approx(0.5)
