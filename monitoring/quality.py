"""County-level facts of a dataset at an as-of month, and the named checks built on them.

Each fact is one DuckDB aggregate over every row (no sampling), so a county of
a million households costs seconds. The checks compare current with reference
and *name* the cause a county analyst would recognise: a reporting outage, an
income unit error in the pipeline, an epidemic lockdown that sent migrants
home, a change of the monitoring line, a different county (terrain and income
mix), rejected rows, and categories that appeared or vanished.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from relapse_risk.features.contract import (
    EMPLOYMENT_STATUSES,
    INCOME_SOURCES,
    TERRAINS,
    format_month,
    month_index,
    month_start,
)
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.errors import MonthOutsideDataError
from relapse_risk.features.policy import Policy

from .checks import CHECK_FEED, RETRAIN, REVIEW_LINE, REVIEW_POPULATION, Check, judged
from .config import MonitorThresholds

LABOR_FORCE_STATUSES = tuple(s for s in EMPLOYMENT_STATUSES if s not in ("student", "not_in_labor_force"))


@dataclass(frozen=True)
class DatasetFacts:
    """What one side of the comparison looks like at its as-of month t."""

    as_of: dt.date
    households: int
    rejected_households: int
    unreported_share_12m: float
    """Household-months without any income row, t-11 .. t, over households x 12."""
    median_monthly_income: float
    """Median total income of a reported household-month, t-11 .. t (yuan)."""
    migrant_share_3m: float
    """Member-months with status migrant among labour-force statuses, t-2 .. t."""
    terrain_shares: dict[str, float]
    income_source_shares: dict[str, float]
    """Share of total positive income by source, t-11 .. t."""
    category_shares: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per categorical field of the data feed (county code, income source, employment status),
    the share of rows holding each value, t-11 .. t. Event kinds and bill categories are left
    out: a year without a village disaster is real, not a feed fault (measured: they came and
    went in 6 of 10 no-drift pairs)."""
    monitoring_line: dict[int, float] = field(default_factory=dict)

    @property
    def rejects_rate(self) -> float:
        return self.rejected_households / self.households if self.households else 0.0


def dataset_facts(dataset: Dataset, as_of: dt.date) -> DatasetFacts:
    """Facts of ``dataset`` over the 12 months to ``as_of`` (which must lie inside the data)."""
    policy = dataset.policy
    t = as_of.replace(day=1)
    if not policy.data_start <= t <= policy.data_end:
        raise MonthOutsideDataError(
            f"as-of {format_month(t)} is outside the data "
            f"({format_month(policy.data_start)} .. {format_month(policy.data_end)})"
        )
    first_12 = max(month_start(month_index(t) - 11), policy.data_start)
    first_3 = max(month_start(month_index(t) - 2), policy.data_start)
    months_12 = month_index(t) - month_index(first_12) + 1
    window_12: list[object] = [first_12, t]

    households = dataset.row_count("households")
    reported = dataset.sql(
        """SELECT count(*) AS reported_months, median(total) AS median_income FROM (
               SELECT household_id, month, sum(amount) AS total FROM income
               WHERE month BETWEEN ? AND ? GROUP BY household_id, month)""",
        window_12,
    ).fetchall()[0]
    reported_months, median_income = reported if reported else (0, None)
    unreported = 1.0 - reported_months / (households * months_12) if households else 0.0

    migrants = dataset.sql(
        f"""SELECT count(*) FILTER (WHERE status = 'migrant'), count(*) FROM employment
            WHERE month BETWEEN ? AND ? AND status IN {tuple(LABOR_FORCE_STATUSES)}""",
        [first_3, t],
    ).fetchall()[0]
    migrant_share = migrants[0] / migrants[1] if migrants and migrants[1] else math.nan

    terrain = _shares(dataset, "SELECT terrain, count(*) FROM households GROUP BY terrain", [], TERRAINS)
    sources = _shares(
        dataset,
        "SELECT source, sum(greatest(amount, 0)) FROM income WHERE month BETWEEN ? AND ? GROUP BY source",
        window_12,
        INCOME_SOURCES,
    )
    categories = {
        "households.county_code": _shares(
            dataset, "SELECT county_code, count(*) FROM households GROUP BY county_code", [], ()
        ),
        "income.source": _shares(
            dataset,
            "SELECT source, count(*) FROM income WHERE month BETWEEN ? AND ? GROUP BY source",
            window_12,
            INCOME_SOURCES,
        ),
        "employment.status": _shares(
            dataset,
            "SELECT status, count(*) FROM employment WHERE month BETWEEN ? AND ? GROUP BY status",
            window_12,
            EMPLOYMENT_STATUSES,
        ),
    }
    return DatasetFacts(
        as_of=t,
        households=households,
        rejected_households=len(dataset.rejected_households()),
        unreported_share_12m=unreported,
        median_monthly_income=float(median_income) if median_income is not None else math.nan,
        migrant_share_3m=migrant_share,
        terrain_shares=terrain,
        income_source_shares=sources,
        category_shares=categories,
        monitoring_line=dict(policy.monitoring_line),
    )


def _shares(dataset: Dataset, query: str, params: list[object], values: tuple[str, ...]) -> dict[str, float]:
    """Share of each value; ``values`` are always listed (0 when absent), others only when present."""
    counts = {str(key): float(count or 0) for key, count in dataset.sql(query, params).fetchall()}
    total = sum(counts.values())
    return {value: (counts.get(value, 0.0) / total if total else 0.0) for value in (*values, *counts)}


def total_variation(reference: dict[str, float], current: dict[str, float]) -> float:
    """Half the L1 distance of two share vectors: the share of mass that moved (0 .. 1)."""
    keys = set(reference) | set(current)
    return 0.5 * sum(abs(reference.get(k, 0.0) - current.get(k, 0.0)) for k in keys)


def line_deviation(
    reference: Policy | dict[int, float], current: Policy | dict[int, float], as_of: dt.date
) -> float:
    """Largest relative difference of the current monitoring line from the reference's.

    Years both policies state are compared directly; the current as-of year, when the
    reference does not state it, is compared with the reference's line grown at its own
    average yearly rate (lines rise every year; only a jump off that trend counts).
    """
    ref = reference.monitoring_line if isinstance(reference, Policy) else reference
    cur = current.monitoring_line if isinstance(current, Policy) else current
    deviations = [abs(cur[y] / ref[y] - 1.0) for y in sorted(set(ref) & set(cur)) if ref[y] > 0]
    year = as_of.year
    if year in cur and year not in ref and ref:
        deviations.append(abs(cur[year] / trend_line(ref, year) - 1.0))
    return max(deviations, default=0.0)


def trend_line(lines: dict[int, float], year: int) -> float:
    """The line a policy states for ``year``, else its last line grown at its average yearly rate."""
    if year in lines:
        return lines[year]
    years = sorted(lines)
    growth = (lines[years[-1]] / lines[years[0]]) ** (1 / (years[-1] - years[0])) if len(years) > 1 else 1.0
    return lines[years[-1]] * growth ** (year - years[-1])


def scenario_checks(
    reference: DatasetFacts, current: DatasetFacts, thresholds: MonitorThresholds
) -> list[Check]:
    """The named checks of data quality and of the scenarios monitoring must catch."""
    checks: list[Check] = []

    rise = current.unreported_share_12m - reference.unreported_share_12m
    checks.append(
        judged(
            "reporting_outage",
            "data quality",
            rise,
            thresholds.unreported_share_change,
            f"unreported household-months (12 months to the as-of): "
            f"{reference.unreported_share_12m:.1%} -> {current.unreported_share_12m:.1%}",
            CHECK_FEED + "; villages that stopped reporting look poorer or vanish from the features",
        )
    )

    ratio = _ratio(current.median_monthly_income, reference.median_monthly_income)
    scale = abs(math.log10(ratio)) if ratio and ratio > 0 else None
    checks.append(
        judged(
            "income_unit_error",
            "data quality",
            scale,
            thresholds.income_scale_log10,
            f"median monthly household income {reference.median_monthly_income:,.0f} -> "
            f"{current.median_monthly_income:,.0f} yuan (x{ratio:.4g}); a factor near 10^4 means amounts "
            "arrive in 10,000 yuan (万元)"
            if ratio
            else "median monthly household income could not be compared",
            CHECK_FEED + ": income amounts must be yuan; fix the unit before scoring anything",
        )
    )
    unit_error = scale is not None and scale >= thresholds.income_scale_log10.warning
    # Incomes grow every year; against its own past, a county is judged net of the growth of the
    # reference's own line trend (measured: +8 % in 12 months on a quiet generated county).
    growth = trend_line(reference.monitoring_line, current.as_of.year) / trend_line(
        reference.monitoring_line, reference.as_of.year
    )
    level_change = None if unit_error or ratio is None else abs(ratio / growth - 1.0)
    checks.append(
        judged(
            "income_level_change",
            "data quality",
            level_change,
            thresholds.income_level_change,
            f"relative change of the median monthly household income, net of the line trend's "
            f"growth (x{growth:.3f})" + (" (not judged: the unit check fired)" if unit_error else ""),
            RETRAIN + "; confirm with the county that incomes really moved",
        )
    )

    migrant_change = _ratio(current.migrant_share_3m, reference.migrant_share_3m)
    migrant_value = None if migrant_change is None else migrant_change - 1.0
    checks.append(
        judged(
            "migrant_work_drop",
            "scenario",
            migrant_value,
            thresholds.migrant_share_change,
            f"labour-force member-months as migrants (3 months to the as-of): "
            f"{reference.migrant_share_3m:.1%} -> {current.migrant_share_3m:.1%}; a sharp drop is what "
            "an epidemic lockdown does to migrant work",
            RETRAIN
            + "; until then, weight recent job loss in visit planning and check employment assistance",
        )
    )

    line = line_deviation(reference.monitoring_line, current.monitoring_line, current.as_of)
    checks.append(
        judged(
            "monitoring_line_change",
            "scenario",
            line,
            thresholds.monitoring_line_change,
            "largest relative change of policy.json's monitoring line against the reference "
            f"(reference {_line_text(reference.monitoring_line)}; "
            f"current {_line_text(current.monitoring_line)})",
            REVIEW_LINE,
        )
    )

    ref_codes = reference.category_shares.get("households.county_code", {})
    cur_codes = current.category_shares.get("households.county_code", {})
    foreign = sum(share for code, share in cur_codes.items() if ref_codes.get(code, 0.0) == 0.0)
    checks.append(
        judged(
            "different_county",
            "scenario",
            foreign,
            thresholds.foreign_county_share,
            f"share of current households from a county code the reference does not have "
            f"(reference {', '.join(c for c, s in ref_codes.items() if s)}; "
            f"current {', '.join(c for c, s in cur_codes.items() if s)})",
            REVIEW_POPULATION,
        )
    )

    terrain = total_variation(reference.terrain_shares, current.terrain_shares)
    checks.append(
        judged(
            "terrain_mix_shift",
            "scenario",
            terrain,
            thresholds.terrain_mix_shift,
            f"terrain shares {_shares_text(reference.terrain_shares)} -> "
            f"{_shares_text(current.terrain_shares)}",
            REVIEW_POPULATION,
        )
    )
    sources = total_variation(reference.income_source_shares, current.income_source_shares)
    checks.append(
        judged(
            "income_source_mix_shift",
            "scenario",
            sources,
            thresholds.income_source_mix_shift,
            f"income shares by source {_shares_text(reference.income_source_shares, 3)} -> "
            f"{_shares_text(current.income_source_shares, 3)}",
            REVIEW_POPULATION + "; " + RETRAIN,
        )
    )

    checks.append(
        judged(
            "rejects_rate",
            "data quality",
            current.rejects_rate,
            thresholds.rejects_rate,
            f"{current.rejected_households:,} of {current.households:,} households have a rejected row",
            CHECK_FEED + "; `relapse validate` lists each rejected row",
        )
    )

    changed = category_changes(reference, current, thresholds.category_change_share)
    checks.append(
        judged(
            "new_or_vanished_categories",
            "data quality",
            float(len(changed)),
            thresholds.new_or_vanished_categories,
            "categories that appeared or vanished: " + (", ".join(changed) if changed else "none"),
            CHECK_FEED,
        )
    )
    return checks


def category_changes(reference: DatasetFacts, current: DatasetFacts, min_share: float) -> list[str]:
    """``field=value (new|vanished)`` for values common on one side and absent on the other."""
    changes = []
    # County codes have their own check (a different county), so they are not counted twice here.
    names = (set(reference.category_shares) | set(current.category_shares)) - {"households.county_code"}
    for name in sorted(names):
        ref, cur = reference.category_shares.get(name, {}), current.category_shares.get(name, {})
        for value in sorted(set(ref) | set(cur)):
            before, after = ref.get(value, 0.0), cur.get(value, 0.0)
            if before == 0.0 and after >= min_share:
                changes.append(f"{name}={value} (new)")
            elif after == 0.0 and before >= min_share:
                changes.append(f"{name}={value} (vanished)")
    return changes


def _ratio(numerator: float, denominator: float) -> float | None:
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return None
    return numerator / denominator


def _line_text(line: dict[int, float]) -> str:
    return ", ".join(f"{year}: {value:,.0f}" for year, value in sorted(line.items()))


def _shares_text(shares: dict[str, float], top: int | None = None) -> str:
    ordered = sorted(shares.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{key} {value:.0%}" for key, value in ordered)
