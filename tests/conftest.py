"""Shared fixtures: generated counties, built once per test session.

Each county is generated once into the session's shared temporary root and
reused by every test (and every pytest-xdist worker: a file lock makes the
others wait for the first); ``small_county`` with its truth file takes about
five seconds. Take ``tiny_county`` or ``small_county`` (``medium_county`` only
where its size is the point); a test that needs other sizes or options calls
``make_county`` and says why. Generated counties are shared: tests read them
and write elsewhere. Hand-written rows and the folders made of them are in
``builders.py``.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["workbench_fixtures"]
"""The workbench's fixtures (its databases, a county in small villages, lists made from it)."""

STAGE_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [a-z-]+: ")
"""A timestamped stage line the CLI logs to stderr (``2026-12-06 15:40:01 score: ... started``)."""


def message_lines(output: str) -> list[str]:
    """A command's output without its timestamped stage lines: what it says to the person."""
    return [line for line in output.strip().splitlines() if not STAGE_LINE.match(line)]


@dataclass(frozen=True)
class GeneratedCounty:
    folder: Path
    truth: Path | None
    households: int
    months: int
    seed: int


def generated_county(
    root: Path,
    households: int,
    months: int,
    seed: int,
    truth_simulations: int | None = None,
    **options: object,
) -> GeneratedCounty:
    """Generate (or reuse) a county under ``root``; safe to call from several processes at once.

    ``options`` are further fields of ``CountyConfig`` (village sizes, a scenario, ...).
    """
    from relapse_risk.generator.config import CountyConfig, TruthOptions
    from relapse_risk.generator.run import default_truth_path, generate

    name = f"county-h{households}-m{months}-s{seed}-t{truth_simulations or 0}"
    if options:
        name += "-" + hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:12]
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    folder = home / "county"
    done = home / "complete"
    with (home / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            truth = TruthOptions(simulations=truth_simulations) if truth_simulations else None
            config = CountyConfig(households=households, months=months, seed=seed, **options)
            generate(config, folder, truth=truth)
            done.touch()
    truth_path = default_truth_path(folder) if truth_simulations else None
    return GeneratedCounty(folder, truth_path, households, months, seed)


@pytest.fixture(scope="session")
def shared_tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder all xdist workers of this session share (the parent of each worker's own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


@pytest.fixture(scope="session")
def make_county(shared_tmp_root: Path) -> Callable[..., GeneratedCounty]:
    """Generate a county no shared fixture below fits, once per session: ``make_county(households=...,
    months=..., seed=..., truth_simulations=..., **CountyConfig fields)``. Say at the call why."""

    def make(households: int, months: int, seed: int, **options: object) -> GeneratedCounty:
        return generated_county(shared_tmp_root, households, months, seed, **options)

    return make


@pytest.fixture(scope="session")
def tiny_county(shared_tmp_root: Path) -> GeneratedCounty:
    """240 households x 30 months (2021-01 .. 2023-06) in villages of 20 to 60 households, a few
    townships of two to four villages, no truth file: loads in a second, so tests can load it, export
    it and send its households as API rounds many times over."""
    return generated_county(
        shared_tmp_root,
        households=240,
        months=30,
        seed=5,
        households_per_village=(20, 60),
        villages_per_township=(2, 4),
    )


@pytest.fixture(scope="session")
def small_county(shared_tmp_root: Path) -> GeneratedCounty:
    """2,000 households x 48 months with the oracle's truth file: enough history for the time split
    (train, validation and test quarter-ends) and enough positives to train and assess a model."""
    return generated_county(shared_tmp_root, households=2000, months=48, seed=11, truth_simulations=40)


@pytest.fixture(scope="session")
def medium_county(shared_tmp_root: Path) -> GeneratedCounty:
    """6,000 households x 48 months, no truth file: household groups large enough (about a hundred
    positives for the elderly over the test months) that the fairness gate can prove a model worse
    than the rule baseline for one of them, which a 2,000-household county cannot."""
    return generated_county(shared_tmp_root, households=6000, months=48, seed=12, truth_simulations=None)


@dataclass(frozen=True)
class TrainedCounty:
    """``relapse train`` run once on :func:`small_county` into a private MLflow store."""

    county: GeneratedCounty
    tracking_uri: str
    work_dir: Path
    output: str


@pytest.fixture(scope="session")
def trained_small_county(
    small_county: GeneratedCounty, tmp_path_factory: pytest.TempPathFactory
) -> TrainedCounty:
    """One real training run, registered as ``challenger``; tests must not move its aliases."""
    from typer.testing import CliRunner

    from relapse_risk.cli import app

    work_dir = tmp_path_factory.mktemp("trained-small-county")
    tracking_uri = f"sqlite:///{work_dir / 'mlruns' / 'mlflow.db'}"
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(small_county.folder), "--threads", "1", "--tracking-uri", tracking_uri],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return TrainedCounty(small_county, tracking_uri, work_dir, result.output)


@pytest.fixture(autouse=True)
def _restore_mlflow_uris() -> object:
    """MLflow keeps its tracking and registry URIs per process: a test that points them at its
    temporary store must not leave the next test registering models there."""
    import mlflow

    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


@pytest.fixture(scope="session")
def _challenger_only_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database of :func:`challenger_only_registry`, made once: MLflow takes seconds to create one."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("challenger-only")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("relapse-risk")
    version = client.create_model_version("relapse-risk", source=str(folder / "no-artifacts"))
    client.set_registered_model_alias("relapse-risk", "challenger", version.version)
    return folder / "mlflow.db"


@pytest.fixture
def challenger_only_registry(_challenger_only_database: Path, tmp_path: Path) -> str:
    """A SQLite MLflow registry whose relapse-risk has one version, aliased ``challenger`` only.

    The version points at no artifacts: what is under test is the registry
    look-up, which must fail on the missing champion before anything is loaded.
    Each test has its own copy, which it may change.
    """
    database = tmp_path / "challenger-only" / "mlflow.db"
    database.parent.mkdir()
    shutil.copyfile(_challenger_only_database, database)
    return f"sqlite:///{database}"


SLOW_FIXTURES = frozenset({"trained_small_county", "medium_county", "versions", "cases"})
"""Fixtures that train a model or generate the 6,000-household county: minutes on two cores
(``versions`` is test_promote's three trained and registered challengers; ``cases``
is test_monitoring's nine generated counties and the model trained on one of them)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches a training fixture ``slow``, however it reaches it.

    A test that uses ``trained_small_county`` waits for a whole `relapse train`
    run; marking it here rather than by hand keeps ``make test-fast`` fast when
    such a test is added.
    """
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
