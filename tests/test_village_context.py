"""The village figures a batch run writes for the API (serving/village_context.py).

The batch job hands over its features and its scores table, both in household-id
order, and the function takes a short cut for that; any other order must give the
same villages with the same figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from relapse_risk.serving.village_context import village_context


def _county(seed: int = 3, households: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature rows in household-id order and the households' villages in the same order.

    Households of one village carry different figures here (in a real county they are
    equal), so a test sees which household stood for the village.
    """
    generator = np.random.default_rng(seed)
    ids = [f"h{number:05d}" for number in range(households)]
    villages = pd.DataFrame(
        {
            "household_id": pd.array(ids, dtype="string"),
            "village_code": pd.array([f"v{code:02d}" for code in generator.integers(0, 30, households)]),
        }
    )
    villages.loc[7, "village_code"] = pd.NA  # a household whose village is unknown
    features = pd.DataFrame(
        {
            "household_id": ids,
            "income_per_capita_12m": generator.random(households).astype(np.float32),
            "village_households": generator.integers(1, 50, households).astype(np.float32),
            "village_share_triggered": generator.random(households).astype(np.float32),
        }
    )
    return features, villages


def test_each_village_takes_the_figures_of_its_smallest_household_id():
    features, villages = _county()
    context = village_context(features, villages, "2024-06")

    known = villages.dropna().assign(position=lambda frame: frame.index)
    firsts = known.sort_values("household_id").drop_duplicates("village_code").sort_values("village_code")
    assert context["village_code"].tolist() == firsts["village_code"].tolist()
    assert list(context.columns) == ["village_code", "as_of", "village_households", "village_share_triggered"]
    np.testing.assert_array_equal(
        context["village_share_triggered"].to_numpy(),
        features["village_share_triggered"].to_numpy(dtype=np.float64)[firsts["position"].to_numpy()],
    )
    assert (context["as_of"] == "2024-06").all() and (context.dtypes.iloc[2:] == np.float64).all()


def test_households_in_any_order_give_the_same_villages_as_in_household_id_order():
    features, villages = _county()
    expected = village_context(features, villages, "2024-06")

    shuffled_features = features.sample(frac=1.0, random_state=1)
    shuffled_villages = villages.sample(frac=1.0, random_state=2)
    pd.testing.assert_frame_equal(village_context(shuffled_features, villages, "2024-06"), expected)
    pd.testing.assert_frame_equal(village_context(features, shuffled_villages, "2024-06"), expected)
    pd.testing.assert_frame_equal(village_context(shuffled_features, shuffled_villages, "2024-06"), expected)


def test_a_household_listed_twice_takes_its_first_village():
    features, _ = _county(households=20)
    ids = features["household_id"].tolist()
    twice = pd.DataFrame(
        {"household_id": [*ids, ids[0]], "village_code": ["v1", "v2"] * 10 + ["v9"]}, dtype="string"
    )

    context = village_context(features, twice, "2024-06")
    assert context["village_code"].tolist() == ["v1", "v2"]
    assert context["village_share_triggered"].iloc[0] == features["village_share_triggered"].iloc[0]
