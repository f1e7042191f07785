"""The train, evaluate, promote and ui subcommands: parse nothing, print everything.

``relapse_risk/cli.py`` turns options into these calls; each returns its
:class:`~relapse_risk.features.errors.ExitCode`: done, refused (promotion
checks failed) or cannot run (bad data, too little history, no model). Only
expected failures (:class:`~relapse_risk.features.errors.RelapseRiskError`)
become a "Cannot ..." line here; anything else is a bug and reaches the CLI,
which prints its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from relapse_risk.features.contract import format_month
from relapse_risk.features.errors import ExitCode, RelapseRiskError
from rich.console import Console

from . import report
from .config import TrainingSettings, default_tracking_uri, resolve_tracking_uri

DONE, REFUSED, CANNOT_RUN = ExitCode.DONE, ExitCode.REFUSED, ExitCode.CANNOT_RUN


def _say(console: Console):  # noqa: ANN202 - a tiny closure factory
    return lambda message: console.print(f"[dim]{message}[/dim]", highlight=False)


def quiet_mlflow() -> None:
    """Keep MLflow's download bars and INFO chatter out of a command's console output.

    Set for this process only, and only where the user has not chosen otherwise.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def train_command(
    data: Path, settings: TrainingSettings, truth: Path | None, console: Console, errors: Console
) -> int:
    from .train import run_training

    quiet_mlflow()
    try:
        result = run_training(data, settings, truth, progress=_say(console))
    except RelapseRiskError as exc:
        errors.print(f"[bold red]Cannot train:[/bold red] {exc}", highlight=False)
        return CANNOT_RUN
    assessment = result.assessment
    console.print(
        report.metric_table(
            assessment, f"Test months of run {result.run_id} (trained only on earlier months)"
        )
    )
    console.print(report.ratio_line(assessment), highlight=False)
    console.print(report.measurement_line(assessment, settings.test_months), highlight=False)
    console.print(report.subgroup_table(assessment))
    console.print(
        f"Registered [bold]{result.model_name}[/bold] version {result.model_version} as challenger: "
        f"the backtest above measured the procedure (trained on "
        f"{', '.join(format_month(m) for m in result.split.train)}; best iteration {result.best_iteration}); "
        f"the registered model was refit with it on every labelled month, trained through "
        f"{format_month(result.trained_through)} ({result.seconds.get('total', 0):.0f} s). "
        "Next: `relapse promote`.",
        highlight=False,
    )
    return DONE


def evaluate_command(
    data: Path,
    settings: TrainingSettings,
    model: str,
    truth: Path | None,
    out: Path,
    console: Console,
    errors: Console,
) -> int:
    from .evaluate import evaluate_folder, write_report

    quiet_mlflow()
    try:
        evaluation = evaluate_folder(data, settings, model, truth, progress=_say(console))
    except RelapseRiskError as exc:
        errors.print(f"[bold red]Cannot evaluate:[/bold red] {exc}", highlight=False)
        return CANNOT_RUN
    written = write_report(evaluation, out)
    assessment = evaluation.assessment
    console.print(
        report.metric_table(assessment, f"{data}: {evaluation.model.name} v{evaluation.model.version or '?'}")
    )
    console.print(report.ratio_line(assessment), highlight=False)
    console.print(report.subgroup_table(assessment))
    if evaluation.months_learned:
        errors.print(
            f"[yellow]Note:[/yellow] the model (trained through {evaluation.model.trained_through}) learned "
            f"the outcomes of {', '.join(evaluation.months_learned)} from this data, so these figures "
            "flatter it; the training run's backtest is the honest measure of these months.",
            highlight=False,
        )
    console.print(f"Wrote {written}", highlight=False)
    return DONE


def promote_command(settings: TrainingSettings, data: Path | None, console: Console, errors: Console) -> int:
    from .promote import promote

    quiet_mlflow()
    try:
        decision = promote(settings, data, progress=_say(console))
    except RelapseRiskError as exc:
        errors.print(f"[bold red]Cannot promote:[/bold red] {exc}", highlight=False)
        return CANNOT_RUN
    console.print(report.comparison_table(decision))
    console.print(report.gate_table(decision.challenger.gate, "Fairness gate of the challenger's backtest"))
    if decision.versus_champion is not None and decision.champion is not None:
        console.print(report.champion_table(decision.versus_champion, decision.champion.version))
    if decision.promoted:
        console.print(
            f"[bold green]Promoted[/bold green] version {decision.challenger.version} to champion.",
            highlight=False,
        )
        return DONE
    errors.print(f"[bold red]Refused[/bold red] version {decision.challenger.version}:", highlight=False)
    for reason in decision.reasons:
        errors.print(f"  - {reason}", highlight=False)
    return REFUSED


def ui_command_line(settings: TrainingSettings, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` invocation for the configured store."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        resolve_tracking_uri(settings),
        "--host",
        host,
        "--port",
        str(port),
    ]


def ui_command(settings: TrainingSettings, host: str, port: int, console: Console, errors: Console) -> int:
    uri = resolve_tracking_uri(settings)
    if uri.startswith("http://") or uri.startswith("https://"):
        console.print(f"Runs are on a tracking server: open {uri} in a browser.", highlight=False)
        return DONE
    if uri == default_tracking_uri(settings.work_dir) and not settings.mlruns_dir.exists():
        errors.print(f"[yellow]No runs yet in {settings.mlruns_dir}; `relapse train` creates them.[/yellow]")
    console.print(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl-C stops it)", highlight=False)
    command = ui_command_line(settings, host, port)
    environment = dict(os.environ)
    # Browsing runs needs no background job workers; MLflow would otherwise start several
    # that outlive the UI when it is stopped with a signal.
    environment.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Become the UI process, so that Ctrl-C or a service manager's signal reaches the server
    # itself rather than a parent that would leave it running.
    os.execve(command[0], command, environment)
    return DONE  # not reached
