"""Time-boxed hyper-parameter search that only ever looks at validation months.

Each trial trains on the training months, stops early on the validation months
and is scored by the mean recall@k over the validation months (the headline
metric of docs/rules-and-labels.md). Test months are never touched, so the test figures of the
final model stay an honest estimate. Optuna's TPE sampler is seeded; with a
trial limit the search is reproducible, with only a time limit the number of
trials (not their order) depends on the machine's speed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd
from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from relapse_risk.models.metrics import rank, visit_count
from relapse_risk.models.model import RiskModel

from .config import BoosterParameters, TrainingSettings


@dataclass(frozen=True)
class TuningResult:
    best: BoosterParameters
    best_value: float
    """Mean validation recall@k of the best trial."""
    default_value: float
    """Mean validation recall@k of the settings' own parameters (the first trial)."""
    trials: pd.DataFrame
    seconds: float


def risk_model(params: BoosterParameters, settings: TrainingSettings) -> RiskModel:
    """The project's RiskModel with the given booster parameters and the settings' seed and calibration."""
    return RiskModel(
        learning_rate=params.learning_rate,
        num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples,
        feature_fraction=params.feature_fraction,
        bagging_fraction=params.bagging_fraction,
        bagging_freq=params.bagging_freq,
        lambda_l2=params.lambda_l2,
        max_rounds=params.max_rounds,
        early_stopping_rounds=params.early_stopping_rounds,
        imbalance=params.imbalance,  # type: ignore[arg-type]
        calibration=settings.calibration,  # type: ignore[arg-type]
        categorical_features=CATEGORICAL_FEATURES,
        seed=settings.seed,
        num_threads=settings.threads,
    )


def mean_recall_at_k(rows: pd.DataFrame, score: np.ndarray, visit_share: float) -> float:
    """Mean over the as-of months of ``rows`` of recall@k when ranking by ``score`` (higher first)."""
    recalls = []
    for _, index in rows.groupby("as_of", sort=True).indices.items():
        label = rows["label"].to_numpy()[index].astype(bool)
        if not label.any():
            continue
        ranks = rank(score[index], rows["household_id"].to_numpy()[index])
        recalls.append(float((label & (ranks <= visit_count(visit_share, len(index)))).sum() / label.sum()))
    return float(np.mean(recalls)) if recalls else float("nan")


def _suggest(trial: optuna.Trial, base: BoosterParameters) -> BoosterParameters:
    return base.model_copy(
        update={
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 500, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.3, 1.0),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 50.0, log=True),
            "imbalance": trial.suggest_categorical("imbalance", ["none", "sqrt", "balanced"]),
        }
    )


def tune(
    train_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    visit_share: float,
    settings: TrainingSettings,
) -> TuningResult:
    """Search booster parameters for ``settings.tune_minutes`` (at most ``tune_max_trials`` trials).

    The settings' own parameters are the first trial, so tuning never returns
    something that did worse on validation than not tuning.
    """
    started = time.perf_counter()
    base = settings.booster
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=8)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(
        {
            "learning_rate": base.learning_rate,
            "num_leaves": base.num_leaves,
            "min_child_samples": base.min_child_samples,
            "feature_fraction": base.feature_fraction,
            "bagging_fraction": base.bagging_fraction,
            "lambda_l2": base.lambda_l2,
            "imbalance": base.imbalance,
        }
    )
    train_label = train_rows["label"].to_numpy(dtype=np.int8)
    validation_label = validation_rows["label"].to_numpy(dtype=np.int8)
    features = list(FEATURE_NAMES)

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, base)
        model = risk_model(params, settings).fit(
            train_rows, train_label, validation_rows, validation_label, feature_names=features
        )
        trial.set_user_attr("best_iteration", model.best_iteration_)
        return mean_recall_at_k(validation_rows, model.raw_score(validation_rows), visit_share)

    study.optimize(
        objective,
        n_trials=settings.tune_max_trials,
        timeout=settings.tune_minutes * 60,
        gc_after_trial=True,
    )
    trials = study.trials_dataframe(attrs=("number", "value", "params", "user_attrs", "duration"))
    trials["duration"] = trials["duration"].dt.total_seconds()
    best = base.model_copy(update=study.best_params)
    return TuningResult(
        best=BoosterParameters.model_validate(best.model_dump()),
        best_value=float(study.best_value),
        default_value=float(study.trials[0].value) if study.trials[0].value is not None else float("nan"),
        trials=trials,
        seconds=time.perf_counter() - started,
    )
