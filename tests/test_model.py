"""The risk model: calibrated, deterministic, strict about its columns, and the same after a round trip.

Most tests use a synthetic frame whose true risk is known (a logistic model of
four columns), so calibration and ranking can be checked against the truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from relapse_risk.models.calibration import IsotonicCalibrator, PlattCalibrator, fit_calibrator
from relapse_risk.models.model import FeatureMismatchError, NotFittedError, RiskModel

FEATURES = ["income_gap", "months_worked", "terrain_code", "noise"]


def synthetic(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Feature frame, 0/1 labels and the true probability behind them (about 8 % positives)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "household_id": [f"H{seed:02d}{i:06d}" for i in range(rows)],
            "income_gap": rng.normal(size=rows),
            "months_worked": rng.integers(0, 13, size=rows),
            "terrain_code": rng.integers(0, 3, size=rows),
            "noise": rng.normal(size=rows),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "income_gap"] = np.nan
    gap = frame["income_gap"].fillna(0.0).to_numpy()
    logit = (
        -3.2 + 1.3 * gap - 0.15 * (frame["months_worked"].to_numpy() - 6) + 0.6 * (frame["terrain_code"] == 2)
    )
    truth = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(rows) < truth).astype(int)
    return frame, label, truth


def expected_calibration_error(probability: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    edges = np.quantile(probability, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(probability[inside].mean() - label[inside].mean())
    return error


def small_model(**overrides: object) -> RiskModel:
    params: dict[str, object] = {
        "seed": 11,
        "categorical_features": ["terrain_code"],
        "max_rounds": 300,
        "early_stopping_rounds": 30,
        "num_leaves": 15,
        "min_child_samples": 40,
        "feature_pipeline_version": "test",
    }
    params.update(overrides)
    return RiskModel(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    return {"train": synthetic(12_000, 1), "valid": synthetic(6_000, 2), "test": synthetic(12_000, 3)}


@pytest.fixture(scope="module")
def fitted(data: dict[str, tuple[pd.DataFrame, np.ndarray, np.ndarray]]) -> RiskModel:
    (X_train, y_train, _), (X_valid, y_valid, _) = data["train"], data["valid"]
    return small_model().fit(X_train, y_train, X_valid, y_valid, feature_names=FEATURES)


# -- probabilities ---------------------------------------------------------------------------------


def test_scores_are_probabilities_that_match_held_out_outcome_rates(data, fitted):
    X_test, y_test, truth = data["test"]
    risk = fitted.predict_proba(X_test)
    assert risk.shape == (len(X_test),)
    assert np.all((risk >= 0) & (risk <= 1))
    assert expected_calibration_error(risk, y_test) < 0.02
    # Mean predicted risk tracks the base rate, and the true probability too.
    assert abs(risk.mean() - y_test.mean()) < 0.01
    assert np.corrcoef(risk, truth)[0, 1] > 0.9


# -- the production refit ----------------------------------------------------------------------


def refit_frame(data) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Train and valid as one table of 18,000 rows: six "months" of 3,000 households each."""
    (X_train, y_train, _), (X_valid, y_valid, _) = data["train"], data["valid"]
    frame = pd.concat([X_train, X_valid], ignore_index=True)
    label = np.concatenate([y_train, y_valid])
    households = np.arange(len(frame)) % 3000
    latest = np.arange(len(frame)) >= len(frame) - 6000
    return frame, label, households, latest


def test_the_refit_learns_from_every_row_and_calibrates_on_households_it_held_out(data):
    frame, label, households, latest = refit_frame(data)
    model = small_model().fit_cross_calibrated(
        frame, label, rounds=60, groups=households, calibration_rows=latest, feature_names=FEATURES
    )
    summary = model.training_summary_
    assert summary["train_rows"] == len(frame) and model.best_iteration_ == 60
    # About a third of the households, at the latest rows only.
    assert 0.25 * latest.sum() < summary["calibration_rows"] < 0.42 * latest.sum()
    X_test, y_test, truth = data["test"]
    risk = model.predict_proba(X_test)
    assert expected_calibration_error(risk, y_test) < 0.02
    assert np.corrcoef(risk, truth)[0, 1] > 0.9
    again = small_model().fit_cross_calibrated(
        frame, label, rounds=60, groups=households, calibration_rows=latest, feature_names=FEATURES
    )
    assert np.array_equal(again.predict_proba(X_test), risk)


def test_the_refit_refuses_calibration_rows_without_both_outcomes(data):
    frame, label, households, latest = refit_frame(data)
    with pytest.raises(ValueError, match="calibration rows must hold both outcomes"):
        small_model().fit_cross_calibrated(
            frame, label, rounds=5, groups=households, calibration_rows=latest & (label == 0)
        )


def test_platt_calibration_is_an_alternative(data):
    (X_train, y_train, _), (X_valid, y_valid, _), (X_test, y_test, _) = (
        data["train"],
        data["valid"],
        data["test"],
    )
    model = small_model(calibration="platt").fit(X_train, y_train, X_valid, y_valid, feature_names=FEATURES)
    assert isinstance(model.calibrator_, PlattCalibrator)
    assert expected_calibration_error(model.predict_proba(X_test), y_test) < 0.03


def test_calibrated_risk_ranks_exactly_like_the_raw_score(data, fitted):
    X_test = data["test"][0]
    raw, risk = fitted.raw_score(X_test), fitted.predict_proba(X_test)
    order = np.argsort(raw, kind="stable")
    distinct = np.diff(raw[order]) > 0
    # Strictly increasing wherever the raw score increases: no ties created by calibration.
    assert np.all(np.diff(risk[order])[distinct] > 0)


def test_isotonic_calibrator_is_strictly_increasing_beyond_the_validation_range():
    rng = np.random.default_rng(5)
    raw = rng.normal(size=3000)
    label = (rng.random(3000) < 1 / (1 + np.exp(-(raw * 1.5 - 2)))).astype(int)
    calibrator = IsotonicCalibrator.fit(raw, label)
    grid = np.linspace(-8, 8, 2001)
    mapped = calibrator.transform(grid)
    assert np.all(np.diff(mapped) > 0)
    assert np.all((mapped > 0) & (mapped < 1))
    # No knot rests on a handful of rows: a top block of rate 1.0 would promise certainty.
    assert max(calibrator.transform(np.array([raw.max()]))) < 0.99


def test_calibrator_needs_both_outcomes():
    with pytest.raises(ValueError, match="both outcomes"):
        fit_calibrator("isotonic", np.array([0.1, 0.2, 0.3]), np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="isotonic' or 'platt"):
        fit_calibrator("beta", np.array([0.1, 0.2]), np.array([0, 1]))  # type: ignore[arg-type]


# -- training --------------------------------------------------------------------------------------


def test_early_stopping_keeps_only_the_best_rounds(fitted):
    assert 1 <= fitted.best_iteration_ < 300
    assert fitted.booster_.num_trees() == fitted.best_iteration_
    assert fitted.training_summary_["best_iteration"] == fitted.best_iteration_


def test_training_is_deterministic_for_a_seed(data):
    (X_train, y_train, _), (X_valid, y_valid, _), (X_test, _, _) = data["train"], data["valid"], data["test"]
    first = small_model(max_rounds=60).fit(X_train, y_train, X_valid, y_valid, feature_names=FEATURES)
    again = small_model(max_rounds=60).fit(X_train, y_train, X_valid, y_valid, feature_names=FEATURES)
    other = small_model(max_rounds=60, seed=12).fit(
        X_train, y_train, X_valid, y_valid, feature_names=FEATURES
    )
    assert first.booster_.model_to_string() == again.booster_.model_to_string()
    np.testing.assert_array_equal(first.predict_proba(X_test), again.predict_proba(X_test))
    # The seed reaches bagging and feature sampling: another seed grows other trees.
    assert first.booster_.model_to_string() != other.booster_.model_to_string()


def test_feature_columns_default_to_numeric_columns_without_identifiers(data):
    (X_train, y_train, _), (X_valid, y_valid, _) = data["train"], data["valid"]
    model = small_model(max_rounds=20).fit(X_train.assign(as_of="2023-06"), y_train, X_valid, y_valid)
    assert model.feature_names_ == tuple(FEATURES)


def test_records_the_feature_pipeline_version():
    from relapse_risk.features.catalogue import CATALOGUE_VERSION

    assert RiskModel().feature_pipeline_version == CATALOGUE_VERSION
    assert small_model().feature_pipeline_version == "test"


def test_fit_refuses_a_validation_set_without_positives(data):
    (X_train, y_train, _), (X_valid, y_valid, _) = data["train"], data["valid"]
    with pytest.raises(ValueError, match="y_valid must hold both outcomes"):
        small_model().fit(X_train, y_train, X_valid, np.zeros_like(y_valid), feature_names=FEATURES)
    with pytest.raises(ValueError, match="y_train has 3 labels for 12000 rows"):
        small_model().fit(X_train, y_train[:3], X_valid, y_valid, feature_names=FEATURES)


# -- columns ---------------------------------------------------------------------------------------


def test_columns_are_matched_by_name_and_extra_columns_ignored(data, fitted):
    X_test = data["test"][0]
    shuffled = X_test[["noise", "terrain_code", "household_id", "months_worked", "income_gap"]].assign(
        label=1
    )
    np.testing.assert_array_equal(fitted.predict_proba(shuffled), fitted.predict_proba(X_test))


def test_a_missing_feature_column_is_named(data, fitted):
    with pytest.raises(FeatureMismatchError, match="missing 2 feature column.*months_worked, noise"):
        fitted.predict_proba(data["test"][0].drop(columns=["months_worked", "noise"]))


def test_pandas_category_and_text_columns_are_refused(data, fitted):
    X_test = data["test"][0]
    with pytest.raises(FeatureMismatchError, match="'terrain_code' has the pandas category dtype"):
        fitted.predict_proba(X_test.assign(terrain_code=X_test["terrain_code"].astype("category")))
    with pytest.raises(FeatureMismatchError, match="'noise' is object, not numeric"):
        fitted.predict_proba(X_test.assign(noise="high"))
    with pytest.raises(FeatureMismatchError, match="'income_gap' holds an infinite value"):
        fitted.predict_proba(X_test.assign(income_gap=np.inf))


def test_categorical_codes_must_be_non_negative_integers(data):
    (X_train, y_train, _), (X_valid, y_valid, _) = data["train"], data["valid"]
    bad = X_train.assign(terrain_code=X_train["terrain_code"] - 0.5)
    with pytest.raises(FeatureMismatchError, match="categorical column 'terrain_code'"):
        small_model().fit(bad, y_train, X_valid, y_valid, feature_names=FEATURES)


def test_an_unfitted_model_says_so(data):
    with pytest.raises(NotFittedError):
        RiskModel().predict_proba(data["test"][0])


# -- persistence -----------------------------------------------------------------------------------


def test_save_and_load_give_identical_scores(tmp_path, data, fitted):
    X_test = data["test"][0]
    folder = fitted.save(tmp_path / "model")
    loaded = RiskModel.load(folder)
    np.testing.assert_array_equal(loaded.raw_score(X_test), fitted.raw_score(X_test))
    np.testing.assert_array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
    assert loaded.feature_names_ == fitted.feature_names_
    assert loaded.best_iteration_ == fitted.best_iteration_
    assert loaded.get_params() == fitted.get_params()
    # No pickles: every artefact is text a reviewer can read.
    assert sorted(p.name for p in folder.iterdir()) == ["booster.txt", "calibrator.json", "risk_model.json"]
    json.loads((folder / "calibrator.json").read_text())


def test_loading_names_a_missing_file(tmp_path, fitted):
    folder = fitted.save(tmp_path / "model")
    (folder / "calibrator.json").unlink()
    with pytest.raises(FileNotFoundError, match="calibrator.json: required model file is missing"):
        RiskModel.load(folder)


@pytest.mark.slow
def test_registered_pyfunc_scores_identically_in_a_fresh_process(tmp_path, data, fitted):
    import mlflow
    from relapse_risk.models.pyfunc import load_risk_model, log_risk_model, model_input_frame

    X_test = data["test"][0].head(500)
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    # Registration goes to the registry URI, which an earlier test may have pointed elsewhere.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        experiment = mlflow.create_experiment("risk", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = log_risk_model(fitted, "risk_model", X_test, registered_model_name="relapse-risk-test")
        mlflow.MlflowClient().set_registered_model_alias(
            "relapse-risk-test", "challenger", info.registered_model_version
        )
        unwrapped = load_risk_model("models:/relapse-risk-test@challenger")
    finally:
        mlflow.set_tracking_uri("")
        mlflow.set_registry_uri("")
    np.testing.assert_array_equal(unwrapped.predict_proba(X_test), fitted.predict_proba(X_test))

    features_path, scores_path = tmp_path / "features.parquet", tmp_path / "scores.parquet"
    model_input_frame(fitted, X_test).to_parquet(features_path)
    script = textwrap.dedent(
        f"""
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({tracking_uri!r})
        model = mlflow.pyfunc.load_model("models:/relapse-risk-test@challenger")
        model.predict(pd.read_parquet({str(features_path)!r})).to_parquet({str(scores_path)!r})
        """
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, cwd=tmp_path, timeout=120)
    scores = pd.read_parquet(scores_path)
    assert list(scores.columns) == ["risk_score"]
    np.testing.assert_array_equal(scores["risk_score"].to_numpy(), fitted.predict_proba(X_test))


def test_pyfunc_schema_makes_household_id_optional(fitted):
    from relapse_risk.models.pyfunc import model_signature

    signature = model_signature(fitted)
    inputs = {spec.name: spec for spec in signature.inputs.inputs}
    assert inputs["household_id"].required is False
    assert all(inputs[name].required for name in FEATURES)
    assert signature.outputs.input_names() == ["risk_score"]
