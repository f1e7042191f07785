"""`relapse demo`: a generated county, checked, and the two reference rankings a model must sit between.

Steps: generate the default county into ``OUT/county`` with its truth file
beside it (``OUT/county.truth.parquet``), load and validate it like
``relapse validate``, then at the last four quarter-ends whose labels are
known evaluate the rule baseline (margin to the line) and the oracle (p_true)
with the headline metrics of docs/rules-and-labels.md, per month and on average, and write
them to ``OUT/reference_metrics.csv``.

The generator is passed in as a function (relapse_risk/cli.py supplies it), so
nothing outside the command line imports it. A folder generated earlier with
the same settings is reused, so ``make demo`` can be run again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from relapse_risk.features.contract import format_month
from relapse_risk.features.dataset import Dataset, load_dataset
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.features.rules import labels_for_months
from relapse_risk.features.stages import StageTimes
from relapse_risk.features.training_table import quarter_ends
from relapse_risk.features.validation import (
    default_report_dir,
    summary_renderables,
    validation_summary,
    write_validation_report,
)
from relapse_risk.models.baseline import oracle_scores, read_truth, rule_baseline_scores, truth_months
from relapse_risk.models.metrics import BASELINE, ORACLE, average_over_months, evaluate

GenerateCounty = Callable[[Path, Path], None]
"""Writes a county dataset folder (first argument) and its truth file (second)."""

DEMO_HORIZON = 6
DEMO_MONTHS = 4
COUNTY_FOLDER = "county"
TRUTH_FILE = "county.truth.parquet"
SETTINGS_FILE = "demo-settings.json"
METRICS_FILE = "reference_metrics.csv"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    truth: Path
    per_month: pd.DataFrame
    """:func:`models.metrics.evaluate` rows for each as-of month and method."""
    mean: pd.DataFrame
    """:func:`models.metrics.average_over_months` of ``per_month``."""
    metrics_file: Path


class DemoFolderError(RelapseRiskError, ValueError):
    """The output folder holds a different demo; the message says what to do."""


def run_demo(
    out: Path,
    settings: dict[str, int],
    generate_county: GenerateCounty,
    console: Console,
    horizon: int = DEMO_HORIZON,
    months: int = DEMO_MONTHS,
) -> DemoResult:
    """Generate (or reuse) the county in ``out``, validate it, and print and write the reference metrics.

    ``settings`` (e.g. households and seed) identify the generated county: a
    county already in ``out`` is reused only when they match.
    """
    folder, truth_path = out / COUNTY_FOLDER, out / TRUTH_FILE
    stages = StageTimes(_log)
    if _reusable(out, settings):
        console.print(f"Reusing the county in {folder} (same settings; delete {out} to generate it again).")
    else:
        if folder.exists():
            raise DemoFolderError(
                f"{folder} holds a county generated with other settings (or an interrupted run); "
                f"choose another --out or delete {out}"
            )
        out.mkdir(parents=True, exist_ok=True)
        with stages.stage("generate the county"), console.status(f"Generating the county into {folder} ..."):
            generate_county(folder, truth_path)
        (out / SETTINGS_FILE).write_text(json.dumps(settings, sort_keys=True) + "\n", encoding="utf-8")
        console.print(f"Generated {folder} and {truth_path}", highlight=False)

    with stages.stage("load and validate"), console.status(f"Loading and validating {folder} ..."):
        dataset = load_dataset(folder)
        summary = validation_summary(dataset)
        written = write_validation_report(dataset, summary, default_report_dir(folder))
    for part in summary_renderables(summary, written):
        console.print(part)

    as_of_months = quarter_ends(dataset.policy, horizon)[-months:]
    if not as_of_months:
        raise ValueError(f"{folder}: the data are too short for any labelled quarter-end")
    with stages.stage("rules and reference rankings"), console.status("Applying the rules and ranking ..."):
        per_month = reference_metrics(dataset, read_truth(truth_path), as_of_months, horizon, console)
    mean = average_over_months(per_month)

    console.print(counts_table(per_month, dataset.policy.visit_share, horizon))
    console.print(metrics_table(per_month, mean))
    console.print(gap_sentence(mean))
    metrics_file = out / METRICS_FILE
    _write_metrics(per_month, mean, metrics_file)
    console.print(f"Metrics written to {metrics_file}", highlight=False)
    return DemoResult(
        folder=folder, truth=truth_path, per_month=per_month, mean=mean, metrics_file=metrics_file
    )


def reference_metrics(
    dataset: Dataset, truth: pd.DataFrame, as_of_months: list[dt.date], horizon: int, console: Console
) -> pd.DataFrame:
    """Rule baseline and oracle metrics at each as-of month (oracle left out, with a warning,
    at months the truth does not cover)."""
    labels = labels_for_months(dataset, as_of_months, horizon)
    covered = set(truth_months(truth))
    rows = []
    for month in as_of_months:
        scores = {BASELINE: rule_baseline_scores(labels, month)}
        if month in covered:
            scores[ORACLE] = oracle_scores(truth, month)
        else:
            console.print(
                f"[yellow]The truth file has no p_true at {format_month(month)}: no oracle there.[/yellow]"
            )
        rows.append(evaluate(month, labels, scores, visit_share=dataset.policy.visit_share))
    return pd.concat(rows, ignore_index=True)


def counts_table(per_month: pd.DataFrame, visit_share: float, horizon: int) -> Table:
    """Eligible households, positives and k per as-of month (the same for every method)."""
    table = Table(
        title=(
            f"Eligible households; label 1 = a rule fires within {horizon} months; "
            f"k = ceil({visit_share:g} x eligible)"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for heading in ("as of", "eligible", "label 1", "share", "k (visits)"):
        table.add_column(
            heading, justify="left" if heading == "as of" else "right", no_wrap=True, overflow="fold"
        )
    for _, row in per_month.drop_duplicates("as_of").iterrows():
        table.add_row(
            f"{row['as_of']:%Y-%m}",
            f"{row['eligible']:,}",
            f"{row['positives']:,}",
            f"{row['positives'] / row['eligible']:.1%}" if row["eligible"] else "-",
            f"{row['k']:,}",
        )
    return table


def metrics_table(per_month: pd.DataFrame, mean: pd.DataFrame) -> Table:
    """recall@k, precision@k, median lead time, AUC, AP and ECE per month and method, then the means."""
    table = Table(title="Reference rankings", title_justify="left", box=box.SIMPLE_HEAD)
    for heading in ("as of", "method", "recall@k", "precision@k", "lead", "AUC", "AP", "ECE"):
        table.add_column(
            heading,
            justify="left" if heading in ("as of", "method") else "right",
            no_wrap=True,
            overflow="fold",
        )
    for _, row in per_month.iterrows():
        table.add_row(
            f"{row['as_of']:%Y-%m}", _METHOD_LABELS.get(row["method"], row["method"]), *_metric_cells(row)
        )
    table.add_section()
    for _, row in mean.iterrows():
        table.add_row(
            f"mean ({row['months']})",
            _METHOD_LABELS.get(row["method"], row["method"]),
            *_metric_cells(row),
            style="bold",
        )
    table.caption = (
        "lead: median months from the as-of month to the first firing, label-1 households in the top k"
    )
    return table


_METHOD_LABELS = {BASELINE: "baseline", ORACLE: "oracle"}


def gap_sentence(mean: pd.DataFrame) -> str:
    """One line on how far the rule baseline is from the oracle, the room a model has."""
    by_method = mean.set_index("method")
    if BASELINE not in by_method.index or ORACLE not in by_method.index:
        return "No oracle to compare with: the gap a model must close is unknown."
    baseline, oracle = by_method.loc[BASELINE, "recall_at_k"], by_method.loc[ORACLE, "recall_at_k"]
    if not oracle > 0:
        return "The oracle finds no positives in the top k: too few positives to compare."
    return (
        f"The rule baseline finds {baseline:.1%} of the households whose rule will fire, the oracle "
        f"{oracle:.1%}: the baseline reaches {baseline / oracle:.0%} of the limit. A model is worth "
        f"deploying where it beats {baseline:.1%}; {oracle:.1%} is the best any model can do on this county."
    )


def _metric_cells(row: pd.Series) -> list[str]:
    def share(value: float) -> str:
        return "-" if pd.isna(value) else f"{value:.1%}"

    def number(value: float, digits: int) -> str:
        return "-" if pd.isna(value) else f"{value:.{digits}f}"

    return [
        share(row["recall_at_k"]),
        share(row["precision_at_k"]),
        number(row["median_lead_time_months"], 1),
        number(row["roc_auc"], 3),
        number(row["average_precision"], 3),
        number(row["ece"], 3),
    ]


def _reusable(out: Path, settings: dict[str, int]) -> bool:
    settings_file = out / SETTINGS_FILE
    if not (
        settings_file.is_file()
        and (out / COUNTY_FOLDER / "policy.json").is_file()
        and (out / TRUTH_FILE).is_file()
    ):
        return False
    try:
        return json.loads(settings_file.read_text(encoding="utf-8")) == settings
    except json.JSONDecodeError:
        return False


def _write_metrics(per_month: pd.DataFrame, mean: pd.DataFrame, path: Path) -> None:
    per_month_rows = per_month.assign(as_of=per_month["as_of"].dt.strftime("%Y-%m"))
    mean_rows = mean.drop(columns="months").assign(as_of="mean")
    pd.concat([per_month_rows, mean_rows], ignore_index=True).to_csv(path, index=False)
