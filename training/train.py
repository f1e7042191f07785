"""``relapse train``: build the training table, split by time, fit, assess, log and register.

The job in steps, each usable on its own (tests swap labels between steps):

1. :func:`prepare_training_data`: load the folder, choose the labelled
   quarter-end as-of months, split them by time (training/split.py), build
   features and labels for the months the split uses, and refuse when
   history or positives are too few.
2. :func:`fit_risk_model`: LightGBM on the training months, early stopping on
   the validation months, calibration on the validation months' scores
   (optionally after :func:`training.tune.tune`, which also only sees
   validation months).
3. :func:`training.assessment.assess` on the test months, for the model, the
   rule baseline and (with a truth file) the oracle.
4. :func:`record_run`: one MLflow run with parameters, data fingerprint,
   feature list, metrics, figures and the pyfunc model, registered as a new
   version with alias ``challenger``.

Why the registered model is the one fitted on the training months only: the
calibrator must be fitted on rows the booster never trained on, and the test
figures must describe exactly the model in the registry. Refitting on
training + validation months would leave no untouched rows to calibrate on and
would register a model whose test figures were never measured.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from relapse_risk.features.catalogue import CATALOGUE_VERSION, CATEGORICAL_FEATURES, FEATURE_NAMES
from relapse_risk.features.contract import format_month, month_start
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.loading import load_dataset
from relapse_risk.features.policy import Policy
from relapse_risk.features.rules import labels_for_months
from relapse_risk.features.stages import StageTimes
from relapse_risk.features.training_table import (
    HISTORY_BEFORE_FIRST_AS_OF,
    build_training_table,
    quarter_ends,
)
from relapse_risk.models.baseline import read_truth
from relapse_risk.models.explain import shap_contributions
from relapse_risk.models.model import RiskModel
from relapse_risk.models.pyfunc import log_risk_model

import relapse_risk

from . import figures
from .assessment import MODEL, Assessment, assess
from .config import BoosterParameters, TrainingSettings
from .split import TimeSplit, TrainingDataError, time_split
from .subgroups import household_groups
from .tracking import CHALLENGER, Tracking, configure_tracking
from .truth import find_truth
from .tune import TuningResult, risk_model, tune

Progress = Callable[[str], None]

STAGE_LABELS = {
    "load": "load and validate",
    "labels": "labels of the split's months",
    "training_table": "training table (features and labels)",
    "tuning": "hyper-parameter search",
    "fit": "fit and calibrate",
    "assessment": "assess on the test months",
    "tracking": "log and register in MLflow",
    "store": "open the MLflow store",
}
"""Words for the log lines of the stages whose names are the keys of ``seconds.*`` in MLflow."""

_log = logging.getLogger(__name__)


def _stages() -> StageTimes:
    return StageTimes(_log, STAGE_LABELS)


@dataclass(frozen=True)
class TrainingData:
    """Everything a fit and its assessment need, prepared once."""

    dataset: Dataset
    split: TimeSplit
    table: pd.DataFrame
    """Training-table rows (eligible households) of the split's train, validation and test months."""
    visit_share: float
    truth: pd.DataFrame | None = None
    truth_path: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self, role: str) -> pd.DataFrame:
        """Rows of the ``train``, ``validation`` or ``test`` months."""
        months = pd.to_datetime(list(getattr(self.split, role)))
        return self.table[self.table["as_of"].isin(months)].reset_index(drop=True)


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_name: str
    model_version: str
    split: TimeSplit
    assessment: Assessment
    params: BoosterParameters
    best_iteration: int
    tuning: TuningResult | None
    seconds: dict[str, float]


def labelled_months(policy: Policy, horizon: int) -> list[dt.date]:
    """Every month from a year after data_start whose label window ends by data_end."""
    first = policy.first_month_index + HISTORY_BEFORE_FIRST_AS_OF
    return [month_start(i) for i in range(first, policy.last_month_index - horizon + 1)]


def visit_share_of(settings: TrainingSettings, dataset: Dataset) -> float:
    return settings.visit_share if settings.visit_share is not None else dataset.policy.visit_share


def prepare_training_data(
    dataset: Dataset,
    settings: TrainingSettings,
    truth_path: Path | None = None,
    progress: Progress | None = None,
) -> TrainingData:
    """Split the dataset's labelled quarter-ends by time and build their training table.

    Raises :class:`TrainingDataError` when the data hold too few labelled as-of
    months for the split, or too few label-1 rows in the training, validation
    or test months (``settings.min_positives`` each).
    """
    say = progress or (lambda _message: None)
    times = _stages()
    where = f"{dataset.source}: " if dataset.source else ""
    try:
        split = time_split(
            quarter_ends(dataset.policy, settings.horizon),
            settings.horizon,
            settings.test_months,
            settings.validation_months,
            settings.min_train_months,
            learning_months=labelled_months(dataset.policy, settings.horizon)
            if settings.monthly_training_rows
            else None,
        )
    except TrainingDataError as exc:
        policy = dataset.policy
        raise TrainingDataError(
            f"{where}{exc} (data {format_month(policy.data_start)}..{format_month(policy.data_end)}; "
            "as-of months are quarter-ends from a year after data_start)"
        ) from None
    say(
        "split by time: train "
        + ", ".join(format_month(m) for m in split.train)
        + " | validation "
        + ", ".join(format_month(m) for m in split.validation)
        + " | test "
        + ", ".join(format_month(m) for m in split.test)
    )
    months = sorted(split.train + split.validation + split.test)
    # Labels alone are cheap; refuse before spending minutes on features.
    with times.stage("labels"):
        labels = labels_for_months(dataset, months, settings.horizon)
    _check_positives(labels, split, settings.min_positives, where)
    with times.stage("training_table"):
        table = build_training_table(dataset, months, settings.horizon)
    say(f"training table: {len(table):,} eligible household-months")
    truth = read_truth(truth_path) if truth_path is not None else None
    return TrainingData(
        dataset,
        split,
        table,
        visit_share_of(settings, dataset),
        truth=truth,
        truth_path=truth_path,
        seconds=dict(times.wall),
    )


def _check_positives(labels: pd.DataFrame, split: TimeSplit, minimum: int, where: str) -> None:
    """Refuse when the train, validation or test months hold fewer than ``minimum`` label-1 rows."""
    eligible = labels[labels["eligible"].to_numpy(dtype=bool)]
    for role in ("train", "validation", "test"):
        role_months = getattr(split, role)
        rows = eligible[eligible["as_of"].isin(pd.to_datetime(list(role_months)))]
        positives = int(rows["label"].sum())
        if positives < minimum:
            listed = ", ".join(format_month(m) for m in role_months)
            raise TrainingDataError(
                f"{where}too few positives to train: the {role} months ({listed}) hold {positives} "
                f"household-months where a rule fired within {split.horizon} months "
                f"among {len(rows):,} eligible; at least {minimum} are needed in each of train, "
                "validation and test (a larger county or a longer history helps)"
            )


def fit_risk_model(data: TrainingData, settings: TrainingSettings, params: BoosterParameters) -> RiskModel:
    """Fit on the training months; stop early and calibrate on the validation months."""
    train_rows, validation_rows = data.rows("train"), data.rows("validation")
    return risk_model(params, settings).fit(
        train_rows,
        train_rows["label"].to_numpy(dtype=np.int8),
        validation_rows,
        validation_rows["label"].to_numpy(dtype=np.int8),
        feature_names=list(FEATURE_NAMES),
    )


def assess_model(model: RiskModel, data: TrainingData, settings: TrainingSettings) -> Assessment:
    """The model's metrics on the test months, beside the baseline and (with truth) the oracle."""
    test_rows = data.rows("test")
    return assess(
        test_rows,
        model.predict_proba(test_rows),
        visit_share=data.visit_share,
        groups=household_groups(data.dataset, data.split.test),
        truth=data.truth,
        subgroup_recall_ratio=settings.subgroup_recall_ratio,
        subgroup_min_positives=settings.subgroup_min_positives,
    )


def train_prepared(
    data: TrainingData,
    settings: TrainingSettings,
    tracking: Tracking,
    progress: Progress | None = None,
) -> TrainingResult:
    """Steps 2-4 of the module docstring on prepared data."""
    say = progress or (lambda _message: None)
    times = _stages()
    tuning = None
    params = settings.booster
    if settings.tune_minutes > 0:
        say(f"tuning for up to {settings.tune_minutes:g} min on the validation months")
        with times.stage("tuning"):
            tuning = tune(data.rows("train"), data.rows("validation"), data.visit_share, settings)
        params = tuning.best
        say(
            f"tuning: {len(tuning.trials)} trials, validation recall@k {tuning.default_value:.3f} "
            f"(defaults) -> {tuning.best_value:.3f}"
        )
    with times.stage("fit"):
        model = fit_risk_model(data, settings, params)
    say(f"fitted: best iteration {model.best_iteration_}")
    with times.stage("assessment"):
        assessment = assess_model(model, data, settings)
    # The run records the seconds of every stage before it; its own are added afterwards.
    seconds = {**data.seconds, **times.wall}
    with times.stage("tracking"):
        run_id, version = record_run(data, model, assessment, params, settings, tracking, tuning, seconds)
    seconds["tracking"] = times.wall["tracking"]
    say(f"registered {settings.model_name} version {version} as {CHALLENGER} (run {run_id})")
    return TrainingResult(
        run_id=run_id,
        model_name=settings.model_name,
        model_version=version,
        split=data.split,
        assessment=assessment,
        params=params,
        best_iteration=model.best_iteration_,
        tuning=tuning,
        seconds=seconds,
    )


def run_training(
    folder: Path,
    settings: TrainingSettings,
    truth_path: Path | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """``relapse train``: everything from a dataset folder to a registered challenger.

    ``truth_path`` defaults to the generator's truth file beside the folder when it exists.
    """
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    times = _stages()
    with times.stage("load"):
        dataset = load_dataset(folder)
    say(f"loaded {folder} ({len(dataset.rejects):,} rejected rows reported)")
    truth_path = truth_path if truth_path is not None else find_truth(folder)
    data = prepare_training_data(dataset, settings, truth_path, progress)
    data.seconds["load"] = times.wall["load"]
    with times.stage("store"):
        tracking = configure_tracking(settings)
    result = train_prepared(data, settings, tracking, progress)
    result.seconds["total"] = time.perf_counter() - started
    tracking.client.log_metric(result.run_id, "seconds.total", result.seconds["total"])
    return result


# ----------------------------------------------------------------------------- tracking


def _params(
    data: TrainingData, model: RiskModel, params: BoosterParameters, settings: TrainingSettings
) -> dict[str, object]:
    summary = model.training_summary_
    policy = data.dataset.policy
    return {
        "horizon": settings.horizon,
        "visit_share": data.visit_share,
        "seed": settings.seed,
        "calibration": settings.calibration,
        "monthly_training_rows": settings.monthly_training_rows,
        **{f"booster.{k}": v for k, v in params.model_dump().items()},
        "best_iteration": model.best_iteration_,
        "scale_pos_weight": round(model.scale_pos_weight_, 4),
        "tune_minutes": settings.tune_minutes,
        "data_path": str(Path(data.dataset.source).resolve()) if data.dataset.source else "",
        "data_fingerprint": data.dataset.fingerprint,
        "data_start": format_month(policy.data_start),
        "data_end": format_month(policy.data_end),
        "region": policy.region,
        "households": data.dataset.row_count("households"),
        "rejected_rows": len(data.dataset.rejects),
        "truth_path": str(data.truth_path) if data.truth_path else "",
        "train_months": ",".join(format_month(m) for m in data.split.train),
        "validation_months": ",".join(format_month(m) for m in data.split.validation),
        "test_months": ",".join(format_month(m) for m in data.split.test),
        "gap_months": ",".join(format_month(m) for m in data.split.gap),
        "train_rows": summary["train_rows"],
        "train_positives": summary["train_positives"],
        "validation_rows": summary["valid_rows"],
        "validation_positives": summary["valid_positives"],
        "feature_count": len(model.feature_names_),
        "feature_pipeline_version": model.feature_pipeline_version,
        "catalogue_version": CATALOGUE_VERSION,
        "package_version": relapse_risk.__version__,
    }


def _metrics(assessment: Assessment) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Averaged metrics (``model.recall_at_k``) and, per test month, the same keys under ``month.``."""
    averaged: dict[str, float] = {}
    for row in assessment.averaged.to_dict(orient="records"):
        for metric, value in row.items():
            if metric in ("method", "months") or value is None or np.isnan(value):
                continue
            averaged[f"{row['method']}.{metric}"] = float(value)
    for reference in ("rule_baseline", "oracle"):
        ratio = assessment.ratio(MODEL, reference)
        if not np.isnan(ratio):
            averaged[f"ratio.model_vs_{reference}.recall_at_k"] = ratio
    overall = assessment.subgroups.iloc[0]
    averaged["subgroups.flagged"] = float(len(assessment.flagged_groups))
    averaged["subgroups.overall_recall_pooled"] = float(overall["recall_at_k"])
    per_month: dict[int, dict[str, float]] = {}
    for row in assessment.per_month.to_dict(orient="records"):
        step = row["as_of"].year * 100 + row["as_of"].month
        values = per_month.setdefault(step, {})
        for metric, value in row.items():
            if metric in ("as_of", "method") or value is None or np.isnan(value):
                continue
            values[f"month.{row['method']}.{metric}"] = float(value)
    return averaged, per_month


def record_run(
    data: TrainingData,
    model: RiskModel,
    assessment: Assessment,
    params: BoosterParameters,
    settings: TrainingSettings,
    tracking: Tracking,
    tuning: TuningResult | None,
    seconds: dict[str, float],
) -> tuple[str, str]:
    """Log one MLflow run and register its model as a new version with alias ``challenger``."""
    test_rows = data.rows("test")
    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        mlflow.set_tags(
            {
                "relapse.job": "train",
                "relapse.data_fingerprint": data.dataset.fingerprint,
                "relapse.test_months": ",".join(format_month(m) for m in data.split.test),
            }
        )
        mlflow.log_params(_params(data, model, params, settings))
        averaged, per_month = _metrics(assessment)
        mlflow.log_metrics(averaged)
        for step, values in sorted(per_month.items()):
            mlflow.log_metrics(values, step=step)
        mlflow.log_metrics({f"seconds.{k}": v for k, v in seconds.items()})
        if tuning is not None:
            mlflow.log_metrics(
                {"tuning.trials": len(tuning.trials), "tuning.validation_recall_at_k": tuning.best_value}
            )
        with tempfile.TemporaryDirectory(prefix="relapse_run_") as folder:
            _write_artifacts(Path(folder), data, model, assessment, settings, tuning)
            mlflow.log_artifacts(folder)
        info = log_risk_model(model, "model", test_rows, registered_model_name=settings.model_name)
        version = str(info.registered_model_version)
        tracking.client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
        for key, value in {
            "data_fingerprint": data.dataset.fingerprint,
            "test_months": ",".join(format_month(m) for m in data.split.test),
            "horizon": str(settings.horizon),
            "model.recall_at_k": f"{assessment.mean(MODEL):.4f}",
            "rule_baseline.recall_at_k": f"{assessment.mean('rule_baseline'):.4f}",
        }.items():
            tracking.client.set_model_version_tag(settings.model_name, version, key, value)
        return run.info.run_id, version


EVALUATION_FILE = "evaluation.json"


def _write_json(path: Path, content: object) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_artifacts(
    folder: Path,
    data: TrainingData,
    model: RiskModel,
    assessment: Assessment,
    settings: TrainingSettings,
    tuning: TuningResult | None,
) -> None:
    (folder / "figures").mkdir()
    features = {
        "catalogue_version": CATALOGUE_VERSION,
        "feature_names": list(model.feature_names_),
        "categorical_features": list(CATEGORICAL_FEATURES),
        "importance_gain": {k: float(v) for k, v in model.feature_importance("gain").items()},
    }
    _write_json(folder / "features.json", features)
    _write_json(folder / "split.json", data.split.describe())
    evaluation = {
        "model_name": settings.model_name,
        "horizon": settings.horizon,
        "data_path": str(data.dataset.source) if data.dataset.source else "",
        "data_fingerprint": data.dataset.fingerprint,
        "training_summary": model.training_summary_,
        **assessment.to_json_dict(),
    }
    _write_json(folder / EVALUATION_FILE, evaluation)
    assessment.per_month.assign(as_of=[format_month(t.date()) for t in assessment.per_month["as_of"]]).to_csv(
        folder / "metrics_per_month.csv", index=False
    )
    assessment.subgroups.to_csv(folder / "subgroups.csv", index=False)
    if tuning is not None:
        tuning.trials.to_csv(folder / "tuning_trials.csv", index=False)
    write_figures(folder / "figures", model, data.rows("test"), assessment, settings)


def write_figures(
    folder: Path,
    model: RiskModel,
    test_rows: pd.DataFrame,
    assessment: Assessment,
    settings: TrainingSettings,
) -> list[Path]:
    """The five PNG figures of a run: recall curve, calibration, lift, SHAP summary, subgroups."""
    methods = [m for m in ("model", "rule_baseline", "oracle") if m in assessment.methods]
    ranked = assessment.ranked
    sample = test_rows.sample(
        n=min(settings.shap_sample_rows, len(test_rows)), random_state=settings.seed
    ).reset_index(drop=True)
    contributions = shap_contributions(model, sample)
    made = {
        "recall_at_k_vs_visit_share.png": figures.recall_curve_figure(
            ranked, methods, assessment.visit_share
        ),
        "calibration_curve.png": figures.calibration_curve_figure(
            ranked["risk_score"].to_numpy(), ranked["label"].to_numpy()
        ),
        "lift_by_decile.png": figures.lift_figure(ranked, methods),
        "shap_summary.png": figures.shap_summary_figure(
            contributions.values, sample[list(model.feature_names_)].astype(np.float64)
        ),
        "subgroups.png": figures.subgroup_figure(assessment.subgroups, settings.subgroup_recall_ratio),
    }
    paths = []
    for name, figure in made.items():
        path = folder / name
        figure.savefig(path, dpi=110)
        figures.close(figure)
        paths.append(path)
    return paths
