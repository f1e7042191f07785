"""The case-management API: keys, request shapes, per-household contract errors, and a real server.

The first part specifies the pieces on their own: key handling, the request
models, which rows belong to a household, the village figures of a batch run,
the request log and the served OpenAPI document. The second part scores
hand-made households in-process with a small model. The last part (marked
``slow``) trains a champion on a small generated county, registers it in a
throw-away MLflow registry, runs the batch job, starts ``relapse serve`` on a
free loopback port and talks to it over HTTP only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pytest
from builders import RULES
from conftest import GeneratedCounty
from hypothesis import given
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from pydantic import ValidationError
from relapse_risk.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from relapse_risk.features.contract import format_month, parse_month
from relapse_risk.features.errors import ExitCode
from relapse_risk.features.policy import Policy
from relapse_risk.models.model import RiskModel
from relapse_risk.serving.api.auth import (
    ApiKeyConfigError,
    KeyChecker,
    bearer_token,
    is_open_path,
    load_api_keys,
)
from relapse_risk.serving.api.folder_payloads import score_entries
from relapse_risk.serving.api.household_scorer import ApiStartupError
from relapse_risk.serving.api.http_middleware import api_openapi_document
from relapse_risk.serving.api.launch import ServeOptions, serve_command, server_environment
from relapse_risk.serving.api.request_log import (
    LOGGED_ANSWER_FIELDS,
    RequestLog,
    read_request_log,
    request_log_records,
)
from relapse_risk.serving.api.schemas import (
    HouseholdInput,
    HouseholdTables,
    ScoreRequest,
    VisitListRequest,
    reasons_of,
)
from relapse_risk.serving.api.score_rounds import (
    ScoredBatch,
    _text_column,
    cell_text,
    loading_rounds,
    ownership_problems,
    prepare_households,
    score_prepared,
)
from relapse_risk.serving.api.scored_runs import RunCatalog, household_row, visit_list
from relapse_risk.serving.api.scoring_process import ScoringProcess, ScoringUnavailable
from relapse_risk.serving.api.server_guard import SERVER_PID_VARIABLE, stop_server_after_failed_start
from relapse_risk.serving.api.settings import DEFAULT_MAX_BODY_BYTES, ApiSettings, ApiSettingsError
from relapse_risk.serving.batch.job import score_folder
from relapse_risk.serving.registered_model import resolve_model
from relapse_risk.serving.scoring import ResolvedModel
from relapse_risk.serving.village_context import (
    VillageFigures,
    apply_village_context,
    read_village_context,
    village_context,
    village_feature_names,
    write_village_context,
)
from relapse_risk.training.config import BoosterParameters, TrainingSettings
from relapse_risk.training.train import run_training

API_PATHS = ("/score", "/visit_list", "/household", "/model_info")
RELAPSE = Path(sys.executable).with_name("relapse")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
KEY = "k" * 24
OTHER_KEY = "z" * 24

POLICY = Policy.model_validate(
    {
        "contract_version": 1,
        "region": "test",
        "data_start": "2022-01",
        "data_end": "2024-12",
        "monitoring_line": {"2022": 6300, "2023": 6900, "2024": 7200},
        "rules": RULES,
        "visit_share": 0.05,
    }
)


def months(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first + "-01"), dt.date.fromisoformat(last + "-01")
    out = []
    while start <= end:
        out.append(start.strftime("%Y-%m"))
        start = (start + dt.timedelta(days=32)).replace(day=1)
    return out


def household_tables(
    household_id: str, *, wage: float = 3000.0, village: str = "530101001001"
) -> dict[str, Any]:
    """A plausible household of three with 18 months of records up to 2024-06, as JSON rows."""
    head, spouse, child = (f"{household_id}-m{i}" for i in (1, 2, 3))
    recorded = months("2023-01", "2024-06")
    member = {"disability_grade": 0, "chronic_disease": False, "medical_insurance": True}
    return {
        "households": [
            {
                "household_id": household_id,
                "county_code": village[:6],
                "township_code": village[:9],
                "village_code": village,
                "registered_poor": True,
                "escape_year": 2020,
                "terrain": "hill",
                "relocated": False,
                "housing_safe": True,
                "cultivated_land_mu": 3.5,
            }
        ],
        "members": [
            {
                "member_id": head,
                "household_id": household_id,
                "birth_year": 1975,
                "sex": "m",
                "relation": "head",
                "education": "junior",
                "labor_capacity": "full",
                **member,
            },
            {
                "member_id": spouse,
                "household_id": household_id,
                "birth_year": 1978,
                "sex": "f",
                "relation": "spouse",
                "education": "primary",
                "labor_capacity": "full",
                **member,
            },
            {
                "member_id": child,
                "household_id": household_id,
                "birth_year": 2010,
                "sex": "f",
                "relation": "child",
                "education": "junior",
                "labor_capacity": "none",
                **member,
            },
        ],
        "income": [
            {"household_id": household_id, "month": m, "source": "wage_migrant", "amount": wage}
            for m in recorded
        ]
        + [
            {"household_id": household_id, "month": m, "source": "agriculture", "amount": -50.5}
            for m in recorded[::3]
        ],
        "employment": [{"member_id": head, "month": m, "status": "migrant"} for m in recorded]
        + [{"member_id": child, "month": m, "status": "student"} for m in recorded],
        "expenses": [
            {
                "household_id": household_id,
                "member_id": spouse,
                "date": "2024-03-11",
                "category": "medical",
                "amount": 12000.0,
                "reimbursed": 6000.0,
            }
        ],
        "loans": [
            {
                "loan_id": f"{household_id}-l1",
                "household_id": household_id,
                "kind": "poverty_microcredit",
                "issued_month": "2023-05",
                "principal": 30000,
                "term_months": 36,
                "annual_rate": 0.0435,
            }
        ],
        "loan_status": [
            {"loan_id": f"{household_id}-l1", "month": m, "balance": 25000.0, "overdue_days": 0}
            for m in recorded[5:]
        ],
    }


def entry(tables: dict[str, Any], as_of: str = "2024-06") -> dict[str, Any]:
    return {"as_of": as_of, "tables": tables}


# -- keys ----------------------------------------------------------------------------------------


def test_keys_come_from_the_variable_and_the_file_together(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# staff laptops\n{OTHER_KEY}\n\n  {KEY}  \n", encoding="utf-8")

    keys = load_api_keys({"RELAPSE_API_KEYS": f" {KEY} ,", "RELAPSE_API_KEYS_FILE": str(key_file)})

    assert keys == (KEY, OTHER_KEY)


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({}, "no API keys configured"),
        ({"RELAPSE_API_KEYS": " , "}, "no API keys configured"),
        ({"RELAPSE_API_KEYS": "short"}, "shorter than 16"),
        ({"RELAPSE_API_KEYS_FILE": "/nonexistent/keys"}, "cannot read the key file"),
    ],
)
def test_the_server_refuses_to_start_without_usable_keys(environment: dict[str, str], message: str) -> None:
    with pytest.raises(ApiKeyConfigError, match=message) as raised:
        load_api_keys(environment)
    assert "short" not in str(raised.value).replace("shorter", "")  # a key is never echoed


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer   abc  ", b"abc"),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (None, None),
    ],
)
def test_only_a_bearer_header_carries_a_token(header: bytes | None, token: bytes | None) -> None:
    assert bearer_token(header) == token


def test_the_key_checker_accepts_exactly_the_configured_keys() -> None:
    checker = KeyChecker([KEY, OTHER_KEY])

    assert checker.accepts(KEY.encode()) and checker.accepts(OTHER_KEY.encode())
    assert not checker.accepts(b"x" * 24)
    assert not checker.accepts(KEY.encode()[:-1])
    assert not checker.accepts(None)


def test_only_probes_and_documents_are_open() -> None:
    assert all(is_open_path(p) for p in ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json"))
    assert not any(
        is_open_path(p) for p in ("/score", "/visit_list", "/household", "/model_info", "/readyz/x")
    )


# -- settings ------------------------------------------------------------------------------------


def test_settings_read_the_environment_with_documented_defaults(tmp_path: Path) -> None:
    settings = ApiSettings.from_environment({"RELAPSE_POLICY_FILE": str(tmp_path / "policy.json")})

    assert settings.model_uri == "models:/relapse-risk@champion"
    assert settings.runs_dir is None
    assert settings.request_log == Path("request-log/requests.jsonl")
    with pytest.raises(ApiSettingsError, match="RELAPSE_POLICY_FILE"):
        ApiSettings.from_environment({})


def test_serve_options_become_the_servers_environment_without_keys_on_the_command_line(
    tmp_path: Path,
) -> None:
    options = ServeOptions(policy_file=tmp_path / "p.json", workers=2, model_uri="models:/relapse-risk/3")

    environment = server_environment({"RELAPSE_API_KEYS": KEY, "BENTOML_CONFIG_OPTIONS": "a=1"}, options)

    assert environment["RELAPSE_POLICY_FILE"] == str((tmp_path / "p.json").resolve())
    assert environment["RELAPSE_MODEL_URI"] == "models:/relapse-risk/3"
    assert environment["BENTOML_CONFIG_OPTIONS"] == (
        "a=1 services.relapse_risk_api.workers=2 services.relapse_risk_api.tracing.excluded_urls=."
    )
    assert environment["RELAPSE_API_KEYS"] == KEY
    assert environment["OTEL_SDK_DISABLED"] == "true"


_TRACED_URLS_PROBE = """
from bentoml._internal.configuration.containers import BentoMLContainer
from relapse_risk.serving.api.service import RelapseRiskApi
RelapseRiskApi.inject_config()  # what each worker does before it builds its app
print(BentoMLContainer.tracing_excluded_urls.get().url_disabled("http://127.0.0.1:3000/score"))
"""


@pytest.mark.slow  # starts a server or a process that imports BentoML
@pytest.mark.parametrize("sdk_disabled", [None, "false"])
def test_with_tracing_off_the_server_traces_no_url(sdk_disabled: str | None) -> None:
    base = {} if sdk_disabled is None else {"OTEL_SDK_DISABLED": sdk_disabled}
    options = server_environment(base, ServeOptions()).get("BENTOML_CONFIG_OPTIONS", "")
    # BentoML's configuration is process-wide: read it in a process of its own.
    probe = subprocess.run(
        [sys.executable, "-c", _TRACED_URLS_PROBE],
        env={**os.environ, "BENTOML_CONFIG_OPTIONS": options},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip().splitlines()[-1] == ("True" if sdk_disabled is None else "False")


def test_tracing_is_left_to_an_operator_who_turns_the_sdk_on() -> None:
    environment = server_environment(
        {"OTEL_SDK_DISABLED": "false", "BENTOML_CONFIG_OPTIONS": "tracing.sample_rate=1.0"}, ServeOptions()
    )

    assert environment["OTEL_SDK_DISABLED"] == "false"
    assert environment["BENTOML_CONFIG_OPTIONS"] == "tracing.sample_rate=1.0"


# -- request shapes ------------------------------------------------------------------------------


def test_a_request_names_each_bad_field_and_never_echoes_household_data() -> None:
    secret = "unique-marker-4711"
    body = {
        "households": [{"as_of": "2024-13", "tables": {"households": [{"household_id": secret}], "x": []}}]
    }

    with pytest.raises(ValidationError) as raised:
        ScoreRequest.model_validate(body)

    locations = {tuple(e["loc"]) for e in raised.value.errors()}
    assert ("households", 0, "as_of") in locations
    assert ("households", 0, "tables", "x") in locations
    assert secret not in str(raised.value)


def test_cells_keep_the_json_type_they_arrived_as_and_nothing_else_is_a_cell() -> None:
    cells = (
        b'{"a": "1", "b": 1, "c": 1.0, "d": true, "e": null, "f": -0.0, "g": 123456789012345678901234567890}'
    )
    body = b'{"households": [{"household_id": "h1"}], "income": [' + cells + b"]}"
    [row] = HouseholdTables.model_validate_json(body).income
    assert [(k, type(v).__name__, repr(v)) for k, v in row.items()] == [
        ("a", "str", "'1'"),
        ("b", "int", "1"),
        ("c", "float", "1.0"),
        ("d", "bool", "True"),
        ("e", "NoneType", "None"),
        ("f", "float", "-0.0"),
        ("g", "int", "123456789012345678901234567890"),
    ]
    for nested in (b"[1]", b'{"x": 1}'):
        with pytest.raises(ValidationError):
            HouseholdTables.model_validate_json(b'{"households": [{"household_id": ' + nested + b"}]}")


def test_months_are_canonical_and_one_area_is_required() -> None:
    assert HouseholdInput.model_validate(entry(household_tables("h1"), "2024-06-01")).as_of == "2024-06"
    with pytest.raises(ValidationError, match="as_of"):
        HouseholdInput.model_validate(entry(household_tables("h1"), "202٤-06"))  # an Arabic-Indic four
    with pytest.raises(ValidationError, match="exactly one of county_code and township_code"):
        VisitListRequest(as_of="2024-06", capacity=5, county_code="530101", township_code="530101001")
    with pytest.raises(ValidationError, match="exactly one"):
        VisitListRequest(as_of="2024-06", capacity=5)


@given(st.from_regex(r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?", fullmatch=True))
def test_an_as_of_month_is_read_as_the_loader_reads_it(text: str) -> None:
    try:
        expected: str | None = format_month(parse_month(text))
    except ValueError:
        expected = None  # a day the calendar lacks, such as 2023-02-29
    try:
        as_of: str | None = HouseholdInput.model_validate(entry(household_tables("h1"), text)).as_of
    except ValidationError:
        as_of = None
    assert as_of == expected


def test_json_values_become_the_text_a_csv_export_would_hold() -> None:
    assert [cell_text(v) for v in (None, True, False, 3, 2.5, 1e20, "0012")] == [
        None,
        "true",
        "false",
        "3",
        "2.5",
        "1e+20",
        "0012",
    ]


def test_a_round_column_holds_each_cell_as_its_csv_text_whatever_the_mix_of_json_types() -> None:
    # Columns of strings take pyarrow's checked copy; any other JSON scalar among them, first or
    # later, sends the column through cell_text.
    columns = [
        ["a", None, "b"],
        [None, "a"],
        ["a", 1],
        ["a", None, True],
        ["a", 2.5, float("inf")],
        [1, 2],
        [2.5, None],
        [True, "x"],
        [None, None],
        [],
    ]
    for values in columns:
        assert _text_column(values).to_pylist() == [cell_text(v) for v in values], values
        assert _text_column(values).type == pa.string()


def test_rows_naming_another_household_member_or_loan_are_problems_of_this_entry() -> None:
    tables = household_tables("h1")
    tables["income"][4]["household_id"] = "h2"
    tables["employment"][0]["member_id"] = "h2-m1"
    tables["loan_status"][1]["loan_id"] = "h2-l1"
    item = HouseholdInput.model_validate(entry(tables))

    problems = ownership_problems(item, "h1")

    assert [(p.table, p.row, p.column, p.rule) for p in problems] == [
        ("income", 5, "household_id", "other_household"),
        ("employment", 1, "member_id", "foreign_key"),
        ("loan_status", 2, "loan_id", "foreign_key"),
    ]


def test_households_sharing_an_id_are_loaded_in_separate_rounds() -> None:
    items = [HouseholdInput.model_validate(entry(household_tables(h))) for h in ("h1", "h2", "h1", "h3")]
    shared_member = household_tables("h4")
    shared_member["members"][0]["member_id"] = "h2-m1"
    items.append(HouseholdInput.model_validate(entry(shared_member)))

    assert loading_rounds(items, range(len(items))) == [[0, 1, 3], [2, 4]]


# -- village figures of a batch run --------------------------------------------------------------


def _feature_frame(household_ids: list[str], village_share: list[float]) -> pd.DataFrame:
    ones = np.ones((len(household_ids), len(FEATURE_NAMES)), dtype=np.float32)
    values = pd.DataFrame(ones, columns=list(FEATURE_NAMES))
    frame = pd.concat([pd.DataFrame({"household_id": household_ids}), values], axis=1)
    frame["village_households"] = np.float32(len(household_ids))
    frame["village_share_triggered"] = np.asarray(village_share, dtype=np.float32)
    return frame


def test_village_context_round_trips_and_replaces_only_village_figures(tmp_path: Path) -> None:
    county = _feature_frame(["a", "b", "c"], [0.25, 0.25, 0.5])
    villages = pd.DataFrame({"household_id": ["a", "b", "c"], "village_code": ["v1", "v1", "v2"]})
    context = village_context(county, villages, "2024-06")
    write_village_context(context, tmp_path / "village_context.parquet")
    stored = read_village_context(tmp_path / "village_context.parquet")
    assert stored is not None and stored["village_code"].tolist() == ["v1", "v2"]

    alone = _feature_frame(["b", "new"], [0.0, 0.0])
    alone["income_per_capita_12m"] = np.float32(7.0)
    mine = pd.DataFrame({"household_id": ["b", "new"], "village_code": ["v1", "v9"]})
    patched, matched = apply_village_context(alone, mine, VillageFigures.of(stored))

    assert matched.tolist() == [True, False]
    assert patched["village_households"].tolist() == [3.0, 2.0]
    assert patched["village_share_triggered"].tolist() == [0.25, 0.0]
    assert patched["income_per_capita_12m"].tolist() == [7.0, 7.0]
    assert patched["village_share_triggered"].dtype == np.float32
    assert "village_households" in village_feature_names(FEATURE_NAMES)


def test_village_context_is_applied_alike_to_one_dtype_and_to_mixed_dtypes() -> None:
    stored = village_context(
        _feature_frame(["a", "b", "c"], [0.25, 0.25, 0.5]),
        pd.DataFrame({"household_id": ["a", "b", "c"], "village_code": ["v1", "v1", "v2"]}),
        "2024-06",
    )
    # "b" is listed twice: its first village counts. "x" has no village row at all.
    mine = pd.DataFrame({"household_id": ["b", "b", "new", "c"], "village_code": ["v2", "v1", "v9", "v2"]})
    alone = _feature_frame(["b", "new", "x", "c"], [0.0, 0.0, 0.0, 0.0])
    mixed = alone.assign(village_households=alone["village_households"].astype(np.float64))
    one_dtype, matched = apply_village_context(alone, mine, VillageFigures.of(stored))
    by_columns, matched_too = apply_village_context(mixed, mine, VillageFigures.of(stored))

    assert matched.tolist() == matched_too.tolist() == [True, False, False, True]
    assert one_dtype["village_share_triggered"].tolist() == [0.5, 0.0, 0.0, 0.5]
    assert one_dtype["village_households"].tolist() == [3.0, 4.0, 4.0, 3.0]
    pd.testing.assert_frame_equal(one_dtype, by_columns.astype({"village_households": np.float32}))
    assert list(one_dtype.columns) == list(alone.columns) and (one_dtype.dtypes.iloc[1:] == np.float32).all()
    assert by_columns["village_households"].dtype == np.float64
    # The input frames are left as they were.
    assert alone["village_share_triggered"].tolist() == [0.0] * 4


# -- batch runs ----------------------------------------------------------------------------------


def _write_run(folder: Path, as_of: str, rows: list[tuple[str, str, int]]) -> None:
    """A minimal scores table: (household_id, status, rank in its township) per row."""
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "household_id": [r[0] for r in rows],
            "county_code": "530101",
            "township_code": "530101001",
            "village_code": "530101001001",
            "as_of": as_of,
            "status": [r[1] for r in rows],
            "risk_score": [0.5 / r[2] if r[2] else None for r in rows],
            "rank_county": [r[2] or None for r in rows],
            "rank_township": [r[2] or None for r in rows],
            "reason_1_code": ["income_down"] * len(rows),
            "model_name": "relapse-risk",
            "model_version": "3",
        }
    ).to_parquet(folder / "scores.parquet", index=False)


def test_runs_are_read_latest_month_first_and_never_from_a_later_month(tmp_path: Path) -> None:
    _write_run(tmp_path / "march", "2024-03", [("a", "scored", 1), ("b", "scored", 2)])
    _write_run(tmp_path / "june", "2024-06", [("b", "scored", 2), ("c", "scored", 1), ("d", "rejected", 0)])
    _write_run(tmp_path / ".june.staging-x", "2024-09", [("a", "scored", 1)])
    catalog = RunCatalog(tmp_path)

    assert [run.as_of for run in catalog.runs()] == ["2024-06", "2024-03"]
    assert catalog.latest().folder.name == "june" and catalog.latest("2024-03").folder.name == "march"
    assert catalog.latest("2024-09") is None
    assert [run.as_of for run in catalog.latest_up_to("2024-05")] == ["2024-03"]
    rows, scored = visit_list(catalog.latest(), "township", "530101001", capacity=5)
    assert rows["household_id"].tolist() == ["c", "b"] and scored == 2
    found = household_row(catalog.runs(), "a")
    assert found is not None and found[0].as_of == "2024-03"
    assert [r.model_dump() for r in reasons_of(found[1])] == [
        {"code": "income_down", "zh": None, "en": None, "measure": None}
    ]


# -- request log ---------------------------------------------------------------------------------


def test_request_log_records_of_no_answer_and_of_infinite_figures() -> None:
    when = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    nothing = {name: [] for name in LOGGED_ANSWER_FIELDS}
    assert request_log_records(nothing, None, ["rule_margin"], time=when) == []
    answers = {
        "household_id": ["h1"],
        "as_of": ["2024-06"],
        "status": ["scored"],
        "risk_score": [0.5],
        "risk_band": ["high"],
        "rule_margin": [np.inf],
        "model_name": ["relapse-risk"],
        "model_version": ["3"],
    }
    features = pd.DataFrame(
        {
            "other": ["text"],
            "rule_margin": [-np.inf],
            "income_per_capita_12m": np.array([2.5], dtype=np.float32),
        },
        index=["h1"],
    )
    [record] = request_log_records(
        answers, features, ["income_per_capita_12m", "rule_margin", "absent"], time=when
    )
    assert record["rule_margin"] is None and record["risk_score"] == 0.5
    assert record["features"] == {"income_per_capita_12m": 2.5, "rule_margin": None}
    assert all(type(v) is float for v in record["features"].values() if v is not None)


def test_request_log_records_of_missing_answers_and_features_are_null() -> None:
    when = dt.datetime(2026, 11, 23, 13, 44, 4, 123000, tzinfo=dt.UTC)
    answers = {
        "household_id": ["h1", "h2", None, "h3"],
        "as_of": ["2024-06"] * 4,
        "status": ["scored", "rejected", "rejected", "triggered_now"],
        "risk_score": [0.12, None, np.nan, None],
        "risk_band": ["medium", None, None, None],
        "rule_margin": [1.5, None, None, -0.25],
        "model_name": ["relapse-risk"] * 4,
        "model_version": ["3"] * 4,
    }
    features = pd.DataFrame(
        {"income_per_capita_12m": [9000.0, 4000.5], "rule_margin": [np.nan, -0.25]}, index=["h1", "h3"]
    )
    records = request_log_records(answers, features, ["income_per_capita_12m", "rule_margin"], time=when)
    assert [r["features"] is None for r in records] == [False, True, True, False]
    assert [r["risk_score"] for r in records] == [0.12, None, None, None]
    assert [r["household_id"] for r in records] == ["h1", "h2", None, "h3"]
    assert records[3]["features"] == {"income_per_capita_12m": 4000.5, "rule_margin": -0.25}


def test_the_request_log_holds_features_score_model_and_time_and_no_other_identifier(tmp_path: Path) -> None:
    answers = {
        "household_id": ["h1", "h2"],
        "as_of": ["2024-06", "2024-06"],
        "status": ["scored", "rejected"],
        "risk_score": [0.12, None],
        "risk_band": ["medium", None],
        "rule_margin": [1.5, None],
        "model_name": ["relapse-risk"] * 2,
        "model_version": ["3"] * 2,
        "village_code": ["530101001001"] * 2,
    }
    features = pd.DataFrame({"income_per_capita_12m": [9000.0], "rule_margin": [np.nan]}, index=["h1"])
    log = RequestLog(tmp_path / "log" / "requests.jsonl")
    when = dt.datetime(2026, 11, 23, 13, 44, 4, 123000, tzinfo=dt.UTC)
    records = request_log_records(answers, features, ["income_per_capita_12m", "rule_margin"], time=when)

    writers = [threading.Thread(target=log.append, args=(records,)) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    lines = (tmp_path / "log" / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and all(json.loads(line) for line in lines)
    first = json.loads(lines[0])
    assert set(first) == {
        "v",
        "time",
        "model_name",
        "model_version",
        "as_of",
        "household_id",
        "status",
        "risk_score",
        "risk_band",
        "rule_margin",
        "features",
    }
    assert first["time"] == "2026-11-23T13:44:04.123Z"
    assert first["features"] == {"income_per_capita_12m": 9000.0, "rule_margin": None}
    assert json.loads(lines[1])["features"] is None
    assert "530101001001" not in "".join(lines)
    assert len(read_request_log(tmp_path / "log" / "requests.jsonl")) == 8


# -- the served OpenAPI document -----------------------------------------------------------------


def test_the_openapi_document_states_bearer_keys_401_413_and_422_instead_of_400() -> None:
    generated = {
        "openapi": "3.0.2",
        "info": {"title": "x"},
        "paths": {
            "/score": {"post": {"responses": {"200": {}, "400": {}, "500": {}}}},
            "/livez": {"get": {"responses": {"200": {}}}},
        },
        "components": {"schemas": {}},
    }

    document = api_openapi_document(
        generated, title="relapse-risk API", version="1", description="d", api_paths=["/score"]
    )

    score = document["paths"]["/score"]["post"]
    assert set(score["responses"]) == {"200", "401", "413", "415", "422", "500"}
    assert score["security"] == [{"bearerKey": []}]
    assert "security" not in document["paths"]["/livez"]["get"]
    assert document["components"]["securitySchemes"]["bearerKey"]["scheme"] == "bearer"
    assert generated["paths"]["/score"]["post"]["responses"].keys() == {"200", "400", "500"}


# -- scoring hand-made households in-process -----------------------------------------------------


@pytest.fixture(scope="module")
def small_model() -> ResolvedModel:
    """A real RiskModel on the catalogue's columns, fitted to noise: enough to score, fast to train."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(rng.normal(size=(600, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    for name in CATEGORICAL_FEATURES:
        frame[name] = rng.integers(0, 3, size=600)
    label = (frame[FEATURE_NAMES[0]] + rng.normal(size=600) > 1).astype(int).to_numpy()
    model = RiskModel(
        max_rounds=20, min_child_samples=10, categorical_features=CATEGORICAL_FEATURES, seed=3, num_threads=1
    )
    model.fit(frame[:400], label[:400], frame[400:], label[400:])
    return ResolvedModel(
        model=model, name="relapse-risk", version="7", uri="models:/relapse-risk@champion", horizon=6
    )


def test_a_mixed_batch_scores_the_good_households_and_names_every_problem_of_the_bad(
    small_model: ResolvedModel,
) -> None:
    broken = household_tables("h3")
    broken["members"][0]["sex"] = "x"
    broken["income"][2]["source"] = "Wages"
    foreign = household_tables("h4")
    foreign["income"][0]["household_id"] = "h1"
    request = ScoreRequest.model_validate(
        {
            "households": [
                entry(household_tables("h1")),
                entry(broken),
                entry(household_tables("h2", wage=200.0)),
                entry(foreign),
                entry(household_tables("h5"), as_of="2026-01"),
            ]
        }
    )

    batch = score_prepared(
        prepare_households(request.households),
        served=small_model,
        policy=POLICY,
        village_contexts=lambda _: None,
    )

    answers = batch.answers
    assert [a.household_id for a in answers] == ["h1", "h3", "h2", "h4", "h5"]
    assert [a.status for a in answers] == ["scored", "rejected", "triggered_now", "rejected", "rejected"]
    assert 0.0 <= answers[0].risk_score <= 1.0 and answers[0].risk_band in ("high", "medium", "low")
    assert answers[0].model_version == "7" and answers[0].horizon_months == 6
    found = {(p.table, p.row, p.column, p.rule) for p in answers[1].problems}
    assert {("members", 1, "sex", "enum"), ("income", 3, "source", "enum")} <= found
    assert answers[1].risk_score is None and answers[1].error.startswith("members row 1, sex")
    assert answers[2].triggered_rule == "rigid_expenditure" and answers[2].risk_score is None
    assert answers[3].problems[0].rule == "other_household"
    assert "no line for year(s) 2025, 2026" in answers[4].error
    assert sorted(batch.features.index) == ["h1", "h2"]


def test_village_figures_of_a_batch_run_replace_those_of_a_lone_household(small_model: ResolvedModel) -> None:
    request = ScoreRequest.model_validate({"households": [entry(household_tables("h1"))]})
    names = village_feature_names(small_model.model.feature_names_)
    context = pd.DataFrame(
        {"village_code": ["530101001001"], "as_of": ["2024-03"], **{n: [0.5] for n in names}}
    )
    context["village_households"] = 240.0

    alone = score_prepared(
        prepare_households(request.households),
        served=small_model,
        policy=POLICY,
        village_contexts=lambda _: None,
    )
    with_run = score_prepared(
        prepare_households(request.households),
        served=small_model,
        policy=POLICY,
        village_contexts=lambda _: ("2024-03", VillageFigures.of(context)),
    )

    assert alone.answers[0].village_context_as_of is None
    assert with_run.answers[0].village_context_as_of == "2024-03"
    assert alone.features.loc["h1", "village_households"] == 1.0
    assert with_run.features.loc["h1", "village_households"] == 240.0


@pytest.mark.slow  # starts a server or a process that imports BentoML
def test_serve_refuses_to_start_without_keys_and_names_the_setting(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY.to_json_dict()), encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RELAPSE_")}

    finished = subprocess.run(
        [str(RELAPSE), "serve", "--policy", str(policy), "--port", "1"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 2
    assert "RELAPSE_API_KEYS" in finished.stderr


@pytest.mark.slow  # starts a server or a process that imports BentoML
def test_a_scoring_process_that_cannot_load_the_model_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY.to_json_dict()), encoding="utf-8")
    settings = ApiSettings(
        policy_file=policy,
        tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}",
        model_uri="models:/relapse-risk@champion",
    )

    with pytest.raises(ApiStartupError, match="relapse-risk"):
        ScoringProcess.start(settings)


# -- a server that cannot serve exits ------------------------------------------------------------

FAIL_FAST_SECONDS = 30
"""A server without its model must say so and exit within this; BentoML would restart it forever."""


def _serve_environment(tmp_path: Path, tracking_uri: str) -> dict[str, str]:
    """What a Bento is given: keys, policy and registry in variables, nothing on the command line."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY.to_json_dict()), encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RELAPSE_")}
    environment |= {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "RELAPSE_POLICY_FILE": str(policy),
        "RELAPSE_API_KEYS": KEY,
        "RELAPSE_REQUEST_LOG": str(tmp_path / "requests.jsonl"),
    }
    return environment


def _run_until_exit(command: list[str], environment: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    """Exit code, output (stdout and stderr: BentoML logs to stdout) and seconds of a server command
    that must exit on its own (killed if it does not)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=environment, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=FAIL_FAST_SECONDS * 3)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"still running after {FAIL_FAST_SECONDS * 3} s:\n{output[-3000:]}")
    return process.returncode, output, time.monotonic() - started


@pytest.mark.slow  # starts a server or a process that imports BentoML
def test_relapse_serve_without_a_champion_exits_2_at_once_naming_the_model_and_what_to_run(
    challenger_only_registry: str, tmp_path: Path
) -> None:
    environment = _serve_environment(tmp_path, challenger_only_registry)
    command = [str(RELAPSE), "serve", "--host", "127.0.0.1", "--port", str(_free_port())]

    code, output, seconds = _run_until_exit(command, environment, tmp_path)

    assert code == 2
    assert output.strip().splitlines() == [
        f"Cannot serve: No model at models:/relapse-risk@champion in {challenger_only_registry}: "
        "run `relapse train` then `relapse promote`, or serve the challenger with "
        "--model models:/relapse-risk@challenger"
    ]
    assert seconds < FAIL_FAST_SECONDS


@pytest.mark.slow
def test_a_bento_without_its_model_exits_2_before_starting_a_worker(
    challenger_only_registry: str, tmp_path: Path
) -> None:
    environment = _serve_environment(tmp_path, challenger_only_registry)
    # What a built Bento runs: BentoML's own server on the service, without `relapse serve`.
    command = serve_command("127.0.0.1", _free_port())

    code, output, seconds = _run_until_exit(command, environment, tmp_path)

    assert code == 2
    assert (
        f"Cannot serve: No model at models:/relapse-risk@champion in {challenger_only_registry}: "
        "run `relapse train` then `relapse promote`, or serve the challenger with "
        "RELAPSE_MODEL_URI=models:/relapse-risk@challenger"
    ) in output.splitlines()
    assert "Starting production" not in output  # no worker was started
    assert seconds < FAIL_FAST_SECONDS


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_registered_model_stops_the_whole_server(
    challenger_only_registry: str, tmp_path: Path
) -> None:
    # The champion is registered, so the check before the workers passes, but its files are not there.
    client = MlflowClient(tracking_uri=challenger_only_registry, registry_uri=challenger_only_registry)
    client.set_registered_model_alias("relapse-risk", "champion", "1")
    environment = _serve_environment(tmp_path, challenger_only_registry)
    # What a built Bento runs: BentoML's own server on the service, without `relapse serve`.
    port = _free_port()
    command = serve_command("127.0.0.1", port)

    code, output, seconds = _run_until_exit(command, environment, tmp_path)

    assert code == ExitCode.WORKER_FAILED == 5, output[-3000:]
    assert "could not be loaded" in output
    assert "Cannot serve: a worker could not start" in output
    # Each failed start-up logs its reason once: one, or two if a restart was under way, never a loop.
    assert 1 <= output.count("] Cannot serve: models:/relapse-risk@champion is in the registry") <= 2
    assert seconds < FAIL_FAST_SECONDS * 2
    with socket.socket() as probe:  # no worker outlived the server, holding its port
        probe.bind(("127.0.0.1", port))


def test_only_a_worker_of_the_recorded_server_process_signals_it() -> None:
    assert not stop_server_after_failed_start({})
    assert not stop_server_after_failed_start({SERVER_PID_VARIABLE: "not-a-pid"})
    # This process's parent is not the server that recorded itself: nothing is sent to anyone.
    assert not stop_server_after_failed_start({SERVER_PID_VARIABLE: str(os.getpid())})


# -- a real server -------------------------------------------------------------------------------

AS_OF = dt.date(2024, 6, 1)
SERVER_START_SECONDS = 180


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    version: str
    fingerprint: str


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    county: Path
    run: Path
    request_log: Path
    server_log: Path
    registry: Registry
    pid: int

    def post(self, path: str, body: object, key: str | None = None, timeout: float = 120) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=timeout)


@pytest.fixture(scope="module")
def county(make_county: Callable[..., GeneratedCounty]) -> Path:
    # Not the shared small_county: test_the_scoring_process_answers_each_batch_its_own_answers
    # cancels a batch of every household, and at its 2,000 households the scoring process does not
    # get over that cancel (the next batch waits forever); 600 households also train faster.
    return make_county(households=600, months=48, seed=17).folder


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's folder: its registry, batch run, keys and logs."""
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def champion(county: Path, work: Path) -> Registry:
    """The training job's model for the county, made champion by hand (promotion gates are not under test)."""
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    settings = TrainingSettings(
        work_dir=work,
        tracking_uri=tracking_uri,
        booster=BoosterParameters(learning_rate=0.1, max_rounds=80, early_stopping_rounds=20),
        min_positives=10,  # a county of 600 households has few rule firings per quarter
        shap_sample_rows=10,
    )
    result = run_training(county, settings)
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(
        settings.model_name, "champion", result.model_version
    )
    params = MlflowClient(tracking_uri=tracking_uri).get_run(result.run_id).data.params
    return Registry(
        tracking_uri=tracking_uri, version=result.model_version, fingerprint=params["data_fingerprint"]
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(county: Path, champion: Registry, work: Path) -> Iterator[Server]:
    """``relapse score`` once, then ``relapse serve`` on a free loopback port until the module ends.

    Start-up settings: MLFLOW_TRACKING_URI (the temporary SQLite registry),
    --policy (the county's policy.json), --runs (the batch run), --request-log,
    --api-keys-file (one random key), --host 127.0.0.1 --port <free>; the
    model URI is the default models:/relapse-risk@champion.
    """
    runs = work / "runs"
    score_folder(county, AS_OF, resolve_model("champion", champion.tracking_uri), runs / "2024-06")
    key = secrets.token_urlsafe(32)
    keys = work / "api-keys"
    keys.write_text(f"# test key\n{key}\n", encoding="utf-8")
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RELAPSE_")}
    environment["MLFLOW_TRACKING_URI"] = champion.tracking_uri
    server_log = work / "server.log"
    command = [
        str(RELAPSE), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--policy", str(county / "policy.json"), "--runs", str(runs),
        "--request-log", str(work / "request-log" / "requests.jsonl"), "--api-keys-file", str(keys),
    ]  # fmt: skip
    with server_log.open("wb") as log:
        process = subprocess.Popen(
            command, env=environment, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{server_log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"server not ready after {SERVER_START_SECONDS} s:\n{server_log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield Server(
            url=url,
            key=key,
            county=county,
            run=runs / "2024-06",
            request_log=work / "request-log" / "requests.jsonl",
            server_log=server_log,
            registry=champion,
            pid=process.pid,
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def batch_scores(server: Server) -> pd.DataFrame:
    return pd.read_parquet(server.run / "scores.parquet")


def _reasons_of(row: pd.Series) -> list[dict[str, str]]:
    return [
        {f: row[f"reason_{slot}_{f}"] for f in ("code", "zh", "en", "measure")}
        for slot in (1, 2, 3)
        if pd.notna(row[f"reason_{slot}_code"])
    ]


def _nullable(value: object) -> object:
    return None if pd.isna(value) else value


@pytest.mark.slow
def test_probes_and_the_openapi_document_need_no_key(server: Server) -> None:
    for path in ("/livez", "/readyz", "/healthz"):
        assert httpx.get(server.url + path, timeout=10).status_code == 200
    document = httpx.get(server.url + "/docs.json", timeout=10).json()

    assert set(API_PATHS) <= set(document["paths"])
    assert document["paths"]["/score"]["post"]["security"] == [{"bearerKey": []}]
    assert {"401", "422"} <= set(document["paths"]["/score"]["post"]["responses"])


@pytest.mark.slow
@pytest.mark.parametrize("path", API_PATHS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-wrong-key-wrong", "Basic a2V5OmtleQ=="])
def test_every_endpoint_answers_401_without_a_valid_key(
    server: Server, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = httpx.post(server.url + path, json={}, headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("/score", {"households": [{"as_of": "2024-13", "tables": {"households": [{}]}}]},
         ["households", 0, "as_of"]),
        ("/score", {"households": [{"as_of": "2024-06", "tables": {"households": [{}], "x": []}}]},
         ["households", 0, "tables", "x"]),
        ("/score", {"households": []}, ["households"]),
        ("/visit_list", {"county_code": "53", "as_of": "2024-06", "capacity": 5}, ["county_code"]),
        ("/visit_list", {"county_code": "532328", "as_of": "2024-06", "capacity": 0}, ["capacity"]),
        ("/household", {"household_id": ""}, ["household_id"]),
        ("/model_info", {"verbose": True}, ["verbose"]),
    ],
)  # fmt: skip
def test_a_body_that_does_not_fit_is_422_naming_the_field(
    server: Server, path: str, body: dict[str, Any], location: list[object]
) -> None:
    response = server.post(path, body)

    assert response.status_code == 422
    assert location in [item["loc"] for item in response.json()["detail"]]


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["multipart/form-data", "text/plain", "application/xml"])
def test_a_body_not_sent_as_json_is_415(server: Server, content_type: str) -> None:
    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": content_type}

    response = httpx.post(server.url + "/score", content=b'{"households": []}', headers=headers, timeout=10)

    assert response.status_code == 415


@dataclass(frozen=True)
class RawAnswer:
    status: int
    body: dict[str, Any]
    seconds: float
    sent_bytes: int


def _post_until_answered(server: Server, headers: dict[str, str], body: Iterator[bytes]) -> RawAnswer:
    """POST /score over a bare socket, sending ``body`` piece by piece only until the server answers.

    An HTTP client library sends the whole body before it reads an answer; a
    server that answers early is seen here as soon as it does.
    """
    port = int(server.url.rsplit(":", 1)[1])
    lines = ["POST /score HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {server.key}"]
    lines += ["Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in body:
            if select.select([connection], [], [], 0)[0]:
                break  # the answer is there
            try:
                connection.sendall(piece)
            except OSError:
                break  # answered and closed: the rest is not wanted
            sent += len(piece)
        answer = b""
        try:
            while data := connection.recv(65536):
                answer += data
        except ConnectionResetError:
            pass  # closed with part of the body unread; what arrived before stands
    seconds = time.monotonic() - started
    head, _, payload = answer.partition(b"\r\n\r\n")
    return RawAnswer(int(head.split()[1]), json.loads(payload), seconds, sent)


def _chunked(piece: bytes, total: int) -> Iterator[bytes]:
    for _ in range(total // len(piece)):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_before_it_is_read_and_the_server_stays_healthy(
    server: Server, batch_scores: pd.DataFrame, framing: str
) -> None:
    megabyte = b"x" * 2**20
    over = 4 * DEFAULT_MAX_BODY_BYTES  # the body of 10,000 households was about 270 MB
    if framing == "content-length":
        answer = _post_until_answered(
            server, {"Content-Length": str(over)}, (megabyte for _ in range(over // len(megabyte)))
        )
    else:
        answer = _post_until_answered(server, {"Transfer-Encoding": "chunked"}, _chunked(megabyte, over))
    household_id = batch_scores[batch_scores["status"] == "scored"]["household_id"].iloc[0]
    normal = server.post("/score", {"households": score_entries(server.county, [household_id], AS_OF)})

    assert answer.status == 413
    assert f"over the server's limit of {DEFAULT_MAX_BODY_BYTES} bytes" in answer.body["error"]
    # Refused from its headers, or once the count passes the limit: never after reading all of it.
    assert answer.sent_bytes < 2 * DEFAULT_MAX_BODY_BYTES
    assert answer.seconds < (2 if framing == "content-length" else 30)
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    assert normal.status_code == 200 and normal.json()[0]["status"] == "scored"


@pytest.mark.slow
def test_a_mixed_batch_scores_the_good_and_answers_each_bad_household_with_its_problems(
    server: Server, batch_scores: pd.DataFrame
) -> None:
    scored = batch_scores[batch_scores["status"] == "scored"]["household_id"].tolist()[:3]
    entries = score_entries(server.county, scored, AS_OF)
    entries[1]["tables"]["members"][0]["sex"] = "unknown"
    entries[2]["tables"]["income"][0]["household_id"] = scored[0]

    response = server.post("/score", {"households": entries})

    assert response.status_code == 200
    answers = response.json()
    assert [a["household_id"] for a in answers] == scored
    assert [a["status"] for a in answers] == ["scored", "rejected", "rejected"]
    assert {"table": "members", "row": 1, "column": "sex", "rule": "enum"}.items() <= answers[1]["problems"][
        0
    ].items()
    assert answers[2]["problems"][0]["rule"] == "other_household"
    assert answers[1]["risk_score"] is None and answers[1]["error"]


@pytest.mark.slow
def test_the_api_and_the_batch_job_give_the_same_answer_for_a_household(
    server: Server, batch_scores: pd.DataFrame
) -> None:
    listed = batch_scores[batch_scores["in_visit_list"]]["household_id"].tolist()[:4]
    others = [
        batch_scores[batch_scores["status"] == status]["household_id"].iloc[0]
        for status in ("under_monitoring", "triggered_now")
        if (batch_scores["status"] == status).any()
    ]
    households = listed + others
    entries = score_entries(server.county, households, AS_OF)

    # One household per request, sent together: the server batches them.
    with ThreadPoolExecutor(max_workers=len(entries)) as pool:
        responses = list(pool.map(lambda e: server.post("/score", {"households": [e]}), entries))

    for household_id, response in zip(households, responses, strict=True):
        assert response.status_code == 200
        answer = response.json()[0]
        row = batch_scores.set_index("household_id").loc[household_id]
        assert answer["status"] == row["status"], household_id
        assert answer["risk_score"] == _nullable(row["risk_score"]), household_id
        assert answer["risk_band"] == _nullable(row["risk_band"])
        assert answer["rule_margin"] == _nullable(row["rule_margin"])
        assert answer["triggered_rule"] == _nullable(row["triggered_rule"])
        assert answer["reasons"] == _reasons_of(row)
        assert answer["model_version"] == row["model_version"] == server.registry.version
        if answer["status"] == "scored":
            assert answer["village_context_as_of"] == "2024-06"


@pytest.mark.slow
def test_the_visit_list_is_the_batch_ranking_of_the_area_cut_at_capacity(
    server: Server, batch_scores: pd.DataFrame
) -> None:
    scored = batch_scores[batch_scores["status"] == "scored"]
    county_code = scored["county_code"].iloc[0]
    township_code = scored["township_code"].value_counts().index[0]

    by_county = server.post(
        "/visit_list", {"county_code": county_code, "as_of": "2024-06", "capacity": 5}
    ).json()
    by_township = server.post(
        "/visit_list", {"township_code": township_code, "as_of": "2024-06-01", "capacity": 3}
    ).json()

    expected = scored.sort_values("rank_county")["household_id"].head(5).tolist()
    assert [e["household"]["household_id"] for e in by_county["households"]] == expected
    assert [e["rank"] for e in by_county["households"]] == [1, 2, 3, 4, 5]
    assert by_county["scored_households"] == len(scored)
    assert (
        by_county["run"]["as_of"] == "2024-06"
        and by_county["run"]["model_version"] == server.registry.version
    )
    in_township = scored[scored["township_code"] == township_code].sort_values("rank_township")
    assert [e["household"]["household_id"] for e in by_township["households"]] == in_township[
        "household_id"
    ].head(3).tolist()
    assert all(e["household"]["reasons"] for e in by_county["households"] if e["household"]["in_visit_list"])


@pytest.mark.slow
def test_no_run_for_the_month_or_the_household_is_404(server: Server) -> None:
    missing_month = server.post("/visit_list", {"county_code": "532328", "as_of": "2023-06", "capacity": 5})
    missing_household = server.post("/household", {"household_id": "no-such-household"})

    assert missing_month.status_code == 404 and "2023-06" in missing_month.json()["error"]
    assert missing_household.status_code == 404


@pytest.mark.slow
def test_a_household_gets_its_latest_batch_row(server: Server, batch_scores: pd.DataFrame) -> None:
    row = batch_scores[batch_scores["in_visit_list"]].iloc[0]

    answer = server.post("/household", {"household_id": row["household_id"]}).json()

    assert answer["run"]["run"] == "2024-06"
    household = answer["household"]
    assert household["risk_score"] == row["risk_score"] and household["rank_county"] == row["rank_county"]
    assert household["reasons"] == _reasons_of(row)


@pytest.mark.slow
def test_model_info_names_the_registered_champion_and_its_training_data(server: Server) -> None:
    info = server.post("/model_info", {}).json()

    assert (info["model_name"], info["model_version"]) == ("relapse-risk", server.registry.version)
    assert info["model_uri"] == "models:/relapse-risk@champion"
    assert info["training_data_fingerprint"] == server.registry.fingerprint
    assert info["trained_through"] == "2024-06"  # refit on every labelled month of 2021-01..2024-12
    assert "model.recall_at_k" in info["test_metrics"] and info["test_months"]
    assert [f["name"] for f in info["features"]] == list(FEATURE_NAMES)
    assert all(f["meaning"] and f["label_zh"] for f in info["features"])


@pytest.mark.slow
def test_scored_requests_are_logged_for_monitoring_and_household_data_stays_out_of_the_server_log(
    server: Server, batch_scores: pd.DataFrame
) -> None:
    household_id = batch_scores[batch_scores["status"] == "scored"]["household_id"].iloc[-1]
    entry_ = score_entries(server.county, [household_id], AS_OF)[0]
    marker = "marker-7f3a9c"
    broken = json.loads(json.dumps(entry_))
    broken["tables"]["households"][0]["terrain"] = marker
    invalid = {"households": [{"as_of": marker, "tables": {"households": [{"household_id": marker}]}}]}

    assert server.post("/score", {"households": [entry_, broken]}).status_code == 200
    assert server.post("/score", invalid).status_code == 422

    logged = [json.loads(line) for line in server.request_log.read_text(encoding="utf-8").splitlines()]
    mine = [r for r in logged if r["household_id"] == household_id and r["status"] == "scored"]
    assert mine and set(mine[-1]["features"]) == set(FEATURE_NAMES)
    assert mine[-1]["model_version"] == server.registry.version
    assert all("county_code" not in r and "village_code" not in r for r in logged)
    assert marker not in server.server_log.read_text(encoding="utf-8", errors="replace")


@pytest.mark.slow
def test_the_scoring_process_answers_each_batch_its_own_answers_and_exits_when_stopped(
    county: Path, champion: Registry, batch_scores: pd.DataFrame, tmp_path: Path
) -> None:
    settings = ApiSettings(
        policy_file=county / "policy.json", tracking_uri=champion.tracking_uri, request_log=tmp_path / "log"
    )
    household_ids = batch_scores["household_id"].iloc[:2].tolist()
    batch = score_entries(county, household_ids, AS_OF)
    everyone = score_entries(county, batch_scores["household_id"].tolist(), AS_OF)
    # Many times the county, so that at the cancel part of the batch is still unsent: the socket
    # must then leave the event loop at once, or the next child's socket inherits its registration.
    many = [HouseholdInput.model_validate(e) for e in everyone] * 8
    scoring = ScoringProcess.start(settings)

    async def batches_then_stop() -> tuple[list[ScoredBatch], int | None]:
        prepared = prepare_households([HouseholdInput.model_validate(e) for e in batch])
        cancelled = asyncio.create_task(scoring.score(prepare_households(many)))
        await asyncio.sleep(0.05)  # sent, and far from answered: scoring them takes a few tenths of a second
        cancelled.cancel()
        # The cancelled batch's late answers must not become the next batch's.
        batches = [await scoring.score(prepared) for _ in range(2)]
        return batches, scoring.stop()  # as the service's shutdown hook does, in the server's event loop

    # A child left out of step never answers: fail in minutes rather than hang the suite.
    (first, second), exit_code = asyncio.run(asyncio.wait_for(batches_then_stop(), timeout=180))

    assert [a.household_id for a in first.answers] == household_ids
    assert first.answers == second.answers
    assert list(first.features.columns) == [f.name for f in scoring.info.features]
    assert scoring.info.model_version == champion.version
    assert exit_code == 0  # it read the closed socket and returned: not terminated


@pytest.mark.slow
def test_a_scoring_process_that_dies_and_cannot_start_again_says_why_for_each_batch(
    county: Path, champion: Registry, batch_scores: pd.DataFrame, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_bytes((county / "policy.json").read_bytes())
    settings = ApiSettings(policy_file=policy, tracking_uri=champion.tracking_uri)
    entries = score_entries(county, batch_scores["household_id"].iloc[:1].tolist(), AS_OF)
    items = [HouseholdInput.model_validate(e) for e in entries]
    before = {p.pid for p in psutil.Process().children()}
    scoring = ScoringProcess.start(settings)
    [child] = [p for p in psutil.Process().children() if p.pid not in before]
    policy.write_text("{not json", encoding="utf-8")  # a broken deployment: the next start fails

    async def two_batches() -> list[str]:
        messages = []
        for _ in range(2):
            with pytest.raises(ScoringUnavailable) as caught:
                await scoring.score(prepare_households(items))
            messages.append(str(caught.value))
        return messages

    child.kill()
    lost, refused = asyncio.run(two_batches())

    assert lost.startswith("the scoring process stopped (killed by SIGKILL) while scoring 1 households")
    assert refused.startswith("the scoring process could not start again: ") and "policy.json" in refused
    assert scoring.stop() is None  # nothing left running


def _scoring_processes(server: Server) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(server.pid).children(recursive=True)
        if any("spawn_main" in part for part in child.cmdline())
    ]


@pytest.mark.slow
def test_a_batch_whose_scoring_process_dies_is_503_and_the_next_batch_gets_a_new_one(
    server: Server, batch_scores: pd.DataFrame
) -> None:
    household_id = batch_scores[batch_scores["status"] == "scored"]["household_id"].iloc[0]
    body = {"households": score_entries(server.county, [household_id], AS_OF)}
    [scoring] = _scoring_processes(server)

    scoring.kill()  # the worker reaps it: its socket is closed at once
    lost = server.post("/score", body)
    again = server.post("/score", body)

    assert lost.status_code == 503
    assert "the scoring process stopped (killed by SIGKILL)" in server.server_log.read_text(errors="replace")
    assert again.status_code == 200 and again.json()[0]["status"] == "scored"
    assert [p.pid for p in _scoring_processes(server)] != [scoring.pid]


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_in_the_served_openapi(server: Server, tmp_path: Path) -> None:
    # fmt: off
    options = [
        "--checks", "not_a_server_error",
        "--header", f"Authorization: Bearer {server.key}",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "8", "--max-time", "30", "--seed", "20241",
        "--request-timeout", "60", "--workers", "1", "--generation-database", "none", "--no-color",
    ]
    # fmt: on
    finished = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{server.url}/docs.json", *options],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )

    assert finished.returncode == 0, finished.stdout[-4000:]
