"""Speed and memory of quarterly batch scoring (`relapse score`) on a generated county.

    .venv/bin/python benchmarks/bench_score.py --households 100000
    .venv/bin/python benchmarks/bench_score.py --households 1000000 --months 36 --data /tmp/county-1m

Targets on 2 cores: 1,000,000 generated households scored (features, scores,
ranks, reasons for the visit list, all files written) in at most 90 s with a
peak resident memory of at most 6 GB, load and validate in at most 30 s, and
the whole run at most 6 times the time pyarrow takes to read every table of
the same folder (measured first, in the same run: ``READ`` below).

Three steps. Preparing runs in child processes, so the figures measure
scoring alone:

1. generate the county into ``--data`` (kept and reused when it exists);
2. train a small model on a separate generated county of
   ``--train-households`` (kept in ``--model-dir`` and reused), the way a
   champion would be trained, only smaller;
3. read every table file of ``--data`` with pyarrow in a child process (the
   floor any scoring of the folder pays), then score ``--data`` at its last
   month into ``--out`` in this process, exactly as `relapse score` does
   (:func:`serving.batch.job.score_folder`), and print the seconds and
   households/s of every stage, the peak resident memory and the ratio of
   the scoring time to the read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATE = """
import sys
from pathlib import Path
from relapse_risk.generator.config import CountyConfig
from relapse_risk.generator.run import generate
households, months, seed, folder = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
generate(CountyConfig(households=households, months=months, seed=seed), folder, progress=print)
"""

GENERATE_PROVINCE_COUNTY = """
import sys
from pathlib import Path
from relapse_risk.generator.config import CountyConfig
from relapse_risk.generator.run import generate
households, months, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = CountyConfig(households=households, months=months, seed=seed, county_code=sys.argv[4])
generate(config, Path(sys.argv[5]))
"""
"""One county of a generated province (benchmarks/bench_province.py): its own seed and county code."""

TRAIN = """
import sys
from pathlib import Path
import pandas as pd
from relapse_risk.features.catalogue import FEATURE_NAMES
from relapse_risk.features.dataset import load_dataset
from relapse_risk.features.training_table import build_training_table, quarter_ends
from relapse_risk.models.model import RiskModel
folder, model_dir, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
dataset = load_dataset(folder)
months = quarter_ends(dataset.policy, 6)
table = build_training_table(dataset, months, 6)
later = table["as_of"] >= pd.Timestamp(months[-2])
train, valid = table[~later], table[later]
model = RiskModel(seed=seed, max_rounds=300, early_stopping_rounds=30)
model.fit(train, train["label"], valid, valid["label"], feature_names=FEATURE_NAMES)
model.save(model_dir)
print(f"trained on {len(train):,} rows, {model.best_iteration_} trees")
"""


READ = """
import sys
from pathlib import Path
import pyarrow.parquet as pq
for path in sorted(Path(sys.argv[1]).glob("*.parquet")):
    pq.read_table(path)
"""
"""Read every Parquet table of a county folder into memory: all columns, every row."""


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def print_progress(stage: str, done: int, total: int) -> None:
    """Say when a stage finishes, so a long run shows where it is."""
    if done >= total:
        print(f"  {stage} done", flush=True)


def _run_child(code: str, *arguments: object) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *map(str, arguments)], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None, help="county folder (generated when missing)")
    parser.add_argument("--train-households", type=int, default=20_000)
    parser.add_argument("--model-dir", type=Path, default=None, help="saved RiskModel (trained when missing)")
    parser.add_argument("--out", type=Path, default=None, help="run folder [default: a temporary folder]")
    parser.add_argument("--explain", choices=("visit_list", "all", "none"), default="visit_list")
    args = parser.parse_args()

    work = Path(tempfile.gettempdir()) / "relapse-bench-score"
    data = args.data or work / f"county-{args.households}x{args.months}-s{args.seed}"
    model_dir = args.model_dir or work / f"model-{args.train_households}-s{args.seed}"
    out = args.out or Path(tempfile.mkdtemp(prefix="relapse-bench-run-")) / "run"

    if not (data / "policy.json").is_file():
        print(f"generating {args.households:,} households x {args.months} months into {data} ...", flush=True)
        seconds = _run_child(GENERATE, args.households, args.months, args.seed, data)
        print(f"  generated in {seconds:.0f} s", flush=True)
    if not (model_dir / "booster.txt").is_file():
        training_county = work / f"train-county-{args.train_households}-s{args.seed}"
        if not (training_county / "policy.json").is_file():
            _run_child(GENERATE, args.train_households, args.months, args.seed + 1000, training_county)
        print(f"training the model on {training_county} ...", flush=True)
        _run_child(TRAIN, training_county, model_dir, args.seed)

    # Imported after the children ran so their memory is not counted here.
    from relapse_risk.features.policy import read_policy
    from relapse_risk.models.model import RiskModel
    from relapse_risk.serving.batch.job import BATCH_STAGES, score_folder
    from relapse_risk.serving.scoring import ResolvedModel

    as_of: dt.date = read_policy(data / "policy.json").data_end
    model = ResolvedModel(
        model=RiskModel.load(model_dir), name="relapse-risk", version="bench", uri=str(model_dir), horizon=6
    )
    read_seconds = _run_child(READ, data)
    print(f"pyarrow reads every table of {data} in {read_seconds:.1f} s (a child process)", flush=True)
    print(f"scoring {data} at {as_of:%Y-%m} into {out} ...", flush=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    report = score_folder(data, as_of, model, out, explain=args.explain, progress=print_progress)
    total, cpu_total = time.perf_counter() - started, time.process_time() - cpu_started

    households = report.households
    print(f"\n{households:,} households; {report.explained:,} explained; {report.rejects:,} rejected rows")
    # CPU seconds (all threads of this process) beside wall seconds: on a shared
    # machine wall time also counts waiting for a core.
    print(f"{'stage':<10} {'seconds':>9} {'cpu s':>9} {'households/s':>14}")
    for stage in BATCH_STAGES:
        seconds = report.seconds.get(stage, float("nan"))
        rows = report.explained if stage == "explain" else households
        rate = rows / seconds if seconds > 0 else float("nan")
        cpu = report.cpu_seconds.get(stage, float("nan"))
        print(f"{stage:<10} {seconds:>9.1f} {cpu:>9.1f} {rate:>14,.0f}")
    print(f"{'total':<10} {total:>9.1f} {cpu_total:>9.1f} {households / total:>14,.0f}")
    print(f"peak resident memory of the scoring process: {peak_rss_gb():.2f} GB")
    print(f"scoring / pyarrow read: {total:.1f} s / {read_seconds:.1f} s = {total / read_seconds:.1f}x")
    print(f"outputs: {out}")


if __name__ == "__main__":
    main()
