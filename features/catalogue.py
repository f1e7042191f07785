"""The feature catalogue: every column :func:`build_features` returns, explained.

One :class:`FeatureSpec` per feature, in the column order of the feature table:
its unit, the window it looks back over, the driver family it belongs to (SHAP
contributions are summed by family to name a household's risk drivers), a plain
English meaning and a short Chinese label a village cadre can read.

Windows are counted back from the as-of month t, which is included: "3m" is
t-2 .. t, "12m" is t-11 .. t, "prev 12m" is t-23 .. t-12. Only records dated up
to the end of month t are ever used.

Categorical facts are integer codes (``codes`` says which), never the pandas
``category`` dtype. A feature that cannot be known is NaN; a count or amount of
things that did not happen (no loan, no bill, no event) is a real 0.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Literal, get_args

from rich.table import Table

from .contract import (
    ASSISTANCE_MEASURES,
    EDUCATION_LEVELS,
    EVENT_KINDS,
    INCOME_SOURCES,
    RISK_TYPES,
    TERRAINS,
)

CATALOGUE_VERSION = "1.1"
"""Bump when a feature is added, removed, renamed or its definition changes."""

Family = Literal[
    "income",
    "employment",
    "health",
    "disability",
    "education",
    "loans",
    "shocks",
    "household",
    "assistance",
    "reporting",
    "location",
]
FAMILIES: tuple[Family, ...] = get_args(Family)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    unit: str
    window: str
    family: Family
    meaning: str
    label_zh: str
    codes: str = ""
    """For integer-coded features: the stable code of each value."""
    categorical: bool = False
    """Unordered codes a model should split as categories (ordered codes such as education are not)."""


def _codes(values: tuple[str, ...], start: int = 0) -> str:
    return ", ".join(f"{i}={v}" for i, v in enumerate(values, start=start))


TERRAIN_CODES: dict[str, int] = {v: i for i, v in enumerate(TERRAINS)}
EDUCATION_CODES: dict[str, int] = {v: i for i, v in enumerate(EDUCATION_LEVELS)}
RISK_TYPE_CODES: dict[str, int] = {v: i for i, v in enumerate(RISK_TYPES, start=1)}
"""0 is kept for "never identified"."""

WINDOWS = (3, 6, 12)
"""Look-back windows in months for income levels."""

HISTORY_MONTHS = 24
"""Months the features look back on, the as-of month included (the 24-month windows and the
12 months before last year's)."""

INCOME_SOURCE_EN: dict[str, str] = {
    "wage_local": "local wage",
    "wage_migrant": "migrant wage",
    "agriculture": "net agriculture",
    "business": "net business",
    "property": "property",
    "transfer_dibao": "minimum-living allowance (dibao)",
    "transfer_pension": "pension",
    "transfer_subsidy": "subsidy transfer",
    "transfer_other": "other transfer",
}
INCOME_SOURCE_ZH: dict[str, str] = {
    "wage_local": "本地务工",
    "wage_migrant": "外出务工",
    "agriculture": "种养业",
    "business": "经营",
    "property": "财产性",
    "transfer_dibao": "低保金",
    "transfer_pension": "养老金",
    "transfer_subsidy": "补贴性",
    "transfer_other": "其他转移性",
}

EVENT_EN: dict[str, str] = {
    "serious_illness": "serious illness",
    "chronic_illness": "chronic illness diagnosed",
    "disability_certified": "disability certified",
    "death": "death of a member",
    "birth": "birth",
    "marriage_in": "marriage into the household",
    "marriage_out": "marriage out of the household",
    "college_entry": "college entry",
    "natural_disaster": "natural disaster",
    "house_damage": "house damage",
    "accident_injury": "accident injury",
    "job_loss": "job loss",
    "business_failure": "business failure",
    "crop_failure": "crop failure",
    "livestock_loss": "livestock loss",
    "epidemic_lockdown": "epidemic lockdown",
}
EVENT_ZH: dict[str, str] = {
    "serious_illness": "大病",
    "chronic_illness": "慢性病确诊",
    "disability_certified": "残疾认定",
    "death": "家庭成员去世",
    "birth": "新生儿",
    "marriage_in": "婚入",
    "marriage_out": "婚出",
    "college_entry": "上大学",
    "natural_disaster": "自然灾害",
    "house_damage": "房屋受损",
    "accident_injury": "意外伤害",
    "job_loss": "失业",
    "business_failure": "经营失败",
    "crop_failure": "农作物歉收",
    "livestock_loss": "牲畜损失",
    "epidemic_lockdown": "疫情封控",
}
EVENT_FAMILY: dict[str, Family] = {
    "serious_illness": "health",
    "chronic_illness": "health",
    "disability_certified": "disability",
    "death": "household",
    "birth": "household",
    "marriage_in": "household",
    "marriage_out": "household",
    "college_entry": "education",
    "natural_disaster": "shocks",
    "house_damage": "shocks",
    "accident_injury": "health",
    "job_loss": "employment",
    "business_failure": "shocks",
    "crop_failure": "shocks",
    "livestock_loss": "shocks",
    "epidemic_lockdown": "shocks",
}

MEASURE_EN: dict[str, str] = {
    "dibao": "minimum-living allowance (dibao)",
    "temporary_relief": "temporary relief",
    "medical_assistance": "medical assistance",
    "public_welfare_post": "public-welfare post",
    "employment_training": "employment training",
    "industry_subsidy": "industry subsidy",
    "microcredit_interest_subsidy": "micro-credit interest subsidy",
    "education_subsidy": "education subsidy",
    "housing_renovation": "housing renovation",
    "insurance_payout": "insurance payout",
}
MEASURE_ZH: dict[str, str] = {
    "dibao": "低保",
    "temporary_relief": "临时救助",
    "medical_assistance": "医疗救助",
    "public_welfare_post": "公益性岗位",
    "employment_training": "就业培训",
    "industry_subsidy": "产业补贴",
    "microcredit_interest_subsidy": "小额信贷贴息",
    "education_subsidy": "教育资助",
    "housing_renovation": "危房改造",
    "insurance_payout": "保险理赔",
}

VILLAGE_SHOCK_KINDS = ("natural_disaster", "crop_failure", "livestock_loss", "job_loss")
"""Event kinds whose village-wide rates are features of their own."""
SHOCK_KINDS = (
    "natural_disaster",
    "house_damage",
    "crop_failure",
    "livestock_loss",
    "job_loss",
    "business_failure",
    "epidemic_lockdown",
)
"""Event kinds counted as shocks in the village "any shock" rates."""


def _income_features() -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    for source in INCOME_SOURCES:
        en, zh = INCOME_SOURCE_EN[source], INCOME_SOURCE_ZH[source]
        for w in WINDOWS:
            specs.append(
                FeatureSpec(
                    f"income_{source}_mean_{w}m",
                    "yuan/month",
                    f"{w}m",
                    "income",
                    f"Mean monthly {en} income over the reported months of the last {w} months",
                    f"近{w}个月{zh}月均收入",
                )
            )
        specs += [
            FeatureSpec(
                f"income_{source}_slope_12m",
                "yuan/month per month",
                "12m",
                "income",
                f"Linear trend of monthly {en} income over the reported months of the last 12 months",
                f"近12个月{zh}收入月变化趋势",
            ),
            FeatureSpec(
                f"income_{source}_std_12m",
                "yuan/month",
                "12m",
                "income",
                f"Standard deviation of monthly {en} income over the reported months of the last 12 months",
                f"近12个月{zh}收入波动",
            ),
            FeatureSpec(
                f"income_{source}_yoy_change_12m",
                "yuan/month",
                "12m vs prev 12m",
                "income",
                f"Mean monthly {en} income of the last 12 months minus that of the 12 months before",
                f"{zh}月均收入同比变化",
            ),
        ]
    for w in WINDOWS:
        specs.append(
            FeatureSpec(
                f"income_total_mean_{w}m",
                "yuan/month",
                f"{w}m",
                "income",
                f"Mean monthly income (all sources) over the reported months of the last {w} months",
                f"近{w}个月家庭月均总收入",
            )
        )
    specs += [
        FeatureSpec(
            "income_total_yoy_change_3m",
            "yuan/month",
            "3m vs same 3m last year",
            "income",
            "Mean monthly income of the last 3 months minus that of the same 3 months a year earlier",
            "近3个月月均收入同比变化",
        ),
        FeatureSpec(
            "income_total_yoy_change_12m",
            "yuan/month",
            "12m vs prev 12m",
            "income",
            "Mean monthly income of the last 12 months minus that of the 12 months before",
            "近12个月月均收入同比变化",
        ),
        FeatureSpec(
            "income_total_change_3m",
            "yuan/month",
            "3m vs prior 3m",
            "income",
            "Mean monthly income of the last 3 months minus that of the 3 months before them",
            "近3个月月均收入环比变化",
        ),
        FeatureSpec(
            "income_total_slope_6m",
            "yuan/month per month",
            "6m",
            "income",
            "Linear trend of monthly income over the reported months of the last 6 months",
            "近6个月收入变化趋势",
        ),
        FeatureSpec(
            "income_total_slope_12m",
            "yuan/month per month",
            "12m",
            "income",
            "Linear trend of monthly income over the reported months of the last 12 months",
            "近12个月收入变化趋势",
        ),
        FeatureSpec(
            "income_total_std_12m",
            "yuan/month",
            "12m",
            "income",
            "Standard deviation of monthly income over the reported months of the last 12 months",
            "近12个月收入波动",
        ),
        FeatureSpec(
            "income_total_cv_12m",
            "ratio",
            "12m",
            "income",
            "Coefficient of variation (std / |mean|) of monthly income over the last 12 months",
            "近12个月收入波动系数",
        ),
        FeatureSpec(
            "income_total_min_12m",
            "yuan/month",
            "12m",
            "income",
            "Lowest monthly income among the reported months of the last 12 months",
            "近12个月最低月收入",
        ),
        FeatureSpec(
            "income_wage_share_12m",
            "share",
            "12m",
            "income",
            "Share of wages (local and migrant) in the last 12 months' income; NaN when income <= 0",
            "近12个月工资性收入占比",
        ),
        FeatureSpec(
            "income_transfer_share_12m",
            "share",
            "12m",
            "income",
            "Share of transfers (dibao, pension, subsidies, other) in the last 12 months' income",
            "近12个月转移性收入占比",
        ),
        FeatureSpec(
            "income_per_capita_12m",
            "yuan/person/year",
            "12m",
            "income",
            "Annualised income I(t) per household member n(t) (docs/rules-and-labels.md); "
            "NaN with too few reports",
            "近12个月人均纯收入(年化)",
        ),
        FeatureSpec(
            "income_line_ratio",
            "ratio",
            "12m",
            "income",
            "Per-capita annualised income divided by this year's monitoring line (rule R1 fires below 1)",
            "人均收入与监测线之比",
        ),
        FeatureSpec(
            "rigid_margin_ratio",
            "ratio",
            "12m",
            "income",
            "Per-capita income net of rigid expenditure, (I - E) / n, divided by the monitoring line",
            "扣除刚性支出后人均收入与监测线之比",
        ),
        FeatureSpec(
            "rule_margin",
            "ratio",
            "12m",
            "income",
            "Margin of the rule baseline: min(I/n, (I-E)/n) / line; below 1 is under the line",
            "距监测线余量",
        ),
        FeatureSpec(
            "rule_margin_change_3m",
            "ratio",
            "now vs 3m ago",
            "income",
            "Rule margin now minus the rule margin 3 months earlier",
            "距监测线余量近3个月变化",
        ),
        FeatureSpec(
            "rule_margin_change_12m",
            "ratio",
            "now vs 12m ago",
            "income",
            "Rule margin now minus the rule margin 12 months earlier",
            "距监测线余量同比变化",
        ),
        FeatureSpec(
            "projected_margin_6m",
            "ratio",
            "6m ahead",
            "income",
            "Rule margin projected 6 months ahead by continuing its change over the last 3 months",
            "预计6个月后距监测线余量",
        ),
        FeatureSpec(
            "run_rate_margin",
            "ratio",
            "3m",
            "income",
            "Margin to the line if the last 3 months' mean income continued for a year: "
            "(12 x mean monthly income - E) / n / line",
            "按近3个月收入推算的距监测线余量",
        ),
        FeatureSpec(
            "income_to_prev_income",
            "ratio",
            "12m vs prev 12m",
            "income",
            "Annualised income I(t) divided by last year's I(t-12) (rule R3 looks for a halving)",
            "年收入与上年之比",
        ),
        FeatureSpec(
            "rigid_expense_to_prev_income",
            "ratio",
            "12m",
            "income",
            "Rigid expenditure E(t) of the last 12 months divided by last year's income I(t-12) (rule R2)",
            "刚性支出占上年收入比例",
        ),
        FeatureSpec(
            "projected_income_line_ratio_min_6m",
            "ratio",
            "next 6m",
            "income",
            "Lowest per-capita income to line ratio of the next 6 months (rule R1) if the last 3 months' "
            "mean income continued: known months stay in the 12-month window, new months at that mean",
            "按近3个月收入推算未来6个月人均收入与监测线最低比值",
        ),
        FeatureSpec(
            "projected_rule_margin_min_6m",
            "ratio",
            "next 6m",
            "income",
            "Lowest rule margin min(I/n, (I-E)/n) / line of the next 6 months on the same projection, "
            "counting only rigid expenses already paid that stay in the window",
            "按近3个月收入推算未来6个月距监测线最低余量",
        ),
        FeatureSpec(
            "projected_income_to_prev_min_6m",
            "ratio",
            "next 6m",
            "income",
            "Lowest ratio of projected annualised income to the prior year's (rule R3) "
            "over the next 6 months",
            "按近3个月收入推算未来6个月年收入与上年最低比值",
        ),
        FeatureSpec(
            "projected_rule_months_6m",
            "months",
            "next 6m",
            "income",
            "Months of the next 6 in which a monitoring rule (R1, R2 or R3) would fire on that projection",
            "按近3个月收入推算未来6个月触发监测标准的月数",
        ),
        FeatureSpec(
            "work_projected_rule_margin_min_6m",
            "ratio",
            "next 6m",
            "income",
            "Lowest rule margin of the next 6 months projected as above, with the last 3 months' wages "
            "replaced by the members in wage work in the as-of month at the year's pay per month worked",
            "按当月务工人数和工资水平推算未来6个月距监测线最低余量",
        ),
        FeatureSpec(
            "work_projected_rule_months_6m",
            "months",
            "next 6m",
            "income",
            "Months of the next 6 in which a monitoring rule would fire on the projection at current work",
            "按当月务工情况推算未来6个月触发监测标准的月数",
        ),
        FeatureSpec(
            "seasonal_projected_rule_margin_min_6m",
            "ratio",
            "next 6m",
            "income",
            "Lowest rule margin of the next 6 months projected with each new month at its income a year "
            "earlier, scaled by the last 3 months against the same 3 months a year earlier (at most 3x)",
            "按上年同期收入和同比变化推算未来6个月距监测线最低余量",
        ),
        FeatureSpec(
            "projected_rigid_margin_run_rate_min_6m",
            "ratio",
            "next 6m",
            "income",
            "Lowest (I - E) / n / line of the next 6 months on the same projection, with new rigid "
            "expenses at the last 3 months' monthly rate on top of those already paid",
            "按近3个月收入和刚性支出推算未来6个月扣除刚性支出后人均收入与监测线最低比值",
        ),
        FeatureSpec(
            "rigid_bill_to_trigger_6m",
            "yuan",
            "next 6m",
            "income",
            "Smallest new out-of-pocket rigid expenditure that would make rule R2 fire in one of the "
            "next 6 months on the same projection: max(ratio x I_prev, I - n x line) - E; NaN when "
            "last year's income is unknown",
            "未来6个月触发刚性支出标准所需的新增自付支出(元)",
        ),
        FeatureSpec(
            "income_loss_to_trigger_6m",
            "share",
            "next 6m",
            "income",
            "Smallest share of projected annualised income whose loss would make rule R1 or R3 fire in one "
            "of the next 6 months (negative: a rule fires already on the projection)",
            "未来6个月触发收入类监测标准所需的收入降幅",
        ),
        FeatureSpec(
            "income_total_change_1m",
            "yuan/month",
            "t vs 3m before",
            "income",
            "Income of the as-of month minus the mean of the reported months among the 3 before it; "
            "NaN if the as-of month is not reported",
            "当月收入与前3个月月均收入之差",
        ),
        FeatureSpec(
            "income_months_below_line_6m",
            "months",
            "6m",
            "income",
            "Reported months of the last 6 whose income x 12 per current member is below the line",
            "近6个月中月收入折年后人均低于监测线的月数",
        ),
        FeatureSpec(
            "months_since_income_drop",
            "months",
            "24m",
            "income",
            "Months since income last fell by more than a third from one reported month to the next "
            "(0 = in the as-of month); NaN if it did not in the last 24 months",
            "距上次月收入环比下降超过三分之一的月数",
        ),
        FeatureSpec(
            "income_business_change_3m",
            "yuan/month",
            "3m vs prior 3m",
            "income",
            "Mean monthly net business income of the last 3 months minus that of the 3 months before them",
            "近3个月经营月均收入环比变化",
        ),
    ]
    return specs


def _employment_features() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "employment_months_12m",
            "member-months",
            "12m",
            "employment",
            "Months worked (migrant, local wage, public-welfare post, self-employed) summed over members",
            "近12个月家庭务工月数",
        ),
        FeatureSpec(
            "employment_months_3m",
            "member-months",
            "3m",
            "employment",
            "Months worked in the last 3 months summed over members",
            "近3个月家庭务工月数",
        ),
        FeatureSpec(
            "employment_months_per_member_12m",
            "months/member",
            "12m",
            "employment",
            "Months worked in the last 12 months per working-age member (16-64) now; NaN if none",
            "近12个月劳动力人均务工月数",
        ),
        FeatureSpec(
            "employment_rate_12m",
            "share",
            "12m",
            "employment",
            "Share of recorded member-months in the last 12 months that were months worked",
            "近12个月务工月数占比",
        ),
        FeatureSpec(
            "employment_rate_change_12m",
            "share",
            "12m vs prev 12m",
            "employment",
            "Share of member-months worked in the last 12 months minus that in the 12 months before",
            "务工月数占比同比变化",
        ),
        FeatureSpec(
            "migrants_now",
            "persons",
            "now",
            "employment",
            "Members working outside the county in the as-of month",
            "当月外出务工人数",
        ),
        FeatureSpec(
            "migrants_year_ago",
            "persons",
            "t-12",
            "employment",
            "Members working outside the county 12 months before; NaN before records began",
            "上年同月外出务工人数",
        ),
        FeatureSpec(
            "migrants_change_12m",
            "persons",
            "now vs t-12",
            "employment",
            "Migrant workers now minus a year ago",
            "外出务工人数同比变化",
        ),
        FeatureSpec(
            "local_workers_now",
            "persons",
            "now",
            "employment",
            "Members in local wage work, public-welfare posts or self-employment in the as-of month",
            "当月本地就业人数",
        ),
        FeatureSpec(
            "public_welfare_post_now",
            "persons",
            "now",
            "employment",
            "Members holding a public-welfare post in the as-of month",
            "当月公益性岗位人数",
        ),
        FeatureSpec(
            "farming_now",
            "persons",
            "now",
            "employment",
            "Members farming in the as-of month",
            "当月务农人数",
        ),
        FeatureSpec(
            "unemployed_now",
            "persons",
            "now",
            "employment",
            "Members unemployed in the as-of month",
            "当月失业人数",
        ),
        FeatureSpec(
            "unemployed_months_12m",
            "member-months",
            "12m",
            "employment",
            "Member-months unemployed in the last 12 months",
            "近12个月失业月数",
        ),
    ]


def _household_features() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "household_size",
            "persons",
            "now",
            "household",
            "Members in the as-of month (joined by then and not yet left)",
            "家庭人口数",
        ),
        FeatureSpec("n_working_age", "persons", "now", "household", "Members aged 16-64", "劳动年龄人口数"),
        FeatureSpec("n_elders", "persons", "now", "household", "Members aged 65 or more", "65岁以上老人数"),
        FeatureSpec("n_children", "persons", "now", "household", "Members under 16", "16岁以下儿童数"),
        FeatureSpec(
            "dependency_ratio",
            "ratio",
            "now",
            "household",
            "(Children under 16 + elders 65+) / members aged 16-64; NaN with no working-age member",
            "抚养比",
        ),
        FeatureSpec(
            "n_full_labor",
            "persons",
            "static",
            "household",
            "Current members with full labour capacity at the first month of records",
            "全劳动力人数",
        ),
        FeatureSpec(
            "n_weak_or_no_labor",
            "persons",
            "static",
            "household",
            "Current members with weak or no labour capacity at the first month of records",
            "弱劳动力或无劳动力人数",
        ),
        FeatureSpec(
            "head_age",
            "years",
            "now",
            "household",
            "Age of the household head; NaN when no current member is the head",
            "户主年龄",
        ),
        FeatureSpec("head_female", "0/1", "now", "household", "The household head is a woman", "户主为女性"),
        FeatureSpec(
            "n_uninsured",
            "persons",
            "static",
            "household",
            "Current members not enrolled in basic medical insurance",
            "未参加医保人数",
        ),
        FeatureSpec(
            "members_left_12m",
            "persons",
            "12m",
            "household",
            "Members who left (death, marriage out, separation) in the last 12 months",
            "近12个月减少人口数",
        ),
        FeatureSpec(
            "members_joined_12m",
            "persons",
            "12m",
            "household",
            "Members who joined in the last 12 months",
            "近12个月新增人口数",
        ),
        FeatureSpec(
            "registered_poor",
            "0/1",
            "static",
            "household",
            "Was a registered poor household",
            "原建档立卡户",
        ),
        FeatureSpec(
            "years_since_escape",
            "years",
            "static",
            "household",
            "Years since the household was declared out of poverty; NaN if never poor",
            "脱贫年限",
        ),
        FeatureSpec(
            "relocated",
            "0/1",
            "static",
            "household",
            "Moved under poverty-alleviation relocation",
            "易地扶贫搬迁户",
        ),
        FeatureSpec(
            "housing_safe", "0/1", "static", "household", "Dwelling certified safe", "住房安全有保障"
        ),
        FeatureSpec("cultivated_land_mu", "mu", "static", "household", "Land farmed", "耕地面积(亩)"),
        FeatureSpec(
            "land_per_capita",
            "mu/person",
            "now",
            "household",
            "Land farmed per current member",
            "人均耕地面积(亩)",
        ),
        FeatureSpec(
            "times_identified",
            "count",
            "since records began",
            "household",
            "Times the household was identified as a monitoring subject up to the as-of month",
            "累计纳入监测次数",
        ),
        FeatureSpec(
            "under_monitoring_now",
            "0/1",
            "now",
            "household",
            "Under monitoring in the as-of month (identified, risk not yet eliminated)",
            "当前为监测对象",
        ),
        FeatureSpec(
            "months_since_identified",
            "months",
            "since records began",
            "household",
            "Months since the latest identification as a monitoring subject; NaN if never",
            "距上次纳入监测月数",
        ),
        FeatureSpec(
            "months_since_eliminated",
            "months",
            "since records began",
            "household",
            "Months since risk was last marked eliminated; NaN if never",
            "距上次风险消除月数",
        ),
        FeatureSpec(
            "last_risk_type_code",
            "code",
            "since records began",
            "household",
            "Risk type of the latest identification",
            "上次监测风险类型",
            codes="0=never identified, " + _codes(RISK_TYPES, start=1),
            categorical=True,
        ),
    ]


def _health_features() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "n_chronic",
            "persons",
            "now",
            "health",
            "Current members with a chronic disease (at first records or diagnosed since)",
            "慢性病人数",
        ),
        FeatureSpec(
            "medical_oop_3m",
            "yuan",
            "3m",
            "health",
            "Medical out-of-pocket spending (amount - reimbursed) in the last 3 months",
            "近3个月医疗自付费用",
        ),
        FeatureSpec(
            "medical_oop_6m",
            "yuan",
            "6m",
            "health",
            "Medical out-of-pocket spending in the last 6 months",
            "近6个月医疗自付费用",
        ),
        FeatureSpec(
            "medical_oop_12m",
            "yuan",
            "12m",
            "health",
            "Medical out-of-pocket spending in the last 12 months",
            "近12个月医疗自付费用",
        ),
        FeatureSpec(
            "medical_oop_24m",
            "yuan",
            "24m",
            "health",
            "Medical out-of-pocket spending in the last 24 months (bills since records began)",
            "近24个月医疗自付费用",
        ),
        FeatureSpec(
            "medical_bills_12m",
            "count",
            "12m",
            "health",
            "Medical bills in the last 12 months",
            "近12个月就医次数",
        ),
        FeatureSpec(
            "medical_reimbursed_share_12m",
            "share",
            "12m",
            "health",
            "Share of the last 12 months' medical costs paid back; NaN without medical costs",
            "近12个月医疗费用报销比例",
        ),
        FeatureSpec(
            "medical_oop_to_income_12m",
            "ratio",
            "12m",
            "health",
            "Medical out-of-pocket of the last 12 months divided by annualised income; NaN if income <= 0",
            "近12个月医疗自付占收入比例",
        ),
    ]


def _disability_features() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "n_disabled",
            "persons",
            "now",
            "disability",
            "Current members with a disability grade (at first records or certified since)",
            "残疾人数",
        ),
        FeatureSpec(
            "n_severely_disabled",
            "persons",
            "now",
            "disability",
            "Current members with disability grade 1 or 2 (most severe)",
            "重度残疾人数(一、二级)",
        ),
        FeatureSpec(
            "disability_severity_max",
            "grade score",
            "now",
            "disability",
            "Most severe disability in the household as 5 - grade (4 = grade 1); 0 with no disability",
            "最重残疾程度",
        ),
    ]


def _education_features() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "education_oop_3m",
            "yuan",
            "3m",
            "education",
            "Education out-of-pocket spending in the last 3 months",
            "近3个月教育自付支出",
        ),
        FeatureSpec(
            "education_oop_12m",
            "yuan",
            "12m",
            "education",
            "Education out-of-pocket spending in the last 12 months",
            "近12个月教育自付支出",
        ),
        FeatureSpec(
            "education_oop_24m",
            "yuan",
            "24m",
            "education",
            "Education out-of-pocket spending in the last 24 months (bills since records began)",
            "近24个月教育自付支出",
        ),
        FeatureSpec(
            "education_oop_to_income_12m",
            "ratio",
            "12m",
            "education",
            "Education out-of-pocket of the last 12 months divided by annualised income; NaN if income <= 0",
            "近12个月教育支出占收入比例",
        ),
        FeatureSpec(
            "students_now",
            "persons",
            "now",
            "education",
            "Members whose status is student in the as-of month",
            "在校学生人数",
        ),
        FeatureSpec(
            "n_school_age",
            "persons",
            "now",
            "education",
            "Current members aged 6-22",
            "6-22岁人数",
        ),
        FeatureSpec(
            "head_education_code",
            "code",
            "static",
            "education",
            "Highest education of the household head; NaN when no current head",
            "户主文化程度",
            codes=_codes(EDUCATION_LEVELS),
        ),
        FeatureSpec(
            "max_education_code",
            "code",
            "static",
            "education",
            "Highest education of any current member",
            "家庭最高文化程度",
            codes=_codes(EDUCATION_LEVELS),
        ),
    ]


def _loan_features() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "loan_count_open",
            "count",
            "now",
            "loans",
            "Loans with a status report in the as-of month (open loans)",
            "在贷笔数",
        ),
        FeatureSpec(
            "loan_balance_total",
            "yuan",
            "now",
            "loans",
            "Outstanding principal of all loans at the end of the as-of month; 0 with no loan",
            "贷款余额",
        ),
        FeatureSpec(
            "loan_balance_microcredit",
            "yuan",
            "now",
            "loans",
            "Outstanding poverty micro-credit principal",
            "扶贫小额信贷余额",
        ),
        FeatureSpec(
            "loan_balance_informal",
            "yuan",
            "now",
            "loans",
            "Outstanding informal loan principal",
            "民间借贷余额",
        ),
        FeatureSpec(
            "loan_months_to_maturity",
            "months",
            "now",
            "loans",
            "Months until the earliest open loan falls due (issued month + term); NaN with no open loan",
            "距最近贷款到期月数",
        ),
        FeatureSpec(
            "loan_balance_due_6m",
            "yuan",
            "next 6m",
            "loans",
            "Outstanding principal of open loans that fall due within 6 months (or are past due)",
            "6个月内到期贷款余额",
        ),
        FeatureSpec(
            "loan_balance_due_3m",
            "yuan",
            "next 3m",
            "loans",
            "Outstanding principal of open loans that fall due within 3 months (or are past due)",
            "3个月内到期贷款余额",
        ),
        FeatureSpec(
            "loan_due_6m_to_income",
            "ratio",
            "next 6m",
            "loans",
            "Principal falling due within 6 months divided by annualised income; "
            "NaN if income <= 0 or unknown",
            "6个月内到期贷款余额与年收入之比",
        ),
        FeatureSpec(
            "loan_interest_annual",
            "yuan/year",
            "now",
            "loans",
            "Yearly interest on the outstanding balances at their annual rates",
            "年应付利息",
        ),
        FeatureSpec(
            "loan_overdue_days_now",
            "days",
            "now",
            "loans",
            "Days the most overdue open loan is late at the end of the as-of month; 0 with no loan",
            "当前最长逾期天数",
        ),
        FeatureSpec(
            "loan_overdue_days_max_12m",
            "days",
            "12m",
            "loans",
            "Longest overdue days reported in the last 12 months",
            "近12个月最长逾期天数",
        ),
        FeatureSpec(
            "loan_overdue_trend_3m",
            "days",
            "now vs 3m ago",
            "loans",
            "Longest overdue days now minus 3 months earlier; NaN before records began",
            "逾期天数近3个月变化",
        ),
        FeatureSpec(
            "loan_overdue_months_12m",
            "months",
            "12m",
            "loans",
            "Months of the last 12 with any loan overdue",
            "近12个月逾期月数",
        ),
        FeatureSpec(
            "loans_issued_12m",
            "count",
            "12m",
            "loans",
            "Loans issued in the last 12 months",
            "近12个月新增贷款笔数",
        ),
        FeatureSpec(
            "loan_principal_issued_12m",
            "yuan",
            "12m",
            "loans",
            "Principal of loans issued in the last 12 months",
            "近12个月新增贷款金额",
        ),
        FeatureSpec(
            "loan_balance_to_income",
            "ratio",
            "now",
            "loans",
            "Outstanding balance divided by annualised income; NaN if income is unknown or <= 0",
            "贷款余额与年收入之比",
        ),
    ]


def _event_features() -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    for kind in EVENT_KINDS:
        en, zh, family = EVENT_EN[kind], EVENT_ZH[kind], EVENT_FAMILY[kind]
        specs += [
            FeatureSpec(
                f"events_{kind}_12m",
                "count",
                "12m",
                family,
                f"Reported {en} events in the last 12 months",
                f"近12个月{zh}次数",
            ),
            FeatureSpec(
                f"months_since_{kind}",
                "months",
                "since records began",
                family,
                f"Months since the latest {en} event (0 = in the as-of month); NaN if none on record",
                f"距上次{zh}月数",
            ),
        ]
    specs += [
        FeatureSpec(
            "events_total_3m",
            "count",
            "3m",
            "shocks",
            "Events of any kind in the last 3 months",
            "近3个月各类事件次数",
        ),
        FeatureSpec(
            "events_total_12m",
            "count",
            "12m",
            "shocks",
            "Events of any kind in the last 12 months",
            "近12个月各类事件次数",
        ),
        FeatureSpec(
            "event_max_severity_12m",
            "severity 0-3",
            "12m",
            "shocks",
            "Highest severity of any event in the last 12 months; 0 with none",
            "近12个月事件最高严重程度",
        ),
        FeatureSpec(
            "disaster_loss_12m",
            "yuan",
            "12m",
            "shocks",
            "Estimated natural-disaster losses reported in the last 12 months",
            "近12个月灾害损失金额",
        ),
        FeatureSpec(
            "other_rigid_oop_12m",
            "yuan",
            "12m",
            "shocks",
            "Out-of-pocket spending on disasters, accidents and funerals in the last 12 months",
            "近12个月灾害、意外、丧葬自付支出",
        ),
    ]
    return specs


def _assistance_features() -> list[FeatureSpec]:
    specs = [
        FeatureSpec(
            f"assist_{measure}_now",
            "0/1",
            "now",
            "assistance",
            f"Receiving {MEASURE_EN[measure]} in the as-of month",
            f"当前享受{MEASURE_ZH[measure]}",
        )
        for measure in ASSISTANCE_MEASURES
    ]
    specs += [
        FeatureSpec(
            "assist_monthly_amount_now",
            "yuan/month",
            "now",
            "assistance",
            "Monthly amount of the cash measures running in the as-of month",
            "当前月帮扶资金",
        ),
        FeatureSpec(
            "assist_measures_12m",
            "count",
            "12m",
            "assistance",
            "Different support measures running at any time in the last 12 months",
            "近12个月帮扶措施种类数",
        ),
        FeatureSpec(
            "assist_months_since_ended",
            "months",
            "since records began",
            "assistance",
            "Months since a support measure last ended; NaN if none has ended",
            "距上次帮扶措施结束月数",
        ),
    ]
    return specs


def _reporting_features() -> list[FeatureSpec]:
    return [
        FeatureSpec(
            "income_reported_months_3m",
            "months",
            "3m",
            "reporting",
            "Months of the last 3 with any income reported",
            "近3个月收入填报月数",
        ),
        FeatureSpec(
            "income_reported_months_12m",
            "months",
            "12m",
            "reporting",
            "Months of the last 12 with any income reported (r of docs/rules-and-labels.md)",
            "近12个月收入填报月数",
        ),
        FeatureSpec(
            "income_missing_months_12m",
            "months",
            "12m",
            "reporting",
            "Months of the last 12 since records began with no income reported",
            "近12个月收入缺报月数",
        ),
        FeatureSpec(
            "income_months_since_report",
            "months",
            "since records began",
            "reporting",
            "Months since income was last reported (0 = reported in the as-of month); NaN if never",
            "距上次收入填报月数",
        ),
        FeatureSpec(
            "employment_missing_now",
            "persons",
            "now",
            "reporting",
            "Current members aged 16-64 with no employment status reported in the as-of month",
            "当月未填报就业状态的劳动年龄人数",
        ),
    ]


def _location_features() -> list[FeatureSpec]:
    specs = [
        FeatureSpec(
            "terrain_code",
            "code",
            "static",
            "location",
            "Terrain of the household's place",
            "地形",
            codes=_codes(TERRAINS),
            categorical=True,
        ),
        FeatureSpec(
            "village_households",
            "households",
            "static",
            "location",
            "Households of the village in the dataset",
            "本村户数",
        ),
    ]
    for kind in (*VILLAGE_SHOCK_KINDS, "any_shock"):
        en = "any shock" if kind == "any_shock" else EVENT_EN[kind]
        zh = "遭受冲击" if kind == "any_shock" else f"发生{EVENT_ZH[kind]}"
        for w in (3, 12):
            specs.append(
                FeatureSpec(
                    f"village_share_{kind}_{w}m",
                    "share",
                    f"{w}m",
                    "location",
                    f"Share of the village's households with a {en} event in the last {w} months",
                    f"近{w}个月本村{zh}户占比",
                )
            )
    specs += [
        FeatureSpec(
            "village_share_under_monitoring",
            "share",
            "now",
            "location",
            "Share of the village's households under monitoring in the as-of month",
            "本村监测户占比",
        ),
        FeatureSpec(
            "village_share_triggered",
            "share",
            "now",
            "location",
            "Share of the village's households that meet a monitoring rule in the as-of month",
            "本村当月触发监测标准户占比",
        ),
    ]
    return specs


FEATURE_CATALOGUE: tuple[FeatureSpec, ...] = (
    *_income_features(),
    *_employment_features(),
    *_health_features(),
    *_disability_features(),
    *_education_features(),
    *_loan_features(),
    *_event_features(),
    *_household_features(),
    *_assistance_features(),
    *_reporting_features(),
    *_location_features(),
)

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURE_CATALOGUE)
"""Feature columns in table order; pass these to a model, not every numeric column."""
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(spec.name for spec in FEATURE_CATALOGUE if spec.categorical)
FEATURES_BY_NAME: dict[str, FeatureSpec] = {spec.name: spec for spec in FEATURE_CATALOGUE}


def family_of(feature: str) -> Family:
    """The driver family of a feature column; raises ``KeyError`` naming an unknown column."""
    try:
        return FEATURES_BY_NAME[feature].family
    except KeyError:
        raise KeyError(f"{feature!r} is not in feature catalogue {CATALOGUE_VERSION}") from None


def catalogue_records() -> list[dict[str, str]]:
    """The catalogue as plain rows, for CSV/JSON export and printing."""
    return [
        {
            "name": spec.name,
            "family": spec.family,
            "unit": spec.unit,
            "window": spec.window,
            "meaning": spec.meaning,
            "label_zh": spec.label_zh,
            "codes": spec.codes,
        }
        for spec in FEATURE_CATALOGUE
    ]


def catalogue_text(fmt: Literal["csv", "json"]) -> str:
    """The catalogue as CSV (header row first) or as a JSON object with its version."""
    records = catalogue_records()
    if fmt == "json":
        return json.dumps(
            {"catalogue_version": CATALOGUE_VERSION, "features": records}, ensure_ascii=False, indent=2
        )
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    raise ValueError(f"unknown catalogue format {fmt!r}: expected csv or json")


def catalogue_rich_table() -> Table:
    """The catalogue as a rich table for the console."""
    table = Table(title=f"Feature catalogue {CATALOGUE_VERSION} ({len(FEATURE_CATALOGUE)} features)")
    for column in ("name", "family", "unit", "window", "label_zh", "meaning"):
        table.add_column(column, overflow="fold")
    for spec in FEATURE_CATALOGUE:
        meaning = f"{spec.meaning} [{spec.codes}]" if spec.codes else spec.meaning
        table.add_row(spec.name, spec.family, spec.unit, spec.window, spec.label_zh, meaning)
    return table
