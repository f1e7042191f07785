"""`relapse score --engine spark` on the console: the model, the Spark job, the province table."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from relapse_risk.features.errors import ExitCode, RelapseRiskError
from relapse_risk.features.stages import StageTimes
from relapse_risk.models.registry import ModelNotRegistered
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..batch.command import SCORE_ANOTHER_MODEL
from ..config import resolve_tracking_uri
from ..registered_model import resolve_model
from ..scoring import ExplainScope
from .county import OK, CountyOutcome
from .job import SUMMARY_JSON, check_province_output, score_province
from .layout import read_province
from .spark import session_running, spark_master, spark_session

STATUS_STYLE = {"ok": "green", "failed": "bold red", "error": "bold red"}

_log = logging.getLogger(__name__)


def run_province_score_command(
    *,
    data: Path,
    as_of: dt.date,
    model_spec: str,
    out: Path,
    tracking_uri: str | None,
    explain: ExplainScope,
    horizon: int | None,
    master: str | None,
    console: Console,
    errors: Console,
) -> int:
    """Score every county of ``data`` on Spark into ``out``; print the province table; the exit code."""
    try:
        check_province_output(out)
        read_province(data)  # a folder of neither form stops here, before Spark or the model is loaded
        uri = resolve_tracking_uri(tracking_uri, Path.cwd())
        with StageTimes(_log).stage(f"load model {model_spec}"):
            model = resolve_model(model_spec, uri)
        resolved_master = spark_master(master)
        with StageTimes(_log).stage(f"score province on spark ({resolved_master or 'spark-submit'})"):
            owned = not session_running()
            spark = spark_session(resolved_master)
            try:
                report = score_province(spark, data, as_of, model, out, explain=explain, horizon=horizon)
            finally:
                if owned:  # a session the caller started (a notebook, spark-submit's) stays up
                    spark.stop()
    except ModelNotRegistered as exc:
        errors.print(exc.line(SCORE_ANOTHER_MODEL), highlight=False, markup=False)
        return ExitCode.CANNOT_RUN
    except RelapseRiskError as exc:
        errors.print(f"[bold red]Cannot score the province:[/bold red] {escape(str(exc))}", highlight=False)
        errors.print("Nothing was written.", highlight=False)
        return ExitCode.CANNOT_RUN
    except KeyboardInterrupt:
        errors.print(
            f"Interrupted: every county folder in {out} is whole (old or new); "
            f"{SUMMARY_JSON} is not updated.",
            highlight=False,
        )
        return ExitCode.INTERRUPTED
    console.print(province_table(report.outcomes, title=f"Province {data} at {as_of:%Y-%m}"))
    failed = [o for o in report.outcomes if o.status != OK]
    if failed:
        errors.print(
            f"[bold red]{len(failed)} of {len(report.outcomes)} counties failed[/bold red]; "
            f"the others were written to {out}",
            highlight=False,
        )
    console.print(f"Summary: {out / SUMMARY_JSON} ({report.run.seconds:.0f} s on {report.run.master})")
    return int(report.exit_code)


def province_table(outcomes: tuple[CountyOutcome, ...], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for heading in ("county", "households", "scored", "under monitoring", "visit list", "rejects"):
        table.add_column(heading, justify="left" if heading == "county" else "right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for o in outcomes:
        style = STATUS_STYLE.get(o.status, "")
        table.add_row(
            o.county,
            f"{o.households:,}",
            f"{o.scored:,}",
            f"{o.under_monitoring:,}",
            f"{o.visit_list:,}",
            f"{o.rejects:,}",
            f"[{style}]{o.status}[/{style}]" if style else o.status,
            escape(o.reason),
        )
    ok = [o for o in outcomes if o.status == OK]
    table.add_section()
    table.add_row(
        f"{len(ok)} of {len(outcomes)} ok",
        *(f"{sum(getattr(o, name) for o in ok):,}" for name in COUNT_NAMES),
        "",
        "",
    )
    return table


COUNT_NAMES = ("households", "scored", "under_monitoring", "visit_list", "rejects")
