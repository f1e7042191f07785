"""Fixed cost of one ``POST /score`` round before scoring: through DuckDB, and in memory.

    .venv/bin/python benchmarks/bench_load_round.py --data /tmp/county20k --as-of 2024-06

Builds real ``/score`` entries from the dataset folder (serving/api/folder_payloads.py),
then times ``serving.api.score_rounds.load_round`` (rows to a checked, loaded
:class:`Dataset`) for rounds of each ``--sizes`` households, ``--repeats`` times
each after one untimed warm-up, and ``build_features`` on the loaded round.
Reports median, p90 and max wall milliseconds of the load, its median CPU
milliseconds (all threads of the process; less disturbed than wall time by
other work on the machine) and the median of ``build_features``: the per-round
floor a server worker pays before scoring through DuckDB. Beside them, the
in-memory path the server takes for rounds that keep the contract
(``features.household_rows``): building the round's text tables, reading them
(``read_clean_tables``) and ``household_features``, median wall milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
from relapse_risk.features.contract import parse_month
from relapse_risk.features.history import build_features
from relapse_risk.features.household_rows import household_features, read_clean_tables
from relapse_risk.features.policy import read_policy
from relapse_risk.serving.api.folder_payloads import score_entries
from relapse_risk.serving.api.schemas import HouseholdInput
from relapse_risk.serving.api.score_rounds import load_round, policy_at, round_tables
from rich.console import Console
from rich.table import Table


def _milliseconds(samples: Sequence[float]) -> tuple[float, float, float]:
    values = np.asarray(samples) * 1000
    return float(statistics.median(values)), float(np.percentile(values, 90)), float(values.max())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--as-of", default="2024-06")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20241123)
    args = parser.parse_args(argv)

    as_of = parse_month(args.as_of)
    policy = policy_at(read_policy(args.data / "policy.json"), as_of)
    query = "SELECT household_id FROM read_parquet(?) ORDER BY household_id"
    ids = [r[0] for r in duckdb.execute(query, [str(args.data / "households.parquet")]).fetchall()]
    chosen = [str(x) for x in np.random.default_rng(args.seed).permutation(ids)[: max(args.sizes)]]
    items = [HouseholdInput.model_validate(e) for e in score_entries(args.data, chosen, as_of)]

    table = Table(title=f"one loading round ({args.repeats} repeats)")
    for heading in (
        "households",
        "load p50 ms",
        "load p90 ms",
        "load max ms",
        "load CPU p50 ms",
        "features p50 ms",
        "in-memory tables p50 ms",
        "in-memory read p50 ms",
        "in-memory features p50 ms",
    ):
        table.add_column(heading, justify="right")
    for size in args.sizes:
        round_items = items[:size]
        load_round(policy, round_tables(round_items))[0].connection.close()  # warm-up: imports, connection
        loads: list[float] = []
        load_cpu: list[float] = []
        features: list[float] = []
        for _ in range(args.repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            dataset, _problems = load_round(policy, round_tables(round_items))
            loaded, cpu_loaded = time.perf_counter(), time.process_time()
            build_features(dataset, as_of)
            features.append(time.perf_counter() - loaded)
            loads.append(loaded - started)
            load_cpu.append(cpu_loaded - cpu_started)
            dataset.connection.close()
        texts: list[float] = []
        reads: list[float] = []
        fast_features: list[float] = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            tables, _origins = round_tables(round_items)
            built = time.perf_counter()
            clean = read_clean_tables(tables, policy)
            read = time.perf_counter()
            if clean is None:
                raise SystemExit(
                    "the in-memory path refused a round the generator wrote; see the loader's rejects"
                )
            household_features(clean, as_of)
            texts.append(built - started)
            reads.append(read - built)
            fast_features.append(time.perf_counter() - read)
        p50, p90, worst = _milliseconds(loads)
        table.add_row(
            str(size),
            f"{p50:.1f}",
            f"{p90:.1f}",
            f"{worst:.1f}",
            f"{_milliseconds(load_cpu)[0]:.1f}",
            f"{_milliseconds(features)[0]:.1f}",
            f"{_milliseconds(texts)[0]:.1f}",
            f"{_milliseconds(reads)[0]:.1f}",
            f"{_milliseconds(fast_features)[0]:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
