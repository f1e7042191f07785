"""Early warning of large-scale relapse (防止规模性返贫): have the expected threshold crossings risen?

A calibrated risk score is the probability that a household reaches a monitoring
rule within the horizon, so the sum of the scores of the scored households is the
number of them the rules are expected to catch. This module compares that expected
count of the current side with the reference's, per scored household, as a ratio
with a 90 % interval, and names where the rise comes from: the townships whose
expected count rose most for their number of households, and the first reasons of
the top households whose expected count rose most.

**Per scored household.** A sampled side gives only a mean, and the number of
scored households falls in a shock (households that reach a rule leave the scored
set as ``triggered_now``), so the ratio of means is the one statistic that reads
the same whether a side was sampled or not; counts scaled to each side's
households, and the households crossing a rule now, are reported beside it.

**The interval** is the delta method on the log of the ratio of two independent
means: ``se = sqrt(var_cur / (n_cur mean_cur^2) + var_ref / (n_ref mean_ref^2))``,
where each side's variance of its mean is the larger of the households-as-samples
one and the one clustered by village (when village codes are known). Villages
share terrain, disasters and the village features, so their households do not
vary independently; the clustered variance admits that, and taking the larger of
the two never lets a county of few villages look more precise than its
households. Two sides of the same county are positively correlated, so treating
them as independent widens the interval: it errs towards no alarm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from relapse_risk.models.expected_counts import Z_90
from relapse_risk.models.explain import explain_reasons
from relapse_risk.models.model import RiskModel

from .checks import RETRAIN, WATCH, Check, Status
from .config import MonitorThresholds

GROUP = "large-scale relapse"
DEFAULT_VISIT_SHARE = 0.05
"""Share of scored households taken as the top ones when a side has no visit list."""
NAMED = 3
"""Townships and reasons named in the message."""
LARGE_SCALE_RELAPSE = (
    "possible large-scale relapse (可能发生规模性返贫): tell the county's leading group for rural "
    "revitalisation now; start identification for the households already crossing a rule, visit beyond "
    "the visit list in the named townships; prepare the support measures of the named reasons "
    "(employment assistance for lost work, relief for disasters, industry support for farm income); then "
    + RETRAIN
    + ", since the model has not seen this shock"
)

RISING = (
    "expected crossings are rising: brief the cadres of the named townships on the named reasons, "
    "start identification for the households crossing a rule now, and monitor again next month against "
    "this run"
)


@dataclass(frozen=True)
class ScoredSide:
    """The scored households of one side and what is known of the whole side.

    ``scores`` has ``risk_score`` and, where known, ``township_code``, ``village_code``,
    ``in_visit_list`` and ``reason_1_code``.
    """

    scores: pd.DataFrame
    statuses: dict[str, float] = field(default_factory=dict)
    """Households of the whole side by status (``scored``, ``triggered_now``, ``under_monitoring``,
    ...); estimated from the sample when the side was sampled; empty when unknown."""
    scale: float = 1.0
    """Scored households of the whole side per row of ``scores`` (1 when nothing was sampled)."""

    @property
    def households(self) -> float | None:
        return sum(self.statuses.values()) if self.statuses else None


@dataclass(frozen=True)
class CountRatio:
    """Expected crossings per scored household, current over reference, with a 90 % interval."""

    ratio: float
    low: float
    high: float
    reference_mean: float
    current_mean: float
    clustered: bool
    """True when the village-clustered variance was the larger on at least one side."""
    se: float = math.nan
    """Standard error of the log of the ratio."""

    @property
    def z(self) -> float:
        """Standard errors between the log of the ratio and 0 (no change)."""
        return math.log(self.ratio) / self.se if self.se > 0 and self.ratio > 0 else math.nan


def mean_variance(values: np.ndarray, clusters: np.ndarray | None = None) -> tuple[float, bool]:
    """Variance of the mean of ``values``: the larger of the independent-households one and the
    one clustered by ``clusters`` (with the small-sample factor G / (G - 1)); and whether the
    clustered one was the larger."""
    n = values.size
    if n < 2:
        return math.nan, False
    independent = float(values.var(ddof=1)) / n
    if clusters is None:
        return independent, False
    groups = pd.Series(values - values.mean()).groupby(pd.Series(clusters).astype(str).to_numpy()).sum()
    g = len(groups)
    if g < 2:
        return independent, False
    clustered = float((groups.to_numpy() ** 2).sum()) / n**2 * g / (g - 1)
    return max(independent, clustered), clustered > independent


def count_ratio(
    reference: np.ndarray,
    current: np.ndarray,
    reference_clusters: np.ndarray | None = None,
    current_clusters: np.ndarray | None = None,
) -> CountRatio:
    """Ratio of the mean scores with the delta-method interval of the module docstring.

    >>> r = count_ratio(np.full(1000, 0.02) + np.arange(1000) % 2 * 0.01, np.full(1000, 0.05))
    >>> round(r.ratio, 3), r.low > 1
    (2.0, True)
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    keep_ref, keep_cur = np.isfinite(ref), np.isfinite(cur)
    ref_clusters = None if reference_clusters is None else np.asarray(reference_clusters)[keep_ref]
    cur_clusters = None if current_clusters is None else np.asarray(current_clusters)[keep_cur]
    ref, cur = ref[keep_ref], cur[keep_cur]
    if ref.size == 0 or cur.size == 0 or ref.mean() <= 0 or cur.mean() <= 0:
        return CountRatio(math.nan, math.nan, math.nan, math.nan, math.nan, False)
    ref_mean, cur_mean = float(ref.mean()), float(cur.mean())
    ref_var, ref_clustered = mean_variance(ref, ref_clusters)
    cur_var, cur_clustered = mean_variance(cur, cur_clusters)
    ratio = cur_mean / ref_mean
    se = math.sqrt(ref_var / ref_mean**2 + cur_var / cur_mean**2)
    if not math.isfinite(se):
        return CountRatio(ratio, math.nan, math.nan, ref_mean, cur_mean, False)
    return CountRatio(
        ratio,
        ratio * math.exp(-Z_90 * se),
        ratio * math.exp(Z_90 * se),
        ref_mean,
        cur_mean,
        ref_clustered or cur_clustered,
        se,
    )


def top_households(scores: pd.DataFrame) -> pd.Series:
    """The side's visit list, or its top :data:`DEFAULT_VISIT_SHARE` by score when it has none."""
    if "in_visit_list" in scores:
        listed = scores["in_visit_list"].fillna(False).astype(bool)
        if listed.any():
            return listed
    k = math.ceil(DEFAULT_VISIT_SHARE * len(scores))
    order = np.argsort(-scores["risk_score"].to_numpy(np.float64), kind="stable")
    top = np.zeros(len(scores), dtype=bool)
    top[order[:k]] = True
    return pd.Series(top, index=scores.index)


def township_rises(reference: ScoredSide, current: ScoredSide) -> pd.Series:
    """Per township both sides hold, the rise in expected crossings at its current size: (current
    mean score - reference mean score) x its current scored households (whole side), largest first."""
    if not all("township_code" in side.scores for side in (reference, current)):
        return pd.Series(dtype=np.float64)

    def by_township(side: ScoredSide) -> pd.DataFrame:
        frame = side.scores
        return frame["risk_score"].groupby(frame["township_code"].astype(str)).agg(["mean", "size"])

    ref, cur = by_township(reference), by_township(current)
    shared = ref.index.intersection(cur.index)
    rise = (cur.loc[shared, "mean"] - ref.loc[shared, "mean"]) * cur.loc[shared, "size"] * current.scale
    return rise.sort_values(ascending=False)


def reason_rises(reference: ScoredSide, current: ScoredSide) -> tuple[pd.Series, bool]:
    """Per first reason of the top households, the rise in their expected crossings per scored
    household, scaled to the current side's scored households; largest first. When only the
    current side has reasons, its expected crossings by reason instead (and False)."""

    def by_reason(side: ScoredSide) -> pd.Series | None:
        frame = side.scores
        if "reason_1_code" not in frame:
            return None
        top = frame[top_households(frame).to_numpy() & frame["reason_1_code"].notna().to_numpy()]
        if top.empty:
            return None
        return top["risk_score"].groupby(top["reason_1_code"].astype(str)).sum() / len(frame)

    cur = by_reason(current)
    if cur is None:
        return pd.Series(dtype=np.float64), False
    scored = len(current.scores) * current.scale
    ref = by_reason(reference)
    if ref is None:
        return (cur * scored).sort_values(ascending=False), False
    rise = cur.sub(ref, fill_value=0.0) * scored
    return rise.sort_values(ascending=False), True


def with_first_reasons(side: ScoredSide, features: pd.DataFrame, model: RiskModel) -> ScoredSide:
    """``side`` with ``reason_1_code`` for its top households, from the reasons batch scoring
    gives (:func:`relapse_risk.models.explain.explain_reasons`); other households get none."""
    scores = side.scores.copy()
    top = top_households(scores).to_numpy()
    ids = scores.loc[top, "household_id"].astype(str)
    rows = features[features["household_id"].astype(str).isin(set(ids))]
    rows = rows.set_index(rows["household_id"].astype(str)).loc[ids.to_numpy()].reset_index(drop=True)
    chosen = explain_reasons(model, rows, top=1)
    codes = pd.Series([reasons[0].code if reasons else None for reasons in chosen], dtype=object)
    column = pd.Series(None, index=scores.index, dtype=object)
    column[top] = codes.to_numpy()
    scores["reason_1_code"] = column
    return ScoredSide(scores, side.statuses, side.scale)


def early_warning_check(
    reference: ScoredSide,
    current: ScoredSide,
    thresholds: MonitorThresholds,
    horizon: int = 6,
    add_reasons: Callable[[], tuple[ScoredSide, ScoredSide]] | None = None,
) -> Check:
    """``expected_crossings``: the rise of expected crossings per scored household.

    Warning: beyond noise (the 90 % interval's lower end above 1) and at or above the warning
    level. Alert: at or above the alert level and at least ``expected_crossings_alert_z``
    standard errors above no change (a 90 % interval alone lies above 1 in one quiet comparison
    of twenty by chance, and in a small county that chance rise is large).

    ``add_reasons`` is called only when the check is not ok and the current side has no
    ``reason_1_code``: it returns both sides with first reasons for their top households.
    """
    level = thresholds.expected_crossings_ratio
    ref_scores, cur_scores = reference.scores, current.scores
    ratio = count_ratio(
        ref_scores["risk_score"].to_numpy(np.float64),
        cur_scores["risk_score"].to_numpy(np.float64),
        ref_scores["village_code"].to_numpy() if "village_code" in ref_scores else None,
        cur_scores["village_code"].to_numpy() if "village_code" in cur_scores else None,
    )
    beyond_noise = math.isfinite(ratio.low) and ratio.low > 1.0
    status: Status = "ok"
    if beyond_noise and ratio.ratio >= level.alert and ratio.z >= thresholds.expected_crossings_alert_z:
        status = "alert"
    elif beyond_noise and ratio.ratio >= level.warning:
        status = "warning"
    if status != "ok" and "reason_1_code" not in cur_scores and add_reasons is not None:
        reference, current = add_reasons()

    details: dict[str, object] = {
        "ratio": ratio.ratio,
        "interval_90": [ratio.low, ratio.high],
        "beyond_noise": beyond_noise,
        "z": ratio.z,
        "village_clustered": ratio.clustered,
        "mean_score": {"reference": ratio.reference_mean, "current": ratio.current_mean},
    }
    parts = [
        f"expected rule crossings within {horizon} months per scored household x{ratio.ratio:.2f} "
        f"(90 % interval {ratio.low:.2f}-{ratio.high:.2f}, {ratio.z:.1f} standard errors; mean score "
        f"{ratio.reference_mean:.4f} -> {ratio.current_mean:.4f})"
    ]
    counts = _counts(reference, current, details)
    if counts:
        parts.append(counts)
    if status != "ok":
        townships = township_rises(reference, current)
        rising = townships[townships > 0].head(NAMED)
        details["townships"] = {str(k): float(v) for k, v in rising.items()}
        if len(rising):
            total = float(townships[townships > 0].sum())
            parts.append(
                "rise led by townships "
                + ", ".join(f"{code} (+{value:,.1f}, {value / total:.0%})" for code, value in rising.items())
            )
        reasons, compared = reason_rises(reference, current)
        leading = reasons[reasons > 0].head(NAMED)
        details["reasons"] = {str(k): float(v) for k, v in leading.items()}
        if len(leading):
            parts.append(
                (
                    "first reasons rising among the top households: "
                    if compared
                    else "leading first reasons of the top households: "
                )
                + ", ".join(
                    f"{code} (+{value:,.1f})" if compared else f"{code} ({value:,.1f})"
                    for code, value in leading.items()
                )
            )
        if status == "alert":
            parts[0] = "可能发生规模性返贫 possible large-scale relapse: " + parts[0]
    elif math.isfinite(ratio.high) and ratio.high < 1.0:
        parts.append("a fall beyond noise")
    elif not beyond_noise:
        parts.append("within noise")
    else:
        parts.append("beyond noise, below the warning level")
    return Check(
        name="expected_crossings",
        group=GROUP,
        value=None if not math.isfinite(ratio.ratio) else ratio.ratio,
        threshold={"warning": level.warning, "alert": level.alert},
        status=status,
        message="; ".join(parts),
        action={"alert": LARGE_SCALE_RELAPSE, "warning": RISING}.get(status, WATCH),
        details=details,
    )


def _counts(reference: ScoredSide, current: ScoredSide, details: dict[str, object]) -> str:
    """Expected crossings and households crossing a rule now, each scaled to its side's households."""
    expected = {
        name: float(side.scores["risk_score"].sum()) * side.scale
        for name, side in (("reference", reference), ("current", current))
    }
    details["expected_crossings"] = expected
    text = f"expected crossings {expected['reference']:,.0f} -> {expected['current']:,.0f} households"
    if reference.statuses and current.statuses:
        now = {
            name: side.statuses.get("triggered_now", 0.0)
            for name, side in (("reference", reference), ("current", current))
        }
        households = {"reference": reference.households or 0.0, "current": current.households or 0.0}
        details["crossing_now"] = now
        details["households"] = households
        text += (
            f" of {households['reference']:,.0f} -> {households['current']:,.0f}; crossing a rule now "
            f"{now['reference']:,.0f} -> {now['current']:,.0f} "
            f"({_share(now['reference'], households['reference'])} -> "
            f"{_share(now['current'], households['current'])}), who have left the scored households"
        )
    return text


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"
