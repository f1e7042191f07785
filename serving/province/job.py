"""`relapse score --engine spark`: a province into one run folder per county, and the summary last.

``OUT`` receives ``OUT/<county>/`` for every county that could be scored (each
the run folder `relapse score` writes for that county alone, written
atomically by its Spark task) and then ``OUT/province_summary.json``: per
county households, scored, under monitoring, visit list, rejects and the status
``ok`` / ``failed`` with its reason. The summary is written after every county
task has finished, atomically, so a reader that finds it finds every county it
lists.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from relapse_risk.features.contract import format_month
from relapse_risk.features.errors import ExitCode
from relapse_risk.features.loading import POLICY_FILE

from relapse_risk import __version__ as package_version

from ..batch.outputs import MANIFEST_JSON, check_output_folder
from ..scoring import ExplainScope, ResolvedModel
from .county import ERROR, FAILED, OK, CountyJob, CountyOutcome
from .layout import Province, read_province
from .spark import CountyTask, ProvinceRun, run_counties, run_county

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SUMMARY_JSON = "province_summary.json"
COUNT_FIELDS = ("households", "scored", "under_monitoring", "visit_list", "rejects")


@dataclass(frozen=True)
class ProvinceReport:
    out: Path
    province: Province
    run: ProvinceRun
    summary: dict[str, object]

    @property
    def outcomes(self) -> tuple[CountyOutcome, ...]:
        return self.run.outcomes

    @property
    def exit_code(self) -> ExitCode:
        return province_exit_code(self.outcomes)


def province_exit_code(outcomes: tuple[CountyOutcome, ...]) -> ExitCode:
    """A bug in any county is exit 4 as everywhere; counties that cannot be used are exit 6."""
    if any(o.status == ERROR for o in outcomes):
        return ExitCode.UNEXPECTED
    if any(o.status == FAILED for o in outcomes):
        return ExitCode.SOME_FAILED
    return ExitCode.DONE


def check_province_output(out: Path) -> None:
    """``OUT`` may be new, empty, or an earlier province run (it has the summary); nothing else."""
    check_output_folder(out, SUMMARY_JSON, "province run")


def score_province(
    spark: SparkSession,
    data: Path,
    as_of: dt.date,
    model: ResolvedModel,
    out: Path,
    *,
    explain: ExplainScope = "visit_list",
    horizon: int | None = None,
    county_task: CountyTask = run_county,
) -> ProvinceReport:
    """Score every county of the province ``data`` on ``spark`` into ``out``; the summary last.

    Raises :class:`serving.province.layout.ProvinceError` or ``OutputFolderError``
    before anything is written. A county that cannot be used does not raise: it
    is ``failed`` in the summary.
    """
    out = out.absolute()
    check_province_output(out)
    province = read_province(data)
    out.mkdir(parents=True, exist_ok=True)
    job = CountyJob(
        form=province.form,
        root=province.root,
        out=out,
        as_of=as_of,
        model=model,
        explain=explain,
        horizon=horizon,
        policy=(province.root / POLICY_FILE).read_bytes() if province.form == "partitioned" else None,
        schemas=province.schemas or None,
    )
    run = run_counties(spark, province, job, county_task=county_task)
    summary = province_summary(province, run, as_of, model)
    write_summary(summary, out / SUMMARY_JSON)
    return ProvinceReport(out=out, province=province, run=run, summary=summary)


def province_summary(
    province: Province, run: ProvinceRun, as_of: dt.date, model: ResolvedModel
) -> dict[str, object]:
    ok = [o for o in run.outcomes if o.status == OK]
    return {
        "package_version": package_version,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input": {"folder": str(province.root), "form": province.form},
        "as_of": format_month(as_of),
        "model": {"name": model.name, "version": model.version, "uri": model.uri},
        "engine": {"name": "spark", "master": run.master, "seconds": run.seconds},
        "counties": [o.record() for o in run.outcomes],
        "totals": {
            "counties": len(run.outcomes),
            "ok": len(ok),
            "failed": len(run.outcomes) - len(ok),
            **{name: sum(int(getattr(o, name)) for o in ok) for name in COUNT_FIELDS},
        },
        "run_folders": {o.county: f"{o.county}/{MANIFEST_JSON}" for o in ok},
    }


def write_summary(summary: dict[str, object], path: Path) -> None:
    """Write beside, then rename: the summary appears whole or not at all."""
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as sink:
            sink.write(json.dumps(summary, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
