"""One month of a county: the mechanisms that move households towards or away from the line.

:meth:`Simulator.step` advances every household of a :class:`State` by one
month, vectorised over households and member slots. The recorded run and the
oracle's re-simulations call the same method; only the recorder differs (the
oracle passes none). Mechanisms, in the order they act each month:

1. programmes: support measures run out, monitored households whose risk is
   gone are marked eliminated, pending cases are confirmed and given support;
2. family: deaths, births, marriages;
3. health: hidden health drifts, undiagnosed deterioration (monthly visits
   and bills, missed work; most complaints pass, the grave ones are
   diagnosed and recorded as such), chronic disease, serious illness (mostly
   after months of a diagnosed decline; heavy-tailed bills, lost work for
   the patient and a carer), accidents, disability certified months after
   onset;
4. school: senior school and college entry in September, college fees;
5. work: hidden job stability drifts and falls when an employer gets into
   trouble; gaps and thinning pay follow it, and a job is lost mostly after it
   has thinned; a lost job's search ends with a monthly chance of new work;
   lockdowns keep migrants home; wages by kind of work;
6. farms and business: village-wide disasters in the rainy season, harvests
   and crop failure, livestock sales and disease, hidden business health,
   trouble and failure;
7. transfers: pensions, the minimum-living allowance, subsidies, relief,
   relatives' help;
8. the month closes: income is reported (or not), the rules are evaluated
   on the reported data and new cases start their way to identification.

Hidden states (health, deterioration, job stability and its outlook,
business health and outlook, relatives' readiness, reporting habits) never
reach a table; their symptoms (bills, gaps, thinner pay, falling business
income, overdue loans) do, months ahead of the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import codes as C
from .config import CountyConfig, month_calendar, month_year
from .population import health_target
from .rules import RuleOutcome, evaluate_state
from .state import EXPENSE_RING, RING, State

# Share of a year's net farm income by calendar month (negative: seed and fertiliser), per terrain.
HARVEST = np.zeros((3, 13), dtype=np.float64)
HARVEST[C.PLAIN, [3, 4, 6, 10, 11]] = [-0.06, -0.04, 0.42, 0.55, 0.13]
HARVEST[C.HILL, [3, 4, 7, 8, 9, 10, 11]] = [-0.05, -0.05, 0.15, 0.15, 0.30, 0.40, 0.10]
HARVEST[C.MOUNTAIN, [4, 5, 8, 9, 10, 11]] = [-0.06, -0.04, 0.25, 0.40, 0.35, 0.10]
REMAINING_HARVEST = np.clip(HARVEST, 0, None)[:, ::-1].cumsum(axis=1)[:, ::-1]
"""Share of the year's harvest still to come from a calendar month on (index = month)."""
LIVESTOCK_SALES = np.zeros(13)
LIVESTOCK_SALES[[1, 6, 9, 11, 12]] = [0.35, 0.15, 0.10, 0.10, 0.30]
LAST_HARVEST_MONTH = 11

WORK_SECTORS = (C.MIGRANT, C.LOCAL_WAGE)
SPRING_FESTIVAL_PAY = {1: 0.85, 2: 0.35}
WINTER_SLACK_PAY = {1: 0.8, 2: 0.8}
"""Local work (building sites, workshops) slows around the Spring Festival: fewer paid days, every year."""
OUT_OF_WORK_CAP = 36
"""Most months a worker who lost a job stays without work."""
IDENTIFICATION_LAG = np.array([1, 2, 3, 4], dtype=np.int8)
LAG_ODDS = np.array([0.3, 0.35, 0.2, 0.15])
LAG_ODDS_DEPARTMENT = np.array([0.5, 0.35, 0.1, 0.05])
"""Rigid-expenditure cases reach the county faster: health-insurance data warn the departments."""
CAUSE_DECAY = np.float32(0.92)
CAUSE_FLOOR = 1500.0
"""Below this much recent loss no shock stands out and the cause is structural."""


class Recorder(Protocol):
    """What the recorded run keeps of a month; the oracle passes ``None`` instead."""

    tables_on: bool

    def income(self, month: int, amounts: np.ndarray, reported: np.ndarray) -> None: ...

    def employment(self, month: int, mask: np.ndarray, status: np.ndarray) -> None: ...

    def expense(
        self,
        month: int,
        household: np.ndarray,
        slot: np.ndarray,
        category: int,
        amount: np.ndarray,
        reimbursed: np.ndarray,
    ) -> None: ...

    def event(
        self,
        month: int,
        household: np.ndarray,
        slot: np.ndarray,
        kind: int,
        severity: np.ndarray,
        value: np.ndarray | None = None,
    ) -> None: ...

    def member_joined(self, month: int, household: np.ndarray, slot: np.ndarray, state: State) -> None: ...

    def identified(
        self, month: int, household: np.ndarray, category: np.ndarray, risk: np.ndarray, cause: np.ndarray
    ) -> None: ...

    def eliminated(self, month: int, household: np.ndarray) -> None: ...

    def measure_ended(
        self, household: np.ndarray, measure: np.ndarray, start: np.ndarray, end: int, amount: np.ndarray
    ) -> None: ...


@dataclass(frozen=True)
class MonthResult:
    income: np.ndarray
    """(9, N) yuan by source, in the order of codes.INCOME_SOURCES, rounded to fen."""
    reported: np.ndarray
    rigid: np.ndarray
    """(N,) rigid out-of-pocket spending of the month."""
    size: np.ndarray
    outcome: RuleOutcome
    """Rules as the county system sees them (all history it holds)."""
    identified: np.ndarray
    """Households confirmed as monitoring subjects this month."""
    identified_cause: np.ndarray


@dataclass(frozen=True)
class _Month:
    index: int
    year: int
    calendar: int
    line: float
    wage_index: float
    price_index: float
    farm_index: float
    """Net farm and business earnings per unit (prices and productivity) relative to 2021."""
    lockdown: bool
    crop_price: float
    """Price of crop sales relative to the usual one (a price collapse scenario); 1 otherwise."""
    outage: bool
    age: np.ndarray
    record: bool


def _indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask)


F32 = np.float32
UNIT_NOISE = F32(np.sqrt(12.0))
"""Scales a centred uniform draw to unit variance: cheaper than a normal draw, and bounded."""
DEATH_BOUND = 0.12
EVENT_BOUND = 0.08
DECLINE_BOUND = 0.5
"""Upper bounds of the monthly hazards (the second for declining members): only members whose draw
falls below them, and declining ones, need the exact hazard."""


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.random(shape, dtype=F32) - F32(0.5)) * UNIT_NOISE


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a 2-D mask; ``np.nonzero`` is several times slower on 2-D arrays."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _set(target: np.ndarray, mask: np.ndarray, value: int | np.ndarray) -> None:
    """``target[mask] = value`` for int8 codes, by arithmetic: masked assignment is far slower."""
    target += mask.view(np.int8) * (np.asarray(value, dtype=np.int8) - target)


def _count(mask: np.ndarray) -> np.ndarray:
    """Members per household of a (S, N) mask."""
    return mask.sum(axis=0, dtype=np.int16)


def _per_household(n: int, households: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.bincount(households, weights=values, minlength=n)


def lockdown_effect(config: CountyConfig) -> tuple[float, float, float]:
    """Share of working migrants and of local workers kept from work in a lockdown month, and the
    factor on business earnings: the :class:`Dynamics` values, or the scenario's depth applied to
    migrants with local work and trade losing the same fraction of their default loss."""
    dyn, depth = config.dynamics, config.scenario.lockdown_depth
    if depth is None:
        return dyn.lockdown_migrant_stuck, dyn.lockdown_local_stuck, dyn.lockdown_business_factor
    fraction = depth / dyn.lockdown_migrant_stuck
    return (
        depth,
        min(1.0, dyn.lockdown_local_stuck * fraction),
        max(0.0, 1.0 - (1.0 - dyn.lockdown_business_factor) * fraction),
    )


class Simulator:
    """The month-by-month dynamics of one county configuration."""

    def __init__(self, config: CountyConfig) -> None:
        self.config = config
        self.dyn = config.dynamics
        self.lines = config.monitoring_lines()
        base = np.zeros(8, dtype=np.float32)
        base[C.MIGRANT] = self.dyn.migrant_wage
        base[C.LOCAL_WAGE] = self.dyn.local_wage
        self.base_wage = base
        self.lockdown_effect = lockdown_effect(config)

    # ------------------------------------------------------------------ public

    def step(
        self,
        s: State,
        month: int,
        rng: np.random.Generator,
        disaster_by_village: np.ndarray,
        rec: Recorder | None = None,
    ) -> MonthResult:
        """Advance ``s`` in place through ``month``; ``disaster_by_village`` is indexed by ``s.village``."""
        ctx = self._context(s, month, rec)
        n = s.households
        income = np.zeros((len(C.INCOME_SOURCES), n), dtype=np.float64)
        rigid = np.zeros(n, dtype=np.float64)
        identified, identified_cause = self._programmes(s, ctx, rng, rec)
        self._family(s, ctx, rng, rigid, rec)
        self._health(s, ctx, rng, rigid, rec)
        if ctx.calendar == 9:
            self._school(s, ctx, rng, rigid, rec)
        self._work(s, ctx, rng, income, rec)
        self._farm_and_business(s, ctx, rng, income, rigid, disaster_by_village, rec)
        self._transfers(s, ctx, rng, income)
        return self._close(s, ctx, rng, income, rigid, identified, identified_cause, rec)

    # ------------------------------------------------------------------ context

    def _context(self, s: State, month: int, rec: Recorder | None) -> _Month:
        year = month_year(month)
        scenario = self.config.scenario
        return _Month(
            index=month,
            year=year,
            calendar=month_calendar(month),
            line=self.lines[year],
            wage_index=(1 + self.dyn.wage_growth) ** ((month - (2021 * 12)) / 12),
            price_index=(1 + self.dyn.price_growth) ** ((month - (2021 * 12)) / 12),
            farm_index=(1 + self.dyn.farm_growth) ** ((month - (2021 * 12)) / 12),
            lockdown=scenario.lockdown is not None and scenario.lockdown.contains(month),
            crop_price=(
                scenario.crop_price.factor
                if scenario.crop_price is not None and scenario.crop_price.window.contains(month)
                else 1.0
            ),
            outage=scenario.outage is not None and scenario.outage.contains(month),
            # unused slots read as newborns; they are never present
            age=((year - s.birth_year) * s.used).astype(np.int16),
            record=rec is not None and rec.tables_on,
        )

    def _potential_wage(
        self, s: State, ctx: _Month, k: np.ndarray | None = None, h: np.ndarray | None = None
    ) -> np.ndarray:
        """Monthly pay a member would earn in their usual kind of work; 0 for farming and business."""
        if k is None:
            return s.wage * self.base_wage[s.sector] * F32(ctx.wage_index)
        return s.wage[k, h] * self.base_wage[s.sector[k, h]] * F32(ctx.wage_index)

    # ------------------------------------------------------------------ 1. programmes

    def _programmes(
        self, s: State, ctx: _Month, rng: np.random.Generator, rec: Recorder | None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = ctx.index
        expired = s.measure_active & (s.measure_left == 0)
        if expired.any():
            h, k = _nonzero(expired)
            if rec is not None:
                rec.measure_ended(h, k, s.measure_start[h, k], m - 1, s.measure_amount[h, k])
            s.measure_active[h, k] = False
            s.measure_amount[h, k] = 0
            s.post_slot[h[k == C.M_WELFARE_POST]] = -1

        monitored = s.monitored
        if monitored.any():
            s.monitored_months[monitored] += 1
            # Cadres judge the income now, with support counted; bills already paid stay in the
            # rigid-expenditure window for a year but no longer threaten a household assistance has covered.
            stable = (s.last_ratio >= self.dyn.elimination_margin) | (
                ~s.last_triggered & (s.monitored_months >= self.dyn.quiet_months_to_eliminate)
            )
            ready = monitored & (s.monitored_months > self.dyn.minimum_monitored_months) & stable
            idx = _indices(ready)
            if idx.size:
                age = ctx.age[:, idx]
                # Without a fit worker the income rests on transfers: cadres keep watching far longer.
                fit_worker = (
                    s.present[:, idx]
                    & (age >= 16)
                    & (age < 60)
                    & (s.capacity[:, idx] == C.FULL)
                    & (s.sick_months[:, idx] == 0)
                ).any(axis=0)
                rate = np.where(
                    fit_worker,
                    self.dyn.elimination_rate,
                    self.dyn.elimination_rate * self.dyn.dependent_elimination,
                )
                idx = idx[rng.random(idx.size) < rate]
            if idx.size:
                s.monitored[idx] = False
                # the same bills and losses do not open a new case within a year
                s.missed_until[idx] = m + 12
                if rec is not None:
                    rec.eliminated(m, idx)
                # Support tied to the case stops; a household with labour loses the allowance over six months.
                for measure in (C.M_MEDICAL_ASSISTANCE, C.M_EMPLOYMENT_TRAINING):
                    active = s.measure_active[idx, measure]
                    s.measure_left[idx[active], measure] = 0
                age = ctx.age[:, idx]
                has_worker = (
                    s.present[:, idx] & (age >= 16) & (age < 60) & (s.capacity[:, idx] == C.FULL)
                ).any(axis=0)
                fade = s.measure_active[idx, C.M_DIBAO] & (s.measure_left[idx, C.M_DIBAO] < 0) & has_worker
                s.measure_left[idx[fade], C.M_DIBAO] = 6

        waiting = s.pending > 0
        if not waiting.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8)
        due = (s.pending == 1) & ~s.monitored
        s.pending[waiting] -= 1
        # Cadres verify on the latest data before confirming: a dip that has passed is not confirmed,
        # unless the bills of a rigid-expenditure case are on record.
        verified = s.last_triggered | (s.pending_risk == C.R2_RIGID)
        s.missed_until[due & ~verified] = m + 6
        idx = _indices(due & verified)
        cause = np.zeros(0, dtype=np.int8)
        if idx.size:
            cause = self._identify(s, ctx, rng, idx, rec)
        return idx, cause

    def _identify(
        self, s: State, ctx: _Month, rng: np.random.Generator, idx: np.ndarray, rec: Recorder | None
    ) -> np.ndarray:
        """Confirm the households ``idx`` as monitoring subjects and start their support."""
        m = ctx.index
        dyn = self.dyn
        present = s.present[:, idx]
        age = ctx.age[:, idx]
        losses = s.cause[:, idx]
        cause = np.argmax(losses, axis=0).astype(np.int8)
        # Without a recent blow cadres name the lasting condition they see: a disability, or lack of labour.
        certified = (present & (s.disability_certified[:, idx] > 0)).any(axis=0)
        structural = losses.max(axis=0) < CAUSE_FLOOR
        cause = np.where(structural, np.where(certified, C.C_DISABILITY, C.C_OTHER), cause).astype(np.int8)
        risk = s.pending_risk[idx]
        category = np.where(
            s.registered[idx],
            C.UNSTABLE_ESCAPED,
            np.where((risk == C.R2_RIGID) | (risk == C.R3_DROP), C.SUDDEN_HARDSHIP, C.MARGINAL),
        ).astype(np.int8)
        s.monitored[idx] = True
        s.monitored_months[idx] = 0
        if rec is not None:
            rec.identified(m, idx, category, risk, cause)

        k = idx.size
        u = rng.random((k, 11))
        size = np.maximum(_count(present), 1)
        low_income = ~(s.last_ratio[idx] >= 1.0)
        full_worker = (present & (age >= 16) & (age < 60) & (s.capacity[:, idx] == C.FULL)).any(axis=0)
        granted = np.zeros(k, dtype=bool)
        price = ctx.price_index

        def grant(mask: np.ndarray, measure: int, amount: np.ndarray | float, months: int) -> None:
            take = mask & ~s.measure_active[idx, measure]
            rows = idx[take]
            s.measure_active[rows, measure] = True
            s.measure_amount[rows, measure] = np.broadcast_to(amount, (k,))[take]
            s.measure_left[rows, measure] = months
            s.measure_start[rows, measure] = m
            granted[take] = True

        illness_like = (cause == C.C_ILLNESS) | (cause == C.C_ACCIDENT)
        floor_cause = (cause == C.C_ILLNESS) | (cause == C.C_DISABILITY) | (cause == C.C_OTHER)
        needs_floor = low_income & (~full_worker | floor_cause)
        dibao_odds = np.where(needs_floor, dyn.dibao_share, np.where(low_income, 0.12, 0.0))
        dibao = np.round(size * dyn.dibao_per_person * (1 + dyn.dibao_growth) ** (ctx.year - 2021))
        grant(u[:, 0] < dibao_odds, C.M_DIBAO, dibao, -1)
        sick_home = (present & (s.chronic[:, idx] | (s.disability[:, idx] > 0))).any(axis=0)
        grant((illness_like | sick_home) & (u[:, 1] < 0.9), C.M_MEDICAL_ASSISTANCE, 0.0, -1)
        relief = np.round((1000 + 3000 * u[:, 2]) * price, -2)
        relief_cause = ~((cause == C.C_EMPLOYMENT) | (cause == C.C_INDUSTRY) | (cause == C.C_EDUCATION))
        grant(relief_cause & (u[:, 3] < 0.6), C.M_TEMPORARY_RELIEF, relief, 1)
        rigid = s.last_rigid[idx].astype(np.float64)
        payout = np.round(np.minimum(0.4 * (rigid - 10000), 40000), -1)
        grant(illness_like & (rigid > 10000) & (u[:, 4] < 0.5), C.M_INSURANCE_PAYOUT, payout, 1)
        candidate = (
            present
            & (age >= 18)
            & (age < 60)
            & (s.capacity[:, idx] != C.NO_CAPACITY)
            & (s.status[:, idx] != C.MIGRANT)
            & (s.status[:, idx] != C.STUDENT)
            & (s.sick_months[:, idx] == 0)
        )
        can_post = candidate.any(axis=0) & (s.post_slot[idx] < 0)
        post_cause = (cause != C.C_EDUCATION) & (cause != C.C_DISASTER) & (cause != C.C_ACCIDENT)
        before = s.measure_active[idx, C.M_WELFARE_POST].copy()
        grant(
            can_post & post_cause & (u[:, 5] < 0.45),
            C.M_WELFARE_POST,
            np.round((600 + 400 * u[:, 6]) * price, -1),
            12,
        )
        new_post = s.measure_active[idx, C.M_WELFARE_POST] & ~before
        s.post_slot[idx[new_post]] = np.argmax(candidate[:, new_post], axis=0).astype(np.int8)
        training = (cause == C.C_EMPLOYMENT) & (u[:, 7] < 0.5)
        grant(training, C.M_EMPLOYMENT_TRAINING, 0.0, 3)
        trained = idx[training]
        s.stability_outlook[:, trained] = np.minimum(s.stability_outlook[:, trained] + F32(0.1), F32(0.95))
        s.out_months[:, trained] = np.minimum(s.out_months[:, trained], 1)
        industry = (cause == C.C_INDUSTRY) | (cause == C.C_DISASTER)
        grant(
            industry & (u[:, 8] < 0.6), C.M_INDUSTRY_SUBSIDY, np.round((300 + 200 * u[:, 9]) * price, -1), 12
        )
        in_college = (present & (s.college_years[:, idx] > 0)).any(axis=0)
        grant(
            ((cause == C.C_EDUCATION) | in_college) & (u[:, 10] < 0.8),
            C.M_EDUCATION_SUBSIDY,
            np.round(300 * price, -1),
            12,
        )
        grant((cause == C.C_DISASTER) & ~s.housing_safe[idx], C.M_HOUSING_RENOVATION, 0.0, 6)
        grant(~granted, C.M_TEMPORARY_RELIEF, relief, 1)
        return cause

    # ------------------------------------------------------------------ 2. family

    def _add_members(
        self,
        s: State,
        ctx: _Month,
        rng: np.random.Generator,
        h: np.ndarray,
        birth_year: np.ndarray,
        sex: np.ndarray,
        relation: np.ndarray,
    ) -> np.ndarray:
        """Put newcomers into the first never-used slot of each household ``h``; returns their slots."""
        k = np.argmax(~s.used[:, h], axis=0)
        n = h.size
        dyn = self.dyn
        profile = self.config.profile
        age = ctx.year - birth_year
        adult = age >= 16
        s.used[k, h] = True
        s.present[k, h] = True
        s.birth_year[k, h] = birth_year
        s.sex[k, h] = sex
        s.relation[k, h] = relation
        s.education[k, h] = np.where(adult, C.ED_JUNIOR, C.ED_NONE)
        s.capacity[k, h] = np.where(adult, C.FULL, C.NO_CAPACITY)
        u = rng.random((n, 5))
        frailty = ((u[:, 0] - 0.5) * 0.24).astype(np.float32)
        s.frailty[k, h] = frailty
        s.health[k, h] = np.clip(health_target(age) + frailty, 0.05, 1.0)
        s.insured[k, h] = u[:, 1] < 0.96
        migrant = profile.migrant_share * 0.7
        sector = np.where(
            u[:, 2] < migrant,
            C.MIGRANT,
            np.where(u[:, 2] < migrant + profile.local_wage_share, C.LOCAL_WAGE, C.FARMING),
        )
        s.sector[k, h] = sector
        s.status[k, h] = np.where(adult, sector, C.NOT_IN_LABOR)
        outlook = np.clip(
            dyn.stability_mean + (u[:, 3] - 0.5) * float(UNIT_NOISE) * dyn.outlook_spread, 0.15, 0.97
        ).astype(np.float32)
        s.stability_outlook[k, h] = outlook
        s.stability[k, h] = outlook
        s.wage[k, h] = (
            np.exp((u[:, 4] - 0.5) * dyn.wage_dispersion * float(UNIT_NOISE))
            * np.where(sex == C.FEMALE, 0.85, 1.0)
            * np.where(s.registered[h], dyn.registered_wage_factor, 1.0)
            * profile.wage_factor
        ).astype(np.float32)
        for name in (
            "disability",
            "disability_certified",
            "certify_in",
            "college_years",
            "out_months",
            "sick_months",
            "care_months",
            "declined_months",
        ):
            getattr(s, name)[k, h] = 0
        for name in ("chronic", "declining", "diagnosed", "schooling"):
            getattr(s, name)[k, h] = False
        s.followup[k, h] = 0
        s.reimbursement[k, h] = 0
        s.joined[k, h] = ctx.index
        s.left[k, h] = -1
        return k

    def _leave(self, s: State, ctx: _Month, k: np.ndarray, h: np.ndarray) -> None:
        s.present[k, h] = False
        s.left[k, h] = ctx.index
        holds_post = s.post_slot[h] == k
        s.post_slot[h[holds_post]] = -1

    def _family(
        self, s: State, ctx: _Month, rng: np.random.Generator, rigid: np.ndarray, rec: Recorder | None
    ) -> None:
        dyn = self.dyn
        age = ctx.age
        n = s.households
        shape = s.present.shape
        u = rng.random(shape, dtype=F32)
        # deaths: Gompertz mortality scaled by hidden health; the bound spares computing it for everyone
        k, h = _nonzero(s.present & (u < DEATH_BOUND))
        if k.size:
            a = age[k, h].astype(np.float32)
            yearly = dyn.mortality_scale * np.exp(dyn.mortality_slope * np.minimum(a, 105))
            hazard = yearly / 12 * (0.4 + 3.0 * (1 - s.health[k, h]) ** 2) / 0.6
            die = u[k, h] < np.minimum(hazard, DEATH_BOUND)
            k, h = k[die], h[die]
        if k.size:
            funeral = np.round(15000 * ctx.price_index * np.exp(rng.normal(0, 0.35, h.size)), 0)
            rigid += _per_household(n, h, funeral)
            lost = (self._potential_wage(s, ctx, k, h) * 6 + funeral).astype(np.float32)
            cause = np.where(s.health[k, h] < 0.45, C.C_ILLNESS, C.C_OTHER)
            np.add.at(s.cause, (cause, h), lost)
            self._leave(s, ctx, k, h)
            if ctx.record:
                rec.event(ctx.index, h, k, C.EV_DEATH, np.where(age[k, h] < 60, 3, 2))
                rec.expense(ctx.index, h, np.full(h.size, -1), C.FUNERAL, funeral, np.zeros(h.size))
        present = s.present
        size = _count(present)
        free = ~s.used.all(axis=0)
        draws = rng.random((2, n))
        # births: one child at most per household and month
        mothers = (
            present
            & (s.sex == C.FEMALE)
            & (age >= 20)
            & (age <= 40)
            & ((s.relation == C.HEAD) | (s.relation == C.SPOUSE) | (s.relation == C.OTHER_RELATION))
        )
        has_mother = mothers.any(axis=0)
        h = _indices(free & has_mother & (draws[0] < dyn.birth_rate))
        if h.size:
            small = _count(present[:, h] & (age[:, h] < 6))
            h = h[draws[0, h] < dyn.birth_rate / (1 + small)]
        born = np.zeros(n, dtype=bool)
        if h.size:
            born[h] = True
            mother = np.argmax(mothers[:, h], axis=0)
            relation = np.where(s.relation[mother, h] == C.OTHER_RELATION, C.GRANDCHILD, C.CHILD).astype(
                np.int8
            )
            sex = (rng.random(h.size) < 0.5).astype(np.int8)
            k = self._add_members(s, ctx, rng, h, np.full(h.size, ctx.year, dtype=np.int16), sex, relation)
            if ctx.record:
                rec.event(ctx.index, h, k, C.EV_BIRTH, np.ones(h.size, dtype=np.int8))
                rec.member_joined(ctx.index, h, k, s)
        # marriage: grown children leave (the draw is the deaths' one, above the death bound)
        child = (s.relation == C.CHILD) | (s.relation == C.GRANDCHILD)
        leaving = present & child & (age >= 20) & (age <= 32) & (u > F32(1 - dyn.marriage_out_rate))
        if leaving.any():
            k, h = _nonzero(leaving)
            # one leaver per household and month, and never the last member
            h, first = np.unique(h, return_index=True)
            k = k[first]
            keep = size[h] >= 2
            h, k = h[keep], k[keep]
            self._leave(s, ctx, k, h)
            if ctx.record:
                rec.event(ctx.index, h, k, C.EV_MARRIAGE_OUT, np.ones(h.size, dtype=np.int8))
        grooms = s.present & (s.relation == C.CHILD) & (s.sex == C.MALE) & (age >= 22) & (age <= 34)
        h = _indices(free & ~born & grooms.any(axis=0) & (draws[1] < dyn.marriage_in_rate * 2))
        if h.size:
            h = h[draws[1, h] < dyn.marriage_in_rate * _count(grooms[:, h])]
        if h.size:
            groom = np.argmax(grooms[:, h], axis=0)
            birth = (s.birth_year[groom, h] + rng.integers(0, 4, h.size)).astype(np.int16)
            k = self._add_members(
                s,
                ctx,
                rng,
                h,
                birth,
                np.full(h.size, C.FEMALE, dtype=np.int8),
                np.full(h.size, C.OTHER_RELATION, dtype=np.int8),
            )
            if ctx.record:
                rec.event(ctx.index, h, k, C.EV_MARRIAGE_IN, np.ones(h.size, dtype=np.int8))
                rec.member_joined(ctx.index, h, k, s)

    # ------------------------------------------------------------------ 3. health

    def _disable(
        self, s: State, ctx: _Month, rng: np.random.Generator, k: np.ndarray, h: np.ndarray, odds: list[float]
    ) -> None:
        grade = rng.choice(np.array([2, 3, 4], dtype=np.int8), size=h.size, p=odds)
        current = s.disability[k, h]
        s.disability[k, h] = np.where(current == 0, grade, np.minimum(current, grade))
        s.capacity[k, h] = np.where(
            s.disability[k, h] <= 2, C.NO_CAPACITY, np.maximum(s.capacity[k, h], C.WEAK)
        )
        s.certify_in[k, h] = rng.integers(3, 10, h.size)
        lost = self._potential_wage(s, ctx, k, h) * 6
        s.cause[C.C_DISABILITY] += _per_household(s.households, h, lost).astype(np.float32)

    @staticmethod
    def _with_assistance(s: State, h: np.ndarray, rate: np.ndarray) -> np.ndarray:
        """Medical assistance pays half of what insurance leaves, for households that have it."""
        assisted = s.measure_active[h, C.M_MEDICAL_ASSISTANCE]
        return np.where(assisted, rate + (1 - rate) * 0.5, rate)

    def _health(
        self, s: State, ctx: _Month, rng: np.random.Generator, rigid: np.ndarray, rec: Recorder | None
    ) -> None:
        dyn = self.dyn
        n = s.households
        age = ctx.age
        present = s.present
        shape = present.shape
        price = ctx.price_index
        target = (
            health_target(age)
            + s.frailty
            - F32(0.15) * s.chronic
            - F32(0.1) * (s.disability > 0)
            - F32(dyn.decline_depth) * s.declining
        )
        # A deterioration shows within weeks; ordinary ageing and recovery take years.
        persistence = np.where(s.declining, F32(dyn.decline_persistence), F32(dyn.health_persistence))
        s.health += persistence * (target - s.health) + F32(dyn.health_noise) * _noise(rng, shape)
        np.clip(s.health, F32(0.02), F32(1.0), out=s.health)
        health = s.health

        # Competing monthly hazards share one draw: deterioration, chronic onset, serious illness, accident;
        # the top of the same draw ends a deterioration that led nowhere.
        u = rng.random(shape, dtype=F32)
        k, h = _nonzero(present & ((u < EVENT_BOUND) | s.declining))
        if k.size:
            a = age[k, h]
            hk = health[k, h]
            older = np.where(a < 40, 0.35, np.where(a < 60, 1.0, 1.7))
            chronic_k = s.chronic[k, h]
            declining_k = s.declining[k, h]
            p_decline = dyn.decline_hazard * older * ~declining_k
            # a deterioration is often diagnosed as a (further) chronic disease: a complication counts too
            p_chronic = dyn.chronic_hazard * np.exp(
                3 * (0.7 - hk)
            ) * older * ~chronic_k + dyn.decline_chronic * (declining_k & ~s.diagnosed[k, h])
            # Once a deterioration is diagnosed its serious episode (an operation, a hospital stay) follows
            # within months, the more surely the longer it has built up; before the diagnosis it is rare.
            built_up = np.minimum(s.declined_months[k, h] / dyn.decline_build_months, 1.0)
            p_serious = dyn.serious_base * np.exp(dyn.serious_slope * (0.75 - hk)) * np.where(
                chronic_k, 1.6, 1.0
            ) * older + declining_k * np.where(
                s.diagnosed[k, h], dyn.decline_serious * built_up, dyn.decline_serious_undiagnosed
            )
            p_accident = (
                dyn.accident_hazard
                * np.where(s.status[k, h] == C.MIGRANT, 1.5, 1.0)
                * np.where(a >= 16, 1.0, 0.3)
            )
            uk = u[k, h]
            c1 = p_decline
            c2 = c1 + p_chronic
            c3 = c2 + p_serious
            c4 = np.minimum(c3 + p_accident, np.where(declining_k, DECLINE_BOUND, EVENT_BOUND))
            s.declining[k[uk < c1], h[uk < c1]] = True
            recovery = np.where(s.diagnosed[k, h], dyn.decline_recovery, dyn.decline_recovery_undiagnosed)
            recovered = declining_k & (uk >= 1 - recovery)
            s.declining[k[recovered], h[recovered]] = False
            s.diagnosed[k[recovered], h[recovered]] = False
            s.declined_months[k[recovered], h[recovered]] = 0
            pick = (uk >= c1) & (uk < c2)
            chronic_new = (k[pick], h[pick])
            pick = (uk >= c2) & (uk < c3)
            serious = (k[pick], h[pick])
            pick = (uk >= c3) & (uk < c4)
            accident = (k[pick], h[pick])
        else:
            empty = np.zeros(0, dtype=np.int64)
            chronic_new = serious = accident = (empty, empty)

        if chronic_new[0].size:
            k, h = chronic_new
            s.chronic[k, h] = True
            grave = s.declining[k, h]
            s.diagnosed[k, h] |= grave
            if ctx.record:
                # a disease found by the work-up of a deterioration is registered as a grave one
                # (a special-disease outpatient entitlement); an ordinary onset as a mild one
                rec.event(ctx.index, h, k, C.EV_CHRONIC_ILLNESS, np.where(grave, 2, 1).astype(np.int8))

        # outpatient care: chronic patients and anyone feeling ill; bills grow as health falls
        v = rng.random(shape, dtype=F32)
        bound = F32(max(0.55, dyn.decline_visits))
        k, h = _nonzero(
            present & (v < bound) & (s.chronic | s.declining | (health < F32(0.55)) | (v < F32(0.03)))
        )
        if k.size:
            hk = health[k, h]
            chronic_k = s.chronic[k, h]
            visit = v[k, h] < np.where(
                s.declining[k, h],
                dyn.decline_visits,
                np.where(chronic_k, 0.55, np.where(hk < 0.55, 0.3, 0.03)),
            )
            k, h, hk, chronic_k = k[visit], h[visit], hk[visit], chronic_k[visit]
            # an undiagnosed deterioration sends people to tests and specialists
            workup = np.where(s.declining[k, h], dyn.decline_bill_factor, 1.0)
            gross = np.round(
                dyn.outpatient_bill
                * price
                * workup
                * np.exp(3.2 * (1 - hk) + (rng.random(h.size) - 0.5) * 1.7),
                2,
            )
            rate = np.where(s.insured[k, h], np.where(chronic_k, 0.5, 0.3), 0.0)
            paid = np.round(gross * self._with_assistance(s, h, rate), 2)
            out_of_pocket = _per_household(n, h, gross - paid)
            rigid += out_of_pocket
            # routine outpatient spending weighs less with cadres than a hospital stay
            s.cause[C.C_ILLNESS] += (0.4 * out_of_pocket).astype(np.float32)
            if ctx.record:
                rec.expense(ctx.index, h, k, C.MEDICAL, gross, paid)
        # follow-up bills of earlier serious illnesses
        k, h = _nonzero(present & (s.followup > 0))
        if k.size:
            due = s.followup[k, h].astype(np.float64)
            bill = np.round(np.where(due > 3000, due * 0.5, due), 2)
            s.followup[k, h] = np.where(due > 3000, due - bill, 0).astype(np.float32)
            paid = np.round(bill * self._with_assistance(s, h, s.reimbursement[k, h]), 2)
            out_of_pocket = _per_household(n, h, bill - paid)
            rigid += out_of_pocket
            s.cause[C.C_ILLNESS] += out_of_pocket.astype(np.float32)
            if ctx.record:
                rec.expense(ctx.index, h, k, C.MEDICAL, bill, paid)

        if serious[0].size:
            k, h = serious
            size = h.size
            gross = np.minimum(
                np.exp(rng.normal(np.log(dyn.serious_bill_median * price), dyn.serious_bill_sigma, size)),
                600_000 * price,
            )
            rate = np.where(
                s.insured[k, h],
                rng.uniform(dyn.reimbursement_low, dyn.reimbursement_high, size),
                rng.uniform(0, 0.15, size),
            )
            first = np.round(gross * dyn.serious_first_share, 2)
            paid = np.round(first * self._with_assistance(s, h, rate), 2)
            s.followup[k, h] = (gross - first).astype(np.float32)
            s.reimbursement[k, h] = rate.astype(np.float32)
            out_of_pocket = _per_household(n, h, first - paid)
            rigid += out_of_pocket
            s.cause[C.C_ILLNESS] += out_of_pocket.astype(np.float32)
            sick = np.minimum(2 + rng.poisson(max(dyn.sick_months - 2, 0.1), size), 24)
            s.sick_months[k, h] = np.maximum(s.sick_months[k, h], sick)
            s.health[k, h] = np.maximum(s.health[k, h] - 0.2, 0.02)
            w = rng.random((3, size))
            s.chronic[k, h] |= w[0] < 0.4
            # treatment ends the deterioration that led here
            s.declining[k, h] = False
            s.diagnosed[k, h] = False
            s.declined_months[k, h] = 0
            disabled = w[2] < dyn.disability_after_illness
            if disabled.any():
                self._disable(s, ctx, rng, k[disabled], h[disabled], [0.3, 0.4, 0.3])
            self._carers(s, ctx, rng, k, h, sick)
            if ctx.record:
                rec.event(ctx.index, h, k, C.EV_SERIOUS_ILLNESS, np.where(gross > 100_000 * price, 3, 2))
                rec.expense(ctx.index, h, k, C.MEDICAL, first, paid)

        if accident[0].size:
            k, h = accident
            size = h.size
            gross = np.round(
                np.minimum(
                    np.exp(rng.normal(np.log(dyn.accident_bill_median * price), 0.9, size)), 300_000 * price
                ),
                2,
            )
            rate = np.where(s.insured[k, h], rng.uniform(0.2, 0.6, size), 0.05)
            paid = np.round(gross * self._with_assistance(s, h, rate), 2)
            out_of_pocket = _per_household(n, h, gross - paid)
            rigid += out_of_pocket
            s.cause[C.C_ACCIDENT] += out_of_pocket.astype(np.float32)
            sick = np.minimum(1 + rng.poisson(2.0, size), 24)
            s.sick_months[k, h] = np.maximum(s.sick_months[k, h], sick)
            s.health[k, h] = np.maximum(s.health[k, h] - 0.1, 0.02)
            disabled = rng.random(size) < dyn.disability_after_accident
            if disabled.any():
                self._disable(s, ctx, rng, k[disabled], h[disabled], [0.15, 0.35, 0.5])
            if ctx.record:
                severity = np.where(gross > 50_000 * price, 3, np.where(gross > 10_000 * price, 2, 1))
                rec.event(ctx.index, h, k, C.EV_ACCIDENT_INJURY, severity)
                rec.expense(ctx.index, h, k, C.ACCIDENT_COST, gross, paid)

        s.declined_months += (s.declining & (s.declined_months < 100)).view(np.int8)

        k, h = _nonzero(s.certify_in > 0)
        if k.size:
            s.certify_in[k, h] -= 1
            done = (s.certify_in[k, h] == 0) & present[k, h]
            k, h = k[done], h[done]
            s.disability_certified[k, h] = s.disability[k, h]
            if ctx.record and k.size:
                grade = s.disability[k, h]
                rec.event(
                    ctx.index,
                    h,
                    k,
                    C.EV_DISABILITY_CERTIFIED,
                    np.where(grade <= 2, 3, 2),
                    grade.astype(np.float64),
                )

    def _carers(
        self,
        s: State,
        ctx: _Month,
        rng: np.random.Generator,
        patient: np.ndarray,
        h: np.ndarray,
        sick: np.ndarray,
    ) -> None:
        """Often a working relative stops work to look after a seriously ill member."""
        age = ctx.age[:, h]
        able = (
            s.present[:, h]
            & (age >= 18)
            & (age < 60)
            & (s.capacity[:, h] == C.FULL)
            & (s.sick_months[:, h] == 0)
        )
        able[patient, np.arange(h.size)] = False
        cares = able.any(axis=0) & (rng.random(h.size) < self.dyn.carer_share)
        if cares.any():
            who = np.argmax(able[:, cares], axis=0)
            hh = h[cares]
            care = np.minimum(sick[cares], self.dyn.care_months_max)
            s.care_months[who, hh] = np.maximum(s.care_months[who, hh], care)

    # ------------------------------------------------------------------ 4. school

    def _school(
        self, s: State, ctx: _Month, rng: np.random.Generator, rigid: np.ndarray, rec: Recorder | None
    ) -> None:
        dyn = self.dyn
        age = ctx.age
        present = s.present
        shape = present.shape
        price = ctx.price_index
        u = rng.random((3, *shape))
        # at 16: senior school or work
        sixteen = present & (age == 16)
        stays = sixteen & (u[0] < np.where(s.registered, 0.6, 0.75))
        s.schooling |= stays
        s.education[stays] = C.ED_SENIOR
        self._enter_work(s, rng, sixteen & ~stays)
        # at 19: college or work
        leaving = present & s.schooling & (age >= 19)
        s.schooling &= ~leaving
        college = leaving & (u[1] < dyn.college_share * np.where(s.registered, 0.85, 1.0))
        vocational = college & (u[2] < 0.5)
        s.college_years[college] = np.where(vocational[college], 3, 4)
        s.education[college] = np.where(vocational[college], C.ED_VOCATIONAL, C.ED_COLLEGE)
        self._enter_work(s, rng, leaving & ~college)
        # students already in college start another year or graduate
        continuing = present & (s.college_years > 0) & ~college
        s.college_years[continuing] -= 1
        graduates = continuing & (s.college_years == 0)
        s.wage[graduates] *= F32(1.25)
        self._enter_work(s, rng, graduates)
        paying = college | (continuing & (s.college_years > 0))
        k, h = _nonzero(paying)
        if k.size:
            gross = np.round(dyn.college_cost * price * rng.uniform(0.85, 1.25, h.size), 0)
            paid = np.where(s.registered[h], np.minimum(3000.0, gross), 0.0)
            out_of_pocket = _per_household(s.households, h, gross - paid)
            rigid += out_of_pocket
            s.cause[C.C_EDUCATION] += out_of_pocket.astype(np.float32)
            if ctx.record:
                rec.expense(ctx.index, h, k, C.EDUCATION_COST, gross, paid)
        if ctx.record and college.any():
            k, h = _nonzero(college)
            rec.event(ctx.index, h, k, C.EV_COLLEGE_ENTRY, np.full(h.size, 2, dtype=np.int8))

    def _enter_work(self, s: State, rng: np.random.Generator, mask: np.ndarray) -> None:
        if not mask.any():
            return
        profile = self.config.profile
        u = rng.random(int(mask.sum()))
        migrant = profile.migrant_share * 1.2
        s.sector[mask] = np.where(
            u < migrant, C.MIGRANT, np.where(u < migrant + profile.local_wage_share, C.LOCAL_WAGE, C.FARMING)
        )

    # ------------------------------------------------------------------ 5. work

    def _seek_work(self, s: State, rng: np.random.Generator, fit: np.ndarray) -> None:
        """After the Spring Festival a household with nobody in paid work often sends its youngest out."""
        paid = fit & ((s.sector == C.MIGRANT) | (s.sector == C.LOCAL_WAGE) | (s.sector == C.SELF_EMPLOYED))
        h = _indices(fit.any(axis=0) & ~paid.any(axis=0))
        h = h[rng.random(h.size) < 0.5]
        if h.size:
            youngest = np.argmax(np.where(fit[:, h], s.birth_year[:, h], -1), axis=0)
            s.sector[youngest, h] = np.where(rng.random(h.size) < 0.6, C.MIGRANT, C.LOCAL_WAGE)

    def _find_work(self, s: State, ctx: _Month, rng: np.random.Generator) -> None:
        """Workers who lost their job find a new one with a monthly chance, from the second month on."""
        dyn = self.dyn
        k, h = _nonzero((s.out_months > 0) & (s.out_months < OUT_OF_WORK_CAP - 1))
        if not k.size:
            return
        # older workers and those of registered households take longer to find work again
        mean = dyn.out_of_work_months * np.where(s.registered[h], dyn.out_of_work_registered, 1.0)
        mean = mean * np.where(ctx.age[k, h] >= 45, dyn.out_of_work_older, 1.0)
        found = rng.random(h.size) < 1 / mean
        s.out_months[k[found], h[found]] = 0

    def _work(
        self, s: State, ctx: _Month, rng: np.random.Generator, income: np.ndarray, rec: Recorder | None
    ) -> None:
        dyn = self.dyn
        age = ctx.age
        present = s.present
        shape = present.shape
        farm_land = s.land_mu > 1.0
        student = present & (s.schooling | (s.college_years > 0))
        adult = present & (age >= 16) & ~student
        full = s.capacity == C.FULL
        # people in their early sixties still work if they are fit; weaker ones farm or stop
        young = adult & ((age < 60) | ((age < 65) & full))
        sector = s.sector
        if ctx.calendar == 3:
            self._seek_work(s, rng, young & full & (age < 50))
        # hidden job stability drifts towards an outlook that sometimes drops (the firm is in trouble)
        worker = young & ((sector == C.MIGRANT) | (sector == C.LOCAL_WAGE))
        u = rng.random((2, *shape), dtype=F32)
        s.stability_outlook += F32(dyn.outlook_reversion) * (F32(dyn.stability_mean) - s.stability_outlook)
        # given trouble, the draw divided by the hazard is uniform again: it sets the size of the drop
        hazard = F32(dyn.firm_trouble_hazard)
        trouble = worker & (u[1] < hazard)
        low, high = dyn.firm_trouble_drop
        s.stability_outlook -= trouble * (F32(low) + F32(high - low) * u[1] / hazard)
        np.clip(s.stability_outlook, F32(0.05), F32(0.97), out=s.stability_outlook)
        s.stability += F32(dyn.stability_persistence) * (s.stability_outlook - s.stability) + F32(
            dyn.stability_noise
        ) * _noise(rng, shape)
        np.clip(s.stability, F32(0.0), F32(1.0), out=s.stability)

        disabled_out = s.capacity == C.NO_CAPACITY
        sick = (s.sick_months > 0) | (s.care_months > 0)
        self._find_work(s, ctx, rng)
        out = s.out_months > 0
        working = worker & ~out & ~sick & ~disabled_out
        # a steady job is almost never lost, a thinning one within months
        shortfall = np.maximum(F32(dyn.job_loss_threshold) - s.stability, F32(0))
        p_loss = F32(dyn.job_loss_base) + F32(dyn.job_loss_slope) * shortfall * shortfall
        # a thinning job runs out of shifts first; a worker whose health is failing misses whole months
        # before anyone names the illness
        thinned = np.maximum(F32(dyn.stability_mean) - s.stability, F32(0))
        p_gap = F32(dyn.gap_base) + F32(dyn.gap_slope) * thinned + F32(dyn.decline_absence) * s.declining
        draw = u[0]
        loss = working & (draw < p_loss)
        gap = working & ~loss & (draw < p_loss + p_gap)
        stuck = np.zeros(shape, dtype=bool)
        if ctx.lockdown:
            migrant_stuck, local_stuck, _ = self.lockdown_effect
            odds = np.where(sector == C.MIGRANT, F32(migrant_stuck), F32(local_stuck))
            stuck = working & ~loss & ~gap & (rng.random(shape, dtype=F32) < odds)
            if ctx.record and ctx.index == self.config.scenario.lockdown.first:
                h = _indices(stuck.any(axis=0))
                severity = np.where(_count(stuck[:, h]) >= _count(working[:, h]), 3, 2)
                rec.event(ctx.index, h, np.full(h.size, -1), C.EV_EPIDEMIC_LOCKDOWN, severity)
        if loss.any():
            k, h = _nonzero(loss)
            # the search lasts until a monthly chance of new work comes up (_find_work): its length is
            # nobody's knowledge in advance, only the cap ends it for sure
            s.out_months[k, h] = OUT_OF_WORK_CAP
            s.stability[k, h] = np.maximum(np.minimum(s.stability[k, h], s.stability_outlook[k, h]) - 0.1, 0)
            # the next job is with another employer, whose prospects are those of any job
            s.stability_outlook[k, h] = np.clip(
                dyn.stability_mean + (rng.random(h.size) - 0.5) * float(UNIT_NOISE) * dyn.outlook_spread,
                0.15,
                0.97,
            ).astype(np.float32)
            switch = (sector[k, h] == C.MIGRANT) & (rng.random(h.size) < 0.25)
            sector[k[switch], h[switch]] = C.LOCAL_WAGE
            if ctx.record:
                rec.event(ctx.index, h, k, C.EV_JOB_LOSS, np.full(h.size, 2, dtype=np.int8))

        # later rules win: retirement, idleness, a closed business, a welfare post, illness, school
        status = sector.copy()
        _set(status, adult & ~young, np.where(farm_land, np.int8(C.FARMING), np.int8(C.NOT_IN_LABOR)))
        idle = out | loss | gap | stuck
        _set(status, idle, C.UNEMPLOYED)
        _set(status, (out | loss) & farm_land, C.FARMING)
        _set(status, (sector == C.SELF_EMPLOYED) & ~s.business, C.UNEMPLOYED)
        post_h = _indices((s.post_slot >= 0) & s.measure_active[:, C.M_WELFARE_POST])
        post_k = s.post_slot[post_h].astype(np.intp)
        status[post_k, post_h] = C.WELFARE_POST
        _set(status, sick | disabled_out | (age >= 65) | ~present | (age < 16), C.NOT_IN_LABOR)
        _set(status, student, C.STUDENT)
        s.status = status

        potential = self._potential_wage(s, ctx)
        steadiness = F32(1) + F32(dyn.pay_thinning) * (s.stability - F32(dyn.stability_mean))
        steadiness -= F32(dyn.decline_pay_cut) * s.declining
        pay = potential * steadiness * (F32(1) + F32(dyn.wage_noise) * _noise(rng, shape))
        if ctx.calendar in SPRING_FESTIVAL_PAY:
            # migrants go home for the Spring Festival and are paid for the days they work
            pay *= np.where(
                sector == C.MIGRANT,
                F32(SPRING_FESTIVAL_PAY[ctx.calendar]),
                F32(WINTER_SLACK_PAY[ctx.calendar]),
            )
        income[C.WAGE_MIGRANT] = (pay * (status == C.MIGRANT)).sum(axis=0)
        income[C.WAGE_LOCAL] = (pay * (status == C.LOCAL_WAGE)).sum(axis=0)
        on_post = status[post_k, post_h] == C.WELFARE_POST
        income[C.WAGE_LOCAL, post_h[on_post]] += s.measure_amount[post_h[on_post], C.M_WELFARE_POST]

        usual = young & ~disabled_out
        failing = usual & s.declining
        lost_to_illness = (usual & sick) + failing * (gap + F32(dyn.decline_pay_cut))
        s.cause[C.C_ILLNESS] += (potential * lost_to_illness).sum(axis=0)
        # a month between two jobs is ordinary churn; losing the job or a lockdown is the blow cadres name
        s.cause[C.C_EMPLOYMENT] += (potential * (usual & (out | loss | stuck))).sum(axis=0)
        for counter in (s.out_months, s.sick_months, s.care_months):
            counter -= (counter > 0).view(np.int8)
        if ctx.record:
            rec.employment(ctx.index, present & (age >= 16) & (age < 65), status)

    # ------------------------------------------------------------------ 6. farms and business

    def _farm_and_business(
        self,
        s: State,
        ctx: _Month,
        rng: np.random.Generator,
        income: np.ndarray,
        rigid: np.ndarray,
        disaster_by_village: np.ndarray,
        rec: Recorder | None,
    ) -> None:
        dyn = self.dyn
        n = s.households
        price = ctx.price_index
        cal = ctx.calendar
        age = ctx.age
        status = s.status
        capable = (
            s.present
            & (age >= 16)
            & (age <= 75)
            & (s.capacity != C.NO_CAPACITY)
            & (s.sick_months == 0)
            & (status != C.MIGRANT)
            & (status != C.STUDENT)
            & (status != C.SELF_EMPLOYED)
        )
        farmers = _count(capable)
        farming = (farmers > 0) & (s.land_mu > 0)
        earning = F32(ctx.farm_index)
        annual = s.land_mu * s.farm_value * earning * np.minimum(F32(1.0), F32(0.45) + F32(0.35) * farmers)

        severity = disaster_by_village[s.village]
        h = _indices(severity > 0)
        if h.size:
            sev = severity[h].astype(np.float64)
            w = rng.random((4, h.size))
            added = np.where(s.land_mu[h] > 0, (0.5 + w[0]) * dyn.harvest_loss_per_severity * sev, 0.0)
            before = s.crop_damage[h].astype(np.float64)
            s.crop_damage[h] = np.minimum(before + added, 0.9)
            crop_loss = (s.crop_damage[h] - before) * annual[h] * REMAINING_HARVEST[s.terrain[h], cal]
            damaged = w[1] < dyn.house_damage_share * sev * np.where(s.housing_safe[h], 1.0, 1.8)
            house = np.round(np.where(damaged, 12000 * price * sev * np.exp((w[2] - 0.5) * 2.0), 0.0), 0)
            renovation = s.measure_active[h, C.M_HOUSING_RENOVATION]
            house_paid = np.round(house * np.where(renovation, 0.8, 0.2 + 0.3 * w[3]), 0)
            herd = np.where(sev >= 2, s.livestock[h] * 0.1 * sev * w[0], 0.0)
            s.livestock[h] -= herd.astype(np.float32)
            herd_value = herd * dyn.livestock_value * price
            rigid[h] += house - house_paid
            s.cause[C.C_DISASTER, h] += (crop_loss + house - house_paid + herd_value).astype(np.float32)
            if ctx.record:
                none = np.full(h.size, -1)
                rec.event(
                    ctx.index,
                    h,
                    none,
                    C.EV_NATURAL_DISASTER,
                    severity[h],
                    np.round(crop_loss + house + herd_value, -2),
                )
                d = _indices(damaged)
                if d.size:
                    rec.event(ctx.index, h[d], none[d], C.EV_HOUSE_DAMAGE, severity[h][d])
                    rec.expense(ctx.index, h[d], none[d], C.DISASTER_COST, house[d], house_paid[d])

        share = HARVEST[s.terrain, cal]
        harvest = share > 0
        farm = farming * annual * share * np.where(harvest, 1 - s.crop_damage, 1.0)
        if ctx.crop_price != 1.0:
            # sales earn less, seed and fertiliser cost as much; the loss is the farm's (产业) blow
            lost = np.where(harvest, farm * (1.0 - ctx.crop_price), 0.0)
            farm = farm - lost
            s.cause[C.C_INDUSTRY] += lost.astype(np.float32)
        if cal == LAST_HARVEST_MONTH:
            failed = farming & (s.crop_damage > 0.25)
            if ctx.record and failed.any():
                h = _indices(failed)
                damage = s.crop_damage[h]
                rec.event(
                    ctx.index,
                    h,
                    np.full(h.size, -1),
                    C.EV_CROP_FAILURE,
                    np.where(damage > 0.65, 3, np.where(damage > 0.4, 2, 1)),
                )
            s.crop_damage[:] = 0
        if cal == 12:
            income[C.PROPERTY] += ~farming * s.land_mu * (350 * price)

        # livestock: sales around the Spring Festival and in autumn; disease wipes out part of a herd
        h = _indices((s.livestock_target > 0) & (rng.random(n) < dyn.livestock_loss_hazard))
        if h.size:
            lost = s.livestock[h] * rng.uniform(0.3, 0.7, h.size).astype(np.float32)
            s.livestock[h] -= lost
            s.cause[C.C_INDUSTRY, h] += (lost * dyn.livestock_value * price).astype(np.float32)
            if ctx.record:
                rec.event(
                    ctx.index, h, np.full(h.size, -1), C.EV_LIVESTOCK_LOSS, np.full(h.size, 2, dtype=np.int8)
                )
        s.livestock += F32(0.03) * (s.livestock_target - s.livestock)
        income[C.AGRICULTURE] = farm + s.livestock * F32(
            dyn.livestock_value * ctx.farm_index * LIVESTOCK_SALES[cal]
        )

        # business: hidden health drifts towards an outlook that sometimes turns bad; failure below a floor
        b = _indices(s.business)
        if b.size:
            w = rng.random((5, b.size))
            outlook = s.business_outlook[b]
            outlook += F32(0.01) * (F32(0.8) - outlook)
            turn = w[0] < dyn.business_trouble_hazard
            outlook[turn] -= (0.6 + 0.8 * w[1][turn]).astype(np.float32)
            s.business_outlook[b] = outlook
            health = s.business_health[b]
            health += (
                F32(dyn.business_persistence) * (outlook - health)
                + F32(dyn.business_noise) * (w[2] - 0.5).astype(np.float32) * UNIT_NOISE
            )
            s.business_health[b] = health
            runner = (status[:, b] == C.SELF_EMPLOYED).any(axis=0)
            scale = s.business_scale[b] * ctx.farm_index
            net = (
                scale
                * (0.25 + 0.85 * health)
                * (1 + dyn.business_income_noise * (w[3] - 0.5) * float(UNIT_NOISE))
            )
            net *= np.where(runner, 1.0, 0.4)
            if ctx.lockdown:
                net *= self.lockdown_effect[2]
            failed = health < dyn.business_failure_level
            net = np.where(failed, -scale * (0.5 + 1.5 * w[4]), net)
            shortfall = np.maximum(0.7 * scale - net, 0)
            s.cause[C.C_INDUSTRY, b] += (shortfall + failed * scale * 6).astype(np.float32)
            income[C.BUSINESS, b] = net
            if failed.any():
                f = b[failed]
                s.business[f] = False
                rk, rh = _nonzero((s.sector[:, f] == C.SELF_EMPLOYED) & s.present[:, f])
                rh = f[rh]
                s.sector[rk, rh] = np.where(rng.random(rh.size) < 0.5, C.MIGRANT, C.LOCAL_WAGE)
                s.out_months[rk, rh] = rng.integers(2, 7, rh.size)
                if ctx.record:
                    rec.event(
                        ctx.index,
                        f,
                        np.full(f.size, -1),
                        C.EV_BUSINESS_FAILURE,
                        np.full(f.size, 3, dtype=np.int8),
                    )

    # ------------------------------------------------------------------ 7. transfers

    def _transfers(self, s: State, ctx: _Month, rng: np.random.Generator, income: np.ndarray) -> None:
        dyn = self.dyn
        age = ctx.age
        present = s.present
        cal = ctx.calendar
        price = ctx.price_index
        pension = F32(dyn.pension * (1 + dyn.pension_growth) ** (ctx.year - 2021))
        elderly = present & (age >= 60)
        income[C.PENSION] = _count(elderly) * pension + _count(elderly & (age >= 80)) * (pension * F32(0.2))
        cash = s.measure_amount * s.measure_active
        income[C.DIBAO] = cash[:, C.M_DIBAO]
        certified = present & (s.disability_certified > 0)
        supported = s.registered | s.measure_active[:, C.M_DIBAO]
        allowance = (
            _count(certified & (s.disability_certified <= 2)) * 100.0 + _count(certified) * supported * 80.0
        )
        subsidy = allowance + cash[:, C.M_INDUSTRY_SUBSIDY] + cash[:, C.M_EDUCATION_SUBSIDY]
        if cal == 4:
            subsidy = subsidy + s.land_mu * dyn.farmland_subsidy_per_mu
        if cal == 12:
            subsidy = subsidy + s.eco_compensation * price
            income[C.PROPERTY] += s.registered * (450.0 * price)
        income[C.SUBSIDY] = subsidy
        # relatives: children working away send money to parents living alone, and help after a blow
        no_young = ~(present & (age >= 18) & (age < 60)).any(axis=0) & present.any(axis=0)
        hit_hard = s.cause.sum(axis=0) > 8000
        u = rng.random(s.households, dtype=F32)
        # remittances to parents arrive every month; help after a blow depends on the relatives
        # relatives send part of their own pay, which grows with wages
        support = dyn.kin_support * ctx.wage_index
        kin = no_young * ((F32(0.3) + F32(0.7) * s.kin) * F32(support))
        kin = kin + (hit_hard & (u < s.kin)) * (s.kin * F32(2 * support))
        income[C.OTHER_TRANSFER] = kin + cash[:, C.M_TEMPORARY_RELIEF] + cash[:, C.M_INSURANCE_PAYOUT]

    # ------------------------------------------------------------------ 8. close

    def _close(
        self,
        s: State,
        ctx: _Month,
        rng: np.random.Generator,
        income: np.ndarray,
        rigid: np.ndarray,
        identified: np.ndarray,
        identified_cause: np.ndarray,
        rec: Recorder | None,
    ) -> MonthResult:
        m = ctx.index
        np.round(income, 2, out=income)
        np.round(rigid, 2, out=rigid)
        size = _count(s.present)
        reported = (rng.random(s.households, dtype=F32) < s.report_rate) & (size > 0)
        if ctx.outage:
            reported &= ~s.outage_village
        total = income.sum(axis=0)
        s.income_ring[m % RING] = total * reported
        s.reported_ring[m % RING] = reported
        s.rigid_ring[m % EXPENSE_RING] = rigid
        outcome = evaluate_state(s, m, size, ctx.line, self.config.rules)
        if m >= self.config.monitoring_from:
            idx = _indices(outcome.triggered & ~s.monitored & (s.pending == 0) & (m >= s.missed_until))
            if idx.size:
                u = rng.random((2, idx.size))
                missed = u[0] < self.dyn.missed_share
                s.missed_until[idx[missed]] = m + 6
                new = idx[~missed]
                risk = outcome.risk[new]
                department = np.searchsorted(np.cumsum(LAG_ODDS_DEPARTMENT), u[1][~missed])
                general = np.searchsorted(np.cumsum(LAG_ODDS), u[1][~missed])
                lag = IDENTIFICATION_LAG[np.minimum(np.where(risk == C.R2_RIGID, department, general), 3)]
                s.pending[new] = lag
                s.pending_risk[new] = risk
        s.last_triggered = outcome.triggered
        s.last_ratio = outcome.per_capita_ratio.astype(np.float32)
        s.last_rigid = outcome.rigid.astype(np.float32)
        s.cause *= CAUSE_DECAY
        s.measure_left -= s.measure_active & (s.measure_left > 0)
        if ctx.record:
            rec.income(m, income, reported)
        return MonthResult(
            income=income,
            reported=reported,
            rigid=rigid,
            size=size,
            outcome=outcome,
            identified=identified,
            identified_cause=identified_cause,
        )
