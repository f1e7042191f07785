"""Console tables (rich) for the train, evaluate and promote commands."""

from __future__ import annotations

import math

import pandas as pd
from relapse_risk.features.contract import format_month
from rich.table import Table

from .assessment import MODEL, Assessment
from .promote import PromotionDecision

_METRICS = (
    ("recall_at_k", "recall@k", "{:.3f}"),
    ("precision_at_k", "precision@k", "{:.3f}"),
    ("median_lead_time_months", "median lead (months)", "{:.1f}"),
    ("roc_auc", "ROC AUC", "{:.3f}"),
    ("average_precision", "avg precision", "{:.3f}"),
    ("ece", "ECE", "{:.4f}"),
)


def _fmt(value: object, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def metric_table(assessment: Assessment, title: str) -> Table:
    """Per-month and averaged docs/rules-and-labels.md metrics, one block of rows per method."""
    table = Table(title=title, title_justify="left")
    table.add_column("method", no_wrap=True, overflow="fold")
    table.add_column("as of", no_wrap=True, overflow="fold")
    table.add_column("eligible", justify="right", overflow="fold")
    table.add_column("positives", justify="right", overflow="fold")
    table.add_column("k", justify="right", overflow="fold")
    for _, header, _ in _METRICS:
        table.add_column(header, justify="right", overflow="fold")
    for method in assessment.methods:
        rows = assessment.per_month[assessment.per_month["method"] == method]
        for row in rows.to_dict(orient="records"):
            table.add_row(
                method,
                format_month(row["as_of"].date()),
                f"{row['eligible']:,}",
                f"{row['positives']:,}",
                f"{row['k']:,}",
                *[_fmt(row[m], p) for m, _, p in _METRICS],
            )
        mean = assessment.averaged[assessment.averaged["method"] == method].iloc[0]
        table.add_row(
            f"[bold]{method}[/bold]",
            f"[bold]mean of {int(mean['months'])}[/bold]",
            "",
            "",
            "",
            *[f"[bold]{_fmt(mean[m], p)}[/bold]" for m, _, p in _METRICS],
            end_section=True,
        )
    return table


def ratio_line(assessment: Assessment) -> str:
    parts = [f"model recall@k {assessment.mean(MODEL):.3f}"]
    for reference, name in (("rule_baseline", "rule baseline"), ("oracle", "oracle")):
        if reference in assessment.methods:
            parts.append(f"{assessment.ratio(MODEL, reference):.2f}x the {name}")
    return ", ".join(parts)


def measurement_line(assessment: Assessment, planned_months: int) -> str:
    """How much the backtest measured: test months, positives, and recall@k's 90 % interval."""
    positives = int(assessment.subgroups["positives"].loc[0])
    low, high = assessment.recall_interval(MODEL)
    line = (
        f"measured on {len(assessment.months)} test month(s) "
        f"({', '.join(format_month(m) for m in assessment.months)}), {positives:,} positives: "
        f"recall@k {assessment.mean(MODEL):.3f}, 90 % interval {low:.3f}-{high:.3f}"
    )
    if len(assessment.months) < planned_months:
        line += (
            f". Only {len(assessment.months)} of the usual {planned_months} test quarter-ends fit this "
            "history: treat the figures as rough"
        )
    return line


def gate_table(gate: pd.DataFrame, title: str) -> Table:
    """The fairness gate: each group's recall@k for model, baseline and oracle, parity, calibration, verdict.

    Parity (group / overall recall) is shown for all three methods and never refuses by itself;
    the verdict is the gate's: below the baseline's recall, or miscalibrated, beyond noise.
    """
    table = Table(title=title, title_justify="left")
    headers = ("group", "positives", "model", "baseline", "oracle", "parity", "base par.", "orc par.")
    for header in (*headers, "obs/pred", "verdict"):
        table.add_column(
            header,
            justify="left" if header in ("group", "verdict") else "right",
            no_wrap=header == "group",
            overflow="fold",
        )
    for row in gate.to_dict(orient="records"):
        verdicts = []
        if row["below_baseline"]:
            verdicts.append("[red]below baseline[/red]")
        if row["miscalibrated"]:
            verdicts.append("[red]miscalibrated[/red]")
        table.add_row(
            row["group"],
            f"{row['positives']:,}",
            _fmt(row["recall_at_k"], "{:.3f}"),
            _fmt(row["baseline_recall_at_k"], "{:.3f}"),
            _fmt(row["oracle_recall_at_k"], "{:.3f}"),
            _fmt(row["parity"], "{:.2f}"),
            _fmt(row["baseline_parity"], "{:.2f}"),
            _fmt(row["oracle_parity"], "{:.2f}"),
            _fmt(row["calibration_ratio"], "{:.2f}"),
            ", ".join(verdicts) or "ok",
        )
    return table


def subgroup_table(assessment: Assessment) -> Table:
    return gate_table(
        assessment.subgroups,
        f"Fairness gate (county-wide visit lists, pooled over {len(assessment.months)} months; recall@k by "
        "group; parity = group / overall; obs/pred relative to the county)",
    )


def champion_table(versus: pd.DataFrame, champion_version: str) -> Table:
    table = Table(title=f"Against the champion (v{champion_version}), same rows", title_justify="left")
    for header in ("group", "positives", "challenger", "champion", "p (fell)", "verdict"):
        table.add_column(
            header,
            justify="left" if header in ("group", "verdict") else "right",
            no_wrap=header == "group",
            overflow="fold",
        )
    for row in versus.to_dict(orient="records"):
        table.add_row(
            row["group"],
            f"{row['positives']:,}",
            _fmt(row["recall_at_k"], "{:.3f}"),
            _fmt(row["champion_recall_at_k"], "{:.3f}"),
            _fmt(row["fell_p"], "{:.2g}"),
            "[red]fell[/red]" if row["fell"] else "ok",
        )
    return table


def comparison_table(decision: PromotionDecision) -> Table:
    table = Table(title=f"Promotion on {decision.basis}", title_justify="left")
    headers = (
        "",
        "months",
        "recall@k",
        "precision@k",
        "median lead",
        "ECE",
        "ECE (shape)",
        "obs/pred by month",
    )
    for header in (*headers, "refused groups"):
        table.add_column(
            header, justify="left" if header in ("", "months", "refused groups") else "right", overflow="fold"
        )
    for row in decision.comparison().to_dict(orient="records"):
        table.add_row(
            row["who"],
            row["months"],
            _fmt(row["recall_at_k"], "{:.4f}"),
            _fmt(row["precision_at_k"], "{:.4f}"),
            _fmt(row["median_lead_time_months"], "{:.1f}"),
            _fmt(row["ece"], "{:.4f}"),
            _fmt(row["ece_after_level_shift"], "{:.4f}"),
            row["observed_over_predicted"],
            row["flagged_groups"],
        )
    return table
