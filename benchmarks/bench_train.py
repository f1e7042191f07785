"""Training speed and model quality on the default generated county (20,000 households).

    .venv/bin/relapse generate --out /tmp/county20k                  # once, a few minutes
    .venv/bin/relapse generate --out /tmp/county20k-lockdown --seed 7 --lockdown 2024-01:2024-03
    .venv/bin/python benchmarks/bench_train.py --data /tmp/county20k --unseen /tmp/county20k-lockdown

Trains exactly as ``relapse train`` does (no tuning unless ``--tune``) into a
throw-away MLflow store, then prints the seconds of each stage, the peak
resident memory, the docs/rules-and-labels.md metric table over the last four labelled
quarter-ends (trained only on earlier months), the recall ratios against the
rule baseline and the oracle, and the targets:

- training (without tuning) under 3 minutes on 2 cores;
- mean recall@k at least 2.0x the rule baseline's and 0.95x the oracle's;
- median lead time of caught households at least 3 months;
- expected calibration error at most 0.02;
- with ``--unseen``: at least 0.9x the oracle's recall@k on a county never
  seen in training or tuning.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from relapse_risk.training.assessment import MODEL, Assessment
from relapse_risk.training.commands import quiet_mlflow
from relapse_risk.training.config import TrainingSettings
from relapse_risk.training.evaluate import evaluate_folder
from relapse_risk.training.report import metric_table, ratio_line, subgroup_table
from relapse_risk.training.train import run_training
from rich.console import Console
from rich.table import Table


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cpu_seconds() -> float:
    """User + system CPU of this process: on a shared machine, wall time says more about the neighbours."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def target_rows(
    assessment: Assessment, seconds: float | None, unseen: Assessment | None
) -> list[tuple[str, str, bool]]:
    rows = []
    if seconds is not None:
        rows.append(("training without tuning < 180 s", f"{seconds:.0f} s", seconds < 180))
    baseline = assessment.ratio(MODEL, "rule_baseline")
    rows.append(("recall@k >= 2.0x rule baseline", f"{baseline:.2f}x", baseline >= 2.0))
    if "oracle" in assessment.methods:
        oracle = assessment.ratio(MODEL, "oracle")
        rows.append(("recall@k >= 0.95x oracle", f"{oracle:.2f}x", oracle >= 0.95))
    lead = assessment.mean(MODEL, "median_lead_time_months")
    rows.append(("median lead time >= 3 months", f"{lead:.2f}", lead >= 3.0))
    ece = assessment.mean(MODEL, "ece")
    rows.append(("ECE <= 0.02", f"{ece:.4f}", ece <= 0.02))
    if unseen is not None and "oracle" in unseen.methods:
        ratio = unseen.ratio(MODEL, "oracle")
        rows.append(("unseen county: recall@k >= 0.9x oracle", f"{ratio:.2f}x", ratio >= 0.9))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/county20k"))
    parser.add_argument("--unseen", type=Path, default=None, help="A county to evaluate only.")
    parser.add_argument("--tune", type=float, default=0.0, help="Minutes of tuning (0: none).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--monthly-rows",
        action=argparse.BooleanOptionalAction,
        default=TrainingSettings().monthly_training_rows,
        help="Train on every month-end (--no-monthly-rows: quarter-ends only).",
    )
    parser.add_argument("--seed", type=int, default=TrainingSettings().seed)
    parser.add_argument("--work", type=Path, default=None, help="MLflow work folder (default: temporary).")
    args = parser.parse_args()

    console = Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_train_"))
    settings = TrainingSettings(
        work_dir=work,
        tracking_uri=f"sqlite:///{work / 'mlruns' / 'mlflow.db'}",
        tune_minutes=args.tune,
        threads=args.threads,
        seed=args.seed,
        monthly_training_rows=args.monthly_rows,
    )
    quiet_mlflow()
    started = time.perf_counter()
    result = run_training(args.data, settings, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    wall = time.perf_counter() - started

    stages = Table("stage", "seconds", title=f"Training on {args.data}")
    for stage, seconds in result.seconds.items():
        stages.add_row(stage, f"{seconds:.1f}")
    stages.add_row("[bold]wall[/bold]", f"[bold]{wall:.1f}[/bold]")
    console.print(stages)
    console.print(
        f"peak resident memory {peak_rss_gb():.2f} GB; CPU {cpu_seconds():.0f} s; "
        f"best iteration {result.best_iteration}"
    )
    console.print(metric_table(result.assessment, "Last four labelled quarter-ends (trained on earlier)"))
    console.print(ratio_line(result.assessment))
    console.print(subgroup_table(result.assessment))

    unseen = None
    if args.unseen is not None:
        report = evaluate_folder(args.unseen, settings, result.model_version)
        unseen = report.assessment
        console.print(metric_table(unseen, f"Unseen county {args.unseen} (evaluation only)"))
        console.print(ratio_line(unseen))
        console.print(subgroup_table(unseen))

    targets = Table("target", "measured", "met", title="Targets")
    timed = wall if args.tune == 0 else None
    for name, measured, met in target_rows(result.assessment, timed, unseen):
        targets.add_row(name, measured, "[green]yes[/green]" if met else "[red]no[/red]")
    console.print(targets)


if __name__ == "__main__":
    main()
