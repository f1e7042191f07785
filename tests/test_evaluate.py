"""`relapse evaluate` reruns the metric table (docs/rules-and-labels.md) and subgroup table on any folder."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from builders import RULES
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.policy import Policy
from relapse_risk.training.subgroups import GateLimits, household_groups, subgroup_table
from typer.testing import CliRunner

from relapse_risk.cli import app

WIDE = {"COLUMNS": "200"}


def policy() -> Policy:
    return Policy.model_validate(
        {
            "contract_version": 1,
            "data_start": "2023-01",
            "data_end": "2024-12",
            "monitoring_line": {"2023": 6900, "2024": 7200},
            "rules": RULES,
            "visit_share": 0.05,
        }
    )


def household(household_id: str, terrain: str = "plain", registered_poor: bool = False) -> dict[str, object]:
    return {
        "household_id": household_id,
        "county_code": "532328",
        "township_code": "532328100" if household_id < "h3" else "532328101",
        "village_code": "532328100001",
        "registered_poor": registered_poor,
        "escape_year": None,
        "terrain": terrain,
        "relocated": False,
        "housing_safe": True,
        "cultivated_land_mu": 2.0,
    }


def member(member_id: str, household_id: str, birth_year: int, **changes: object) -> dict[str, object]:
    row = {
        "member_id": member_id,
        "household_id": household_id,
        "birth_year": birth_year,
        "sex": "f",
        "relation": "head",
        "education": "primary",
        "labor_capacity": "full",
        "disability_grade": 0,
        "chronic_disease": False,
        "medical_insurance": True,
        "joined_month": None,
        "left_month": None,
    }
    row.update(changes)
    return row


class TestHouseholdGroups:
    """Groups are facts known at the as-of month itself."""

    @pytest.fixture(scope="class")
    @classmethod
    def groups(cls) -> pd.DataFrame:
        months = pd.to_datetime
        dataset = Dataset.from_frames(
            policy(),
            {
                "households": pd.DataFrame(
                    [household("h1", "mountain", True), household("h2"), household("h3"), household("h4")]
                ),
                "members": pd.DataFrame(
                    [
                        # h1: an old couple until the husband leaves in 2024-02; then single and elderly.
                        member("m1", "h1", 1950),
                        member("m2", "h1", 1955, left_month=months("2024-02-01")),
                        # h2: a 60-year-old alone; a grandchild joins in 2024-03.
                        member("m3", "h2", 1963),
                        member("m4", "h2", 2015, joined_month=months("2024-03-01")),
                        # h3: a recorded disability grade from the start.
                        member("m5", "h3", 1980, disability_grade=2),
                        member("m6", "h3", 1982),
                        # h4: a disability certified in 2024-02-20 by an event, not in the members table.
                        member("m7", "h4", 1985),
                        member("m8", "h4", 1990),
                    ]
                ),
                "events": pd.DataFrame(
                    [
                        {
                            "household_id": "h4",
                            "member_id": "m8",
                            "date": months("2024-02-20"),
                            "kind": "disability_certified",
                            "severity": 2,
                            "value": 3.0,
                        }
                    ]
                ),
            },
        )
        return household_groups(dataset, [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]).set_index(
            ["as_of", "household_id"]
        )

    def at(self, groups: pd.DataFrame, month: str, household_id: str) -> pd.Series:
        return groups.loc[(pd.Timestamp(month), household_id)]

    def test_household_size_follows_joined_and_left_months(self, groups: pd.DataFrame) -> None:
        assert not self.at(groups, "2024-01-01", "h1")["single_person"]
        assert self.at(groups, "2024-02-01", "h1")["single_person"]
        assert self.at(groups, "2024-02-01", "h2")["single_person"]  # the grandchild joins in March

    def test_elderly_only_means_every_present_member_is_60_or_more(self, groups: pd.DataFrame) -> None:
        assert self.at(groups, "2024-01-01", "h1")["elderly_only"]
        assert self.at(groups, "2024-01-01", "h2")["elderly_only"]  # born 1963, 61 in 2024
        assert not self.at(groups, "2024-01-01", "h3")["elderly_only"]

    def test_a_certified_disability_counts_from_the_month_of_its_event(self, groups: pd.DataFrame) -> None:
        assert self.at(groups, "2024-01-01", "h3")["disabled_member"]
        assert not self.at(groups, "2024-01-01", "h4")["disabled_member"]
        assert self.at(groups, "2024-02-01", "h4")["disabled_member"]

    def test_terrain_registration_and_township_come_from_households(self, groups: pd.DataFrame) -> None:
        h1 = self.at(groups, "2024-01-01", "h1")
        assert h1["mountain"] and h1["registered_poor"] and not h1["not_registered_poor"]
        assert self.at(groups, "2024-01-01", "h4")["township_code"] == "532328101"


def test_subgroup_recall_is_the_share_of_its_positives_the_county_wide_list_catches() -> None:
    as_of = pd.Timestamp("2024-06-01")
    ids = [f"h{i:02d}" for i in range(10)]
    scored = pd.DataFrame(
        {
            "household_id": ids,
            "as_of": as_of,
            "label": [1, 1, 1, 1, 0, 0, 0, 0, 1, 1],
            "risk_score": 0.5,
            "in_top_k_model": [True, True, True, False, True, False, False, False, False, False],
            "in_top_k_rule_baseline": [True, False, False, False, False, False, False, False, True, True],
        }
    )
    groups = pd.DataFrame(
        {
            "household_id": ids,
            "as_of": as_of,
            "disabled_member": [False] * 8 + [True, True],
            "elderly_only": [True] * 5 + [False] * 5,
            "single_person": False,
            "mountain": False,
            "registered_poor": False,
            "not_registered_poor": True,
            "township_code": "532328100",
        }
    )
    table = subgroup_table(scored, groups, GateLimits()).set_index("group")
    assert table.loc["overall", "recall_at_k"] == pytest.approx(3 / 6)
    assert table.loc["overall", "baseline_recall_at_k"] == pytest.approx(3 / 6)
    assert table.loc["elderly_only", "recall_at_k"] == pytest.approx(3 / 4)
    assert table.loc["elderly_only", "parity"] == pytest.approx(1.5)
    assert table.loc["elderly_only", "false_positive_rate"] == pytest.approx(1 / 1)
    assert table.loc["disabled_member", "recall_at_k"] == 0
    assert table.loc["disabled_member", "baseline_recall_at_k"] == 1
    # Two positives cannot prove the model worse than the baseline: no refusal on noise.
    assert not table.loc["disabled_member", "flagged"]
    assert np.isnan(table.loc["single_person", "recall_at_k"])
    assert np.isnan(table.loc["overall", "oracle_recall_at_k"])


# ----------------------------------------------------------------------------- the command


def evaluate(trained, *arguments: str) -> object:
    return CliRunner().invoke(
        app,
        ["evaluate", "--model", "challenger", "--tracking-uri", trained.tracking_uri, *arguments],
        env=WIDE,
    )


def test_evaluate_writes_the_metric_table_and_subgroups_as_json(trained_small_county, tmp_path) -> None:

    out = tmp_path / "evaluation.json"
    folder = str(trained_small_county.county.folder)
    result = evaluate(trained_small_county, "--data", folder, "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["months"] == ["2023-09", "2023-12", "2024-03", "2024-06"]
    assert [row["method"] for row in report["averaged"]] == ["model", "rule_baseline", "oracle"]
    assert len(report["per_month"]) == 12
    assert report["truth_path"] == str(trained_small_county.county.truth)
    groups = [row["group"] for row in report["subgroups"]]
    assert groups[:7] == [
        "overall",
        "disabled_member",
        "elderly_only",
        "single_person",
        "mountain",
        "registered_poor",
        "not_registered_poor",
    ]
    assert any(group.startswith("township:") for group in groups)
    for row in report["subgroups"]:
        assert {"recall_at_k", "baseline_recall_at_k", "parity", "flagged", "positives"} <= set(row)
    # The subgroup table pools the very visit lists the metric table counted.
    overall = report["subgroups"][0]
    model_months = [row for row in report["per_month"] if row["method"] == "model"]
    assert overall["positives"] == sum(row["positives"] for row in model_months)
    assert overall["in_top_k"] == sum(row["k"] for row in model_months)
    hits = sum(row["hits_at_k"] for row in model_months)
    assert overall["recall_at_k"] == pytest.approx(hits / overall["positives"])
    # The registered model is the refit, which learned these months' outcomes: the report says so.
    assert report["trained_through"] == "2024-06"
    assert report["months_learned"] == report["months"]
    assert "learned the outcomes" in " ".join(result.output.split())


def test_evaluate_without_truth_leaves_the_oracle_out(trained_small_county, tmp_path) -> None:
    elsewhere = tmp_path / "export"
    elsewhere.symlink_to(trained_small_county.county.folder, target_is_directory=True)
    out = tmp_path / "evaluation.json"
    result = evaluate(trained_small_county, "--data", str(elsewhere), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [row["method"] for row in report["averaged"]] == ["model", "rule_baseline"]
    assert report["truth_path"] is None
    assert "model_vs_oracle" not in report["recall_ratios"]


def test_evaluate_names_a_missing_model(trained_small_county, tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--data",
            str(trained_small_county.county.folder),
            "--model",
            "champion",
            "--tracking-uri",
            trained_small_county.tracking_uri,
            "--out",
            str(tmp_path / "never.json"),
        ],
        env=WIDE,
    )
    assert result.exit_code == 2
    assert "no version or alias 'champion'" in " ".join(result.output.split())
    assert not (tmp_path / "never.json").exists()
