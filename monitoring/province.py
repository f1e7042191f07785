"""`relapse monitor --engine spark`: every county of a province monitored by its own Spark task.

    relapse monitor --engine spark --reference OUT_2024-09 --current OUT_2024-12 --out MON

``--reference`` and ``--current`` are province folders: the ``OUT`` of `relapse
score --engine spark` (one run folder per county) or a folder of county dataset
folders. Each county present on both sides is monitored by :func:`run_monitor`,
the function behind `relapse monitor`, into ``MON/<county>/`` (report.html,
summary.json); the counties' statuses and the checks that fired are gathered
into one province table, ``MON/province_monitor.json``, written last.

pyspark is imported inside the functions only.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from relapse_risk.features.errors import ExitCode, RelapseRiskError

from .monitor import MonitorOptions, run_monitor

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PROVINCE_MONITOR_JSON = "province_monitor.json"
FAILED = "failed"
OUTCOME_SCHEMA = "county string, status string, alerts string, warnings string, reason string, seconds double"


@dataclass(frozen=True)
class CountyMonitor:
    county: str
    status: str
    """ok, warning, alert, or failed (``reason`` says why)."""
    alerts: str = ""
    """Checks at alert, comma separated."""
    warnings: str = ""
    reason: str = ""
    seconds: float = 0.0


def province_counties(folder: Path) -> set[str]:
    return {c.name for c in folder.iterdir() if c.is_dir() and not c.name.startswith((".", "_"))}


def monitor_county(template: MonitorOptions, county: str) -> CountyMonitor:
    """Monitor one county with the options of the province, its sides and output under ``county``."""
    started = time.perf_counter()
    options = replace(
        template,
        reference=str(Path(template.reference) / county),
        current=str(Path(template.current) / county),
        out=template.out / county,
    )
    try:
        result = run_monitor(options)
    except RelapseRiskError as exc:
        return CountyMonitor(county, FAILED, reason=str(exc), seconds=round(time.perf_counter() - started, 3))
    except Exception as exc:  # noqa: BLE001 - one county's fault must not hide the others' results
        return CountyMonitor(
            county,
            FAILED,
            reason=f"unexpected error (a bug): {type(exc).__name__}: {exc}\n{traceback.format_exc()}",
            seconds=round(time.perf_counter() - started, 3),
        )
    return CountyMonitor(
        county,
        result.status,
        alerts=", ".join(c.name for c in result.checks if c.status == "alert"),
        warnings=", ".join(c.name for c in result.checks if c.status == "warning"),
        seconds=round(time.perf_counter() - started, 3),
    )


def monitor_province(spark: SparkSession, options: MonitorOptions) -> list[CountyMonitor]:
    """Monitor every county of ``options.current`` against ``options.reference`` on ``spark``."""
    reference, current = Path(options.reference), Path(options.current)
    for side in (reference, current):
        if not side.is_dir():
            raise RelapseRiskError(f"{side}: province folder does not exist")
    both = sorted(province_counties(reference) & province_counties(current))
    outcomes: dict[str, CountyMonitor] = {}
    if both:
        options.out.mkdir(parents=True, exist_ok=True)
        spark.conf.set("spark.sql.adaptive.enabled", "false")
        frame = spark.createDataFrame(pd.DataFrame({"slot": range(len(both)), "county": both}))
        template = spark.sparkContext.broadcast(options)

        def monitor_group(key: tuple[Any, ...], _: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame([asdict(monitor_county(template.value, str(key[1])))])

        grouped = frame.repartitionByRange(len(both), "slot").groupBy("slot", "county")
        for row in grouped.applyInPandas(monitor_group, OUTCOME_SCHEMA).collect():
            outcomes[row["county"]] = CountyMonitor(**row.asDict())
    for county in sorted(province_counties(reference) ^ province_counties(current)):
        missing = "reference" if county not in province_counties(reference) else "current"
        outcomes[county] = CountyMonitor(county, FAILED, reason=f"no {missing} folder for this county")
    return [outcomes[c] for c in sorted(outcomes)]


def write_province_monitor(outcomes: list[CountyMonitor], options: MonitorOptions) -> Path:
    """The province table, written last and whole (beside, then renamed)."""
    path = options.out / PROVINCE_MONITOR_JSON
    options.out.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    body = {
        "reference": str(options.reference),
        "current": str(options.current),
        "counties": [asdict(o) for o in outcomes],
        "statuses": {s: sum(o.status == s for o in outcomes) for s in ("ok", "warning", "alert", FAILED)},
    }
    staging.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def province_exit_code(outcomes: list[CountyMonitor]) -> ExitCode:
    """An alert anywhere is exit 3 (retrain or investigate); else failed counties are exit 6."""
    if any(o.status == "alert" for o in outcomes):
        return ExitCode.ALERT
    if any(o.status == FAILED for o in outcomes):
        return ExitCode.SOME_FAILED
    return ExitCode.DONE
