"""Probability calibrators: map a booster's raw log-odds to probabilities that mean what they say.

The booster is trained with class re-weighting and early stopping, so its raw
scores rank well but are not probabilities. A calibrator is fitted on
validation predictions (out of sample) and maps raw score -> probability.

Both calibrators here are *strictly* increasing. A plain isotonic fit is a step
function: every household in one step gets the same probability, so a visit
list cut at k households inside a step would be decided by the tie-breaker, not
by the model, and recall@k computed on calibrated scores would fall below
recall@k on raw scores. Keeping the map strictly increasing means ranking by
``risk_score`` and ranking by raw score are the same ranking.

Calibrators serialise to plain JSON (no pickles in model artefacts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

CalibrationMethod = Literal["isotonic", "platt"]

# Each isotonic knot pools at least this many validation rows, and there are
# at most _MAX_KNOTS knots, so no knot's rate rests on a handful of households.
_MIN_BLOCK_ROWS = 30
_MAX_KNOTS = 200

# Below this slope (log-odds per raw log-odds) the Platt fit is treated as
# uninformative; the tails then stay strictly increasing but nearly flat.
_MIN_SLOPE = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    logit: np.ndarray = np.log(p) - np.log1p(-p)
    return logit


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_fit_inputs(raw_score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    raw_score = np.asarray(raw_score, dtype=np.float64).ravel()
    label = np.asarray(label, dtype=np.float64).ravel()
    if raw_score.shape != label.shape:
        raise ValueError(f"raw_score has {raw_score.size} values but label has {label.size}")
    if raw_score.size == 0:
        raise ValueError("cannot fit a calibrator on zero rows")
    if not np.all(np.isfinite(raw_score)):
        raise ValueError("raw scores must be finite to fit a calibrator")
    if not np.all((label == 0) | (label == 1)):
        raise ValueError("labels must be 0 or 1 to fit a calibrator")
    if label.min() == label.max():
        raise ValueError(
            f"validation labels are all {int(label[0])}: "
            "a calibrator needs both outcomes in the validation set"
        )
    return raw_score, label


def _platt_coefficients(raw_score: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    # Nearly unregularised: the single input is already on the log-odds scale.
    fit = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
    fit.fit(raw_score.reshape(-1, 1), label.astype(int))
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


@dataclass(frozen=True)
class PlattCalibrator:
    """p = sigmoid(slope x raw + intercept), fitted by logistic regression."""

    slope: float
    intercept: float
    method: Literal["platt"] = "platt"

    @classmethod
    def fit(cls, raw_score: np.ndarray, label: np.ndarray) -> PlattCalibrator:
        raw_score, label = _check_fit_inputs(raw_score, label)
        slope, intercept = _platt_coefficients(raw_score, label)
        return cls(slope=max(slope, _MIN_SLOPE), intercept=intercept)

    def transform(self, raw_score: np.ndarray) -> np.ndarray:
        return _sigmoid(self.slope * np.asarray(raw_score, dtype=np.float64) + self.intercept)

    def to_json_dict(self) -> dict[str, object]:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept}


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Centred isotonic regression, interpolated in log-odds.

    Pool-adjacent-violators gives blocks of validation rows with strictly
    increasing positive rates. Each block becomes one knot at (mean raw score of
    the block, logit of its positive rate); between knots the map is linear in
    log-odds, beyond the outer knots it continues with the Platt slope. Block
    rates of exactly 0 or 1 are pulled in by half an observation so that their
    log-odds stay finite. Adjacent blocks are joined until each holds at least
    30 rows and 1/200 of the validation set.
    """

    knots_raw: tuple[float, ...]
    knots_logit: tuple[float, ...]
    tail_slope: float
    method: Literal["isotonic"] = "isotonic"

    @classmethod
    def fit(cls, raw_score: np.ndarray, label: np.ndarray) -> IsotonicCalibrator:
        raw_score, label = _check_fit_inputs(raw_score, label)
        order = np.argsort(raw_score, kind="stable")
        sorted_score, sorted_label = raw_score[order], label[order]
        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(
            sorted_score, sorted_label
        )
        # Block boundaries: where the fitted rate changes along the sorted scores.
        starts = _merge_small_blocks(np.flatnonzero(np.r_[True, np.diff(fitted) != 0]), fitted.size)
        counts = np.diff(np.r_[starts, fitted.size])
        block_score = np.add.reduceat(sorted_score, starts) / counts
        block_rate = np.add.reduceat(sorted_label, starts) / counts
        eps = 0.5 / raw_score.size
        block_logit = _logit(np.clip(block_rate, eps, 1.0 - eps))
        slope, _ = _platt_coefficients(raw_score, label)
        return cls(
            knots_raw=tuple(float(v) for v in block_score),
            knots_logit=tuple(float(v) for v in block_logit),
            tail_slope=max(slope, _MIN_SLOPE),
        )

    def transform(self, raw_score: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw_score, dtype=np.float64)
        knots_raw = np.asarray(self.knots_raw)
        knots_logit = np.asarray(self.knots_logit)
        logit = np.interp(raw, knots_raw, knots_logit)
        below = raw < knots_raw[0]
        above = raw > knots_raw[-1]
        logit[below] = knots_logit[0] + self.tail_slope * (raw[below] - knots_raw[0])
        logit[above] = knots_logit[-1] + self.tail_slope * (raw[above] - knots_raw[-1])
        return _sigmoid(logit)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "knots_raw": list(self.knots_raw),
            "knots_logit": list(self.knots_logit),
            "tail_slope": self.tail_slope,
        }


def _merge_small_blocks(starts: np.ndarray, rows: int) -> np.ndarray:
    """Join neighbouring isotonic blocks until each holds enough rows to estimate its rate.

    Pool-adjacent-violators happily ends with a block of three positives at the
    top (rate 1.0), which would promise certainty to every household scored
    above it. Joining adjacent blocks keeps the rates strictly increasing
    (each joined rate lies between those of its parts).
    """
    min_rows = max(_MIN_BLOCK_ROWS, math.ceil(rows / _MAX_KNOTS))
    ends = np.r_[starts[1:], rows]
    kept: list[int] = []
    open_start: int | None = None
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        if open_start is None:
            open_start = start
        if end - open_start >= min_rows:
            kept.append(open_start)
            open_start = None
    # A short remainder at the top joins the last full block by not opening a
    # new one; only when no block was full does it become the single block.
    if open_start is not None and not kept:
        kept.append(open_start)
    return np.asarray(kept, dtype=np.int64)


Calibrator = IsotonicCalibrator | PlattCalibrator


def fit_calibrator(method: CalibrationMethod, raw_score: np.ndarray, label: np.ndarray) -> Calibrator:
    """Fit the named calibrator on out-of-sample raw scores and their 0/1 labels."""
    if method == "isotonic":
        return IsotonicCalibrator.fit(raw_score, label)
    if method == "platt":
        return PlattCalibrator.fit(raw_score, label)
    raise ValueError(f"calibration must be 'isotonic' or 'platt', not {method!r}")


def calibrator_from_json(data: Mapping[str, Any]) -> Calibrator:
    """The calibrator of parsed JSON; float() and tuple() are what check the values' shapes."""
    method = data.get("method")
    if method == "isotonic":
        knots_raw = tuple(float(v) for v in data["knots_raw"])
        knots_logit = tuple(float(v) for v in data["knots_logit"])
        if not knots_raw or len(knots_raw) != len(knots_logit):
            raise ValueError("isotonic calibrator needs the same, non-zero number of raw and logit knots")
        return IsotonicCalibrator(knots_raw, knots_logit, float(data["tail_slope"]))
    if method == "platt":
        return PlattCalibrator(float(data["slope"]), float(data["intercept"]))
    raise ValueError(f"unknown calibrator method {method!r}")
