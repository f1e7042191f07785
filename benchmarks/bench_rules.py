"""Speed and memory of the rules engine (features/rules.py) at county-to-province scale.

    .venv/bin/python benchmarks/bench_rules.py --households 1000000 --months 48

Synthesises a contract-shaped dataset straight into DuckDB (random incomes,
members, bills and monitoring spans: simple random tables, good for timing,
not for modelling), then times ``build_panel``, ``rule_state`` and
``labels_for_months`` for four quarter-ends, and prints households/s and the
peak resident memory of the process (which includes the DuckDB tables).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time

from relapse_risk.features.contract import format_month, month_index, month_start
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.policy import Policy
from relapse_risk.features.rules import build_panel, labels_for_months, rule_state


class Stopwatch:
    """Wall and CPU seconds since start; CPU time shows the work even when other jobs share the cores."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def seconds(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        wall, cpu = self.seconds()
        return f"{wall:.1f} s wall ({cpu:.1f} s CPU)"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthetic_dataset(households: int, months: int, seed: int) -> Dataset:
    start = dt.date(2021, 1, 1)
    end = month_start(month_index(start) + months - 1)
    policy = Policy.model_validate(
        {
            "contract_version": 1,
            "region": "bench",
            "data_start": format_month(start),
            "data_end": format_month(end),
            "monitoring_line": {
                year: 6000.0 * 1.05 ** (year - 2021) for year in range(start.year, end.year + 1)
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
    dataset = Dataset.from_frames(policy, {})
    sql = dataset.connection.execute
    sql(f"SELECT setseed({(seed % 1000) / 1000})")
    sql(
        f"""INSERT INTO households SELECT printf('%08d', i), '532328', '532328001', '532328001001',
            true, 2019, 'hill', false, true, 2.0 FROM range({households}) t(i)"""
    )
    sql(
        f"""INSERT INTO members SELECT printf('m%09d', i), printf('%08d', i // 3), 1980, 'm', 'head',
            'junior', 'full', 0, false, true,
            CASE WHEN i % 17 = 0 THEN DATE '{start}' + to_months(CAST(i % {months} AS INTEGER)) END,
            CASE WHEN i % 23 = 0 THEN DATE '{start}' + to_months(CAST(i % {months} AS INTEGER)) END
            FROM range({households * 3}) t(i)"""
    )
    # Two sources a month, a tenth of household-months unreported; levels spread around the line.
    sql(
        f"""INSERT INTO income
            SELECT printf('%08d', h), DATE '{start}' + to_months(CAST(m AS INTEGER)), s,
                   (300 + (h % 97) * 25) * (0.5 + random())
            FROM range({households}) a(h), range({months}) b(m),
                 (VALUES ('wage_local'), ('transfer_other')) c(s)
            WHERE (h * 31 + m * 7) % 10 <> 0"""
    )
    sql(
        f"""INSERT INTO expenses
            SELECT printf('%08d', i % {households}), NULL,
                   DATE '{start}' + CAST(floor(random() * {months * 30}) AS INTEGER),
                   'medical', 20000 * random(), 5000 * random()
            FROM range({households // 2}) t(i)"""
    )
    sql("UPDATE expenses SET reimbursed = least(reimbursed, amount)")
    sql(
        f"""INSERT INTO monitoring
            SELECT printf('%08d', i * 19 % {households}),
                   DATE '{start}' + to_months(CAST(i % {months} AS INTEGER)),
                   'marginal', 'income_shortfall', 'illness',
                   CASE WHEN i % 3 = 0 THEN NULL
                        ELSE DATE '{start}'
                             + to_months(CAST(least(i % {months} + 6, {months - 1}) AS INTEGER)) END
            FROM range({households // 20}) t(i)"""
    )
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    watch = Stopwatch()
    dataset = synthetic_dataset(args.households, args.months, args.seed)
    income_rows = dataset.row_count("income")
    print(
        f"synthetic data: {args.households:,} households x {args.months} months, "
        f"{income_rows:,} income rows, "
        f"{watch}, peak RSS {peak_rss_gb():.2f} GB"
    )

    watch = Stopwatch()
    panel = build_panel(dataset)
    panel_seconds = watch.seconds()[0]
    print(f"build_panel: {watch}, peak RSS {peak_rss_gb():.2f} GB")

    watch = Stopwatch()
    state = rule_state(panel, dataset.policy)
    state_seconds = watch.seconds()[0]
    print(f"rule_state: {watch}, peak RSS {peak_rss_gb():.2f} GB")
    del state, panel

    policy = dataset.policy
    last_labelled = month_index(policy.data_end) - 6
    quarter_ends = [
        month_start(i) for i in range(last_labelled, last_labelled - 12, -1) if month_start(i).month % 3 == 0
    ]
    watch = Stopwatch()
    labels = labels_for_months(dataset, quarter_ends[:4], horizon=6)
    positives = int(labels["label"].sum())
    print(
        f"labels_for_months ({len(quarter_ends[:4])} quarter-ends, panel and state included): "
        f"{watch}, {len(labels):,} rows, {positives:,} positives, "
        f"peak RSS {peak_rss_gb():.2f} GB"
    )
    rules_seconds = panel_seconds + state_seconds
    print(f"panel + rules: {args.households / rules_seconds:,.0f} households/s")


if __name__ == "__main__":
    main()
