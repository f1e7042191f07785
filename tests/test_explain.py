"""Explanations: TreeSHAP that adds up, driver families, and reasons that are true of the household.

A model is trained on a synthetic frame with the catalogue's columns in which
only a few drivers matter (work lost, a serious illness, a loan falling due,
income near the line); every other column is constant, so the trees never
split on it. Households to explain are either synthetic rows or real feature
rows built by the feature pipeline from a hand-made county.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from builders import RULES
from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES, FEATURES_BY_NAME
from relapse_risk.features.contract import month_index, month_start
from relapse_risk.features.dataset import Dataset
from relapse_risk.features.history import build_features
from relapse_risk.features.policy import Policy
from relapse_risk.models.explain import (
    DRIVER_FAMILIES,
    contribution_tables,
    driver_family,
    explain,
    explain_reasons,
    family_contributions,
    global_importance,
    shap_contributions,
)
from relapse_risk.models.model import RiskModel
from relapse_risk.models.reasons import (
    MEASURES,
    NO_SINGLE_DRIVER,
    REASON_COLUMNS,
    TEMPLATES,
    choose_reasons,
)

DRIVERS = [
    "migrants_now",
    "migrants_year_ago",
    "employment_rate_12m",
    "employment_rate_change_12m",
    "events_serious_illness_12m",
    "months_since_serious_illness",
    "medical_oop_12m",
    "loan_balance_due_6m",
    "income_line_ratio",
    "income_per_capita_12m",
]


def synthetic_features(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(0.0, index=range(rows), columns=list(FEATURE_NAMES))
    frame.insert(0, "household_id", [f"S{seed}{i:06d}" for i in range(rows)])
    before = rng.integers(0, 3, rows).astype(float)
    stopped = rng.random(rows) < 0.2
    frame["migrants_year_ago"] = before
    frame["migrants_now"] = np.where(stopped, 0.0, before)
    frame["employment_rate_12m"] = rng.uniform(0.2, 0.9, rows)
    frame["employment_rate_change_12m"] = np.where(stopped & (before > 0), -0.4, 0.0) + rng.normal(
        0, 0.05, rows
    )
    ill = rng.random(rows) < 0.1
    frame["events_serious_illness_12m"] = ill.astype(float)
    frame["months_since_serious_illness"] = np.where(ill, rng.integers(0, 12, rows), np.nan)
    frame["medical_oop_12m"] = np.where(ill, rng.gamma(2.0, 15_000.0, rows), rng.gamma(1.0, 300.0, rows))
    frame["loan_balance_due_6m"] = np.where(rng.random(rows) < 0.1, 30_000.0, 0.0)
    frame["income_line_ratio"] = rng.gamma(6.0, 0.4, rows)
    frame["income_per_capita_12m"] = frame["income_line_ratio"] * 6900.0
    lost_work = frame["migrants_year_ago"] - frame["migrants_now"]
    logit = (
        -3.5
        + 1.6 * lost_work
        + 2.0 * ill
        + 1.0 * (frame["loan_balance_due_6m"] > 0)
        - 0.9 * (frame["income_line_ratio"] - 2.4)
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, label


@pytest.fixture(scope="module")
def model() -> RiskModel:
    X_train, y_train = synthetic_features(8_000, 1)
    X_valid, y_valid = synthetic_features(4_000, 2)
    return RiskModel(
        seed=3,
        max_rounds=150,
        early_stopping_rounds=30,
        num_leaves=15,
        categorical_features=list(CATEGORICAL_FEATURES),
        feature_pipeline_version="test",
    ).fit(X_train, y_train, X_valid, y_valid, feature_names=FEATURE_NAMES)


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return synthetic_features(600, 3)[0]


# -- contributions ---------------------------------------------------------------------------------


def test_contributions_plus_base_value_equal_the_raw_score(model, held_out):
    contributions = shap_contributions(model, held_out)
    assert contributions.values.shape == (len(held_out), len(FEATURE_NAMES))
    np.testing.assert_allclose(contributions.raw_score, model.raw_score(held_out), atol=1e-9)
    assert np.ptp(contributions.base_value) == 0


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PendingDeprecationWarning")
def test_lightgbm_treeshap_agrees_with_the_shap_package(model, held_out):
    import shap

    ours = shap_contributions(model, held_out.head(200))
    explainer = shap.TreeExplainer(model.booster_)
    theirs = np.asarray(explainer.shap_values(model.feature_matrix(held_out.head(200))))
    np.testing.assert_allclose(ours.values, theirs, atol=1e-6)
    np.testing.assert_allclose(ours.base_value, float(np.ravel(explainer.expected_value)[0]), atol=1e-6)


def test_only_the_rows_asked_are_explained(model, held_out):
    three = shap_contributions(model, held_out.iloc[[5, 17, 99]])
    everyone = shap_contributions(model, held_out)
    np.testing.assert_allclose(three.values, everyone.values[[5, 17, 99]])
    assert shap_contributions(model, held_out.head(0)).values.shape == (0, len(FEATURE_NAMES))


def test_family_contributions_add_up_to_the_feature_contributions(model, held_out):
    contributions = shap_contributions(model, held_out)
    families = family_contributions(contributions)
    np.testing.assert_allclose(families.sum(axis=1), contributions.values.sum(axis=1), atol=1e-9)
    assert set(families.columns) <= set(DRIVER_FAMILIES)
    assert driver_family("income_wage_migrant_mean_12m") == "employment"
    assert driver_family("events_crop_failure_12m") == "agriculture"
    assert driver_family("income_business_yoy_change_12m") == "business"
    assert driver_family("rule_margin") == "income"
    assert driver_family("medical_oop_12m") == "health"
    assert driver_family("not_a_feature") == "other"


def test_global_importance_ranks_the_features_the_label_depends_on(model, held_out):
    table = global_importance(shap_contributions(model, held_out))
    assert set(table.head(4)["feature"]) <= set(DRIVERS)
    assert table["mean_abs_shap"].is_monotonic_decreasing


# -- templates -------------------------------------------------------------------------------------


def test_templates_speak_of_catalogue_features_in_their_own_family():
    codes = [t.code for t in TEMPLATES]
    assert len(codes) == len(set(codes))
    for template in TEMPLATES:
        for name in (*template.drivers, *template.evidence):
            assert name in FEATURES_BY_NAME, f"{template.code}: {name} is not a catalogue feature"
        for name in template.drivers:
            assert driver_family(name) == template.family, f"{template.code}: {name} is not {template.family}"
        assert template.measure is MEASURES[template.measure.code]


def test_required_reason_codes_exist():
    codes = {t.code for t in TEMPLATES}
    assert {
        "employment_months_down",
        "serious_illness_recent",
        "medical_oop_high",
        "loan_due_soon",
        "loan_overdue_rising",
        "disaster_recent",
        "income_near_line",
        "business_income_down",
        "agri_income_down",
        "education_costs",
        "disability",
        "elderly_dependants",
        "missing_reports",
    } <= codes


# -- choosing reasons ------------------------------------------------------------------------------


def one_household(**values: float) -> pd.DataFrame:
    frame = pd.DataFrame(np.nan, index=[0], columns=list(FEATURE_NAMES))
    for name, value in values.items():
        frame[name] = value
    return frame


def contributions_for(**by_feature: float) -> np.ndarray:
    row = np.zeros((1, len(FEATURE_NAMES)))
    for name, value in by_feature.items():
        row[0, FEATURE_NAMES.index(name)] = value
    return row


FAMILIES = tuple(driver_family(f) for f in FEATURE_NAMES)


def test_a_driver_the_household_does_not_have_falls_back_to_the_next_family():
    # The model leans on "no illness on record" (NaN) — but there is no illness to report.
    household = one_household(
        events_serious_illness_12m=0,
        medical_oop_12m=0,
        n_chronic=0,
        loan_balance_due_6m=20_000,
        loan_months_to_maturity=3,
    )
    contributions = contributions_for(months_since_serious_illness=1.2, loan_balance_due_6m=0.5)
    [reasons] = choose_reasons(contributions, FEATURE_NAMES, FAMILIES, household, top=3)
    assert [r.code for r in reasons] == ["loan_due_soon"]
    assert reasons[0].zh == "20,000元贷款将在3个月内到期"
    assert reasons[0].measure.code == "loan_relief"


def test_only_drivers_that_raise_the_risk_become_reasons():
    household = one_household(
        loan_balance_due_6m=20_000, events_serious_illness_12m=1, months_since_serious_illness=2
    )
    contributions = contributions_for(loan_balance_due_6m=-0.7, events_serious_illness_12m=0.4)
    [reasons] = choose_reasons(contributions, FEATURE_NAMES, FAMILIES, household, top=3)
    assert [r.code for r in reasons] == ["serious_illness_recent"]
    assert reasons[0].contribution == pytest.approx(0.4)


def test_a_household_without_any_single_driver_still_gets_a_reason_to_check_at_the_visit():
    # Risk pushed up only through facts no template may cite (an illness the records do not show).
    household = one_household(
        events_serious_illness_12m=0, income_per_capita_12m=9_000, income_line_ratio=1.25
    )
    contributions = contributions_for(months_since_serious_illness=0.4, loan_balance_due_6m=-0.2)
    [reasons] = choose_reasons(contributions, FEATURE_NAMES, FAMILIES, household, top=3)
    assert [(r.code, r.family) for r in reasons] == [("no_single_driver", "other")]
    assert reasons[0].zh == (
        "多项较小因素叠加，没有单一突出原因（人均收入为监测线的1.25倍）；入户时请核实收入、支出和就业变化"
    )
    assert reasons[0].measure.code == "visit_check"
    assert reasons[0].contribution == pytest.approx(0.2)


def test_reasons_come_strongest_family_first_one_per_family():
    household = one_household(
        migrants_year_ago=2,
        migrants_now=0,
        employment_rate_12m=0.3,
        employment_rate_change_12m=-0.5,
        medical_oop_12m=8_000,
        income_per_capita_12m=7_500,
        income_line_ratio=1.09,
    )
    contributions = contributions_for(
        migrants_now=0.3, employment_rate_change_12m=0.5, medical_oop_12m=0.6, income_line_ratio=0.2
    )
    [reasons] = choose_reasons(contributions, FEATURE_NAMES, FAMILIES, household, top=2)
    # employment (0.8) before health (0.6); within employment, the months template has
    # more support (0.5) than the migrants one (0.3).
    assert [(r.family, r.code) for r in reasons] == [
        ("employment", "employment_months_down"),
        ("health", "medical_oop_high"),
    ]
    assert reasons[0].zh == "近12个月家庭务工月数占比由上年的80%降到30%"
    assert reasons[0].evidence == {"employment_rate_12m": 0.3, "employment_rate_change_12m": -0.5}


def test_a_household_gets_the_same_reasons_alone_as_among_others():
    # Drivers the model never split on contribute exact zeros, so the migrants template's support
    # ties the wages template's; the tie must not depend on how many rows are explained at once
    # (the API explains a lone household, the batch a whole visit list). Values of a real case.
    household = one_household(
        migrants_year_ago=1,
        migrants_now=0,
        migrants_change_12m=-1,
        income_wage_migrant_mean_3m=0,
        income_wage_migrant_mean_6m=0,
        income_wage_migrant_mean_12m=1473.57,
        income_wage_migrant_yoy_change_12m=-2347.13,
        income_wage_migrant_std_12m=2179.19,
    )
    contributions = contributions_for(
        income_wage_migrant_mean_3m=0.02545467560493973,
        income_wage_migrant_mean_6m=0.0015435151371097976,
        income_wage_migrant_mean_12m=0.17715031423885022,
        income_wage_migrant_std_12m=0.018831362364267402,
    )
    [alone] = choose_reasons(contributions, FEATURE_NAMES, FAMILIES, household, top=3)
    for others in (1, 2, 7, 40):
        rows = np.random.default_rng(others).normal(0, 0.1, size=(others, len(FEATURE_NAMES)))
        together = choose_reasons(
            np.vstack([contributions, rows]),
            FEATURE_NAMES,
            FAMILIES,
            pd.concat([household] * (others + 1), ignore_index=True),
            top=3,
        )
        assert together[0] == alone, others
    # A tie goes to the template listed first, the more specific one.
    assert [r.code for r in alone] == ["migrant_work_down"]


def _reasons_one_at_a_time(
    contributions: np.ndarray, features: pd.DataFrame, top: int
) -> list[list[tuple[str, float]]]:
    """choose_reasons written plainly: every sum one column at a time, every row on its own."""
    families = list(dict.fromkeys(FAMILIES))
    columns = {name: j for j, name in enumerate(FEATURE_NAMES)}
    values = {
        name: features[name].to_numpy(dtype=np.float64)
        if name in features
        else np.full(len(features), np.nan)
        for t in (*TEMPLATES, NO_SINGLE_DRIVER)
        for name in (*t.drivers, *t.evidence)
    }
    with np.errstate(invalid="ignore"):
        holds = {t.code: np.asarray(t.applies(values), dtype=bool) for t in TEMPLATES}
    chosen = []
    for i in range(len(features)):
        family_sum = [0.0] * len(families)
        for j, family in enumerate(FAMILIES):
            family_sum[families.index(family)] += float(contributions[i, j])
        reasons = []
        for f in sorted(range(len(families)), key=lambda f: -family_sum[f]):
            if len(reasons) == top or family_sum[f] <= 0:
                break
            best, best_support = None, 0.0
            for template in TEMPLATES:
                support = 0.0
                for d in template.drivers:
                    if d in columns:
                        support += float(contributions[i, columns[d]])
                candidate = template.family == families[f] and holds[template.code][i] and support > 0
                if candidate and (best is None or support > best_support):
                    best, best_support = template.code, support
            if best is not None:
                reasons.append((best, family_sum[f]))
        if not reasons and float(contributions[i].sum()) > 0:
            reasons.append((NO_SINGLE_DRIVER.code, float(contributions[i].sum())))
        chosen.append(reasons)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reasons_equal_the_plain_one_column_at_a_time_rule(seed):
    # Sparse contributions with exact zeros, negative zeros and repeated values, so that sums tie
    # and templates tie within a family: the vectorised sums must break every tie as the plain rule.
    rng = np.random.default_rng(seed)
    rows = 40
    contributions = rng.choice([0.0, -0.0, 0.1, -0.1, 0.25, 0.3, 1e-17], size=(rows, len(FEATURE_NAMES)))
    contributions[rng.random(contributions.shape) < 0.7] = 0.0
    frame = pd.DataFrame(
        rng.choice([0.0, 1.0, 2.0, 3.0, 0.5, np.nan], size=(rows, len(FEATURE_NAMES))),
        columns=list(FEATURE_NAMES),
    )
    for top in (1, 3):
        got = choose_reasons(contributions, FEATURE_NAMES, FAMILIES, frame, top=top)
        expected = _reasons_one_at_a_time(contributions, frame, top)
        assert [[(r.code, r.contribution) for r in row] for row in got] == expected
        # float32 contributions are summed in float64 alike.
        single = contributions.astype(np.float32)
        got32 = choose_reasons(single, FEATURE_NAMES, FAMILIES, frame, top=top)
        assert [[(r.code, r.contribution) for r in row] for row in got32] == _reasons_one_at_a_time(
            single, frame, top
        )


def test_reasons_read_from_the_model_matrix_equal_those_read_from_the_frame(model, held_out):
    # explain_reasons hands choose_reasons the matrix the contributions came from: the evidence read
    # from it must be the frame's, down to the sentences, with extra frame columns still quoted.
    frame = held_out.head(60).assign(
        migrants_now=lambda f: f["migrants_now"].astype(np.float32), not_a_model_column=1.5
    )
    contributions = shap_contributions(model, frame, contribution_tables(model)).values
    matrix = model.feature_matrix(frame)
    for top in (1, 3):
        assert choose_reasons(
            contributions, FEATURE_NAMES, FAMILIES, frame, top=top, feature_values=matrix
        ) == choose_reasons(contributions, FEATURE_NAMES, FAMILIES, frame, top=top)
    assert explain_reasons(model, frame) == choose_reasons(contributions, FEATURE_NAMES, FAMILIES, frame)
    with pytest.raises(ValueError, match="feature_values"):
        choose_reasons(contributions, FEATURE_NAMES, FAMILIES, frame, feature_values=matrix[:1])


def test_features_of_no_template_family_still_get_the_general_reason():
    # Only features outside every template's family: nothing to choose among but the general reason.
    names = ["not_a_catalogue_feature", "another_one"]
    household = pd.DataFrame({"income_line_ratio": [1.25, 2.0], "household_id": ["a", "b"]})
    contributions = np.array([[0.3, 0.1], [-0.5, 0.1]])
    chosen = choose_reasons(contributions, names, ("other", "other"), household, top=3)
    assert [[r.code for r in row] for row in chosen] == [["no_single_driver"], []]
    assert chosen[0][0].contribution == pytest.approx(0.4)


# -- explain() on real feature rows ----------------------------------------------------------------

POLICY = Policy.model_validate(
    {
        "contract_version": 1,
        "region": "test",
        "data_start": "2022-01",
        "data_end": "2024-06",
        "monitoring_line": {2022: 6300, 2023: 6900, 2024: 7200},
        "rules": RULES,
        "visit_share": 0.05,
    }
)


def months(first: str, last: str) -> list[dt.date]:
    start, end = pd.Period(first, "M"), pd.Period(last, "M")
    return [p.to_timestamp().date() for p in pd.period_range(start, end, freq="M")]


def county_with_a_returning_migrant() -> Dataset:
    """H1: the son worked away until 2023-12 and has been unemployed since; H2: steady local work."""
    households = pd.DataFrame(
        {
            "household_id": ["H1", "H2"],
            "county_code": "530102",
            "township_code": "530102001",
            "village_code": "530102001001",
            "registered_poor": [True, False],
            "escape_year": [2019, None],
            "terrain": "hill",
            "relocated": False,
            "housing_safe": True,
            "cultivated_land_mu": 3.0,
        }
    )
    members = pd.DataFrame(
        {
            "member_id": ["H1-1", "H1-2", "H2-1", "H2-2"],
            "household_id": ["H1", "H1", "H2", "H2"],
            "birth_year": [1965, 1995, 1970, 1972],
            "sex": ["m", "m", "f", "m"],
            "relation": ["head", "child", "head", "spouse"],
            "education": ["primary", "junior", "junior", "junior"],
            "labor_capacity": ["weak", "full", "full", "full"],
            "disability_grade": 0,
            "chronic_disease": False,
            "medical_insurance": True,
            "joined_month": None,
            "left_month": None,
        }
    )
    employment, income = [], []
    for m in months("2022-01", "2024-06"):
        away = m < dt.date(2024, 1, 1)
        employment += [
            ("H1-1", m, "farming"),
            ("H1-2", m, "migrant" if away else "unemployed"),
            ("H2-1", m, "local_wage"),
            ("H2-2", m, "local_wage"),
        ]
        income += [("H1", m, "agriculture", 400.0), ("H2", m, "wage_local", 5_000.0)]
        if away:
            income.append(("H1", m, "wage_migrant", 4_800.0))
    frames = {
        "households": households,
        "members": members,
        "employment": pd.DataFrame(employment, columns=["member_id", "month", "status"]),
        "income": pd.DataFrame(income, columns=["household_id", "month", "source", "amount"]),
    }
    return Dataset.from_frames(POLICY, frames)


def test_a_household_whose_migrant_work_stopped_is_told_so(model):
    features = build_features(county_with_a_returning_migrant(), dt.date(2024, 6, 1))
    assert features.set_index("household_id").loc["H1", "migrants_now"] == 0
    explained = explain(model, features).set_index("household_id")
    h1 = explained.loc["H1"]
    assert h1["reason_1_family"] == "employment"
    assert h1["reason_1_measure"] == "employment_support"
    # Whichever employment fact the model leaned on, the sentence quotes H1's own numbers:
    # 1 migrant a year ago, none now; 12 of 24 member-months worked last year, 6 of 24 this year;
    # migrant wages averaging 4,800 a month last year and 2,400 over the last 12 months.
    expected = {
        "migrant_work_down": "外出务工人数由上年同月的1人减少到0人，外出务工月均收入由4,800元降到2,400元",
        "employment_months_down": "近12个月家庭务工月数占比由上年的50%降到25%（共务工6个月）",
        "migrant_wages_down": "外出务工月均收入由上年的4,800元降到近12个月的2,400元，近3个月仅0元",
    }
    assert h1["reason_1_zh"] == expected[h1["reason_1_code"]]
    evidence = json.loads(h1["reason_1_evidence"])
    assert evidence and all(np.isfinite(v) for v in evidence.values())
    # Steady local work, no illness, no loan: nothing about work, illness or loans for H2.
    h2_codes = set(explained.loc["H2", [f"reason_{i}_code" for i in (1, 2, 3)]].dropna())
    assert not h2_codes & {
        "migrant_work_down",
        "employment_months_down",
        "serious_illness_recent",
        "medical_oop_high",
        "loan_due_soon",
    }


def test_explain_lays_out_the_output_columns_and_is_deterministic(model, held_out):
    first = explain(model, held_out, top=3)
    expected = ["household_id"] + [f"reason_{i}_{c}" for i in (1, 2, 3) for c in REASON_COLUMNS]
    assert list(first.columns) == expected
    assert first["household_id"].tolist() == held_out["household_id"].tolist()
    pd.testing.assert_frame_equal(first, explain(model, held_out.copy(), top=3))
    # Every household near the top of the list has at least one reason to show.
    risky = model.predict_proba(held_out) >= np.quantile(model.predict_proba(held_out), 0.9)
    assert first.loc[risky, "reason_1_code"].notna().all()
    # A filled slot is filled completely; an empty one is empty completely.
    for i in (1, 2, 3):
        filled = first[f"reason_{i}_code"].notna()
        for column in (
            "zh",
            "en",
            "measure",
            "measure_zh",
            "measure_en",
            "family",
            "evidence",
            "contribution",
        ):
            assert (first[f"reason_{i}_{column}"].notna() == filled).all()
        assert (first.loc[filled, f"reason_{i}_contribution"] > 0).all()
    two = first["reason_2_code"].notna()
    assert (first.loc[two, "reason_2_contribution"] <= first.loc[two, "reason_1_contribution"]).all()
    assert first.loc[two, "reason_1_code"].notna().all()


def test_explain_without_household_id_uses_the_index(model, held_out):
    rows = held_out.drop(columns="household_id").iloc[:4]
    assert explain(model, rows, top=1)["household_id"].tolist() == rows.index.tolist()


# -- a generated county ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def county(small_county):
    """A quick model trained on the generated county, and everyone's features at its last month."""
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.training_table import build_training_table, quarter_ends

    dataset = load_dataset(small_county.folder)
    months = quarter_ends(dataset.policy, 6)
    validation = months[-2:]
    train = [m for m in months if month_index(m) + 6 <= month_index(validation[0])][-4:]
    table = build_training_table(dataset, train + validation, horizon=6)
    in_validation = table["as_of"].dt.date.isin(validation).to_numpy()
    fitted = RiskModel(
        seed=5,
        learning_rate=0.1,
        max_rounds=120,
        early_stopping_rounds=20,
        num_leaves=15,
        categorical_features=list(CATEGORICAL_FEATURES),
    ).fit(
        table[~in_validation],
        table.loc[~in_validation, "label"],
        table[in_validation],
        table.loc[in_validation, "label"],
        feature_names=FEATURE_NAMES,
    )
    as_of = dataset.policy.data_end
    return dataset, fitted, build_features(dataset, as_of), as_of


def households_with(dataset: Dataset, as_of: dt.date) -> dict[str, set[str]]:
    """For each reason code, the households whose raw records show the fact it states."""
    t = month_index(as_of)

    def within(column: str, months_back: int) -> str:
        """``column`` falls in the months t - months_back .. t."""
        first, after = month_start(t - months_back).isoformat(), month_start(t + 1).isoformat()
        return f"{column} >= DATE '{first}' AND {column} < DATE '{after}'"

    def ids(query: str) -> set[str]:
        return {row[0] for row in dataset.sql(query).fetchall()}

    def event(kind: str, months_back: int = 11) -> set[str]:
        return ids(f"SELECT household_id FROM events WHERE kind = '{kind}' AND {within('date', months_back)}")

    def income(source: str) -> set[str]:
        return ids(f"SELECT household_id FROM income WHERE source = '{source}'")

    def expense(category: str) -> set[str]:
        return ids(
            f"SELECT household_id FROM expenses WHERE category = '{category}' "
            f"AND amount > reimbursed AND {within('date', 11)}"
        )

    def status(value: str, months_back: int) -> set[str]:
        return ids(
            "SELECT m.household_id FROM employment e JOIN members m USING (member_id) "
            f"WHERE e.status = '{value}' AND {within('e.month', months_back)}"
        )

    loans = ids("SELECT household_id FROM loans")
    return {
        "migrant_work_down": status("migrant", 12),
        "migrant_wages_down": income("wage_migrant"),
        "local_wages_down": income("wage_local"),
        "job_loss_recent": event("job_loss"),
        "unemployed_members": status("unemployed", 11),
        "agri_income_down": income("agriculture"),
        "agri_loss": income("agriculture"),
        "crop_or_livestock_loss": event("crop_failure") | event("livestock_loss"),
        "business_income_down": income("business"),
        "business_loss": income("business"),
        "business_failure": event("business_failure"),
        "serious_illness_recent": event("serious_illness", 24),
        "medical_oop_high": expense("medical"),
        "accident_injury_recent": event("accident_injury"),
        "chronic_illness": ids("SELECT household_id FROM members WHERE chronic_disease")
        | ids("SELECT household_id FROM events WHERE kind = 'chronic_illness'"),
        "disability": ids("SELECT household_id FROM members WHERE disability_grade > 0")
        | ids("SELECT household_id FROM events WHERE kind = 'disability_certified'"),
        "college_entry": event("college_entry"),
        "education_costs": expense("education"),
        "students": status("student", 0),
        "loan_overdue_rising": loans,
        "loan_overdue": loans,
        "loan_due_soon": loans,
        "loan_burden_high": loans,
        "new_loans": loans,
        "disaster_recent": event("natural_disaster"),
        "house_damage": event("house_damage"),
        "epidemic_lockdown": event("epidemic_lockdown"),
        "uninsured_members": ids("SELECT household_id FROM members WHERE NOT medical_insurance"),
        "previously_monitored": ids("SELECT household_id FROM monitoring"),
        "recent_escape": ids("SELECT household_id FROM households WHERE registered_poor"),
        "support_ended": ids("SELECT household_id FROM assistance WHERE end_month IS NOT NULL"),
    }


def test_reasons_state_only_facts_the_households_records_show(county):
    dataset, fitted, features, as_of = county
    explained = explain(fitted, features)
    facts = households_with(dataset, as_of)
    position = {household: i for i, household in enumerate(features["household_id"])}
    columns = {name: features[name].to_numpy(dtype=np.float64) for name in FEATURE_NAMES}
    holds = {t.code: np.asarray(t.applies(columns), dtype=bool) for t in (*TEMPLATES, NO_SINGLE_DRIVER)}
    checked, codes_seen = 0, set()
    for i in (1, 2, 3):
        chosen = explained.dropna(subset=[f"reason_{i}_code"])
        slots = chosen[["household_id", f"reason_{i}_code", f"reason_{i}_evidence"]]
        for household, code, evidence in slots.itertuples(index=False):
            row = position[household]
            assert holds[code][row], f"{household}: {code} does not hold for its features"
            for name, quoted in json.loads(evidence).items():
                assert quoted == pytest.approx(columns[name][row], abs=1e-4), (household, name)
            if code in facts:
                assert household in facts[code], f"{household} got {code} without a record of it"
                checked += 1
            codes_seen.add(code)
    # The county exercises many templates, several of them checked against the raw records.
    assert checked >= 200
    assert len(codes_seen & set(facts)) >= 8
