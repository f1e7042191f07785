"""Figures a training or evaluation run keeps as artifacts (matplotlib, PNG).

Every function takes plain frames and arrays and returns a matplotlib
``Figure``; saving and logging belong to the caller. The ranked frame they read
holds one row per eligible, labelled household and as-of month with ``as_of``,
``label`` (0/1) and one ``rank_<method>`` column per method (1 = visited first
within its month), so any visit budget k can be read off without re-sorting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

METHOD_COLOURS = {"model": "#1f77b4", "rule_baseline": "#ff7f0e", "oracle": "#2ca02c"}
METHOD_LABELS = {"model": "model", "rule_baseline": "rule baseline (margin)", "oracle": "oracle (p_true)"}


def rank_column(method: str) -> str:
    return f"rank_{method}"


def recall_at_shares(ranked: pd.DataFrame, method: str, shares: Sequence[float] | np.ndarray) -> np.ndarray:
    """Mean over as-of months of recall@ceil(share x eligible) for each visit share."""
    per_month = []
    for _, month in ranked.groupby("as_of", sort=True):
        label = month["label"].to_numpy(dtype=bool)
        positives = int(label.sum())
        if positives == 0:
            continue
        rank = month[rank_column(method)].to_numpy()
        if np.isnan(rank).all():  # the method has no ranking that month (oracle without truth)
            continue
        per_month.append(
            [int((label & (rank <= math.ceil(share * len(month)))).sum()) / positives for share in shares]
        )
    return np.asarray(per_month).mean(axis=0) if per_month else np.full(len(shares), np.nan)


def recall_curve_figure(
    ranked: pd.DataFrame, methods: Sequence[str], visit_share: float, max_share: float = 0.3
) -> Figure:
    """Recall@k against the share of eligible households visited, one line per method."""
    shares = np.linspace(0.005, max_share, 60)
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    for method in methods:
        axes.plot(
            shares * 100,
            recall_at_shares(ranked, method, shares),
            label=METHOD_LABELS.get(method, method),
            color=METHOD_COLOURS.get(method),
        )
    axes.axvline(visit_share * 100, color="grey", linestyle="--", linewidth=1, label="policy visit share")
    axes.set_xlabel("households visited (% of eligible)")
    axes.set_ylabel("recall@k (mean over test months)")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title("Who the visit list catches")
    figure.tight_layout()
    return figure


def calibration_curve_figure(score: np.ndarray, label: np.ndarray, bins: int = 15) -> Figure:
    """Observed rate against mean predicted risk in equal-count bins, with the score histogram."""
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    order = np.argsort(score, kind="stable")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    predicted = np.array([score[g].mean() for g in groups])
    observed = np.array([label[g].mean() for g in groups])
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    upper = max(float(predicted.max(initial=0)), float(observed.max(initial=0)), 0.05) * 1.05
    top.plot([0, upper], [0, upper], color="grey", linestyle="--", linewidth=1, label="perfect")
    top.plot(predicted, observed, marker="o", color=METHOD_COLOURS["model"], label="model")
    top.set_ylabel("observed share with label 1")
    top.set_xlim(0, upper)
    top.set_ylim(0, upper)
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    top.set_title(f"Calibration on test months ({bins} equal-count bins)")
    bottom.hist(score, bins=50, range=(0, upper), color=METHOD_COLOURS["model"], alpha=0.7)
    bottom.set_yscale("log")
    bottom.set_xlabel("risk_score")
    bottom.set_ylabel("households")
    figure.tight_layout()
    return figure


def lift_by_decile(ranked: pd.DataFrame, method: str) -> np.ndarray:
    """Positive rate of each tenth of the ranking (first = highest risk) over the overall rate."""
    ranked = ranked[ranked[rank_column(method)].notna()]
    if ranked.empty:
        return np.full(10, np.nan)
    decile = np.empty(len(ranked), dtype=np.int64)
    for _, index in ranked.groupby("as_of", sort=True).indices.items():
        rank = ranked[rank_column(method)].to_numpy()[index]
        decile[index] = np.minimum((rank.astype(np.int64) - 1) * 10 // len(index), 9)
    label = ranked["label"].to_numpy(dtype=np.float64)
    overall = label.mean()
    if overall == 0:
        return np.full(10, np.nan)
    return np.array(
        [label[decile == d].mean() / overall if (decile == d).any() else np.nan for d in range(10)]
    )


def lift_figure(ranked: pd.DataFrame, methods: Sequence[str]) -> Figure:
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    width = 0.8 / max(len(methods), 1)
    deciles = np.arange(1, 11)
    for i, method in enumerate(methods):
        axes.bar(
            deciles + (i - (len(methods) - 1) / 2) * width,
            lift_by_decile(ranked, method),
            width=width,
            label=METHOD_LABELS.get(method, method),
            color=METHOD_COLOURS.get(method),
        )
    axes.axhline(1.0, color="grey", linewidth=1)
    axes.set_xticks(deciles)
    axes.set_xlabel("decile of the ranking (1 = highest risk)")
    axes.set_ylabel("lift (positive rate / overall rate)")
    axes.grid(alpha=0.3, axis="y")
    axes.legend()
    axes.set_title("Lift by decile, test months")
    figure.tight_layout()
    return figure


def shap_summary_figure(values: np.ndarray, features: pd.DataFrame, max_display: int = 20) -> Figure:
    """SHAP beeswarm (log-odds) of a sample of test rows."""
    import shap  # heavy import, only needed for this figure

    plt.figure(figsize=(8, 0.35 * max_display + 1.5))
    shap.summary_plot(values, features, max_display=max_display, show=False, plot_size=None)
    figure = plt.gcf()
    figure.suptitle("SHAP values (log-odds), sample of test rows")
    figure.tight_layout()
    return figure


def subgroup_figure(table: pd.DataFrame) -> Figure:
    """Recall@k per group for the model, the rule baseline and (when known) the oracle.

    Groups the fairness gate refuses are named in red: their recall is below the baseline's,
    or their calibration is off, beyond noise.
    """
    rows = table.iloc[::-1].reset_index(drop=True)
    figure, axes = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.5))
    positions = np.arange(len(rows))
    methods = [("recall_at_k", "model"), ("baseline_recall_at_k", "rule_baseline")]
    if rows["oracle_recall_at_k"].notna().any():
        methods.append(("oracle_recall_at_k", "oracle"))
    height = 0.8 / len(methods)
    for offset, (column, method) in enumerate(methods):
        axes.barh(
            positions + (offset - (len(methods) - 1) / 2) * height,
            rows[column].fillna(0.0),
            height=height,
            color=METHOD_COLOURS[method],
            label=method,
        )
    axes.set_yticks(positions)
    axes.set_yticklabels([f"{g} (n+={p})" for g, p in zip(rows["group"], rows["positives"], strict=True)])
    for tick, flagged in zip(axes.get_yticklabels(), rows["flagged"], strict=True):
        if flagged:
            tick.set_color("#d62728")
    axes.set_xlabel("recall@k (pooled over test months)")
    axes.set_xlim(0, 1)
    axes.legend(loc="lower right")
    axes.set_title("Recall by group (red: refused by the fairness gate)")
    figure.tight_layout()
    return figure


def close(figure: Figure) -> None:
    plt.close(figure)
