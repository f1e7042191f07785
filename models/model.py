"""The risk model: a LightGBM booster and a probability calibrator behind one small API.

``RiskModel`` follows scikit-learn conventions: hyper-parameters are set in
``__init__`` and never changed by ``fit``; everything learned ends in ``_``.

    model = RiskModel(seed=7).fit(X_train, y_train, X_valid, y_valid)
    risk = model.predict_proba(X_test)      # calibrated P(rule fires within H months)
    model.save(folder); RiskModel.load(folder)

Inputs are pandas frames of numeric feature columns. Columns are matched by
name, so their order does not matter; extra columns (``household_id``,
``as_of``, labels) are ignored; a missing feature column is an error that names
it. Categorical features arrive as non-negative integer codes (not the pandas
``category`` dtype, which MLflow's schema enforcement rejects) and are named in
``categorical_features``. Missing values (NaN) are allowed: LightGBM routes
them explicitly.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from relapse_risk.features.errors import RelapseRiskError

# LightGBM's OpenMP threads spin while they wait for each other. When the two
# cores are shared (parallel test workers, a scoring service beside a training
# job) the spinning starves the thread being waited for: measured here, 40
# boosting rounds took 42 s instead of 2.4 s. Passive waiting costs little
# when the cores are free. The OpenMP runtime reads this once, when LightGBM's
# library loads, so it must be set before the import; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from .calibration import CalibrationMethod, Calibrator, calibrator_from_json, fit_calibrator

ImbalanceHandling = Literal["balanced", "sqrt", "none"]

MODEL_FORMAT_VERSION = 1
BOOSTER_FILE = "booster.txt"
CALIBRATOR_FILE = "calibrator.json"
METADATA_FILE = "risk_model.json"

_HYPER_PARAMETERS = (
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "feature_fraction",
    "bagging_fraction",
    "bagging_freq",
    "lambda_l2",
    "max_rounds",
    "early_stopping_rounds",
    "imbalance",
    "calibration",
    "categorical_features",
    "seed",
    "num_threads",
    "feature_pipeline_version",
)


class FeatureMismatchError(RelapseRiskError, ValueError):
    """The frame handed to the model does not carry the features it was trained on."""


class NotFittedError(RuntimeError):
    """The model was used before ``fit`` or ``load``."""


def _default_feature_pipeline_version() -> str:
    # The catalogue is the feature pipeline's contract; a model records which
    # version of it produced its training columns.
    try:
        from relapse_risk.features.catalogue import CATALOGUE_VERSION
    except ImportError:  # the catalogue module is optional for synthetic-data use
        return ""
    return str(CATALOGUE_VERSION)


class RiskModel:
    """LightGBM binary classifier with early stopping and a calibrated output.

    Parameters
    ----------
    learning_rate, num_leaves, min_child_samples, feature_fraction,
    bagging_fraction, bagging_freq, lambda_l2:
        LightGBM parameters of the same meaning (``min_child_samples`` is
        ``min_data_in_leaf``).
    max_rounds:
        Upper bound on boosting rounds; early stopping usually ends sooner.
    early_stopping_rounds:
        Stop when the validation average precision has not improved for this
        many rounds; the best round is kept.
    imbalance:
        Weight of positives relative to negatives: ``balanced`` = negatives /
        positives, ``sqrt`` = its square root, ``none`` = 1. Only the ranking is
        affected: the calibrator restores probabilities afterwards.
    calibration:
        ``isotonic`` (default) or ``platt``; fitted on validation raw scores.
    categorical_features:
        Names of integer-coded categorical columns.
    seed, num_threads:
        Every random choice (bagging, feature sampling, data binning) derives
        from ``seed``; training is deterministic for a fixed seed and thread
        count.
    feature_pipeline_version:
        Version of the feature catalogue the columns come from; ``None`` takes
        the installed catalogue's version.
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        bagging_freq: int = 1,
        lambda_l2: float = 1.0,
        max_rounds: int = 2000,
        early_stopping_rounds: int = 100,
        imbalance: ImbalanceHandling = "sqrt",
        calibration: CalibrationMethod = "isotonic",
        categorical_features: Sequence[str] = (),
        seed: int = 0,
        num_threads: int = 2,
        feature_pipeline_version: str | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.bagging_freq = bagging_freq
        self.lambda_l2 = lambda_l2
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.imbalance = imbalance
        self.calibration = calibration
        self.categorical_features = tuple(categorical_features)
        self.seed = seed
        self.num_threads = num_threads
        self.feature_pipeline_version = (
            _default_feature_pipeline_version()
            if feature_pipeline_version is None
            else feature_pipeline_version
        )

    # -- scikit-learn style introspection ---------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__`` (JSON-friendly)."""
        params = {name: getattr(self, name) for name in _HYPER_PARAMETERS}
        params["categorical_features"] = list(self.categorical_features)
        return params

    def __repr__(self) -> str:
        fitted = f", best_iteration_={self.best_iteration_}" if self.is_fitted else ""
        return f"RiskModel(seed={self.seed}, calibration={self.calibration!r}{fitted})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "booster_")

    def lightgbm_params(self, scale_pos_weight: float) -> dict[str, Any]:
        """The full LightGBM parameter set used for training, seeds included."""
        return {
            "objective": "binary",
            "metric": ["average_precision", "binary_logloss"],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "scale_pos_weight": scale_pos_weight,
            "seed": self.seed,
            "bagging_seed": self.seed + 1,
            "feature_fraction_seed": self.seed + 2,
            "data_random_seed": self.seed + 3,
            "extra_seed": self.seed + 4,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }

    # -- training -----------------------------------------------------------------------------

    def fit(
        self,
        X_train: pd.DataFrame,
        y_train: Sequence[int] | np.ndarray | pd.Series,
        X_valid: pd.DataFrame,
        y_valid: Sequence[int] | np.ndarray | pd.Series,
        *,
        feature_names: Sequence[str] | None = None,
    ) -> RiskModel:
        """Train on ``X_train``, stop early and calibrate on ``X_valid``.

        ``feature_names`` picks and orders the model's columns; by default all
        numeric or boolean columns of ``X_train`` except ``household_id`` and
        ``as_of``. The validation set must hold both outcomes: the calibrator
        is fitted on its raw scores, which the booster never trained on.
        """
        names = tuple(feature_names) if feature_names is not None else _default_feature_columns(X_train)
        if not names:
            raise FeatureMismatchError("X_train has no numeric feature columns to train on")
        unknown_categoricals = [c for c in self.categorical_features if c not in names]
        if unknown_categoricals:
            raise FeatureMismatchError(
                f"categorical_features not among the feature columns: {', '.join(unknown_categoricals)}"
            )
        train_matrix = _feature_matrix(X_train, names, self.categorical_features, "X_train")
        valid_matrix = _feature_matrix(X_valid, names, self.categorical_features, "X_valid")
        train_label = _labels(y_train, len(X_train), "y_train")
        valid_label = _labels(y_valid, len(X_valid), "y_valid")
        positives = int(train_label.sum())
        if positives == 0 or positives == train_label.size:
            raise ValueError("y_train must hold both outcomes (0 and 1)")
        if valid_label.min() == valid_label.max():
            raise ValueError("y_valid must hold both outcomes (0 and 1) to stop early and calibrate")

        scale_pos_weight = _scale_pos_weight(self.imbalance, train_label.size - positives, positives)
        train_set = self._dataset(train_matrix, train_label, names)
        valid_set = self._dataset(valid_matrix, valid_label, names, reference=train_set)
        booster = lgb.train(
            self.lightgbm_params(scale_pos_weight),
            train_set,
            num_boost_round=self.max_rounds,
            valid_sets=[valid_set],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)],
        )
        best_iteration = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
        # Keep only the rounds that early stopping chose, so that every later
        # prediction, explanation and saved file agrees on one set of trees.
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration))

        # predict() is typed for sparse input too; a dense matrix gives an ndarray, which asarray keeps.
        valid_raw = np.asarray(booster.predict(valid_matrix, raw_score=True, num_threads=self.num_threads))
        self.booster_ = booster
        self.feature_names_ = names
        self.best_iteration_ = int(best_iteration)
        self.scale_pos_weight_ = float(scale_pos_weight)
        self.calibrator_: Calibrator = fit_calibrator(self.calibration, valid_raw, valid_label)
        self.training_summary_: dict[str, float | str] = {
            "train_rows": int(train_label.size),
            "train_positives": positives,
            "valid_rows": int(valid_label.size),
            "valid_positives": int(valid_label.sum()),
            "best_iteration": self.best_iteration_,
            "valid_average_precision": float(average_precision_score(valid_label, valid_raw)),
        }
        return self

    def fit_cross_calibrated(
        self,
        X: pd.DataFrame,
        y: Sequence[int] | np.ndarray | pd.Series,
        *,
        rounds: int,
        groups: Sequence[object] | np.ndarray | pd.Series,
        calibration_rows: Sequence[bool] | np.ndarray | pd.Series,
        held_out_share: float = 1 / 3,
        feature_names: Sequence[str] | None = None,
    ) -> RiskModel:
        """Train on every row of ``X`` for ``rounds`` rounds, with no row held back from the booster.

        This is the production refit: the rounds come from a backtest that stopped
        early on rows it did not train on, so no validation set is needed to stop.
        The calibrator still has to see scores of rows their booster never trained
        on. They come from cross-fitting: a seeded ``held_out_share`` of the
        ``groups`` (households) is held out, a booster with the same parameters and
        rounds is trained on the other households, and it scores the held-out
        households' ``calibration_rows`` (typically the latest labelled months, the
        ones closest to the months the model will score). The calibrator is fitted
        on those scores, and the booster kept is the one trained on every row.
        Grouping by household keeps a household's other months out of the booster
        that scores it.

        One held-out fold rather than all of them: each fold costs a fit on most of
        the data, and on the default county one fold's calibration rows (a third of
        three months) are as many as the backtest's validation month.
        """
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        if not 0 < held_out_share < 1:
            raise ValueError(f"held_out_share must be between 0 and 1, got {held_out_share}")
        names = tuple(feature_names) if feature_names is not None else _default_feature_columns(X)
        matrix = _feature_matrix(X, names, self.categorical_features, "X")
        label = _labels(y, len(X), "y")
        group = np.asarray(groups)
        calibrate = np.asarray(calibration_rows, dtype=bool)
        if group.shape != (label.size,) or calibrate.shape != (label.size,):
            raise ValueError(f"groups and calibration_rows need one value per row of X ({label.size})")
        positives = int(label.sum())
        if positives == 0 or positives == label.size:
            raise ValueError("y must hold both outcomes (0 and 1)")

        distinct, group_index = np.unique(group, return_inverse=True)
        held_out_groups = np.random.default_rng(self.seed).random(distinct.size) < held_out_share
        held_out = held_out_groups[group_index]
        scored = calibrate & held_out
        calibration_label = label[scored]
        if calibration_label.min(initial=1) == calibration_label.max(initial=0):
            raise ValueError("the held-out calibration rows must hold both outcomes (0 and 1)")

        scale_pos_weight = _scale_pos_weight(self.imbalance, label.size - positives, positives)
        params = self.lightgbm_params(scale_pos_weight)
        # One binning of the whole matrix serves both fits (LightGBM's subset reuses the bins).
        everything = self._dataset(matrix, label, names, params=params)
        learn = everything.subset(np.flatnonzero(~held_out).tolist())
        calibration_raw = np.asarray(
            lgb.train(params, learn, num_boost_round=rounds).predict(
                matrix[scored], raw_score=True, num_threads=self.num_threads
            )
        )
        booster = lgb.train(params, everything, num_boost_round=rounds)
        booster = lgb.Booster(model_str=booster.model_to_string())

        self.booster_ = booster
        self.feature_names_ = names
        self.best_iteration_ = int(rounds)
        self.scale_pos_weight_ = float(scale_pos_weight)
        self.calibrator_ = fit_calibrator(self.calibration, calibration_raw, calibration_label)
        self.training_summary_ = {
            "train_rows": int(label.size),
            "train_positives": positives,
            "calibration": f"cross-fitted: {held_out_share:.0%} of households held out",
            "calibration_rows": int(scored.sum()),
            "calibration_positives": int(calibration_label.sum()),
            "best_iteration": self.best_iteration_,
            "calibration_average_precision": float(
                average_precision_score(calibration_label, calibration_raw)
            ),
        }
        return self

    def _dataset(
        self,
        matrix: np.ndarray,
        label: np.ndarray,
        names: Sequence[str],
        reference: lgb.Dataset | None = None,
        params: dict[str, Any] | None = None,
    ) -> lgb.Dataset:
        # ``params`` fixes the binning parameters up front, so that subsets and training agree on them.
        return lgb.Dataset(
            matrix,
            label=label,
            reference=reference,
            params=params,
            feature_name=list(names),
            categorical_feature=list(self.categorical_features) or "auto",
            free_raw_data=True,
        )

    # -- prediction ---------------------------------------------------------------------------

    def feature_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """``X``'s feature columns in the model's order as float64; errors name missing columns."""
        self._check_fitted()
        return _feature_matrix(X, self.feature_names_, self.categorical_features, "X")

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """Booster log-odds, one per row (before calibration; the scale SHAP values add up to)."""
        matrix = self.feature_matrix(X)
        if matrix.shape[0] == 0:
            return np.zeros(0)
        raw = self.booster_.predict(matrix, raw_score=True, num_threads=self.num_threads)
        return np.asarray(raw, dtype=np.float64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability that a rule fires within the horizon, one per row, in [0, 1].

        Unlike scikit-learn classifiers this returns a 1-D array of the
        positive-class probability. It is a strictly increasing function of
        :meth:`raw_score`, so both rank households identically.
        """
        return self.calibrate(self.raw_score(X))

    def calibrate(self, raw_score: np.ndarray) -> np.ndarray:
        """Map raw log-odds to calibrated probabilities."""
        self._check_fitted()
        calibrated: np.ndarray = np.clip(self.calibrator_.transform(raw_score), 0.0, 1.0)
        return calibrated

    def feature_importance(self, importance_type: Literal["gain", "split"] = "gain") -> pd.Series:
        """Total gain (or split count) per feature, descending."""
        self._check_fitted()
        values = self.booster_.feature_importance(importance_type=importance_type)
        return pd.Series(values, index=list(self.feature_names_), name=importance_type).sort_values(
            ascending=False, kind="stable"
        )

    # -- persistence ----------------------------------------------------------------------------

    def save(self, folder: Path | str) -> Path:
        """Write booster text, calibrator JSON and metadata JSON into ``folder`` (created if needed)."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BOOSTER_FILE).write_text(self.booster_.model_to_string(), encoding="utf-8")
        (folder / CALIBRATOR_FILE).write_text(
            json.dumps(self.calibrator_.to_json_dict(), indent=2), encoding="utf-8"
        )
        metadata = {
            "format_version": MODEL_FORMAT_VERSION,
            "params": self.get_params(),
            "feature_names": list(self.feature_names_),
            "best_iteration": self.best_iteration_,
            "scale_pos_weight": self.scale_pos_weight_,
            "training_summary": self.training_summary_,
            "lightgbm_version": lgb.__version__,
        }
        (folder / METADATA_FILE).write_text(
            json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> RiskModel:
        """Read a model written by :meth:`save`; errors name the missing or broken file."""
        folder = Path(folder)
        for name in (BOOSTER_FILE, CALIBRATOR_FILE, METADATA_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: required model file is missing")
        try:
            metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
            calibrator = calibrator_from_json(
                json.loads((folder / CALIBRATOR_FILE).read_text(encoding="utf-8"))
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{folder}: model metadata or calibrator is broken ({exc})") from None
        if metadata.get("format_version") != MODEL_FORMAT_VERSION:
            raise ValueError(
                f"{folder / METADATA_FILE}: format_version {metadata.get('format_version')!r} "
                f"is not supported (expected {MODEL_FORMAT_VERSION})"
            )
        model = cls(**metadata["params"])
        model.booster_ = lgb.Booster(model_str=(folder / BOOSTER_FILE).read_text(encoding="utf-8"))
        model.feature_names_ = tuple(metadata["feature_names"])
        if tuple(model.booster_.feature_name()) != model.feature_names_:
            raise ValueError(f"{folder}: booster features do not match {METADATA_FILE}")
        model.best_iteration_ = int(metadata["best_iteration"])
        model.scale_pos_weight_ = float(metadata["scale_pos_weight"])
        model.calibrator_ = calibrator
        model.training_summary_ = dict(metadata.get("training_summary", {}))
        return model

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("RiskModel is not fitted: call fit() or RiskModel.load() first")


# -- helpers ------------------------------------------------------------------------------------

_NON_FEATURE_COLUMNS = frozenset({"household_id", "as_of"})


def _default_feature_columns(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(
        str(c)
        for c in frame.columns
        if c not in _NON_FEATURE_COLUMNS
        and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    )


def _feature_matrix(
    frame: pd.DataFrame, names: Sequence[str], categorical: Sequence[str], what: str
) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"{what} must be a pandas DataFrame with named feature columns, not {type(frame).__name__}"
        )
    missing = [n for n in names if n not in frame.columns]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise FeatureMismatchError(
            f"{what} is missing {len(missing)} feature column(s) the model needs: {shown}"
        )
    # One look at the frame's dtypes, not a column object per feature: a few rows (the API) cost
    # milliseconds per hundred column look-ups.
    dtypes = frame.dtypes.to_dict() if frame.columns.is_unique else {n: frame[n].dtype for n in names}
    # A feature table has two or three dtypes among hundreds of columns: each is judged once, and
    # only a table that fails is searched for the first column to name.
    if not all(_usable_dtype(dtype) for dtype in {dtypes[name] for name in names}):
        for name in names:
            dtype = dtypes[name]
            if isinstance(dtype, pd.CategoricalDtype):
                raise FeatureMismatchError(
                    f"{what} column {name!r} has the pandas category dtype; pass integer codes instead"
                )
            if not _usable_dtype(dtype):
                raise FeatureMismatchError(f"{what} column {name!r} is {dtype}, not numeric")
    matrix = frame.loc[:, list(names)].to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(matrix).any():
        rows, cols = np.nonzero(np.isinf(matrix))
        raise FeatureMismatchError(
            f"{what} column {names[cols[0]]!r} holds an infinite value (row {int(rows[0]) + 1}); "
            "use NaN for unknown values"
        )
    for name in categorical:
        values = matrix[:, names.index(name)]
        known = values[~np.isnan(values)]
        if known.size and (np.any(known < 0) or np.any(known != np.floor(known))):
            raise FeatureMismatchError(
                f"{what} categorical column {name!r} must hold non-negative integer codes"
            )
    return matrix


def _usable_dtype(dtype: Any) -> bool:
    return not isinstance(dtype, pd.CategoricalDtype) and (
        pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    )


def _labels(y: Sequence[int] | np.ndarray | pd.Series, rows: int, what: str) -> np.ndarray:
    label = np.asarray(y, dtype=np.float64).ravel()
    if label.size != rows:
        raise ValueError(f"{what} has {label.size} labels for {rows} rows")
    if not np.all((label == 0) | (label == 1)):
        raise ValueError(f"{what} must hold only 0 and 1")
    return label


def _scale_pos_weight(imbalance: ImbalanceHandling, negatives: int, positives: int) -> float:
    ratio = negatives / positives
    if imbalance == "balanced":
        return ratio
    if imbalance == "sqrt":
        return math.sqrt(ratio)
    if imbalance == "none":
        return 1.0
    raise ValueError(f"imbalance must be 'balanced', 'sqrt' or 'none', not {imbalance!r}")
