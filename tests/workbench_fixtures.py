"""Fixtures of the workbench tests: a generated county, visit lists made from it, databases.

The lists are ranked by the rule baseline (margin ascending, docs/rules-and-labels.md)
rather than by a trained model, so the fast tests need no training; reasons are
real reason codes with short stand-in sentences. One slow test imports a real
`relapse score` run (test_workbench_store.py).

The same tests run on SQLite and on PostgreSQL: ``db_url`` is parametrized, and
its PostgreSQL half starts a private cluster (Debian's postgresql, ``initdb`` and
``pg_ctl`` as the postgres user in a temporary folder) once per test process.
Set ``RELAPSE_TEST_POSTGRES_URL`` to use a running server instead.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import GeneratedCounty

POSTGRES_BIN = Path("/usr/lib/postgresql")
REASON_CODES = ("serious_illness_recent", "employment_months_down", "medical_oop_high", "loan_overdue")
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def workbench_county(shared_tmp_root: Path) -> GeneratedCounty:
    """900 households x 36 months in small villages (30-60 households, 3-5 per township): five or so
    townships, each with a handful of listed households. Generated once per session (file lock)."""
    from relapse_risk.generator.config import CountyConfig
    from relapse_risk.generator.run import generate

    config = CountyConfig(
        households=900, months=36, seed=21, households_per_village=(30, 60), villages_per_township=(3, 5)
    )
    home = shared_tmp_root / "workbench-county-h900-m36-s21"
    home.mkdir(parents=True, exist_ok=True)
    with (home / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "complete").exists():
            generate(config, home / "county")
            (home / "complete").touch()
    return GeneratedCounty(home / "county", None, config.households, config.months, config.seed)


def rule_baseline_run(county: Path, out: Path, as_of: str) -> Path:
    """A run folder (manifest.json, scores.parquet) ranking eligible households by margin at ``as_of``."""
    from relapse_risk.features.contract import parse_month
    from relapse_risk.features.loading import load_dataset
    from relapse_risk.features.rules import build_panel, rule_state
    from relapse_risk.models.reasons import TEMPLATES_BY_CODE
    from relapse_risk.serving.scoring import SCORE_COLUMNS

    dataset = load_dataset(county)
    month = parse_month(as_of)
    state = rule_state(build_panel(dataset, through=month), dataset.policy)
    column = state.column(month)
    households = dataset.frame("households").set_index("household_id").loc[state.household_ids]
    frame = pd.DataFrame(
        {
            "household_id": state.household_ids.astype(str),
            "county_code": households["county_code"].to_numpy(),
            "township_code": households["township_code"].to_numpy(),
            "village_code": households["village_code"].to_numpy(),
            "eligible": state.eligible[:, column],
            "margin": state.margin[:, column],
        }
    )
    scored = frame[frame["eligible"] & frame["margin"].notna()].sort_values(["margin", "household_id"]).copy()
    listed = math.ceil(dataset.policy.visit_share * len(scored))
    scored["rank_county"] = range(1, len(scored) + 1)
    scored["rank_township"] = scored.groupby("township_code").cumcount() + 1
    scored["rank_village"] = scored.groupby("village_code").cumcount() + 1
    scored["risk_score"] = (0.45 / (1 + scored["rank_county"] / 8)).round(
        6
    )  # high, medium and low on the list
    scored["risk_band"] = pd.cut(
        scored["risk_score"], [-1, 0.1, 0.3, 2], labels=["low", "medium", "high"]
    ).astype(str)
    scored["in_visit_list"] = scored["rank_county"] <= listed
    rows = []
    for i, row in enumerate(scored.itertuples(index=False)):
        record = {c: None for c in SCORE_COLUMNS}
        record.update(row._asdict())
        record.update(
            as_of=as_of,
            horizon_months=6,
            status="scored",
            rule_margin=row.margin,
            model_name="rule-baseline",
            model_version="0",
        )
        if row.in_visit_list:
            for slot in (1, 2):
                code = REASON_CODES[(i + slot) % len(REASON_CODES)]
                template = TEMPLATES_BY_CODE[code]
                record[f"reason_{slot}_code"] = code
                record[f"reason_{slot}_zh"] = f"原因{slot}：{code}"
                record[f"reason_{slot}_en"] = f"reason {slot}: {code}"
                record[f"reason_{slot}_measure"] = template.measure.code
        rows.append(record)
    scores = pd.DataFrame.from_records(rows).loc[:, list(SCORE_COLUMNS)]
    out.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out / "scores.parquet", index=False)
    manifest = {
        "as_of": as_of,
        "input": {"folder": str(county), "fingerprint": dataset.fingerprint},
        "model": {"name": "rule-baseline", "version": "0"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


@dataclass(frozen=True)
class Runs:
    county: GeneratedCounty
    earlier: Path
    latest: Path
    latest_as_of: str


@pytest.fixture(scope="session")
def workbench_runs(workbench_county: GeneratedCounty, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Two quarters' lists of the county: three months before the data's end, and at its end."""
    from relapse_risk.features.contract import format_month, month_index, month_start
    from relapse_risk.features.policy import read_policy

    policy = read_policy(workbench_county.folder / "policy.json")
    latest = format_month(policy.data_end)
    earlier = format_month(month_start(month_index(policy.data_end) - 3))
    root = tmp_path_factory.mktemp("workbench-runs")
    return Runs(
        workbench_county,
        rule_baseline_run(workbench_county.folder, root / earlier, earlier),
        rule_baseline_run(workbench_county.folder, root / latest, latest),
        latest,
    )


# -- databases -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin() -> Path | None:
    versions = sorted(POSTGRES_BIN.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def _as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    runner = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*runner, *command], check=True, capture_output=True, text=True, timeout=120)


@contextmanager
def private_postgres() -> Iterator[str]:
    """Start a PostgreSQL cluster of our own in a temporary folder; yield its URL prefix
    (``postgresql+psycopg://postgres@127.0.0.1:PORT/``); stop and remove it afterwards.
    Also used by benchmarks/bench_workbench.py."""
    binaries = _postgres_bin()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install -y postgresql)")
    # Not under pytest's temporary root: that is private to root, and the server runs as postgres.
    home = Path(tempfile.mkdtemp(prefix="relapse-workbench-pg-"))
    data = home / "data"
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    port = _free_port()
    _as_postgres(str(binaries / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                 "--no-instructions")  # fmt: skip
    _as_postgres(
        str(binaries / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w", "start",
        "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/"
    finally:
        _as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL prefix of a private cluster for this test process, or of RELAPSE_TEST_POSTGRES_URL's server."""
    if url := os.environ.get("RELAPSE_TEST_POSTGRES_URL"):
        yield url.rstrip("/").rsplit("/", 1)[0] + "/"
        return
    if _postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql); .ci/run installs it")
    with private_postgres() as server:
        yield server


def new_postgres_database(server: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"wb_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server + "postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server + name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a new database on the private PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'workbench.db'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


# -- a filled workbench ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workbench:
    url: str
    county_code: str
    township_a: str
    township_b: str
    household_a: str
    """The top-ranked listed household of township A."""
    household_b: str
    runs: Runs

    def client(self, **options: object):  # noqa: ANN201 - a starlette TestClient
        from fastapi.testclient import TestClient
        from relapse_risk.serving.workbench.app import create_app

        return TestClient(create_app(self.url, **options), follow_redirects=False)  # type: ignore[arg-type]

    def signed_in(self, username: str, **options: object):  # noqa: ANN201 - (client, csrf token)
        client = self.client(**options)
        response = client.post("/api/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return client, response.json()["csrf_token"]


def _fill(url: str, runs: Runs) -> None:
    """Both quarters imported, the latest issued 20 days ago; an analyst and staff of two townships."""
    import datetime as dt

    from relapse_risk.serving.workbench.command import add_user, import_runs

    import_runs(url, runs.earlier, None, dt.date.today() - dt.timedelta(days=110))
    import_runs(url, runs.latest, None, dt.date.today() - dt.timedelta(days=20))
    township_a, township_b, county, _, _ = _top_of_two_townships(runs)
    add_user(url, "analyst", "county", county, PASSWORD)
    add_user(url, "staff_a", "township", township_a, PASSWORD)
    add_user(url, "staff_b", "township", township_b, PASSWORD)


def _top_of_two_townships(runs: Runs) -> tuple[str, str, str, str, str]:
    scores = pd.read_parquet(runs.latest / "scores.parquet")
    listed = scores[scores["in_visit_list"]].sort_values("rank_county")
    first = listed.groupby("township_code")["household_id"].first()
    a, b = list(first.index[:2])
    return a, b, str(listed["county_code"].iloc[0]), first[a], first[b]


@pytest.fixture(scope="session")
def filled_templates(tmp_path_factory: pytest.TempPathFactory, workbench_runs: Runs) -> dict[str, str]:
    """Filled databases to copy, one per backend, made on first use: importing costs seconds, copying
    a SQLite file or creating a PostgreSQL database from a template costs milliseconds."""
    return {}


@pytest.fixture
def workbench(
    db_url: str, workbench_runs: Runs, filled_templates: dict[str, str], request: pytest.FixtureRequest
) -> Workbench:
    """A filled database of its own for each test (see :func:`_fill`), on SQLite or PostgreSQL."""
    from sqlalchemy import create_engine, text

    if db_url.startswith("sqlite"):
        if "sqlite" not in filled_templates:
            template = tmp_path_factory_path(request) / "filled.db"
            _fill(f"sqlite:///{template}", workbench_runs)
            filled_templates["sqlite"] = str(template)
        shutil.copyfile(filled_templates["sqlite"], db_url.removeprefix("sqlite:///"))
        url = db_url
    else:
        server = request.getfixturevalue("postgres_server")
        if "postgresql" not in filled_templates:
            template_url = new_postgres_database(server)
            _fill(template_url, workbench_runs)
            filled_templates["postgresql"] = template_url.rsplit("/", 1)[1]
        url = f"{server}wb_{uuid.uuid4().hex[:12]}"
        engine = create_engine(server + "postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            name, template = url.rsplit("/", 1)[1], filled_templates["postgresql"]
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        engine.dispose()
    township_a, township_b, county, household_a, household_b = _top_of_two_townships(workbench_runs)
    return Workbench(url, county, township_a, township_b, household_a, household_b, workbench_runs)


def tmp_path_factory_path(request: pytest.FixtureRequest) -> Path:
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    return factory.mktemp("filled-workbench")
