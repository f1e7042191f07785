"""Reason templates: risk drivers turned into sentences a village cadre can act on.

Each template names one concrete fact about a household (its evidence, taken
from the household's own feature values), says it in Chinese and English, and
points to the support measure that answers it (:mod:`.measures`). A template
belongs to one driver family (see :mod:`models.explain`) and lists the features
whose TreeSHAP contributions count as support for it.

Each template stands right below the function that renders its sentences, so
the fact a guard checks and the words that state it are read together. Their
order in :data:`TEMPLATES` (by driver family) matters: within a family, an
earlier template wins a tie (:mod:`.selection`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .measures import MEASURES, Measure

Values = Mapping[str, np.ndarray]
"""Feature name -> one value per household (NaN when unknown or not a column)."""
Row = Mapping[str, float]
"""Feature name -> the value of one household."""


@dataclass(frozen=True)
class ReasonTemplate:
    """One fact a reason can state: when it holds, how it is said, which measure answers it."""

    code: str
    family: str
    drivers: tuple[str, ...]
    """Features whose contributions support this reason."""
    evidence: tuple[str, ...]
    """Features the sentences may quote."""
    applies: Callable[[Values], np.ndarray]
    """Vectorised guard: True where the fact the sentence states holds."""
    render: Callable[[Row], tuple[str, str]]
    """(Chinese, English) sentence for a household where ``applies`` holds."""
    measure: Measure
    notes: str = field(default="")


# -- formatting -----------------------------------------------------------------------------------


def _yuan(x: float) -> str:
    return f"{x:,.0f}"


def _n(x: float) -> str:
    return f"{round(x):d}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _times(x: float) -> str:
    return f"{round(x, 2) + 0.0:.2f}"  # + 0.0 turns a rounded -0.0 into 0.0


def _ok(x: float) -> bool:
    return x is not None and math.isfinite(x)


def _months_ago_zh(m: float) -> str:
    return "本月" if round(m) == 0 else f"{_n(m)}个月前"


def _months_ago_en(m: float) -> str:
    if round(m) == 0:
        return "this month"
    return "1 month ago" if round(m) == 1 else f"{_n(m)} months ago"


def _plural(x: float, one: str, many: str) -> str:
    return f"{_n(x)} {one if round(x) == 1 else many}"


def _finite(v: np.ndarray) -> np.ndarray:
    return np.asarray(np.isfinite(v), dtype=bool)


def _income_features(source: str) -> tuple[str, ...]:
    return tuple(
        f"income_{source}_{suffix}"
        for suffix in ("mean_3m", "mean_6m", "mean_12m", "slope_12m", "std_12m", "yoy_change_12m")
    )


def _yoy(row: Row, source: str) -> tuple[float, float]:
    """(previous 12 months' mean, last 12 months' mean) of a monthly income series."""
    current = row[f"income_{source}_mean_12m"]
    return current - row[f"income_{source}_yoy_change_12m"], current


# -- thresholds of the guards ----------------------------------------------------------------------

# A fall in a monthly income series is worth a sentence when it is at least
# this share of last year's level (and last year's level was positive).
_MATERIAL_DROP = 0.1


# Rigid expenses are named as the reason a margin is low when they cost at
# least this share of the monitoring line per household member.
_MATERIAL_RIGID_SHARE_OF_LINE = 0.1

# Net farm or business income counts as a loss from this many yuan a month.
_MATERIAL_LOSS = 10.0

_NEAR_TRIGGER_SHARE = 0.25
"""A quarter of income: about what losing one of two earners' work for half a year costs."""
_NEAR_TRIGGER_BILL = 20_000.0
"""The low end of a serious illness's out-of-pocket bill (docs/calibration.md)."""


# -- driver features shared by several templates ----------------------------------------------------

_MIGRANT_WAGE = _income_features("wage_migrant")
_LOCAL_WAGE = _income_features("wage_local")
_AGRICULTURE = _income_features("agriculture")
_BUSINESS = _income_features("business")
_TRANSFER_SOURCES = ("transfer_dibao", "transfer_pension", "transfer_subsidy", "transfer_other")
_TRANSFERS = tuple(f for s in _TRANSFER_SOURCES for f in _income_features(s))
_WORK_MONTHS = (
    "employment_months_12m",
    "employment_months_3m",
    "employment_months_per_member_12m",
    "employment_rate_12m",
    "employment_rate_change_12m",
)


_EVENT_DRIVERS = {
    kind: (f"events_{kind}_12m", f"months_since_{kind}")
    for kind in (
        "job_loss",
        "serious_illness",
        "chronic_illness",
        "accident_injury",
        "disability_certified",
        "college_entry",
        "natural_disaster",
        "house_damage",
        "crop_failure",
        "livestock_loss",
        "business_failure",
        "epidemic_lockdown",
        "death",
    )
}
_VILLAGE_SHOCK_SHARES = tuple(
    f"village_share_{kind}_{w}m"
    for kind in ("natural_disaster", "crop_failure", "livestock_loss", "job_loss", "any_shock")
    for w in (3, 12)
)
_ASSISTANCE = (
    "assist_months_since_ended",
    "assist_measures_12m",
    "assist_monthly_amount_now",
)
_MARGINS = (
    "income_line_ratio",
    "income_per_capita_12m",
    "rule_margin",
    "rule_margin_change_3m",
    "rule_margin_change_12m",
)
_INCOME_TOTALS = (
    "income_to_prev_income",
    "income_total_yoy_change_12m",
    "income_total_yoy_change_3m",
    "income_total_mean_12m",
    "income_total_mean_6m",
    "income_total_mean_3m",
    "income_total_slope_12m",
    "income_total_slope_6m",
    "income_total_min_12m",
)


def _template(
    code: str,
    family: str,
    drivers: Sequence[str],
    evidence: Sequence[str],
    applies: Callable[[Values], np.ndarray],
    render: Callable[[Row], tuple[str, str]],
    measure: str,
) -> ReasonTemplate:
    """A template with its drivers and evidence as tuples and its measure looked up by code."""
    return ReasonTemplate(code, family, tuple(drivers), tuple(evidence), applies, render, MEASURES[measure])


# -- guards and sentences shared by several templates -----------------------------------------------


def _income_down_applies(source: str) -> Callable[[Values], np.ndarray]:
    def applies(v: Values) -> np.ndarray:
        current = v[f"income_{source}_mean_12m"]
        change = v[f"income_{source}_yoy_change_12m"]
        before = current - change
        return _finite(current) & (before > 0) & (change <= -_MATERIAL_DROP * before)

    return applies


def _income_down_render(source: str, zh_name: str, en_name: str) -> Callable[[Row], tuple[str, str]]:
    def render(row: Row) -> tuple[str, str]:
        before, now = _yoy(row, source)
        zh = f"{zh_name}月均收入由上年的{_yuan(before)}元降到近12个月的{_yuan(now)}元"
        en = (
            f"{en_name} income fell from {_yuan(before)} to {_yuan(now)} yuan a month "
            "(last 12 months against the year before)"
        )
        recent = row.get(f"income_{source}_mean_3m", math.nan)
        if _ok(recent) and recent < now:
            zh += f"，近3个月仅{_yuan(recent)}元"
            en += f"; {_yuan(recent)} a month over the last 3 months"
        return zh, en

    return render


def _net_loss(source: str, zh_name: str, en_name: str) -> Callable[[Row], tuple[str, str]]:
    def render(row: Row) -> tuple[str, str]:
        loss = -row[f"income_{source}_mean_12m"]
        return (
            f"近12个月{zh_name}月均亏损{_yuan(loss)}元",
            f"{en_name} lost {_yuan(loss)} yuan a month on average over the last 12 months",
        )

    return render


def _event_count(kind: str, zh_name: str, en_one: str, en_many: str) -> Callable[[Row], tuple[str, str]]:
    def render(row: Row) -> tuple[str, str]:
        count, since = row[f"events_{kind}_12m"], row.get(f"months_since_{kind}", math.nan)
        zh = f"近12个月发生{zh_name}{_n(count)}次"
        en = f"{_plural(count, en_one, en_many)} in the last 12 months"
        if _ok(since):
            zh += f"，最近一次在{_months_ago_zh(since)}"
            en += f", the latest {_months_ago_en(since)}"
        return zh, en

    return render


# -- employment: work and what it pays ---------------------------------------------------------


def _migrant_work_down(row: Row) -> tuple[str, str]:
    before, now = row["migrants_year_ago"], row["migrants_now"]
    zh = f"外出务工人数由上年同月的{_n(before)}人减少到{_n(now)}人"
    en = f"Members working away fell from {_n(before)} a year ago to {_n(now)}"
    wage_before, wage_now = _yoy(row, "wage_migrant")
    if _ok(wage_before) and wage_before > 0 and wage_now <= (1 - _MATERIAL_DROP) * wage_before:
        zh += f"，外出务工月均收入由{_yuan(wage_before)}元降到{_yuan(wage_now)}元"
        en += f"; migrant wages fell from {_yuan(wage_before)} to {_yuan(wage_now)} yuan a month"
    return zh, en


MIGRANT_WORK_DOWN = _template(
    "migrant_work_down",
    "employment",
    ("migrants_now", "migrants_year_ago", "migrants_change_12m", *_MIGRANT_WAGE),
    (
        "migrants_year_ago",
        "migrants_now",
        "income_wage_migrant_mean_12m",
        "income_wage_migrant_yoy_change_12m",
    ),
    lambda v: v["migrants_year_ago"] > v["migrants_now"],
    _migrant_work_down,
    "employment_support",
)


def _employment_months_down(row: Row) -> tuple[str, str]:
    now = row["employment_rate_12m"]
    before = now - row["employment_rate_change_12m"]
    zh = f"近12个月家庭务工月数占比由上年的{_pct(before)}降到{_pct(now)}"
    en = f"Share of member-months in work fell from {_pct(before)} to {_pct(now)} over the last 12 months"
    months = row.get("employment_months_12m", math.nan)
    if _ok(months):
        zh += f"（共务工{_n(months)}个月）"
        en += f" ({_plural(months, 'month', 'months')} worked)"
    return zh, en


EMPLOYMENT_MONTHS_DOWN = _template(
    "employment_months_down",
    "employment",
    _WORK_MONTHS,
    ("employment_rate_12m", "employment_rate_change_12m", "employment_months_12m"),
    lambda v: _finite(v["employment_rate_12m"]) & (v["employment_rate_change_12m"] < 0),
    _employment_months_down,
    "employment_support",
)


MIGRANT_WAGES_DOWN = _template(
    "migrant_wages_down",
    "employment",
    _MIGRANT_WAGE,
    ("income_wage_migrant_mean_12m", "income_wage_migrant_yoy_change_12m", "income_wage_migrant_mean_3m"),
    _income_down_applies("wage_migrant"),
    _income_down_render("wage_migrant", "外出务工", "Migrant wage"),
    "employment_support",
)


LOCAL_WAGES_DOWN = _template(
    "local_wages_down",
    "employment",
    _LOCAL_WAGE,
    ("income_wage_local_mean_12m", "income_wage_local_yoy_change_12m", "income_wage_local_mean_3m"),
    _income_down_applies("wage_local"),
    _income_down_render("wage_local", "本地务工", "Local wage"),
    "employment_support",
)


def _job_loss(row: Row) -> tuple[str, str]:
    count, since = row["events_job_loss_12m"], row.get("months_since_job_loss", math.nan)
    zh = f"近12个月有{_n(count)}人次失业"
    en = f"{_plural(count, 'job loss', 'job losses')} in the last 12 months"
    if _ok(since):
        zh += f"，最近一次在{_months_ago_zh(since)}"
        en += f", the latest {_months_ago_en(since)}"
    return zh, en


JOB_LOSS_RECENT = _template(
    "job_loss_recent",
    "employment",
    _EVENT_DRIVERS["job_loss"],
    _EVENT_DRIVERS["job_loss"],
    lambda v: v["events_job_loss_12m"] > 0,
    _job_loss,
    "employment_support",
)


def _unemployed(row: Row) -> tuple[str, str]:
    now, months = row["unemployed_now"], row["unemployed_months_12m"]
    if _ok(now) and now > 0:
        zh = f"当月{_n(now)}人失业"
        en = f"{_plural(now, 'member is', 'members are')} unemployed this month"
        if _ok(months) and months > 0:
            zh += f"，近12个月累计失业{_n(months)}人月"
            en += f" ({_n(months)} member-months unemployed over the last 12 months)"
        return zh, en
    return (
        f"近12个月累计失业{_n(months)}人月",
        f"{_n(months)} member-months unemployed over the last 12 months",
    )


UNEMPLOYED_MEMBERS = _template(
    "unemployed_members",
    "employment",
    ("unemployed_now", "unemployed_months_12m"),
    ("unemployed_now", "unemployed_months_12m"),
    lambda v: (v["unemployed_now"] > 0) | (v["unemployed_months_12m"] > 0),
    _unemployed,
    "employment_support",
)


def _no_work(row: Row) -> tuple[str, str]:
    zh, en = "近12个月家庭无人务工", "Nobody in the household worked in the last 12 months"
    working_age = row.get("n_working_age", math.nan)
    if _ok(working_age) and working_age > 0:
        zh += f"（劳动年龄人口{_n(working_age)}人）"
        en += f" ({_plural(working_age, 'member', 'members')} of working age)"
    return zh, en


NO_WORK = _template(
    "no_work",
    "employment",
    (*_WORK_MONTHS, "migrants_now", "local_workers_now"),
    ("employment_months_12m", "n_working_age"),
    lambda v: v["employment_months_12m"] == 0,
    _no_work,
    "employment_support",
)


def _few_months_worked(row: Row) -> tuple[str, str]:
    x = row["employment_months_per_member_12m"]
    return (
        f"近12个月劳动力人均务工仅{x:.1f}个月，不足6个月",
        f"Working-age members worked only {x:.1f} months each over the last 12 months (target: 6 or more)",
    )


FEW_MONTHS_WORKED = _template(
    "few_months_worked",
    "employment",
    _WORK_MONTHS,
    ("employment_months_per_member_12m",),
    lambda v: (v["employment_months_per_member_12m"] > 0) & (v["employment_months_per_member_12m"] < 6),
    _few_months_worked,
    "employment_support",
)


# -- agriculture and business ------------------------------------------------------------------


AGRI_INCOME_DOWN = _template(
    "agri_income_down",
    "agriculture",
    _AGRICULTURE,
    ("income_agriculture_mean_12m", "income_agriculture_yoy_change_12m", "income_agriculture_mean_3m"),
    _income_down_applies("agriculture"),
    _income_down_render("agriculture", "种养业", "Net farm"),
    "industry_support",
)


def _crop_losses(row: Row) -> tuple[str, str]:
    crops, livestock = row["events_crop_failure_12m"], row["events_livestock_loss_12m"]
    parts_zh, parts_en = [], []
    if _ok(crops) and crops > 0:
        parts_zh.append(f"农作物歉收{_n(crops)}次")
        parts_en.append(_plural(crops, "crop failure", "crop failures"))
    if _ok(livestock) and livestock > 0:
        parts_zh.append(f"牲畜损失{_n(livestock)}次")
        parts_en.append(_plural(livestock, "livestock loss", "livestock losses"))
    return "近12个月" + "、".join(parts_zh), " and ".join(parts_en) + " in the last 12 months"


CROP_OR_LIVESTOCK_LOSS = _template(
    "crop_or_livestock_loss",
    "agriculture",
    (*_EVENT_DRIVERS["crop_failure"], *_EVENT_DRIVERS["livestock_loss"]),
    ("events_crop_failure_12m", "events_livestock_loss_12m"),
    lambda v: (v["events_crop_failure_12m"] > 0) | (v["events_livestock_loss_12m"] > 0),
    _crop_losses,
    "industry_support",
)


AGRI_LOSS = _template(
    "agri_loss",
    "agriculture",
    _AGRICULTURE,
    ("income_agriculture_mean_12m",),
    lambda v: v["income_agriculture_mean_12m"] <= -_MATERIAL_LOSS,
    _net_loss("agriculture", "种养业", "Farming"),
    "industry_support",
)


BUSINESS_INCOME_DOWN = _template(
    "business_income_down",
    "business",
    _BUSINESS,
    ("income_business_mean_12m", "income_business_yoy_change_12m", "income_business_mean_3m"),
    _income_down_applies("business"),
    _income_down_render("business", "经营", "Net business"),
    "industry_support",
)


def _business_sliding(row: Row) -> tuple[str, str]:
    change = -row["income_business_change_3m"]
    return (
        f"近3个月经营月均收入比前3个月减少{_yuan(change)}元",
        f"Net business income over the last 3 months was {_yuan(change)} yuan a month lower than before",
    )


BUSINESS_INCOME_SLIDING = _template(
    "business_income_sliding",
    "business",
    ("income_business_change_3m",),
    ("income_business_change_3m",),
    lambda v: v["income_business_change_3m"] <= -_MATERIAL_LOSS,
    _business_sliding,
    "industry_support",
)


BUSINESS_FAILURE = _template(
    "business_failure",
    "business",
    _EVENT_DRIVERS["business_failure"],
    _EVENT_DRIVERS["business_failure"],
    lambda v: v["events_business_failure_12m"] > 0,
    _event_count("business_failure", "经营失败", "business failure", "business failures"),
    "industry_support",
)


BUSINESS_LOSS = _template(
    "business_loss",
    "business",
    _BUSINESS,
    ("income_business_mean_12m",),
    lambda v: v["income_business_mean_12m"] <= -_MATERIAL_LOSS,
    _net_loss("business", "经营", "The business"),
    "industry_support",
)


# -- health ------------------------------------------------------------------------------------


def _serious_illness(row: Row) -> tuple[str, str]:
    count, since = row["events_serious_illness_12m"], row["months_since_serious_illness"]
    if _ok(count) and count > 0:
        zh = f"近12个月家中有{_n(count)}次大病"
        en = f"{_plural(count, 'serious illness', 'serious illnesses')} in the last 12 months"
        if _ok(since):
            zh += f"，最近一次在{_months_ago_zh(since)}"
            en += f", the latest {_months_ago_en(since)}"
    else:
        zh = f"{_months_ago_zh(since)}家中有人患大病"
        en = f"A member fell seriously ill {_months_ago_en(since)}"
    oop = row.get("medical_oop_12m", math.nan)
    if _ok(oop) and oop > 0:
        zh += f"，近12个月医疗自付{_yuan(oop)}元"
        en += f"; {_yuan(oop)} yuan paid out of pocket for care in the last 12 months"
    return zh, en


SERIOUS_ILLNESS_RECENT = _template(
    "serious_illness_recent",
    "health",
    _EVENT_DRIVERS["serious_illness"],
    ("events_serious_illness_12m", "months_since_serious_illness", "medical_oop_12m"),
    lambda v: (v["events_serious_illness_12m"] > 0) | (v["months_since_serious_illness"] <= 24),
    _serious_illness,
    "medical_assistance",
)


def _medical_oop(row: Row) -> tuple[str, str]:
    oop = row["medical_oop_12m"]
    zh = f"近12个月医疗自付费用{_yuan(oop)}元"
    en = f"{_yuan(oop)} yuan of medical costs paid out of pocket in the last 12 months"
    share = row.get("medical_oop_to_income_12m", math.nan)
    if _ok(share) and share > 0:
        zh += f"，占年收入的{_pct(share)}"
        en += f", {_pct(share)} of a year's income"
    reimbursed = row.get("medical_reimbursed_share_12m", math.nan)
    if _ok(reimbursed):
        zh += f"，报销比例{_pct(reimbursed)}"
        en += f" ({_pct(reimbursed)} reimbursed)"
    return zh, en


MEDICAL_OOP_HIGH = _template(
    "medical_oop_high",
    "health",
    (
        "medical_oop_3m",
        "medical_oop_6m",
        "medical_oop_12m",
        "medical_oop_24m",
        "medical_bills_12m",
        "medical_reimbursed_share_12m",
        "medical_oop_to_income_12m",
    ),
    ("medical_oop_12m", "medical_oop_to_income_12m", "medical_reimbursed_share_12m"),
    lambda v: (
        (v["medical_oop_12m"] >= 1000)
        | ((v["medical_oop_12m"] > 0) & (v["medical_oop_to_income_12m"] >= 0.1))
    ),
    _medical_oop,
    "medical_assistance",
)


ACCIDENT_INJURY_RECENT = _template(
    "accident_injury_recent",
    "health",
    _EVENT_DRIVERS["accident_injury"],
    _EVENT_DRIVERS["accident_injury"],
    lambda v: v["events_accident_injury_12m"] > 0,
    _event_count("accident_injury", "意外伤害", "accident injury", "accident injuries"),
    "medical_assistance",
)


def _chronic(row: Row) -> tuple[str, str]:
    n = row["n_chronic"]
    return f"家中{_n(n)}人患慢性病", f"{_plural(n, 'member has', 'members have')} a chronic disease"


CHRONIC_ILLNESS = _template(
    "chronic_illness",
    "health",
    ("n_chronic", *_EVENT_DRIVERS["chronic_illness"]),
    ("n_chronic",),
    lambda v: v["n_chronic"] > 0,
    _chronic,
    "medical_assistance",
)


# -- disability --------------------------------------------------------------------------------


def _disability(row: Row) -> tuple[str, str]:
    n, severe = row["n_disabled"], row.get("n_severely_disabled", math.nan)
    zh = f"家中有{_n(n)}名残疾人"
    en = f"{_plural(n, 'member has', 'members have')} a disability"
    if _ok(severe) and severe > 0:
        zh += f"，其中重度（一、二级）{_n(severe)}人"
        en += f", {_n(severe)} severe (grade 1 or 2)"
    new = row.get("events_disability_certified_12m", math.nan)
    if _ok(new) and new > 0:
        zh += f"，近12个月新认定{_n(new)}次"
        en += f"; {_plural(new, 'certification', 'certifications')} in the last 12 months"
    return zh, en


DISABILITY = _template(
    "disability",
    "disability",
    (
        "n_disabled",
        "n_severely_disabled",
        "disability_severity_max",
        *_EVENT_DRIVERS["disability_certified"],
    ),
    ("n_disabled", "n_severely_disabled", "events_disability_certified_12m"),
    lambda v: v["n_disabled"] > 0,
    _disability,
    "disability_subsidy",
)


# -- education ---------------------------------------------------------------------------------


def _college(row: Row) -> tuple[str, str]:
    n = row["events_college_entry_12m"]
    zh = f"近12个月有{_n(n)}人考上大学"
    en = f"{_plural(n, 'member', 'members')} entered college in the last 12 months"
    oop = row.get("education_oop_12m", math.nan)
    if _ok(oop) and oop > 0:
        zh += f"，教育自付支出{_yuan(oop)}元"
        en += f"; {_yuan(oop)} yuan of education costs paid"
    return zh, en


COLLEGE_ENTRY = _template(
    "college_entry",
    "education",
    _EVENT_DRIVERS["college_entry"],
    ("events_college_entry_12m", "education_oop_12m"),
    lambda v: v["events_college_entry_12m"] > 0,
    _college,
    "education_subsidy",
)


def _education_costs(row: Row) -> tuple[str, str]:
    oop = row["education_oop_12m"]
    zh = f"近12个月教育自付支出{_yuan(oop)}元"
    en = f"{_yuan(oop)} yuan of education costs paid out of pocket in the last 12 months"
    share = row.get("education_oop_to_income_12m", math.nan)
    if _ok(share) and share > 0:
        zh += f"，占年收入的{_pct(share)}"
        en += f", {_pct(share)} of a year's income"
    return zh, en


EDUCATION_COSTS = _template(
    "education_costs",
    "education",
    ("education_oop_3m", "education_oop_12m", "education_oop_24m", "education_oop_to_income_12m"),
    ("education_oop_12m", "education_oop_to_income_12m"),
    lambda v: v["education_oop_12m"] > 0,
    _education_costs,
    "education_subsidy",
)


def _students(row: Row) -> tuple[str, str]:
    n = row["students_now"]
    return f"家中有{_n(n)}名在校学生", f"{_plural(n, 'member is a student', 'members are students')}"


STUDENTS = _template(
    "students",
    "education",
    ("students_now", "n_school_age"),
    ("students_now",),
    lambda v: v["students_now"] > 0,
    _students,
    "education_subsidy",
)


# -- loans -------------------------------------------------------------------------------------


def _loan_overdue_rising(row: Row) -> tuple[str, str]:
    rise, now = row["loan_overdue_trend_3m"], row["loan_overdue_days_now"]
    return (
        f"贷款逾期天数近3个月增加{_n(rise)}天，目前逾期{_n(now)}天",
        f"Loan arrears grew by {_n(rise)} days over 3 months; now {_n(now)} days overdue",
    )


LOAN_OVERDUE_RISING = _template(
    "loan_overdue_rising",
    "loans",
    ("loan_overdue_trend_3m", "loan_overdue_days_now"),
    ("loan_overdue_trend_3m", "loan_overdue_days_now"),
    lambda v: (v["loan_overdue_trend_3m"] > 0) & (v["loan_overdue_days_now"] > 0),
    _loan_overdue_rising,
    "loan_relief",
)


def _loan_overdue(row: Row) -> tuple[str, str]:
    months, worst = row["loan_overdue_months_12m"], row.get("loan_overdue_days_max_12m", math.nan)
    zh = f"近12个月有{_n(months)}个月贷款逾期"
    en = f"A loan was overdue in {_plural(months, 'month', 'months')} of the last 12"
    if _ok(worst) and worst > 0:
        zh += f"，最长逾期{_n(worst)}天"
        en += f", at worst {_n(worst)} days"
    return zh, en


LOAN_OVERDUE = _template(
    "loan_overdue",
    "loans",
    ("loan_overdue_months_12m", "loan_overdue_days_max_12m", "loan_overdue_days_now"),
    ("loan_overdue_months_12m", "loan_overdue_days_max_12m"),
    lambda v: v["loan_overdue_months_12m"] > 0,
    _loan_overdue,
    "loan_relief",
)


def _loan_due(row: Row) -> tuple[str, str]:
    due, months = row["loan_balance_due_6m"], row.get("loan_months_to_maturity", math.nan)
    if _ok(months) and months <= 0:
        return f"{_yuan(due)}元贷款已到期未还清", f"{_yuan(due)} yuan of loans are due and not yet repaid"
    if _ok(months):
        return (
            f"{_yuan(due)}元贷款将在{_n(months)}个月内到期",
            f"{_yuan(due)} yuan of loans fall due within {_plural(months, 'month', 'months')}",
        )
    return f"{_yuan(due)}元贷款将在6个月内到期", f"{_yuan(due)} yuan of loans fall due within 6 months"


LOAN_DUE_SOON = _template(
    "loan_due_soon",
    "loans",
    ("loan_balance_due_6m", "loan_months_to_maturity", "loan_balance_due_3m", "loan_due_6m_to_income"),
    ("loan_balance_due_6m", "loan_months_to_maturity"),
    lambda v: v["loan_balance_due_6m"] > 0,
    _loan_due,
    "loan_relief",
)


def _loan_burden(row: Row) -> tuple[str, str]:
    balance, ratio = row["loan_balance_total"], row.get("loan_balance_to_income", math.nan)
    zh, en = f"贷款余额{_yuan(balance)}元", f"{_yuan(balance)} yuan of loans outstanding"
    if _ok(ratio) and ratio > 0:
        zh += f"，为年收入的{_times(ratio)}倍"
        en += f", {_times(ratio)} times a year's income"
    return zh, en


LOAN_BURDEN_HIGH = _template(
    "loan_burden_high",
    "loans",
    (
        "loan_balance_total",
        "loan_balance_microcredit",
        "loan_balance_informal",
        "loan_balance_to_income",
        "loan_interest_annual",
        "loan_count_open",
    ),
    ("loan_balance_total", "loan_balance_to_income"),
    lambda v: v["loan_balance_total"] > 0,
    _loan_burden,
    "loan_relief",
)


def _new_loans(row: Row) -> tuple[str, str]:
    n, principal = row["loans_issued_12m"], row.get("loan_principal_issued_12m", math.nan)
    zh = f"近12个月新增贷款{_n(n)}笔"
    en = f"{_plural(n, 'new loan', 'new loans')} in the last 12 months"
    if _ok(principal) and principal > 0:
        zh += f"，共{_yuan(principal)}元"
        en += f", {_yuan(principal)} yuan in total"
    return zh, en


NEW_LOANS = _template(
    "new_loans",
    "loans",
    ("loans_issued_12m", "loan_principal_issued_12m"),
    ("loans_issued_12m", "loan_principal_issued_12m"),
    lambda v: v["loans_issued_12m"] > 0,
    _new_loans,
    "loan_relief",
)


# -- shocks ------------------------------------------------------------------------------------


def _disaster(row: Row) -> tuple[str, str]:
    count, loss = row["events_natural_disaster_12m"], row.get("disaster_loss_12m", math.nan)
    if _ok(count) and count > 0:
        zh = f"近12个月遭受自然灾害{_n(count)}次"
        en = f"Hit by {_plural(count, 'natural disaster', 'natural disasters')} in the last 12 months"
    else:
        zh, en = "近12个月遭受自然灾害", "Hit by a natural disaster in the last 12 months"
    if _ok(loss) and loss > 0:
        zh += f"，损失约{_yuan(loss)}元"
        en += f", losing about {_yuan(loss)} yuan"
    return zh, en


DISASTER_RECENT = _template(
    "disaster_recent",
    "shocks",
    (*_EVENT_DRIVERS["natural_disaster"], "disaster_loss_12m"),
    ("events_natural_disaster_12m", "disaster_loss_12m"),
    lambda v: (v["events_natural_disaster_12m"] > 0) | (v["disaster_loss_12m"] > 0),
    _disaster,
    "temporary_relief",
)


HOUSE_DAMAGE = _template(
    "house_damage",
    "shocks",
    _EVENT_DRIVERS["house_damage"],
    _EVENT_DRIVERS["house_damage"],
    lambda v: v["events_house_damage_12m"] > 0,
    _event_count("house_damage", "房屋受损", "case of house damage", "cases of house damage"),
    "housing_renovation",
)


def _shock_costs(row: Row) -> tuple[str, str]:
    oop = row["other_rigid_oop_12m"]
    return (
        f"近12个月灾害、意外、丧葬自付支出{_yuan(oop)}元",
        f"{_yuan(oop)} yuan paid for disasters, accidents and funerals in the last 12 months",
    )


SHOCK_COSTS = _template(
    "shock_costs",
    "shocks",
    ("other_rigid_oop_12m",),
    ("other_rigid_oop_12m",),
    lambda v: v["other_rigid_oop_12m"] > 0,
    _shock_costs,
    "temporary_relief",
)


EPIDEMIC_LOCKDOWN = _template(
    "epidemic_lockdown",
    "shocks",
    _EVENT_DRIVERS["epidemic_lockdown"],
    _EVENT_DRIVERS["epidemic_lockdown"],
    lambda v: v["events_epidemic_lockdown_12m"] > 0,
    _event_count("epidemic_lockdown", "疫情封控", "epidemic lockdown", "epidemic lockdowns"),
    "temporary_relief",
)


def _recent_events(row: Row) -> tuple[str, str]:
    n, severity = row["events_total_12m"], row.get("event_max_severity_12m", math.nan)
    zh = f"近12个月发生各类事件{_n(n)}次"
    en = f"{_plural(n, 'event', 'events')} reported in the last 12 months"
    if _ok(severity) and severity > 0:
        zh += f"，最高严重程度{_n(severity)}级"
        en += f", the most severe at level {_n(severity)} of 3"
    return zh, en


RECENT_EVENTS = _template(
    "recent_events",
    "shocks",
    ("events_total_3m", "events_total_12m", "event_max_severity_12m"),
    ("events_total_12m", "event_max_severity_12m"),
    lambda v: v["events_total_12m"] > 0,
    _recent_events,
    "follow_up_visit",
)


# -- household ---------------------------------------------------------------------------------


def _dependants(row: Row) -> tuple[str, str]:
    elders, children = row["n_elders"], row["n_children"]
    parts_zh, parts_en = [], []
    if elders > 0:
        parts_zh.append(f"65岁以上老人{_n(elders)}人")
        parts_en.append(f"{_plural(elders, 'member', 'members')} aged 65+")
    if children > 0:
        parts_zh.append(f"16岁以下儿童{_n(children)}人")
        parts_en.append(f"{_plural(children, 'child', 'children')} under 16")
    zh, en = "家中有" + "、".join(parts_zh), " and ".join(parts_en)
    working = row.get("n_working_age", math.nan)
    if _ok(working):
        zh += f"，劳动年龄人口{_n(working)}人"
        en += f", {_n(working)} of working age"
    return zh, en[0].upper() + en[1:]


ELDERLY_DEPENDANTS = _template(
    "elderly_dependants",
    "household",
    ("n_elders", "n_children", "dependency_ratio", "n_working_age", "household_size"),
    ("n_elders", "n_children", "n_working_age"),
    lambda v: (v["n_elders"] + v["n_children"]) > 0,
    _dependants,
    "dibao_review",
)


def _members_left(row: Row) -> tuple[str, str]:
    left, deaths = row.get("members_left_12m", math.nan), row.get("events_death_12m", math.nan)
    if _ok(left) and left > 0:
        zh = f"近12个月家庭减少{_n(left)}人"
        en = f"{_plural(left, 'member', 'members')} left the household in the last 12 months"
        if _ok(deaths) and deaths > 0:
            zh += f"（其中去世{_n(deaths)}人）"
            en += f" ({_n(deaths)} died)"
        return zh, en
    return (
        f"近12个月家中有{_n(deaths)}人去世",
        f"{_plural(deaths, 'member', 'members')} died in the last 12 months",
    )


MEMBER_LOSS = _template(
    "member_loss",
    "household",
    ("members_left_12m", *_EVENT_DRIVERS["death"]),
    ("members_left_12m", "events_death_12m"),
    lambda v: (v["members_left_12m"] > 0) | (v["events_death_12m"] > 0),
    _members_left,
    "temporary_relief",
)


def _weak_labour(row: Row) -> tuple[str, str]:
    weak, full = row["n_weak_or_no_labor"], row.get("n_full_labor", math.nan)
    zh = f"家中弱劳动力或无劳动力{_n(weak)}人"
    en = f"{_plural(weak, 'member has', 'members have')} weak or no capacity to work"
    if _ok(full):
        zh += f"，全劳动力{_n(full)}人"
        en += f"; {_n(full)} with full capacity"
    return zh, en


WEAK_LABOUR = _template(
    "weak_labour",
    "household",
    ("n_weak_or_no_labor", "n_full_labor"),
    ("n_weak_or_no_labor", "n_full_labor"),
    lambda v: v["n_weak_or_no_labor"] > 0,
    _weak_labour,
    "public_welfare_post",
)


UNINSURED_MEMBERS = _template(
    "uninsured_members",
    "household",
    ("n_uninsured",),
    ("n_uninsured",),
    lambda v: v["n_uninsured"] > 0,
    lambda r: (
        f"家中{_n(r['n_uninsured'])}人未参加基本医疗保险",
        f"{_plural(r['n_uninsured'], 'member is', 'members are')} not in basic medical insurance",
    ),
    "insurance_enrolment",
)


UNSAFE_HOUSING = _template(
    "unsafe_housing",
    "household",
    ("housing_safe",),
    ("housing_safe",),
    lambda v: v["housing_safe"] == 0,
    lambda r: ("住房未鉴定为安全住房", "The dwelling is not certified safe"),
    "housing_renovation",
)


def _previously_monitored(row: Row) -> tuple[str, str]:
    times, since = row["times_identified"], row.get("months_since_eliminated", math.nan)
    zh = f"曾{_n(times)}次纳入监测"
    en = f"Identified as a monitoring subject {_plural(times, 'time', 'times')} before"
    if _ok(since):
        zh += f"，{_months_ago_zh(since)}风险消除"
        en += f"; risk marked eliminated {_months_ago_en(since)}"
    return zh, en


PREVIOUSLY_MONITORED = _template(
    "previously_monitored",
    "household",
    ("times_identified", "months_since_identified", "months_since_eliminated", "last_risk_type_code"),
    ("times_identified", "months_since_eliminated"),
    lambda v: v["times_identified"] > 0,
    _previously_monitored,
    "follow_up_visit",
)


def _recent_escape(row: Row) -> tuple[str, str]:
    years = row["years_since_escape"]
    if round(years) == 0:
        return "原建档立卡户，当年刚脱贫", "Formerly registered poor; declared out of poverty this year"
    return (
        f"原建档立卡户，脱贫{_n(years)}年",
        f"Formerly registered poor; out of poverty for {_plural(years, 'year', 'years')}",
    )


RECENT_ESCAPE = _template(
    "recent_escape",
    "household",
    ("registered_poor", "years_since_escape"),
    ("registered_poor", "years_since_escape"),
    # Within the five-year transition period after escaping poverty (过渡期).
    lambda v: (v["registered_poor"] == 1) & (v["years_since_escape"] >= 0) & (v["years_since_escape"] <= 5),
    _recent_escape,
    "follow_up_visit",
)


# -- income level, margins and transfers -------------------------------------------------------


def _income_near_line(row: Row) -> tuple[str, str]:
    per_capita, ratio = row["income_per_capita_12m"], row["income_line_ratio"]
    return (
        f"人均年收入约{_yuan(per_capita)}元，仅为监测线的{_times(ratio)}倍",
        f"Income per person is about {_yuan(per_capita)} yuan a year, "
        f"only {_times(ratio)} times the monitoring line",
    )


INCOME_NEAR_LINE = _template(
    "income_near_line",
    "income",
    _MARGINS,
    ("income_per_capita_12m", "income_line_ratio"),
    lambda v: _finite(v["income_per_capita_12m"]) & (v["income_line_ratio"] < 1.5),
    _income_near_line,
    "dibao_review",
)


def _rigid_margin(row: Row) -> tuple[str, str]:
    margin, share = row["rule_margin"], row.get("rigid_expense_to_prev_income", math.nan)
    if margin < 0:
        zh = f"扣除刚性支出后人均收入为负（监测线的{_times(margin)}倍）"
        en = f"Income per person net of rigid expenses is negative ({_times(margin)} times the line)"
    else:
        zh = f"扣除刚性支出后人均收入仅为监测线的{_times(margin)}倍"
        en = f"Income per person net of rigid expenses is only {_times(margin)} times the monitoring line"
    if _ok(share) and share > 0:
        zh = f"近12个月刚性支出相当于上年收入的{_pct(share)}，" + zh
        en = f"Rigid expenses equal {_pct(share)} of last year's income; " + en[0].lower() + en[1:]
    return zh, en


RIGID_MARGIN_LOW = _template(
    "rigid_margin_low",
    "income",
    ("rigid_margin_ratio", "rigid_expense_to_prev_income", "rule_margin"),
    ("rule_margin", "rigid_expense_to_prev_income", "income_line_ratio", "rigid_margin_ratio"),
    # Only when rigid expenses take a real bite (a tenth of the line per head or more)
    # out of income per head; otherwise income_near_line tells the story.
    lambda v: (
        (v["rule_margin"] < 1.5)
        & (v["income_line_ratio"] - v["rigid_margin_ratio"] >= _MATERIAL_RIGID_SHARE_OF_LINE)
    ),
    _rigid_margin,
    "dibao_review",
)


def _projected_below_line(row: Row) -> tuple[str, str]:
    projected, now = row["projected_margin_6m"], row["rule_margin"]
    return (
        f"按近3个月趋势，6个月后人均收入将由监测线的{_times(now)}倍降到{_times(projected)}倍",
        f"At the last 3 months' trend, income per person falls from {_times(now)} to "
        f"{_times(projected)} times the monitoring line within 6 months",
    )


PROJECTED_BELOW_LINE = _template(
    "projected_below_line",
    "income",
    ("projected_margin_6m", "rule_margin_change_3m"),
    ("projected_margin_6m", "rule_margin"),
    lambda v: (v["projected_margin_6m"] < 1) & (v["rule_margin"] > v["projected_margin_6m"]),
    _projected_below_line,
    "dibao_review",
)


def _projected_rule(row: Row) -> tuple[str, str]:
    months, lowest = row["projected_rule_months_6m"], row.get("projected_rule_margin_min_6m", math.nan)
    zh = f"按近3个月收入推算，未来6个月中有{_n(months)}个月将达到监测标准"
    en = (
        f"At the last 3 months' income, a monitoring rule would be met in "
        f"{_plural(months, 'month', 'months')} of the next 6"
    )
    if _ok(lowest):
        zh += f"（人均收入最低为监测线的{_times(lowest)}倍）"
        en += f" (income per person down to {_times(lowest)} times the line)"
    return zh, en


PROJECTED_RULE = _template(
    "projected_rule",
    "income",
    (
        "projected_rule_months_6m",
        "projected_rule_margin_min_6m",
        "projected_income_line_ratio_min_6m",
        "projected_income_to_prev_min_6m",
        "seasonal_projected_rule_margin_min_6m",
    ),
    ("projected_rule_months_6m", "projected_rule_margin_min_6m"),
    lambda v: v["projected_rule_months_6m"] > 0,
    _projected_rule,
    "dibao_review",
)


def _work_projected_rule(row: Row) -> tuple[str, str]:
    months = row["work_projected_rule_months_6m"]
    zh = f"按当月务工人数推算（不再务工的成员没有工资收入），未来6个月中有{_n(months)}个月将达到监测标准"
    en = (
        f"With only the members working this month earning wages, a monitoring rule would be met in "
        f"{_plural(months, 'month', 'months')} of the next 6"
    )
    return zh, en


WORK_PROJECTED_RULE = _template(
    "work_projected_rule",
    "income",
    ("work_projected_rule_months_6m", "work_projected_rule_margin_min_6m"),
    ("work_projected_rule_months_6m",),
    lambda v: v["work_projected_rule_months_6m"] > 0,
    _work_projected_rule,
    "employment_support",
)


def _near_income_trigger(row: Row) -> tuple[str, str]:
    share = row["income_loss_to_trigger_6m"]
    return (
        f"收入再减少{_pct(share)}，未来6个月内即达到监测标准",
        f"Losing {_pct(share)} of income would meet a monitoring rule within 6 months",
    )


NEAR_INCOME_TRIGGER = _template(
    "near_income_trigger",
    "income",
    ("income_loss_to_trigger_6m",),
    ("income_loss_to_trigger_6m",),
    lambda v: (v["income_loss_to_trigger_6m"] > 0) & (v["income_loss_to_trigger_6m"] < _NEAR_TRIGGER_SHARE),
    _near_income_trigger,
    "follow_up_visit",
)


def _near_rigid_trigger(row: Row) -> tuple[str, str]:
    bill = row["rigid_bill_to_trigger_6m"]
    return (
        f"未来6个月内再有{_yuan(bill)}元自付医疗、教育等刚性支出即达到监测标准",
        f"{_yuan(bill)} yuan more of out-of-pocket medical, education or other rigid costs within "
        "6 months would meet a monitoring rule",
    )


NEAR_RIGID_TRIGGER = _template(
    "near_rigid_trigger",
    "income",
    ("rigid_bill_to_trigger_6m",),
    ("rigid_bill_to_trigger_6m",),
    lambda v: (v["rigid_bill_to_trigger_6m"] > 0) & (v["rigid_bill_to_trigger_6m"] < _NEAR_TRIGGER_BILL),
    _near_rigid_trigger,
    "medical_assistance",
)


def _months_below_line(row: Row) -> tuple[str, str]:
    months = row["income_months_below_line_6m"]
    return (
        f"近6个月有{_n(months)}个月的收入折算全年人均低于监测线",
        f"In {_plural(months, 'month', 'months')} of the last 6, income per person at that month's rate "
        "was below the monitoring line",
    )


MONTHS_BELOW_LINE = _template(
    "months_below_line",
    "income",
    ("income_months_below_line_6m", "months_since_income_drop"),
    ("income_months_below_line_6m",),
    lambda v: v["income_months_below_line_6m"] > 0,
    _months_below_line,
    "follow_up_visit",
)


def _recent_income_below_line(row: Row) -> tuple[str, str]:
    margin = row["run_rate_margin"]
    return (
        f"按近3个月收入推算，扣除刚性支出后全年人均收入仅为监测线的{_times(margin)}倍",
        f"At the last 3 months' income, a year's income per person net of rigid expenses "
        f"would be {_times(margin)} times the monitoring line",
    )


RECENT_INCOME_BELOW_LINE = _template(
    "recent_income_below_line",
    "income",
    ("run_rate_margin", "income_total_mean_3m", "income_total_change_3m"),
    ("run_rate_margin",),
    lambda v: v["run_rate_margin"] < 1,
    _recent_income_below_line,
    "dibao_review",
)


def _income_down(row: Row) -> tuple[str, str]:
    ratio = row["income_to_prev_income"]
    zh = f"近12个月家庭收入降为上年的{_pct(ratio)}"
    en = f"Household income over the last 12 months fell to {_pct(ratio)} of the year before"
    return zh, en


INCOME_DOWN = _template(
    "income_down",
    "income",
    _INCOME_TOTALS,
    ("income_to_prev_income",),
    lambda v: (v["income_to_prev_income"] >= 0) & (v["income_to_prev_income"] < 0.95),
    _income_down,
    "follow_up_visit",
)


def _income_falling(row: Row) -> tuple[str, str]:
    change = -row["income_total_change_3m"]
    return (
        f"近3个月月均收入比前3个月减少{_yuan(change)}元",
        f"Income over the last 3 months was {_yuan(change)} yuan a month lower than in the 3 months before",
    )


INCOME_FALLING = _template(
    "income_falling",
    "income",
    (
        "income_total_change_3m",
        "income_total_slope_6m",
        "income_total_yoy_change_3m",
        "income_total_mean_3m",
    ),
    ("income_total_change_3m",),
    lambda v: v["income_total_change_3m"] < 0,
    _income_falling,
    "follow_up_visit",
)


def _rigid_expense(row: Row) -> tuple[str, str]:
    ratio = row["rigid_expense_to_prev_income"]
    return (
        f"近12个月刚性支出相当于上年收入的{_pct(ratio)}",
        f"Rigid expenses of the last 12 months equal {_pct(ratio)} of last year's income",
    )


RIGID_EXPENSE_HIGH = _template(
    "rigid_expense_high",
    "income",
    ("rigid_expense_to_prev_income", "rigid_margin_ratio"),
    ("rigid_expense_to_prev_income",),
    lambda v: v["rigid_expense_to_prev_income"] >= 0.2,
    _rigid_expense,
    "temporary_relief",
)


def _transfers_down(row: Row) -> tuple[str, str]:
    change = -sum(
        row[f"income_{s}_yoy_change_12m"]
        for s in _TRANSFER_SOURCES
        if _ok(row.get(f"income_{s}_yoy_change_12m", math.nan))
    )
    return (
        f"低保、养老金等转移性收入月均比上年减少{_yuan(change)}元",
        f"Transfers (dibao, pension, subsidies) fell by {_yuan(change)} yuan a month against the year before",
    )


def _transfers_change(v: Values) -> np.ndarray:
    total = np.zeros_like(v["income_transfer_dibao_yoy_change_12m"], dtype=np.float64)
    for s in _TRANSFER_SOURCES:
        total = total + np.nan_to_num(v[f"income_{s}_yoy_change_12m"], nan=0.0)
    return total


TRANSFERS_DOWN = _template(
    "transfers_down",
    "income",
    (*_TRANSFERS, "income_transfer_share_12m"),
    tuple(f"income_{s}_yoy_change_12m" for s in _TRANSFER_SOURCES),
    lambda v: _transfers_change(v) < 0,
    _transfers_down,
    "dibao_review",
)


# -- assistance --------------------------------------------------------------------------------


def _support_ended(row: Row) -> tuple[str, str]:
    months = row["assist_months_since_ended"]
    return (
        f"{_months_ago_zh(months)}有帮扶措施到期结束",
        f"A support measure ended {_months_ago_en(months)}",
    )


SUPPORT_ENDED = _template(
    "support_ended",
    "assistance",
    _ASSISTANCE,
    ("assist_months_since_ended",),
    lambda v: (v["assist_months_since_ended"] >= 0) & (v["assist_months_since_ended"] <= 12),
    _support_ended,
    "follow_up_visit",
)


# -- reporting ---------------------------------------------------------------------------------


def _missing_reports(row: Row) -> tuple[str, str]:
    missing, since = (
        row.get("income_missing_months_12m", math.nan),
        row.get("income_months_since_report", math.nan),
    )
    if _ok(missing) and missing > 0:
        zh = f"近12个月有{_n(missing)}个月未填报收入"
        en = f"No income was reported for {_plural(missing, 'month', 'months')} of the last 12"
        if _ok(since) and since > 0:
            zh += f"，最近一次填报在{_months_ago_zh(since)}"
            en += f"; last report {_months_ago_en(since)}"
        return zh, en
    return f"最近一次填报收入在{_months_ago_zh(since)}", f"Income was last reported {_months_ago_en(since)}"


MISSING_REPORTS = _template(
    "missing_reports",
    "reporting",
    (
        "income_reported_months_3m",
        "income_reported_months_12m",
        "income_missing_months_12m",
        "income_months_since_report",
    ),
    ("income_missing_months_12m", "income_months_since_report"),
    lambda v: (v["income_missing_months_12m"] > 0) | (v["income_months_since_report"] > 0),
    _missing_reports,
    "income_verification",
)


def _employment_unreported(row: Row) -> tuple[str, str]:
    n = row["employment_missing_now"]
    return (
        f"当月{_n(n)}名劳动年龄成员未填报就业状态",
        f"No work status reported this month for {_plural(n, 'working-age member', 'working-age members')}",
    )


EMPLOYMENT_UNREPORTED = _template(
    "employment_unreported",
    "reporting",
    ("employment_missing_now",),
    ("employment_missing_now",),
    lambda v: v["employment_missing_now"] > 0,
    _employment_unreported,
    "income_verification",
)


# -- location ----------------------------------------------------------------------------------


def _village_shocks(row: Row) -> tuple[str, str]:
    share = row["village_share_any_shock_12m"]
    return (
        f"本村近12个月{_pct(share)}的农户遭受灾害、歉收或失业等冲击",
        f"{_pct(share)} of the village's households were hit by a disaster, crop failure or job loss "
        "in the last 12 months",
    )


VILLAGE_SHOCKS = _template(
    "village_shocks",
    "location",
    _VILLAGE_SHOCK_SHARES,
    ("village_share_any_shock_12m",),
    lambda v: v["village_share_any_shock_12m"] > 0,
    _village_shocks,
    "village_screening",
)


def _village_monitored(row: Row) -> tuple[str, str]:
    share = row["village_share_under_monitoring"]
    return (
        f"本村{_pct(share)}的农户为监测对象",
        f"{_pct(share)} of the village's households are monitoring subjects",
    )


VILLAGE_MANY_MONITORED = _template(
    "village_many_monitored",
    "location",
    ("village_share_under_monitoring", "village_share_triggered"),
    ("village_share_under_monitoring",),
    lambda v: v["village_share_under_monitoring"] > 0,
    _village_monitored,
    "village_screening",
)


# -- every template, in order -----------------------------------------------------------------------

TEMPLATES: tuple[ReasonTemplate, ...] = (
    # employment: work and what it pays
    MIGRANT_WORK_DOWN,
    EMPLOYMENT_MONTHS_DOWN,
    MIGRANT_WAGES_DOWN,
    LOCAL_WAGES_DOWN,
    JOB_LOSS_RECENT,
    UNEMPLOYED_MEMBERS,
    NO_WORK,
    FEW_MONTHS_WORKED,
    # agriculture and business
    AGRI_INCOME_DOWN,
    CROP_OR_LIVESTOCK_LOSS,
    AGRI_LOSS,
    BUSINESS_INCOME_DOWN,
    BUSINESS_INCOME_SLIDING,
    BUSINESS_FAILURE,
    BUSINESS_LOSS,
    # health
    SERIOUS_ILLNESS_RECENT,
    MEDICAL_OOP_HIGH,
    ACCIDENT_INJURY_RECENT,
    CHRONIC_ILLNESS,
    # disability
    DISABILITY,
    # education
    COLLEGE_ENTRY,
    EDUCATION_COSTS,
    STUDENTS,
    # loans
    LOAN_OVERDUE_RISING,
    LOAN_OVERDUE,
    LOAN_DUE_SOON,
    LOAN_BURDEN_HIGH,
    NEW_LOANS,
    # shocks
    DISASTER_RECENT,
    HOUSE_DAMAGE,
    SHOCK_COSTS,
    EPIDEMIC_LOCKDOWN,
    RECENT_EVENTS,
    # household
    ELDERLY_DEPENDANTS,
    MEMBER_LOSS,
    WEAK_LABOUR,
    UNINSURED_MEMBERS,
    UNSAFE_HOUSING,
    PREVIOUSLY_MONITORED,
    RECENT_ESCAPE,
    # income level, margins and transfers
    INCOME_NEAR_LINE,
    RIGID_MARGIN_LOW,
    PROJECTED_BELOW_LINE,
    PROJECTED_RULE,
    WORK_PROJECTED_RULE,
    NEAR_INCOME_TRIGGER,
    NEAR_RIGID_TRIGGER,
    MONTHS_BELOW_LINE,
    RECENT_INCOME_BELOW_LINE,
    INCOME_DOWN,
    INCOME_FALLING,
    RIGID_EXPENSE_HIGH,
    TRANSFERS_DOWN,
    # assistance
    SUPPORT_ENDED,
    # reporting
    MISSING_REPORTS,
    EMPLOYMENT_UNREPORTED,
    # location
    VILLAGE_SHOCKS,
    VILLAGE_MANY_MONITORED,
)


def _no_single_driver(row: Row) -> tuple[str, str]:
    ratio = row["income_line_ratio"]
    zh_income = f"（人均收入为监测线的{_times(ratio)}倍）" if _ok(ratio) else ""
    en_income = f" (income {_times(ratio)} times the line)" if _ok(ratio) else ""
    return (
        f"多项较小因素叠加，没有单一突出原因{zh_income}；入户时请核实收入、支出和就业变化",
        f"Several small factors add up, none stands out{en_income}; "
        "check income, spending and work at the visit",
    )


NO_SINGLE_DRIVER = _template(
    "no_single_driver",
    "other",  # the driver family models.explain.OTHER_FAMILY: no single family
    (),
    ("income_line_ratio",),
    lambda v: np.ones(len(v["income_line_ratio"]), dtype=bool),
    _no_single_driver,
    "visit_check",
)
"""The reason of a household for which no driver family yields one (rule 5 of :mod:`.selection`)."""

TEMPLATES_BY_CODE: dict[str, ReasonTemplate] = {t.code: t for t in (*TEMPLATES, NO_SINGLE_DRIVER)}


def reason_catalogue() -> list[dict[str, str]]:
    """Every reason code with its family, the measure it points to and the features it quotes."""
    return [
        {
            "code": t.code,
            "family": t.family,
            "measure": t.measure.code,
            "measure_zh": t.measure.zh,
            "measure_en": t.measure.en,
            "evidence": ", ".join(t.evidence),
        }
        for t in TEMPLATES
    ]
