"""Speed and memory of ``relapse generate`` (generator/run.py).

    .venv/bin/python benchmarks/bench_generate.py                      # 20,000 x 48 months with truth
    .venv/bin/python benchmarks/bench_generate.py --households 1000000 --months 36 --no-truth

Targets: 20,000 households x 48 months with truth (4 as-of months x 200
simulations) in under 3 minutes on 2 cores; 1,000,000 households x 36 months
without truth, written in chunks, within 16 GB.

The generation runs in a fresh process, so the peak resident memory printed
(the largest of that process and of the oracle's worker processes) is the
generator's alone. CPU seconds are printed too: on a shared machine the wall
clock also measures the neighbours.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from relapse_risk.generator.config import CountyConfig, TruthOptions
from relapse_risk.generator.run import generate
args = json.loads(sys.argv[1])
config = CountyConfig(households=args["households"], months=args["months"], seed=args["seed"],
                      chunk_households=args["chunk"])
truth = None if args["no_truth"] else TruthOptions(simulations=args["simulations"], workers=args["workers"])
started = time.perf_counter()
say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
result = generate(config, Path(args["out"]), truth, progress=say)
print(json.dumps({"seconds": time.perf_counter() - started, "rows": result.rows, "as_of": result.as_of}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-truth", action="store_true")
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=100_000, help="households simulated at once")
    parser.add_argument(
        "--out", type=Path, default=None, help="dataset folder (default: a temporary one, removed)"
    )
    args = parser.parse_args()
    scratch = None
    if args.out is None:
        scratch = Path(tempfile.mkdtemp(prefix="bench-generate-"))
        args.out = scratch / "county"
    settings = {
        "households": args.households,
        "months": args.months,
        "seed": args.seed,
        "no_truth": args.no_truth,
        "simulations": args.simulations,
        "workers": args.workers,
        "chunk": args.chunk,
        "out": str(args.out),
    }
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(settings)], check=True, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in args.out.iterdir())
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    truth = (
        "no truth"
        if args.no_truth
        else f"truth at {len(report['as_of'])} as-of months x {args.simulations} simulations"
    )
    print(f"{args.households:,} households x {args.months} months, {truth}, {args.workers} worker(s)")
    print(f"  generate:        {report['seconds']:8.1f} s wall ({wall:.1f} s with interpreter start)")
    print(f"  cpu:             {usage.ru_utime + usage.ru_stime:8.1f} s (all processes)")
    print(f"  households/s:    {args.households / report['seconds']:8.0f}")
    print(f"  peak memory:     {usage.ru_maxrss / 1024 / 1024:8.2f} GB resident (largest process)")
    print(f"  written:         {size / 1024**2:8.1f} MB, {report['rows']['income']:,} income rows")


if __name__ == "__main__":
    main()
