"""CPU a household of TreeSHAP for a registered model: LightGBM's pred_contrib against models/treeshap.py.

    .venv/bin/python benchmarks/bench_treeshap.py --data COUNTY --tracking-uri sqlite:///.../mlflow.db

Builds the features of ``--data`` at ``--as-of`` (a seeded sample of
``--sample`` households), loads the registry's champion, and reports: the
time to build the tables and to compile or load the numba kernels, the
largest difference from ``pred_contrib``, and CPU milliseconds a household
for rounds of 1, 8, 16, 32 and 100 rows (one thread; the rows cycle through the
sample). Run it alone: CPU per row is what the API pays per answer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from relapse_risk.features.contract import parse_month
from relapse_risk.features.history import build_features
from relapse_risk.features.loading import load_dataset
from relapse_risk.models.treeshap import TABLE_MAX_FEATURES, TreeShapTables
from relapse_risk.serving.api.settings import DEFAULT_MODEL_URI
from relapse_risk.serving.registered_model import resolve_model
from rich.console import Console
from rich.table import Table


def cpu_ms_per_row(
    explain: Callable[[np.ndarray], object], matrix: np.ndarray, rows: int, total: int
) -> float:
    """CPU milliseconds a row when ``total`` rows are explained ``rows`` at a time."""
    rounds = max(1, total // rows)
    started = time.process_time()
    for r in range(rounds):
        begin = (r * rows) % max(1, len(matrix) - rows)
        explain(matrix[begin : begin + rows])
    return (time.process_time() - started) / (rounds * rows) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder the feature rows come from")
    parser.add_argument("--as-of", default="2024-06", help="as-of month of the features (YYYY-MM)")
    parser.add_argument("--tracking-uri", required=True, help="MLflow store holding the champion")
    parser.add_argument("--model-uri", default=DEFAULT_MODEL_URI)
    parser.add_argument("--sample", type=int, default=2000, help="households whose rows are explained")
    parser.add_argument("--rows-explained", type=int, default=2000, help="rows timed per round size")
    parser.add_argument("--table-max-features", type=int, default=TABLE_MAX_FEATURES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console()

    model = resolve_model(args.model_uri, args.tracking_uri).model
    booster = model.booster_  # type: ignore[attr-defined]
    features = build_features(load_dataset(args.data), parse_month(args.as_of))
    sample = features.sample(min(args.sample, len(features)), random_state=args.seed)
    matrix = model.feature_matrix(sample)  # type: ignore[attr-defined]
    trees = booster.dump_model()["tree_info"]
    categorical = str(trees).count("'=='")

    started = time.process_time()
    tables = TreeShapTables.from_booster(booster, table_max_features=args.table_max_features)
    build_seconds = time.process_time() - started
    started = time.process_time()
    tables.warm_up()
    warm_seconds = time.process_time() - started
    checked = matrix[: min(500, len(matrix))]
    difference = np.abs(tables.contributions(checked) - booster.predict(checked, pred_contrib=True)).max()

    console.print(
        f"{len(trees)} trees, {len(tables.leaf_value):,} leaves, {categorical} categorical splits; "
        f"tables (leaves of up to {args.table_max_features} features) {build_seconds:.2f} s CPU, "
        f"{tables.table.nbytes / 1e6:.0f} MB; kernels compiled or loaded in {warm_seconds:.2f} s CPU; "
        f"largest difference from pred_contrib {difference:.1e}"
    )
    report = Table(title="TreeSHAP CPU ms a household (one thread)")
    for column in ("rows a round", "pred_contrib", "numba", "ratio"):
        report.add_column(column, justify="right")
    for rows in (1, 8, 16, 32, 100):
        lightgbm = cpu_ms_per_row(
            lambda m: booster.predict(m, pred_contrib=True, num_threads=1), matrix, rows, args.rows_explained
        )
        numba = cpu_ms_per_row(tables.contributions, matrix, rows, args.rows_explained)
        report.add_row(str(rows), f"{lightgbm:.2f}", f"{numba:.2f}", f"{lightgbm / numba:.1f}x")
    console.print(report)


if __name__ == "__main__":
    main()
