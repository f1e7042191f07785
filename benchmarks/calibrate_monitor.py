"""Where the thresholds of monitoring/config.py come from: no-drift pairs and the five scenarios.

    .venv/bin/python benchmarks/calibrate_monitor.py                 # 10 pairs, 2,000 households x 36 months
    .venv/bin/python benchmarks/calibrate_monitor.py --pairs 20 --households 3000
    .venv/bin/python benchmarks/calibrate_monitor.py --households 6000 --max-rows 2000   # sampled drift

Generates ``--pairs`` pairs of counties with no drift (reference seed 1000+i,
current seed 2000+i, same profile and policy, no truth) and one current county
per scenario (seed 3000), runs every check of ``relapse monitor`` with a small model trained
on its own county (seed 4000; ``--no-model`` leaves prediction drift out), and prints: per
check, the largest no-drift value and each scenario's value; then the false-alarm count of
the current defaults (warnings and alerts among the no-drift pairs) and each scenario's status.
``--max-rows`` below ``--households`` measures the checks as a large county gets them: feature
drift, prediction drift and performance on a seeded sample of whole villages.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import duckdb
import numpy as np
from relapse_risk.generator.config import CountyConfig, LineJump, Scenario, parse_window
from relapse_risk.generator.run import generate
from relapse_risk.monitoring.config import MonitorThresholds
from relapse_risk.monitoring.monitor import MonitorOptions, MonitorResult, run_monitor
from rich.console import Console
from rich.table import Table

MONTHS = 36  # 2021-01 .. 2023-12


def scenarios() -> dict[str, Scenario]:
    """The generator's scenarios, each ending in the current side's as-of year (data end 2023-12)."""
    return {
        "lockdown": Scenario(lockdown=parse_window("2023-10:2023-12")),
        "line_jump": Scenario(line_jump=LineJump(year=2023, share=0.2)),
        "other_county": Scenario(profile="mountain_agri"),
        "outage": Scenario(outage=parse_window("2023-04:2023-12"), outage_share=0.4),
    }


def income_in_ten_thousands(source: Path, target: Path) -> None:
    """A copy of ``source`` whose income amounts arrive in units of 10,000 yuan (a pipeline bug)."""
    shutil.copytree(source, target)
    income = target / "income.parquet"
    original = source / "income.parquet"
    duckdb.execute(
        f"COPY (SELECT * REPLACE (amount / 10000 AS amount) FROM read_parquet('{original}')) "
        f"TO '{income}' (FORMAT parquet)"
    )


def quick_model(root: Path, households: int) -> Path:
    """A small risk model trained on its own county (seed 4000), saved as a model folder.

    Trained directly (not through the training job) so the measurement needs no MLflow store;
    the last labelled quarter-end validates and calibrates, the earlier ones train.
    """
    folder = root / "model"
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.training_table import build_training_table
    from relapse_risk.models.model import RiskModel

    data = county(root, "model-county", households, 4000)
    table = build_training_table(load_dataset(data))
    last = table["as_of"].max()
    train, valid = table[table["as_of"] < last], table[table["as_of"] == last]
    features = list(FEATURE_NAMES)
    model = RiskModel(
        max_rounds=200, early_stopping_rounds=30, seed=7, categorical_features=CATEGORICAL_FEATURES
    )
    model.fit(train, train["label"], valid, valid["label"], feature_names=features)
    model.save(folder)
    return folder


def county(root: Path, name: str, households: int, seed: int, scenario: Scenario | None = None) -> Path:
    folder = root / name
    if not folder.exists():
        config = CountyConfig(
            households=households, months=MONTHS, seed=seed, scenario=scenario or Scenario()
        )
        generate(config, folder, truth=None)
    return folder


def measure(
    root: Path, pairs: int, households: int, model: str, thresholds: MonitorThresholds
) -> tuple[dict[str, list[float]], dict[str, dict]]:
    def monitor(reference: Path, current: Path, out: Path) -> MonitorResult:
        options = MonitorOptions(
            str(reference),
            str(current),
            out,
            model=model,
            log_to_mlflow=False,
            evidently=False,
            thresholds=thresholds,
        )
        return run_monitor(options)

    quiet: dict[str, list[float]] = {}
    quiet_status: list[str] = []
    for i in range(pairs):
        reference = county(root, f"ref-{i}", households, 1000 + i)
        current = county(root, f"cur-{i}", households, 2000 + i)
        result = monitor(reference, current, root / f"out-{i}")
        quiet_status.append(result.status)
        for check in result.checks:
            quiet.setdefault(check.name, []).append(np.nan if check.value is None else check.value)
    base = county(root, "scenario-base", households, 3000)
    currents = {
        name: county(root, f"scenario-{name}", households, 3000, s) for name, s in scenarios().items()
    }
    unit_bug = root / "scenario-income_unit"
    if not unit_bug.exists():
        income_in_ten_thousands(base, unit_bug)
    currents["income_unit"] = unit_bug
    reference = county(root, "ref-0", households, 1000)
    found: dict[str, dict] = {}
    for name, folder in currents.items():
        result = monitor(reference, folder, root / f"out-{name}")
        found[name] = {
            "status": result.status,
            "named": [c.name for c in result.checks if c.status != "ok"],
            "values": {c.name: c.value for c in result.checks},
        }
    quiet["__status__"] = quiet_status  # type: ignore[assignment]
    return quiet, found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--households", type=int, default=2000)
    parser.add_argument("--no-model", action="store_true", help="Skip prediction drift and performance.")
    parser.add_argument(
        "--max-rows", type=int, default=None, help="max_rows_per_side (default: the configured one)."
    )
    parser.add_argument("--keep", default="", help="Folder to keep the counties in (default: temporary).")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="calibrate-monitor-"))
    root.mkdir(parents=True, exist_ok=True)
    model = "none" if args.no_model else str(quick_model(root, args.households))
    thresholds = (
        MonitorThresholds() if args.max_rows is None else MonitorThresholds(max_rows_per_side=args.max_rows)
    )
    quiet, found = measure(root, args.pairs, args.households, model, thresholds)
    statuses = quiet.pop("__status__")
    console = Console(width=200)
    table = Table(
        title=f"{args.pairs} no-drift pairs vs scenarios ({args.households:,} households x {MONTHS} months, "
        f"drift on at most {thresholds.max_rows_per_side:,} households per side)"
    )
    table.add_column("check")
    table.add_column("no drift: median")
    table.add_column("no drift: max |value|")
    for name in found:
        table.add_column(name)
    for check, values in quiet.items():
        array = np.asarray(values, dtype=np.float64)
        if np.isnan(array).all():
            continue  # not measurable without the model's test metrics (a model folder has none)
        cells = [f"{found[s]['values'].get(check) or 0:.3g}" for s in found]
        table.add_row(check, f"{np.nanmedian(array):.3g}", f"{np.nanmax(np.abs(array)):.3g}", *cells)
    console.print(table)
    console.print(
        f"False alarms of the defaults over {len(statuses)} no-drift pairs: "
        f"{statuses.count('warning')} warning(s), {statuses.count('alert')} alert(s)"
    )
    for name, result in found.items():
        console.print(f"{name}: {result['status']} ({', '.join(result['named']) or 'nothing named'})")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
