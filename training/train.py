"""``relapse train``: build the training table, split by time, fit, assess, log and register.

The job in steps, each usable on its own (tests swap labels between steps):

1. :func:`prepare_training_data`: load the folder, choose the labelled
   as-of months, split them by time (training/split.py), build features and
   labels for the months the split and the refit use, and refuse when history
   or positives are too few.
2. :func:`fit_risk_model`: the *backtest* model. LightGBM on the training
   months, early stopping and calibration on the validation rows (later months,
   or held-out households when the history is short; optionally after
   :func:`training.tune.tune`, which also only sees validation rows).
3. :func:`training.assessment.assess` of the backtest model on the test
   months, beside the rule baseline and (with a truth file) the oracle.
4. :func:`refit_production_model`: the model that serves, refit with the
   backtest's settings and rounds on every labelled month up to
   data_end - H, calibrated on cross-fitted scores of the latest months.
5. :func:`record_run`: one MLflow run with parameters, data fingerprint,
   feature list, the backtest's metrics and figures, the backtest model's
   files, and the refit as the pyfunc model, registered as a new version with
   alias ``challenger``.

Why two models: the backtest measures the *procedure* on months it never
saw, which is the only honest figure there is. But the backtest model's
freshest label is a year or more older than the month it will score (on four
years of data, 21 months), and a county changes: a lockdown, a new monitoring
line. So the served model is the same procedure run again on everything
labelled so far; its ``trained_through`` month (the latest as-of month whose
label it learned from) is logged, tagged on the version, and reported by every
scoring run. ``benchmarks/bench_refit.py`` compares the two on later matured
quarters: the refit ranks them better on every generated county without a
passing shock, and worse in the two quarters after a lockdown it learned from
(docs/performance.md).
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
from relapse_risk.features.contract import format_month, month_index, month_start
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.loading import load_dataset
from relapse_risk.features.policy import Policy
from relapse_risk.features.rules import RISK_TYPE_NAMES, labels_for_months
from relapse_risk.features.stages import StageTimes
from relapse_risk.features.training_table import (
    HISTORY_BEFORE_FIRST_AS_OF,
    build_training_table,
    quarter_ends,
)
from relapse_risk.models.baseline import read_truth
from relapse_risk.models.expected_counts import first_rule_shares, ranking_count_error
from relapse_risk.models.explain import shap_contributions
from relapse_risk.models.model import RiskModel
from relapse_risk.models.pyfunc import log_risk_model
from relapse_risk.models.registry import risk_bands

import relapse_risk

from . import figures
from .assessment import MODEL, Assessment, assess
from .config import BoosterParameters, TrainingSettings
from .split import (
    HELD_OUT_HOUSEHOLDS,
    TimeSplit,
    TrainingDataError,
    data_months_needed,
    time_split,
)
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
    "fit": "fit and calibrate the backtest model",
    "assessment": "assess on the test months",
    "refit": "refit the production model on every labelled month",
    "tracking": "log and register in MLflow",
    "store": "open the MLflow store",
}
"""Words for the log lines of the stages whose names are the keys of ``seconds.*`` in MLflow."""

_log = logging.getLogger(__name__)


def _stages() -> StageTimes:
    return StageTimes(_log, STAGE_LABELS)


ROLES = ("train", "validation", "test", "refit", "calibration")
"""Row sets of a training run: the backtest's three splits, then the refit's rows and its calibration rows."""


@dataclass(frozen=True)
class RowLayout:
    """Which (household, as-of month) rows each role of a training run uses."""

    split: TimeSplit
    refit_months: tuple[dt.date, ...]
    """Every labelled learning month up to data_end - H: the production refit's rows."""
    calibration_months: tuple[dt.date, ...]
    """The latest refit months: the rows whose cross-fitted scores calibrate the refit."""
    validation_households: frozenset[str] = frozenset()
    """Held-out households of the training months, when the split validates on households."""

    @property
    def trained_through(self) -> dt.date:
        """The latest as-of month whose label the production refit learns from."""
        return self.refit_months[-1]

    @property
    def months(self) -> list[dt.date]:
        """Every as-of month any role uses, ascending."""
        split = self.split
        return sorted(set(split.train + split.validation + split.test + self.refit_months))

    def mask(self, frame: pd.DataFrame, role: str) -> np.ndarray:
        """Rows of ``frame`` (household_id, as_of) that belong to ``role`` (one of :data:`ROLES`)."""
        if role == "refit":
            months = self.refit_months
        elif role == "calibration":
            months = self.calibration_months
        else:
            months = getattr(self.split, role)
        selected = frame["as_of"].isin(pd.to_datetime(list(months))).to_numpy()
        if role in ("train", "validation") and self.split.validation_kind == HELD_OUT_HOUSEHOLDS:
            held_out = frame["household_id"].isin(self.validation_households).to_numpy()
            selected &= held_out if role == "validation" else ~held_out
        return selected


@dataclass(frozen=True)
class TrainingData:
    """Everything a fit and its assessment need, prepared once."""

    dataset: Dataset
    layout: RowLayout
    table: pd.DataFrame
    """Training-table rows (eligible households) of every month a role uses."""
    visit_share: float
    truth: pd.DataFrame | None = None
    truth_path: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    first_rules: pd.DataFrame | None = None
    """household_id, as_of and first_rule of every labelled household-month a rule caught: which
    rule the expected counts of a run split into (:func:`count_calibration`)."""

    @property
    def split(self) -> TimeSplit:
        return self.layout.split

    def rows(self, role: str) -> pd.DataFrame:
        """Rows of one of :data:`ROLES`."""
        return self.table[self.layout.mask(self.table, role)].reset_index(drop=True)


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_name: str
    model_version: str
    split: TimeSplit
    assessment: Assessment
    params: BoosterParameters
    best_iteration: int
    trained_through: dt.date
    tuning: TuningResult | None
    seconds: dict[str, float]


def labelled_months(policy: Policy, horizon: int) -> list[dt.date]:
    """Every month from a year after data_start whose label window ends by data_end."""
    first = policy.first_month_index + HISTORY_BEFORE_FIRST_AS_OF
    return [month_start(i) for i in range(first, policy.last_month_index - horizon + 1)]


def learning_months(policy: Policy, settings: TrainingSettings) -> list[dt.date]:
    """Months whose rows a model learns from: every labelled month-end, or quarter-ends only."""
    if settings.monthly_training_rows:
        return labelled_months(policy, settings.horizon)
    return quarter_ends(policy, settings.horizon)


def visit_share_of(settings: TrainingSettings, dataset: Dataset) -> float:
    return settings.visit_share if settings.visit_share is not None else dataset.policy.visit_share


def plan_rows(dataset: Dataset, settings: TrainingSettings) -> RowLayout:
    """Split the labelled months by time and choose the refit's rows; refuse when history is too short."""
    policy = dataset.policy
    learning = learning_months(policy, settings)
    try:
        split = time_split(
            quarter_ends(policy, settings.horizon),
            settings.horizon,
            settings.test_months,
            settings.validation_months,
            settings.min_train_months,
            learning_months=learning if settings.monthly_training_rows else None,
        )
    except TrainingDataError as exc:
        where = f"{dataset.source}: " if dataset.source else ""
        needed = data_months_needed(settings.horizon, settings.min_train_months, HISTORY_BEFORE_FIRST_AS_OF)
        given = policy.last_month_index - policy.first_month_index + 1
        raise TrainingDataError(
            f"{where}{exc}. The data hold {given} months "
            f"({format_month(policy.data_start)}..{format_month(policy.data_end)}); at least {needed} are "
            f"needed: {HISTORY_BEFORE_FIRST_AS_OF} of history before the first as-of month, "
            f"{settings.min_train_months} training month(s), a {settings.horizon}-month gap to a test "
            f"quarter-end and its {settings.horizon}-month label window"
        ) from None
    last = month_index(learning[-1])
    calibration = tuple(m for m in learning if month_index(m) > last - settings.calibration_months)
    held_out: frozenset[str] = frozenset()
    if split.validation_kind == HELD_OUT_HOUSEHOLDS:
        ids = np.sort(dataset.connection.execute("SELECT household_id FROM households").df()["household_id"])
        chosen = np.random.default_rng(settings.seed).random(len(ids)) < settings.held_out_share
        held_out = frozenset(str(i) for i in ids[chosen])
    return RowLayout(split, tuple(learning), calibration, held_out)


def prepare_training_data(
    dataset: Dataset,
    settings: TrainingSettings,
    truth_path: Path | None = None,
    progress: Progress | None = None,
) -> TrainingData:
    """Split the dataset's labelled months by time and build the training table of every role.

    Raises :class:`TrainingDataError` when the data hold too little history for any split
    (the message says how many months are needed), or too few label-1 rows in one of the
    roles (``settings.min_positives`` each).
    """
    say = progress or (lambda _message: None)
    times = _stages()
    layout = plan_rows(dataset, settings)
    split = layout.split
    say(split.summary())
    say(
        f"production refit: every labelled month {format_month(layout.refit_months[0])}.."
        f"{format_month(layout.trained_through)}, calibrated on "
        + ", ".join(format_month(m) for m in layout.calibration_months)
    )
    # Labels alone are cheap; refuse before spending minutes on features.
    with times.stage("labels"):
        labels = labels_for_months(dataset, layout.months, settings.horizon)
    where = f"{dataset.source}: " if dataset.source else ""
    _check_positives(labels, layout, settings.min_positives, where)
    with times.stage("training_table"):
        table = build_training_table(dataset, layout.months, settings.horizon)
    say(f"training table: {len(table):,} eligible household-months")
    truth = read_truth(truth_path) if truth_path is not None else None
    return TrainingData(
        dataset,
        layout,
        table,
        visit_share_of(settings, dataset),
        truth=truth,
        truth_path=truth_path,
        seconds=dict(times.wall),
        first_rules=labels.loc[
            labels["label"].eq(1).to_numpy(dtype=bool, na_value=False),
            ["household_id", "as_of", "first_rule"],
        ],
    )


def _check_positives(labels: pd.DataFrame, layout: RowLayout, minimum: int, where: str) -> None:
    """Refuse when a role's rows hold fewer than ``minimum`` label-1 rows."""
    eligible = labels[labels["eligible"].to_numpy(dtype=bool)].reset_index(drop=True)
    for role in ROLES:
        rows = eligible[layout.mask(eligible, role)]
        positives = int(rows["label"].sum())
        if positives < minimum:
            months = sorted(set(rows["as_of"].dt.date)) or list(getattr(layout.split, role, ()))
            listed = ", ".join(format_month(m) for m in months)
            raise TrainingDataError(
                f"{where}too few positives to train: the {role} months ({listed}) hold {positives} "
                f"household-months where a rule fired within {layout.split.horizon} months "
                f"among {len(rows):,} eligible; at least {minimum} are needed in each of train, "
                "validation, test and the refit's calibration months (a larger county or a longer "
                "history helps)"
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
        limits=settings.gate_limits,
    )


def refit_production_model(
    data: TrainingData, settings: TrainingSettings, params: BoosterParameters, rounds: int
) -> RiskModel:
    """The model that serves: the backtest's parameters and rounds, on every labelled month.

    Its calibrator is fitted on cross-fitted scores of the calibration months (see
    :meth:`RiskModel.fit_cross_calibrated`), so no labelled month is given up to calibrate.
    """
    rows = data.rows("refit")
    calibration = data.layout.mask(rows, "calibration")
    return risk_model(params, settings).fit_cross_calibrated(
        rows,
        rows["label"].to_numpy(dtype=np.int8),
        rounds=rounds,
        groups=rows["household_id"].to_numpy(),
        calibration_rows=calibration,
        held_out_share=settings.calibration_share,
        feature_names=list(FEATURE_NAMES),
    )


def train_prepared(
    data: TrainingData,
    settings: TrainingSettings,
    tracking: Tracking,
    progress: Progress | None = None,
) -> TrainingResult:
    """Steps 2-5 of the module docstring on prepared data."""
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
        backtest = fit_risk_model(data, settings, params)
    say(f"backtest model fitted: best iteration {backtest.best_iteration_}")
    with times.stage("assessment"):
        assessment = assess_model(backtest, data, settings)
    with times.stage("refit"):
        production = refit_production_model(data, settings, params, backtest.best_iteration_)
    trained_through = data.layout.trained_through
    say(
        f"production model refit on {production.training_summary_['train_rows']:,} rows through "
        f"{format_month(trained_through)}"
    )
    # The run records the seconds of every stage before it; its own are added afterwards.
    seconds = {**data.seconds, **times.wall}
    with times.stage("tracking"):
        run_id, version = record_run(
            data, backtest, production, assessment, params, settings, tracking, tuning, seconds
        )
    seconds["tracking"] = times.wall["tracking"]
    say(f"registered {settings.model_name} version {version} as {CHALLENGER} (run {run_id})")
    return TrainingResult(
        run_id=run_id,
        model_name=settings.model_name,
        model_version=version,
        split=data.split,
        assessment=assessment,
        params=params,
        best_iteration=backtest.best_iteration_,
        trained_through=trained_through,
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
    data: TrainingData,
    backtest: RiskModel,
    production: RiskModel,
    params: BoosterParameters,
    settings: TrainingSettings,
) -> dict[str, object]:
    summary = backtest.training_summary_
    refit = production.training_summary_
    policy = data.dataset.policy
    layout = data.layout
    return {
        "horizon": settings.horizon,
        "visit_share": data.visit_share,
        "seed": settings.seed,
        "calibration": settings.calibration,
        "monthly_training_rows": settings.monthly_training_rows,
        **{f"booster.{k}": v for k, v in params.model_dump().items()},
        "best_iteration": backtest.best_iteration_,
        "scale_pos_weight": round(backtest.scale_pos_weight_, 4),
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
        "validation_kind": data.split.validation_kind,
        "test_months": ",".join(format_month(m) for m in data.split.test),
        "test_month_count": len(data.split.test),
        "gap_months": ",".join(format_month(m) for m in data.split.gap),
        "train_rows": summary["train_rows"],
        "train_positives": summary["train_positives"],
        "validation_rows": summary["valid_rows"],
        "validation_positives": summary["valid_positives"],
        "trained_through": format_month(layout.trained_through),
        "refit_months": f"{format_month(layout.refit_months[0])}..{format_month(layout.trained_through)}",
        "refit_month_count": len(layout.refit_months),
        "refit_rows": refit["train_rows"],
        "refit_positives": refit["train_positives"],
        "refit_calibration_months": ",".join(format_month(m) for m in layout.calibration_months),
        "refit_calibration_share": round(settings.calibration_share, 4),
        "refit_calibration_rows": refit["calibration_rows"],
        "feature_count": len(production.feature_names_),
        "feature_pipeline_version": production.feature_pipeline_version,
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
    averaged["test.positives"] = float(overall["positives"])
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


@dataclass(frozen=True)
class CountCalibration:
    """How far the backtest's expected counts missed on its test months, and which rule caught whom:
    what a run's outlook needs to give its expected counts honest intervals and a split by rule."""

    relative_error: float
    """:func:`~relapse_risk.models.expected_counts.relative_count_error` over the test months."""
    first_rule_shares: dict[str, dict[str, float]]
    """Per risk band, the shares of the caught households by the first rule that caught them."""

    def params(self) -> dict[str, str]:
        return {
            COUNT_ERROR_PARAM: f"{self.relative_error:.4f}",
            FIRST_RULE_SHARES_PARAM: json.dumps(self.first_rule_shares, sort_keys=True),
        }


COUNT_ERROR_PARAM = "count_relative_error"
FIRST_RULE_SHARES_PARAM = "first_rule_shares"


def count_calibration(data: TrainingData, assessment: Assessment) -> CountCalibration:
    """Expected counts against what the rules showed, over the backtest's test months."""
    ranking = assessment.ranking_with_groups()
    caught = (
        data.first_rules
        if data.first_rules is not None
        else pd.DataFrame(columns=["household_id", "as_of", "first_rule"])
    )
    rows = ranking.merge(
        caught.assign(as_of=pd.to_datetime(caught["as_of"])), on=["household_id", "as_of"], how="left"
    )
    bands = pd.Series(risk_bands(rows["risk_score"].to_numpy(np.float64)), index=rows.index)
    return CountCalibration(
        relative_error=ranking_count_error(ranking),
        first_rule_shares=first_rule_shares(bands, rows["label"], rows["first_rule"], RISK_TYPE_NAMES),
    )


def record_run(
    data: TrainingData,
    backtest: RiskModel,
    production: RiskModel,
    assessment: Assessment,
    params: BoosterParameters,
    settings: TrainingSettings,
    tracking: Tracking,
    tuning: TuningResult | None,
    seconds: dict[str, float],
) -> tuple[str, str]:
    """Log one MLflow run and register the production refit as a new version with alias ``challenger``.

    The run's metrics are the backtest's; its files include the backtest model (``backtest_model/``)
    and its ranking of the test months (``backtest_ranking.parquet``), so that promotion can compare
    procedures household by household without the data, or re-score the backtest model.
    """
    test_rows = data.rows("test")
    trained_through = format_month(data.layout.trained_through)
    with mlflow.start_run(experiment_id=tracking.experiment_id) as run:
        mlflow.set_tags(
            {
                "relapse.job": "train",
                "relapse.data_fingerprint": data.dataset.fingerprint,
                "relapse.test_months": ",".join(format_month(m) for m in data.split.test),
                "relapse.trained_through": trained_through,
            }
        )
        mlflow.log_params(_params(data, backtest, production, params, settings))
        mlflow.log_params(count_calibration(data, assessment).params())
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
            _write_artifacts(Path(folder), data, backtest, production, assessment, settings, tuning)
            mlflow.log_artifacts(folder)
        info = log_risk_model(production, "model", test_rows, registered_model_name=settings.model_name)
        version = str(info.registered_model_version)
        tracking.client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
        for key, value in {
            "data_fingerprint": data.dataset.fingerprint,
            "test_months": ",".join(format_month(m) for m in data.split.test),
            "trained_through": trained_through,
            "horizon": str(settings.horizon),
            "model.recall_at_k": f"{assessment.mean(MODEL):.4f}",
            "rule_baseline.recall_at_k": f"{assessment.mean('rule_baseline'):.4f}",
        }.items():
            tracking.client.set_model_version_tag(settings.model_name, version, key, value)
        return run.info.run_id, version


EVALUATION_FILE = "evaluation.json"
BACKTEST_MODEL_DIR = "backtest_model"
BACKTEST_RANKING_FILE = "backtest_ranking.parquet"


def _write_json(path: Path, content: object) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_artifacts(
    folder: Path,
    data: TrainingData,
    backtest: RiskModel,
    production: RiskModel,
    assessment: Assessment,
    settings: TrainingSettings,
    tuning: TuningResult | None,
) -> None:
    (folder / "figures").mkdir()
    features = {
        "catalogue_version": CATALOGUE_VERSION,
        "feature_names": list(production.feature_names_),
        "categorical_features": list(CATEGORICAL_FEATURES),
        "importance_gain": {k: float(v) for k, v in production.feature_importance("gain").items()},
    }
    _write_json(folder / "features.json", features)
    _write_json(
        folder / "split.json",
        {
            **data.split.describe(),
            "validation_kind": data.split.validation_kind,
            "refit": [format_month(m) for m in data.layout.refit_months],
            "refit_calibration": [format_month(m) for m in data.layout.calibration_months],
            "trained_through": format_month(data.layout.trained_through),
        },
    )
    evaluation = {
        "model_name": settings.model_name,
        "horizon": settings.horizon,
        "data_path": str(data.dataset.source) if data.dataset.source else "",
        "data_fingerprint": data.dataset.fingerprint,
        "trained_through": format_month(data.layout.trained_through),
        "validation_kind": data.split.validation_kind,
        "training_summary": backtest.training_summary_,
        "refit_summary": production.training_summary_,
        **assessment.to_json_dict(),
    }
    _write_json(folder / EVALUATION_FILE, evaluation)
    assessment.per_month.assign(as_of=[format_month(t.date()) for t in assessment.per_month["as_of"]]).to_csv(
        folder / "metrics_per_month.csv", index=False
    )
    assessment.subgroups.to_csv(folder / "subgroups.csv", index=False)
    assessment.ranking_with_groups().to_parquet(folder / BACKTEST_RANKING_FILE, index=False)
    backtest.save(folder / BACKTEST_MODEL_DIR)
    if tuning is not None:
        tuning.trials.to_csv(folder / "tuning_trials.csv", index=False)
    write_figures(folder / "figures", backtest, data.rows("test"), assessment, settings)


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
        "subgroups.png": figures.subgroup_figure(assessment.subgroups),
    }
    paths = []
    for name, figure in made.items():
        path = folder / name
        figure.savefig(path, dpi=110)
        figures.close(figure)
        paths.append(path)
    return paths
