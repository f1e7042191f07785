"""`relapse score --engine spark` on local[2]: each county's run folder equals `relapse score` on it alone.

Small generated counties (400 households x 36 months) in both province forms:
county folders (one of them with a CSV table and a rejected row, one unusable)
and tables partitioned Hive-style by county_code (one table split into two parts).
One Spark session serves the module; it takes about ten seconds to start.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import small_model
from relapse_risk.features.contract import TABLES
from relapse_risk.features.errors import ExitCode
from relapse_risk.serving.batch.job import score_folder
from relapse_risk.serving.province.county import CountyJob, CountyOutcome, score_county
from relapse_risk.serving.province.job import SUMMARY_JSON, score_province
from relapse_risk.serving.province.layout import ShippedFile
from relapse_risk.serving.scoring import ResolvedModel
from typer.testing import CliRunner

AS_OF = dt.date(2023, 12, 1)
COUNTIES = ("510101", "510102", "510103")
BROKEN = "510199"
CSV_COUNTY = "510103"
SPLIT_COUNTY = "510102"
TIMING_KEYS = ("written_at", "timings_seconds")

pytestmark = pytest.mark.slow  # a Spark session, three generated counties and a small model: minutes


@pytest.fixture(scope="module")
def spark():
    from relapse_risk.serving.province.spark import spark_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = spark_session("local[2]", app_name="relapse-tests")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from relapse_risk.generator.config import CountyConfig
    from relapse_risk.generator.run import generate

    root = tmp_path_factory.mktemp("originals")
    for seed, code in enumerate(COUNTIES, start=1):
        generate(CountyConfig(households=400, months=36, seed=seed, county_code=code), root / code)
    return root


@pytest.fixture(scope="module")
def county_folders(originals: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The counties as folders; one exported as CSV with a broken row, and one unusable folder."""
    root = tmp_path_factory.mktemp("province-folders")
    for code in COUNTIES:
        shutil.copytree(originals / code, root / code)
    members = root / CSV_COUNTY / "members.parquet"
    frame = pd.read_parquet(members)
    frame.loc[3, "sex"] = "x"
    frame.to_csv(members.with_suffix(".csv"), index=False)
    members.unlink()
    broken = root / BROKEN
    broken.mkdir()
    shutil.copy(originals / COUNTIES[0] / "policy.json", broken / "policy.json")
    (broken / "households.parquet").write_bytes(b"not a parquet file")
    return root


@pytest.fixture(scope="module")
def partitioned(originals: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset folder: policy.json and <table>/county_code=<code>/part-*.parquet, as Hive writes it."""
    root = tmp_path_factory.mktemp("province-partitioned")
    shutil.copy(originals / COUNTIES[0] / "policy.json", root / "policy.json")
    for code in COUNTIES:
        for table in TABLES:
            data = pq.read_table(originals / code / f"{table.name}.parquet")
            if "county_code" in data.column_names:
                data = data.drop_columns(["county_code"])  # the partition key lives in the path
            folder = root / table.name / f"county_code={code}"
            folder.mkdir(parents=True)
            if code == SPLIT_COUNTY and table.name == "income":
                half = data.num_rows // 2
                pq.write_table(data.slice(0, half), folder / "part-00000.parquet")
                pq.write_table(data.slice(half), folder / "part-00001.parquet")
            elif data.num_rows:
                pq.write_table(data, folder / "part-00000.parquet")
    return root


@pytest.fixture(scope="module")
def model(originals: Path) -> ResolvedModel:
    """A small model trained on one county: enough to rank, not a real evaluation."""
    return small_model(originals / COUNTIES[0], max_rounds=30, early_stopping_rounds=10)


@pytest.fixture(scope="module")
def alone(county_folders: Path, originals: Path, model: ResolvedModel, tmp_path_factory) -> dict[str, Path]:
    """`relapse score`'s batch job on each county alone: the folder form's counties, and the original
    of the CSV county (the partitioned form holds its Parquet)."""
    root = tmp_path_factory.mktemp("alone")
    runs = {code: score_folder(county_folders / code, AS_OF, model, root / code).out for code in COUNTIES}
    runs["original"] = score_folder(originals / CSV_COUNTY, AS_OF, model, root / "original").out
    return runs


@pytest.fixture(scope="module")
def folders_run(spark, county_folders: Path, model: ResolvedModel, tmp_path_factory):
    return score_province(spark, county_folders, AS_OF, model, tmp_path_factory.mktemp("out") / "province")


def files_of(folder: Path) -> dict[str, bytes]:
    """Each file's bytes (workbooks included: they carry no save time)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def manifest_without(folder: Path, *keys: str, input_keys: tuple[str, ...] = ()) -> dict[str, object]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for key in keys:
        manifest.pop(key)
    for key in input_keys:
        manifest["input"].pop(key)
    return manifest


def assert_same_run(spark_run: Path, alone_run: Path, *, input_keys: tuple[str, ...] = ()) -> None:
    written, expected = files_of(spark_run), files_of(alone_run)
    assert sorted(written) == sorted(expected)
    differing = [name for name in expected if name != "manifest.json" and written[name] != expected[name]]
    assert differing == []
    assert manifest_without(spark_run, *TIMING_KEYS, input_keys=input_keys) == manifest_without(
        alone_run, *TIMING_KEYS, input_keys=input_keys
    )


def test_each_county_folder_equals_the_county_scored_alone(folders_run, alone):
    for code in COUNTIES:
        assert_same_run(folders_run.out / code, alone[code])
    csv_rejects = pd.read_csv(folders_run.out / CSV_COUNTY / "rejects.csv", encoding="utf-8-sig")
    assert (csv_rejects["table"] == "members").any()  # the broken row is there, as alone


def test_an_unusable_county_is_failed_with_its_reason_and_the_others_are_written(folders_run):
    by_county = {o.county: o for o in folders_run.outcomes}
    assert sorted(by_county) == sorted((*COUNTIES, BROKEN))
    assert by_county[BROKEN].status == "failed"
    assert "households.parquet" in by_county[BROKEN].reason or "missing" in by_county[BROKEN].reason
    assert not (folders_run.out / BROKEN).exists()
    assert all(by_county[code].status == "ok" for code in COUNTIES)
    assert folders_run.exit_code == ExitCode.SOME_FAILED


def test_the_summary_counts_agree_with_each_county_manifest(folders_run):
    summary = json.loads((folders_run.out / SUMMARY_JSON).read_text(encoding="utf-8"))
    rows = {row["county"]: row for row in summary["counties"]}
    for code in COUNTIES:
        manifest = json.loads((folders_run.out / code / "manifest.json").read_text(encoding="utf-8"))
        scores = pd.read_parquet(folders_run.out / code / "scores.parquet")
        assert rows[code]["households"] == manifest["input"]["households"] == len(scores)
        assert rows[code]["rejects"] == manifest["input"]["rejects"]
        assert rows[code]["scored"] == manifest["counts_by_status"]["scored"]
        assert rows[code]["under_monitoring"] == manifest["counts_by_status"]["under_monitoring"]
        assert rows[code]["visit_list"] == int(scores["in_visit_list"].sum())
    assert rows[BROKEN]["status"] == "failed" and rows[BROKEN]["reason"]
    assert summary["totals"]["failed"] == 1
    assert summary["totals"]["households"] == sum(rows[c]["households"] for c in COUNTIES)
    assert not list(folders_run.out.glob(".*"))  # no staging leftovers


def test_partitioned_tables_give_the_counties_of_their_folders(spark, partitioned, alone, model, tmp_path):
    report = score_province(spark, partitioned, AS_OF, model, tmp_path / "out")
    assert [o.status for o in report.outcomes] == ["ok"] * len(COUNTIES)
    assert report.exit_code == ExitCode.DONE
    for code in COUNTIES:
        reference = alone["original"] if code == CSV_COUNTY else alone[code]
        # The input is the county's partitions, not a folder: its name and print are its own.
        assert_same_run(tmp_path / "out" / code, reference, input_keys=("folder", "fingerprint"))
    manifest = json.loads((tmp_path / "out" / COUNTIES[0] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["input"]["folder"] == str(partitioned / f"county_code={COUNTIES[0]}")


KILLED_COUNTY = COUNTIES[1]


def kill_the_first_attempt(
    job: CountyJob, county: str, files: list[ShippedFile], attempt: int
) -> CountyOutcome:
    """Halfway into scoring, the Python worker of the first attempt dies as an OOM kill would end it."""
    if county == KILLED_COUNTY and attempt == 0:

        def loader_then_die(path: Path):
            from relapse_risk.features.dataset import load_dataset

            load_dataset(path)
            os._exit(137)

        from relapse_risk.serving.province.layout import materialize_county

        folder = materialize_county(job.form, county, files, Path(job.out) / f".{county}.staging-killed")
        loader_then_die(folder)
    return score_county(job, county, files, attempt=attempt)


def test_a_worker_killed_in_the_first_attempt_is_retried_and_the_output_is_complete(
    spark, county_folders, alone, model, tmp_path
):
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        report = score_province(
            spark, county_folders, AS_OF, model, tmp_path / "out", county_task=kill_the_first_attempt
        )
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    by_county = {o.county: o for o in report.outcomes}
    assert by_county[KILLED_COUNTY].status == "ok"
    assert by_county[KILLED_COUNTY].attempt == 1
    for code in COUNTIES:
        assert_same_run(tmp_path / "out" / code, alone[code])
    assert not list((tmp_path / "out").glob(".*"))  # the dead attempt's staging is cleaned up


def test_the_command_prints_the_province_and_exits_6_when_a_county_failed(
    spark, county_folders, model, tmp_path, monkeypatch
):
    from relapse_risk.serving.province import command

    from relapse_risk.cli import app

    monkeypatch.setattr(command, "resolve_model", lambda spec, uri: model)
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--engine",
            "spark",
            "--data",
            str(county_folders),
            "--as-of",
            "2023-12",
            "--out",
            str(tmp_path / "out"),
            "--spark-master",
            "local[2]",
        ],
    )
    assert result.exit_code == ExitCode.SOME_FAILED, result.output
    assert BROKEN in result.output and "failed" in result.output
    assert "1 of 4 counties failed" in " ".join(result.output.split())
    assert spark.sparkContext._jsc is not None  # the test's session is still up


def test_a_folder_of_neither_form_is_refused_before_spark_runs(tmp_path):
    from relapse_risk.serving.province.layout import ProvinceError, read_province

    (tmp_path / "empty").mkdir()
    with pytest.raises(ProvinceError, match="neither county dataset folders"):
        read_province(tmp_path / "empty")


def test_with_task_retries_makes_local_masters_retry():
    from relapse_risk.serving.province.spark import with_task_retries

    assert with_task_retries("local[2]") == "local[2,4]"
    assert with_task_retries("local[*]") == "local[*,4]"
    assert with_task_retries("local") == "local[1,4]"
    assert with_task_retries("spark://host:7077") == "spark://host:7077"


def test_a_households_table_without_its_partition_column_gets_it_back(tmp_path):
    from relapse_risk.serving.province.layout import materialize_county

    table = pa.table({"household_id": ["h1", "h2"], "township_code": ["510101100", "510101100"]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    shipped = [ShippedFile(table="households", name="part-0.parquet", content=sink.getvalue().to_pybytes())]
    folder = materialize_county("partitioned", "510101", shipped, tmp_path / "c", policy=b"{}")
    written = pq.read_table(folder / "households.parquet")
    assert written.column_names == ["household_id", "county_code", "township_code"]
    assert written["county_code"].to_pylist() == ["510101", "510101"]


def test_monitoring_a_province_gathers_each_county_into_one_table(spark, folders_run, tmp_path):
    from relapse_risk.monitoring.monitor import MonitorOptions
    from relapse_risk.monitoring.province import (
        PROVINCE_MONITOR_JSON,
        monitor_province,
        province_exit_code,
        write_province_monitor,
    )

    current = tmp_path / "current"
    shutil.copytree(folders_run.out, current)
    shutil.rmtree(current / COUNTIES[2])
    options = MonitorOptions(
        reference=str(folders_run.out),
        current=str(current),
        out=tmp_path / "monitor",
        model="none",
        log_to_mlflow=False,
        evidently=False,
    )
    outcomes = monitor_province(spark, options)
    write_province_monitor(outcomes, options)
    by_county = {o.county: o for o in outcomes}
    assert sorted(by_county) == sorted(COUNTIES)
    for code in COUNTIES[:2]:
        assert by_county[code].status in ("ok", "warning"), by_county[code]
        written = json.loads((tmp_path / "monitor" / code / "summary.json").read_text(encoding="utf-8"))
        assert written["status"] == by_county[code].status
    assert by_county[COUNTIES[2]].status == "failed"
    assert "no current folder" in by_county[COUNTIES[2]].reason
    table = json.loads((tmp_path / "monitor" / PROVINCE_MONITOR_JSON).read_text(encoding="utf-8"))
    assert table["statuses"]["failed"] == 1
    assert province_exit_code(outcomes) == ExitCode.SOME_FAILED


def test_the_monitor_command_on_spark_prints_the_province_table(spark, folders_run, tmp_path):
    from relapse_risk.cli import app

    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "--engine",
            "spark",
            "--reference",
            str(folders_run.out),
            "--current",
            str(folders_run.out),
            "--out",
            str(tmp_path / "monitor"),
            "--model",
            "none",
            "--no-mlflow",
            "--spark-master",
            "local[2]",
        ],
    )
    assert result.exit_code in (ExitCode.DONE, ExitCode.ALERT), result.output
    table = json.loads((tmp_path / "monitor" / "province_monitor.json").read_text(encoding="utf-8"))
    assert [row["county"] for row in table["counties"]] == list(COUNTIES)
    assert all((tmp_path / "monitor" / code / "report.html").is_file() for code in COUNTIES)
    assert all(code in result.output for code in COUNTIES)
