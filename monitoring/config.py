"""Monitoring thresholds in one place, with the measurement each default comes from.

Every check compares one statistic with a warning and an alert level. The
defaults were set with ``benchmarks/calibrate_monitor.py`` (there is no
``relapse`` subcommand for it): 10 pairs of generated counties with no drift
(different seeds, same policy, 1,500 households x 36 months) gave the
largest no-drift values noted beside each field; levels sit well above them so
that a quiet county stays ``ok``, and below what the named scenarios produce
(docs/performance.md, "Monitoring", has both tables). Levels are multiples of
the no-drift spread, never fitted to one scenario's size: a level fitted to
this generator's lockdown missed a milder lockdown of another generator. The
early warning and the tail checks were measured on 20,000-household counties
too (``--households 20000``), each scenario against the same county without it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Level(BaseModel):
    """Warning and alert levels of one statistic; ``higher_is_worse`` says which way is bad."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warning: float
    alert: float
    higher_is_worse: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> Level:
        ordered = self.warning <= self.alert if self.higher_is_worse else self.warning >= self.alert
        if not ordered:
            raise ValueError(f"warning level {self.warning} is past the alert level {self.alert}")
        return self

    def status(self, value: float | None) -> str:
        """``ok``, ``warning`` or ``alert`` for ``value``; a value that could not be measured is ``ok``."""
        if value is None or value != value:  # NaN: nothing to judge
            return "ok"
        if self.higher_is_worse:
            return "alert" if value >= self.alert else "warning" if value >= self.warning else "ok"
        return "alert" if value <= self.alert else "warning" if value <= self.warning else "ok"


class MonitorThresholds(BaseModel):
    """All levels of ``relapse monitor``; statistics are defined in :mod:`.drift`, :mod:`.quality`
    and :mod:`.performance`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- data drift of the model's features ------------------------------------------------
    column_drift_distance: float = Field(default=0.1, gt=0)
    """A feature column counts as drifted when its Wasserstein distance, divided by the reference's
    standard deviation, reaches this (Evidently's default for its ``wasserstein`` test)."""
    drifted_feature_share: Level = Level(warning=0.30, alert=0.45)
    """Share of feature columns drifted. No-drift pairs: median 0.20, at most 0.24 (small generated
    counties have only 5-12 villages, and village-level features move with them)."""

    # -- prediction drift --------------------------------------------------------------------
    score_psi: Level = Level(warning=0.10, alert=0.25)
    """Population stability index of the risk score over reference deciles (the usual 0.1 / 0.25);
    no-drift pairs: at most 0.05."""
    band_share_change: Level = Level(warning=0.05, alert=0.10)
    """Largest absolute change in the share of scored households in a risk band."""
    visit_list_township_shift: Level = Level(warning=0.30, alert=0.50)
    """Total-variation distance between the visit lists' township mixes (same townships only)."""
    visit_list_reason_shift: Level = Level(warning=0.25, alert=0.40)
    """Total-variation distance between the visit lists' first-reason mixes (scored runs only)."""
    top_k_share: Level = Level(warning=1.6, alert=2.0)
    """Share of current scored households at or above the reference's visit-list cut (its lowest
    listed score), over the reference's share: the tail of the scores growing, which PSI over
    reference deciles barely sees. No interval, so the levels hold the smallest county measured:
    no-drift pairs of 2,000 households reached 1.31 (SD 0.18; 20,000 households: 1.05); warning
    at 1 + 2x and alert at 1 + 3x that largest rise. Lockdowns (20,000 households, each against
    the same county without it) keeping 75 / 40 / 20 % of migrants home: 3.16 / 1.80 / 1.28."""
    mean_score_change: Level = Level(warning=1.6, alert=1.9)
    """Factor by which the mean risk score rose (current / reference). Set as ``top_k_share``:
    no-drift pairs of 2,000 households reached 1.31 (SD 0.09; 20,000: 1.09); lockdowns 2.58 / 1.55
    / 1.18. Falls are not judged: the demo's quiet county against itself 18 months and a season
    earlier fell x0.52 (incomes grow), and an outage's fall (x0.60) has its own check."""

    # -- early warning of large-scale relapse ---------------------------------------------------
    expected_crossings_ratio: Level = Level(warning=1.10, alert=1.15)
    """Expected rule crossings per scored household (the mean calibrated score), current over
    reference (:mod:`.early_warning`); a warning needs its 90 % interval above 1, an alert also
    ``expected_crossings_alert_z``. No-drift pairs of 20,000 households (the size of a county's
    rural households; at 2,000 the interval is too wide to tell a 20 % rise from chance): median
    1.01, largest 1.07, SD 0.046; warning at about 1 + 2 SD (above the largest), alert at about
    1 + 3 SD (twice the largest rise). Against the same county without the shock: lockdowns
    keeping 75 / 40 / 20 % of migrants home 2.58 / 1.55 / 1.18 (six months at 20 %: 1.29); crop
    prices at 20 % for a year 1.12, at 50 % 1.09; a disaster year 0.98 (it shows in households
    crossing now, x1.14)."""
    expected_crossings_alert_z: float = Field(default=3.0, gt=0)
    """Standard errors (of the log ratio) the rise must reach to alert. The largest no-drift rise
    was 2.6 standard errors (2,000 households; 1.8 at 20,000), where a 90 % interval alone
    lay above 1; the 20 % lockdown reached 4.2 (20,000 households)."""

    # -- named scenarios and data quality ----------------------------------------------------
    unreported_share_change: Level = Level(warning=0.03, alert=0.08)
    """Rise in the share of household-months without any income row (12 months to the as-of).
    No-drift pairs: at most 0.006; an outage of 40 % of villages for 9 months: 0.23."""
    migrant_share_change: Level = Level(warning=-0.10, alert=-0.15, higher_is_worse=False)
    """Relative change in the share of working-age member-months spent as migrants (3 months to
    the as-of); a lockdown sends migrants home. Set from the no-drift spread, not from a lockdown:
    pairs of 2,000 households stayed within -0.024 .. +0.031 (SD 0.017; 20,000 households: within
    0.02), so warning at about 3x and alert at 5x the largest change (9 SD). Lockdowns keeping
    75 / 40 / 20 % of migrants home: -0.75 / -0.40 / -0.21 (the -0.30 this level was before
    missed a lockdown of another generator that cut migrant months by 21 %)."""
    income_scale_log10: Level = Level(warning=0.5, alert=1.0)
    """|log10| of the ratio of median monthly household income (reported months); a unit error of
    10,000 gives 4. No-drift pairs: at most 0.017."""
    income_level_change: Level = Level(warning=0.08, alert=0.20)
    """|relative change| of the same median when the unit is right (a real income shock).
    No-drift pairs: at most 0.039; lockdown 0.15, another county 0.14."""
    monitoring_line_change: Level = Level(warning=0.03, alert=0.08)
    """Largest relative difference of policy.json's line for shared years, or of the current
    year's line from the reference's trend. Same policy: exactly 0."""
    foreign_county_share: Level = Level(warning=0.01, alert=0.5)
    """Share of current households whose county code the reference does not hold (1.0: another
    county altogether). Same county: exactly 0."""
    terrain_mix_shift: Level = Level(warning=0.55, alert=0.80)
    """Total-variation distance of the terrain shares of households. Terrain is drawn per village,
    so in counties of 5-12 villages it is mostly noise: no-drift pairs reached 0.49 (median 0.23),
    more than a mountain county gave (0.25); ``different_county`` carries that scenario."""
    income_source_mix_shift: Level = Level(warning=0.04, alert=0.10)
    """Total-variation distance of income shares by source (12 months). No-drift pairs: at most
    0.019; another county 0.076, lockdown 0.054."""
    rejects_rate: Level = Level(warning=0.01, alert=0.05)
    """Share of households with a rejected row in the current data."""
    category_change_share: float = Field(default=0.005, ge=0)
    """A category (income source, employment status, event kind, ...) is new or vanished when it
    holds at least this share of rows on one side and none on the other."""
    new_or_vanished_categories: Level = Level(warning=1, alert=3)
    """Number of new or vanished categories."""

    # -- performance once labels have matured ------------------------------------------------
    recall_drop: Level = Level(warning=0.10, alert=0.20)
    """Drop of recall@k below the model's test recall@k (absolute)."""
    precision_drop: Level = Level(warning=0.05, alert=0.10)
    """Drop of precision@k below the model's test precision@k (absolute)."""
    calibration_error: Level = Level(warning=0.03, alert=0.06)
    """Expected calibration error of past scores against what the rules later showed."""

    # -- sampling -----------------------------------------------------------------------------
    max_rows_per_side: int = Field(default=50_000, ge=1_000)
    """Most households per side whose features (and scores) are built, for feature drift, prediction
    drift and matured performance: whole villages in a seeded order (:mod:`.sampling`), the same
    villages on both sides of a county compared with its own past. The county-level statistics of
    :mod:`.quality` always use every row in DuckDB. Scored runs and request logs are sampled by rows."""
    evidently_columns: int = Field(default=12, ge=1)
    """Features shown in the Evidently report: the most drifted ones (Evidently's per-column
    rendering costs seconds per column, so the report shows the ones worth a look)."""
    seed: int = 20240601


DEFAULT_THRESHOLDS = MonitorThresholds()
