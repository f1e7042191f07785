"""Does the production refit rank a later matured quarter at least as well as the stale backtest model?

    .venv/bin/python benchmarks/bench_refit.py --data /tmp/county20k /tmp/county20k-lockdown [--quarters 2]

For each county folder and each of its last ``--quarters`` labelled
quarter-ends t (whose six-month outcomes have matured in the folder), the
county is cut back to month t, as its system held the data then
(features/snapshot.py), and trained there exactly as ``relapse train`` would:

- the *stale* model is the backtest model, fitted on the training months of
  the time split (its freshest label about two years before t);
- the *refit* is the production model registered by training, refit with the
  backtest's settings on every labelled month up to t - H.

Both then score the households at t, and docs/rules-and-labels.md's metrics are computed
against the outcomes the full folder holds: recall@k, precision@k, ECE,
beside the rule baseline and (with the generator's truth file) the oracle.
No MLflow store is involved: the fits are the same functions training calls.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from relapse_risk.features.contract import format_month
from relapse_risk.features.loading import load_dataset
from relapse_risk.features.snapshot import write_snapshot
from relapse_risk.features.training_table import build_training_table, quarter_ends
from relapse_risk.models.baseline import read_truth
from relapse_risk.training.assessment import MODEL, assess
from relapse_risk.training.config import TrainingSettings
from relapse_risk.training.subgroups import household_groups
from relapse_risk.training.train import fit_risk_model, prepare_training_data, refit_production_model
from relapse_risk.training.truth import find_truth
from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="County dataset folders.")
    parser.add_argument("--quarters", type=int, default=1, help="Latest labelled quarter-ends to score.")
    args = parser.parse_args()
    console = Console(width=160)
    settings = TrainingSettings(work_dir=Path(tempfile.mkdtemp(prefix="bench-refit-")))
    results = Table(
        "county",
        "scored at",
        "trained through (stale / refit)",
        "stale recall@k",
        "refit recall@k",
        "refit / stale",
        "baseline",
        "oracle",
        "stale ECE",
        "refit ECE",
        "seconds (table, stale, refit)",
        title="Stale backtest model vs production refit on a later matured quarter",
    )
    for folder in args.data:
        full = load_dataset(folder)
        truth_path = find_truth(folder)
        truth = read_truth(truth_path) if truth_path is not None else None
        for month in quarter_ends(full.policy, settings.horizon)[-args.quarters :]:
            with tempfile.TemporaryDirectory(prefix="bench-refit-cut-") as cut_folder:
                cut = load_dataset(write_snapshot(full, month, Path(cut_folder) / "county"))
                started = time.perf_counter()
                data = prepare_training_data(cut, settings)
                table_seconds = time.perf_counter() - started
                started = time.perf_counter()
                stale = fit_risk_model(data, settings, settings.booster)
                stale_seconds = time.perf_counter() - started
                started = time.perf_counter()
                refit = refit_production_model(data, settings, settings.booster, stale.best_iteration_)
                refit_seconds = time.perf_counter() - started
            rows = build_training_table(full, [month], settings.horizon)
            groups = household_groups(full, [month])
            share = full.policy.visit_share
            assessed = {
                name: assess(rows, model.predict_proba(rows), visit_share=share, groups=groups, truth=truth)
                for name, model in (("stale", stale), ("refit", refit))
            }
            stale_recall, refit_recall = (assessed[n].mean(MODEL) for n in ("stale", "refit"))
            results.add_row(
                folder.name,
                format_month(month),
                f"{format_month(data.split.validation[-1])} / {format_month(data.layout.trained_through)}",
                f"{stale_recall:.3f}",
                f"{refit_recall:.3f}",
                f"{refit_recall / stale_recall:.3f}",
                f"{assessed['refit'].mean('rule_baseline'):.3f}",
                f"{assessed['refit'].mean('oracle'):.3f}" if "oracle" in assessed["refit"].methods else "-",
                f"{assessed['stale'].mean(MODEL, 'ece'):.4f}",
                f"{assessed['refit'].mean(MODEL, 'ece'):.4f}",
                f"{table_seconds:.0f}, {stale_seconds:.0f}, {refit_seconds:.0f}",
            )
            console.print(f"{folder.name} at {format_month(month)} done", highlight=False)
    console.print(results)
    console.print(
        f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.1f} GB"
    )


if __name__ == "__main__":
    main()
