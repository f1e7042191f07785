"""Expected numbers of threshold crossings, with intervals that admit calibration drift.

A calibrated score is a probability, so the sum of the scores of a group of
households is the expected number of them that a rule will catch within the
horizon. How far the real number falls from it has two parts:

- **chance**: even with exact probabilities the count is a Poisson-binomial
  variable, with variance ``sum p (1 - p)``;
- **calibration drift**: the county's level moves from quarter to quarter (a
  season, a shock, a trend the model has not seen), and every household's
  probability moves with it. This part grows with the count, not with its
  square root, so it dominates for a county and is still large for a township.

The second part is measured on the model's own test months (training records
it as ``count_relative_error``, :func:`relative_count_error`), and widened by
:data:`DRIFT_WIDENING`, the factor that brought the 90 % interval's coverage
of matured quarter-ends to at least 85 % across six generated counties when
each month's interval was built from the error of the *other* test months
(``benchmarks/outlook_coverage.py``; figures in docs/outlook.md). Intervals
are normal approximations, cut at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

INTERVAL_LEVEL = 0.90
Z_90 = 1.6448536269514722
"""Two-sided 90 % normal quantile."""
DRIFT_WIDENING = 1.5
"""Multiplier on the model's measured relative count error; see the module docstring."""
MEASURED_COVERAGE = 0.86
"""Share of matured county quarter-ends inside their 90 % interval in that benchmark (leave one month out)."""
FALLBACK_RELATIVE_ERROR = 0.40
"""Used when a model's training run did not record its count error: about the largest of the six
generated counties measured (0.39, a county with a six-month lockdown in its test months)."""


@dataclass(frozen=True)
class ExpectedCount:
    """The expected number of households that reach a threshold, and its 90 % interval."""

    expected: float
    low: float
    high: float
    households: int
    chance_sd: float
    """Standard deviation from chance alone (Poisson-binomial)."""
    drift_sd: float
    """Standard deviation from calibration drift: widening x relative error x expected."""

    def as_json(self, digits: int = 1) -> dict[str, float | int]:
        return {
            "expected": round(self.expected, digits),
            "low": round(self.low, digits),
            "high": round(self.high, digits),
            "households": self.households,
            "chance_sd": round(self.chance_sd, 2),
            "drift_sd": round(self.drift_sd, 2),
        }


def expected_count(
    probabilities: np.ndarray | pd.Series,
    relative_error: float,
    widening: float = DRIFT_WIDENING,
    z: float = Z_90,
) -> ExpectedCount:
    """Sum of ``probabilities`` with a normal interval of chance plus calibration drift.

    >>> count = expected_count(np.full(1000, 0.05), relative_error=0.2)
    >>> round(count.expected), round(count.low), round(count.high)
    (50, 23, 77)
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[np.isfinite(p)]
    expected = float(p.sum())
    chance_sd = math.sqrt(float(np.sum(p * (1.0 - p))))
    drift_sd = widening * relative_error * expected
    half = z * math.hypot(chance_sd, drift_sd)
    low = max(0.0, expected - half)
    return ExpectedCount(expected, low, expected + half, int(p.size), chance_sd, drift_sd)


@dataclass(frozen=True)
class CountChange:
    """The change of an expected count between two runs, with its 90 % interval."""

    change: float
    low: float
    high: float
    previous: float
    current: float

    def as_json(self, digits: int = 1) -> dict[str, float]:
        return {
            "change": round(self.change, digits),
            "low": round(self.low, digits),
            "high": round(self.high, digits),
            "previous": round(self.previous, digits),
            "current": round(self.current, digits),
        }


def count_change(previous: ExpectedCount, current: ExpectedCount) -> CountChange:
    """``current - previous``; chance and drift of the two runs added as if independent.

    Two quarters scored by one model share part of their calibration error, which would
    narrow the interval; treating them as independent keeps it on the safe side.
    """
    change = current.expected - previous.expected
    sd = math.sqrt(previous.chance_sd**2 + previous.drift_sd**2 + current.chance_sd**2 + current.drift_sd**2)
    return CountChange(change, change - Z_90 * sd, change + Z_90 * sd, previous.expected, current.expected)


def relative_count_error(observed: np.ndarray, expected: np.ndarray, chance_variance: np.ndarray) -> float:
    """Root-mean-square relative error of expected counts beyond chance, over matured months.

    Per month, ``((O - E)^2 - sum p(1-p)) / E^2``, floored at zero, is the squared relative
    miss that chance does not explain; the mean over months, square-rooted, is the error.
    A level bias and a month-to-month swing count alike. NaN without a month of E > 0.
    """
    o, e, v = (np.asarray(a, dtype=np.float64) for a in (observed, expected, chance_variance))
    usable = e > 0
    if not usable.any():
        return math.nan
    excess = np.maximum((o[usable] - e[usable]) ** 2 - v[usable], 0.0) / e[usable] ** 2
    return float(math.sqrt(excess.mean()))


def monthly_counts(ranking: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Observed and expected crossings and the chance variance per ``as_of`` (and ``by``) from
    scored rows with ``label`` and ``risk_score``: columns observed, expected, chance_variance."""
    keys = ["as_of", *(by or [])]
    score = ranking["risk_score"].astype(np.float64)
    frame = pd.DataFrame(
        {
            **{key: ranking[key] for key in keys},
            "observed": ranking["label"].astype(np.int64),
            "expected": score,
            "chance_variance": score * (1.0 - score),
        }
    )
    return frame.groupby(keys, sort=True, observed=True).sum().reset_index()


def ranking_count_error(ranking: pd.DataFrame) -> float:
    """:func:`relative_count_error` of a model's test ranking (one row per household and month)."""
    months = monthly_counts(ranking)
    return relative_count_error(
        months["observed"].to_numpy(np.float64),
        months["expected"].to_numpy(np.float64),
        months["chance_variance"].to_numpy(np.float64),
    )


BANDS = ("high", "medium", "low")


def first_rule_shares(
    risk_band: pd.Series, label: pd.Series, first_rule: pd.Series, rules: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per risk band, the share of the households a rule later caught whose *first* rule was each of
    ``rules``, from matured months: ``{band: {rule: share}}``, shares summing to 1 per band.

    A band with no caught household takes the shares of all bands together; with none at all,
    the rules share equally. Scores say how likely a crossing is, these shares say which rule
    it will most likely be, so ``sum p x share`` splits the expected count by rule.
    """
    caught = pd.DataFrame({"band": risk_band.astype(str), "rule": first_rule.astype(str)})[
        label.astype(bool).to_numpy()
    ]
    caught = caught[caught["rule"].isin(rules)]

    def shares_of(rows: pd.DataFrame) -> dict[str, float]:
        if rows.empty:
            return {rule: 1.0 / len(rules) for rule in rules}
        counts = rows["rule"].value_counts()
        return {rule: float(counts.get(rule, 0)) / len(rows) for rule in rules}

    pooled = shares_of(caught)
    return {
        band: shares_of(caught[caught["band"] == band]) if (caught["band"] == band).any() else pooled
        for band in BANDS
    }


def expected_by_rule(
    risk_score: pd.Series, risk_band: pd.Series, shares: dict[str, dict[str, float]]
) -> dict[str, float]:
    """The expected count split by first rule: ``sum over households of p x share(rule | band)``."""
    totals: dict[str, float] = {}
    by_band = risk_score.astype(np.float64).groupby(risk_band.astype(str)).sum()
    for band, total in by_band.items():
        for rule, share in shares.get(str(band), {}).items():
            totals[rule] = totals.get(rule, 0.0) + float(total) * share
    return totals
