"""Headroom of a generated county: how far the oracle sits above the rule baseline, and how close a
quick model that sees only the tables gets to the oracle.

    .venv/bin/python benchmarks/bench_headroom.py                        # 8,000 households, seed 7
    .venv/bin/python benchmarks/bench_headroom.py --households 20000     # the demo county
    .venv/bin/python benchmarks/bench_headroom.py --seed 11 --lockdown 2024-01:2024-03
    .venv/bin/python benchmarks/bench_headroom.py --data path/to/county  # an existing folder + truth

For the last four labelled quarter-end as-of months (the demo's test months)
it prints recall@k (k = visit share x eligible households) of

- the rule baseline (margin to the line, docs/rules-and-labels.md),
- the oracle (p_true of the truth file: the best any ranking can do),
- a quick model: features and labels of relapse_risk.features.training_table,
  LightGBM (models/model.py) trained on every month-end before the gap, stopped
  early and calibrated on the validation month of training/split.py (label
  windows never reach into the next split; the months `relapse train` uses by
  default), scored on the test months;

per month and on average, with the ratios the product's targets are stated in
(model / baseline >= 2.0, model / oracle >= 0.95), the model's median lead
time and calibration error, and the generator's calibration figures
(docs/calibration.md) for the same county.

The county is generated into a temporary folder (removed afterwards) unless
``--out`` keeps it; ``--data`` evaluates a folder generated earlier, reading
its truth file beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# LightGBM's and DuckDB's threads must not spin on a machine shared with other jobs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES  # noqa: E402
from relapse_risk.features.contract import format_month  # noqa: E402
from relapse_risk.features.dataset import load_dataset  # noqa: E402
from relapse_risk.features.rules import labels_for_months  # noqa: E402
from relapse_risk.features.training_table import build_training_table, quarter_ends  # noqa: E402
from relapse_risk.generator import CountyConfig, Scenario, TruthOptions, generate  # noqa: E402
from relapse_risk.generator.calibration import calibration_report  # noqa: E402
from relapse_risk.generator.config import parse_window  # noqa: E402
from relapse_risk.generator.run import default_truth_path  # noqa: E402
from relapse_risk.models.baseline import oracle_scores, read_truth, rule_baseline_scores  # noqa: E402
from relapse_risk.models.metrics import BASELINE, ORACLE, average_over_months, evaluate  # noqa: E402
from relapse_risk.models.model import RiskModel  # noqa: E402
from relapse_risk.training.split import TimeSplit, time_split  # noqa: E402
from relapse_risk.training.train import labelled_months  # noqa: E402

MODEL = "quick_model"
HORIZON = 6


@dataclass(frozen=True)
class Headroom:
    per_month: pd.DataFrame
    mean: pd.DataFrame
    split: TimeSplit
    seconds: dict[str, float]
    scores: pd.DataFrame
    """Every eligible household at each test month: label, lead time, margin, p_true and model score."""


def measure(folder: Path, truth_path: Path, seed: int, threads: int) -> Headroom:
    """Baseline, oracle and quick-model metrics at the test months of ``folder``."""
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    dataset = load_dataset(folder)
    truth = read_truth(truth_path)
    split = time_split(
        quarter_ends(dataset.policy, HORIZON),
        HORIZON,
        learning_months=labelled_months(dataset.policy, HORIZON),
    )
    seconds["load"] = time.perf_counter() - began

    began = time.perf_counter()
    months = [*split.train, *split.validation, *split.test]
    table = build_training_table(dataset, months, HORIZON)
    labels = labels_for_months(dataset, list(split.test), HORIZON)
    seconds["features"] = time.perf_counter() - began

    began = time.perf_counter()
    as_of = table["as_of"].dt.date
    train = table[as_of.isin(split.train)]
    valid = table[as_of.isin(split.validation)]
    model = RiskModel(categorical_features=CATEGORICAL_FEATURES, seed=seed, num_threads=threads)
    model.fit(train, train["label"], valid, valid["label"], feature_names=FEATURE_NAMES)
    seconds["model"] = time.perf_counter() - began

    rows, scored = [], []
    for month in split.test:
        test = table[as_of == month]
        scores = {
            BASELINE: rule_baseline_scores(labels, month),
            ORACLE: oracle_scores(truth, month),
            MODEL: pd.Series(model.predict_proba(test), index=test["household_id"].to_numpy(), name="score"),
        }
        rows.append(evaluate(month, labels, scores, visit_share=dataset.policy.visit_share))
        kept = test[["household_id", "as_of", "label", "lead_time_months", "margin"]].reset_index(drop=True)
        kept["p_true"] = scores[ORACLE].reindex(kept["household_id"]).to_numpy()
        kept["model"] = scores[MODEL].to_numpy()
        scored.append(kept)
    per_month = pd.concat(rows, ignore_index=True)
    return Headroom(
        per_month, average_over_months(per_month), split, seconds, pd.concat(scored, ignore_index=True)
    )


def _recall(frame: pd.DataFrame, method: str) -> float:
    return float(frame.loc[frame["method"] == method, "recall_at_k"].iloc[0])


def report(result: Headroom) -> str:
    """The figures as plain text: per month, mean, ratios."""
    lines = ["split: " + "; ".join(f"{k} {', '.join(v) or '-'}" for k, v in result.split.describe().items())]
    wide = result.per_month.pivot(index="as_of", columns="method", values="recall_at_k")
    counts = result.per_month.groupby("as_of")[["eligible", "positives", "k"]].first()
    lines.append(
        f"{'as_of':8} {'eligible':>8} {'pos':>5} {'k':>5} {'baseline':>9} {'oracle':>8} {'model':>8}"
        f" {'or/bl':>6} {'mo/bl':>6} {'mo/or':>6}"
    )
    for month, row in wide.iterrows():
        c = counts.loc[month]
        lines.append(
            f"{format_month(month.date()):8} {c['eligible']:8d} {c['positives']:5d} {c['k']:5d}"
            f" {row[BASELINE]:9.3f} {row[ORACLE]:8.3f} {row[MODEL]:8.3f}"
            f" {row[ORACLE] / row[BASELINE]:6.2f} {row[MODEL] / row[BASELINE]:6.2f}"
            f" {row[MODEL] / row[ORACLE]:6.2f}"
        )
    mean = result.mean
    baseline, oracle, model = (_recall(mean, m) for m in (BASELINE, ORACLE, MODEL))
    lines.append(
        f"{'mean':8} {'':8} {'':5} {'':5} {baseline:9.3f} {oracle:8.3f} {model:8.3f}"
        f" {oracle / baseline:6.2f} {model / baseline:6.2f} {model / oracle:6.2f}"
    )
    lines.append("")
    lines.append(f"{'method':13} {'recall@k':>9} {'prec@k':>7} {'lead':>5} {'AUC':>6} {'AP':>6} {'ECE':>6}")
    for _, row in mean.iterrows():
        lines.append(
            f"{row['method']:13} {row['recall_at_k']:9.3f} {row['precision_at_k']:7.3f}"
            f" {row['median_lead_time_months']:5.1f} {row['roc_auc']:6.3f} {row['average_precision']:6.3f}"
            f" {row['ece']:6.3f}"
        )
    lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items()))
    return "\n".join(lines)


def calibration_text(folder: Path) -> str:
    lines = []
    for figure in calibration_report(folder):
        mark = {True: "ok", False: "OFF", None: ""}[figure.within]
        value = f"{figure.value:,.0f}" if abs(figure.value) >= 100 else f"{figure.value:.3f}"
        lines.append(f"  {mark:3} {value:>8}  {figure.name}  [{figure.target}]")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=8_000)
    parser.add_argument("--months", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lockdown", default=None, help="epidemic lockdown window, e.g. 2024-01:2024-03")
    parser.add_argument("--simulations", type=int, default=200, help="oracle re-simulations per household")
    parser.add_argument("--workers", type=int, default=2, help="oracle processes")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads")
    parser.add_argument("--out", type=Path, default=None, help="keep the generated county in this folder")
    parser.add_argument("--data", type=Path, default=None, help="evaluate this existing folder instead")
    parser.add_argument("--no-calibration", action="store_true", help="skip the docs/calibration.md figures")
    parser.add_argument(
        "--scores", type=Path, default=None, help="write every test household's label and scores (Parquet)"
    )
    args = parser.parse_args()

    scratch = None
    try:
        if args.data is not None:
            folder = args.data
        else:
            if args.out is None:
                scratch = Path(tempfile.mkdtemp(prefix="bench-headroom-"))
            folder = args.out if args.out is not None else scratch / "county"
            scenario = Scenario(lockdown=parse_window(args.lockdown) if args.lockdown else None)
            config = CountyConfig(
                households=args.households, months=args.months, seed=args.seed, scenario=scenario
            )
            began = time.perf_counter()
            generate(config, folder, TruthOptions(simulations=args.simulations, workers=args.workers))
            print(
                f"generated {args.households:,} households x {args.months} months, seed {args.seed}, "
                f"lockdown {args.lockdown or 'none'} in {time.perf_counter() - began:.0f} s",
                flush=True,
            )
        result = measure(folder, default_truth_path(folder), args.seed, args.threads)
        print(report(result), flush=True)
        if args.scores is not None:
            result.scores.to_parquet(args.scores, index=False)
        if not args.no_calibration:
            print("docs/calibration.md figures:")
            print(calibration_text(folder))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
