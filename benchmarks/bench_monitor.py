"""Speed and memory of ``relapse monitor`` on a large county against its own past.

    .venv/bin/relapse generate --out /tmp/big --households 1000000 --months 36 --no-truth --no-report
    .venv/bin/python benchmarks/bench_monitor.py --data /tmp/big
    .venv/bin/python benchmarks/bench_monitor.py --data /tmp/big --model path/to/model-folder

Target: a 1,000,000-household county against its reference in under 5 minutes
on 2 cores. The reference is the same folder twelve months before its data_end
(``DIR@YYYY-MM``), the current side the folder at data_end: the folder is loaded
once. The county checks aggregate every row in DuckDB at both months; features
(and scores, with a model) are built only for the households of a seeded sample
of whole villages of at most ``max_rows_per_side`` households (50,000 by
default; ``--max-rows`` overrides it), the same villages on both sides. Prints
the wall and CPU seconds of each stage and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from relapse_risk.features.contract import format_month, month_index, month_start
from relapse_risk.features.policy import read_policy
from relapse_risk.monitoring.config import MonitorThresholds
from relapse_risk.monitoring.monitor import MonitorOptions, run_monitor


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="Dataset folder (e.g. from `relapse generate`).")
    parser.add_argument("--model", default="none", help="Model folder or URI (default: none).")
    parser.add_argument("--evidently", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--max-rows", type=int, default=None, help="Households sampled per side.")
    args = parser.parse_args()
    folder = Path(args.data)
    policy = read_policy(folder / "policy.json")
    reference_month = month_start(month_index(policy.data_end) - 12)
    out = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    thresholds = (
        MonitorThresholds() if args.max_rows is None else MonitorThresholds(max_rows_per_side=args.max_rows)
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_monitor(
        MonitorOptions(
            reference=f"{folder}@{format_month(reference_month)}",
            current=str(folder),
            out=out,
            model=args.model,
            log_to_mlflow=False,
            evidently=args.evidently,
            thresholds=thresholds,
        ),
        progress=lambda text: print(f"{time.perf_counter() - started:7.1f} s  {text}", flush=True),
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    sampling = result.summary["sampling"]
    for side in ("reference", "current"):
        print(f"{side} sample: {json.dumps(sampling[side])}")  # type: ignore[index]
    print(f"{'stage':<45} {'wall s':>8} {'cpu s':>8}")
    for stage, seconds in result.stages.rounded().items():
        print(f"{stage:<45} {seconds['wall']:8.1f} {seconds['cpu']:8.1f}")
    print(
        f"status {result.status}; wall {wall:.0f} s; cpu {cpu:.0f} s; peak resident memory "
        f"{peak_gb:.2f} GB; report in {out}"
    )


if __name__ == "__main__":
    main()
