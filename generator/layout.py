"""The county's geography: townships, villages, their codes and terrain, and village-wide disasters.

Everything here is drawn once per run from its own random stream, before the
households are simulated in chunks, so a village hit by a flood is hit for
all its households whichever chunk they fall in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codes import HILL, MOUNTAIN, PLAIN
from .config import CountyConfig, month_calendar, month_year

RAINY_MONTHS = (5, 6, 7, 8, 9)
TERRAIN_DISASTER_FACTOR = np.array([0.8, 1.0, 1.4], dtype=np.float64)
SEVERITY_ODDS = np.array([0.6, 0.3, 0.1])
SEVERITY_ODDS_DISASTER_YEAR = np.array([0.4, 0.4, 0.2])


@dataclass(frozen=True)
class Layout:
    county_code: str
    village_first_household: np.ndarray
    """(V + 1,) index of each village's first household; households are numbered village by village."""
    village_terrain: np.ndarray
    village_township: np.ndarray
    township_codes: tuple[str, ...]
    village_codes: tuple[str, ...]
    outage_village: np.ndarray
    """Villages that report nothing during the scenario's outage."""
    disasters: np.ndarray
    """(V, months simulated) int8 severity of the village-wide disaster of each month; 0 none."""

    def village_of(self, households: np.ndarray) -> np.ndarray:
        return (np.searchsorted(self.village_first_household, households, side="right") - 1).astype(np.int32)


def draw_disasters(
    rng: np.random.Generator, terrain_of_key: np.ndarray, month: int, config: CountyConfig
) -> np.ndarray:
    """Severity (0-3) of a village-wide disaster in ``month`` for each village key."""
    if month_calendar(month) not in RAINY_MONTHS:
        return np.zeros(terrain_of_key.shape[0], dtype=np.int8)
    dynamics = config.dynamics
    disaster_year = config.scenario.disaster_year == month_year(month)
    hazard = dynamics.disaster_hazard * TERRAIN_DISASTER_FACTOR[terrain_of_key]
    if disaster_year:
        hazard = np.minimum(hazard * dynamics.disaster_year_factor, 0.9)
    hit = rng.random(terrain_of_key.shape[0]) < hazard
    odds = SEVERITY_ODDS_DISASTER_YEAR if disaster_year else SEVERITY_ODDS
    severity = rng.choice(np.array([1, 2, 3], dtype=np.int8), size=terrain_of_key.shape[0], p=odds)
    return np.where(hit, severity, 0).astype(np.int8)


def build_layout(config: CountyConfig) -> Layout:
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    low, high = config.households_per_village
    sizes: list[int] = []
    total = 0
    while total < config.households:
        size = int(rng.integers(low, high + 1))
        size = min(size, config.households - total)
        sizes.append(size)
        total += size
    village_first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    villages = len(sizes)
    terrain = rng.choice(
        np.array([PLAIN, HILL, MOUNTAIN], dtype=np.int8),
        size=villages,
        p=np.array(config.profile.terrain_mix),
    )
    # Villages of a township share terrain more often than not: sort each township's draws.
    township_of_village = np.empty(villages, dtype=np.int32)
    township_codes: list[str] = []
    village_codes: list[str] = []
    county = config.profile.county_code
    start = 0
    township = 0
    tlow, thigh = config.villages_per_township
    while start < villages:
        if township > 899:
            raise ValueError("more than 900 townships do not fit 9-digit codes; generate a smaller county")
        count = min(int(rng.integers(tlow, thigh + 1)), villages - start)
        township_code = f"{county}{100 + township:03d}"
        township_codes.append(township_code)
        township_of_village[start : start + count] = township
        terrain[start : start + count] = np.sort(terrain[start : start + count])
        village_codes.extend(f"{township_code}{201 + k:03d}" for k in range(count))
        start += count
        township += 1
    outage = rng.random(villages) < config.scenario.outage_share
    months = config.end - config.first_simulated + 1
    disasters = np.zeros((villages, months), dtype=np.int8)
    for k in range(months):
        disasters[:, k] = draw_disasters(rng, terrain, config.first_simulated + k, config)
    return Layout(
        county_code=county,
        village_first_household=village_first,
        village_terrain=terrain,
        village_township=township_of_village,
        township_codes=tuple(township_codes),
        village_codes=tuple(village_codes),
        outage_village=outage,
        disasters=disasters,
    )
