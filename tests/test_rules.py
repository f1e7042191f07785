"""docs/rules-and-labels.md, checked on hand-computed households.

Each test builds a tiny county in which the expected r, I, E, I_prev, L, rule,
margin or label was worked out by hand from docs/rules-and-labels.md and docs/data-contract.md.
Policy of these tests: data 2021-01 .. 2023-12, lines 6,000 / 6,300 / 6,900,
min_reported_months 6, rigid_expense_ratio 1.0, income_drop_share 0.5,
income_drop_band 1.5.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import ARROW_TYPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relapse_risk.features.contract import TABLES, Table, format_month, month_index, month_start
from relapse_risk.features.dataset import Dataset, load_dataset
from relapse_risk.features.policy import Policy
from relapse_risk.features.rules import (
    INCOME_DROP,
    INCOME_SHORTFALL,
    LABEL_COLUMNS,
    NO_RISK,
    RIGID_EXPENDITURE,
    RISK_TYPE_NAMES,
    STATE_MONTHS,
    WINDOW_MONTHS,
    MonthlyPanel,
    build_panel,
    label_defined,
    labels_for_months,
    labels_frame,
    rule_state,
)
from typer.testing import CliRunner

from relapse_risk.cli import app

LINES = {2021: 6000.0, 2022: 6300.0, 2023: 6900.0}


def make_policy(data_end: str = "2023-12") -> Policy:
    return Policy.model_validate(
        {
            "contract_version": 1,
            "region": "test",
            "data_start": "2021-01",
            "data_end": data_end,
            "monitoring_line": LINES,
            "rules": {
                "min_reported_months": 6,
                "rigid_expense_ratio": 1.0,
                "income_drop_share": 0.5,
                "income_drop_band": 1.5,
            },
            "visit_share": 0.05,
        }
    )


def month(text: str) -> dt.date:
    year, mon = text.split("-")
    return dt.date(int(year), int(mon), 1)


def months_between(first: str, last: str) -> list[dt.date]:
    return [month_start(i) for i in range(month_index(month(first)), month_index(month(last)) + 1)]


@dataclass
class County:
    """A tiny county written row by row; ``dataset()`` fills the contract's other columns."""

    policy: Policy = field(default_factory=make_policy)
    households: list[str] = field(default_factory=list)
    members: list[dict] = field(default_factory=list)
    income: list[dict] = field(default_factory=list)
    expenses: list[dict] = field(default_factory=list)
    monitoring: list[dict] = field(default_factory=list)

    def household(self, household_id: str, size: int = 1) -> County:
        self.households.append(household_id)
        for _ in range(size):
            self.member(household_id)
        return self

    def member(self, household_id: str, joined: str | None = None, left: str | None = None) -> County:
        self.members.append(
            {
                "household_id": household_id,
                "joined_month": month(joined) if joined else None,
                "left_month": month(left) if left else None,
            }
        )
        return self

    def earns(
        self, household_id: str, first: str, last: str, amount: float, source: str = "wage_local"
    ) -> County:
        for m in months_between(first, last):
            self.income.append({"household_id": household_id, "month": m, "source": source, "amount": amount})
        return self

    def spends(
        self,
        household_id: str,
        date: str,
        amount: float,
        reimbursed: float = 0.0,
        category: str = "medical",
    ) -> County:
        self.expenses.append(
            {
                "household_id": household_id,
                "date": dt.date.fromisoformat(date),
                "category": category,
                "amount": amount,
                "reimbursed": reimbursed,
            }
        )
        return self

    def monitored(self, household_id: str, identified: str, eliminated: str | None = None) -> County:
        self.monitoring.append(
            {
                "household_id": household_id,
                "identified_month": month(identified),
                "eliminated_month": month(eliminated) if eliminated else None,
            }
        )
        return self

    def frames(self) -> dict[str, pd.DataFrame]:
        households = pd.DataFrame(
            {
                "household_id": self.households,
                "county_code": "532328",
                "township_code": "532328001",
                "village_code": "532328001001",
                "registered_poor": True,
                "escape_year": 2019,
                "terrain": "hill",
                "relocated": False,
                "housing_safe": True,
                "cultivated_land_mu": 2.0,
            }
        )
        members = pd.DataFrame(self.members, columns=["household_id", "joined_month", "left_month"])
        members.insert(0, "member_id", [f"m{i:04d}" for i in range(len(members))])
        members = members.assign(
            birth_year=1980,
            sex="m",
            relation="head",
            education="junior",
            labor_capacity="full",
            disability_grade=0,
            chronic_disease=False,
            medical_insurance=True,
        )
        expenses = pd.DataFrame(
            self.expenses, columns=["household_id", "date", "category", "amount", "reimbursed"]
        ).assign(member_id=None)
        monitoring = pd.DataFrame(
            self.monitoring, columns=["household_id", "identified_month", "eliminated_month"]
        ).assign(category="marginal", risk_type="income_shortfall", primary_cause="illness")
        income = pd.DataFrame(self.income, columns=["household_id", "month", "source", "amount"])
        return {
            "households": households,
            "members": members,
            "income": income,
            "expenses": expenses,
            "monitoring": monitoring,
        }

    def dataset(self) -> Dataset:
        return Dataset.from_frames(self.policy, self.frames())


def state_of(county: County, through: dt.date | None = None):
    dataset = county.dataset()
    return rule_state(build_panel(dataset, through), dataset.policy)


def at(state, household_id: str, when: str) -> tuple[int, int]:
    row = int(np.searchsorted(state.household_ids, household_id))
    assert state.household_ids[row] == household_id
    return row, state.column(month(when))


# --- the panel -------------------------------------------------------------------------------------


def test_panel_rows_are_sorted_household_ids_and_columns_run_from_data_start_to_through() -> None:
    county = County().household("h2").household("h10").household("h1")
    panel = build_panel(county.dataset(), through=dt.date(2022, 3, 17))
    assert list(panel.household_ids) == ["h1", "h10", "h2"]
    assert panel.first_month == dt.date(2021, 1, 1)
    assert panel.n_months == 15
    assert panel.last_month == dt.date(2022, 3, 1)


def test_panel_through_outside_the_data_is_an_error() -> None:
    dataset = County().household("h1").dataset()
    with pytest.raises(ValueError, match="2024-01 is outside the data"):
        build_panel(dataset, through=dt.date(2024, 1, 1))
    with pytest.raises(ValueError, match="2020-12 is outside the data"):
        build_panel(dataset, through=dt.date(2020, 12, 1))


def test_rigid_expenditure_is_out_of_pocket_of_rigid_categories_in_the_month_of_the_bill() -> None:
    county = (
        County()
        .household("h1")
        .spends("h1", "2021-03-31", 10_000, reimbursed=7_500)
        .spends("h1", "2021-03-01", 1_000, category="education")
        .spends("h1", "2021-03-15", 5_000, category="other")
        .spends("h1", "2021-04-01", 300, category="funeral")
    )
    panel = build_panel(county.dataset())
    assert panel.rigid_expense[0, 2] == 3_500.0
    assert panel.rigid_expense[0, 3] == 300.0
    assert panel.rigid_expense[0].sum() == 3_800.0


def test_household_size_follows_joined_and_left_months_and_is_at_least_one() -> None:
    county = (
        County()
        .household("h1", size=1)
        .member("h1", left="2022-07")  # first month no longer a member: 2022-07
        .member("h1", joined="2022-03")
        .household("h2", size=0)
        .member("h2", left="2021-02")
    )
    panel = build_panel(county.dataset())
    size = dict(zip(panel.months, panel.size[0], strict=True))
    assert size[month("2022-02")] == 2
    assert size[month("2022-03")] == 3
    assert size[month("2022-06")] == 3
    assert size[month("2022-07")] == 2
    # Nobody left in h2 from 2021-02: n(m) is still at least 1.
    assert list(panel.size[1, :3]) == [1, 1, 1]


def test_under_monitoring_runs_from_identified_month_until_before_eliminated_month() -> None:
    county = (
        County()
        .household("h1")
        .monitored("h1", "2021-06", eliminated="2021-10")
        .monitored("h1", "2022-02")
        .household("h2")
        .monitored("h2", "2021-05", eliminated="2021-05")
    )
    panel = build_panel(county.dataset())
    monitored = {m for m, flag in zip(panel.months, panel.under_monitoring[0], strict=True) if flag}
    assert monitored == set(months_between("2021-06", "2021-09")) | set(months_between("2022-02", "2023-12"))
    assert not panel.under_monitoring[1].any()


# --- r, I, E, I_prev, L ------------------------------------------------------------------------------


def test_fewer_than_six_reported_months_leave_income_undefined_and_no_rule_fires() -> None:
    county = County().household("h1").earns("h1", "2021-01", "2021-06", 100.0)
    state = state_of(county)
    row, may = at(state, "h1", "2021-05")
    assert state.r[row, may] == 5
    assert math.isnan(state.I[row, may])
    assert math.isnan(state.margin[row, may])
    assert not state.triggered[row, may]
    assert state.risk_type[row, may] == NO_RISK
    # The sixth reported month defines I = 600 x 12 / 6 = 1,200 < 6,000: R1 fires.
    june = may + 1
    assert state.r[row, june] == 6
    assert state.I[row, june] == 1_200.0
    assert state.R1[row, june]
    assert state.risk_type[row, june] == INCOME_SHORTFALL


def test_unreported_months_scale_income_by_twelve_over_reported() -> None:
    # 2021-03..2021-10 reported (8 months of 600); at 2021-12 the window 2021-01..2021-12 has r = 8.
    county = County().household("h1").earns("h1", "2021-03", "2021-10", 600.0)
    state = state_of(county)
    row, december = at(state, "h1", "2021-12")
    assert state.r[row, december] == 8
    assert state.I[row, december] == 4_800.0 * 12 / 8 == 7_200.0
    assert not state.triggered[row, december]


def test_a_month_with_only_negative_business_income_is_reported_and_lowers_income() -> None:
    county = (
        County()
        .household("h1")
        .earns("h1", "2021-01", "2021-12", 700.0)
        .earns("h1", "2021-03", "2021-06", -700.0, source="business")
        .household("h2")
        .earns("h2", "2021-01", "2021-11", 500.0)
        .earns("h2", "2021-12", "2021-12", -500.0, source="business")
    )
    state = state_of(county)
    row, december = at(state, "h1", "2021-12")
    assert state.I[row, december] == 8_400.0 - 2_800.0
    assert state.R1[row, december]  # 5,600 < 6,000
    row, december = at(state, "h2", "2021-12")
    assert state.r[row, december] == 12
    assert state.I[row, december] == 5_000.0


def test_income_exactly_at_the_line_does_not_fire_because_the_rule_is_strict() -> None:
    county = (
        County()
        .household("at_line", size=2)
        .earns("at_line", "2021-01", "2021-12", 1_000.0)  # 12,000 / 2 = 6,000 = L(2021)
        .household("below", size=2)
        .earns("below", "2021-01", "2021-12", 999.0)
    )
    state = state_of(county)
    row, december = at(state, "at_line", "2021-12")
    assert state.I[row, december] / 2 == state.L[december] == 6_000.0
    assert not state.R1[row, december]
    assert state.margin[row, december] == 1.0
    row, december = at(state, "below", "2021-12")
    assert state.R1[row, december]


def test_the_line_is_that_of_the_calendar_year_of_the_month() -> None:
    # I = 525 x 12 = 6,300 for one person: above 6,000 (2021), at 6,300 (2022), below 6,900 (2023).
    county = County().household("h1").earns("h1", "2021-01", "2023-12", 525.0)
    state = state_of(county)
    assert state.L[state.column(month("2021-12"))] == 6_000.0
    assert state.L[state.column(month("2022-01"))] == 6_300.0
    assert state.L[state.column(month("2023-01"))] == 6_900.0
    fired = [m for m, flag in zip(build_panel(county.dataset()).months, state.R1[0], strict=True) if flag]
    assert fired == months_between("2023-01", "2023-12")


def test_household_size_at_the_month_divides_income() -> None:
    # 10,800 a year; two members until one leaves at 2022-07: 5,400 < 6,300 fires, then 10,800 does not.
    county = (
        County().household("h1", size=1).member("h1", left="2022-07").earns("h1", "2021-01", "2023-12", 900.0)
    )
    state = state_of(county)
    row, june = at(state, "h1", "2022-06")
    assert state.R1[row, june]
    assert state.margin[row, june] == pytest.approx(5_400.0 / 6_300.0)
    assert not state.R1[row, june + 1]
    assert state.margin[row, june + 1] == pytest.approx(10_800.0 / 6_300.0)


def test_last_years_income_is_undefined_in_the_first_year_of_data() -> None:
    county = County().household("h1").earns("h1", "2021-01", "2022-12", 1_000.0)
    state = state_of(county)
    row, december = at(state, "h1", "2021-12")
    assert math.isnan(state.I_prev[row, december])  # 2020-12 is before the data
    row, may = at(state, "h1", "2022-05")
    assert math.isnan(state.I_prev[row, may])  # I(2021-05) has r = 5: undefined
    assert state.I_prev[row, may + 1] == 12_000.0  # I(2021-06) = 6,000 x 12 / 6
    row, july = at(state, "h1", "2022-07")
    assert state.I_prev[row, july] == state.I[row, july - 12] == 12_000.0


# --- R2, R3 and priority ------------------------------------------------------------------------------


def prosperous_then(county: County, household_id: str, income_2022: float) -> County:
    """12,000 in 2021 (so I_prev = 12,000 at 2022-12), then ``income_2022`` a month in 2022."""
    return (
        county.household(household_id)
        .earns(household_id, "2021-01", "2021-12", 1_000.0)
        .earns(household_id, "2022-01", "2022-12", income_2022)
    )


def test_rigid_expenditure_fires_only_when_out_of_pocket_exceeds_last_years_income() -> None:
    county = County()
    prosperous_then(county, "equal", 1_000.0).spends("equal", "2022-03-10", 12_000)
    prosperous_then(county, "above", 1_000.0).spends("above", "2022-03-10", 20_000, reimbursed=7_500)
    prosperous_then(county, "rich", 3_000.0).spends("rich", "2022-03-10", 13_000)
    prosperous_then(county, "other", 1_000.0).spends("other", "2022-03-10", 50_000, category="other")
    state = state_of(county)

    row, december = at(state, "equal", "2022-12")
    assert state.E[row, december] == state.I_prev[row, december] == 12_000.0
    assert not state.triggered[row, december]  # E = 1.0 x I_prev is not greater

    row, december = at(state, "above", "2022-12")
    assert state.E[row, december] == 12_500.0
    assert state.R2[row, december] and not state.R1[row, december] and not state.R3[row, december]
    assert state.risk_type[row, december] == RIGID_EXPENDITURE
    assert state.margin[row, december] == pytest.approx(-500.0 / 6_300.0)
    # The bill leaves the window twelve months after its month.
    row, february = at(state, "above", "2023-02")
    assert state.E[row, february] == 12_500.0
    assert state.E[row, february + 1] == 0.0

    row, december = at(state, "rich", "2022-12")
    assert not state.R2[row, december]  # (36,000 - 13,000) / 1 is above the line

    row, december = at(state, "other", "2022-12")
    assert state.E[row, december] == 0.0
    assert not state.triggered[row, december]


def test_income_drop_fires_below_half_of_last_year_and_below_one_and_a_half_lines() -> None:
    county = County()
    prosperous_then(county, "half", 500.0)  # 6,000 = 0.5 x 12,000: not below half
    county.household("drop").earns("drop", "2021-01", "2021-12", 2_000.0).earns(
        "drop", "2022-01", "2022-12", 700.0
    )  # 8,400 < 0.5 x 24,000 and 8,400 < 1.5 x 6,300, but 8,400 >= 6,300
    county.household("comfortable").earns("comfortable", "2021-01", "2021-12", 4_000.0).earns(
        "comfortable", "2022-01", "2022-12", 800.0
    )  # 9,600 < 24,000 but 9,600 >= 1.5 x 6,300
    state = state_of(county)

    row, december = at(state, "half", "2022-12")
    assert not state.R3[row, december]
    assert state.R1[row, december]  # 6,000 < 6,300
    row, december = at(state, "drop", "2022-12")
    assert state.R3[row, december] and not state.R1[row, december]
    assert state.risk_type[row, december] == INCOME_DROP
    row, december = at(state, "comfortable", "2022-12")
    assert not state.triggered[row, december]


def test_when_several_rules_fire_the_reported_risk_type_is_r2_then_r3_then_r1() -> None:
    county = County()
    prosperous_then(county, "all_three", 200.0).spends("all_three", "2022-06-01", 13_000)
    prosperous_then(county, "drop_and_short", 200.0)
    state = state_of(county)

    row, december = at(state, "all_three", "2022-12")
    assert state.R1[row, december] and state.R2[row, december] and state.R3[row, december]
    assert state.risk_type[row, december] == RIGID_EXPENDITURE
    assert RISK_TYPE_NAMES[state.risk_type[row, december]] == "rigid_expenditure"
    row, december = at(state, "drop_and_short", "2022-12")
    assert state.R1[row, december] and state.R3[row, december] and not state.R2[row, december]
    assert state.risk_type[row, december] == INCOME_DROP


def test_r2_read_literally_with_negative_last_year_income_needs_no_bill() -> None:
    # I_prev < 0, so E = 0 > 1.0 x I_prev; (I - 0) / n < L then makes R2 (and R1) fire, and R2 wins.
    county = (
        County()
        .household("h1")
        .earns("h1", "2021-01", "2021-12", -100.0, source="business")
        .earns("h1", "2022-01", "2022-12", 100.0)
    )
    state = state_of(county)
    row, december = at(state, "h1", "2022-12")
    assert state.I_prev[row, december] == -1_200.0
    assert state.E[row, december] == 0.0
    assert state.R2[row, december]
    assert state.risk_type[row, december] == RIGID_EXPENDITURE


def test_margin_is_the_smaller_per_capita_income_over_the_line() -> None:
    county = (
        County()
        .household("h1", size=2)
        .earns("h1", "2021-01", "2021-12", 1_000.0)
        .spends("h1", "2021-05-20", 3_000)
    )
    state = state_of(county)
    row, december = at(state, "h1", "2021-12")
    # min(12,000 / 2, (12,000 - 3,000) / 2) / 6,000
    assert state.margin[row, december] == pytest.approx(4_500.0 / 6_000.0)


def test_a_households_rule_state_does_not_depend_on_the_households_evaluated_with_it() -> None:
    # Large panels are evaluated in blocks of households on several threads; a county of one
    # household at a time must give the same arrays, bit for bit.
    rng = np.random.default_rng(7)
    households, months = 20_000, 30
    policy = make_policy()
    reported = rng.random((households, months)) < 0.8
    panel = MonthlyPanel(
        household_ids=np.array([f"h{i:05d}" for i in range(households)], dtype=object),
        first_month=policy.data_start,
        size=rng.integers(1, 7, (households, months)).astype(np.int16),
        reported=reported,
        income=np.where(reported, np.round(rng.lognormal(7.0, 1.0, (households, months)), 2), 0.0),
        rigid_expense=np.where(rng.random((households, months)) < 0.05, 5_000.0, 0.0),
        under_monitoring=rng.random((households, months)) < 0.1,
    )
    together = rule_state(panel, policy)
    for start in (0, 8_191, 19_999):
        rows = slice(start, start + 1)
        alone = rule_state(
            dataclasses.replace(
                panel,
                **{
                    name: getattr(panel, name)[rows]
                    for name in (
                        "household_ids",
                        "size",
                        "reported",
                        "income",
                        "rigid_expense",
                        "under_monitoring",
                    )
                },
            ),
            policy,
        )
        for name in (
            "r",
            "I",
            "E",
            "I_prev",
            "R1",
            "R2",
            "R3",
            "triggered",
            "risk_type",
            "margin",
            "eligible",
        ):
            assert np.array_equal(getattr(alone, name), getattr(together, name)[rows], equal_nan=True), name
    assert together.triggered.any() and not together.triggered.all()


# --- eligibility and labels ---------------------------------------------------------------------------


def labelled_county() -> County:
    county = County()
    # Fires first at 2022-09 (E of 2022-09 bill): lead 3 from 2022-06, rule rigid_expenditure.
    county.household("late_bill").earns("late_bill", "2021-01", "2023-12", 1_000.0).spends(
        "late_bill", "2022-09-05", 13_000
    )
    # Income falls from 1,000 to 300 a month at 2022-07: I = 12,000 - 700 k after k such months,
    # first below the line at 2023-02 (6,400 < 6,900); never below half of I_prev = 12,000.
    county.household("slide").earns("slide", "2021-01", "2022-06", 1_000.0).earns(
        "slide", "2022-07", "2023-12", 300.0
    )
    # Fires at 2022-06 itself: triggered now, not eligible.
    county.household("poor").earns("poor", "2021-01", "2023-12", 400.0)
    # Never fires but is under monitoring at 2022-06.
    county.household("monitored").earns("monitored", "2021-01", "2023-12", 1_000.0).monitored(
        "monitored", "2022-01", eliminated="2022-07"
    )
    # Fires only at 2023-01 (line rises to 6,900): outside a 6-month horizon from 2022-06.
    county.household("line_rise").earns("line_rise", "2021-01", "2023-12", 550.0)
    return county


def test_labels_at_one_as_of_month() -> None:
    frame = labels_frame(labelled_county().dataset(), dt.date(2022, 6, 1), horizon=6).set_index(
        "household_id"
    )
    assert list(frame.reset_index().columns) == list(LABEL_COLUMNS)
    assert (frame["as_of"] == pd.Timestamp("2022-06-01")).all()

    late = frame.loc["late_bill"]
    assert late["eligible"] and late["label"] == 1 and late["lead_time_months"] == 3
    assert late["first_rule"] == "rigid_expenditure"
    assert late["margin"] == pytest.approx(12_000.0 / 6_300.0)

    # slide: I = 7,800 at 2022-12 (k = 6), 7,100 at 2023-01, 6,400 < 6,900 at 2023-02: beyond 2022-12.
    slide = frame.loc["slide"]
    assert slide["eligible"] and slide["label"] == 0
    assert pd.isna(slide["lead_time_months"]) and pd.isna(slide["first_rule"])

    poor = frame.loc["poor"]
    assert poor["triggered_now"] and not poor["eligible"]
    assert poor["triggered_rule"] == "income_shortfall"
    assert pd.isna(poor["label"]) and pd.isna(poor["lead_time_months"])

    monitored = frame.loc["monitored"]
    assert monitored["under_monitoring"] and not monitored["eligible"] and pd.isna(monitored["label"])

    line_rise = frame.loc["line_rise"]
    assert line_rise["eligible"] and line_rise["label"] == 0


def test_lead_time_counts_months_from_the_as_of_month_to_the_first_firing() -> None:
    dataset = labelled_county().dataset()
    frame = labels_frame(dataset, dt.date(2022, 12, 1), horizon=6).set_index("household_id")
    # line_rise fires at 2023-01 (6,600 < 6,900): lead 1; slide fires at 2023-02: lead 2.
    assert frame.loc["line_rise", "label"] == 1 and frame.loc["line_rise", "lead_time_months"] == 1
    assert frame.loc["line_rise", "first_rule"] == "income_shortfall"
    assert frame.loc["slide", "label"] == 1 and frame.loc["slide", "lead_time_months"] == 2


def test_labels_are_undefined_when_the_horizon_runs_past_the_end_of_data() -> None:
    dataset = labelled_county().dataset()
    assert label_defined(dataset.policy, dt.date(2023, 6, 1), 6)
    assert not label_defined(dataset.policy, dt.date(2023, 7, 1), 6)
    defined = labels_frame(dataset, dt.date(2023, 6, 1), horizon=6)
    assert defined.loc[defined["eligible"], "label"].notna().all()
    late = labels_frame(dataset, dt.date(2023, 7, 1), horizon=6)
    assert late["label"].isna().all() and late["lead_time_months"].isna().all()
    # The present columns are still there for audits of eligibility alone.
    assert late["eligible"].any() and late["margin"].notna().all()


def test_labels_reject_as_of_months_outside_the_data_and_empty_horizons() -> None:
    dataset = labelled_county().dataset()
    with pytest.raises(ValueError, match="2024-01"):
        labels_frame(dataset, dt.date(2024, 1, 1))
    with pytest.raises(ValueError, match="horizon"):
        labels_frame(dataset, dt.date(2022, 1, 1), horizon=0)


def test_labels_for_months_stacks_the_single_month_frames() -> None:
    dataset = labelled_county().dataset()
    as_of = [dt.date(2022, 3, 1), dt.date(2022, 6, 1), dt.date(2023, 9, 1)]
    stacked = labels_for_months(dataset, as_of, horizon=6)
    expected = pd.concat([labels_frame(dataset, m, 6) for m in as_of], ignore_index=True)
    pd.testing.assert_frame_equal(stacked, expected)
    assert str(stacked["label"].dtype) == "Int8"
    assert len(labels_for_months(dataset, [], 6)) == 0


def present_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[
        ["household_id", "eligible", "under_monitoring", "triggered_now", "triggered_rule", "margin"]
    ]


def test_eligibility_and_margin_at_t_use_only_data_up_to_t() -> None:
    dataset = labelled_county().dataset()
    t = dt.date(2022, 6, 1)
    frame = labels_frame(dataset, t, 6)
    state_through_t = rule_state(build_panel(dataset, through=t), dataset.policy)
    column = state_through_t.column(t)
    np.testing.assert_array_equal(frame["eligible"], state_through_t.eligible[:, column])
    np.testing.assert_array_equal(frame["margin"], state_through_t.margin[:, column])
    np.testing.assert_array_equal(frame["triggered_now"], state_through_t.triggered[:, column])


# --- the same labels from Parquet and from CSV --------------------------------------------------------


def contract_frame(table: Table, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frame = frames.get(table.name, pd.DataFrame(columns=list(table.column_names)))
    return frame[list(table.column_names)]


def write_folder(county: County, folder: Path, fmt: str) -> Path:
    """The county as a dataset folder of the data contract, every table as Parquet or as CSV."""
    folder.mkdir()
    (folder / "policy.json").write_text(json.dumps(county.policy.to_json_dict()), encoding="utf-8")
    frames = county.frames()
    for table in TABLES:
        frame = contract_frame(table, frames)
        if fmt == "parquet":
            schema = pa.schema([(c.name, ARROW_TYPES[c.kind]) for c in table.columns])
            pq.write_table(
                pa.Table.from_pandas(frame, schema=schema, preserve_index=False),
                folder / f"{table.name}.parquet",
            )
        else:
            text = frame.copy()
            for column in table.columns:
                if column.kind == "bool":
                    text[column.name] = text[column.name].map({True: "true", False: "false"})
            text.to_csv(folder / f"{table.name}.csv", index=False)
    return folder


def test_parquet_and_csv_folders_give_the_same_labels_as_the_frames(tmp_path: Path) -> None:
    county = labelled_county()
    county.member("slide", joined="2022-02").member("poor", left="2023-03")
    as_of = [dt.date(2022, 6, 1), dt.date(2022, 12, 1), dt.date(2023, 9, 1)]
    from_frames = labels_for_months(county.dataset(), as_of, 6)
    for fmt in ("parquet", "csv"):
        dataset = load_dataset(write_folder(county, tmp_path / fmt, fmt))
        assert dataset.total_rejects == 0
        pd.testing.assert_frame_equal(labels_for_months(dataset, as_of, 6), from_frames)
    assert from_frames["label"].sum() > 0


def test_relapse_labels_writes_every_household_and_refuses_months_outside_the_data(tmp_path: Path) -> None:
    county = labelled_county()
    folder = write_folder(county, tmp_path / "county", "csv")
    out = tmp_path / "audit" / "labels.csv"
    result = CliRunner().invoke(
        app, ["labels", "--data", str(folder), "--as-of", "2022-06", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out, dtype={"household_id": str}, encoding="utf-8-sig").set_index("household_id")
    expected = labels_frame(county.dataset(), dt.date(2022, 6, 1)).set_index("household_id")
    assert list(written.index) == list(expected.index)
    assert (written["as_of"] == "2022-06").all()
    assert list(written["eligible"]) == list(expected["eligible"])
    assert written["label"].fillna(-1).tolist() == expected["label"].fillna(-1).tolist()
    assert "a rule fires now" in result.output

    late = CliRunner().invoke(
        app, ["labels", "--data", str(folder), "--as-of", "2023-10", "--out", str(tmp_path / "late.parquet")]
    )
    assert late.exit_code == 0, late.output
    assert pd.read_parquet(tmp_path / "late.parquet")["label"].isna().all()

    outside = CliRunner().invoke(
        app, ["labels", "--data", str(folder), "--as-of", "2024-01", "--out", str(tmp_path / "x.csv")]
    )
    assert outside.exit_code == 2
    assert "outside the data" in outside.output
    assert not (tmp_path / "x.csv").exists()


# --- point in time, on random counties --------------------------------------------------------------


def truncated(county: County, last: dt.date) -> County:
    """The county as its information system showed it at the end of month ``last``."""
    end_of_month = month_start(month_index(last) + 1)
    cut = County(policy=county.policy, households=list(county.households))
    cut.members = [
        {**m, "left_month": m["left_month"] if m["left_month"] and m["left_month"] <= last else None}
        for m in county.members
        if m["joined_month"] is None or m["joined_month"] <= last
    ]
    cut.income = [row for row in county.income if row["month"] <= last]
    cut.expenses = [row for row in county.expenses if row["date"] < end_of_month]
    cut.monitoring = [
        {
            **m,
            "eliminated_month": m["eliminated_month"]
            if m["eliminated_month"] and m["eliminated_month"] <= last
            else None,
        }
        for m in county.monitoring
        if m["identified_month"] <= last
    ]
    return cut


SHORT_POLICY = make_policy(data_end="2022-12")
SHORT_MONTHS = months_between("2021-01", "2022-12")
LONG_POLICY = make_policy(data_end="2023-06")
LONG_MONTHS = months_between("2021-01", "2023-06")
"""Six months longer than the rule state at one month reads (STATE_MONTHS)."""


@st.composite
def random_counties(draw: st.DrawFn, policy: Policy = SHORT_POLICY) -> County:
    months = months_between(format_month(policy.data_start), format_month(policy.data_end))
    optional_month = st.one_of(st.none(), st.sampled_from(months))
    county = County(policy=policy)
    for h in range(draw(st.integers(1, 4))):
        household_id = f"h{h}"
        county.households.append(household_id)
        for _ in range(draw(st.integers(0, 3))):
            county.members.append(
                {
                    "household_id": household_id,
                    "joined_month": draw(optional_month),
                    "left_month": draw(optional_month),
                }
            )
        level = draw(st.sampled_from([200.0, 450.0, 600.0, 1_000.0]))
        for m in months:
            if draw(st.booleans()) or draw(st.booleans()):
                amount = level * draw(st.sampled_from([0.2, 1.0, 1.0, 1.5])) - draw(
                    st.sampled_from([0.0, 0.0, 300.0])
                )
                county.income.append(
                    {"household_id": household_id, "month": m, "source": "business", "amount": amount}
                )
        for _ in range(draw(st.integers(0, 3))):
            day = draw(st.dates(months[0], month_start(month_index(months[-1]) + 1) - dt.timedelta(days=1)))
            amount = draw(st.sampled_from([500.0, 8_000.0, 30_000.0]))
            category = draw(st.sampled_from(["medical", "education", "other"]))
            county.expenses.append(
                {
                    "household_id": household_id,
                    "date": day,
                    "category": category,
                    "amount": amount,
                    "reimbursed": 0.0,
                }
            )
        for _ in range(draw(st.integers(0, 2))):
            identified = draw(st.sampled_from(months))
            eliminated = draw(optional_month)
            county.monitoring.append(
                {
                    "household_id": household_id,
                    "identified_month": identified,
                    "eliminated_month": eliminated
                    if eliminated is None or eliminated >= identified
                    else None,
                }
            )
    return county


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(county=random_counties(), t=st.sampled_from(SHORT_MONTHS[6:]), horizon=st.integers(1, 6))
def test_rows_dated_after_t_plus_h_never_change_labels_and_rows_after_t_never_change_the_present(
    county: County, t: dt.date, horizon: int
) -> None:
    full = labels_frame(county.dataset(), t, horizon)
    horizon_end = month_start(min(month_index(t) + horizon, month_index(SHORT_POLICY.data_end)))
    pd.testing.assert_frame_equal(labels_frame(truncated(county, horizon_end).dataset(), t, horizon), full)
    pd.testing.assert_frame_equal(
        present_columns(labels_frame(truncated(county, t).dataset(), t, horizon)), present_columns(full)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    county=random_counties(LONG_POLICY),
    t=st.sampled_from(LONG_MONTHS),
    months=st.integers(1, len(LONG_MONTHS) + 2),
)
def test_a_panel_of_the_last_months_is_the_whole_panels_last_columns_and_its_state_from_23_on(
    county: County, t: dt.date, months: int
) -> None:
    dataset = county.dataset()
    whole = build_panel(dataset, through=t)
    last = build_panel(dataset, through=t, months=months)

    kept = min(months, whole.n_months)
    assert last.n_months == kept
    assert last.first_month == whole.months[-kept]
    assert list(last.household_ids) == list(whole.household_ids)
    for name in ("size", "reported", "income", "rigid_expense", "under_monitoring"):
        np.testing.assert_array_equal(getattr(last, name), getattr(whole, name)[:, -kept:], err_msg=name)
    # Also for a household whose latest income row is before the panel's first month.
    np.testing.assert_array_equal(last.months_since_report(), whole.months_since_report())

    # The rule state looks back 11 months for I, E, r and the margin, and 23 for I_prev and the rules.
    state, whole_state = rule_state(last, dataset.policy), rule_state(whole, dataset.policy)
    exact_from = {
        name: (0 if kept == whole.n_months else lookback)
        for lookback, names in (
            (WINDOW_MONTHS - 1, ("r", "I", "E", "margin")),
            (STATE_MONTHS - 1, ("I_prev", "R1", "R2", "R3", "triggered", "risk_type", "eligible")),
        )
        for name in names
    }
    for name, first in exact_from.items():
        np.testing.assert_array_equal(
            getattr(state, name)[:, first:], getattr(whole_state, name)[:, -kept:][:, first:], err_msg=name
        )


def test_a_panel_of_no_months_is_an_error() -> None:
    with pytest.raises(ValueError, match="months must be at least 1, got 0"):
        build_panel(County().dataset(), months=0)
