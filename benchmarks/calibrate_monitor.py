"""Where the thresholds of monitoring/config.py come from: no-drift pairs and the named scenarios.

    .venv/bin/python benchmarks/calibrate_monitor.py                 # 10 pairs, 2,000 households x 36 months
    .venv/bin/python benchmarks/calibrate_monitor.py --pairs 20 --households 3000
    .venv/bin/python benchmarks/calibrate_monitor.py --households 6000 --max-rows 2000   # sampled drift
    .venv/bin/python benchmarks/calibrate_monitor.py --households 20000 --keep /tmp/cal  # early warning

Generates ``--pairs`` pairs of counties with no drift (reference seed 1000+i,
current seed 2000+i, same profile and policy, no truth) and one current county
per scenario (seed 3000), each compared with the same county without the scenario (seed 3000,
no scenario); runs every check of ``relapse monitor`` with a small model trained
on its own county (seed 4000; ``--no-model`` leaves prediction drift out), and prints: per
check, the no-drift median, largest value and standard deviation and each scenario's value;
then the false alarms of the current defaults (warnings and alerts among the no-drift pairs,
and which checks raised them), each scenario's status and the early warning's message.
``--keep`` keeps the counties (and reuses them) and writes every value to calibration.json.
``--max-rows`` below ``--households`` measures the checks as a large county gets them: feature
drift, prediction drift and performance on a seeded sample of whole villages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import duckdb
import numpy as np
from relapse_risk.generator.config import CountyConfig, CropPrice, LineJump, Scenario, parse_window
from relapse_risk.generator.run import generate
from relapse_risk.monitoring.config import MonitorThresholds
from relapse_risk.monitoring.monitor import MonitorOptions, MonitorResult, run_monitor
from rich.console import Console
from rich.table import Table

MONTHS = 36  # 2021-01 .. 2023-12


def scenarios() -> dict[str, Scenario]:
    """The generator's scenarios, each ending in the current side's as-of year (data end 2023-12).

    Shocks vary in kind and size, so that levels fitted to one of them are seen to fail on
    another: lockdowns keeping 75 %, 40 % and 20 % of migrants home (the last two months also
    for six months), a disaster year and a crop-price collapse.
    """
    return {
        "lockdown": Scenario(lockdown=parse_window("2023-10:2023-12")),
        "lockdown_40": Scenario(lockdown=parse_window("2023-10:2023-12"), lockdown_depth=0.4),
        "lockdown_20": Scenario(lockdown=parse_window("2023-10:2023-12"), lockdown_depth=0.2),
        "lockdown_20_6m": Scenario(lockdown=parse_window("2023-07:2023-12"), lockdown_depth=0.2),
        "disaster_year": Scenario(disaster_year=2023),
        "crop_price_50": Scenario(crop_price=CropPrice(window=parse_window("2023-01:2023-12"), factor=0.5)),
        "crop_price_20": Scenario(crop_price=CropPrice(window=parse_window("2023-01:2023-12"), factor=0.2)),
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


def values_of(result: MonitorResult) -> dict[str, float | None]:
    """Every check's value, and the early warning's interval and households crossing now."""
    values: dict[str, float | None] = {c.name: c.value for c in result.checks}
    for check in result.checks:
        if check.name == "expected_crossings" and check.details:
            low, _ = check.details["interval_90"]  # type: ignore[misc]
            values["expected_crossings: 90 % low"] = low
            now = check.details.get("crossing_now")
            if isinstance(now, dict) and now.get("reference"):
                values["crossing now (ratio)"] = now["current"] / now["reference"]
    return values


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
        quiet_status += [f"{c.name}={c.status}" for c in result.checks if c.status != "ok"]
        for name, value in values_of(result).items():
            quiet.setdefault(name, []).append(np.nan if value is None else value)
    base = county(root, "scenario-base", households, 3000)
    currents = {
        name: county(root, f"scenario-{name}", households, 3000, s) for name, s in scenarios().items()
    }
    unit_bug = root / "scenario-income_unit"
    if not unit_bug.exists():
        income_in_ten_thousands(base, unit_bug)
    currents["income_unit"] = unit_bug
    # Each scenario against the same county without it (same seed): a real county is compared with
    # its own past, never with another county, so the county-to-county spread the no-drift pairs
    # show is not part of what a scenario moves.
    reference = base
    found: dict[str, dict] = {}
    for name, folder in currents.items():
        result = monitor(reference, folder, root / f"out-{name}")
        found[name] = {
            "status": result.status,
            "named": [f"{c.name} {c.status}" for c in result.checks if c.status != "ok"],
            "early_warning": [c.message for c in result.checks if c.name == "expected_crossings"],
            "values": values_of(result),
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
    table.add_column("no drift: sd")
    for name in found:
        table.add_column(name)
    for check, values in quiet.items():
        array = np.asarray(values, dtype=np.float64)
        if np.isnan(array).all():
            continue  # not measurable without the model's test metrics (a model folder has none)
        cells = [f"{found[s]['values'].get(check) or 0:.3g}" for s in found]
        table.add_row(
            check,
            f"{np.nanmedian(array):.3g}",
            f"{np.nanmax(np.abs(array)):.3g}",
            f"{np.nanstd(array, ddof=1):.3g}",
            *cells,
        )
    console.print(table)
    console.print(
        f"False alarms of the defaults over {args.pairs} no-drift pairs: "
        f"{statuses.count('warning')} warning(s), {statuses.count('alert')} alert(s)"
        + "".join(f"; {named}" for named in statuses if "=" in named)
    )
    for name, result in found.items():
        console.print(f"{name}: {result['status']} ({', '.join(result['named']) or 'nothing named'})")
        for message in result["early_warning"]:
            console.print(f"  {message}", highlight=False)
    if args.keep:
        measured = {"no_drift": quiet, "scenarios": {name: r["values"] for name, r in found.items()}}
        (root / "calibration.json").write_text(json.dumps(measured, indent=1, default=float))
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
