"""Speed and memory of the point-in-time features (features/history.py) at province scale.

    .venv/bin/python benchmarks/bench_features.py --households 1000000 --months 36
    .venv/bin/python benchmarks/bench_features.py --data DIR --as-of 2024-06

Target: 1,000,000 households at one as-of month within 3 minutes and 12 GB peak
resident memory on 2 cores.

Without ``--data`` it synthesises a contract-shaped dataset straight into
DuckDB from hashes of the row numbers and ``--seed`` (so the same arguments give
the same tables): about 3 members, 3 income sources and 2 working-age members
per household every month, plus bills, events, loans with monthly status,
assistance and monitoring spells. These are simple random tables, good for
timing and memory, not for modelling. With ``--data`` it loads a dataset folder
(for example one written by ``relapse generate``) instead.

Synthetic tables are written to a DuckDB database file in a temporary folder,
as ``load_dataset`` keeps them (``--in-memory`` keeps them in memory instead).

Prints the seconds of every stage of ``build_features``, households/s, and the
peak resident memory of the process (which includes the DuckDB tables).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

import duckdb
from relapse_risk.features.catalogue import FEATURE_NAMES
from relapse_risk.features.contract import (
    ASSISTANCE_MEASURES,
    EDUCATION_LEVELS,
    EMPLOYMENT_STATUSES,
    EVENT_KINDS,
    EXPENSE_CATEGORIES,
    INCOME_SOURCES,
    TABLES,
    format_month,
    month_index,
    month_start,
    parse_month,
)
from relapse_risk.features.dataset import Dataset, duckdb_type
from relapse_risk.features.history import build_features
from relapse_risk.features.policy import Policy

FIRST_MONTH = dt.date(2022, 1, 1)
HOUSEHOLDS_PER_VILLAGE = 250
# Hash keys (SQL string literals) that make each random draw independent of the others.
JOIN_KEY, LEAVE_KEY, ISSUED_KEY, START_KEY, IDENTIFIED_KEY = "'jm'", "'lm'", "'issued'", "'start'", "'ident'"
VILLAGES_PER_TOWNSHIP = 80


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _status_gb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS mark (VmHWM), so a stage's own peak can be read; Linux only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _policy(months: int) -> Policy:
    end = month_start(month_index(FIRST_MONTH) + months - 1)
    return Policy.model_validate(
        {
            "contract_version": 1,
            "region": "bench",
            "data_start": format_month(FIRST_MONTH),
            "data_end": format_month(end),
            "monitoring_line": {
                year: round(6300.0 * 1.05 ** (year - FIRST_MONTH.year))
                for year in range(FIRST_MONTH.year, end.year + 1)
            },
            "rules": {
                "min_reported_months": 6,
                "rigid_expense_ratio": 1.0,
                "income_drop_share": 0.5,
                "income_drop_band": 1.5,
            },
            "visit_share": 0.05,
        }
    )


def _pick(values: tuple[str, ...], draw: str) -> str:
    """SQL choosing one of ``values`` by a hash draw."""
    listed = ", ".join(f"'{v}'" for v in values)
    return f"[{listed}][CAST(1 + ({draw}) % {len(values)} AS BIGINT)]"


def synthetic_dataset(households: int, months: int, seed: int, database: Path | None = None) -> Dataset:
    """A contract-shaped random dataset built in DuckDB; deterministic in ``seed``.

    ``database`` is a DuckDB file to hold the tables, as ``load_dataset`` keeps
    them; without it they live in memory.
    """
    policy = _policy(months)
    connection = duckdb.connect(str(database) if database else ":memory:")
    for table in TABLES:
        columns = ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in table.columns)
        connection.execute(f"CREATE TABLE {table.name} ({columns})")
    dataset = Dataset(policy=policy, connection=connection)
    sql = connection.execute
    start = f"DATE '{FIRST_MONTH.isoformat()}'"

    def draw(*keys: str) -> str:
        """A pseudo-random UBIGINT fixed by the seed and the keys."""
        return f"hash({seed}, {', '.join(keys)})"

    def uniform(*keys: str) -> str:
        return f"(({draw(*keys)}) % 1000003) / 1000003.0"

    def month_at(offset: str) -> str:
        return f"({start} + to_months(CAST({offset} AS INTEGER)))"

    village = f"(i // {HOUSEHOLDS_PER_VILLAGE})"
    township = f"({village} // {VILLAGES_PER_TOWNSHIP})"
    sql(
        f"""
        INSERT INTO households
        SELECT printf('%08d', i), '532328',
               '532328' || printf('%03d', {township} % 1000),
               '532328' || printf('%03d', {township} % 1000) || printf('%03d', {village} % 1000),
               {uniform("i", "'poor'")} < 0.6,
               CASE WHEN {uniform("i", "'poor'")} < 0.6 THEN 2016 + {draw("i", "'escape'")} % 5 END,
               {_pick(("plain", "hill", "mountain"), draw("i", "'terrain'"))},
               {uniform("i", "'relocated'")} < 0.1,
               {uniform("i", "'safe'")} < 0.97,
               round(5 * {uniform("i", "'land'")}, 1)
        FROM range({households}) AS r(i)
        """
    )
    last_year = policy.data_end.year
    sql(
        f"""
        INSERT INTO members
        SELECT printf('%08d-%d', i, j), printf('%08d', i),
               CASE WHEN j < 2 THEN 1950 + {draw("i", "j", "'born'")} % 45
                    ELSE {last_year} - 25 + {draw("i", "j", "'born'")} % 25 END,
               {_pick(("f", "m"), draw("i", "j", "'sex'"))},
               CASE j WHEN 0 THEN 'head' WHEN 1 THEN 'spouse' ELSE 'child' END,
               {_pick(EDUCATION_LEVELS, draw("i", "j", "'edu'"))},
               {_pick(("full", "full", "full", "weak", "none"), draw("i", "j", "'labor'"))},
               CASE WHEN {uniform("i", "j", "'dis'")} < 0.06
                    THEN 1 + {draw("i", "j", "'grade'")} % 4 ELSE 0 END,
               {uniform("i", "j", "'chronic'")} < 0.12,
               {uniform("i", "j", "'insured'")} < 0.97,
               CASE WHEN j > 0 AND {uniform("i", "j", "'join'")} < 0.03
                    THEN {month_at(f"{draw('i', 'j', JOIN_KEY)} % {months}")} END,
               CASE WHEN {uniform("i", "j", "'leave'")} < 0.03
                    THEN {month_at(f"{draw('i', 'j', LEAVE_KEY)} % {months}")} END
        FROM range({households}) AS r(i), range(5) AS s(j)
        WHERE j < 1 + {draw("i", "'size'")} % 5
        """
    )
    # Working-age members report a status every month; it changes every half year.
    sql(
        f"""
        INSERT INTO employment
        SELECT m.member_id, {month_at("k")},
               {_pick(EMPLOYMENT_STATUSES[:6], draw("hash(m.member_id)", "k // 6"))}
        FROM members AS m, range({months}) AS r(k)
        WHERE {last_year} - m.birth_year BETWEEN 16 AND 64
        """
    )
    # About three sources per household; one household-month in twenty is not reported.
    sql(
        f"""
        INSERT INTO income
        SELECT printf('%08d', i), {month_at("k")}, source,
               round((200 + {draw("i", "s")} % 3000) * (0.7 + 0.6 * {uniform("i", "s", "k")}), 2)
        FROM range({households}) AS r(i),
             (SELECT unnest(range({len(INCOME_SOURCES)})) AS s,
                     unnest({list(INCOME_SOURCES)}) AS source) AS src,
             range({months}) AS m(k)
        WHERE {draw("i", "s", "'has'")} % 3 = 0 AND {draw("i", "k", "'reported'")} % 20 <> 0
        """
    )
    days = (month_start(month_index(FIRST_MONTH) + months) - FIRST_MONTH).days
    sql(
        f"""
        INSERT INTO expenses
        SELECT printf('%08d', {draw("b", "'who'")} % {households}), NULL,
               {start} + CAST({draw("b", "'day'")} % {days} AS INTEGER),
               {_pick(EXPENSE_CATEGORIES, draw("b", "'cat'"))},
               round(20000 * {uniform("b", "'amount'")} ^ 3, 2) AS amount,
               round(amount * 0.6 * {uniform("b", "'reimbursed'")}, 2)
        FROM range({households * 3 // 5}) AS r(b)
        """
    )
    sql(
        f"""
        INSERT INTO events
        SELECT printf('%08d', {draw("e", "'who'")} % {households}), NULL,
               {start} + CAST({draw("e", "'day'")} % {days} AS INTEGER),
               {_pick(EVENT_KINDS, draw("e", "'kind'"))} AS kind,
               1 + {draw("e", "'severity'")} % 3,
               CASE kind WHEN 'natural_disaster' THEN round(10000 * {uniform("e", "'loss'")}, 0)
                         WHEN 'disability_certified' THEN 1 + {draw("e", "'grade'")} % 4 END
        FROM range({households}) AS r(e)
        """
    )
    sql(
        f"""
        INSERT INTO loans
        SELECT printf('L%08d', l), printf('%08d', {draw("l", "'who'")} % {households}),
               {_pick(("poverty_microcredit", "bank", "informal"), draw("l", "'kind'"))},
               {month_at(f"{draw('l', ISSUED_KEY)} % {months}")},
               round(5000 + 45000 * {uniform("l", "'principal'")}, -2),
               12 * (1 + {draw("l", "'term'")} % 3),
               0.0435
        FROM range({households * 3 // 10}) AS r(l)
        """
    )
    end = f"DATE '{policy.data_end.isoformat()}'"
    sql(
        f"""
        INSERT INTO loan_status
        SELECT loan_id, issued_month + to_months(CAST(k AS INTEGER)),
               round(principal * (1 - k / term_months), 2),
               CASE WHEN {draw("hash(loan_id)", "k")} % 25 = 0
                    THEN 30 * (1 + {draw("hash(loan_id)", "k", "'d'")} % 4) ELSE 0 END
        FROM loans, range(36) AS r(k)
        WHERE k < term_months AND issued_month + to_months(CAST(k AS INTEGER)) <= {end}
        """
    )
    sql(
        f"""
        INSERT INTO assistance
        SELECT printf('%08d', {draw("a", "'who'")} % {households}),
               {_pick(ASSISTANCE_MEASURES, draw("a", "'measure'"))},
               {month_at(f"{draw('a', START_KEY)} % {months}")} AS started,
               CASE WHEN {draw("a", "'open'")} % 2 = 0
                    THEN least(started + to_months(CAST(1 + {draw("a", "'len'")} % 12 AS INTEGER)),
                               {end}) END,
               round(500 * {uniform("a", "'amount'")}, 0)
        FROM range({households // 4}) AS r(a)
        """
    )
    sql(
        f"""
        INSERT INTO monitoring
        SELECT printf('%08d', {draw("o", "'who'")} % {households}),
               {month_at(f"{draw('o', IDENTIFIED_KEY)} % {months}")} AS identified,
               {_pick(("unstable_escaped", "marginal", "sudden_hardship"), draw("o", "'cat'"))},
               {_pick(("income_shortfall", "rigid_expenditure", "income_drop"), draw("o", "'risk'"))},
               {_pick(("illness", "disability", "disaster", "employment"), draw("o", "'cause'"))},
               CASE WHEN {draw("o", "'open'")} % 4 <> 0
                    THEN least(identified + to_months(CAST(3 + {draw("o", "'len'")} % 12 AS INTEGER)),
                               {end}) END
        FROM range({households * 6 // 100}) AS r(o)
        """
    )
    sql("CHECKPOINT")
    return dataset


def _load(folder: Path) -> Dataset:
    from relapse_risk.features import dataset as dataset_module

    load = getattr(dataset_module, "load_dataset", None)
    if load is None:
        raise SystemExit("--data needs features.dataset.load_dataset, which this checkout does not have yet")
    return load(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None, help="a dataset folder instead of synthetic data")
    parser.add_argument("--as-of", default=None, help="YYYY-MM; default the last month of the data")
    parser.add_argument(
        "--in-memory", action="store_true", help="keep synthetic tables in memory, not in a database file"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-features-") as workspace:
        run(args, None if args.in_memory else Path(workspace) / "dataset.duckdb")


def run(args: argparse.Namespace, database: Path | None) -> None:
    began = time.perf_counter()
    if args.data is not None:
        dataset = _load(args.data)
        what = f"dataset folder {args.data}"
    else:
        dataset = synthetic_dataset(args.households, args.months, args.seed, database)
        storage = f"database file {database}" if database else "in memory"
        what = f"synthetic random tables, {storage} (for timing only, not for modelling)"
    counts = {table: dataset.row_count(table) for table in ("households", "members", "income", "employment")}
    print(f"data: {what}; duckdb {duckdb.__version__}")
    print(
        "  "
        + ", ".join(f"{table} {count:,}" for table, count in counts.items())
        + f"; {time.perf_counter() - began:.1f} s, peak RSS {peak_rss_gb():.2f} GB"
    )

    as_of = parse_month(args.as_of) if args.as_of else dataset.policy.data_end
    timings: dict[str, float] = {}
    resident_before = _status_gb("VmRSS")
    stage_peak_known = reset_peak_rss()
    began = time.perf_counter()
    features = build_features(dataset, as_of, timings=timings)
    seconds = time.perf_counter() - began
    stage_peak = _status_gb("VmHWM") if stage_peak_known else None
    households = len(features)
    print(
        f"build_features at {format_month(as_of)}: {households:,} households x {len(FEATURE_NAMES)} features"
    )
    for stage, stage_seconds in timings.items():
        print(f"  {stage:<32} {stage_seconds:7.1f} s")
    print(f"  {'total':<32} {seconds:7.1f} s")
    print(f"households/s: {households / seconds:,.0f}")
    if stage_peak is not None and resident_before is not None:
        print(
            f"peak RSS during build_features: {stage_peak:.2f} GB "
            f"({resident_before:.2f} GB resident before it: the loaded tables)"
        )
    print(f"peak RSS of the whole run: {peak_rss_gb():.2f} GB (includes the DuckDB tables and their loading)")
    print(f"feature table in memory: {features.memory_usage(deep=False).sum() / 1024**3:.2f} GB")


if __name__ == "__main__":
    main()
