"""Who the visit list serves worse: the fairness gate's table of household groups.

Groups are facts a county can check at the as-of month itself (point in time):
a member with a disability, only members aged 60 or more, a single member,
mountain terrain, registered poor or not, and the township. A group's recall is
the share of its label-1 households that the *county-wide* top k catches, so a
group is judged by the list staff actually get, not by a ranking made for it.

The gate compares each group with what it gets today (the rule baseline's
list) and with the current champion, never with the county as a whole: some
groups are harder to foresee for every method, the oracle included, so a
parity rule (group recall over overall recall) would refuse good models, and
a perfect one. Each comparison is an exact one-sided test on the group's own
positives, so a group of a dozen positives is not refused for noise.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from relapse_risk.features.dataset import Dataset
from relapse_risk.models.metrics import BASELINE, MODEL, ORACLE
from scipy import stats

ELDERLY_AGE = 60

GROUP_FLAGS: tuple[tuple[str, str], ...] = (
    ("disabled_member", "a member with a disability"),
    ("elderly_only", f"all members aged {ELDERLY_AGE}+"),
    ("single_person", "single-person household"),
    ("mountain", "mountain terrain"),
    ("registered_poor", "registered poor"),
    ("not_registered_poor", "not registered poor"),
)
"""Boolean group columns of :func:`household_groups` and their plain names."""


def household_groups(dataset: Dataset, as_of_months: Sequence[dt.date]) -> pd.DataFrame:
    """One row per household and as-of month with the group facts known at that month.

    Columns: household_id, as_of (datetime64), disabled_member, elderly_only,
    single_person, mountain, registered_poor, not_registered_poor, township_code.
    Members count when joined_month is null or <= t and left_month is null or > t
    (docs/data-contract.md); a disability counts when the member's recorded grade is
    1-4 or a ``disability_certified`` event for the member is dated in or before t.
    """
    months = pd.DataFrame({"as_of": pd.to_datetime([m.replace(day=1) for m in as_of_months])})
    connection = dataset.connection
    connection.register("_group_months", months)
    try:
        frame = connection.execute(
            f"""
            WITH months AS (SELECT DISTINCT CAST(as_of AS DATE) AS as_of FROM _group_months),
            certified AS (
                SELECT member_id, min(date) AS first_certified
                FROM events
                WHERE kind = 'disability_certified' AND member_id IS NOT NULL
                GROUP BY member_id
            ),
            present AS (
                SELECT m.household_id, months.as_of,
                       count(*) AS size,
                       bool_and(year(months.as_of) - m.birth_year >= {ELDERLY_AGE}) AS all_elderly,
                       bool_or(m.disability_grade BETWEEN 1 AND 4
                               OR c.first_certified < months.as_of + INTERVAL 1 MONTH) AS any_disabled
                FROM members m
                CROSS JOIN months
                LEFT JOIN certified c USING (member_id)
                WHERE (m.joined_month IS NULL OR m.joined_month <= months.as_of)
                  AND (m.left_month IS NULL OR m.left_month > months.as_of)
                GROUP BY m.household_id, months.as_of
            )
            SELECT h.household_id,
                   months.as_of,
                   coalesce(p.any_disabled, false) AS disabled_member,
                   coalesce(p.size >= 1 AND p.all_elderly, false) AS elderly_only,
                   coalesce(p.size, 0) <= 1 AS single_person,
                   h.terrain = 'mountain' AS mountain,
                   h.registered_poor AS registered_poor,
                   NOT h.registered_poor AS not_registered_poor,
                   h.township_code
            FROM households h
            CROSS JOIN months
            LEFT JOIN present p ON p.household_id = h.household_id AND p.as_of = months.as_of
            ORDER BY months.as_of, h.household_id
            """
        ).df()
    finally:
        connection.unregister("_group_months")
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame


@dataclass(frozen=True)
class GateLimits:
    """How the fairness gate weighs evidence: a family-wise error rate and a calibration tolerance."""

    alpha: float = 0.05
    """Chance of refusing a model that is in truth no worse, shared by every group (Bonferroni)."""
    calibration_tolerance: float = 0.5
    """A group's observed/predicted rate may differ from the county's by this factor (1.5x, 1/1.5x)."""


def subgroup_table(ranked: pd.DataFrame, groups: pd.DataFrame, limits: GateLimits) -> pd.DataFrame:
    """The fairness gate's table: each group's recall@k for model, baseline and oracle, and two verdicts.

    ``ranked`` holds eligible, labelled rows with household_id, as_of, label (0/1),
    risk_score and the boolean ``in_top_k_model`` and ``in_top_k_rule_baseline`` (in the
    county-wide top k of its month); ``in_top_k_oracle`` and ``rank_oracle`` when a truth
    file covers the months (the oracle's recall uses only the rows it ranked). Rows:
    ``overall``, each flag of :data:`GROUP_FLAGS`, then ``township:<code>``.

    Verdicts, each judged on evidence so that small groups are not refused for noise:

    - ``below_baseline``: the model catches fewer of the group's positives than today's
      practice (the rule baseline's list) does. Exact one-sided sign test on the positives
      that one list catches and the other misses (McNemar), at ``alpha`` / groups.
    - ``miscalibrated``: the group's observed rate over its predicted rate, relative to the
      county's, lies beyond ``1 + calibration_tolerance`` either way, judged with a one-sided
      Poisson bound at ``alpha`` / (2 x groups). Relative, because calibration of the whole
      county is its own check (expected calibration error); this one asks whether a group
      is treated differently.

    ``parity`` columns (group recall / overall recall) are reported, never judged: some groups
    are harder to foresee for every method, the oracle included.
    """
    joined = ranked.merge(groups, on=["household_id", "as_of"], how="left", validate="one_to_one")
    label = joined["label"].to_numpy(dtype=bool)
    score = joined["risk_score"].to_numpy(dtype=np.float64)
    caught = {method: joined[f"in_top_k_{method}"].to_numpy(dtype=bool) for method in (MODEL, BASELINE)}
    oracle_ranked = (
        joined["rank_oracle"].notna().to_numpy()
        if "rank_oracle" in joined and joined["rank_oracle"].notna().any()
        else None
    )
    if oracle_ranked is not None:
        caught[ORACLE] = joined["in_top_k_oracle"].to_numpy(dtype=bool)

    members = _group_members(joined)

    county_ratio = label.sum() / score.sum() if score.sum() > 0 else math.nan
    tests = len(members)
    rows = []
    for group, description, member in members:
        positive = member & label
        positives = int(positive.sum())
        negatives = int((member & ~label).sum())
        recall = {m: (caught[m] & positive).sum() / positives if positives else math.nan for m in caught}
        if oracle_ranked is not None:
            judged_by_oracle = positive & oracle_ranked
            recall[ORACLE] = (
                (caught[ORACLE] & judged_by_oracle).sum() / judged_by_oracle.sum()
                if judged_by_oracle.any()
                else math.nan
            )
        model_only = int((positive & caught[MODEL] & ~caught[BASELINE]).sum())
        baseline_only = int((positive & caught[BASELINE] & ~caught[MODEL]).sum())
        below_p = worse_than_p(model_only, baseline_only)
        observed, predicted = int(positive.sum()), float(score[member].sum())
        calibration_ratio = (
            (observed / predicted) / county_ratio if predicted > 0 and county_ratio > 0 else math.nan
        )
        off_p = miscalibration_p(observed, predicted * county_ratio, limits.calibration_tolerance)
        rows.append(
            {
                "group": group,
                "description": description,
                "rows": int(member.sum()),
                "positives": positives,
                "in_top_k": int((member & caught[MODEL]).sum()),
                "recall_at_k": recall[MODEL],
                "baseline_recall_at_k": recall[BASELINE],
                "oracle_recall_at_k": recall.get(ORACLE, math.nan),
                "false_positive_rate": (
                    (member & ~label & caught[MODEL]).sum() / negatives if negatives else math.nan
                ),
                "observed_rate": observed / member.sum() if member.any() else math.nan,
                "predicted_rate": predicted / member.sum() if member.any() else math.nan,
                "calibration_ratio": calibration_ratio,
                "below_baseline_p": below_p,
                "miscalibrated_p": off_p,
                "below_baseline": below_p < limits.alpha / tests,
                "miscalibrated": off_p < limits.alpha / (2 * tests),
            }
        )
    table = pd.DataFrame(rows)
    for recall_column, column in (
        ("recall_at_k", "parity"),
        ("baseline_recall_at_k", "baseline_parity"),
        ("oracle_recall_at_k", "oracle_parity"),
    ):
        overall = float(table[recall_column].loc[0])
        table[column] = table[recall_column] / overall if overall > 0 else math.nan
    table["flagged"] = table["below_baseline"] | table["miscalibrated"]
    return table


def worse_than_p(wins: int, losses: int) -> float:
    """One-sided p-value that a list is worse than the other, from its discordant positives.

    ``wins``: positives only this list catches; ``losses``: positives only the other catches.
    Under "no worse" each discordant positive is at least a fair coin for this list, so the
    chance of ``losses`` or more out of ``wins + losses`` bounds the p-value (exact sign test).
    """
    discordant = wins + losses
    if discordant == 0:
        return 1.0
    return float(stats.binom.sf(losses - 1, discordant, 0.5))


def miscalibration_p(observed: int, expected: float, tolerance: float) -> float:
    """One-sided p-value that ``observed`` positives lie beyond ``expected`` x (1 + tolerance)^±1.

    Poisson bounds: a Poisson count varies at least as much as the sum of independent
    Bernoulli outcomes with the same mean, so the test never cries wolf more than stated.
    """
    if not expected > 0:
        return 1.0
    high, low = expected * (1 + tolerance), expected / (1 + tolerance)
    above = stats.poisson.sf(observed - 1, high) if observed > high else 1.0
    below = stats.poisson.cdf(observed, low) if observed < low else 1.0
    return float(min(above, below))


def champion_table(
    challenger: pd.DataFrame, champion: pd.DataFrame, groups: pd.DataFrame, limits: GateLimits
) -> pd.DataFrame:
    """Each group's recall@k for challenger and champion on the same rows, and whether it fell.

    Both frames hold household_id, as_of, label and in_top_k_model for the same eligible
    rows (months and data). ``fell``: the challenger catches fewer of the group's positives
    than the champion, beyond noise (the sign test of :func:`worse_than_p`, Bonferroni over
    the groups).
    """
    keys = ["household_id", "as_of"]
    paired = challenger[[*keys, "label", "in_top_k_model"]].merge(
        champion[[*keys, "in_top_k_model"]].rename(columns={"in_top_k_model": "champion_in_top_k"}),
        on=keys,
        how="inner",
        validate="one_to_one",
    )
    if len(paired) != len(challenger) or len(paired) != len(champion):
        raise ValueError(
            f"challenger and champion were assessed on different rows ({len(challenger)} and "
            f"{len(champion)}, {len(paired)} shared)"
        )
    joined = paired.merge(groups, on=keys, how="left", validate="one_to_one")
    label = joined["label"].to_numpy(dtype=bool)
    ours = joined["in_top_k_model"].to_numpy(dtype=bool)
    theirs = joined["champion_in_top_k"].to_numpy(dtype=bool)
    members = _group_members(joined)
    rows = []
    for group, _description, member in members:
        positive = member & label
        positives = int(positive.sum())
        p = worse_than_p(int((positive & ours & ~theirs).sum()), int((positive & theirs & ~ours).sum()))
        rows.append(
            {
                "group": group,
                "positives": positives,
                "recall_at_k": (positive & ours).sum() / positives if positives else math.nan,
                "champion_recall_at_k": (positive & theirs).sum() / positives if positives else math.nan,
                "fell_p": p,
                "fell": p < limits.alpha / len(members),
            }
        )
    return pd.DataFrame(rows)


def _group_members(joined: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(group, description, row mask) of ``overall``, each flag of :data:`GROUP_FLAGS` and each township."""
    members = [("overall", "all eligible households", np.ones(len(joined), dtype=bool))]
    for column, description in GROUP_FLAGS:
        members.append((column, description, joined[column].fillna(False).to_numpy(dtype=bool)))
    townships = joined["township_code"].astype("string").fillna("unknown")
    for code in sorted(townships.unique()):
        members.append((f"township:{code}", f"township {code}", (townships == code).to_numpy()))
    return members
