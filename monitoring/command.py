"""The console side of ``relapse monitor``: run, print the checks, return the exit code."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.exceptions import MlflowException
from pydantic import ValidationError
from relapse_risk.features.errors import RelapseRiskError
from relapse_risk.models.registry import ModelNotRegistered
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .config import MonitorThresholds
from .inputs import MonitorInputError
from .monitor import FAILED, MONITOR_ANOTHER_MODEL, MonitorOptions, MonitorResult, run_monitor
from .report import sampling_lines

STATUS_STYLE = {"ok": "green", "warning": "yellow", "alert": "bold red"}


def read_thresholds(path: Path | None) -> MonitorThresholds:
    """The defaults, overridden by the fields of a JSON file (same names as MonitorThresholds)."""
    if path is None:
        return MonitorThresholds()
    try:
        return MonitorThresholds.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise MonitorInputError(f"{path}: thresholds cannot be read: {exc}") from None


def monitor_command(options: MonitorOptions, console: Console, errors: Console) -> int:
    """0 for ok and warning, 3 for alert, 2 when monitoring could not run (``ExitCode``)."""
    try:
        with console.status("Monitoring ...") as status:
            result = run_monitor(options, progress=lambda text: status.update(f"Monitoring: {text} ..."))
    except ModelNotRegistered as exc:
        errors.print(exc.line(MONITOR_ANOTHER_MODEL), highlight=False, markup=False)
        return FAILED
    # A file that cannot be read or a tracking server that does not answer is the setting's fault,
    # not a bug: both say so in one line like the expected failures.
    except (RelapseRiskError, OSError, MlflowException) as exc:
        errors.print(f"[bold red]Monitoring could not run:[/bold red] {escape(str(exc))}", highlight=False)
        return FAILED
    console.print(checks_table(result))
    for action in result.summary["actions"]:
        console.print(f"→ {escape(str(action))}", highlight=False)
    for note in result.summary["notes"]:
        console.print(f"[dim]{escape(str(note))}[/dim]", highlight=False)
    for line in sampling_lines(result.summary["sampling"]):
        console.print(f"[dim]{escape(line)}[/dim]", highlight=False)
    style = STATUS_STYLE[result.status]
    logged = f"; MLflow run {result.mlflow_run_id}" if result.mlflow_run_id else ""
    console.print(
        f"Status [{style}]{result.status}[/{style}]: {result.out / 'report.html'}, "
        f"{result.out / 'summary.json'}{logged} ({result.seconds.get('total', 0):.0f} s)",
        highlight=False,
    )
    return result.exit_code


def checks_table(result: MonitorResult) -> Table:
    table = Table(show_lines=True)
    for heading in ("group", "check", "value", "warning / alert", "status"):
        table.add_column(heading, no_wrap=True, overflow="fold")
    table.add_column("what it measured", overflow="fold")
    for check in result.checks:
        style = STATUS_STYLE[check.status]
        value = "n/a" if check.value is None else f"{check.value:.4g}"
        table.add_row(
            check.group,
            check.name,
            value,
            f"{check.threshold['warning']:.4g} / {check.threshold['alert']:.4g}",
            f"[{style}]{check.status}[/{style}]",
            escape(check.message),
        )
    return table
