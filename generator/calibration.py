"""Does a generated county look like the published figures of docs/calibration.md?

:func:`calibration_report` reads a written dataset folder (not the
simulator's memory, so it measures what users will load) and returns each
figure next to its published target; :func:`render_report` prints them.
:func:`rule_panel` applies the rules of docs/rules-and-labels.md to the folder for every
household and month; the report uses it for the share of eligible
households whose rule fires within the horizon, and tests use it to check
the oracle against what really happened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from .codes import PRIMARY_CAUSES
from .config import RuleParameters, format_month, parse_month
from .rules import evaluate_panel

PER_CAPITA_TARGETS = {2020: 12588.0, 2021: 13440.0, 2022: 14342.0, 2023: 16396.0, 2024: 17700.0}
"""Per-capita income of people lifted out of poverty (2021 interpolated, 2024 at about 8 % growth)."""
RIGID = "('medical', 'education', 'disaster', 'accident', 'funeral')"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    low: float | None
    high: float | None
    target: str
    """The published figure, in words."""

    @property
    def within(self) -> bool | None:
        if self.low is None or self.high is None:
            return None
        return bool(self.low <= self.value <= self.high)


@dataclass(frozen=True)
class Panel:
    """Rules of docs/rules-and-labels.md on a dataset folder, every household and month from data_start."""

    household_ids: np.ndarray
    registered: np.ndarray
    first_month: int
    triggered: np.ndarray
    """(N, T) bool."""
    monitored: np.ndarray
    """(N, T) bool: under monitoring (docs/data-contract.md)."""

    def eligible(self, as_of: int) -> np.ndarray:
        t = as_of - self.first_month
        return ~self.monitored[:, t] & ~self.triggered[:, t]

    def label(self, as_of: int, horizon: int) -> np.ndarray:
        t = as_of - self.first_month
        return self.triggered[:, t + 1 : t + horizon + 1].any(axis=1)


def _month_sql(column: str) -> str:
    return f"(year({column}) * 12 + month({column}) - 1)"


def _connect(folder: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for table in ("households", "members", "income", "expenses", "monitoring"):
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{(folder / f'{table}.parquet').as_posix()}')"
        )
    return con


def _scatter(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float64)
    keep = (cols >= 0) & (cols < shape[1])
    np.add.at(out, (rows[keep], cols[keep]), values[keep])
    return out


def _spans(shape: tuple[int, int], rows: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Count, per (row, column), the spans [first, stop) covering it; columns are clipped to the panel."""
    diff = np.zeros((shape[0], shape[1] + 1), dtype=np.int64)
    first = np.clip(first, 0, shape[1])
    stop = np.clip(stop, 0, shape[1])
    keep = stop > first
    np.add.at(diff, (rows[keep], first[keep]), 1)
    np.add.at(diff, (rows[keep], stop[keep]), -1)
    return np.cumsum(diff, axis=1)[:, : shape[1]]


def rule_panel(folder: Path) -> Panel:
    folder = Path(folder)
    policy = json.loads((folder / "policy.json").read_text(encoding="utf-8"))
    rules = RuleParameters(**policy["rules"])
    start = parse_month(policy["data_start"])
    end = parse_month(policy["data_end"])
    months = end - start + 1
    con = _connect(folder)
    con.execute(
        "CREATE TEMP TABLE ids AS SELECT household_id, registered_poor, "
        "row_number() OVER (ORDER BY household_id) - 1 AS h FROM households"
    )
    ids = con.execute("SELECT household_id, registered_poor FROM ids ORDER BY h").fetchnumpy()
    n = len(ids["household_id"])
    shape = (n, months)
    income = con.execute(
        f"SELECT ids.h, {_month_sql('month')} - {start} AS t, sum(amount) AS amount FROM income "
        "JOIN ids USING (household_id) GROUP BY ALL"
    ).fetchnumpy()
    monthly_income = _scatter(shape, income["h"], income["t"], income["amount"])
    reported = _scatter(shape, income["h"], income["t"], np.ones(len(income["h"])))
    rigid_rows = con.execute(
        f"SELECT ids.h, {_month_sql('date')} - {start} AS t, sum(amount - reimbursed) AS oop FROM expenses "
        f"JOIN ids USING (household_id) WHERE category IN {RIGID} GROUP BY ALL"
    ).fetchnumpy()
    rigid = _scatter(shape, rigid_rows["h"], rigid_rows["t"], rigid_rows["oop"])
    members = con.execute(
        f"SELECT ids.h, coalesce({_month_sql('joined_month')} - {start}, 0) AS first, "
        f"coalesce({_month_sql('left_month')} - {start}, {months}) AS stop "
        "FROM members JOIN ids USING (household_id)"
    ).fetchnumpy()
    size = _spans(shape, members["h"], members["first"], members["stop"])
    cases = con.execute(
        f"SELECT ids.h, {_month_sql('identified_month')} - {start} AS first, "
        f"coalesce({_month_sql('eliminated_month')} - {start}, {months}) AS stop "
        "FROM monitoring JOIN ids USING (household_id)"
    ).fetchnumpy()
    monitored = _spans(shape, cases["h"], cases["first"], cases["stop"]) > 0
    years = (np.arange(start, end + 1) // 12).astype(int)
    lines = np.array([float(policy["monitoring_line"][str(y)]) for y in years])
    triggered, _ = evaluate_panel(monthly_income, reported, rigid, size, lines, rules)
    con.close()
    return Panel(
        household_ids=np.asarray(ids["household_id"]).astype(str),
        registered=np.asarray(ids["registered_poor"], dtype=bool),
        first_month=start,
        triggered=triggered,
        monitored=monitored,
    )


def quarter_ends(first: int, last: int, horizon: int, count: int = 4) -> list[int]:
    """The last ``count`` quarter-end months ``t`` with ``t + horizon <= last``."""
    fits = [t for t in range(first, last - horizon + 1) if t % 12 + 1 in (3, 6, 9, 12)]
    return fits[-count:]


def calibration_report(folder: Path, horizon: int = 6) -> list[Figure]:
    """Generated figures of a dataset folder next to the published targets of docs/calibration.md."""
    folder = Path(folder)
    policy = json.loads((folder / "policy.json").read_text(encoding="utf-8"))
    start = parse_month(policy["data_start"])
    end = parse_month(policy["data_end"])
    con = _connect(folder)
    figures: list[Figure] = []

    per_capita = con.execute(
        f"""
        WITH monthly AS (
            SELECT household_id, year(month) AS year, month, sum(amount) AS amount
            FROM income GROUP BY ALL
        ),
        yearly AS (
            SELECT household_id, year, sum(amount) * 12 / count(*) AS annual, count(*) AS reported
            FROM monthly GROUP BY ALL
        ),
        sizes AS (
            SELECT m.household_id, y.year,
                   sum(least(coalesce({_month_sql("m.left_month")}, 1e9), y.year * 12 + 12)
                       - greatest(coalesce({_month_sql("m.joined_month")}, -1e9), y.year * 12))
                   / 12.0 AS persons
            FROM members m CROSS JOIN (SELECT DISTINCT year FROM yearly) y
            WHERE coalesce({_month_sql("m.joined_month")}, -1e9) < y.year * 12 + 12
              AND coalesce({_month_sql("m.left_month")}, 1e9) > y.year * 12
            GROUP BY ALL
        )
        SELECT y.year, avg(y.annual / greatest(s.persons, 1)) AS per_capita
        FROM yearly y JOIN sizes s USING (household_id, year) JOIN households h USING (household_id)
        WHERE h.registered_poor AND y.reported >= 6
        GROUP BY y.year ORDER BY y.year
        """
    ).fetchall()
    for year, value in per_capita:
        target = PER_CAPITA_TARGETS.get(int(year))
        if target is None:
            continue
        figures.append(
            Figure(
                f"per-capita income of registered households, {year}",
                float(value),
                target * 0.88,
                target * 1.12,
                f"{target:,.0f} yuan",
            )
        )

    shares = dict(
        con.execute(
            """
            SELECT CASE WHEN source LIKE 'wage%' THEN 'wages' WHEN source LIKE 'transfer%' THEN 'transfers'
                        WHEN source = 'property' THEN 'property' ELSE 'farming and business' END AS kind,
                   sum(amount) / (SELECT sum(amount) FROM income JOIN households USING (household_id)
                                  WHERE registered_poor) AS share
            FROM income JOIN households USING (household_id) WHERE registered_poor GROUP BY ALL
            """
        ).fetchall()
    )
    figures.append(
        Figure("income share of wages (registered)", shares.get("wages", 0.0), 0.55, 0.75, "about two thirds")
    )
    figures.append(
        Figure(
            "income share of transfers (registered)",
            shares.get("transfers", 0.0),
            0.12,
            0.30,
            "more than 17 %",
        )
    )
    figures.append(
        Figure(
            "income share of farming and business (registered)",
            shares.get("farming and business", 0.0),
            0.05,
            0.30,
            "the rest after wages and transfers",
        )
    )
    figures.append(
        Figure("income share of property (registered)", shares.get("property", 0.0), 0.0, 0.05, "about 2 %")
    )

    panel = rule_panel(folder)
    under = panel.monitored.mean(axis=0)
    figures.append(
        Figure("share of households under monitoring", float(under.mean()), 0.03, 0.08, "about 5 %, 3-8 %")
    )

    cutoff = end - 12
    eliminated = con.execute(
        f"SELECT avg(CASE WHEN eliminated_month IS NULL THEN 0 ELSE 1 END) FROM monitoring "
        f"WHERE {_month_sql('identified_month')} <= {cutoff}"
    ).fetchone()
    figures.append(
        Figure(
            "share of identified households later eliminated (identified 12+ months before data end)",
            float(eliminated[0] or 0.0),
            0.65,
            0.88,
            "about 70 % nationally, 83 % in some prefectures",
        )
    )
    causes = dict(
        con.execute(
            f"SELECT primary_cause, count(*) / (SELECT count(*) FROM monitoring WHERE "
            f"{_month_sql('identified_month')} >= {start}) FROM monitoring "
            f"WHERE {_month_sql('identified_month')} >= {start} GROUP BY ALL"
        ).fetchall()
    )
    figures.append(
        Figure(
            "cause mix: illness", float(causes.get("illness", 0.0)), 0.40, 0.52, "40-52 %, the leading cause"
        )
    )
    leading = max(causes, key=causes.get) if causes else ""
    figures.append(
        Figure(
            "cause mix: illness leads",
            1.0 if leading == "illness" else 0.0,
            1.0,
            1.0,
            "illness leads every other cause",
        )
    )
    for cause in PRIMARY_CAUSES[1:]:
        figures.append(
            Figure(
                f"cause mix: {cause}", float(causes.get(cause, 0.0)), None, None, "named by rules and cadres"
            )
        )

    for t in quarter_ends(start, end, horizon):
        eligible = panel.eligible(t)
        label = panel.label(t, horizon)
        share = float(label[eligible].mean()) if eligible.any() else 0.0
        figures.append(
            Figure(
                f"eligible households whose rule fires within {horizon} months, as of {format_month(t)}",
                share,
                0.02,
                0.05,
                "realistic 2-5 %",
            )
        )
    con.close()
    return figures


def render_report(figures: list[Figure]) -> object:
    """A rich table of the figures (returned so callers choose the console)."""
    from rich.table import Table

    table = Table(title="Generated county vs published figures (docs/calibration.md)")
    table.add_column("figure", overflow="fold")
    table.add_column("generated", justify="right", overflow="fold")
    table.add_column("target", overflow="fold")
    table.add_column("", justify="center", overflow="fold")
    for f in figures:
        value = f"{f.value:,.0f}" if abs(f.value) >= 100 else f"{f.value:.3f}"
        mark = {True: "[green]ok[/green]", False: "[red]off[/red]", None: ""}[f.within]
        table.add_row(f.name, value, f.target, mark)
    return table
