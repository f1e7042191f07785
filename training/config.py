"""Training, tracking and promotion settings: one frozen, typed place.

Nothing here reads the environment or touches the disk at import time; the
tracking URI is resolved when a job starts (:func:`resolve_tracking_uri`), so
tests can point MLflow at a temporary folder by building their own settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from relapse_risk.models.registry import (  # noqa: F401 - default_tracking_uri re-exported
    REGISTRY_MODEL_NAME,
    default_tracking_uri,
)
from relapse_risk.models.registry import resolve_tracking_uri as resolve_registry_uri

from .subgroups import GateLimits

MODEL_NAME = REGISTRY_MODEL_NAME
EXPERIMENT_NAME = REGISTRY_MODEL_NAME


class BoosterParameters(BaseModel):
    """LightGBM parameters that the tuner may change; everything else is fixed in the model.

    Defaults: a time-boxed search on the validation month of the default generated
    county preferred slower learning, fewer features per tree and no re-weighting of
    positives (the calibrator restores probabilities either way) over LightGBM's usual
    starting point; these are rounded versions of what it found.

    Class imbalance (about 3 % positives) is handled where it matters for a ranking:
    early stopping on average precision rather than accuracy, models judged by
    recall@k, a minimum of positives in every split, and ``imbalance`` (weight of
    positives: ``balanced`` = negatives / positives, ``sqrt`` = its root, ``none``)
    among the parameters the tuner searches.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    learning_rate: float = Field(default=0.03, gt=0, le=1)
    num_leaves: int = Field(default=31, ge=2, le=1024)
    min_child_samples: int = Field(default=50, ge=1)
    feature_fraction: float = Field(default=0.5, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_freq: int = Field(default=1, ge=0)
    lambda_l2: float = Field(default=1.0, ge=0)
    imbalance: str = Field(default="none", pattern="^(balanced|sqrt|none)$")
    max_rounds: int = Field(default=2000, ge=1)
    early_stopping_rounds: int = Field(default=100, ge=1)


class TrainingSettings(BaseModel):
    """Everything a training, promotion or evaluation run depends on besides the data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(default=6, ge=1, le=24, description="H of docs/rules-and-labels.md, in months")
    visit_share: float | None = Field(
        default=None, gt=0, le=1, description="share of eligible households visited; None: the policy's"
    )
    # Latest labelled quarter-ends held out for testing, and the as-of months before them
    # (past a gap of H months) used for early stopping and calibration.
    test_months: int = Field(default=4, ge=1)
    validation_months: int = Field(default=1, ge=1)
    # True: train and validate on every month-end before the gaps (three times the rows, the
    # latest ones closer to the test); the test stays on quarter-ends. Trained on the default county
    # and tested on it and two others, over three seeds: recall@k +0.009 to +0.013 the oracle's over
    # quarter-end rows, calibration no worse.
    # False: quarter-end as-of months only, like the test.
    monthly_training_rows: bool = True
    # Fewest training as-of months (of the learning rows: month-ends, or quarter-ends with
    # monthly_training_rows off) the backtest accepts before it refuses (training/split.py).
    min_train_months: int = Field(default=4, ge=1)
    # With too little history for validation on later months, this share of households at the
    # training months validates instead (early stopping and calibration of the backtest).
    held_out_share: float = Field(default=0.2, gt=0, lt=1)
    # The production refit's calibrator is fitted on cross-fitted scores: this share of households
    # held out, scored by a booster that never saw them, over the latest calibration_months labelled
    # months (training/train.py, refit_production_model).
    calibration_share: float = Field(default=1 / 3, gt=0, lt=1)
    calibration_months: int = Field(default=3, ge=1)
    # Fewest label-1 rows that each of train and validation needs before a model is fitted.
    min_positives: int = Field(default=30, ge=1)
    seed: int = 20240601
    # LightGBM threads. One per core is fastest on an idle machine; on a shared or busy one
    # OpenMP threads spin-wait for each other, so fewer threads than free cores is safer.
    threads: int = Field(default=2, ge=1)
    booster: BoosterParameters = BoosterParameters()
    calibration: str = Field(default="isotonic", pattern="^(isotonic|platt)$")
    tune_minutes: float = Field(default=0.0, ge=0)
    tune_max_trials: int = Field(default=200, ge=1)

    # Promotion checks (training/promote.py): expected calibration error at most max_ece, and the
    # fairness gate (training/subgroups.py), which refuses only on evidence: gate_alpha is the chance,
    # shared by all groups, of refusing a model that is in truth no worse; a group's calibration may
    # differ from the county's by the factor 1 + group_calibration_tolerance either way.
    max_ece: float = Field(default=0.02, gt=0)
    gate_alpha: float = Field(default=0.05, gt=0, lt=1)
    group_calibration_tolerance: float = Field(default=0.5, gt=0)

    work_dir: Path = Field(default_factory=Path.cwd)
    # None: MLFLOW_TRACKING_URI when set, else the embedded SQLite store under work_dir.
    tracking_uri: str | None = None
    experiment_name: str = EXPERIMENT_NAME
    model_name: str = MODEL_NAME
    shap_sample_rows: int = Field(default=1000, ge=10)

    @property
    def gate_limits(self) -> GateLimits:
        return GateLimits(alpha=self.gate_alpha, calibration_tolerance=self.group_calibration_tolerance)

    @property
    def mlruns_dir(self) -> Path:
        return self.work_dir / "mlruns"

    @property
    def artifact_location(self) -> Path:
        return self.mlruns_dir / "artifacts"


def resolve_tracking_uri(settings: TrainingSettings) -> str:
    """Explicit setting, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite store."""
    return resolve_registry_uri(settings.tracking_uri, settings.work_dir)
