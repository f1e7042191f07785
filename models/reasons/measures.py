"""The support measures a reason points to: what the village does about it (缺什么补什么).

Each reason template names one measure by its stable code, so a visit list can
group households by what they need and a county can reword a measure in one
place. The codes are part of the output contract (the ``reason_{i}_measure``
columns); the Chinese and English texts are what staff read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """A support measure a reason points to: stable code, Chinese and English text."""

    code: str
    zh: str
    en: str


MEASURES: dict[str, Measure] = {
    m.code: m
    for m in (
        Measure(
            "employment_support",
            "就业帮扶：推荐转移就业、就业培训或公益性岗位",
            "employment help: job placement, training or a public-welfare post",
        ),
        Measure("public_welfare_post", "安排公益性岗位", "a public-welfare post suited to weak labour"),
        Measure(
            "medical_assistance",
            "医疗救助和大病保险报销，落实慢病签约服务",
            "medical assistance and serious-illness insurance, chronic-care enrolment",
        ),
        Measure(
            "disability_subsidy",
            "残疾人两项补贴和康复服务",
            "disability living and nursing subsidies and rehabilitation",
        ),
        Measure(
            "education_subsidy",
            "教育资助（雨露计划、助学贷款）",
            "education subsidy (Yulu plan, student loans)",
        ),
        Measure(
            "loan_relief",
            "小额信贷贴息，或协商展期、续贷",
            "interest subsidy, or a loan extension or renewal",
        ),
        Measure("temporary_relief", "临时救助", "temporary relief"),
        Measure("housing_renovation", "危房改造或住房安全鉴定", "housing renovation or a safety inspection"),
        Measure(
            "industry_support",
            "产业帮扶：产业补贴、农业保险和技术指导",
            "industry support: production subsidy, farm insurance and technical advice",
        ),
        Measure(
            "visit_check",
            "入户核实收入、支出和就业变化，按核实结果落实帮扶",
            "check income, spending and work at the visit; support follows what the visit finds",
        ),
        Measure(
            "dibao_review",
            "核查是否符合低保等兜底保障条件",
            "review eligibility for dibao and other safety nets",
        ),
        Measure(
            "insurance_enrolment",
            "资助参加城乡居民基本医疗保险",
            "subsidised enrolment in basic medical insurance",
        ),
        Measure(
            "follow_up_visit",
            "入户回访，核实变化原因并落实针对性帮扶",
            "a follow-up visit to find the cause and target support",
        ),
        Measure(
            "income_verification",
            "入户核实收入和就业情况，补齐信息",
            "a home visit to verify income and work and complete the records",
        ),
        Measure(
            "village_screening",
            "对本村开展集中排查",
            "screen the whole village for households at risk",
        ),
    )
}
