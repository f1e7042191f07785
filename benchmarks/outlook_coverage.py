"""How often the outlook's 90 % interval holds what the rules later showed, across counties.

    .venv/bin/python benchmarks/outlook_coverage.py --work /tmp/outlook-coverage     # generates and trains
    .venv/bin/python benchmarks/outlook_coverage.py --store default=/tmp/r48/mlflow.db --store ...

For each county of :data:`COUNTIES` (profiles, seeds, history lengths and
shocks of the generator) the benchmark generates the folder and trains it with
``relapse train`` unless ``--work`` already holds them, or reads the training
runs of ``--store NAME=mlflow.db`` given instead. Each training run logs its
backtest's ranking of the test months (``backtest_ranking.parquet``): the
calibrated score and the rules' label of every eligible household at each
matured quarter-end, which is what the outlook of a run at that quarter-end
would have summed and what the county then saw.

Per county, test month and township it builds the interval exactly as
``relapse outlook`` does (:func:`relapse_risk.models.expected_counts.expected_count`),
with the relative count error measured on the model's *other* test months
(leave one month out, so no month judges an interval built from itself), and
prints the share of observed counts inside, for the county, the townships and
the change between consecutive quarter-ends, at several widening factors.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from relapse_risk.models.expected_counts import (
    DRIFT_WIDENING,
    count_change,
    expected_count,
    ranking_count_error,
)
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class County:
    name: str
    generate: tuple[str, ...]
    """Options of ``relapse generate`` after --out."""


COUNTIES = (
    County("hill_seed0_48m", ("--households", "20000", "--months", "48", "--seed", "0", "--no-truth")),
    County(
        "mountain_lockdown_seed7",
        (
            "--households",
            "20000",
            "--months",
            "48",
            "--seed",
            "7",
            "--profile",
            "mountain_agri",
            "--lockdown",
            "2023-07:2023-12",
            "--no-truth",
        ),
    ),  # fmt: skip
    County(
        "plains_disaster_seed21",
        (
            "--households",
            "20000",
            "--months",
            "48",
            "--seed",
            "21",
            "--profile",
            "plains_wage",
            "--disaster-year",
            "2023",
            "--no-truth",
        ),
    ),  # fmt: skip
    County(
        "plains_seed3_36m",
        ("--households", "20000", "--months", "36", "--seed", "3", "--profile", "plains_wage", "--no-truth"),
    ),
    County(
        "mountain_seed13_48m",
        (
            "--households",
            "20000",
            "--months",
            "48",
            "--seed",
            "13",
            "--profile",
            "mountain_agri",
            "--no-truth",
        ),
    ),
    County("hill_seed5_30m", ("--households", "10000", "--months", "30", "--seed", "5", "--no-truth")),
)
WIDENINGS = (1.0, 1.25, DRIFT_WIDENING, 2.0)


def relapse(*args: str) -> None:
    command = [str(Path(sys.executable).with_name("relapse")), *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def trained_store(work: Path, county: County) -> Path:
    """Generate and train ``county`` under ``work`` unless done before; the tracking database."""
    folder, store = work / county.name, work / f"{county.name}-mlruns"
    if not (folder / "policy.json").exists():
        relapse("generate", "--out", str(folder), *county.generate)
    database = store / "mlflow.db"
    if not latest_ranking(database):
        store.mkdir(parents=True, exist_ok=True)
        relapse("train", "--data", str(folder), "--tracking-uri", f"sqlite:///{database}")
    return database


def latest_ranking(database: Path) -> Path | None:
    """The newest ``backtest_ranking.parquet`` of the local artifact store beside ``database``."""
    found = sorted((database.parent / "artifacts").glob("*/artifacts/backtest_ranking.parquet"))
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def intervals(name: str, ranking: pd.DataFrame, widening: float, leave_one_out: bool = True) -> pd.DataFrame:
    """One row per county month, township month and consecutive-month change: observed, low, high.

    ``leave_one_out`` False builds every month's interval from the error of all test months, as
    ``relapse outlook`` does for a run scored by that model (in-sample for these months)."""
    rows = []
    months = sorted(ranking["as_of"].unique())
    everything = ranking_count_error(ranking)
    errors = {
        m: ranking_count_error(ranking[ranking["as_of"] != m]) if leave_one_out else everything
        for m in months
    }
    counts = {}
    for month in months:
        at_month = ranking[ranking["as_of"] == month]
        count = expected_count(at_month["risk_score"].to_numpy(np.float64), errors[month], widening)
        counts[month] = (count, int(at_month["label"].sum()))
        rows.append((name, "county", month, count_rows(count, at_month)))
        for code, township in at_month.groupby("township_code"):
            township_count = expected_count(
                township["risk_score"].to_numpy(np.float64), errors[month], widening
            )
            rows.append((name, "township", month, count_rows(township_count, township, str(code))))
    for before, after in zip(months, months[1:], strict=False):
        change = count_change(counts[before][0], counts[after][0])
        observed = counts[after][1] - counts[before][1]
        rows.append((name, "change", after, (observed, change.low, change.high, change.change, "")))
    return pd.DataFrame(
        [(c, level, pd.Timestamp(m).strftime("%Y-%m"), *values) for c, level, m, values in rows],
        columns=["county", "level", "as_of", "observed", "low", "high", "expected", "area"],
    )


def count_rows(count: object, rows: pd.DataFrame, area: str = "") -> tuple[int, float, float, float, str]:
    assert hasattr(count, "low")
    return (int(rows["label"].sum()), count.low, count.high, count.expected, area)  # type: ignore[attr-defined]


def coverage(frame: pd.DataFrame, level: str) -> str:
    rows = frame[frame["level"] == level]
    inside = (rows["observed"] >= rows["low"]) & (rows["observed"] <= rows["high"])
    return f"{inside.mean():.1%} of {len(rows)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/outlook-coverage"))
    parser.add_argument(
        "--store", action="append", default=[], help="NAME=path/to/mlflow.db of a trained county"
    )
    args = parser.parse_args()
    stores = dict(item.split("=", 1) for item in args.store)
    databases = (
        {name: Path(path) for name, path in stores.items()}
        if stores
        else {county.name: trained_store(args.work, county) for county in COUNTIES}
    )
    rankings = {}
    for name, database in databases.items():
        path = latest_ranking(database)
        if path is None:
            raise SystemExit(f"{database}: no training run with backtest_ranking.parquet beside it")
        rankings[name] = pd.read_parquet(path, columns=["as_of", "township_code", "label", "risk_score"])

    console = Console()
    details = pd.concat([intervals(name, ranking, DRIFT_WIDENING) for name, ranking in rankings.items()])
    details["inside"] = (details["observed"] >= details["low"]) & (details["observed"] <= details["high"])
    county_rows = details[details["level"] == "county"]
    table = Table(title=f"County quarter-ends, widening {DRIFT_WIDENING}")
    for column in ("county", "as_of", "observed", "expected", "90 % interval", "inside"):
        table.add_column(column)
    for row in county_rows.itertuples():
        table.add_row(
            row.county,
            row.as_of,
            f"{row.observed}",
            f"{row.expected:,.0f}",
            f"[{row.low:,.0f}, {row.high:,.0f}]",
            "yes" if row.inside else "NO",
        )
    console.print(table)

    summary = Table(title="Coverage of the 90 % interval (leave one test month out)")
    columns = ("county months", "townships", "changes", "county, in-sample", "median half-width")
    for column in ("widening", *columns):
        summary.add_column(column, justify="right")
    for widening in WIDENINGS:
        frame = pd.concat([intervals(name, ranking, widening) for name, ranking in rankings.items()])
        in_sample = pd.concat(
            [intervals(name, ranking, widening, leave_one_out=False) for name, ranking in rankings.items()]
        )
        county = frame[frame["level"] == "county"]
        half = ((county["high"] - county["low"]) / 2 / county["expected"]).median()
        summary.add_row(
            f"{widening:g}",
            *(coverage(frame, level) for level in ("county", "township", "change")),
            coverage(in_sample, "county"),
            f"{half:.0%} of expected",
        )
    console.print(summary)


if __name__ == "__main__":
    main()
