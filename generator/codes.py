"""Integer codes of the contract's enumerations, as the simulation stores them.

The simulation keeps every categorical value as a small integer; the writer
turns codes back into the contract's lower-case strings through these tuples
(position = code). The generator restates them rather than importing the
project's contract module because it stands in for a county's own system;
its tests check both lists agree.
"""

from __future__ import annotations

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
WAGE_LOCAL, WAGE_MIGRANT, AGRICULTURE, BUSINESS, PROPERTY, DIBAO, PENSION, SUBSIDY, OTHER_TRANSFER = range(9)

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
MIGRANT, LOCAL_WAGE, WELFARE_POST, SELF_EMPLOYED, FARMING, UNEMPLOYED, STUDENT, NOT_IN_LABOR = range(8)

EXPENSE_CATEGORIES = ("medical", "education", "disaster", "accident", "funeral", "other")
MEDICAL, EDUCATION_COST, DISASTER_COST, ACCIDENT_COST, FUNERAL, OTHER_COST = range(6)

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
(
    EV_SERIOUS_ILLNESS,
    EV_CHRONIC_ILLNESS,
    EV_DISABILITY_CERTIFIED,
    EV_DEATH,
    EV_BIRTH,
    EV_MARRIAGE_IN,
    EV_MARRIAGE_OUT,
    EV_COLLEGE_ENTRY,
    EV_NATURAL_DISASTER,
    EV_HOUSE_DAMAGE,
    EV_ACCIDENT_INJURY,
    EV_JOB_LOSS,
    EV_BUSINESS_FAILURE,
    EV_CROP_FAILURE,
    EV_LIVESTOCK_LOSS,
    EV_EPIDEMIC_LOCKDOWN,
) = range(16)

EVENT_REPORT_RATE = (0.95, 0.95, 1.0, 0.98, 0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.85, 0.6, 0.7, 0.8, 0.7, 0.9)
"""Share of each kind of event that a department or cadre actually reports (a chronic disease is
registered with the medical insurance for its outpatient cover, so nearly all are known)."""

LOAN_KINDS = ("poverty_microcredit", "bank", "informal")
MICROCREDIT, BANK, INFORMAL = range(3)

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
(
    M_DIBAO,
    M_TEMPORARY_RELIEF,
    M_MEDICAL_ASSISTANCE,
    M_WELFARE_POST,
    M_EMPLOYMENT_TRAINING,
    M_INDUSTRY_SUBSIDY,
    M_MICROCREDIT_SUBSIDY,
    M_EDUCATION_SUBSIDY,
    M_HOUSING_RENOVATION,
    M_INSURANCE_PAYOUT,
) = range(10)

MONITORING_CATEGORIES = ("unstable_escaped", "marginal", "sudden_hardship")
UNSTABLE_ESCAPED, MARGINAL, SUDDEN_HARDSHIP = range(3)

RISK_TYPES = ("income_shortfall", "rigid_expenditure", "income_drop")
NO_RISK = -1
R1_SHORTFALL, R2_RIGID, R3_DROP = range(3)

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
C_ILLNESS, C_DISABILITY, C_EDUCATION, C_DISASTER, C_ACCIDENT, C_EMPLOYMENT, C_INDUSTRY, C_OTHER = range(8)

TERRAINS = ("plain", "hill", "mountain")
PLAIN, HILL, MOUNTAIN = range(3)
SEXES = ("f", "m")
FEMALE, MALE = range(2)
RELATIONS = ("head", "spouse", "child", "parent", "grandchild", "sibling", "other")
HEAD, SPOUSE, CHILD, PARENT, GRANDCHILD, SIBLING, OTHER_RELATION = range(7)
EDUCATION_LEVELS = ("none", "primary", "junior", "senior", "vocational", "college")
ED_NONE, ED_PRIMARY, ED_JUNIOR, ED_SENIOR, ED_VOCATIONAL, ED_COLLEGE = range(6)
LABOR_CAPACITIES = ("full", "weak", "none")
FULL, WEAK, NO_CAPACITY = range(3)
