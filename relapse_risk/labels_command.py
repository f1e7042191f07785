"""`relapse labels`: the rules' labels of every household at one as-of month, written for audit.

The command in relapse_risk/cli.py parses options; this module loads the
folder, computes :func:`features.rules.labels_frame`, writes it (Parquet or
CSV by extension) and prints the counts an auditor checks first.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from relapse_risk.features.contract import format_month
from relapse_risk.features.dataset import DatasetError, load_dataset
from relapse_risk.features.errors import ExitCode
from relapse_risk.features.rules import RISK_TYPE_NAMES, label_defined, labels_frame

EXIT_OK = ExitCode.DONE
EXIT_CANNOT_RUN = ExitCode.CANNOT_RUN
LABEL_FILE_SUFFIXES = (".parquet", ".csv")


def run_labels_command(
    data: Path, as_of: dt.date, horizon: int, out: Path, console: Console, errors: Console
) -> int:
    """Load ``data``, write the labels frame at ``as_of`` to ``out``, print counts; the exit code."""
    if out.suffix.lower() not in LABEL_FILE_SUFFIXES:
        errors.print(f"[bold red]Cannot write labels:[/bold red] {out}: write FILE.parquet or FILE.csv")
        return EXIT_CANNOT_RUN
    try:
        with console.status(f"Loading {data} ..."):
            dataset = load_dataset(data)
    except DatasetError as exc:
        errors.print(f"[bold red]Dataset cannot be used:[/bold red] {exc}", highlight=False)
        return EXIT_CANNOT_RUN
    policy = dataset.policy
    if not policy.data_start <= as_of <= policy.data_end:
        errors.print(
            f"[bold red]--as-of {format_month(as_of)} is outside the data[/bold red] "
            f"({format_month(policy.data_start)} .. {format_month(policy.data_end)} "
            f"in {data / 'policy.json'})",
            highlight=False,
        )
        return EXIT_CANNOT_RUN
    if not label_defined(policy, as_of, horizon):
        errors.print(
            f"[yellow]{format_month(as_of)} + {horizon} months runs past data_end "
            f"{format_month(policy.data_end)}: the label column is empty; "
            "eligibility and margins are written.[/yellow]",
            highlight=False,
        )
    with console.status(f"Applying the rules up to {format_month(policy.data_end)} ..."):
        frame = labels_frame(dataset, as_of, horizon)
    write_labels(frame, out)
    console.print(label_counts_table(frame, as_of, horizon))
    console.print(f"Wrote {len(frame):,} households to {out}", highlight=False)
    if dataset.total_rejects:
        errors.print(
            f"[yellow]{dataset.total_rejects:,} rejected row(s) were left out; "
            f"run `relapse validate {data}` for the report.[/yellow]",
            highlight=False,
        )
    return EXIT_OK


def write_labels(frame: pd.DataFrame, path: Path) -> None:
    """A labels frame as Parquet (as_of a date32 month) or CSV (UTF-8 with BOM, as_of ``YYYY-MM``,
    booleans ``true``/``false`` as the data contract writes them), chosen by the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        position = table.schema.get_field_index("as_of")
        table = table.set_column(position, "as_of", pc.cast(table["as_of"], pa.date32()))
        pq.write_table(table, path)
    elif suffix == ".csv":
        text = frame.assign(as_of=frame["as_of"].dt.strftime("%Y-%m"))
        for column in text.select_dtypes(include="bool").columns:
            text[column] = np.where(text[column], "true", "false")
        text.to_csv(path, index=False, encoding="utf-8-sig")
    else:
        raise ValueError(f"{path}: write .parquet or .csv, not {suffix or 'no suffix'}")


def label_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Households, eligible, under monitoring, triggered now (and by rule), positives (and by first rule)."""
    counts = {
        "households": len(frame),
        "eligible": int(frame["eligible"].sum()),
        "under_monitoring": int(frame["under_monitoring"].sum()),
        "triggered_now": int(frame["triggered_now"].sum()),
        "label_defined": int(frame["label"].notna().sum()),
        "positives": int(frame["label"].fillna(0).sum()),
    }
    for rule in RISK_TYPE_NAMES:
        counts[f"triggered_now.{rule}"] = int((frame["triggered_rule"] == rule).sum())
    for rule in RISK_TYPE_NAMES:
        counts[f"positives.{rule}"] = int((frame["first_rule"] == rule).sum())
    return counts


def label_counts_table(frame: pd.DataFrame, as_of: dt.date, horizon: int) -> Table:
    counts = label_counts(frame)
    eligible = counts["eligible"]
    table = Table(title=f"Rules at {format_month(as_of)}, horizon {horizon} months", title_justify="left")
    table.add_column("", overflow="fold")
    table.add_column("households", justify="right", overflow="fold")
    table.add_column("share", justify="right", overflow="fold")

    def row(label: str, count: int, of: int) -> None:
        table.add_row(label, f"{count:,}", f"{count / of:.1%}" if of else "-")

    row("all households", counts["households"], counts["households"])
    row("under monitoring", counts["under_monitoring"], counts["households"])
    row("a rule fires now", counts["triggered_now"], counts["households"])
    for rule in RISK_TYPE_NAMES:
        row(f"  {rule}", counts[f"triggered_now.{rule}"], counts["households"])
    row("eligible (ranked and labelled)", eligible, counts["households"])
    if counts["label_defined"]:
        row(f"label 1: a rule fires within {horizon} months", counts["positives"], eligible)
        for rule in RISK_TYPE_NAMES:
            row(f"  first {rule}", counts[f"positives.{rule}"], eligible)
    else:
        table.add_row("label", "undefined", "-")
    return table
