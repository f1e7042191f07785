"""Console tables (rich) for the train, evaluate and promote commands."""

from __future__ import annotations

import math

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
    """Per-month and averaged rules.md metrics, one block of rows per method."""
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


def subgroup_table(assessment: Assessment, recall_ratio: float, min_positives: int) -> Table:
    table = Table(
        title=(
            f"Subgroups (model's county-wide visit lists, pooled over {len(assessment.months)} months; "
            f"flag: recall < {recall_ratio}x overall, judged with >= {min_positives} positives)"
        ),
        title_justify="left",
    )
    for header in ("group", "rows", "positives", "recall@k", "baseline recall@k", "FPR", "x overall", "flag"):
        table.add_column(header, justify="left" if header in ("group", "flag") else "right", overflow="fold")
    for row in assessment.subgroups.to_dict(orient="records"):
        flag = "[red]FLAGGED[/red]" if row["flagged"] else ("" if row["judged"] else "[dim]too few[/dim]")
        table.add_row(
            row["group"],
            f"{row['rows']:,}",
            f"{row['positives']:,}",
            _fmt(row["recall_at_k"], "{:.3f}"),
            _fmt(row["baseline_recall_at_k"], "{:.3f}"),
            _fmt(row["false_positive_rate"], "{:.4f}"),
            _fmt(row["recall_ratio"], "{:.2f}"),
            flag,
        )
    return table


def comparison_table(decision: PromotionDecision) -> Table:
    table = Table(title=f"Promotion on {decision.basis}", title_justify="left")
    for header in ("", "recall@k", "precision@k", "median lead", "ECE", "flagged groups"):
        table.add_column(
            header, justify="left" if header in ("", "flagged groups") else "right", overflow="fold"
        )
    for row in decision.comparison().to_dict(orient="records"):
        table.add_row(
            row["who"],
            _fmt(row["recall_at_k"], "{:.4f}"),
            _fmt(row["precision_at_k"], "{:.4f}"),
            _fmt(row["median_lead_time_months"], "{:.1f}"),
            _fmt(row["ece"], "{:.4f}"),
            row["flagged_groups"],
        )
    return table
