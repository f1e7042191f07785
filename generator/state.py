"""The full state of a set of households at the end of a month, hidden parts included.

Household fields are arrays over households (first axis ``N``); member fields
are ``(S, N)`` arrays over a fixed number of member slots per household (a
slot holds one person for the whole run and is never reused, so a slot is a
member id). Members are slot-major so that sums over a household's members
are additions of contiguous rows. The same state drives the recorded
simulation and the oracle's re-simulations, which copy it ``n`` times along
the household axis.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

RING = 24
"""Months of income kept for the rules: this year's window and last year's."""
EXPENSE_RING = 12
CAUSES = 8
MEASURES = 10


@dataclass
class State:
    # ---- household, static or slow (N,)
    village: np.ndarray  # int32, village key (global index in the recorded run)
    terrain: np.ndarray  # int8
    registered: np.ndarray  # bool
    escape_year: np.ndarray  # int16, year declared out of poverty; 0 never poor
    relocated: np.ndarray  # bool
    housing_safe: np.ndarray  # bool
    land_mu: np.ndarray  # float32
    farm_value: np.ndarray  # float32, net yuan per mu per year at 2021 prices (hidden skill)
    livestock: np.ndarray  # float32 head units
    livestock_target: np.ndarray  # float32
    business: np.ndarray  # bool, runs a small business
    business_scale: np.ndarray  # float32, yuan a month at 2021 prices
    business_health: np.ndarray  # float32, hidden
    business_outlook: np.ndarray  # float32, hidden level the business health drifts to
    kin: np.ndarray  # float32 in [0, 1], hidden readiness of relatives to help
    report_rate: np.ndarray  # float32, hidden chance a month's income is reported
    outage_village: np.ndarray  # bool, village goes dark during a reporting outage
    eco_compensation: np.ndarray  # float32, yearly ecological compensation
    crop_damage: np.ndarray  # float32, share of the coming harvest already lost
    cause: np.ndarray  # (CAUSES, N) float32, recent losses by cause, decaying
    # ---- official monitoring (N,)
    monitored: np.ndarray  # bool
    monitored_months: np.ndarray  # int16
    pending: np.ndarray  # int8, months until identification; 0 none
    pending_risk: np.ndarray  # int8
    missed_until: np.ndarray  # int32, month before which a missed case is not picked up again
    last_triggered: np.ndarray  # bool, a rule fired last month (system view)
    last_ratio: np.ndarray  # float32, I/n over the line last month; nan if undefined
    last_rigid: np.ndarray  # float32, E last month
    measure_active: np.ndarray  # (N, MEASURES) bool
    measure_amount: np.ndarray  # (N, MEASURES) float32, cash a month; 0 in kind
    measure_left: np.ndarray  # (N, MEASURES) int16, months still to run; -1 open-ended
    measure_start: np.ndarray  # (N, MEASURES) int32
    post_slot: np.ndarray  # int8, member slot holding a public welfare post; -1 none
    # ---- what the rules read (RING, N) / (EXPENSE_RING, N)
    income_ring: np.ndarray  # float64, reported income of month (position = month % RING); 0 if unreported
    reported_ring: np.ndarray  # float64 0/1
    rigid_ring: np.ndarray  # float64, rigid out-of-pocket of month (position = month % EXPENSE_RING)
    # ---- members (S, N)
    used: np.ndarray  # bool, slot ever held a person
    present: np.ndarray  # bool, a member this month
    birth_year: np.ndarray  # int16
    sex: np.ndarray  # int8
    relation: np.ndarray  # int8
    education: np.ndarray  # int8
    capacity: np.ndarray  # int8
    disability: np.ndarray  # int8, true grade (0 none)
    disability_certified: np.ndarray  # int8, grade on record
    certify_in: np.ndarray  # int8, months until certification; 0 none pending
    chronic: np.ndarray  # bool
    health: np.ndarray  # float32 in (0, 1], hidden
    frailty: np.ndarray  # float32, hidden lasting offset of health
    declining: np.ndarray  # bool, hidden undiagnosed deterioration
    diagnosed: np.ndarray  # bool, the current deterioration has been diagnosed (a chronic disease named)
    declined_months: np.ndarray  # int8, months the current deterioration has lasted; 0 none
    insured: np.ndarray  # bool
    sector: np.ndarray  # int8, main kind of work when able
    status: np.ndarray  # int8, employment status this month
    stability: np.ndarray  # float32, hidden job stability
    stability_outlook: np.ndarray  # float32, hidden level the stability drifts to
    wage: np.ndarray  # float32, personal wage multiplier
    schooling: np.ndarray  # bool, in senior school
    college_years: np.ndarray  # int8, college years still to pay
    out_months: np.ndarray  # int8, months out of work after losing a job
    sick_months: np.ndarray  # int8, months unable to work after illness or accident
    care_months: np.ndarray  # int8, months caring for a sick relative
    followup: np.ndarray  # float32, follow-up bills of a serious illness still to come
    reimbursement: np.ndarray  # float32, insurance share of the follow-up bills
    joined: np.ndarray  # int32, month joined; -1 before records
    left: np.ndarray  # int32, first month no longer a member; -1 still a member

    @property
    def households(self) -> int:
        return int(self.village.shape[0])

    @property
    def slots(self) -> int:
        return int(self.present.shape[0])

    def copy(self) -> State:
        return State(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def take(self, rows: np.ndarray | slice) -> State:
        """The households at ``rows`` (a copy)."""
        return State(
            **{
                f.name: (
                    getattr(self, f.name)[:, rows]
                    if f.name in HOUSEHOLD_LAST
                    else getattr(self, f.name)[rows]
                ).copy()
                for f in fields(self)
            }
        )

    def repeat(self, times: int) -> State:
        """Each household ``times`` times in a row: copy ``r`` of household ``h`` is row ``h * times + r``."""
        return State(
            **{
                f.name: np.repeat(getattr(self, f.name), times, axis=1 if f.name in HOUSEHOLD_LAST else 0)
                for f in fields(self)
            }
        )


_FIELD_NAMES = [f.name for f in fields(State)]
MEMBER_FIELDS = frozenset(_FIELD_NAMES[_FIELD_NAMES.index("used") :])
"""Fields laid out (S, N): everything from ``used`` on."""
HOUSEHOLD_LAST = MEMBER_FIELDS | {"cause", "income_ring", "reported_ring", "rigid_ring"}
"""Fields whose household axis is the last one (axis 1)."""
