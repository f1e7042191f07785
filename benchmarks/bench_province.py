"""A generated province scored on Spark (`relapse score --engine spark`) against the single-machine path.

    .venv/bin/python benchmarks/bench_province.py                       # 20 counties x 50,000 households
    .venv/bin/python benchmarks/bench_province.py --counties 20 --households 10000 --province /tmp/prov

Three steps, each measured in a child process whose whole process tree (the
JVM and Spark's Python workers included) is sampled for resident memory every
0.2 s, so the peak is the sum over the tree at its highest:

1. generate ``--counties`` counties of ``--households`` each into
   ``--province/<county code>/`` (kept and reused), and train a small model the
   way benchmarks/bench_score.py does (kept and reused);
2. the single-machine path: :func:`serving.batch.job.score_folder` on each
   county in turn, one process, as a county-by-county loop of `relapse score`;
3. Spark on ``--master`` (default ``local[2]``, the machine's two cores):
   :func:`serving.province.job.score_province`, session start included.

Target: Spark's wall time at most 1.25x the single-machine loop's on equal cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from bench_score import GENERATE_PROVINCE_COUNTY, TRAIN, _run_child

SINGLE = """
import sys, time
from pathlib import Path
from relapse_risk.features.policy import read_policy
from relapse_risk.models.model import RiskModel
from relapse_risk.serving.batch.job import score_folder
from relapse_risk.serving.registered_model import ResolvedModel
province, model_dir, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
loaded = RiskModel.load(model_dir)
model = ResolvedModel(model=loaded, name="relapse-risk", version="bench", uri=str(model_dir), horizon=6)
for county in sorted(p for p in province.iterdir() if p.is_dir()):
    started = time.perf_counter()
    report = score_folder(county, read_policy(county / "policy.json").data_end, model, out / county.name)
    seconds = time.perf_counter() - started
    print(f"  {county.name}: {report.households:,} households in {seconds:.1f} s", flush=True)
"""

SPARK = """
import os, sys, time
from pathlib import Path
from relapse_risk.features.policy import read_policy
from relapse_risk.models.model import RiskModel
from relapse_risk.serving.province.job import score_province
from relapse_risk.serving.province.spark import spark_session
from relapse_risk.serving.registered_model import ResolvedModel
province, model_dir, out, master = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
loaded = RiskModel.load(model_dir)
model = ResolvedModel(model=loaded, name="relapse-risk", version="bench", uri=str(model_dir), horizon=6)
first = sorted(p for p in province.iterdir() if p.is_dir())[0]
started = time.perf_counter()
spark = spark_session(master)
print(f"  session started in {time.perf_counter() - started:.1f} s", flush=True)
report = score_province(spark, province, read_policy(first / "policy.json").data_end, model, out)
for o in report.outcomes:
    print(f"  {o.county}: {o.status} {o.households:,} households, {o.seconds:.1f} s, attempt {o.attempt}")
print(f"  job {report.run.seconds:.1f} s", flush=True)
spark.stop()
"""


def measured(code: str, *arguments: object) -> tuple[float, float]:
    """Wall seconds and peak resident GB (summed over the child's process tree) of ``code``."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, *map(str, arguments)])
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                total = 0
                for process in tree:
                    with contextlib.suppress(psutil.Error):
                        total += process.memory_info().rss
                peak = max(peak, total / 1024**3)
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code_ = child.wait()
    done.set()
    sampler.join()
    if code_ != 0:
        raise SystemExit(f"child exited {code_}")
    return time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counties", type=int, default=20)
    parser.add_argument("--households", type=int, default=50_000, help="households per county")
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--province", type=Path, default=None, help="county folders (generated when missing)")
    parser.add_argument("--model-dir", type=Path, default=None, help="saved RiskModel (trained when missing)")
    parser.add_argument("--train-households", type=int, default=20_000)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    work = Path(tempfile.gettempdir()) / "relapse-bench-province"
    province = args.province or work / f"province-{args.counties}x{args.households}x{args.months}"
    model_dir = args.model_dir or work / f"model-{args.train_households}"
    for k in range(args.counties):
        code = f"{510101 + k}"
        if not (province / code / "policy.json").is_file():
            print(f"generating county {code} ({args.households:,} households) ...", flush=True)
            _run_child(GENERATE_PROVINCE_COUNTY, args.households, args.months, k + 1, code, province / code)
    if not (model_dir / "booster.txt").is_file():
        county = work / f"train-county-{args.train_households}"
        if not (county / "policy.json").is_file():
            _run_child(GENERATE_PROVINCE_COUNTY, args.train_households, args.months, 1000, "530101", county)
        _run_child(TRAIN, county, model_dir, 1)

    runs = Path(tempfile.mkdtemp(prefix="relapse-bench-province-runs-"))
    print(f"single machine, county by county, into {runs / 'single'} ...", flush=True)
    single_wall, single_peak = measured(SINGLE, province, model_dir, runs / "single")
    print(f"spark on {args.master} into {runs / 'spark'} ...", flush=True)
    spark_wall, spark_peak = measured(SPARK, province, model_dir, runs / "spark", args.master)

    summary = json.loads((runs / "spark" / "province_summary.json").read_text(encoding="utf-8"))
    households = summary["totals"]["households"]
    print(f"\n{summary['totals']['counties']} counties, {households:,} households")
    rows = (
        ("single machine, in turn", single_wall, single_peak),
        (f"spark {args.master}", spark_wall, spark_peak),
    )
    print(f"{'path':<28} {'wall s':>8} {'peak GB':>8} {'households/s':>13}")
    for label, wall, peak in rows:
        print(f"{label:<28} {wall:>8.1f} {peak:>8.2f} {households / wall:>13,.0f}")
    ratio, memory = spark_wall / single_wall, spark_peak / single_peak
    print(f"spark / single machine: {ratio:.2f}x wall, {memory:.2f}x peak memory")


if __name__ == "__main__":
    main()
