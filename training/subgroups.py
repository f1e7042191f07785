"""Who the visit list misses: recall@k and false-positive rate by household group.

Groups are facts a county can check at the as-of month itself (point in time):
a member with a disability, only members aged 60 or more, a single member,
mountain terrain, registered poor or not, and the township. A group's recall is
the share of its label-1 households that the *county-wide* top k catches, so a
group is judged by the list staff actually get, not by a ranking made for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from relapse_risk.features.dataset import Dataset

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
    (data-contract.md); a disability counts when the member's recorded grade is
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


def subgroup_table(
    scored: pd.DataFrame,
    groups: pd.DataFrame,
    in_top_column: str,
    recall_ratio: float,
    min_positives: int,
) -> pd.DataFrame:
    """recall@k and false-positive rate of each group, pooled over the as-of months of ``scored``.

    ``scored`` holds eligible, labelled rows with household_id, as_of, label (0/1) and a
    boolean ``in_top_column`` (in the county-wide top k of its month). Rows: ``overall``,
    each flag of :data:`GROUP_FLAGS`, then ``township:<code>``. A group is ``judged`` when it
    has at least ``min_positives`` label-1 rows, and ``flagged`` when judged and its recall is
    below ``recall_ratio`` x the overall recall.
    """
    joined = scored[["household_id", "as_of", "label", in_top_column]].merge(
        groups, on=["household_id", "as_of"], how="left", validate="one_to_one"
    )
    label = joined["label"].to_numpy(dtype=bool)
    in_top = joined[in_top_column].to_numpy(dtype=bool)

    def row(group: str, description: str, member: np.ndarray) -> dict[str, object]:
        positives = int((member & label).sum())
        negatives = int((member & ~label).sum())
        caught = int((member & label & in_top).sum())
        false_alarms = int((member & ~label & in_top).sum())
        return {
            "group": group,
            "description": description,
            "rows": int(member.sum()),
            "positives": positives,
            "in_top_k": int((member & in_top).sum()),
            "recall_at_k": caught / positives if positives else float("nan"),
            "false_positive_rate": false_alarms / negatives if negatives else float("nan"),
        }

    rows = [row("overall", "all eligible households", np.ones(len(joined), dtype=bool))]
    for column, description in GROUP_FLAGS:
        rows.append(row(column, description, joined[column].fillna(False).to_numpy(dtype=bool)))
    townships = joined["township_code"].astype("string").fillna("unknown")
    for code in sorted(townships.unique()):
        rows.append(row(f"township:{code}", f"township {code}", (townships == code).to_numpy()))
    table = pd.DataFrame(rows)
    overall = float(table.loc[0, "recall_at_k"])
    table["judged"] = table["positives"] >= min_positives
    table["recall_ratio"] = table["recall_at_k"] / overall if overall > 0 else float("nan")
    table["flagged"] = table["judged"] & (table["recall_at_k"] < recall_ratio * overall)
    return table
