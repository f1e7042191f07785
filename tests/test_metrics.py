"""Headline metrics (docs/rules-and-labels.md), the rule baseline and the oracle, on hand-made rankings."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from relapse_risk.models.baseline import oracle_scores, read_truth, rule_baseline_scores, truth_months
from relapse_risk.models.metrics import (
    BASELINE,
    ORACLE,
    average_over_months,
    average_precision,
    evaluate,
    expected_calibration_error,
    median_lead_time,
    precision_at_k,
    rank,
    recall_at_k,
    roc_auc,
    visit_count,
)

JUNE = dt.date(2024, 6, 1)


# --- k -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "eligible", "k"),
    [
        (0.05, 20_000, 1_000),
        (0.05, 101, 6),  # 5.05 rounds up
        (0.07, 100, 7),  # 0.07 x 100 is 7.000000000000001 in binary floating point
        (0.1, 30, 3),  # 0.1 x 30 is 3.0000000000000004
        (0.05, 1, 1),
        (0.05, 0, 0),
        (1.0, 3, 3),
    ],
)
def test_k_is_the_ceiling_of_visit_share_times_eligible(share: float, eligible: int, k: int) -> None:
    assert visit_count(share, eligible) == k


def test_visit_share_outside_zero_to_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="visit_share"):
        visit_count(0.0, 10)
    with pytest.raises(ValueError, match="visit_share"):
        visit_count(1.5, 10)


# --- ranking ---------------------------------------------------------------------------------------------


def test_rank_orders_by_score_descending_ties_by_household_id_and_nan_last() -> None:
    ids = np.array(["c", "a", "b", "e", "d", "f"], dtype=object)
    scores = np.array([0.5, 0.9, 0.5, np.nan, 0.1, np.nan])
    assert list(rank(scores, ids)) == [3, 1, 2, 5, 4, 6]


def test_rank_compares_household_ids_as_strings() -> None:
    # '010' < '09' as text; numeric-looking ids keep their leading zeros.
    assert list(rank(np.array([0.3, 0.3]), np.array(["09", "010"]))) == [2, 1]


def test_rank_is_the_same_whatever_the_input_order() -> None:
    rng = np.random.default_rng(7)
    ids = np.array([f"{i:04d}" for i in range(200)], dtype=object)
    scores = rng.choice([0.1, 0.2, 0.3, np.nan], size=200)
    ranks = rank(scores, ids)
    shuffled = rng.permutation(200)
    np.testing.assert_array_equal(rank(scores[shuffled], ids[shuffled]), ranks[shuffled])


def test_rule_baseline_ranks_by_margin_ascending_undefined_last_ties_by_household_id() -> None:
    labels = pd.DataFrame(
        {
            "household_id": ["a", "b", "c", "d", "e"],
            "as_of": pd.Timestamp(JUNE),
            "margin": [0.8, np.nan, 0.5, 0.5, 1.2],
        }
    )
    scores = rule_baseline_scores(labels)
    assert list(rank(scores.to_numpy(), scores.index.to_numpy())) == [3, 5, 1, 2, 4]


# --- metrics at k ------------------------------------------------------------------------------------


def test_recall_and_precision_at_k() -> None:
    labels = np.array([1, 0, 1, 0, 1])
    top = np.array([True, True, False, False, False])
    assert recall_at_k(labels, top) == pytest.approx(1 / 3)
    assert precision_at_k(labels, top) == 0.5
    assert math.isnan(recall_at_k(np.zeros(5, dtype=int), top))
    assert math.isnan(precision_at_k(labels, np.zeros(5, dtype=bool)))


def test_median_lead_time_counts_only_label_one_households_in_the_top_k() -> None:
    labels = np.array([1, 1, 1, 0, 1])
    leads = np.array([2.0, 5.0, 3.0, np.nan, 1.0])
    top = np.array([True, True, True, True, False])
    assert median_lead_time(labels, leads, top) == 3.0
    top_two = np.array([True, True, False, False, False])
    assert median_lead_time(labels, leads, top_two) == 3.5
    assert math.isnan(median_lead_time(labels, leads, np.zeros(5, dtype=bool)))


def test_auc_treats_undefined_scores_as_tied_below_all_others() -> None:
    labels = np.array([1, 0, 0, 1])
    scores = np.array([0.9, np.nan, 0.2, np.nan])
    # Positive/negative pairs: 0.9>nan, 0.9>0.2, nan=nan (half), nan<0.2 -> 2.5 of 4.
    assert roc_auc(labels, scores) == pytest.approx(0.625)
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.1, 0.2])))


def test_average_precision_by_hand() -> None:
    # Ranked: 1 (pos), 0.8 (neg), 0.6 (pos): precision at the positives 1/1 and 2/3 -> mean 5/6.
    assert average_precision(np.array([1, 0, 1]), np.array([1.0, 0.8, 0.6])) == pytest.approx(5 / 6)
    assert math.isnan(average_precision(np.array([0, 0]), np.array([0.1, 0.2])))


# --- calibration ---------------------------------------------------------------------------------------


def test_expected_calibration_error_by_hand() -> None:
    p = np.array([0.05, 0.15, 0.15, 0.95])
    y = np.array([0, 1, 0, 1])
    # bin 0: |0 - 0.05| x 1/4; bin 1: |0.5 - 0.15| x 2/4; bin 9: |1 - 0.95| x 1/4.
    assert expected_calibration_error(y, p) == pytest.approx(0.0125 + 0.175 + 0.0125)


def test_calibration_bins_are_equal_width_and_closed_on_the_left() -> None:
    # 0.3 belongs to [0.3, 0.4) with 0.35: |0.5 - 0.325| = 0.175. Were it in [0.2, 0.3),
    # the error would be (|1 - 0.3| + |0 - 0.35|) / 2 = 0.525.
    assert expected_calibration_error(np.array([1, 0]), np.array([0.3, 0.35])) == pytest.approx(0.175)
    # p = 1 sits in the last bin with 0.95.
    assert expected_calibration_error(np.array([1, 1]), np.array([1.0, 0.9])) == pytest.approx(0.05)


def test_a_calibrated_score_has_zero_error_and_probabilities_outside_zero_one_are_refused() -> None:
    assert expected_calibration_error(np.array([1, 0, 0, 0]), np.full(4, 0.25)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error(np.array([1, 0]), np.array([0.5, 1.2]))


# --- evaluate ------------------------------------------------------------------------------------------


def labels_at(as_of: dt.date) -> pd.DataFrame:
    """Ten eligible households (h0..h9, three positives) and two that are not."""
    ids = [f"h{i}" for i in range(12)]
    return pd.DataFrame(
        {
            "household_id": ids,
            "as_of": pd.Timestamp(as_of),
            "eligible": [True] * 10 + [False, False],
            "margin": [0.5, 1.5, 0.9, 2.0, 1.1, np.nan, 3.0, 0.7, 1.9, 2.5, 0.1, 0.2],
            "label": pd.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0, None, None], dtype="Int8"),
            "lead_time_months": pd.array(
                [4, None, 2, None, None, None, None, 1, None, None, None, None], "Int16"
            ),
        }
    )


def test_evaluate_gives_the_headline_metrics_per_method() -> None:
    labels = labels_at(JUNE)
    model = pd.Series(
        [0.9, 0.1, 0.2, 0.05, 0.3, 0.1, 0.0, 0.6, 0.1, 0.0, 0.99, 0.99], index=labels["household_id"]
    )
    metrics = evaluate(
        JUNE, labels, {BASELINE: rule_baseline_scores(labels), "model": model}, visit_share=0.2
    ).set_index("method")

    # k = ceil(0.2 x 10) = 2. Baseline top 2 by margin: h0 (0.5), h7 (0.7): both positive.
    baseline = metrics.loc[BASELINE]
    assert baseline["eligible"] == 10 and baseline["positives"] == 3 and baseline["k"] == 2
    assert baseline["hits_at_k"] == 2
    assert baseline["recall_at_k"] == pytest.approx(2 / 3)
    assert baseline["precision_at_k"] == 1.0
    assert baseline["median_lead_time_months"] == 2.5  # leads 4 and 1
    assert math.isnan(baseline["ece"])
    # -margin ranks the positives 1st, 2nd and 3rd (h0, h7, h2): perfect separation.
    assert baseline["roc_auc"] == 1.0 and baseline["average_precision"] == 1.0

    # Model top 2 (the ineligible 0.99s are ignored): h0 (0.9), h7 (0.6).
    m = metrics.loc["model"]
    assert m["precision_at_k"] == 1.0
    # h2 (0.2, positive) is below h4 (0.3): AUC = (7 + 7 + 6) / 21.
    assert m["roc_auc"] == pytest.approx(20 / 21)
    assert m["ece"] == pytest.approx(
        expected_calibration_error(
            np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 0]),
            np.array([0.9, 0.1, 0.2, 0.05, 0.3, 0.1, 0.0, 0.6, 0.1, 0.0]),
        )
    )


def test_ties_at_the_top_k_boundary_are_broken_by_household_id() -> None:
    labels = labels_at(JUNE)
    flat = pd.Series(0.5, index=labels["household_id"])
    # Everyone tied: the top 2 are h0 (label 1) and h1 (label 0).
    metrics = evaluate(JUNE, labels, {"flat": flat}, visit_share=0.2).iloc[0]
    assert metrics["hits_at_k"] == 1 and metrics["precision_at_k"] == 0.5
    assert metrics["roc_auc"] == 0.5


def test_evaluate_refuses_missing_scores_and_undefined_labels() -> None:
    labels = labels_at(JUNE)
    partial = pd.Series([0.5], index=["h0"])
    with pytest.raises(ValueError, match="no score for 9 eligible households"):
        evaluate(JUNE, labels, {"model": partial}, visit_share=0.2)
    undefined = labels.assign(label=pd.array([None] * 12, dtype="Int8"))
    with pytest.raises(ValueError, match="undefined"):
        evaluate(JUNE, undefined, {BASELINE: rule_baseline_scores(labels)}, visit_share=0.2)


def test_average_over_months_skips_undefined_months_of_a_metric() -> None:
    march, june = dt.date(2024, 3, 1), JUNE
    rows = []
    for as_of, lead in ((march, 4), (june, None)):
        labels = labels_at(as_of)
        if lead is None:  # no positives in June: recall undefined
            labels["label"] = pd.array([0] * 10 + [None, None], dtype="Int8")
            labels["lead_time_months"] = pd.array([None] * 12, dtype="Int16")
        rows.append(evaluate(as_of, labels, {BASELINE: rule_baseline_scores(labels)}, visit_share=0.2))
    per_month = pd.concat(rows, ignore_index=True)
    mean = average_over_months(per_month).set_index("method").loc[BASELINE]
    assert mean["months"] == 2
    assert mean["recall_at_k"] == pytest.approx(2 / 3)
    assert mean["precision_at_k"] == pytest.approx(0.5)  # 1.0 in March, 0.0 in June
    assert mean["positives"] == 1.5


# --- the oracle ---------------------------------------------------------------------------------------------


def write_truth(path: Path, p_true: list[float]) -> Path:
    pd.DataFrame(
        {
            "household_id": ["007", "010", "011"] * 2,
            "as_of": [dt.date(2024, 3, 1)] * 3 + [JUNE] * 3,
            "p_true": p_true,
        }
    ).to_parquet(path)
    return path


def test_oracle_scores_are_p_true_at_the_as_of_month(tmp_path: Path) -> None:
    truth = read_truth(write_truth(tmp_path / "truth.parquet", [0.1, 0.2, 0.3, 0.6, 0.05, 0.6]))
    assert truth_months(truth) == [dt.date(2024, 3, 1), JUNE]
    scores = oracle_scores(truth, JUNE)
    assert scores.to_dict() == {"007": 0.6, "010": 0.05, "011": 0.6}
    assert list(rank(scores.to_numpy(), scores.index.to_numpy())) == [1, 3, 2]
    with pytest.raises(ValueError, match="no p_true at 2023-12"):
        oracle_scores(truth, dt.date(2023, 12, 1))


def test_a_truth_file_with_a_bad_probability_names_the_row(tmp_path: Path) -> None:
    path = write_truth(tmp_path / "truth.parquet", [0.1, 0.2, 0.3, 0.6, 1.5, 0.6])
    with pytest.raises(ValueError, match=r"truth.parquet: row 5, column p_true: 1.5"):
        read_truth(path)


def test_oracle_and_baseline_evaluate_side_by_side(tmp_path: Path) -> None:
    labels = labels_at(JUNE)
    truth = pd.DataFrame(
        {
            "household_id": labels["household_id"],
            "as_of": pd.Timestamp(JUNE),
            "p_true": [0.7, 0.0, 0.1, 0.0, 0.2, 0.0, 0.0, 0.8, 0.0, 0.0, 0.5, 0.5],
        }
    )
    metrics = evaluate(
        JUNE,
        labels,
        {BASELINE: rule_baseline_scores(labels), ORACLE: oracle_scores(truth, JUNE)},
        visit_share=0.2,
    ).set_index("method")
    assert list(metrics.index) == [BASELINE, ORACLE]
    assert metrics.loc[ORACLE, "recall_at_k"] == pytest.approx(2 / 3)
    assert not math.isnan(metrics.loc[ORACLE, "ece"])
