"""The household data contract, version 1, as data.

One declaration per table of ``docs/data-contract.md``: its columns,
their logical types, allowed values and keys. The loader validates against
these declarations, the generator's tests check its output against them, and
nothing else restates the contract.

Canonical in-memory types (DuckDB, after loading):
``str`` -> VARCHAR, ``month`` and ``date`` -> DATE (months on the 1st),
``money`` and ``float`` -> DOUBLE, ``int`` -> BIGINT, ``bool`` -> BOOLEAN,
``enum`` -> VARCHAR holding one of the declared lower-case values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["str", "month", "date", "money", "float", "int", "bool", "enum"]

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    nullable: bool = False
    values: tuple[str, ...] = ()
    """Allowed values of an ``enum`` column."""
    minimum: float | None = None
    maximum: float | None = None
    digits: int | None = None
    """Exact number of decimal digits of an administrative code."""


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    target: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    unique: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    may_be_empty: bool = True
    household_column: str | None = "household_id"
    """Column that ties a row to a household, for reporting affected households."""
    notes: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


INCOME_SOURCES = (
    "wage_local",
    "wage_migrant",
    "agriculture",
    "business",
    "property",
    "transfer_dibao",
    "transfer_pension",
    "transfer_subsidy",
    "transfer_other",
)
NET_INCOME_SOURCES = ("business", "agriculture")
"""Sources whose amount is net and may be negative."""

EMPLOYMENT_STATUSES = (
    "migrant",
    "local_wage",
    "public_welfare_post",
    "self_employed",
    "farming",
    "unemployed",
    "student",
    "not_in_labor_force",
)
EMPLOYED_STATUSES = ("migrant", "local_wage", "public_welfare_post", "self_employed")

EXPENSE_CATEGORIES = ("medical", "education", "disaster", "accident", "funeral", "other")
RIGID_EXPENSE_CATEGORIES = ("medical", "education", "disaster", "accident", "funeral")

EVENT_KINDS = (
    "serious_illness",
    "chronic_illness",
    "disability_certified",
    "death",
    "birth",
    "marriage_in",
    "marriage_out",
    "college_entry",
    "natural_disaster",
    "house_damage",
    "accident_injury",
    "job_loss",
    "business_failure",
    "crop_failure",
    "livestock_loss",
    "epidemic_lockdown",
)

LOAN_KINDS = ("poverty_microcredit", "bank", "informal")

ASSISTANCE_MEASURES = (
    "dibao",
    "temporary_relief",
    "medical_assistance",
    "public_welfare_post",
    "employment_training",
    "industry_subsidy",
    "microcredit_interest_subsidy",
    "education_subsidy",
    "housing_renovation",
    "insurance_payout",
)

MONITORING_CATEGORIES = ("unstable_escaped", "marginal", "sudden_hardship")
RISK_TYPES = ("income_shortfall", "rigid_expenditure", "income_drop")
PRIMARY_CAUSES = (
    "illness",
    "disability",
    "education",
    "disaster",
    "accident",
    "employment",
    "industry",
    "other",
)

TERRAINS = ("plain", "hill", "mountain")
SEXES = ("f", "m")
RELATIONS = ("head", "spouse", "child", "parent", "grandchild", "sibling", "other")
EDUCATION_LEVELS = ("none", "primary", "junior", "senior", "vocational", "college")
LABOR_CAPACITIES = ("full", "weak", "none")


HOUSEHOLDS = Table(
    "households",
    (
        Column("household_id", "str"),
        Column("county_code", "str", digits=6),
        Column("township_code", "str", digits=9),
        Column("village_code", "str", digits=12),
        Column("registered_poor", "bool"),
        Column("escape_year", "int", nullable=True),
        Column("terrain", "enum", values=TERRAINS),
        Column("relocated", "bool"),
        Column("housing_safe", "bool"),
        Column("cultivated_land_mu", "float", minimum=0.0),
    ),
    unique=(("household_id",),),
    may_be_empty=False,
    notes=("township_code starts with county_code", "village_code starts with township_code"),
)

MEMBERS = Table(
    "members",
    (
        Column("member_id", "str"),
        Column("household_id", "str"),
        Column("birth_year", "int"),
        Column("sex", "enum", values=SEXES),
        Column("relation", "enum", values=RELATIONS),
        Column("education", "enum", values=EDUCATION_LEVELS),
        Column("labor_capacity", "enum", values=LABOR_CAPACITIES),
        Column("disability_grade", "int", minimum=0, maximum=4),
        Column("chronic_disease", "bool"),
        Column("medical_insurance", "bool"),
        Column("joined_month", "month", nullable=True),
        Column("left_month", "month", nullable=True),
    ),
    unique=(("member_id",),),
    foreign_keys=(ForeignKey("household_id", "households", "household_id"),),
    may_be_empty=False,
)

INCOME = Table(
    "income",
    (
        Column("household_id", "str"),
        Column("month", "month"),
        Column("source", "enum", values=INCOME_SOURCES),
        Column("amount", "money"),
    ),
    unique=(("household_id", "month", "source"),),
    foreign_keys=(ForeignKey("household_id", "households", "household_id"),),
    notes=("amount >= 0 except for business and agriculture",),
)

EMPLOYMENT = Table(
    "employment",
    (
        Column("member_id", "str"),
        Column("month", "month"),
        Column("status", "enum", values=EMPLOYMENT_STATUSES),
    ),
    unique=(("member_id", "month"),),
    foreign_keys=(ForeignKey("member_id", "members", "member_id"),),
    household_column=None,
)

EXPENSES = Table(
    "expenses",
    (
        Column("household_id", "str"),
        Column("member_id", "str", nullable=True),
        Column("date", "date"),
        Column("category", "enum", values=EXPENSE_CATEGORIES),
        Column("amount", "money", minimum=0.0),
        Column("reimbursed", "money", minimum=0.0),
    ),
    foreign_keys=(
        ForeignKey("household_id", "households", "household_id"),
        ForeignKey("member_id", "members", "member_id"),
    ),
    notes=("reimbursed <= amount",),
)

EVENTS = Table(
    "events",
    (
        Column("household_id", "str"),
        Column("member_id", "str", nullable=True),
        Column("date", "date"),
        Column("kind", "enum", values=EVENT_KINDS),
        Column("severity", "int", minimum=1, maximum=3),
        Column("value", "float", nullable=True),
    ),
    foreign_keys=(
        ForeignKey("household_id", "households", "household_id"),
        ForeignKey("member_id", "members", "member_id"),
    ),
)

LOANS = Table(
    "loans",
    (
        Column("loan_id", "str"),
        Column("household_id", "str"),
        Column("kind", "enum", values=LOAN_KINDS),
        Column("issued_month", "month"),
        Column("principal", "money", minimum=0.0),
        Column("term_months", "int", minimum=1),
        Column("annual_rate", "float", minimum=0.0),
    ),
    unique=(("loan_id",),),
    foreign_keys=(ForeignKey("household_id", "households", "household_id"),),
    notes=("principal > 0",),
)

LOAN_STATUS = Table(
    "loan_status",
    (
        Column("loan_id", "str"),
        Column("month", "month"),
        Column("balance", "money", minimum=0.0),
        Column("overdue_days", "int", minimum=0),
    ),
    unique=(("loan_id", "month"),),
    foreign_keys=(ForeignKey("loan_id", "loans", "loan_id"),),
    household_column=None,
)

ASSISTANCE = Table(
    "assistance",
    (
        Column("household_id", "str"),
        Column("measure", "enum", values=ASSISTANCE_MEASURES),
        Column("start_month", "month"),
        Column("end_month", "month", nullable=True),
        Column("monthly_amount", "money", minimum=0.0),
    ),
    foreign_keys=(ForeignKey("household_id", "households", "household_id"),),
    notes=("end_month >= start_month when given",),
)

MONITORING = Table(
    "monitoring",
    (
        Column("household_id", "str"),
        Column("identified_month", "month"),
        Column("category", "enum", values=MONITORING_CATEGORIES),
        Column("risk_type", "enum", values=RISK_TYPES),
        Column("primary_cause", "enum", values=PRIMARY_CAUSES),
        Column("eliminated_month", "month", nullable=True),
    ),
    foreign_keys=(ForeignKey("household_id", "households", "household_id"),),
    notes=("eliminated_month >= identified_month when given",),
)

TABLES: tuple[Table, ...] = (
    HOUSEHOLDS,
    MEMBERS,
    INCOME,
    EMPLOYMENT,
    EXPENSES,
    EVENTS,
    LOANS,
    LOAN_STATUS,
    ASSISTANCE,
    MONITORING,
)
TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def month_index(day: dt.date) -> int:
    """Months since year 0: consecutive months differ by one, across years."""
    return day.year * 12 + day.month - 1


def month_start(index: int) -> dt.date:
    """The first day of the month with the given :func:`month_index`."""
    return dt.date(index // 12, index % 12 + 1, 1)


def parse_month(text: str) -> dt.date:
    """``YYYY-MM`` or ``YYYY-MM-DD`` to the first day of that month.

    Raises ``ValueError`` with the offending text otherwise.
    """
    text = text.strip()
    try:
        if len(text) == 7:
            day = dt.datetime.strptime(text, "%Y-%m").date()
        else:
            day = dt.datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"{text!r} is not a month (YYYY-MM or YYYY-MM-DD)") from None
    return day.replace(day=1)


def format_month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"
