"""Point-in-time household features, the feature catalogue and the training table.

Hand-made counties check single features against values worked out by hand;
a property test checks that nothing dated after the as-of month can move a
feature. Policy of these tests: data 2022-01 .. 2024-12, lines 6,000 / 6,300 /
6,600, min_reported_months 6; most checks are at as-of 2024-06, whose last 12
months are 2023-07 .. 2024-06.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from builders import RULES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relapse_risk.features import history, income_sources
from relapse_risk.features.catalogue import (
    CATALOGUE_VERSION,
    CATEGORICAL_FEATURES,
    FAMILIES,
    FEATURE_CATALOGUE,
    FEATURE_NAMES,
    catalogue_text,
    family_of,
)
from relapse_risk.features.contract import (
    ASSISTANCE_MEASURES,
    EMPLOYMENT_STATUSES,
    EVENT_KINDS,
    EXPENSE_CATEGORIES,
    INCOME_SOURCES,
    TABLES,
    month_index,
    month_start,
    parse_month,
)
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.history import build_features
from relapse_risk.features.policy import Policy
from relapse_risk.features.rules import build_panel, labels_for_months
from relapse_risk.features.training_table import (
    TRAINING_TABLE_COLUMNS,
    build_training_table,
    quarter_ends,
)
from typer.testing import CliRunner

from relapse_risk.cli import app

POLICY = Policy.model_validate(
    {
        "contract_version": 1,
        "region": "test",
        "data_start": "2022-01",
        "data_end": "2024-12",
        "monitoring_line": {2022: 6000.0, 2023: 6300.0, 2024: 6600.0},
        "rules": RULES,
        "visit_share": 0.05,
    }
)
AS_OF = dt.date(2024, 6, 1)
VILLAGE = "530101001001"


def month(text: str) -> dt.date:
    return parse_month(text)


def months(first: str, last: str) -> list[dt.date]:
    return [month_start(i) for i in range(month_index(month(first)), month_index(month(last)) + 1)]


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


class County:
    """Rows of a tiny county, table by table, with contract defaults for what a test does not care about."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def household(self, household_id: str, village: str = VILLAGE, **facts: Any) -> None:
        self.rows["households"].append(
            {
                "household_id": household_id,
                "county_code": village[:6],
                "township_code": village[:9],
                "village_code": village,
                "registered_poor": True,
                "escape_year": 2019,
                "terrain": "hill",
                "relocated": False,
                "housing_safe": True,
                "cultivated_land_mu": 2.0,
                **facts,
            }
        )

    def member(self, member_id: str, household_id: str, birth_year: int = 1980, **facts: Any) -> None:
        self.rows["members"].append(
            {
                "member_id": member_id,
                "household_id": household_id,
                "birth_year": birth_year,
                "sex": "m",
                "relation": "head",
                "education": "junior",
                "labor_capacity": "full",
                "disability_grade": 0,
                "chronic_disease": False,
                "medical_insurance": True,
                "joined_month": None,
                "left_month": None,
                **facts,
            }
        )

    def income(self, household_id: str, when: list[dt.date], source: str, amount: float) -> None:
        self.rows["income"] += [
            {"household_id": household_id, "month": m, "source": source, "amount": amount} for m in when
        ]

    def employment(self, member_id: str, when: list[dt.date], status: str) -> None:
        self.rows["employment"] += [{"member_id": member_id, "month": m, "status": status} for m in when]

    def expense(
        self,
        household_id: str,
        date: str,
        category: str,
        amount: float,
        reimbursed: float = 0.0,
        member_id: str | None = None,
    ) -> None:
        self.rows["expenses"].append(
            {
                "household_id": household_id,
                "member_id": member_id,
                "date": day(date),
                "category": category,
                "amount": amount,
                "reimbursed": reimbursed,
            }
        )

    def event(
        self,
        household_id: str,
        date: str,
        kind: str,
        value: float | None = None,
        member_id: str | None = None,
        severity: int = 2,
    ) -> None:
        self.rows["events"].append(
            {
                "household_id": household_id,
                "member_id": member_id,
                "date": day(date),
                "kind": kind,
                "severity": severity,
                "value": value,
            }
        )

    def loan(
        self, loan_id: str, household_id: str, kind: str, issued: str, principal: float, term: int
    ) -> None:
        self.rows["loans"].append(
            {
                "loan_id": loan_id,
                "household_id": household_id,
                "kind": kind,
                "issued_month": month(issued),
                "principal": principal,
                "term_months": term,
                "annual_rate": 0.04,
            }
        )

    def loan_status(self, loan_id: str, when: str, balance: float, overdue_days: int = 0) -> None:
        self.rows["loan_status"].append(
            {"loan_id": loan_id, "month": month(when), "balance": balance, "overdue_days": overdue_days}
        )

    def assistance(
        self, household_id: str, measure: str, start: str, end: str | None = None, amount: float = 0.0
    ) -> None:
        self.rows["assistance"].append(
            {
                "household_id": household_id,
                "measure": measure,
                "start_month": month(start),
                "end_month": month(end) if end else None,
                "monthly_amount": amount,
            }
        )

    def monitoring(self, household_id: str, identified: str, eliminated: str | None = None) -> None:
        self.rows["monitoring"].append(
            {
                "household_id": household_id,
                "identified_month": month(identified),
                "category": "marginal",
                "risk_type": "rigid_expenditure",
                "primary_cause": "illness",
                "eliminated_month": month(eliminated) if eliminated else None,
            }
        )

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            table.name: pd.DataFrame(self.rows.get(table.name, []), columns=list(table.column_names))
            for table in TABLES
        }

    def dataset(self) -> Dataset:
        return Dataset.from_frames(POLICY, self.frames())


def features_at(county: County | Dataset, as_of: dt.date = AS_OF) -> pd.DataFrame:
    dataset = county.dataset() if isinstance(county, County) else county
    return build_features(dataset, as_of).set_index("household_id")


# -- hand-computed features -----------------------------------------------------------------------


class TestIncomeWindows:
    @pytest.fixture(scope="class")
    @classmethod
    def features(cls) -> pd.DataFrame:
        county = County()
        county.household("h1")
        county.member("h1-a", "h1")
        reported = [m for m in months("2023-07", "2024-06") if m != month("2024-02")]
        county.income("h1", [m for m in reported if m <= month("2024-03")], "wage_migrant", 3000.0)
        county.income("h1", months("2024-04", "2024-06"), "wage_migrant", 1000.0)
        county.income("h1", reported, "transfer_pension", 200.0)
        county.household("silent")
        county.member("silent-a", "silent")
        county.household("rising")
        county.member("rising-a", "rising")
        for i, m in enumerate(months("2023-07", "2024-06")):
            county.income("rising", [m], "wage_local", 1000.0 + 100.0 * i)
        return features_at(county)

    def test_source_means_divide_by_the_reported_months_of_each_window(self, features: pd.DataFrame) -> None:
        h1 = features.loc["h1"]
        assert h1["income_wage_migrant_mean_3m"] == 1000.0
        # 2024-01 .. 2024-06 without the unreported February: 3000 + 3000 + 3 x 1000 over 5 months
        assert h1["income_wage_migrant_mean_6m"] == 1800.0
        # 8 months at 3000 and 3 at 1000 over 11 reported months
        assert h1["income_wage_migrant_mean_12m"] == pytest.approx(27000.0 / 11)
        assert h1["income_total_mean_3m"] == 1200.0
        assert h1["income_total_change_3m"] == pytest.approx(1200.0 - 3200.0)
        assert h1["income_total_min_12m"] == 1200.0
        assert h1["income_wage_share_12m"] == pytest.approx(27000.0 / (27000.0 + 11 * 200.0))
        assert h1["income_transfer_pension_std_12m"] == 0.0
        assert h1["income_per_capita_12m"] == pytest.approx(12 * h1["income_total_mean_12m"])

    def test_a_month_without_rows_is_missing_not_zero(self, features: pd.DataFrame) -> None:
        h1 = features.loc["h1"]
        assert h1["income_reported_months_12m"] == 11
        assert h1["income_missing_months_12m"] == 1
        assert h1["income_reported_months_3m"] == 3
        assert h1["income_months_since_report"] == 0
        # nothing was reported in 2022-07 .. 2023-06, so last year's level is unknown
        assert math.isnan(h1["income_total_yoy_change_12m"])
        assert math.isnan(h1["income_to_prev_income"])

    def test_a_household_that_never_reports_has_unknown_income(self, features: pd.DataFrame) -> None:
        silent = features.loc["silent"]
        assert silent["income_reported_months_12m"] == 0
        assert silent["income_missing_months_12m"] == 12
        for name in ("income_total_mean_3m", "income_wage_local_mean_12m", "income_months_since_report"):
            assert math.isnan(silent[name]), name
        assert math.isnan(silent["rule_margin"])

    def test_trend_and_volatility_of_a_steady_rise(self, features: pd.DataFrame) -> None:
        rising = features.loc["rising"]
        assert rising["income_total_slope_12m"] == pytest.approx(100.0)
        assert rising["income_total_slope_6m"] == pytest.approx(100.0)
        assert rising["income_wage_local_slope_12m"] == pytest.approx(100.0)
        # sample standard deviation of 0, 100, .., 1100
        assert rising["income_total_std_12m"] == pytest.approx(100.0 * math.sqrt(13.0))
        assert rising["income_wage_local_std_12m"] == pytest.approx(100.0 * math.sqrt(13.0), rel=1e-6)


class TestEmployment:
    @pytest.fixture(scope="class")
    @classmethod
    def county(cls) -> County:
        county = County()
        county.household("h1")
        county.member("a", "h1", birth_year=1980)
        county.member("b", "h1", birth_year=1982, relation="spouse", sex="f")
        county.member("c", "h1", birth_year=2010, relation="child")
        county.member("d", "h1", birth_year=1990, relation="other", joined_month=month("2024-09"))
        county.member("e", "h1", birth_year=1985, relation="sibling", left_month=month("2024-01"))
        county.employment("a", months("2023-06", "2024-06"), "migrant")
        county.employment("b", months("2023-07", "2023-12"), "unemployed")
        county.employment("b", months("2024-01", "2024-06"), "local_wage")
        county.employment("c", months("2023-07", "2024-06"), "student")
        county.employment("d", months("2024-01", "2024-06"), "local_wage")  # before joining: not ours
        county.employment("e", months("2023-06", "2024-01"), "migrant")  # 2024-01: left, not ours
        return county

    def test_employment_months_count_members_while_they_belong(self, county: County) -> None:
        h1 = features_at(county).loc["h1"]
        # a: 12, b: 6 local wage, e: 6 migrant months before leaving; d had not joined
        assert h1["employment_months_12m"] == 24
        assert h1["employment_months_3m"] == 6
        assert h1["n_working_age"] == 2
        assert h1["employment_months_per_member_12m"] == 12
        assert h1["employment_rate_12m"] == pytest.approx(24 / 42)  # a 12 + b 12 + c 12 + e 6 records
        assert h1["employment_rate_change_12m"] == pytest.approx(24 / 42 - 1.0)  # 2023-06: a and e worked
        assert h1["unemployed_months_12m"] == 6

    def test_migrants_now_and_a_year_ago(self, county: County) -> None:
        h1 = features_at(county).loc["h1"]
        assert h1["migrants_now"] == 1
        assert h1["migrants_year_ago"] == 2
        assert h1["migrants_change_12m"] == -1
        assert h1["local_workers_now"] == 1
        assert h1["students_now"] == 1

    def test_migrants_a_year_ago_are_unknown_before_records_began(self, county: County) -> None:
        assert math.isnan(features_at(county, dt.date(2022, 12, 1)).loc["h1", "migrants_year_ago"])

    def test_household_composition_at_the_as_of_month(self, county: County) -> None:
        h1 = features_at(county).loc["h1"]
        assert h1["household_size"] == 3
        assert h1["n_children"] == 1
        assert h1["dependency_ratio"] == 0.5
        assert h1["members_left_12m"] == 1
        assert h1["members_joined_12m"] == 0
        assert h1["head_age"] == 44


def test_margin_to_the_line_matches_the_rules() -> None:
    county = County()
    county.household("h1")
    county.member("a", "h1")
    county.member("b", "h1", relation="spouse")
    county.income("h1", months("2023-07", "2024-06"), "wage_local", 600.0)
    county.expense("h1", "2024-03-10", "medical", 2000.0, reimbursed=800.0)
    dataset = county.dataset()
    h1 = features_at(dataset).loc["h1"]
    line = 6600.0
    # I = 7200 a year for 2 people; E = 1200 out of pocket
    assert h1["income_per_capita_12m"] == 3600.0
    assert h1["income_line_ratio"] == pytest.approx(3600.0 / line)
    assert h1["rigid_margin_ratio"] == pytest.approx(3000.0 / line)
    assert h1["rule_margin"] == pytest.approx(3000.0 / line)
    assert h1["run_rate_margin"] == pytest.approx(3000.0 / line)
    assert h1["medical_oop_12m"] == 1200.0
    assert h1["medical_oop_6m"] == 1200.0
    assert h1["medical_oop_3m"] == 0.0
    assert h1["medical_reimbursed_share_12m"] == pytest.approx(0.4)
    assert h1["medical_oop_to_income_12m"] == pytest.approx(1200.0 / 7200.0)
    assert h1["employment_missing_now"] == 2  # two adults, no employment status reported
    labels = labels_for_months(dataset, [AS_OF], horizon=6)
    assert h1["rule_margin"] == pytest.approx(labels["margin"].iloc[0], rel=1e-6)


def test_loans_balance_maturity_and_overdue_trend() -> None:
    county = County()
    county.household("h1")
    county.member("a", "h1")
    county.household("none")
    county.member("n", "none")
    county.loan("micro", "h1", "poverty_microcredit", "2023-01", 30000.0, 24)  # due 2025-01
    county.loan_status("micro", "2024-03", 15000.0, 0)
    county.loan_status("micro", "2024-06", 12000.0, 30)
    county.loan("bank", "h1", "bank", "2023-09", 6000.0, 12)  # due 2024-09
    county.loan_status("bank", "2024-03", 4000.0, 10)
    county.loan_status("bank", "2024-06", 2000.0, 0)
    county.loan("later", "h1", "informal", "2024-09", 5000.0, 12)  # does not exist yet at 2024-06
    county.loan_status("later", "2024-09", 5000.0, 0)
    features = features_at(county)
    h1 = features.loc["h1"]
    assert h1["loan_count_open"] == 2
    assert h1["loan_balance_total"] == 14000.0
    assert h1["loan_balance_microcredit"] == 12000.0
    assert h1["loan_balance_informal"] == 0.0
    assert h1["loan_months_to_maturity"] == 3
    assert h1["loan_balance_due_6m"] == 2000.0
    assert h1["loan_overdue_days_now"] == 30
    assert h1["loan_overdue_trend_3m"] == 20  # 30 now, 10 in 2024-03
    assert h1["loan_overdue_months_12m"] == 2
    assert h1["loans_issued_12m"] == 1
    assert h1["loan_principal_issued_12m"] == 6000.0
    none = features.loc["none"]
    assert none["loan_balance_total"] == 0.0  # no loan is a real zero
    assert math.isnan(none["loan_months_to_maturity"])


class TestPrecursors:
    """What comes before a rule fires: income sliding towards the line, work stopping, loans falling due."""

    @pytest.fixture(scope="class")
    @classmethod
    def features(cls) -> pd.DataFrame:
        county = County()
        county.household("h1")
        county.member("a", "h1")
        county.member("b", "h1", relation="spouse", sex="f")
        county.income("h1", months("2023-07", "2024-02"), "wage_migrant", 4000.0)
        county.income("h1", [month("2024-04")], "wage_migrant", 2000.0)
        county.income("h1", months("2023-07", "2024-06"), "agriculture", 100.0)
        county.loan("bank", "h1", "bank", "2023-09", 6000.0, 12)  # due 2024-09
        county.loan_status("bank", "2024-06", 2000.0)

        # income falls from 1000 to 200 a month in 2024-04; nothing reported before 2023-07
        county.household("sliding")
        county.member("s", "sliding")
        county.income("sliding", months("2023-07", "2024-03"), "business", 1000.0)
        county.income("sliding", months("2024-04", "2024-06"), "business", 200.0)

        # the only wage earner is out of work in the as-of month; nothing reported before 2023-07
        county.household("idle")
        county.member("p", "idle")
        county.member("q", "idle", relation="spouse")
        county.employment("p", months("2023-07", "2024-06"), "farming")
        county.employment("q", months("2023-07", "2024-05"), "migrant")
        county.employment("q", [month("2024-06")], "unemployed")
        county.income("idle", months("2023-07", "2024-05"), "wage_migrant", 3000.0)
        county.income("idle", months("2023-07", "2024-06"), "agriculture", 100.0)

        # 500 a month, and a harvest of 5,500 in 2023-09 that will come again in 2024-09
        county.household("season")
        county.member("r", "season")
        county.income(
            "season", [m for m in months("2022-07", "2024-06") if m != month("2023-09")], "agriculture", 500.0
        )
        county.income("season", [month("2023-09")], "agriculture", 5500.0)
        return features_at(county)

    def test_loans_due_soon_against_income(self, features: pd.DataFrame) -> None:
        h1 = features.loc["h1"]
        assert h1["loan_balance_due_3m"] == 2000.0  # due in 2024-09, 3 months after t
        # I = 8 x 4000 + 2000 wages + 12 x 100 farming
        assert h1["loan_due_6m_to_income"] == pytest.approx(2000.0 / 35200.0)

    def test_rules_projected_ahead_on_the_last_quarters_income(self, features: pd.DataFrame) -> None:
        sliding = features.loc["sliding"]
        line = 6600.0
        # At t+h the window keeps 9 - h months at 1000 and 3 at 200 and adds h months at 200:
        # I(t+h) = 9600 - 800 h, lowest at h = 6; under the line for h = 4, 5, 6.
        assert sliding["income_line_ratio"] == pytest.approx(9600.0 / line)
        assert sliding["projected_income_line_ratio_min_6m"] == pytest.approx(4800.0 / line)
        assert sliding["projected_rule_margin_min_6m"] == pytest.approx(4800.0 / line)
        assert sliding["projected_rule_months_6m"] == 3
        # no income a year earlier to follow: the seasonal projection falls back to the flat one
        assert sliding["seasonal_projected_rule_margin_min_6m"] == pytest.approx(4800.0 / line)
        # I(t+h-12) is known only for h = 6: I(2023-12) has 6 reported months, 12,000 a year
        assert sliding["projected_income_to_prev_min_6m"] == pytest.approx(4800.0 / 12000.0)
        assert sliding["income_months_below_line_6m"] == 3  # 200 x 12 < 6600; 1000 x 12 is not
        assert sliding["months_since_income_drop"] == 2  # 2024-04
        assert sliding["income_total_change_1m"] == pytest.approx(200.0 - 1400.0 / 3)
        # no rigid expenses, paid or at a run rate: the same lowest margin
        assert sliding["projected_rigid_margin_run_rate_min_6m"] == pytest.approx(4800.0 / line)
        assert sliding["income_business_change_3m"] == pytest.approx(200.0 - 1000.0)

    def test_rules_projected_at_the_work_members_do_now(self, features: pd.DataFrame) -> None:
        idle = features.loc["idle"]
        line = 6600.0
        # Last 3 months' rate: 2100 a month, I(t+h) = 34200 - 1000 h: no rule fires.
        assert idle["projected_rule_months_6m"] == 0
        # At current work the wages stop: 100 a month, I(t+h) = 34200 - 3000 h, lowest 16,200 at h = 6,
        # under half of I(2023-12) = 37,200 and under 1.5 lines for 2 people: R3 fires at h = 6.
        assert idle["work_projected_rule_margin_min_6m"] == pytest.approx(16200.0 / 2 / line)
        assert idle["work_projected_rule_months_6m"] == 1

    def test_rules_projected_with_the_seasons(self, features: pd.DataFrame) -> None:
        season = features.loc["season"]
        line = 6600.0
        # Flat at 500 a month the harvest leaves the window in 2024-09: I = 6000 from t+3 on.
        assert season["projected_rule_margin_min_6m"] == pytest.approx(6000.0 / line)
        assert season["projected_rule_months_6m"] == 4
        # Last year's months (the last 3 months are level with a year earlier) bring the harvest back.
        assert season["seasonal_projected_rule_margin_min_6m"] == pytest.approx(11000.0 / line)

    def test_a_household_without_loans_owes_a_real_zero(self, features: pd.DataFrame) -> None:
        sliding = features.loc["sliding"]
        assert sliding["loan_balance_due_3m"] == 0.0
        assert sliding["loan_due_6m_to_income"] == 0.0


def test_event_counts_and_recency_stop_at_the_end_of_the_as_of_month() -> None:
    county = County()
    county.household("h1")
    county.member("a", "h1")
    county.event("h1", "2023-01-10", "serious_illness")
    county.event("h1", "2024-02-15", "serious_illness")
    county.event("h1", "2024-06-30", "job_loss")
    county.event("h1", "2024-07-01", "natural_disaster")
    h1 = features_at(county).loc["h1"]
    assert h1["events_serious_illness_12m"] == 1
    assert h1["months_since_serious_illness"] == 4
    assert h1["events_job_loss_12m"] == 1
    assert h1["months_since_job_loss"] == 0
    assert h1["events_natural_disaster_12m"] == 0
    assert math.isnan(h1["months_since_natural_disaster"])
    assert h1["events_total_12m"] == 2
    assert h1["events_total_3m"] == 1


def test_village_shock_rates_are_shares_of_the_village_households() -> None:
    county = County()
    for household in "abcd":
        county.household(household)
        county.member(f"{household}-1", household)
    county.household("e", village="530101001002")
    county.member("e-1", "e")
    county.event("a", "2024-05-03", "natural_disaster")
    county.event("b", "2023-10-20", "crop_failure")
    county.event("c", "2023-03-01", "natural_disaster")  # more than 12 months before
    features = features_at(county)
    a, e = features.loc["a"], features.loc["e"]
    assert features.loc[list("abcd"), "village_share_natural_disaster_3m"].eq(0.25).all()
    assert a["village_households"] == 4
    assert a["village_share_natural_disaster_12m"] == 0.25
    assert a["village_share_crop_failure_12m"] == 0.25
    assert a["village_share_crop_failure_3m"] == 0.0
    assert a["village_share_any_shock_12m"] == 0.5
    assert a["village_share_any_shock_3m"] == 0.25
    assert e["village_households"] == 1
    assert e["village_share_any_shock_12m"] == 0.0


def test_what_ends_after_the_as_of_month_is_still_running_at_it() -> None:
    county = County()
    county.household("h1")
    county.member("a", "h1", disability_grade=0)
    county.assistance("h1", "dibao", "2023-01", end="2024-09", amount=300.0)
    county.assistance("h1", "temporary_relief", "2023-05", end="2023-08", amount=500.0)
    county.assistance("h1", "education_subsidy", "2024-08")
    county.monitoring("h1", "2023-11", eliminated="2024-08")
    county.event("h1", "2024-01-10", "disability_certified", value=2.0, member_id="a")
    county.event("h1", "2024-09-10", "chronic_illness", member_id="a")
    h1 = features_at(county).loc["h1"]
    assert h1["assist_dibao_now"] == 1
    assert h1["assist_monthly_amount_now"] == 300.0
    assert h1["assist_temporary_relief_now"] == 0
    assert h1["assist_months_since_ended"] == 10
    assert h1["assist_measures_12m"] == 2
    assert h1["assist_education_subsidy_now"] == 0
    assert h1["under_monitoring_now"] == 1
    assert h1["times_identified"] == 1
    assert h1["months_since_identified"] == 7
    assert math.isnan(h1["months_since_eliminated"])
    assert h1["last_risk_type_code"] == 2  # rigid_expenditure
    assert h1["n_disabled"] == 1
    assert h1["disability_severity_max"] == 3  # grade 2
    assert h1["n_chronic"] == 0


def test_as_of_outside_the_data_is_refused() -> None:
    county = County()
    county.household("h1")
    county.member("a", "h1")
    with pytest.raises(ValueError, match="2025-01 is outside the data"):
        build_features(county.dataset(), dt.date(2025, 1, 1))


# -- the catalogue ----------------------------------------------------------------------------------


def test_the_feature_table_has_exactly_the_catalogue_columns_as_numbers() -> None:
    county = County()
    county.household("h2")
    county.household("h1", terrain="mountain")
    county.member("a", "h1")
    county.member("b", "h2")
    table = build_features(county.dataset(), AS_OF)
    assert list(table.columns) == ["household_id", *FEATURE_NAMES]
    assert list(table["household_id"]) == ["h1", "h2"]
    assert (table.dtypes.iloc[1:] == np.float32).all()
    for name in CATEGORICAL_FEATURES:
        codes = table[name].dropna()
        assert (codes >= 0).all() and (codes == codes.round()).all(), name
    assert table.set_index("household_id").loc["h1", "terrain_code"] == 2


def test_every_catalogue_entry_explains_itself() -> None:
    names = [spec.name for spec in FEATURE_CATALOGUE]
    assert len(names) == len(set(names))
    assert {spec.family for spec in FEATURE_CATALOGUE} == set(FAMILIES)
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for spec in FEATURE_CATALOGUE:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.name), spec.name
        assert spec.unit and spec.window and spec.meaning, spec.name
        assert cjk.search(spec.label_zh), spec.name
        assert not spec.categorical or spec.codes, spec.name
    assert family_of("migrants_now") == "employment"
    with pytest.raises(KeyError, match="not in feature catalogue"):
        family_of("household_id")
    assert CATALOGUE_VERSION


def test_catalogue_exports_as_csv_and_json() -> None:
    rows = list(csv.DictReader(io.StringIO(catalogue_text("csv"))))
    assert [row["name"] for row in rows] == list(FEATURE_NAMES)
    exported = json.loads(catalogue_text("json"))
    assert exported["catalogue_version"] == CATALOGUE_VERSION
    assert exported["features"][0]["label_zh"] == FEATURE_CATALOGUE[0].label_zh


def test_cli_prints_the_catalogue_and_writes_the_feature_table(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["features", "--catalogue", "--format", "csv"])
    assert printed.exit_code == 0, printed.output
    assert printed.output.splitlines()[0].startswith("name,family,unit,window")
    assert len(printed.output.splitlines()) == len(FEATURE_NAMES) + 1

    county = County()
    county.household("h1")
    county.member("a", "h1")
    county.income("h1", months("2023-07", "2024-06"), "wage_local", 900.0)
    folder = tmp_path / "county"
    folder.mkdir()
    (folder / "policy.json").write_text(json.dumps(POLICY.to_json_dict()), encoding="utf-8")
    for name, frame in county.frames().items():
        Dataset.from_frames(POLICY, {name: frame}).relation(name).write_parquet(
            str(folder / f"{name}.parquet")
        )
    out = tmp_path / "features.parquet"
    written = runner.invoke(app, ["features", "--data", str(folder), "--as-of", "2024-06", "--out", str(out)])
    assert written.exit_code == 0, written.output
    table = pd.read_parquet(out)
    pd.testing.assert_frame_equal(table, build_features(county.dataset(), AS_OF))

    refused = runner.invoke(app, ["features", "--data", str(folder), "--as-of", "2030-01", "--out", str(out)])
    assert refused.exit_code == 2


# -- point in time ------------------------------------------------------------------------------------

FIRST = month_index(POLICY.data_start)
SPAN = month_index(POLICY.data_end) - FIRST + 1


@st.composite
def counties(draw: st.DrawFn) -> County:
    """A random small county: every table gets rows spread over the whole data period."""
    county = County()
    month_at = st.integers(0, SPAN - 1).map(month_start_of)
    maybe_month = st.none() | month_at
    day_at = st.integers(0, (POLICY.data_end - POLICY.data_start).days + 30).map(
        lambda d: POLICY.data_start + dt.timedelta(days=d)
    )
    money = st.integers(0, 5000).map(float)
    households = [f"h{i}" for i in range(draw(st.integers(1, 4)))]
    members: list[str] = []
    for h in households:
        county.household(h, village=draw(st.sampled_from([VILLAGE, "530101001002"])))
        for j in range(draw(st.integers(1, 3))):
            member_id = f"{h}-{j}"
            members.append(member_id)
            county.member(
                member_id,
                h,
                birth_year=draw(st.integers(1940, 2020)),
                relation="head" if j == 0 else "child",
                joined_month=draw(maybe_month),
                left_month=draw(maybe_month),
                disability_grade=draw(st.integers(0, 4)),
            )
        for m in draw(st.sets(st.integers(0, SPAN - 1), max_size=SPAN)):
            for source in draw(st.sets(st.sampled_from(INCOME_SOURCES), min_size=1, max_size=3)):
                amount = draw(st.integers(-500 if source in ("business", "agriculture") else 0, 4000))
                county.income(h, [month_start_of(m)], source, float(amount))
        for _ in range(draw(st.integers(0, 3))):
            amount = draw(money)
            county.expense(
                h,
                draw(day_at).isoformat(),
                draw(st.sampled_from(EXPENSE_CATEGORIES)),
                amount,
                amount / 2,
                member_id=draw(st.none() | st.sampled_from(members)),
            )
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(EVENT_KINDS))
            value = float(draw(st.integers(1, 4))) if kind == "disability_certified" else None
            if kind == "natural_disaster":
                value = draw(st.none() | money)
            county.event(
                h,
                draw(day_at).isoformat(),
                kind,
                value=value,
                member_id=draw(st.sampled_from(members)),
                severity=draw(st.integers(1, 3)),
            )
        for i in range(draw(st.integers(0, 2))):
            loan_id = f"{h}-loan{i}"
            issued = draw(st.integers(0, SPAN - 1))
            county.loan(
                loan_id,
                h,
                draw(st.sampled_from(["poverty_microcredit", "bank", "informal"])),
                month_start_of(issued).isoformat()[:7],
                10000.0,
                draw(st.integers(6, 36)),
            )
            for m in draw(st.sets(st.integers(issued, SPAN - 1), max_size=12)):
                county.loan_status(
                    loan_id, month_start_of(m).isoformat()[:7], draw(money), draw(st.integers(0, 90))
                )
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.integers(0, SPAN - 1))
            end = draw(st.none() | st.integers(start, SPAN - 1))
            county.assistance(
                h,
                draw(st.sampled_from(ASSISTANCE_MEASURES)),
                month_start_of(start).isoformat()[:7],
                end=None if end is None else month_start_of(end).isoformat()[:7],
                amount=draw(money),
            )
        for _ in range(draw(st.integers(0, 2))):
            identified = draw(st.integers(0, SPAN - 1))
            eliminated = draw(st.none() | st.integers(identified, SPAN - 1))
            county.monitoring(
                h,
                month_start_of(identified).isoformat()[:7],
                None if eliminated is None else month_start_of(eliminated).isoformat()[:7],
            )
    for member_id in members:
        for m in draw(st.sets(st.integers(0, SPAN - 1), max_size=SPAN)):
            county.employment(member_id, [month_start_of(m)], draw(st.sampled_from(EMPLOYMENT_STATUSES)))
    return county


def month_start_of(offset: int) -> dt.date:
    return month_start(FIRST + offset)


def as_known_at(county: County, as_of: dt.date) -> County:
    """The county as its records stood at the end of ``as_of``.

    Rows dated later are unknown; a member leaving, a measure ending or a risk
    being eliminated after ``as_of`` has not happened yet.
    """
    after = month_start(month_index(as_of) + 1)
    known = County()
    rows, kept = county.rows, known.rows

    def later(value: dt.date | None) -> bool:
        return value is not None and value >= after

    kept["households"] = list(rows["households"])
    kept["members"] = [
        {**r, "left_month": None if later(r["left_month"]) else r["left_month"]}
        for r in rows["members"]
        if not later(r["joined_month"])
    ]
    members = {r["member_id"] for r in kept["members"]}
    for table, column in (("income", "month"), ("expenses", "date"), ("events", "date")):
        kept[table] = [r for r in rows[table] if not later(r[column])]
    kept["employment"] = [
        r for r in rows["employment"] if not later(r["month"]) and r["member_id"] in members
    ]
    kept["loans"] = [r for r in rows["loans"] if not later(r["issued_month"])]
    loans = {r["loan_id"] for r in kept["loans"]}
    kept["loan_status"] = [r for r in rows["loan_status"] if not later(r["month"]) and r["loan_id"] in loans]
    kept["assistance"] = [
        {**r, "end_month": None if later(r["end_month"]) else r["end_month"]}
        for r in rows["assistance"]
        if not later(r["start_month"])
    ]
    kept["monitoring"] = [
        {**r, "eliminated_month": None if later(r["eliminated_month"]) else r["eliminated_month"]}
        for r in rows["monitoring"]
        if not later(r["identified_month"])
    ]
    return known


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(county=counties(), offset=st.integers(0, SPAN - 1))
def test_rows_dated_after_the_as_of_month_never_change_its_features(county: County, offset: int) -> None:
    as_of = month_start_of(offset)
    with_future = build_features(county.dataset(), as_of)
    as_known = build_features(as_known_at(county, as_of).dataset(), as_of)
    pd.testing.assert_frame_equal(with_future, as_known, check_exact=True)
    assert not np.isinf(with_future[list(FEATURE_NAMES)].to_numpy()).any()  # unknown is NaN, never inf


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(county=counties(), offset=st.integers(0, SPAN - 1))
def test_event_features_count_and_add_each_households_events(county: County, offset: int) -> None:
    """Per-kind counts and recency, totals over kinds, the year's worst severity and disaster losses,
    recomputed here from the event rows the as-of month knows."""
    as_of = month_start_of(offset)
    t = month_index(as_of)
    events = [r for r in county.rows["events"] if month_index(r["date"]) <= t]
    features = features_at(county, as_of)
    for h in features.index:
        mine = [(t - month_index(r["date"]), r) for r in events if r["household_id"] == h]
        year = [(k, r) for k, r in mine if k < 12]
        row = features.loc[h]
        for kind in EVENT_KINDS:
            ago = [k for k, r in mine if r["kind"] == kind]
            assert row[f"events_{kind}_12m"] == sum(k < 12 for k in ago)
            assert row[f"months_since_{kind}"] == min(ago) if ago else math.isnan(row[f"months_since_{kind}"])
        assert row["events_total_3m"] == sum(k < 3 for k, _ in mine)
        assert row["events_total_12m"] == len(year)
        assert row["event_max_severity_12m"] == max((r["severity"] for _, r in year), default=0)
        losses = [r["value"] for _, r in year if r["kind"] == "natural_disaster" and r["value"] is not None]
        assert row["disaster_loss_12m"] == pytest.approx(sum(losses), abs=0.005)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    county=counties(),
    offset=st.integers(0, SPAN - 1),
    large=st.lists(st.integers(2**28, 2**31), max_size=3),
)
def test_income_source_sums_in_numpy_equal_duckdbs_exact_sums(
    county: County, offset: int, large: list[int]
) -> None:
    """The fast paths add int64 fen in numpy, in the features' own pass over income or in the rules
    panel's; DuckDB's HUGEINT sums are the reference, and the fallback for months so large that
    twelve squares could overflow int64."""
    # A row on each side of every window's bound (3, 6, 12 and 24 months back), where one is inside.
    edges = [
        k for k in (2, 3, 5, 6, 11, 12, history.HISTORY_MONTHS - 1, history.HISTORY_MONTHS) if k <= offset
    ]
    county.income("edges", [month_start_of(offset - k) for k in edges], "wage_local", 100.0)
    county.household("edges")
    for i, fen in enumerate(large):  # amounts around the bound of the fast path, on both sides of it
        county.income(f"big{i}", [month_start_of(offset - i % 3)], "business", fen / 100)
        county.household(f"big{i}")
    dataset = county.dataset()
    as_of = month_start_of(offset)
    clock = history.Clock(as_of, month_index(POLICY.data_start), int(dataset.row_count("households")))
    first = max(clock.t - (history.HISTORY_MONTHS - 1), clock.first_index)
    window = f"{clock.upto('month')} AND month >= DATE '{month_start(first).isoformat()}'"

    fast = history._income_source_part(dataset, clock)
    exact = history._income_source_part_in_sql(dataset, clock, window)
    gathered = build_panel(dataset, through=as_of, feature_sums=True).income_sources

    assert fast.keys() == exact.keys()
    for name in fast:
        assert fast[name].tobytes() == exact[name].tobytes(), name
    # The panel gives up on sums it cannot make exact, for the features to make their own.
    too_large = any(
        fen >= income_sources.EXACT_SQUARES_FEN and i % 3 <= offset for i, fen in enumerate(large)
    )
    assert (gathered is None) == too_large
    if gathered is not None:
        from_panel = gathered.columns()
        assert from_panel.keys() == exact.keys()
        for name in from_panel:
            assert from_panel[name].tobytes() == exact[name].tobytes(), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(county=counties(), offset=st.integers(0, SPAN - 1), fen=st.integers(1, 10**9))
def test_rigid_expense_sums_from_the_panel_equal_duckdbs(county: County, offset: int, fen: int) -> None:
    """The rules panel's pass over rigid bills gathers the expense features; DuckDB's query is the truth."""
    # A bill of each kind on each side of every window's bound (3, 6, 12 and 24 months back).
    county.household("edges")
    for k in (2, 3, 5, 6, 11, 12, history.HISTORY_MONTHS - 1, history.HISTORY_MONTHS):
        if k <= offset:
            day = month_start_of(offset - k).replace(day=15).isoformat()
            for category in ("medical", "education", "funeral", "other"):
                county.expense("edges", day, category, fen / 100, fen / 300)
    dataset = county.dataset()
    as_of = month_start_of(offset)
    clock = history.Clock(as_of, month_index(POLICY.data_start), int(dataset.row_count("households")))

    exact = history._expense_part(dataset, clock)
    gathered = build_panel(dataset, through=as_of, feature_sums=True).rigid_expenses
    assert gathered is not None
    from_panel = gathered.columns()

    assert from_panel.keys() == exact.keys()
    for name in from_panel:
        assert from_panel[name].tobytes() == exact[name].tobytes(), name


# -- training table ----------------------------------------------------------------------------------


def test_features_do_not_depend_on_the_number_of_threads(small_county) -> None:
    """Parallel aggregation must not change a single bit: money is summed as whole fen."""
    from relapse_risk.features.dataset import load_dataset

    dataset = load_dataset(small_county.folder)
    as_of = dataset.policy.data_end
    built = []
    for threads in (2, 2, 1):
        dataset.connection.execute(f"SET threads = {threads}")
        built.append(build_features(dataset, as_of))
    first = built[0][list(FEATURE_NAMES)].to_numpy()
    assert first.shape[0] == small_county.households
    for other in built[1:]:
        assert other["household_id"].equals(built[0]["household_id"])
        assert other[list(FEATURE_NAMES)].to_numpy().tobytes() == first.tobytes()


def test_features_computed_in_blocks_of_households_equal_those_of_one_block(
    small_county, monkeypatch
) -> None:
    """The income history's features are each a function of the household's own row, computed in
    blocks of households on several threads: the blocks may not change a bit."""
    from relapse_risk.features.dataset import load_dataset

    dataset = load_dataset(small_county.folder)
    as_of = dataset.policy.data_end
    assert small_county.households <= history._HOUSEHOLDS_PER_BLOCK
    whole = build_features(dataset, as_of)
    monkeypatch.setattr(history, "_HOUSEHOLDS_PER_BLOCK", 97)  # 21 blocks, the last one shorter
    blocked = build_features(dataset, as_of)

    assert blocked["household_id"].equals(whole["household_id"])
    assert (
        blocked[list(FEATURE_NAMES)].to_numpy().tobytes() == whole[list(FEATURE_NAMES)].to_numpy().tobytes()
    )


def test_quarter_ends_start_a_year_in_and_leave_room_for_the_horizon() -> None:
    assert quarter_ends(POLICY, 6) == [
        dt.date(2023, 3, 1),
        dt.date(2023, 6, 1),
        dt.date(2023, 9, 1),
        dt.date(2023, 12, 1),
        dt.date(2024, 3, 1),
        dt.date(2024, 6, 1),
    ]
    assert quarter_ends(POLICY, 3)[-1] == dt.date(2024, 9, 1)
    assert quarter_ends(POLICY, 24) == []


class TestTrainingTable:
    @pytest.fixture(scope="class")
    @classmethod
    def county(cls) -> County:
        county = County()
        for i, monthly in enumerate((2000.0, 1200.0, 900.0, 300.0)):
            h = f"h{i}"
            county.household(h)
            county.member(f"{h}-a", h)
            county.income(h, months("2022-01", "2024-12"), "wage_local", monthly)
        county.expense("h1", "2023-11-15", "medical", 20000.0)  # rule R2 fires in 2023-11 .. 2024-10
        county.monitoring("h2", "2023-05")  # under monitoring from 2023-05 on
        return county

    @pytest.fixture(scope="class")
    @classmethod
    def table(cls, county: County) -> pd.DataFrame:
        return build_training_table(county.dataset())

    def test_columns_are_ids_features_then_labels(self, table: pd.DataFrame) -> None:
        assert tuple(table.columns) == TRAINING_TABLE_COLUMNS
        assert table["label"].dtype == np.int8

    def test_one_row_per_eligible_household_and_quarter_end(
        self, county: County, table: pd.DataFrame
    ) -> None:
        expected_months = pd.to_datetime(quarter_ends(POLICY, 6))
        assert sorted(table["as_of"].unique()) == list(expected_months)
        # h3 is always under the line (triggered); h2 is under monitoring from 2023-05
        per_month = table.groupby("as_of")["household_id"].apply(list)
        assert per_month[pd.Timestamp("2023-03-01")] == ["h0", "h1", "h2"]
        assert per_month[pd.Timestamp("2024-06-01")] == ["h0"]
        assert table["eligible"].all()

    def test_labels_and_features_are_those_of_each_month(self, county: County, table: pd.DataFrame) -> None:
        dataset = county.dataset()
        labels = labels_for_months(dataset, [dt.date(2023, 9, 1)], 6).set_index("household_id")
        rows = table[table["as_of"] == pd.Timestamp("2023-09-01")].set_index("household_id")
        assert rows.loc["h1", "label"] == 1
        assert rows.loc["h1", "lead_time_months"] == labels.loc["h1", "lead_time_months"]
        assert rows.loc["h0", "label"] == 0
        features = features_at(dataset, dt.date(2023, 9, 1))
        pd.testing.assert_frame_equal(
            rows.loc[:, list(FEATURE_NAMES)], features.loc[rows.index, list(FEATURE_NAMES)]
        )

    def test_an_as_of_month_without_a_full_label_window_is_refused(self, county: County) -> None:
        with pytest.raises(ValueError, match="2024-09.*no label"):
            build_training_table(county.dataset(), [dt.date(2024, 9, 1)], horizon=6)
