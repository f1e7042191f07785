"""The county generator: contract-keeping tables, determinism, scenarios, the truth file and calibration.

Small counties (a few hundred households, 18-36 months) keep this fast; the
calibration test generates the ~3,000-household default county once.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import ARROW_TYPES
from relapse_risk.features import contract
from relapse_risk.generator import codes
from relapse_risk.generator.calibration import calibration_report, rule_panel
from relapse_risk.generator.config import (
    CountyConfig,
    CropPrice,
    LineJump,
    Scenario,
    TruthOptions,
    parse_line_jump,
    parse_line_option,
    parse_month,
    parse_window,
)
from relapse_risk.generator.run import default_truth_path, generate


def small(households: int = 300, months: int = 24, seed: int = 5, **scenario: object) -> CountyConfig:
    return CountyConfig(households=households, months=months, seed=seed, scenario=Scenario(**scenario))


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 households x 30 months with a truth file (few simulations: the count is not under test here)."""
    folder = tmp_path_factory.mktemp("generated") / "county"
    generate(small(households=400, months=30), folder, truth=TruthOptions(simulations=30))
    return folder


def read(folder: Path, table: str) -> pa.Table:
    return pq.read_table(folder / f"{table}.parquet")


def policy_of(folder: Path) -> dict:
    return json.loads((folder / "policy.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- the contract


def test_the_generator_restates_the_contracts_enumerations_exactly() -> None:
    assert codes.INCOME_SOURCES == contract.INCOME_SOURCES
    assert codes.EMPLOYMENT_STATUSES == contract.EMPLOYMENT_STATUSES
    assert codes.EXPENSE_CATEGORIES == contract.EXPENSE_CATEGORIES
    assert codes.EVENT_KINDS == contract.EVENT_KINDS
    assert codes.LOAN_KINDS == contract.LOAN_KINDS
    assert codes.ASSISTANCE_MEASURES == contract.ASSISTANCE_MEASURES
    assert codes.MONITORING_CATEGORIES == contract.MONITORING_CATEGORIES
    assert codes.RISK_TYPES == contract.RISK_TYPES
    assert codes.PRIMARY_CAUSES == contract.PRIMARY_CAUSES
    assert codes.TERRAINS == contract.TERRAINS
    assert codes.SEXES == contract.SEXES
    assert codes.RELATIONS == contract.RELATIONS
    assert codes.EDUCATION_LEVELS == contract.EDUCATION_LEVELS
    assert codes.LABOR_CAPACITIES == contract.LABOR_CAPACITIES


@pytest.mark.parametrize("table", contract.TABLES, ids=lambda t: t.name)
def test_every_table_has_the_contracts_columns_types_and_values(county: Path, table: contract.Table) -> None:
    data = read(county, table.name)
    if not table.may_be_empty:
        assert data.num_rows > 0
    for column in table.columns:
        assert column.name in data.column_names, f"{table.name} lacks {column.name}"
        values = data.column(column.name)
        assert values.type == ARROW_TYPES[column.kind], f"{table.name}.{column.name} is {values.type}"
        if not column.nullable:
            assert values.null_count == 0, f"{table.name}.{column.name} has nulls"
        present = [v for v in values.to_pylist() if v is not None]
        if column.kind == "enum":
            assert set(present) <= set(column.values), (
                f"{table.name}.{column.name}: {set(present) - set(column.values)}"
            )
        if column.digits is not None:
            assert all(len(v) == column.digits and v.isdigit() for v in present)
        if present and column.minimum is not None:
            assert min(present) >= column.minimum, f"{table.name}.{column.name} below {column.minimum}"
        if present and column.maximum is not None:
            assert max(present) <= column.maximum, f"{table.name}.{column.name} above {column.maximum}"


def test_keys_are_unique_foreign_keys_resolve_and_nothing_is_after_data_end(county: Path) -> None:
    con = duckdb.connect()
    for table in contract.TABLES:
        con.execute(
            f"CREATE VIEW {table.name} AS SELECT * FROM read_parquet('{county / table.name}.parquet')"
        )
    for table in contract.TABLES:
        for key in table.unique:
            columns = ", ".join(key)
            duplicates = con.execute(
                f"SELECT count(*) FROM (SELECT {columns} FROM {table.name} GROUP BY ALL HAVING count(*) > 1)"
            ).fetchone()[0]
            assert duplicates == 0, f"{table.name} repeats {key}"
        for fk in table.foreign_keys:
            dangling = con.execute(
                f"SELECT count(*) FROM {table.name} t WHERE t.{fk.column} IS NOT NULL AND t.{fk.column} "
                f"NOT IN (SELECT {fk.target} FROM {fk.table})"
            ).fetchone()[0]
            assert dangling == 0, f"{table.name}.{fk.column} does not resolve in {fk.table}"
    end = dt.date.fromisoformat(policy_of(county)["data_end"] + "-01")
    last_day = dt.date(end.year + (end.month == 12), end.month % 12 + 1, 1)
    for table in contract.TABLES:
        for column in table.columns:
            if column.kind in ("month", "date"):
                latest = con.execute(f"SELECT max({column.name}) FROM {table.name}").fetchone()[0]
                assert latest is None or latest < last_day, f"{table.name}.{column.name} runs past data_end"
    assert con.execute("SELECT count(*) FROM expenses WHERE reimbursed > amount").fetchone()[0] == 0
    assert (
        con.execute(
            "SELECT count(*) FROM households WHERE NOT starts_with(township_code, county_code) "
            "OR NOT starts_with(village_code, township_code)"
        ).fetchone()[0]
        == 0
    )
    assert (
        con.execute("SELECT count(*) FROM monitoring WHERE eliminated_month < identified_month").fetchone()[0]
        == 0
    )
    assert con.execute("SELECT count(*) FROM assistance WHERE end_month < start_month").fetchone()[0] == 0
    negative = con.execute(
        "SELECT count(*) FROM income WHERE amount < 0 AND source NOT IN ('business', 'agriculture')"
    ).fetchone()[0]
    assert negative == 0


def test_policy_json_has_lines_for_every_year_rising_about_five_percent(county: Path) -> None:
    policy = policy_of(county)
    assert policy["data_start"] == "2021-01" and policy["data_end"] == "2023-06"
    lines = {int(y): v for y, v in policy["monitoring_line"].items()}
    assert sorted(lines) == [2021, 2022, 2023]
    assert lines[2021] == 6000
    assert all(1.03 < lines[y + 1] / lines[y] < 1.07 for y in (2021, 2022))
    assert policy["rules"] == {
        "min_reported_months": 6,
        "rigid_expense_ratio": 1.0,
        "income_drop_share": 0.5,
        "income_drop_band": 1.5,
    }
    assert policy["visit_share"] == 0.05


def test_the_folder_loads_with_zero_rejects(county: Path) -> None:
    from relapse_risk.features.dataset import load_dataset

    dataset = load_dataset(county)
    assert dataset.rejects == []
    assert dataset.row_count("households") == 400


def test_the_generators_rules_agree_with_the_projects_rules_engine(county: Path) -> None:
    from relapse_risk.features.dataset import load_dataset
    from relapse_risk.features.rules import labels_frame

    panel = rule_panel(county)
    dataset = load_dataset(county)
    as_of = parse_month("2022-12")
    frame = (
        labels_frame(dataset, dt.date(2022, 12, 1), horizon=6)
        .set_index("household_id")
        .loc[panel.household_ids]
    )
    t = as_of - panel.first_month
    assert (frame["triggered_now"].to_numpy(dtype=bool) == panel.triggered[:, t]).all()
    assert (frame["under_monitoring"].to_numpy(dtype=bool) == panel.monitored[:, t]).all()
    eligible = panel.eligible(as_of)
    assert (frame["eligible"].to_numpy(dtype=bool) == eligible).all()
    theirs = frame["label"].to_numpy(dtype="float64", na_value=np.nan)[eligible]
    assert (theirs == panel.label(as_of, 6)[eligible]).all()


def test_unreported_months_have_no_income_rows_and_reported_ones_at_least_one(county: Path) -> None:
    income = read(county, "income").to_pandas()
    per_month = income.groupby(["household_id", "month"]).size()
    assert per_month.min() >= 1
    households, months = 400, 30
    reported_share = len(per_month) / (households * months)
    assert 0.9 < reported_share < 1.0, "some reports are missing, most are not"


# ----------------------------------------------------------------------------- determinism


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_the_same_seed_writes_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    config = small(households=150, months=18, seed=9)
    generate(config, tmp_path / "a", truth=TruthOptions(simulations=5))
    generate(config, tmp_path / "b", truth=TruthOptions(simulations=5))
    generate(config.model_copy(update={"seed": 10}), tmp_path / "c")
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    assert default_truth_path(tmp_path / "a").read_bytes() == default_truth_path(tmp_path / "b").read_bytes()
    other = folder_bytes(tmp_path / "c")
    assert other["income.parquet"] != folder_bytes(tmp_path / "a")["income.parquet"]
    assert other.keys() == folder_bytes(tmp_path / "a").keys()


def test_the_truth_does_not_depend_on_how_many_workers_compute_it(tmp_path: Path) -> None:
    config = small(households=120, months=18, seed=2)
    options = TruthOptions(simulations=8, batch_replicas=200)
    generate(config, tmp_path / "one", truth=options)
    generate(config, tmp_path / "two", truth=options.model_copy(update={"workers": 2}))
    one = pq.read_table(default_truth_path(tmp_path / "one"))
    two = pq.read_table(default_truth_path(tmp_path / "two"))
    assert one.equals(two)


# ----------------------------------------------------------------------------- scenarios


def monthly(folder: Path, query: str) -> dict[str, float]:
    rows = duckdb.sql(query.format(folder=folder.as_posix())).fetchall()
    return {str(month)[:7]: value for month, value in rows}


def test_a_lockdown_keeps_migrants_home_and_cuts_their_wages_only_from_its_start(tmp_path: Path) -> None:
    quiet, locked = tmp_path / "quiet", tmp_path / "locked"
    generate(small(), quiet)
    generate(small(lockdown=parse_window("2022-04:2022-06")), locked)
    migrants = "SELECT month, count(*) FROM '{folder}/employment.parquet' WHERE status = 'migrant' GROUP BY 1"
    wages = (
        "SELECT month, sum(amount) FROM '{folder}/income.parquet' WHERE source = 'wage_migrant' GROUP BY 1"
    )
    for query in (migrants, wages):
        before, after = monthly(quiet, query), monthly(locked, query)
        for month in ("2022-04", "2022-05", "2022-06"):
            assert after[month] < 0.5 * before[month], f"{month}: {after[month]} vs {before[month]}"
        for month in ("2021-06", "2022-01", "2022-03"):
            assert after[month] == before[month], "nothing changes before the lockdown starts"
    events = duckdb.sql(
        f"SELECT count(*) FROM '{locked}/events.parquet' WHERE kind = 'epidemic_lockdown'"
    ).fetchall()[0]
    assert events[0] > 0


def test_a_lockdowns_depth_sets_the_share_of_migrant_months_it_takes(tmp_path: Path) -> None:
    migrants = "SELECT month, count(*) FROM '{folder}/employment.parquet' WHERE status = 'migrant' GROUP BY 1"
    quiet = monthly(generate(small(households=600), tmp_path / "quiet").folder, migrants)
    window = parse_window("2022-04:2022-06")
    for depth in (0.2, 0.5):
        config = small(households=600, lockdown=window, lockdown_depth=depth)
        after = monthly(generate(config, tmp_path / f"d{depth}").folder, migrants)
        cut = 1 - sum(after[m] for m in ("2022-04", "2022-05", "2022-06")) / sum(
            quiet[m] for m in ("2022-04", "2022-05", "2022-06")
        )
        assert cut == pytest.approx(depth, abs=0.06), f"depth {depth}: migrant months cut by {cut:.2f}"
        assert after["2022-03"] == quiet["2022-03"], "nothing changes before the lockdown starts"


def test_a_crop_price_collapse_cuts_harvest_sales_inside_its_window_only(tmp_path: Path) -> None:
    farm = "SELECT month, sum(amount) FROM '{folder}/income.parquet' WHERE source = 'agriculture' GROUP BY 1"
    quiet = monthly(generate(small(), tmp_path / "quiet").folder, farm)
    collapse = CropPrice(window=parse_window("2022-06:2022-12"), factor=0.5)
    cheap = monthly(generate(small(crop_price=collapse), tmp_path / "cheap").folder, farm)
    before = [month for month in quiet if month < "2022-06"]
    assert before and all(cheap[month] == quiet[month] for month in before), "nothing changes before"
    inside = sum(cheap[f"2022-{m:02d}"] for m in range(6, 13))
    usual = sum(quiet[f"2022-{m:02d}"] for m in range(6, 13))
    # harvest sales halve; livestock sales in the same months are not touched
    assert 0.45 * usual < inside < 0.85 * usual
    with pytest.raises(ValueError):
        CropPrice(window=collapse.window, factor=-0.1)


def test_a_line_change_appears_in_policy_json(tmp_path: Path) -> None:
    generate(small(months=36, line_changes={2023: 8000.0}), tmp_path / "set")
    generate(small(months=36, line_jump=LineJump(year=2022, share=0.2)), tmp_path / "jump")
    assert policy_of(tmp_path / "set")["monitoring_line"]["2023"] == 8000.0
    jumped = policy_of(tmp_path / "jump")["monitoring_line"]
    assert jumped["2021"] == 6000.0
    assert jumped["2022"] == pytest.approx(6300 * 1.2, abs=10)


def test_a_reporting_outage_removes_the_income_rows_of_many_households(tmp_path: Path) -> None:
    # whole villages go dark, so the county needs several villages
    generate(
        small(households=2000, months=18, outage=parse_window("2022-03:2022-05"), outage_share=0.5),
        tmp_path / "dark",
    )
    query = "SELECT month, count(DISTINCT household_id) FROM '{folder}/income.parquet' GROUP BY 1"
    reporting = monthly(tmp_path / "dark", query)
    for month in ("2022-03", "2022-04", "2022-05"):
        assert reporting[month] < 0.8 * 2000
    for month in ("2022-01", "2022-06"):
        assert reporting[month] > 0.9 * 2000


def test_a_disaster_year_brings_more_village_disasters(tmp_path: Path) -> None:
    generate(small(households=2000, months=36, disaster_year=2022), tmp_path / "flood")
    per_year = dict(
        duckdb.sql(
            f"SELECT year(date), count(*) FROM '{tmp_path / 'flood'}/events.parquet' "
            "WHERE kind = 'natural_disaster' GROUP BY 1"
        ).fetchall()
    )
    assert per_year.get(2022, 0) > 2 * max(per_year.get(2021, 0), per_year.get(2023, 0), 1)


def test_a_mountain_county_has_other_codes_and_mostly_mountain_villages(tmp_path: Path) -> None:
    generate(small(households=3000, months=6, profile="mountain"), tmp_path / "mountain")
    households = read(tmp_path / "mountain", "households").to_pandas()
    assert set(households["county_code"]) == {"522327"}
    assert (households["terrain"] == "mountain").mean() > 0.4


def test_bad_scenario_options_are_refused_with_the_offending_text() -> None:
    with pytest.raises(ValueError, match="2022-13"):
        parse_window("2022-13:2022-14")
    with pytest.raises(ValueError, match="ends"):
        parse_window("2022-06:2022-01")
    with pytest.raises(ValueError, match="YEAR=YUAN"):
        parse_line_option("2023:8000")
    with pytest.raises(ValueError, match="YEAR:SHARE"):
        parse_line_jump("2023=0.2")
    with pytest.raises(ValueError, match="unknown county profile"):
        Scenario(profile="desert")
    with pytest.raises(ValueError, match="as-of month 2023-01"):
        TruthOptions(as_of=(parse_month("2023-01"),)).months(small(months=24))
    with pytest.raises(ValueError, match="no quarter-end as-of month fits"):
        TruthOptions().months(small(months=8))


# ----------------------------------------------------------------------------- truth


def test_truth_is_beside_the_folder_with_p_true_for_every_household_and_as_of_month(county: Path) -> None:
    truth_path = default_truth_path(county)
    assert truth_path == county.parent / "county.truth.parquet"
    assert truth_path.is_file() and not any(p.name.endswith("truth.parquet") for p in county.iterdir())
    truth = pq.read_table(truth_path)
    assert truth.schema.field("as_of").type == pa.date32()
    frame = truth.to_pandas()
    assert set(frame["as_of"].astype(str)) == {"2022-03-01", "2022-06-01", "2022-09-01", "2022-12-01"}
    households = set(read(county, "households").column("household_id").to_pylist())
    for _, group in frame.groupby("as_of"):
        assert set(group["household_id"]) == households and len(group) == len(households)
    assert frame["p_true"].between(0, 1).all()
    assert (frame["n_simulations"] == 30).all()


def test_the_truth_file_may_not_go_inside_the_dataset_folder(tmp_path: Path) -> None:
    folder = tmp_path / "county"
    with pytest.raises(ValueError, match="beside"):
        generate(
            small(households=50, months=12),
            folder,
            TruthOptions(simulations=2),
            truth_path=folder / "t.parquet",
        )


def test_the_oracle_is_informative_households_with_high_p_true_trigger_more_often(county: Path) -> None:
    panel = rule_panel(county)
    truth = pq.read_table(default_truth_path(county)).to_pandas()
    high_rates, low_rates = [], []
    for month in ("2022-03", "2022-06", "2022-09", "2022-12"):
        as_of = parse_month(month)
        at = (
            truth[truth["as_of"].astype(str).str[:7] == month]
            .set_index("household_id")
            .loc[panel.household_ids]
        )
        eligible = panel.eligible(as_of)
        p = at["p_true"].to_numpy()[eligible]
        label = panel.label(as_of, 6)[eligible]
        high = p >= np.quantile(p, 0.9)
        high_rates.append(label[high].mean())
        low_rates.append(label[~high].mean())
    assert np.mean(high_rates) > 4 * np.mean(low_rates)


# ----------------------------------------------------------------------------- calibration and CLI


@pytest.fixture(scope="module")
def default_county(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default county at about 3,000 households, 48 months."""
    folder = tmp_path_factory.mktemp("default") / "county"
    generate(CountyConfig(households=3000, seed=1), folder)
    return folder


def test_the_default_county_matches_the_published_figures(default_county: Path) -> None:
    figures = calibration_report(default_county)
    names = [f.name for f in figures]
    assert any("under monitoring" in n for n in names) and any("illness" in n for n in names)
    assert sum("fires within 6 months" in n for n in names) == 4
    off = [f"{f.name}: {f.value:.3f} not in [{f.low}, {f.high}]" for f in figures if f.within is False]
    assert off == []


PRECURSORS = """
WITH households AS (SELECT household_id FROM '{f}/households.parquet'),
medical AS (
    SELECT household_id, sum(amount - reimbursed) AS out_of_pocket FROM '{f}/expenses.parquet'
    WHERE category = 'medical' AND date BETWEEN DATE '{recent}' AND last_day(DATE '{t}') GROUP BY 1),
work AS (
    SELECT substr(member_id, 1, 8) AS household_id,
           count(*) FILTER (WHERE month BETWEEN DATE '{recent}' AND DATE '{t}') AS recent,
           count(*) FILTER (WHERE month BETWEEN DATE '{year_ago}' AND DATE '{year_ago_end}') AS year_ago
    FROM '{f}/employment.parquet'
    WHERE status IN ('migrant', 'local_wage', 'public_welfare_post', 'self_employed') GROUP BY 1),
overdue AS (
    SELECT household_id, max(overdue_days) AS days FROM '{f}/loan_status.parquet'
    JOIN '{f}/loans.parquet' USING (loan_id) WHERE month = DATE '{t}' GROUP BY 1)
SELECT coalesce(out_of_pocket, 0), coalesce(recent, 0) - coalesce(year_ago, 0), coalesce(days, 0) > 0
FROM households LEFT JOIN medical USING (household_id) LEFT JOIN work USING (household_id)
LEFT JOIN overdue USING (household_id) ORDER BY households.household_id
"""


def test_precursors_show_in_the_tables_before_the_rule_fires(default_county: Path) -> None:
    """Households whose rule fires within six months already looked different at the as-of month:
    more spent on medical care, fewer months in paid work than a year before, overdue loans."""
    from relapse_risk.generator.calibration import quarter_ends
    from relapse_risk.generator.config import month_date

    panel = rule_panel(default_county)
    end = parse_month(policy_of(default_county)["data_end"])
    positives, negatives = [], []
    for t in quarter_ends(panel.first_month, end, 6):
        query = PRECURSORS.format(
            f=default_county.as_posix(),
            t=month_date(t),
            recent=month_date(t - 5),
            year_ago=month_date(t - 17),
            year_ago_end=month_date(t - 12),
        )
        values = np.column_stack(list(duckdb.sql(query).fetchnumpy().values())).astype(float)
        eligible, label = panel.eligible(t), panel.label(t, 6)
        positives.append(values[eligible & label])
        negatives.append(values[eligible & ~label])
    pos, neg = np.concatenate(positives), np.concatenate(negatives)
    assert len(pos) > 100
    assert pos[:, 0].mean() > 1.5 * neg[:, 0].mean(), "medical spending rises before"
    assert pos[:, 1].mean() < neg[:, 1].mean() - 0.5, "months in paid work fall before"
    assert pos[:, 2].mean() > 1.3 * neg[:, 2].mean(), "loans fall overdue before"


FALLS_AND_WHAT_CAME_BEFORE = """
WITH falls AS (
    SELECT member_id, kind, date_trunc('month', date) AS month FROM '{f}/events.parquet'
    WHERE kind IN ('serious_illness', 'job_loss') AND date >= DATE '{since}'),
bills AS (
    SELECT member_id, date_trunc('month', date) AS month FROM '{f}/expenses.parquet'
    WHERE category = 'medical' GROUP BY ALL),
diagnoses AS (
    SELECT member_id, date_trunc('month', date) AS month, max(severity) AS severity
    FROM '{f}/events.parquet' WHERE kind = 'chronic_illness' GROUP BY ALL),
idle AS (SELECT member_id, month FROM '{f}/employment.parquet' WHERE status = 'unemployed'),
before AS (
    SELECT f.member_id, f.kind, f.month,
           (SELECT count(*) FROM bills b WHERE b.member_id = f.member_id
              AND b.month BETWEEN f.month - INTERVAL 3 MONTH AND f.month - INTERVAL 1 MONTH) AS bill_months,
           (SELECT count(*) FROM diagnoses d WHERE d.member_id = f.member_id AND d.severity >= 2
              AND d.month BETWEEN f.month - INTERVAL 6 MONTH AND f.month - INTERVAL 1 MONTH) AS grave,
           (SELECT count(*) FROM idle i WHERE i.member_id = f.member_id
              AND i.month BETWEEN f.month - INTERVAL 6 MONTH AND f.month - INTERVAL 1 MONTH) AS idle_months
    FROM falls f)
SELECT kind, count(*) AS n,
       avg(CASE WHEN bill_months >= 2 OR grave > 0 THEN 1 ELSE 0 END) AS saw_doctors,
       avg(CASE WHEN idle_months > 0 THEN 1 ELSE 0 END) AS had_gaps
FROM before GROUP BY kind
"""


def test_serious_illness_and_job_loss_mostly_follow_a_decline_the_tables_show(default_county: Path) -> None:
    """Most falls build up where a cadre can see them: a member who falls seriously ill mostly saw doctors
    in the months before or had a grave disease diagnosed; a worker who loses a job mostly had months
    without shifts before. Sudden falls exist but are the minority."""
    query = FALLS_AND_WHAT_CAME_BEFORE.format(f=default_county.as_posix(), since="2021-07-01")
    rows = {kind: (n, doctors, gaps) for kind, n, doctors, gaps in duckdb.sql(query).fetchall()}
    n_ill, saw_doctors, _ = rows["serious_illness"]
    n_lost, _, had_gaps = rows["job_loss"]
    assert n_ill > 100 and n_lost > 100
    assert saw_doctors >= 0.7, f"only {saw_doctors:.2f} of serious illnesses had a visible decline before"
    assert had_gaps >= 0.6, f"only {had_gaps:.2f} of job losses had months without work before"


def test_a_grave_diagnosis_is_followed_by_serious_illness_far_more_often_than_a_mild_one(
    default_county: Path,
) -> None:
    query = f"""
    WITH diagnoses AS (
        SELECT member_id, date_trunc('month', date) AS month, severity
        FROM '{default_county.as_posix()}/events.parquet'
        WHERE kind = 'chronic_illness' AND date < DATE '2024-07-01'),
    serious AS (
        SELECT member_id, date_trunc('month', date) AS month
        FROM '{default_county.as_posix()}/events.parquet' WHERE kind = 'serious_illness')
    SELECT severity >= 2 AS grave, count(*) AS n,
           avg(CASE WHEN EXISTS (SELECT 1 FROM serious s WHERE s.member_id = d.member_id
               AND s.month BETWEEN d.month AND d.month + INTERVAL 6 MONTH) THEN 1 ELSE 0 END) AS followed
    FROM diagnoses d GROUP BY ALL
    """
    followed = {grave: (n, share) for grave, n, share in duckdb.sql(query).fetchall()}
    n_grave, grave = followed[True]
    n_mild, mild = followed[False]
    assert n_grave > 50 and n_mild > 50
    assert grave > 0.4 and grave > 4 * mild


def test_the_oracle_does_not_foresee_a_lockdown_that_has_not_begun() -> None:
    from relapse_risk.generator.oracle import foreseeable

    config = small(lockdown=parse_window("2022-04:2022-06"), outage=parse_window("2022-08:2022-09"))
    before = foreseeable(config, parse_month("2022-03"))
    assert before.scenario.lockdown is None and before.scenario.outage is None
    during = foreseeable(config, parse_month("2022-05"))
    assert during.scenario.lockdown == config.scenario.lockdown and during.scenario.outage is None
    assert foreseeable(config, parse_month("2022-08")) == config
    assert before.dynamics == config.dynamics and before.seed == config.seed


def test_relapse_generate_writes_the_folder_and_prints_the_comparison(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from relapse_risk.cli import app

    out = tmp_path / "cli-county"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "generate",
            "--households",
            "120",
            "--months",
            "20",
            "--seed",
            "3",
            "--out",
            str(out),
            "--simulations",
            "4",
            "--as-of",
            "2022-01",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "policy.json").is_file() and default_truth_path(out).is_file()
    assert "4 re-simulations" in result.output and "calibration.md" in result.output
    again = runner.invoke(app, ["generate", "--households", "120", "--out", str(out), "--no-truth"])
    assert again.exit_code == 2 and "not empty" in again.output
    bad = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--lockdown", "2022-13:2022-14"])
    assert bad.exit_code == 2


def test_relapse_generate_takes_a_lockdowns_depth_and_a_crop_price_collapse(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from relapse_risk.cli import app

    runner = CliRunner()
    shocked = runner.invoke(
        app,
        ["generate", "--households", "120", "--months", "20", "--out", str(tmp_path / "c"), "--no-truth"]
        + ["--no-report", "--lockdown", "2022-04:2022-06", "--lockdown-depth", "0.2"]
        + ["--crop-price", "2022-06:2022-08=0.5"],
        env={"COLUMNS": "200"},  # the heading on one line
    )
    bad = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--crop-price", "2022-06"])

    assert shocked.exit_code == 0, shocked.output
    assert (
        "keeping 20% of migrants home" in shocked.output
        and "crop prices x0.5 in 2022-06:2022-08" in shocked.output
    )
    assert bad.exit_code == 2 and "YYYY-MM:YYYY-MM=FACTOR" in bad.output
