"""models.treeshap gives LightGBM's own TreeSHAP values (pred_contrib), only faster.

Boosters are trained here on small synthetic data chosen to reach every
branch of LightGBM's decision rule: missing values as NaN and as zero,
default directions both ways, features split on several times along one
path, and leaves deep enough to be computed without a table; and categorical
splits with NaN, negative, fractional, huge and unseen codes at predict time.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relapse_risk.models.explain import (
    contribution_tables,
    explain,
    shap_contributions,
)
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


# -- categorical splits -------------------------------------------------------------------------

_CATEGORICAL = [0, 2, 4]
_ODD_CODES = [np.nan, -1.0, -0.5, -0.0, 0.7, 2.5, 39.9, 40.0, 64.0, 100.0, 1e6, 3e9, -3e9, np.inf, -np.inf]
"""Codes LightGBM decides by its own rule: NaN, negatives, fractions, beyond the bitset, beyond a C int."""


def _categorical_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.integers(0, 40, rows),  # many categories: bitsets of two words
            rng.normal(size=rows),
            rng.integers(0, 6, rows),  # few categories: one-hot style splits too
            rng.normal(size=rows),
            rng.integers(0, 12, rows),
        ]
    ).astype(float)
    X[rng.random(rows) < 0.1, 0] = np.nan
    X[rng.random(rows) < 0.1, 4] = np.nan
    logit = (
        1.5 * np.isin(X[:, 0], [1, 4, 6, 33, 35])
        - np.isin(X[:, 2], [3, 5])
        + X[:, 1] * np.isin(X[:, 4], [2, 7, 9])
        + np.sin(2 * X[:, 3])
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _categorical_booster(seed: int) -> lgb.Booster:
    X, y = _categorical_data(3000, seed)
    params = {
        "objective": "binary",
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_cat_to_onehot": 4,
        "learning_rate": 0.2,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    dataset = lgb.Dataset(X, y, categorical_feature=_CATEGORICAL)
    return lgb.train(params, dataset, num_boost_round=40)


def _categorical_rows(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    X, _ = _categorical_data(600, seed + 1000)
    for column in _CATEGORICAL:
        odd = rng.random(len(X)) < 0.3
        X[odd, column] = rng.choice(_ODD_CODES, odd.sum())
    X[:3] = np.nan
    return X


@pytest.fixture(scope="module", params=[0, 1, 2])
def categorical_booster(request) -> lgb.Booster:
    return _categorical_booster(request.param)


@pytest.mark.parametrize("table_max_features", [0, 64])
def test_categorical_splits_equal_lightgbm_pred_contrib(categorical_booster, table_max_features):
    rows = _categorical_rows(seed=7)
    tables = TreeShapTables.from_booster(categorical_booster, table_max_features=table_max_features)
    ours = tables.contributions(rows)
    np.testing.assert_allclose(ours, categorical_booster.predict(rows, pred_contrib=True), rtol=0, atol=1e-12)
    raw = categorical_booster.predict(rows, raw_score=True)
    np.testing.assert_allclose(ours.sum(axis=1), raw, rtol=0, atol=1e-12)


def test_the_categorical_trees_exercise_what_the_test_above_claims(categorical_booster):
    """Guards the test above: category sets of one and two words, repeated categorical splits on a path."""
    model = categorical_booster.dump_model()
    widest_set = 0
    repeated_categorical = False

    def walk(node: dict, categorical_path: tuple[int, ...]) -> None:
        nonlocal widest_set, repeated_categorical
        if "split_index" not in node:
            repeated_categorical |= len(set(categorical_path)) < len(categorical_path)
            return
        if node["decision_type"] == "==":
            widest_set = max(widest_set, max(int(c) for c in str(node["threshold"]).split("||")))
            categorical_path = (*categorical_path, node["split_feature"])
        walk(node["left_child"], categorical_path)
        walk(node["right_child"], categorical_path)

    for tree in model["tree_info"]:
        walk(tree["tree_structure"], ())
    assert widest_set >= 32
    assert repeated_categorical
    rows = _categorical_rows(seed=7)
    assert np.isnan(rows[:, 0]).any() and (rows[:, 0] < 0).any() and (rows[:, 0] >= 40).any()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    codes=st.lists(
        st.one_of(
            st.sampled_from(_ODD_CODES),
            st.integers(-5, 80).map(float),
            st.floats(-3.0, 70.0, allow_nan=False),
        ),
        min_size=3,
        max_size=3,
    ),
    numbers=st.lists(st.floats(-4.0, 4.0, allow_nan=False), min_size=2, max_size=2),
)
def test_any_categorical_code_is_decided_as_lightgbm_decides_it(codes, numbers):
    booster = _shared_categorical_booster()
    row = np.array([[codes[0], numbers[0], codes[1], numbers[1], codes[2]]])
    ours = _shared_categorical_tables().contributions(row)
    np.testing.assert_allclose(ours, booster.predict(row, pred_contrib=True), rtol=0, atol=1e-12)


def _shared_categorical_booster(cache: dict[str, object] = {}) -> lgb.Booster:  # noqa: B006 - built once
    if "booster" not in cache:
        cache["booster"] = _categorical_booster(seed=11)
    return cache["booster"]  # type: ignore[return-value]


def _shared_categorical_tables(cache: dict[str, object] = {}) -> TreeShapTables:  # noqa: B006 - built once
    if "tables" not in cache:
        cache["tables"] = TreeShapTables.from_booster(_shared_categorical_booster())
    return cache["tables"]  # type: ignore[return-value]


def test_results_do_not_depend_on_the_serial_or_parallel_kernel(categorical_booster):
    """A lone row runs on the calling thread, more in blocks on numba's threads: the same values."""
    rows = np.vstack([_categorical_rows(seed=3)] * 2)  # more than the largest block
    tables = TreeShapTables.from_booster(categorical_booster)
    whole = tables.contributions(rows)
    one_by_one = np.vstack([tables.contributions(rows[i : i + 1]) for i in range(0, len(rows), 37)])
    np.testing.assert_array_equal(whole[::37], one_by_one)
    # An API round: a few dozen rows, a small block per thread.
    round_of_32 = tables.contributions(rows[:32])
    np.testing.assert_array_equal(
        round_of_32, np.vstack([tables.contributions(row[None]) for row in rows[:32]])
    )


def test_linear_trees_are_refused():
    X, y = _data(1000, seed=4)
    params = {"objective": "binary", "linear_tree": True, "verbosity": -1, "num_leaves": 4}
    booster = lgb.train(params, lgb.Dataset(np.nan_to_num(X), y), num_boost_round=3)
    assert not TreeShapTables.supports(booster)
    with pytest.raises(UnsupportedBooster, match="linear"):
        TreeShapTables.from_booster(booster)


def test_explain_gives_the_same_reasons_with_and_without_tables():
    X, y = _data(4000, seed=5)
    names = [f"f{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    model = RiskModel(seed=1, max_rounds=30, early_stopping_rounds=10)
    model.fit(frame.iloc[:3000], y[:3000], frame.iloc[3000:], y[3000:], feature_names=tuple(names))
    tables = contribution_tables(model)
    assert tables is not None
    assert contribution_tables(model) is tables  # built once per model
    rows = frame.assign(household_id=[f"H{i:05d}" for i in range(len(frame))]).iloc[:600]
    by_lightgbm = shap_contributions(model, rows)
    by_tables = shap_contributions(model, rows, tables)
    np.testing.assert_allclose(by_tables.values, by_lightgbm.values, rtol=0, atol=1e-12)
    # Reasons use the model's tables unless told otherwise: any row count, any caller, same answer.
    pd.testing.assert_frame_equal(explain(model, rows, tables=tables), explain(model, rows))
    pd.testing.assert_frame_equal(
        explain(model, rows.iloc[[7]]), explain(model, rows).iloc[[7]].reset_index(drop=True)
    )


def _deep_booster() -> lgb.Booster:
    """Large trees over many features: 200 leaves a tree, some with a dozen distinct path features."""
    rng = np.random.default_rng(21)
    X = rng.normal(size=(4000, 24))
    X[rng.random(X.shape) < 0.05] = np.nan
    logit = np.nansum(X[:, :12] * rng.normal(size=12), axis=1) + np.sin(np.nan_to_num(X[:, 12] * X[:, 13]))
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 200,
        "min_data_in_leaf": 2,
        "min_sum_hessian_in_leaf": 0.0,
        "learning_rate": 0.3,
        "seed": 3,
        "deterministic": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=8)


@pytest.mark.parametrize("table_max_features", [0, 8])
def test_large_trees_equal_lightgbm_pred_contrib(table_max_features):
    """Leaves deeper than any table, in trees of hundreds of nodes: the per-row formula and the masks."""
    booster = _deep_booster()
    tables = TreeShapTables.from_booster(booster, table_max_features=table_max_features)
    assert np.diff(tables.leaf_column_start).max() >= 10
    assert np.diff(tables.tree_node_start).max() > 150
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(300, 24))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[:3] = np.nan
    ours = tables.contributions(rows)
    np.testing.assert_allclose(ours, booster.predict(rows, pred_contrib=True), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours[7:8], tables.contributions(rows[7:8]))


def test_table_width_changes_the_speed_not_a_bit_of_the_values():
    """Tables and leaves computed per row share one formula: any width, or a byte cap, gives the same bits."""
    booster = _deep_booster()
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(200, 24))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    per_row = TreeShapTables.from_booster(booster, table_max_features=0)
    assert (per_row.leaf_table_offset < 0).all()
    expected = per_row.contributions(rows)
    for width, cap in ((3, 2**40), (8, 2**40), (64, 2**40), (64, 2**16)):
        tables = TreeShapTables.from_booster(booster, table_max_features=width, table_max_bytes=cap)
        assert (tables.leaf_table_offset >= 0).any()
        assert tables.table.nbytes <= cap
        np.testing.assert_array_equal(tables.contributions(rows), expected)


def test_a_byte_cap_keeps_the_narrow_tables_and_drops_the_wide():
    booster = _deep_booster()
    widths = np.diff(TreeShapTables.from_booster(booster, table_max_features=0).leaf_column_start)
    tables = TreeShapTables.from_booster(booster, table_max_features=64, table_max_bytes=2**16)
    tabulated = tables.leaf_table_offset >= 0
    assert widths[tabulated].max() < widths[~tabulated].min()
    # the next width would not have fitted
    next_width = widths[~tabulated].min()
    assert tables.table.nbytes + (widths == next_width).sum() * 2**next_width * next_width * 8 > 2**16


def test_every_position_gets_its_mask_after_its_parent():
    """The kernel's one pass over a tree's steps reads each parent's mask only once it is written."""
    tables = TreeShapTables.from_booster(_deep_booster())
    for t in range(len(tables.tree_node_start) - 1):
        nodes = tables.tree_node_start[t + 1] - tables.tree_node_start[t]
        positions = nodes + tables.tree_leaf_start[t + 1] - tables.tree_leaf_start[t]
        first = tables.tree_node_start[t] + tables.tree_leaf_start[t]
        targets = tables.step_target[first : first + positions]
        parents = tables.step_parent[first : first + positions]
        assert targets[0] == 0  # the root, whose mask is empty
        assert sorted(targets) == list(range(positions))
        written = {0}
        for target, parent in zip(targets[1:], parents[1:], strict=True):
            assert parent < nodes and parent in written
            written.add(int(target))


# -- raw scores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_raw_scores_are_lightgbms_bit_for_bit(rows, zero_as_missing):
    """Scoring predicts with the flattened trees: the very doubles LightGBM's predict gives."""
    booster = _booster(zero_as_missing)
    tiny = np.array([[1e-40, -1e-40, 1e-36, -0.0, 5e-324, -5e-324]])  # around LightGBM's zero threshold
    matrix = np.vstack([rows, tiny, np.full((1, 6), np.inf), np.full((1, 6), -np.inf)])
    tables = TreeShapTables.from_booster(booster, table_max_features=0)
    theirs = booster.predict(matrix, raw_score=True)
    np.testing.assert_array_equal(tables.raw_scores(matrix), theirs)
    # pandas hands over feature tables in Fortran order, which is read in place; a strided view is copied.
    np.testing.assert_array_equal(tables.raw_scores(np.asfortranarray(matrix)), theirs)
    np.testing.assert_array_equal(tables.raw_scores(np.repeat(matrix, 2, axis=1)[:, ::2]), theirs)


def test_raw_scores_of_categorical_and_large_trees_are_lightgbms_bit_for_bit(categorical_booster):
    rows = np.vstack([_categorical_rows(seed=5)] * 2)  # more rows than one block
    ours = TreeShapTables.from_booster(categorical_booster).raw_scores(rows)
    np.testing.assert_array_equal(ours, categorical_booster.predict(rows, raw_score=True))
    deep = _deep_booster()
    deep_rows = np.random.default_rng(8).normal(size=(700, 24))
    deep_rows[::3, ::2] = np.nan
    ours = TreeShapTables.from_booster(deep).raw_scores(deep_rows)
    np.testing.assert_array_equal(ours, deep.predict(deep_rows, raw_score=True))


def test_raw_scores_of_trees_of_one_leaf_are_lightgbms():
    """A tree that found no split is a lone leaf: no nodes to walk, its value still counts."""
    X, y = _data(300, seed=6)
    params = {"objective": "binary", "min_data_in_leaf": 400, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=3)
    tables = TreeShapTables.from_booster(booster)
    assert len(tables.node_feature) == 0
    np.testing.assert_array_equal(tables.raw_scores(X[:50]), booster.predict(X[:50], raw_score=True))
    assert tables.raw_scores(X[:0]).shape == (0,)
    np.testing.assert_allclose(
        tables.contributions(X[:50]), booster.predict(X[:50], pred_contrib=True), rtol=0, atol=1e-12
    )
