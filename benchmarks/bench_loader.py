"""Speed and memory of ``load_dataset`` (features/loading.py) at province scale.

    .venv/bin/python benchmarks/bench_loader.py --households 1000000 --months 36 --folder /tmp/bench-1m
    .venv/bin/python benchmarks/bench_loader.py --folder DIR          # an existing dataset folder

Target: 1,000,000 households (about 100 million income rows, Parquet) within a
few minutes and about 8 GB peak resident memory on 2 cores.

When ``--folder`` does not exist yet, the contract-shaped random tables of
``bench_features.synthetic_dataset`` (deterministic in ``--seed``) are written
there as Parquet first, with ``--bad-rows`` rows of income made to break rules
so that the reject path is timed too. The load itself runs in a fresh process,
so the peak memory it prints is the loader's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from relapse_risk.features.contract import TABLES


def write_folder(folder: Path, households: int, months: int, seed: int, bad_rows: int) -> None:
    from bench_features import synthetic_dataset  # same folder; run as a script

    started = time.perf_counter()
    dataset = synthetic_dataset(households, months, seed)
    folder.mkdir(parents=True)
    (folder / "policy.json").write_text(json.dumps(dataset.policy.to_json_dict(), indent=1), encoding="utf-8")
    for table in TABLES:
        source = table.name
        if table.name == "income" and bad_rows:
            # Every n-th row gets a negative wage, an unknown source, or a household nobody has.
            step = max(1, dataset.row_count("income") // bad_rows)
            source = f"""(SELECT CASE WHEN n % {step * 3} = 0 THEN 'X' || household_id ELSE household_id END
                                   AS household_id, month,
                                 CASE WHEN n % {step * 3} = {step} THEN 'salary' ELSE source END AS source,
                                 CASE WHEN n % {step * 3} = {2 * step} THEN -abs(amount) - 1 ELSE amount END
                                   AS amount
                          FROM (SELECT *, row_number() OVER () AS n FROM income))"""
        dataset.connection.execute(
            f"COPY (SELECT * FROM {source}) TO '{folder / table.name}.parquet' (FORMAT parquet)"
        )
    print(f"wrote {folder} in {time.perf_counter() - started:.0f} s")


def load(folder: Path, memory_limit: str | None) -> None:
    from relapse_risk.features.dataset import load_dataset

    started, cpu_started = time.perf_counter(), _cpu_seconds()
    dataset = load_dataset(folder, memory_limit=memory_limit)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    for name, rows in dataset.input_rows.items():
        print(f"{name:12s} read {rows:>12,}  loaded {dataset.row_count(name):>12,}")
    households = len(dataset.rejected_households())
    print(
        f"rejects {dataset.total_rejects:,} ({len(dataset.rejects):,} listed), "
        f"households affected {households:,}"
    )
    print(
        f"load_dataset: {seconds:.1f} s wall, {cpu:.1f} s CPU (all threads), "
        f"peak resident memory {peak:.2f} GB"
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--households", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bad-rows", type=int, default=30_000)
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for the load, e.g. 6GB")
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        load(args.folder, args.memory_limit)
        return
    if not args.folder.exists():
        write_folder(args.folder, args.households, args.months, args.seed, args.bad_rows)
    command = [sys.executable, __file__, "--folder", str(args.folder), "--load-only"]
    if args.memory_limit:
        command += ["--memory-limit", args.memory_limit]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
