"""What a person reads: ``report.html`` (the checks, then Evidently's drift and summary panels)
and ``summary.json`` (status, checks, actions) for machines."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import NotRequired, TypedDict

import pandas as pd
from evidently import DataDefinition, Report
from evidently import Dataset as EvidentlyDataset
from evidently.presets import DataDriftPreset, DataSummaryPreset

from .checks import Check, CheckJson

SUMMARY_VERSION = 1
STATUS_COLOURS = {"ok": "#2e7d32", "warning": "#ef6c00", "alert": "#c62828"}


def evidently_frames(
    reference_features: pd.DataFrame | None,
    current_features: pd.DataFrame | None,
    reference_scores: pd.DataFrame | None,
    current_scores: pd.DataFrame | None,
    columns: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The two frames Evidently renders: the chosen feature columns and, where known, the score."""
    sides = []
    for features, scores in ((reference_features, reference_scores), (current_features, current_scores)):
        parts = []
        if features is not None and columns:
            parts.append(
                features[["household_id", *columns]] if "household_id" in features else features[columns]
            )
        if scores is not None:
            scored = (
                scores[["household_id", "risk_score", "risk_band"]] if "household_id" in scores else scores
            )
            parts.append(scored)
        if not parts:
            return None
        frame = parts[0]
        for extra in parts[1:]:
            if "household_id" in frame and "household_id" in extra:
                frame = frame.merge(extra, on="household_id", how="outer")
            else:
                frame = pd.concat([frame.reset_index(drop=True), extra.reset_index(drop=True)], axis=1)
        sides.append(frame.drop(columns="household_id", errors="ignore"))
    reference, current = sides
    shared = [c for c in reference.columns if c in current.columns]
    # Evidently refuses a column that is empty on either side.
    usable = [c for c in shared if reference[c].notna().any() and current[c].notna().any()]
    return (reference[usable], current[usable]) if usable else None


def evidently_html(
    reference: pd.DataFrame, current: pd.DataFrame, target: Path, drift_threshold: float
) -> None:
    """Evidently's data-drift and data-summary presets on the chosen columns, saved as HTML."""
    categorical = [c for c in reference.columns if c == "risk_band"]
    numerical = [c for c in reference.columns if c not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    report = Report(
        [
            DataDriftPreset(method="wasserstein", threshold=drift_threshold, cat_method="psi"),
            DataSummaryPreset(),
        ]
    )
    snapshot = report.run(
        current_data=EvidentlyDataset.from_pandas(current, data_definition=definition),
        reference_data=EvidentlyDataset.from_pandas(reference, data_definition=definition),
    )
    snapshot.save_html(str(target))


class Summary(TypedDict):
    """The content of ``summary.json`` (version :data:`SUMMARY_VERSION`)."""

    summary_version: int
    status: str
    checks: list[CheckJson]
    actions: list[str]
    named_causes: list[str]
    reference: dict[str, object]
    current: dict[str, object]
    performance_by_month: list[dict[str, object]]
    notes: list[str]
    sampling: dict[str, object]
    seconds: NotRequired[dict[str, float]]
    stages: NotRequired[dict[str, dict[str, float]]]
    """Wall and CPU seconds of each stage (``StageTimes.rounded``)."""


def summary_document(
    status: str,
    checks: list[Check],
    sides: dict[str, dict[str, object]],
    performance: pd.DataFrame | None,
    notes: list[str],
    sampling: dict[str, object],
) -> Summary:
    """The content of ``summary.json``."""
    actions: list[str] = []
    for check in checks:
        if check.status != "ok" and check.action not in actions:
            actions.append(check.action)
    return {
        "summary_version": SUMMARY_VERSION,
        "status": status,
        "checks": [c.as_json() for c in checks],
        "actions": actions,
        "named_causes": [c.name for c in checks if c.status != "ok"],
        "reference": sides.get("reference", {}),
        "current": sides.get("current", {}),
        "performance_by_month": [] if performance is None else _records(performance),
        "notes": notes,
        "sampling": sampling,
    }


def finite(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return json.loads(frame.to_json(orient="records"))


def checks_section(summary: Summary) -> str:
    """The human part of the report: status, what to do, every check, performance by month."""
    status = str(summary["status"])
    rows = []
    for check in summary["checks"]:
        value = check["value"]
        shown = "n/a" if value is None else f"{value:.4g}"
        threshold = check["threshold"]
        colour = STATUS_COLOURS[check["status"]]
        rows.append(
            "<tr>"
            f"<td>{html.escape(check['group'])}</td><td><b>{html.escape(check['name'])}</b></td>"
            f"<td>{shown}</td><td>{threshold['warning']:.4g} / {threshold['alert']:.4g}</td>"
            f"<td style='color:{colour}'><b>{check['status']}</b></td>"
            f"<td>{html.escape(check['message'])}</td><td>{html.escape(check['action'])}</td></tr>"
        )
    actions = "".join(f"<li>{html.escape(a)}</li>" for a in summary["actions"]) or "<li>none</li>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary["notes"]) or "<li>none</li>"
    sampled = "".join(f"<li>{html.escape(line)}</li>" for line in sampling_lines(summary.get("sampling", {})))
    performance = summary["performance_by_month"]
    perf_html = ""
    if performance:
        header = "".join(f"<th>{html.escape(k)}</th>" for k in performance[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row.values()) + "</tr>" for row in performance
        )
        perf_html = (
            "<h3>Performance of past scores, by month</h3>"
            f"<table border=1 cellpadding=4><tr>{header}</tr>{body}</table>"
        )
    sides = "".join(
        f"<li><b>{name}</b>: {html.escape(str(side.get('label', '')))}</li>"
        for name, side in (("reference", summary["reference"]), ("current", summary["current"]))
    )
    return (
        "<section style='font-family:sans-serif;margin:16px'>"
        f"<h2>Relapse-risk monitoring: <span style='color:{STATUS_COLOURS[status]}'>"
        f"{status.upper()}</span></h2>"
        f"<ul>{sides}</ul><h3>What to do</h3><ul>{actions}</ul>"
        "<h3>Checks</h3><table border=1 cellpadding=4 style='border-collapse:collapse'>"
        "<tr><th>group</th><th>check</th><th>value</th><th>warning / alert</th><th>status</th>"
        f"<th>what it measured</th><th>action</th></tr>{''.join(rows)}</table>{perf_html}"
        f"<h3>Notes</h3><ul>{notes}</ul><h3>Sampling</h3><ul>{sampled or '<li>none</li>'}</ul>"
        "<p>Below: Evidently's drift and summary panels for the most drifted features and the risk score.</p>"
        "</section>"
    )


def sampling_lines(sampling: dict[str, object]) -> list[str]:
    """One plain sentence per side saying whether and how its households were sampled."""
    lines = []
    for side in ("reference", "current"):
        drawn = sampling.get(side)
        if not isinstance(drawn, dict) or not drawn:
            continue
        if not drawn.get("sampled"):
            lines.append(f"{side}: every household (or row) was used")
        elif drawn.get("unit") == "village":
            lines.append(
                f"{side}: drift and performance measured on {drawn['sampled_households']:,} of "
                f"{drawn['households']:,} households ({drawn['sampled_villages']:,} of {drawn['villages']:,} "
                f"whole villages, seed {drawn['seed']}); county checks on every row"
            )
        else:
            lines.append(
                f"{side}: {drawn['sampled_rows']:,} of {drawn['rows']:,} rows drawn without replacement "
                f"(seed {drawn['seed']})"
            )
    return lines


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def write_report(summary: Summary, evidently_file: Path | None, target: Path) -> None:
    """One HTML file: the checks section, followed by Evidently's report when there is one."""
    section = checks_section(summary)
    if evidently_file is not None and evidently_file.exists():
        page = evidently_file.read_text(encoding="utf-8")
        marker = page.find("<body>")
        if marker >= 0:
            cut = marker + len("<body>")
            target.write_text(page[:cut] + section + page[cut:], encoding="utf-8")
            return
    target.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>relapse monitor</title></head>"
        f"<body>{section}</body></html>",
        encoding="utf-8",
    )
