"""The households and people of a county at the first simulated month.

Households are built from roles (head, spouse, parents, children, a married
son's family) whose presence and ages depend on the head's age, then packed
into member slots. Registered-poor households are older, weaker in labour,
sicker, poorer in wages and more often on the minimum-living allowance.
"""

from __future__ import annotations

import numpy as np

from . import codes as C
from .config import CountyConfig, month_year
from .layout import Layout
from .state import CAUSES, EXPENSE_RING, MEASURES, MEMBER_FIELDS, RING, State

ROLES = 11
"""head, spouse, 2 parents, 3 children, son, son's wife, 2 grandchildren."""


def _education_for_age(rng: np.random.Generator, age: np.ndarray, registered: np.ndarray) -> np.ndarray:
    """Highest completed or current level, by birth cohort; registered households a step lower."""
    u = rng.random(age.shape)
    shift = np.where(registered, 0.12, 0.0)
    u = np.clip(u + shift, 0, 0.999)
    ed = np.full(age.shape, C.ED_NONE, dtype=np.int8)
    # cumulative thresholds from the top level down, per cohort: college, vocational, senior, junior, primary
    cohorts = [
        (60, 200, (0.005, 0.01, 0.04, 0.2, 0.62)),
        (40, 60, (0.02, 0.05, 0.13, 0.58, 0.92)),
        (25, 40, (0.1, 0.25, 0.4, 0.9, 0.98)),
        (19, 25, (0.2, 0.4, 0.6, 0.95, 1.0)),
    ]
    for low, high, (college, vocational, senior, junior, primary) in cohorts:
        band = (age >= low) & (age < high)
        v = u  # a higher draw means less schooling
        level = np.select(
            [v < college, v < vocational, v < senior, v < junior, v < primary],
            [C.ED_COLLEGE, C.ED_VOCATIONAL, C.ED_SENIOR, C.ED_JUNIOR, C.ED_PRIMARY],
            C.ED_NONE,
        ).astype(np.int8)
        ed = np.where(band, level, ed)
    child = age < 19
    child_level = np.select(
        [age >= 15, age >= 12, age >= 6], [C.ED_SENIOR, C.ED_JUNIOR, C.ED_PRIMARY], C.ED_NONE
    ).astype(np.int8)
    # older teenagers who left school keep junior
    child_level = np.where((age >= 15) & (u > 0.7), C.ED_JUNIOR, child_level).astype(np.int8)
    return np.where(child, child_level, ed).astype(np.int8)


def health_target(age: np.ndarray) -> np.ndarray:
    """Typical health for an age, before chronic disease, disability and frailty."""
    return np.float32(0.9) - np.float32(0.006) * np.maximum(age - 30, 0).astype(np.float32)


def initial_state(
    config: CountyConfig, layout: Layout, first: int, count: int, rng: np.random.Generator
) -> State:
    """Households ``first .. first + count - 1`` of the county at its first simulated month."""
    dyn = config.dynamics
    profile = config.profile
    year = month_year(config.first_simulated)
    n = count
    slots = config.member_slots
    households = np.arange(first, first + count)
    village = layout.village_of(households)
    terrain = layout.village_terrain[village].astype(np.int8)
    registered = rng.random(n) < profile.registered_share

    # ---------------- roles -> people
    head_age = np.where(
        registered,
        np.clip(rng.normal(56, 12, n), 26, 88),
        np.clip(rng.normal(51, 11, n), 24, 85),
    ).astype(np.int16)
    present = np.zeros((n, ROLES), dtype=bool)
    age = np.zeros((n, ROLES), dtype=np.int16)
    sex = np.zeros((n, ROLES), dtype=np.int8)
    relation = np.zeros((n, ROLES), dtype=np.int8)
    head_male = rng.random(n) < 0.88
    present[:, 0] = True
    age[:, 0] = head_age
    sex[:, 0] = np.where(head_male, C.MALE, C.FEMALE)
    relation[:, 0] = C.HEAD
    spouse = rng.random(n) < np.where(head_age < 70, 0.86, 0.62)
    present[:, 1] = spouse
    age[:, 1] = np.clip(head_age + rng.integers(-4, 3, n), 20, 95)
    sex[:, 1] = 1 - sex[:, 0]
    relation[:, 1] = C.SPOUSE
    # parents of a younger head
    for k in (2, 3):
        present[:, k] = (head_age < 52) & (rng.random(n) < (0.45 if k == 2 else 0.25))
        age[:, k] = np.clip(head_age + rng.integers(24, 33, n), 50, 96)
        sex[:, k] = C.FEMALE if k == 2 else C.MALE
        relation[:, k] = C.PARENT
    # children: young ones for a head under 50, adult ones at home for older heads
    n_children = np.where(
        head_age < 50,
        rng.choice([0, 1, 2, 3], size=n, p=[0.08, 0.34, 0.43, 0.15]),
        rng.choice([0, 1, 2, 3], size=n, p=[0.42, 0.38, 0.16, 0.04]),
    )
    for j, k in enumerate((4, 5, 6)):
        present[:, k] = n_children > j
        oldest = np.maximum(head_age - 21, 1)
        age[:, k] = np.clip(rng.integers(0, 10_000, n) % oldest, 0, 35).astype(np.int16)
        sex[:, k] = rng.integers(0, 2, n)
        relation[:, k] = C.CHILD
    # a married son with his wife and children living with older parents
    son_family = (head_age >= 50) & (rng.random(n) < 0.32)
    son_age = np.clip(head_age - rng.integers(22, 30, n), 20, 50).astype(np.int16)
    present[:, 7] = son_family
    age[:, 7] = son_age
    sex[:, 7] = C.MALE
    relation[:, 7] = C.CHILD
    present[:, 8] = son_family & (rng.random(n) < 0.85)
    age[:, 8] = np.clip(son_age + rng.integers(-3, 2, n), 19, 50)
    sex[:, 8] = C.FEMALE
    relation[:, 8] = C.OTHER_RELATION
    for j, k in enumerate((9, 10)):
        present[:, k] = son_family & (rng.random(n) < (0.75 if j == 0 else 0.35))
        age[:, k] = np.clip(rng.integers(0, 14, n), 0, np.maximum(son_age - 19, 0)).astype(np.int16)
        sex[:, k] = rng.integers(0, 2, n)
        relation[:, k] = C.GRANDCHILD
    # keep at least one slot free for newcomers; drop the last roles of crowded households
    over = np.cumsum(present, axis=1) > slots - 1
    present &= ~over

    # pack present roles into the first slots
    order = np.argsort(~present, axis=1, kind="stable")[:, :slots]
    take = np.take_along_axis
    used = take(present, order, axis=1)
    age_s = np.where(used, take(age, order, axis=1), 0).astype(np.int16)
    sex_s = take(sex, order, axis=1).astype(np.int8)
    relation_s = take(relation, order, axis=1).astype(np.int8)
    shape = (n, slots)
    reg2 = np.broadcast_to(registered[:, None], shape)

    education = _education_for_age(rng, age_s, reg2)
    chronic_rate = np.select(
        [age_s < 30, age_s < 45, age_s < 60, age_s < 70], [0.02, 0.06, 0.15, 0.28], 0.38
    ) * np.where(reg2, 1.4, 1.0)
    chronic = used & (rng.random(shape) < chronic_rate)
    disabled = used & (age_s >= 16) & (rng.random(shape) < np.where(reg2, 0.07, 0.025))
    grade = rng.choice(np.array([1, 2, 3, 4], dtype=np.int8), size=shape, p=[0.1, 0.25, 0.3, 0.35])
    disability = np.where(disabled, grade, 0).astype(np.int8)
    capacity = np.full(shape, C.FULL, dtype=np.int8)
    capacity[(chronic & (age_s >= 50)) | (disability >= 3) | ((age_s >= 65) & (age_s < 80))] = C.WEAK
    capacity[((disability > 0) & (disability <= 2)) | (age_s >= 80) | (age_s < 16)] = C.NO_CAPACITY
    frailty = (rng.normal(0, 0.07, shape) - np.where(reg2, 0.03, 0.0)).astype(np.float32)
    health = np.clip(
        health_target(age_s)
        + frailty
        - 0.15 * chronic
        - 0.1 * (disability > 0)
        + rng.normal(0, 0.05, shape).astype(np.float32),
        0.05,
        1.0,
    ).astype(np.float32)
    insured = used & (rng.random(shape) < np.where(reg2, 0.995, 0.95))

    # ---------------- household economy
    business = rng.random(n) < profile.business_share * np.where(registered, 0.5, 1.0)
    working_age = used & (age_s >= 16) & (age_s < 60) & (capacity != C.NO_CAPACITY)
    schooling = used & (age_s >= 16) & (age_s <= 18) & (rng.random(shape) < 0.65)
    college_years = np.where(
        used & (age_s >= 19) & (age_s <= 22) & (rng.random(shape) < 0.3), 23 - age_s, 0
    ).astype(np.int8)
    education = np.where(college_years > 0, C.ED_COLLEGE, education).astype(np.int8)
    able = working_age & ~schooling & (college_years == 0)
    u = rng.random(shape)
    young_mother = (sex_s == C.FEMALE) & (age_s < 40)
    migrant_share = np.clip(
        profile.migrant_share * np.where(age_s < 45, 1.2, 0.7) * np.where(young_mother, 0.6, 1.0), 0, 0.95
    )
    local_share = profile.local_wage_share
    sector = np.select(
        [u < migrant_share, u < migrant_share + local_share], [C.MIGRANT, C.LOCAL_WAGE], C.FARMING
    ).astype(np.int8)
    # the head and spouse of a business household run it
    runs_business = business[:, None] & (relation_s <= C.SPOUSE) & able
    sector = np.where(runs_business, C.SELF_EMPLOYED, sector).astype(np.int8)
    has_runner = runs_business.any(axis=1)
    business &= has_runner
    sector = np.where(able, sector, C.FARMING).astype(np.int8)
    # Households with labour have at least one member in paid work (the employment-support policy).
    earner = able & np.isin(sector, (C.MIGRANT, C.LOCAL_WAGE, C.SELF_EMPLOYED))
    lacking = able.any(axis=1) & ~earner.any(axis=1)
    rows = np.flatnonzero(lacking)
    youngest_able = np.argmin(np.where(able[rows], age_s[rows], 999), axis=1)
    sector[rows, youngest_able] = np.where(rng.random(rows.size) < 0.6, C.MIGRANT, C.LOCAL_WAGE)
    ed_factor = np.array([0.8, 0.9, 1.0, 1.1, 1.1, 1.3], dtype=np.float32)[education]
    wage = (
        np.exp(rng.normal(0, dyn.wage_dispersion, shape)).astype(np.float32)
        * ed_factor
        * np.where(sex_s == C.FEMALE, 0.85, 1.0).astype(np.float32)
        * np.where(reg2, dyn.registered_wage_factor, 1.0).astype(np.float32)
        * np.float32(profile.wage_factor)
    ).astype(np.float32)
    stability_outlook = np.clip(
        rng.normal(dyn.stability_mean - 0.05 * reg2, dyn.outlook_spread, shape), 0.15, 0.97
    ).astype(np.float32)
    stability = np.clip(stability_outlook + rng.normal(0, 0.08, shape), 0.0, 1.0).astype(np.float32)

    land_median = np.array(profile.land_mu, dtype=np.float64)[terrain]
    relocated = registered & (terrain == C.MOUNTAIN) & (rng.random(n) < 0.15)
    land = (land_median * np.exp(rng.normal(0, 0.5, n)) * np.where(relocated, 0.3, 1.0)).astype(np.float32)
    land[rng.random(n) < 0.06] = 0.0
    farm_value = (
        np.array(profile.farm_value_per_mu, dtype=np.float64)[terrain] * np.exp(rng.normal(0, 0.25, n))
    ).astype(np.float32)
    keeps_livestock = rng.random(n) < profile.livestock_share * np.where(registered, 1.2, 1.0)
    livestock = np.where(keeps_livestock, np.exp(rng.normal(np.log(3.0), 0.6, n)), 0.0).astype(np.float32)
    scale = np.where(
        business, dyn.business_scale * np.exp(rng.normal(0, 0.45, n)) * np.where(registered, 0.7, 1.0), 0.0
    ).astype(np.float32)
    outlook = np.clip(rng.normal(0.8, 0.15, n), 0.2, 1.2).astype(np.float32)
    business_health = (outlook + rng.normal(0, 0.1, n)).astype(np.float32)
    eco = np.where(terrain == C.MOUNTAIN, 700.0, np.where(terrain == C.HILL, 300.0, 0.0)) * np.exp(
        rng.normal(0, 0.4, n)
    )
    poor_reporter = rng.random(n) < dyn.poor_reporter_share
    report_rate = np.where(poor_reporter, dyn.poor_reporter_rate, dyn.report_rate).astype(np.float32)

    # ---------------- standing support: the minimum-living allowance for households without labour
    size = used.sum(axis=1)
    full_workers = (used & (age_s >= 16) & (age_s < 60) & (capacity == C.FULL)).sum(axis=1)
    # The allowance is for every household without labour; registered ones were covered first.
    on_dibao = ((full_workers == 0) & (rng.random(n) < np.where(registered, 0.8, 0.5))) | (
        registered & (full_workers > 0) & (rng.random(n) < 0.06)
    )
    measure_active = np.zeros((n, MEASURES), dtype=bool)
    measure_amount = np.zeros((n, MEASURES), dtype=np.float32)
    measure_left = np.zeros((n, MEASURES), dtype=np.int16)
    measure_start = np.zeros((n, MEASURES), dtype=np.int32)
    price = (1 + dyn.dibao_growth) ** (year - 2021)
    covered = np.maximum(np.round(size * np.where(full_workers == 0, 1.0, 0.6)), 1)
    measure_active[:, C.M_DIBAO] = on_dibao
    measure_amount[:, C.M_DIBAO] = np.where(on_dibao, np.round(covered * dyn.dibao_per_person * price), 0)
    measure_left[:, C.M_DIBAO] = np.where(on_dibao, -1, 0)
    measure_start[:, C.M_DIBAO] = config.first_simulated - rng.integers(1, 61, n)

    def zeros(dtype: type) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    status = np.where(able, sector, np.where(age_s >= 60, C.FARMING, C.NOT_IN_LABOR)).astype(np.int8)
    status = np.where(schooling | (college_years > 0), C.STUDENT, status).astype(np.int8)
    state = State(
        village=village,
        terrain=terrain,
        registered=registered,
        escape_year=np.where(
            registered,
            rng.choice(np.arange(2014, 2021), size=n, p=[0.05, 0.1, 0.12, 0.15, 0.2, 0.25, 0.13]),
            0,
        ).astype(np.int16),
        relocated=relocated,
        housing_safe=registered | (rng.random(n) < 0.96),
        land_mu=land,
        farm_value=farm_value,
        livestock=livestock,
        livestock_target=livestock.copy(),
        business=business,
        business_scale=scale,
        business_health=business_health,
        business_outlook=outlook,
        kin=rng.beta(2.0, 3.0, n).astype(np.float32),
        report_rate=report_rate,
        outage_village=layout.outage_village[village],
        eco_compensation=eco.astype(np.float32),
        crop_damage=np.zeros(n, dtype=np.float32),
        cause=np.zeros((CAUSES, n), dtype=np.float32),
        monitored=np.zeros(n, dtype=bool),
        monitored_months=np.zeros(n, dtype=np.int16),
        pending=np.zeros(n, dtype=np.int8),
        pending_risk=np.full(n, C.NO_RISK, dtype=np.int8),
        missed_until=np.zeros(n, dtype=np.int32),
        last_triggered=np.zeros(n, dtype=bool),
        last_ratio=np.full(n, np.nan, dtype=np.float32),
        last_rigid=np.zeros(n, dtype=np.float32),
        measure_active=measure_active,
        measure_amount=measure_amount,
        measure_left=measure_left,
        measure_start=measure_start,
        post_slot=np.full(n, -1, dtype=np.int8),
        income_ring=np.zeros((RING, n), dtype=np.float64),
        reported_ring=np.zeros((RING, n), dtype=np.float64),
        rigid_ring=np.zeros((EXPENSE_RING, n), dtype=np.float64),
        used=used,
        present=used.copy(),
        birth_year=np.where(used, year - age_s, 0).astype(np.int16),
        sex=sex_s,
        relation=relation_s,
        education=education,
        capacity=capacity,
        disability=disability,
        disability_certified=disability.copy(),
        certify_in=zeros(np.int8),
        chronic=chronic,
        health=health,
        frailty=frailty,
        declining=zeros(bool),
        diagnosed=zeros(bool),
        declined_months=zeros(np.int8),
        insured=insured,
        sector=sector,
        status=status,
        stability=stability,
        stability_outlook=stability_outlook,
        wage=wage,
        schooling=schooling,
        college_years=college_years,
        out_months=zeros(np.int8),
        sick_months=zeros(np.int8),
        care_months=zeros(np.int8),
        followup=zeros(np.float32),
        reimbursement=zeros(np.float32),
        joined=np.full(shape, -1, dtype=np.int32),
        left=np.full(shape, -1, dtype=np.int32),
    )
    # built household-major above for readability; the simulation keeps members slot-major
    for name in MEMBER_FIELDS:
        setattr(state, name, np.ascontiguousarray(getattr(state, name).T))
    return state
