"""`relapse score` on the console: progress while it runs, one screen of summary at the end.

The command itself (relapse_risk/cli.py) only parses options; this module
resolves the model, runs :func:`serving.batch.job.score_folder` under a rich
progress bar, turns every "cannot run" fault into one clear message and an
exit code, and prints what came out. The progress bar is drawn on a terminal
only: in a cron or CI log it would appear once, complete, at the end, and the
timestamped stage lines the batch logs already say what it would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import Counter
from pathlib import Path

import pandas as pd
from relapse_risk.features.dataset import DatasetError
from relapse_risk.features.errors import ExitCode, RelapseRiskError
from relapse_risk.features.policy import PolicyError
from relapse_risk.features.stages import StageTimes
from relapse_risk.models.registry import ModelNotRegistered
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..config import resolve_tracking_uri
from ..registered_model import resolve_model
from ..scoring import STATUSES, ExplainScope, ResolvedModel
from .job import (
    BATCH_STAGES,
    STAGE_LABELS,
    BatchReport,
    score_folder,
)
from .outputs import (
    MANIFEST_JSON,
    REJECTS_CSV,
    SCORES_CSV,
    SCORES_PARQUET,
    VISIT_LISTS_DIR,
)
from .visit_lists import township_summaries

EXIT_OK = ExitCode.DONE
EXIT_CANNOT_RUN = ExitCode.CANNOT_RUN
EXIT_INTERRUPTED = ExitCode.INTERRUPTED

SCORE_ANOTHER_MODEL = "score with the {label}: --model {spec}"
TOWNSHIPS_SHOWN = 15
REASONS_SHOWN = 8

_log = logging.getLogger(__name__)


def stage_title(stage: str) -> str:
    """``load`` -> ``Load and validate``: the log's words for a stage, as a console heading."""
    label = STAGE_LABELS.get(stage, stage)
    return label[:1].upper() + label[1:]


class StageProgress:
    """A rich progress bar with one task per stage, fed by ``(stage, done, total)`` reports."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._progress.add_task(stage_title(stage), total=max(total, 1))
            self._tasks[stage] = task
        self._progress.update(task, completed=done if total else 1, total=max(total, 1))


def run_score_command(
    *,
    data: Path,
    as_of: dt.date,
    model_spec: str,
    out: Path,
    tracking_uri: str | None,
    explain: ExplainScope,
    horizon: int | None,
    console: Console,
    errors: Console,
) -> int:
    """Score ``data`` into ``out`` and print the summary; returns the process exit code."""
    try:
        uri = resolve_tracking_uri(tracking_uri, Path.cwd())
        with (
            StageTimes(_log).stage(f"load model {model_spec}"),
            console.status(f"Loading model {model_spec} from {uri} ..."),
        ):
            model = resolve_model(model_spec, uri)
        progress = (
            Progress(
                TextColumn("{task.description:<22}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            if console.is_terminal
            else None
        )
        with progress or contextlib.nullcontext():
            report = score_folder(
                data,
                as_of,
                model,
                out,
                explain=explain,
                horizon=horizon,
                progress=StageProgress(progress) if progress is not None else None,
            )
    except ModelNotRegistered as exc:
        # One line that says what to run; the model is looked up before anything is written.
        errors.print(exc.line(SCORE_ANOTHER_MODEL), highlight=False, markup=False)
        return EXIT_CANNOT_RUN
    except (DatasetError, PolicyError) as exc:
        errors.print(f"[bold red]Dataset cannot be used:[/bold red] {exc}", highlight=False)
        errors.print("Nothing was written.", highlight=False)
        return EXIT_CANNOT_RUN
    except RelapseRiskError as exc:  # ModelSpecError, OutputFolderError, a month outside the data
        errors.print(f"[bold red]Cannot score:[/bold red] {exc}", highlight=False)
        errors.print("Nothing was written.", highlight=False)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        errors.print(f"Interrupted: {out} is unchanged.", highlight=False)
        return EXIT_INTERRUPTED
    for part in summary_renderables(report, model):
        console.print(part)
    return EXIT_OK


def summary_renderables(report: BatchReport, model: ResolvedModel) -> list[RenderableType]:
    """Households by status, visit list per township, top reasons, timings and where the files are."""
    scores = report.scores
    manifest = report.manifest
    header = (
        f"[bold]{len(scores):,} households[/bold] scored at {manifest['as_of']} "
        f"(horizon {manifest['horizon_months']} months) by {model.name} v{model.version}"
    )
    return [
        Panel(header, expand=False),
        Group(_status_table(scores), _rejects_line(report)),
        _township_table(scores),
        _reasons_table(scores),
        _timings_table(report),
        _files_table(report.out),
    ]


def _status_table(scores: pd.DataFrame) -> Table:
    table = Table(title="Households by status", title_justify="left")
    table.add_column("status", no_wrap=True, overflow="fold")
    table.add_column("households", justify="right", overflow="fold")
    table.add_column("share", justify="right", overflow="fold")
    counts = scores["status"].value_counts()
    total = max(len(scores), 1)
    for status in STATUSES:
        count = int(counts.get(status, 0))
        table.add_row(status, f"{count:,}", f"{count / total:.1%}")
    return table


def _rejects_line(report: BatchReport) -> str:
    if not report.rejects:
        return "No input rows were rejected."
    return f"[yellow]{report.rejects:,} input rows were rejected[/yellow]: see {report.out / REJECTS_CSV}"


def _township_table(scores: pd.DataFrame) -> Table:
    summaries = township_summaries(scores)
    listed = summaries[summaries["visit_list"] > 0].sort_values(
        ["visit_list", "township_code"], ascending=[False, True], kind="stable"
    )
    table = Table(
        title=f"Visit list per township ({int(summaries['visit_list'].sum()):,} households)",
        title_justify="left",
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("county", "left"),
        ("township", "left"),
        ("households", "right"),
        ("scored", "right"),
        ("visit list", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=True, overflow="fold")
    for record in listed.head(TOWNSHIPS_SHOWN).to_dict("records"):
        table.add_row(
            str(record["county_code"]),
            str(record["township_code"]),
            f"{record['households']:,}",
            f"{record['scored']:,}",
            f"{record['visit_list']:,}",
        )
    hidden = len(listed) - TOWNSHIPS_SHOWN
    if hidden > 0:
        table.caption = f"... and {hidden} more townships with listed households (manifest.json has all)"
    return table


def top_reasons(scores: pd.DataFrame, limit: int = REASONS_SHOWN) -> list[tuple[str, int]]:
    """Reason codes by the number of visit-list households citing them in any slot; ties by code."""
    listed = scores[scores["in_visit_list"].fillna(False).astype(bool)]
    counts: Counter[str] = Counter()
    for record in listed[[f"reason_{slot}_code" for slot in (1, 2, 3)]].itertuples(index=False):
        counts.update({str(code) for code in record if isinstance(code, str)})
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]


def _reasons_table(scores: pd.DataFrame) -> Table:
    table = Table(title="Top reasons in the visit list", title_justify="left")
    table.add_column("reason", no_wrap=True, overflow="fold")
    table.add_column("households", justify="right", overflow="fold")
    for code, count in top_reasons(scores):
        table.add_row(code, f"{count:,}")
    return table


def _timings_table(report: BatchReport) -> Table:
    table = Table(title="Time per stage", title_justify="left")
    table.add_column("stage", no_wrap=True, overflow="fold")
    table.add_column("seconds", justify="right", overflow="fold")
    table.add_column("households/s", justify="right", overflow="fold")
    for stage in BATCH_STAGES:
        seconds = report.seconds.get(stage)
        if seconds is None:
            continue
        rows = report.explained if stage == "explain" else report.households
        rate = f"{rows / seconds:,.0f}" if seconds > 0 and rows else "-"
        table.add_row(stage_title(stage), f"{seconds:.2f}", rate)
    return table


def _files_table(out: Path) -> Group:
    # The folder goes on a line of its own, not into the title or each row: a title wraps at
    # the table's width and a row's path adds to it, so a deep run folder would be folded.
    table = Table(show_header=False)
    table.add_column("file", no_wrap=True, overflow="fold")
    table.add_column("what", overflow="fold")
    for name, what in (
        (SCORES_PARQUET, "scores table (one row per household)"),
        (SCORES_CSV, "the same, for spreadsheets (UTF-8 with BOM)"),
        (REJECTS_CSV, "rejected input rows"),
        (f"{VISIT_LISTS_DIR}/index.html", "printable visit lists per township (HTML and XLSX)"),
        (MANIFEST_JSON, "input fingerprint, model, counts, timings"),
    ):
        table.add_row(name, what)
    return Group(Text(f"Written to {out}", style="italic"), table)
