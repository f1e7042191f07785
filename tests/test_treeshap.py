"""models.treeshap gives LightGBM's own TreeSHAP values (pred_contrib), only faster.

Boosters are trained here on small synthetic data chosen to reach every
branch of LightGBM's decision rule: missing values as NaN and as zero,
default directions both ways, features split on several times along one
path, and leaves deep enough to be computed without a table.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from relapse_risk.models.explain import FAST_TREESHAP_MIN_ROWS, contribution_tables, explain
from relapse_risk.models.model import RiskModel
from relapse_risk.models.treeshap import TreeShapTables, UnsupportedBooster


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6))
    X[:, 1] = rng.integers(0, 4, rows)  # few values: repeated splits on one feature
    X[rng.random(rows) < 0.15, 2] = np.nan
    X[rng.random(rows) < 0.25, 3] = 0.0
    logit = X[:, 0] + 0.8 * X[:, 1] - np.nan_to_num(X[:, 2]) * X[:, 4] + np.sin(3 * X[:, 5])
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _booster(zero_as_missing: bool, seed: int = 0) -> lgb.Booster:
    X, y = _data(3000, seed)
    params = {
        "objective": "binary",
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "learning_rate": 0.2,
        "zero_as_missing": zero_as_missing,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=40)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    X, _ = _data(700, seed=99)
    X[:5] = np.nan  # rows with every value missing
    X[5:10] = 0.0
    return X


@pytest.mark.parametrize("zero_as_missing", [False, True])
@pytest.mark.parametrize("table_max_features", [0, 3, 64])
def test_values_equal_lightgbm_pred_contrib(rows, zero_as_missing, table_max_features):
    booster = _booster(zero_as_missing)
    tables = TreeShapTables.from_booster(booster, table_max_features=table_max_features)
    ours = tables.contributions(rows)
    theirs = booster.predict(rows, pred_contrib=True)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.sum(axis=1), booster.predict(rows, raw_score=True), rtol=0, atol=1e-12)


def test_the_trees_exercise_missing_values_and_repeated_splits():
    """Guards the test above: its boosters really contain what it claims to cover."""
    model = _booster(zero_as_missing=False).dump_model()
    missing_types = set()
    repeated = False

    def walk(node: dict, path_features: tuple[int, ...]) -> None:
        nonlocal repeated
        if "split_index" not in node:
            repeated |= len(set(path_features)) < len(path_features)
            return
        missing_types.add(node["missing_type"])
        feature = (*path_features, node["split_feature"])
        walk(node["left_child"], feature)
        walk(node["right_child"], feature)

    for tree in model["tree_info"]:
        walk(tree["tree_structure"], ())
    assert "NaN" in missing_types
    assert repeated
    zero_model = _booster(zero_as_missing=True).dump_model()
    assert '"missing_type": "Zero"' in str(zero_model).replace("'", '"')


def test_results_do_not_depend_on_how_rows_are_batched(rows):
    tables = TreeShapTables.from_booster(_booster(False))
    whole = tables.contributions(rows)
    pieces = np.vstack([tables.contributions(rows[i : i + 97]) for i in range(0, len(rows), 97)])
    np.testing.assert_array_equal(whole, pieces)
    assert tables.contributions(rows[:0]).shape == (0, rows.shape[1] + 1)


def test_a_matrix_of_the_wrong_width_is_refused(rows):
    tables = TreeShapTables.from_booster(_booster(False))
    with pytest.raises(ValueError, match=r"expected a \(rows, 6\) matrix"):
        tables.contributions(rows[:, :5])


def test_categorical_splits_are_left_to_lightgbm():
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.integers(0, 8, 2000), rng.normal(size=2000)]).astype(float)
    y = (np.isin(X[:, 0], [1, 4, 6]) ^ (X[:, 1] > 0)).astype(int)
    params = {"objective": "binary", "num_leaves": 8, "verbosity": -1, "min_data_per_group": 5}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=5)
    assert not TreeShapTables.supports(booster)
    with pytest.raises(UnsupportedBooster, match="categorical"):
        TreeShapTables.from_booster(booster)


def test_explain_gives_the_same_reasons_with_and_without_tables():
    X, y = _data(4000, seed=5)
    names = [f"f{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    model = RiskModel(seed=1, max_rounds=30, early_stopping_rounds=10)
    model.fit(frame.iloc[:3000], y[:3000], frame.iloc[3000:], y[3000:], feature_names=tuple(names))
    assert contribution_tables(model, FAST_TREESHAP_MIN_ROWS - 1) is None  # a few rows: LightGBM is quicker
    tables = contribution_tables(model, FAST_TREESHAP_MIN_ROWS)
    assert tables is not None
    rows = frame.assign(household_id=[f"H{i:05d}" for i in range(len(frame))]).iloc[:600]
    pd.testing.assert_frame_equal(explain(model, rows, tables=tables), explain(model, rows), atol=1e-12)
