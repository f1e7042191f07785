"""Drift of the model's features and of its predictions, as plain numbers.

Feature drift uses the statistic of Evidently's ``wasserstein`` test (the
Wasserstein-1 distance between the two samples divided by the reference's
standard deviation) computed here with numpy on seeded samples, so the checks
stay fast and reproducible at a million households; Evidently then renders the
most drifted columns for the person reading the report (:mod:`.report`).
Significance tests are not used: at tens of thousands of rows they flag shifts
far too small to matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from relapse_risk.features.catalogue import FEATURES_BY_NAME

from .checks import CHECK_FEED, RETRAIN, Check, judged
from .config import MonitorThresholds


def wasserstein_1d(first: np.ndarray, second: np.ndarray) -> float:
    """Wasserstein-1 distance of two non-empty samples of finite values: the area between
    their empirical distribution functions (what ``scipy.stats.wasserstein_distance`` returns).

    Sorting each side and merging the two sorted runs costs a third of scipy's general,
    weighted version, which matters for 200+ columns of 50,000 households.
    """
    n = first.size
    merged = np.concatenate((np.sort(first), np.sort(second)))
    order = np.argsort(merged, kind="stable")  # two sorted runs: a merge
    from_first = order < n
    gap = np.abs(np.cumsum(from_first) / n - np.cumsum(~from_first) / second.size)
    return float(np.dot(gap[:-1], np.diff(merged[order])))


def column_drift(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance over the reference's standard deviation; NaNs are left out.

    NaN when either side has no values. A constant reference is scaled by the current
    side's spread instead (0 when both are the same constant, infinite when they differ).
    """
    ref = reference[np.isfinite(reference)].astype(np.float64)
    cur = current[np.isfinite(current)].astype(np.float64)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    distance = wasserstein_1d(ref, cur)
    spread = ref.std() or cur.std()
    if spread == 0:
        return 0.0 if distance == 0 else float("inf")
    return float(distance / spread)


@dataclass(frozen=True)
class FeatureDrift:
    """Per-column drift distances (NaN: not comparable) and the share of drifted columns."""

    distances: pd.Series
    threshold: float

    @property
    def compared(self) -> pd.Series:
        return self.distances.dropna()

    @property
    def drifted(self) -> pd.Series:
        compared = self.compared
        return compared[compared >= self.threshold].sort_values(ascending=False)

    @property
    def drifted_share(self) -> float:
        return len(self.drifted) / len(self.compared) if len(self.compared) else 0.0

    def top(self, n: int) -> list[str]:
        """The ``n`` most drifted comparable columns, largest first."""
        return list(self.compared.replace(np.inf, np.finfo(np.float64).max).nlargest(n).index)


def feature_drift(reference: pd.DataFrame, current: pd.DataFrame, threshold: float) -> FeatureDrift:
    """Drift of every feature column both frames hold (``household_id`` and non-features left out)."""
    columns = [c for c in reference.columns if c in current.columns and c in FEATURES_BY_NAME]
    distances = {
        name: column_drift(reference[name].to_numpy(np.float64), current[name].to_numpy(np.float64))
        for name in columns
    }
    return FeatureDrift(pd.Series(distances, dtype=np.float64), threshold)


def feature_drift_check(drift: FeatureDrift, thresholds: MonitorThresholds) -> Check:
    drifted = drift.drifted
    by_family = (
        pd.Series([FEATURES_BY_NAME[c].family for c in drifted.index]).value_counts().to_dict()
        if len(drifted)
        else {}
    )
    families = ", ".join(f"{family} {count}" for family, count in by_family.items()) or "none"
    top = ", ".join(f"{name} {value:.2f}" for name, value in drifted.head(5).items()) or "none"
    return judged(
        "feature_drift",
        "data drift",
        drift.drifted_share,
        thresholds.drifted_feature_share,
        f"{len(drifted)} of {len(drift.compared)} features drifted (normalised Wasserstein >= "
        f"{drift.threshold}); by family: {families}; largest: {top}",
        RETRAIN + "; if the drift has no real-world cause, " + CHECK_FEED,
    )


def population_stability(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference`` over the reference's quantile bins (0.0001 floor per bin)."""
    ref = reference[np.isfinite(reference)]
    cur = current[np.isfinite(current)]
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1) / ref.size
    cur_share = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=edges.size + 1) / cur.size
    ref_share, cur_share = np.maximum(ref_share, 1e-4), np.maximum(cur_share, 1e-4)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def shares(values: pd.Series) -> dict[str, float]:
    counts = values.dropna().astype(str).value_counts(normalize=True)
    return {str(k): float(v) for k, v in counts.items()}


def _total_variation(reference: dict[str, float], current: dict[str, float]) -> float:
    keys = set(reference) | set(current)
    return 0.5 * sum(abs(reference.get(k, 0.0) - current.get(k, 0.0)) for k in keys)


def township_shift(reference: pd.DataFrame, current: pd.DataFrame, townships: set[str]) -> float:
    """Total variation between the current visit list's township shares and the shares expected if
    every township kept its reference visit rate (listed / households) on its current households.

    Comparing list shares alone would call a change of which households are scored (another sample
    of villages, a township that grew) a drift of the list; the rate keeps the two apart. With the
    same households on both sides it equals the plain distance between the two lists' shares.
    """

    def listed_and_households(frame: pd.DataFrame) -> pd.DataFrame:
        rows = frame[frame["township_code"].isin(townships)]
        listed = rows["in_visit_list"].fillna(False).astype(bool)
        return listed.groupby(rows["township_code"].astype(str)).agg(["sum", "size"])

    ref, cur = listed_and_households(reference), listed_and_households(current)
    cur = cur.reindex(ref.index, fill_value=0)
    expected = (ref["sum"] / ref["size"]) * cur["size"]
    if expected.sum() <= 0 or cur["sum"].sum() <= 0:
        return 0.0
    expected_share = expected / expected.sum()
    current_share = cur["sum"] / cur["sum"].sum()
    return float(0.5 * (expected_share - current_share).abs().sum())


def visit_list_cut(scores: pd.DataFrame, visit_share: float = 0.05) -> float:
    """The lowest score on a side's visit list; without a list, the score at its top ``visit_share``."""
    risk = scores["risk_score"].to_numpy(np.float64)
    if "in_visit_list" in scores:
        listed = scores["in_visit_list"].fillna(False).astype(bool).to_numpy()
        if listed.any():
            return float(np.nanmin(risk[listed]))
    finite = risk[np.isfinite(risk)]
    return float(np.quantile(finite, 1.0 - visit_share)) if finite.size else float("nan")


def top_share_ratio(reference: np.ndarray, current: np.ndarray, cut: float) -> tuple[float, float, float]:
    """Share of each side at or above ``cut``, and current over reference (NaN when not measurable)."""
    ref = reference[np.isfinite(reference)]
    cur = current[np.isfinite(current)]
    if ref.size == 0 or cur.size == 0 or not np.isfinite(cut):
        return float("nan"), float("nan"), float("nan")
    ref_share, cur_share = float(np.mean(ref >= cut)), float(np.mean(cur >= cut))
    return ref_share, cur_share, (cur_share / ref_share if ref_share > 0 else float("nan"))


def tail_checks(
    ref_scores: np.ndarray, cur_scores: np.ndarray, cut: float, thresholds: MonitorThresholds
) -> list[Check]:
    """The top of the score distribution and its mean: what a growing tail moves and PSI over
    reference deciles barely does (all of the tail falls into the last decile)."""
    ref_share, cur_share, top_ratio = top_share_ratio(ref_scores, cur_scores, cut)
    ref_mean, cur_mean = float(np.nanmean(ref_scores)), float(np.nanmean(cur_scores))
    ratio = cur_mean / ref_mean if ref_mean > 0 else float("nan")
    # A rise only: a county whose households grow less risky (incomes rise, a season passes) is no
    # alarm, and the data faults that lower every score have checks of their own (income unit, outage).
    change = ratio if ratio == ratio else None
    return [
        judged(
            "top_k_share",
            "prediction drift",
            top_ratio,
            thresholds.top_k_share,
            f"scored households at or above the reference's visit-list cut (score {cut:.3f}): "
            f"{ref_share:.1%} -> {cur_share:.1%} (x{top_ratio:.2f})",
            RETRAIN + "; the visit list cannot hold every household now at its risk",
        ),
        judged(
            "mean_score_change",
            "prediction drift",
            change,
            thresholds.mean_score_change,
            f"mean risk score {ref_mean:.4f} -> {cur_mean:.4f} (x{ratio:.2f})",
            RETRAIN,
        ),
    ]


def prediction_drift_checks(
    reference: pd.DataFrame, current: pd.DataFrame, thresholds: MonitorThresholds
) -> list[Check]:
    """Score distribution, band shares and visit-list composition, from two score tables.

    Each table has ``risk_score`` and ``risk_band`` for scored households, and may have
    ``in_visit_list``, ``township_code`` and ``reason_1_code``; checks whose columns are
    missing on a side are left out.
    """
    checks: list[Check] = []
    ref_scores = reference["risk_score"].to_numpy(np.float64)
    cur_scores = current["risk_score"].to_numpy(np.float64)
    psi = population_stability(ref_scores, cur_scores)
    checks.append(
        judged(
            "score_drift",
            "prediction drift",
            psi,
            thresholds.score_psi,
            f"PSI of the risk score over reference deciles; mean score {np.nanmean(ref_scores):.3f} -> "
            f"{np.nanmean(cur_scores):.3f}",
            RETRAIN,
        )
    )
    checks += tail_checks(ref_scores, cur_scores, visit_list_cut(reference), thresholds)
    ref_bands, cur_bands = shares(reference["risk_band"]), shares(current["risk_band"])
    band_change = max(abs(ref_bands.get(b, 0.0) - cur_bands.get(b, 0.0)) for b in ("high", "medium", "low"))
    checks.append(
        judged(
            "risk_band_shares",
            "prediction drift",
            band_change,
            thresholds.band_share_change,
            "share of scored households by band: "
            + ", ".join(
                f"{b} {ref_bands.get(b, 0):.1%} -> {cur_bands.get(b, 0):.1%}"
                for b in ("high", "medium", "low")
            ),
            RETRAIN,
        )
    )
    if {"in_visit_list", "township_code"} <= set(reference) & set(current):
        ref_list = reference[reference["in_visit_list"].fillna(False).astype(bool)]
        cur_list = current[current["in_visit_list"].fillna(False).astype(bool)]
        shared = set(reference["township_code"].dropna()) & set(current["township_code"].dropna())
        if shared and len(ref_list) and len(cur_list):
            checks.append(
                judged(
                    "visit_list_townships",
                    "prediction drift",
                    township_shift(reference, current, shared),
                    thresholds.visit_list_township_shift,
                    f"share of the visit list that moved between the {len(shared)} townships both sides "
                    "hold, beyond what the townships' numbers of households explain",
                    "look at the townships whose share rose: a local shock or a local data problem; "
                    + CHECK_FEED,
                )
            )
        if "reason_1_code" in set(reference) & set(current) and len(ref_list) and len(cur_list):
            ref_reasons, cur_reasons = shares(ref_list["reason_1_code"]), shares(cur_list["reason_1_code"])
            if ref_reasons and cur_reasons:
                rising = sorted(cur_reasons, key=lambda k: ref_reasons.get(k, 0.0) - cur_reasons[k])[:3]
                checks.append(
                    judged(
                        "visit_list_reasons",
                        "prediction drift",
                        _total_variation(ref_reasons, cur_reasons),
                        thresholds.visit_list_reason_shift,
                        "share of the visit list whose first reason changed; rising: " + ", ".join(rising),
                        RETRAIN + "; brief cadres on the rising reasons",
                    )
                )
    return checks
