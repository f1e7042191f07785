"""Everything a generated county depends on, in one typed place.

:class:`CountyConfig` holds the size, dates and seed of a run, the
:class:`Scenario` (lockdown, line change, disaster year, reporting outage,
county profile) and the :class:`Dynamics` constants of the mechanisms. The
defaults are the county calibrated to ``docs/calibration.md``; a test
or a scenario changes one field with ``model_copy(update=...)`` or through the
CLI options, never by editing constants in code.

Months are integer month indices (``year * 12 + month - 1``) inside the
generator; the config accepts and prints ``YYYY-MM``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

CONTRACT_VERSION = 1


# ----------------------------------------------------------------------------- months


def month_index(year: int, month: int) -> int:
    """Months since year 0; consecutive months differ by one across years."""
    return year * 12 + month - 1


def month_year(index: int) -> int:
    return index // 12


def month_calendar(index: int) -> int:
    """1..12."""
    return index % 12 + 1


def month_date(index: int) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, 1)


def format_month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def parse_month(text: str) -> int:
    """``YYYY-MM`` (or ``YYYY-MM-DD``) to a month index; ``ValueError`` naming the text otherwise."""
    cleaned = text.strip()
    try:
        day = dt.datetime.strptime(cleaned[:7], "%Y-%m").date()
        if len(cleaned) not in (7, 10):
            raise ValueError
        if len(cleaned) == 10:
            dt.datetime.strptime(cleaned, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"{text!r} is not a month (YYYY-MM)") from None
    return month_index(day.year, day.month)


def _month(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a month")
    if isinstance(value, int):
        return value
    if isinstance(value, dt.date):
        return month_index(value.year, value.month)
    if isinstance(value, str):
        return parse_month(value)
    raise ValueError(f"{value!r} is not a month (YYYY-MM)")


Month = Annotated[int, BeforeValidator(_month)]


class Window(BaseModel):
    """An inclusive range of months, e.g. a lockdown from 2022-04 to 2022-06."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: Month
    last: Month

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.last < self.first:
            raise ValueError(
                f"window ends ({format_month(self.last)}) before it starts ({format_month(self.first)})"
            )
        return self

    def contains(self, month: int) -> bool:
        return self.first <= month <= self.last

    def __str__(self) -> str:
        return f"{format_month(self.first)}:{format_month(self.last)}"


def parse_window(text: str) -> Window:
    """``2022-04:2022-06`` (or a single ``2022-04``) to a :class:`Window`."""
    first, sep, last = text.partition(":")
    try:
        return Window(first=parse_month(first), last=parse_month(last if sep else first))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a month window (YYYY-MM:YYYY-MM): {exc}") from None


# ----------------------------------------------------------------------------- county profiles


class Profile(BaseModel):
    """What kind of county: terrain, how households earn, what they own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    county_code: str = Field(pattern=r"^\d{6}$")
    terrain_mix: tuple[float, float, float]
    """Share of villages on plain, hill, mountain."""
    registered_share: float = Field(ge=0, le=1)
    """Share of households that were registered poor (建档立卡)."""
    migrant_share: float = Field(ge=0, le=1)
    """Share of working-age members whose main work is migrant work."""
    local_wage_share: float = Field(ge=0, le=1)
    business_share: float = Field(ge=0, le=1)
    """Share of households running a small business (self-employed)."""
    land_mu: tuple[float, float, float]
    """Median cultivated land per household on plain, hill, mountain, in mu."""
    farm_value_per_mu: tuple[float, float, float]
    """Net yearly farm income per mu in 2021 yuan on plain, hill, mountain."""
    livestock_share: float = Field(ge=0, le=1)
    wage_factor: float = Field(gt=0)
    """Local wage level relative to the national averages of docs/calibration.md."""

    @model_validator(mode="after")
    def _shares(self) -> Profile:
        if not math.isclose(sum(self.terrain_mix), 1.0, abs_tol=1e-6):
            raise ValueError(f"terrain_mix must sum to 1, got {self.terrain_mix}")
        if self.migrant_share + self.local_wage_share > 1:
            raise ValueError("migrant_share + local_wage_share must not exceed 1")
        return self


PROFILES: dict[str, Profile] = {
    # A hilly county of the south-west with migrant work, farming and some trade: the default.
    "hill_mixed": Profile(
        name="hill_mixed",
        county_code="532328",
        terrain_mix=(0.25, 0.45, 0.30),
        registered_share=0.30,
        migrant_share=0.46,
        local_wage_share=0.22,
        business_share=0.10,
        land_mu=(6.0, 4.5, 3.5),
        farm_value_per_mu=(700.0, 650.0, 560.0),
        livestock_share=0.35,
        wage_factor=1.0,
    ),
    # A plains county near industrial towns: wages dominate, little livestock.
    "plains_wage": Profile(
        name="plains_wage",
        county_code="411526",
        terrain_mix=(0.85, 0.15, 0.0),
        registered_share=0.20,
        migrant_share=0.40,
        local_wage_share=0.36,
        business_share=0.14,
        land_mu=(7.0, 5.0, 3.5),
        farm_value_per_mu=(760.0, 680.0, 560.0),
        livestock_share=0.15,
        wage_factor=1.05,
    ),
    # A mountain county: small plots, livestock, long-distance migration, weaker wages.
    "mountain_agri": Profile(
        name="mountain_agri",
        county_code="522327",
        terrain_mix=(0.05, 0.30, 0.65),
        registered_share=0.38,
        migrant_share=0.44,
        local_wage_share=0.14,
        business_share=0.06,
        land_mu=(5.0, 4.0, 3.0),
        farm_value_per_mu=(680.0, 620.0, 560.0),
        livestock_share=0.55,
        wage_factor=0.92,
    ),
}


def profile_named(name: str) -> Profile:
    """A profile by full name or unambiguous prefix (``mountain`` -> ``mountain_agri``)."""
    if name in PROFILES:
        return PROFILES[name]
    matches = [p for key, p in PROFILES.items() if key.startswith(name) or key.split("_")[0] == name]
    if len(matches) != 1:
        raise ValueError(f"unknown county profile {name!r}; choose one of {', '.join(PROFILES)}")
    return matches[0]


# ----------------------------------------------------------------------------- scenario


class LineJump(BaseModel):
    """From ``year`` on, every monitoring line is raised by ``share`` (0.2 = +20 %)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    year: int
    share: float = Field(gt=-1)


class CropPrice(BaseModel):
    """Crop sales in ``window`` earn ``factor`` of their usual price (0.5: prices halve).

    Seed and fertiliser are bought at the usual price, so a season's net farm earnings fall by
    more than the price; livestock sales are not touched.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: Window
    factor: float = Field(ge=0)


def parse_crop_price(text: str) -> CropPrice:
    """``2023-06:2023-11=0.5`` (a window and the factor of the usual price) to a :class:`CropPrice`."""
    window, sep, factor = text.rpartition("=")
    try:
        if not sep:
            raise ValueError("no '=FACTOR'")
        return CropPrice(window=parse_window(window), factor=float(factor))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a crop price collapse (YYYY-MM:YYYY-MM=FACTOR): {exc}") from None


class Scenario(BaseModel):
    """Events a county's monitoring must later catch; the default is a quiet county."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str = "hill_mixed"
    lockdown: Window | None = None
    """Epidemic lockdown: migrants cannot travel, local work and trade stall."""
    lockdown_depth: float | None = Field(default=None, gt=0, le=1)
    """Share of working migrants a lockdown keeps from work each month; local work and trade lose
    the same fraction of what the default lockdown takes from them. None: the default lockdown
    (``Dynamics.lockdown_migrant_stuck``, 0.75)."""
    line_changes: dict[int, float] = Field(default_factory=dict)
    """Monitoring line set outright for a year (yuan per person per year)."""
    line_jump: LineJump | None = None
    disaster_year: int | None = None
    """A year whose rainy season brings village-wide disasters several times as often."""
    outage: Window | None = None
    """Months in which part of the county reports no income at all."""
    outage_share: float = Field(default=0.4, ge=0, le=1)
    """Share of villages that report nothing during the outage."""
    crop_price: CropPrice | None = None
    """A collapse of crop prices: harvest sales earn a fraction of their usual price for a while."""

    @model_validator(mode="after")
    def _known_profile(self) -> Scenario:
        profile_named(self.profile)
        bad = [y for y, line in self.line_changes.items() if not line > 0]
        if bad:
            raise ValueError(f"monitoring line must be positive; year(s) {bad} are not")
        return self

    @property
    def county(self) -> Profile:
        return profile_named(self.profile)


def parse_line_option(text: str) -> tuple[int, float]:
    """``2023=8000`` to (2023, 8000.0)."""
    year, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return int(year), float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a line setting (YEAR=YUAN, e.g. 2023=8000)") from None


def parse_line_jump(text: str) -> LineJump:
    """``2023:0.2`` to a 20 % jump of every line from 2023 on."""
    year, sep, share = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return LineJump(year=int(year), share=float(share))
    except ValueError:
        raise ValueError(f"{text!r} is not a line jump (YEAR:SHARE, e.g. 2023:0.2)") from None


# ----------------------------------------------------------------------------- dynamics


class Dynamics(BaseModel):
    """Constants of the mechanisms, calibrated so the default county matches docs/calibration.md.

    Money is yuan at 2021 prices unless a field says otherwise; hazards are per
    person (or household) per month.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # growth
    wage_growth: float = 0.1
    price_growth: float = 0.04
    farm_growth: float = 0.07
    """Yearly growth of net farm and business earnings (prices, better seed, more trade)."""
    # wages: monthly at 2021 prices, registered households earn less
    migrant_wage: float = 4000.0
    local_wage: float = 3200.0
    registered_wage_factor: float = 0.72
    wage_dispersion: float = 0.22
    wage_noise: float = 0.03
    """Month-to-month spread of pay in a steady job (piece rates, overtime)."""
    # job stability (hidden): gaps, thinning and loss
    stability_mean: float = 0.78
    stability_persistence: float = 0.12
    """Stability moves this share of the way to its outlook each month: trouble shows within months."""
    stability_noise: float = 0.025
    outlook_spread: float = 0.06
    """Standard deviation of a job's stability outlook across jobs: most jobs are steady, and a job
    is lost mostly after its employer's trouble has thinned it, not from a steady precarious level."""
    outlook_reversion: float = 0.08
    """Monthly pull of the stability outlook back to the mean: an employer's trouble passes within a year."""
    firm_trouble_hazard: float = 0.012
    firm_trouble_drop: tuple[float, float] = (0.4, 0.7)
    """Least and most the stability outlook falls when the employer gets into trouble."""
    pay_thinning: float = 0.9
    """Pay falls by this share of the stability lost below its mean (fewer shifts, unpaid wages)."""
    gap_base: float = 0.025
    gap_slope: float = 0.8
    """Monthly chance of a month without paid work: the base, plus this times the stability lost below
    its mean (a thinning job runs out of shifts in one month of four at stability 0.5)."""
    job_loss_base: float = 0.0005
    """Monthly hazard of a sudden job loss in a steady job (an accident of the firm, a quarrel)."""
    job_loss_threshold: float = 0.65
    job_loss_slope: float = 1.5
    """Below the threshold stability the monthly job-loss hazard grows with the square of the shortfall
    (1.5 x 0.25^2 = 9 % a month at stability 0.4): jobs are lost after they have thinned."""
    out_of_work_months: float = 9.0
    """Mean months without work after losing a job, for a younger worker of an ordinary household: each
    month after the first brings new work with a chance of one over this mean."""
    out_of_work_registered: float = 1.4
    out_of_work_older: float = 1.3
    """Factors on the months without work for registered households and for workers aged 45 or more."""
    # health (hidden): decline episodes, chronic disease, serious illness
    health_persistence: float = 0.05
    health_noise: float = 0.025
    decline_hazard: float = 0.0027
    """Onset of an undiagnosed deterioration, per person and month (before the age factor)."""
    decline_depth: float = 0.35
    decline_persistence: float = 0.2
    """Health moves this share of the way to its target each month while declining (weeks, not years)."""
    decline_recovery: float = 0.03
    """Monthly chance a diagnosed deterioration stops without a serious illness."""
    decline_recovery_undiagnosed: float = 0.2
    """Monthly chance an undiagnosed deterioration passes: most complaints resolve, the grave ones are
    diagnosed, so knowing that one has begun says less than its diagnosis does."""
    decline_serious: float = 0.25
    """Monthly serious-illness hazard of a declining member once diagnosed: most serious illnesses
    follow a decline and its diagnosis."""
    decline_serious_undiagnosed: float = 0.005
    decline_build_months: float = 4.0
    """The serious-illness hazard of a diagnosed deterioration grows to its full value over this many
    months of decline: the hospital stay comes after months of visible bills, rarely at once."""
    decline_chronic: float = 0.35
    """Monthly chance a deterioration is diagnosed as a (further) chronic disease, recorded as a grave one:
    the work-up takes a few months of visits and bills."""
    decline_visits: float = 0.9
    """Monthly chance a declining member sees a doctor (and leaves a bill)."""
    decline_bill_factor: float = 2.5
    """Outpatient bills of a declining member relative to a routine visit at the same health."""
    decline_absence: float = 0.25
    """Added monthly chance that a declining worker misses a whole month of work."""
    decline_pay_cut: float = 0.25
    """Share of pay a declining worker loses to sick days in the months they do work."""
    chronic_hazard: float = 0.0004
    serious_base: float = 0.00015
    serious_slope: float = 2.5
    serious_bill_median: float = 80000.0
    serious_bill_sigma: float = 0.8
    serious_first_share: float = 0.85
    """Share of a serious illness's bill paid at once; the rest follows in the next months."""
    reimbursement_low: float = 0.5
    reimbursement_high: float = 0.75
    sick_months: float = 6.0
    carer_share: float = 0.5
    care_months_max: int = 6
    outpatient_bill: float = 120.0
    accident_hazard: float = 0.0006
    accident_bill_median: float = 14000.0
    disability_after_accident: float = 0.12
    disability_after_illness: float = 0.08
    mortality_scale: float = 0.00004
    mortality_slope: float = 0.085
    # family
    birth_rate: float = 0.006
    marriage_out_rate: float = 0.004
    marriage_in_rate: float = 0.003
    college_share: float = 0.45
    college_cost: float = 10000.0
    # farms and business
    harvest_loss_per_severity: float = 0.22
    disaster_hazard: float = 0.02
    disaster_year_factor: float = 4.0
    house_damage_share: float = 0.05
    livestock_value: float = 1500.0
    livestock_loss_hazard: float = 0.003
    business_scale: float = 4500.0
    business_noise: float = 0.05
    business_persistence: float = 0.1
    """Business health moves this share of the way to its outlook each month: a slide shows in months."""
    business_income_noise: float = 0.08
    """Month-to-month spread of net business income around what the business's health earns."""
    business_trouble_hazard: float = 0.008
    business_failure_level: float = -0.25
    # transfers at 2021 levels
    dibao_per_person: float = 470.0
    dibao_growth: float = 0.06
    pension: float = 165.0
    pension_growth: float = 0.06
    farmland_subsidy_per_mu: float = 105.0
    kin_support: float = 700.0
    # reporting
    report_rate: float = 0.99
    poor_reporter_share: float = 0.1
    poor_reporter_rate: float = 0.85
    # official identification and support
    missed_share: float = 0.75
    elimination_rate: float = 0.10
    dependent_elimination: float = 0.4
    """Elimination rate of households without a fit worker, relative to the others."""
    elimination_margin: float = 1.2
    minimum_monitored_months: int = 6
    quiet_months_to_eliminate: int = 18
    """A case whose rules have not fired for this long is eliminated even below the elimination margin."""
    dibao_share: float = 0.75
    # lockdown
    lockdown_migrant_stuck: float = 0.75
    lockdown_local_stuck: float = 0.4
    lockdown_business_factor: float = 0.45


# ----------------------------------------------------------------------------- the county


class RuleParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_reported_months: int = Field(default=6, ge=1, le=12)
    rigid_expense_ratio: float = Field(default=1.0, gt=0)
    income_drop_share: float = Field(default=0.5, gt=0, lt=1)
    income_drop_band: float = Field(default=1.5, gt=0)


class CountyConfig(BaseModel):
    """One generated county: size, dates, seed, scenario, mechanisms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    households: int = Field(default=20_000, ge=1)
    start: Month = month_index(2021, 1)
    months: int = Field(default=48, ge=1, le=240)
    seed: int = Field(default=0, ge=0)
    region: str = "demo"
    scenario: Scenario = Field(default_factory=Scenario)
    dynamics: Dynamics = Field(default_factory=Dynamics)
    rules: RuleParameters = Field(default_factory=RuleParameters)
    base_line: float = Field(default=6000.0, gt=0)
    """Monitoring line of 2021, yuan per person per year."""
    line_growth: float = 0.05
    visit_share: float = Field(default=0.05, gt=0, le=1)
    burn_in_months: int = Field(default=30, ge=0)
    """Months simulated before ``start`` and not exported, so the county starts in steady state."""
    monitoring_months_before_start: int = Field(default=24, ge=0)
    """Official identification runs for this many months of the burn-in before ``start``."""
    households_per_village: tuple[int, int] = (150, 450)
    villages_per_township: tuple[int, int] = (8, 16)
    """At most 798, so village codes stay three digits after the township's."""
    member_slots: int = Field(default=8, ge=4, le=99)
    """Most people one household can have over the whole run (initial members plus newcomers)."""
    chunk_households: int = Field(default=100_000, ge=1)
    """Households simulated at once; memory grows with it, results depend on it."""
    county_code: str | None = Field(default=None, pattern=r"^\d{6}$")
    """The county's code in place of the profile's, so that one profile yields the many counties of a
    province (township and village codes follow it); None keeps the profile's."""

    @property
    def end(self) -> int:
        """Last month of data (``data_end``)."""
        return self.start + self.months - 1

    @property
    def first_simulated(self) -> int:
        return self.start - self.burn_in_months

    @property
    def monitoring_from(self) -> int:
        return self.start - min(self.monitoring_months_before_start, self.burn_in_months)

    @property
    def profile(self) -> Profile:
        county = self.scenario.county
        if self.county_code is None:
            return county
        return county.model_copy(update={"county_code": self.county_code})

    def monitoring_lines(self) -> dict[int, float]:
        """Line per calendar year for every simulated year (burn-in included), scenario applied."""
        lines: dict[int, float] = {}
        for year in range(month_year(self.first_simulated), month_year(self.end) + 1):
            line = self.base_line * (1 + self.line_growth) ** (year - 2021)
            jump = self.scenario.line_jump
            if jump is not None and year >= jump.year:
                line *= 1 + jump.share
            lines[year] = float(round(line / 10) * 10)
        for year, line in self.scenario.line_changes.items():
            lines[year] = float(line)
        return lines

    def policy_json(self) -> dict[str, object]:
        """The dataset's ``policy.json`` (docs/rules-and-labels.md)."""
        lines = self.monitoring_lines()
        return {
            "contract_version": CONTRACT_VERSION,
            "region": self.region,
            "data_start": format_month(self.start),
            "data_end": format_month(self.end),
            "monitoring_line": {
                str(y): lines[y] for y in range(month_year(self.start), month_year(self.end) + 1)
            },
            "rules": self.rules.model_dump(),
            "visit_share": self.visit_share,
        }


class TruthOptions(BaseModel):
    """What the oracle computes: which as-of months, how far ahead, how many re-simulations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of: tuple[Month, ...] | None = None
    """None: the last four quarter-end months whose horizon fits in the data."""
    horizon: int = Field(default=6, ge=1, le=24)
    simulations: int = Field(default=200, ge=1)
    batch_replicas: int = Field(default=400_000, ge=1)
    """Household copies re-simulated at once (households x simulations); bounds the memory."""
    workers: int = Field(default=2, ge=1)
    """Processes re-simulating at once; the truth is the same for any number."""

    def months(self, config: CountyConfig) -> tuple[int, ...]:
        """The as-of months, checked against the data window."""
        if self.as_of is not None:
            for t in self.as_of:
                if not config.start <= t <= config.end - self.horizon:
                    raise ValueError(
                        f"as-of month {format_month(t)} is outside {format_month(config.start)}.."
                        f"{format_month(config.end - self.horizon)} "
                        f"(data end minus the {self.horizon}-month horizon)"
                    )
            return tuple(sorted(set(self.as_of)))
        fits = [
            t
            for t in range(config.start, config.end - self.horizon + 1)
            if month_calendar(t) in (3, 6, 9, 12)
        ]
        if not fits:
            raise ValueError(
                f"no quarter-end as-of month fits a {self.horizon}-month horizon in "
                f"{format_month(config.start)}..{format_month(config.end)}; "
                "generate more months or use --no-truth"
            )
        return tuple(fits[-4:])
