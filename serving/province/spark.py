"""Score a province on Apache Spark: the counties' files read by the executors, one task per county.

    relapse score --engine spark --data PROVINCE --as-of 2024-12 --out OUT [--spark-master URL]

The plan (docs/province.md):

1. The driver lists the province's counties and their files (names only,
   :func:`serving.province.layout.read_province`) and resolves the model once.
2. Spark's ``binaryFile`` source reads the files on the executors. Each row is
   one file's bytes with its county, table and name taken from its path; no row
   of a table is parsed by Spark, so what validates a county is the loader that
   validates it in `relapse score`, byte for byte.
3. ``groupBy(slot, county).applyInPandas`` hands each county's files to one
   Python task, which runs :func:`serving.province.county.score_county`: the
   batch job of `relapse score` writing ``OUT/<county>`` atomically. Counties are
   range-partitioned on their position in the sorted list, one per task, so no
   two land in one task by a hash collision.
4. The tasks return one summary row each; the driver writes
   ``OUT/province_summary.json`` last.

A task whose Python worker dies is retried by Spark (``spark.task.maxFailures``
on a cluster; a ``local[N]`` master is run as ``local[N,4]`` so that local runs
retry too). A retried county is scored again from its files and its folder
replaced whole: the output is the same bytes as a first attempt's.

pyspark is imported only inside the functions, so that the rest of the package
works without the ``spark`` extra.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .county import ERROR, FAILED, CountyJob, CountyOutcome, score_county
from .layout import Province, ShippedFile

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DEFAULT_MASTER = "local[*]"
LOCAL_TASK_ATTEMPTS = 4
"""Attempts per task on a local master, as ``spark.task.maxFailures`` defaults to on a cluster."""

OUTCOME_SCHEMA = (
    "county string, status string, reason string, households long, scored long, "
    "under_monitoring long, visit_list long, rejects long, seconds double, attempt int"
)

CountyTask = Callable[[CountyJob, str, list[ShippedFile], int], CountyOutcome]
"""What each task runs for its county: :func:`run_county` unless a test injects a fault."""

_LOCAL = re.compile(r"^local(\[(\*|\d+)\])?$")


def run_county(job: CountyJob, county: str, files: list[ShippedFile], attempt: int) -> CountyOutcome:
    return score_county(job, county, files, attempt=attempt)


def spark_master(option: str | None) -> str | None:
    """``--spark-master``, else ``SPARK_MASTER``, else None under spark-submit (it set the master), else
    ``local[*]``."""
    if option:
        return option
    if os.environ.get("SPARK_MASTER"):
        return os.environ["SPARK_MASTER"]
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # started by spark-submit, which passes --master itself
        return None
    return DEFAULT_MASTER


def with_task_retries(master: str) -> str:
    """``local[2]`` -> ``local[2,4]``: a local master retries a failed task only when told so."""
    match = _LOCAL.match(master)
    if match is None:
        return master
    threads = match.group(2) or "1"
    return f"local[{threads},{LOCAL_TASK_ATTEMPTS}]"


def spark_session(master: str | None, app_name: str = "relapse-province") -> SparkSession:
    """A Spark session for province jobs (the existing one when spark-submit started the process).

    On a local master the Python workers are this interpreter and Spark binds to
    127.0.0.1, unless ``PYSPARK_PYTHON`` or ``SPARK_LOCAL_IP`` say otherwise.
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        if master.startswith("local"):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(with_task_retries(master))
    session = (
        builder.config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.useLargeVarTypes", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def session_running() -> bool:
    """True when this process already has an active Spark session."""
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() is not None


@dataclass(frozen=True)
class ProvinceRun:
    """What the executors did: one outcome per county of the province, in county order."""

    outcomes: tuple[CountyOutcome, ...]
    seconds: float
    master: str
    notes: tuple[str, ...] = field(default_factory=tuple)


def run_counties(
    spark: SparkSession,
    province: Province,
    job: CountyJob,
    *,
    county_task: CountyTask = run_county,
) -> ProvinceRun:
    """Score every county of ``province`` on ``spark``; county folders are written by the tasks."""
    started = time.perf_counter()
    shipped = [f for f in province.files if f.table != "policy" or province.form == "county_folders"]
    results: dict[str, CountyOutcome] = {}
    if shipped:
        frame = county_files_frame(spark, province, [str(f.path) for f in shipped])
        results = {row["county"]: _outcome(row) for row in _score_groups(spark, frame, job, county_task)}
    outcomes = tuple(
        results.get(county)
        or CountyOutcome(county, FAILED, f"{job.county_source(county)}: holds no file of the data contract")
        for county in province.counties
    )
    remove_staging_leftovers(job.out)
    return ProvinceRun(
        outcomes=outcomes,
        seconds=round(time.perf_counter() - started, 3),
        master=str(spark.sparkContext.master),
    )


def county_files_frame(spark: SparkSession, province: Province, paths: list[str]) -> DataFrame:
    """One row per file: ``slot`` (the county's position), ``county``, ``table``, ``name``, ``content``.

    Read by Spark's ``binaryFile`` source on the executors; county, table and
    name come from the path as the province's form lays it out.
    """
    from pyspark.sql import functions as F

    files = spark.read.format("binaryFile").load(paths)
    segments = F.split(F.col("path"), "/")
    name = F.element_at(segments, -1)
    if province.form == "county_folders":
        county = F.element_at(segments, -2)
        table = F.substring_index(name, ".", 1)
    else:
        county = F.regexp_replace(F.element_at(segments, -2), r"^county_code=", "")
        table = F.element_at(segments, -3)
    # Spark names files by URI: a county folder called by anything but digits comes percent-encoded.
    decoded = {urllib.parse.quote(c, safe="/:=@,;+$!*'()~"): c for c in province.counties}
    slots = F.create_map(*[F.lit(v) for pair in enumerate(sorted(decoded)) for v in (pair[1], pair[0])])
    return files.select(
        slots[county].alias("slot"),
        county.alias("county"),
        table.alias("table"),
        name.alias("name"),
        F.col("content"),
    )


def _score_groups(
    spark: SparkSession, frame: DataFrame, job: CountyJob, county_task: CountyTask
) -> list[dict[str, Any]]:
    counties = max(frame.select("county").distinct().count(), 1)
    # One task per county: range partitions on the slot keep counties apart, and adaptive execution
    # would coalesce the small shuffle partitions back into a few tasks.
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    spark.conf.set("spark.sql.shuffle.partitions", str(counties))
    broadcast = spark.sparkContext.broadcast(job)

    def score_group(key: tuple[Any, ...], files: pd.DataFrame) -> pd.DataFrame:
        from pyspark import TaskContext

        context = TaskContext.get()
        attempt = context.attemptNumber() if context is not None else 0
        county = urllib.parse.unquote(str(key[1]))
        shipped = [
            ShippedFile(table=str(t), name=urllib.parse.unquote(str(n)), content=bytes(c))
            for t, n, c in zip(files["table"], files["name"], files["content"], strict=True)
        ]
        outcome = county_task(broadcast.value, county, shipped, attempt)
        row = outcome.record()
        row["county"] = str(key[1])
        return pd.DataFrame([row])

    grouped = frame.repartitionByRange(counties, "slot").groupBy("slot", "county")
    return [row.asDict() for row in grouped.applyInPandas(score_group, OUTCOME_SCHEMA).collect()]


def _outcome(row: dict[str, Any]) -> CountyOutcome:
    values = dict(row)
    values["county"] = urllib.parse.unquote(values["county"])
    values["reason"] = values["reason"] or ""
    return CountyOutcome(**values)


def remove_staging_leftovers(out: Path) -> None:
    """Staging folders of attempts that died before publishing (their retries published the county)."""
    if out.is_dir():
        for leftover in out.glob(".*.staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def failed_counties(outcomes: Iterator[CountyOutcome] | tuple[CountyOutcome, ...]) -> list[CountyOutcome]:
    return [o for o in outcomes if o.status in (FAILED, ERROR)]
