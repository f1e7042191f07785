"""Imports point one way: the top-level folders are the architecture, and this keeps them so.

features use nothing of ours; models use features; training uses features and
models; serving and monitoring use features and models, never training. Only
the command line (relapse_risk/) and tests import the generator. Inside
serving, the batch job, the API and the workbench share only what serving/
itself holds.

Every ``.py`` file of those folders is parsed (nothing is imported, so a
forbidden import is found even in a function that no test runs) and each
``import``, absolute or relative, is mapped to the folder it names. Importing
``relapse_risk`` itself for ``__version__`` is no layer and is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "relapse_risk"

LAYERS = ("features", "models", "training", "serving", "monitoring")
"""The folders checked; each installs as ``relapse_risk.<folder>`` (pyproject.toml)."""

ALLOWED: dict[str, frozenset[str]] = {
    "features": frozenset({"features"}),
    "models": frozenset({"features", "models"}),
    "training": frozenset({"features", "models", "training"}),
    "serving": frozenset({"features", "models", "serving"}),
    "monitoring": frozenset({"features", "models", "monitoring"}),
}
"""Folder -> the folders its modules may import (its own included)."""

FOLDERS = (*LAYERS, "generator")
"""Sub-packages of ``relapse_risk`` that are folders of their own; any other name is the command line's."""

CLI = "relapse_risk/"
"""What an import of any other module of ``relapse_risk`` (cli, console, demo, ...) names."""


def module_name(path: Path) -> str:
    """``serving/api/service.py`` -> ``relapse_risk.serving.api.service`` (as pyproject.toml installs it)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in ``source``, relative ones resolved against ``module``.

    ``from X import a`` yields ``X.a``: ``a`` may be a module, and when it is an
    attribute the extra part does no harm to the folder it is mapped to.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.extend((node.lineno, f"{stem}.{alias.name}") for alias in node.names)
    return found


def folder_of(name: str) -> str | None:
    """The folder an imported name belongs to; None for third-party code and ``relapse_risk.__version__``."""
    parts = name.split(".")
    if parts[0] != PACKAGE or len(parts) == 1 or parts[1] == "__version__":
        return None
    return parts[1] if parts[1] in FOLDERS else CLI


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imports_of(folder: str) -> list[tuple[str, str, str]]:
    """(``file:line``, imported name, folder it names) for every import of ours in ``folder``."""
    rows = []
    for path in python_files(folder):
        module = module_name(path)
        for line, name in imported_modules(path.read_text(encoding="utf-8"), module, path.stem == "__init__"):
            if (target := folder_of(name)) is not None:
                rows.append((f"{path.relative_to(ROOT)}:{line}", name, target))
    return rows


@pytest.mark.parametrize("folder", LAYERS)
def test_imports_point_one_way(folder: str) -> None:
    assert python_files(folder), f"{folder}/ has no Python files: the check would pass on nothing"
    forbidden = [
        f"{where} imports {name} ({target})"
        for where, name, target in imports_of(folder)
        if target not in ALLOWED[folder]
    ]
    assert not forbidden, f"{folder}/ may import only {sorted(ALLOWED[folder])}:\n" + "\n".join(forbidden)


def test_batch_api_and_workbench_share_only_what_serving_holds() -> None:
    """serving/batch, serving/api and serving/workbench never import each other: what they share lives in
    serving/ itself (the workbench reads runs from their files, not through the batch job's code)."""
    crossing = []
    sides = ("batch", "api", "workbench")
    for side, other in ((a, b) for a in sides for b in sides if a != b):
        for where, name, _ in imports_of(f"serving/{side}"):
            if name.startswith(f"{PACKAGE}.serving.{other}.") or name == f"{PACKAGE}.serving.{other}":
                crossing.append(f"{where} imports {name}")
    assert not crossing, "\n".join(crossing)


def test_the_check_sees_imports_of_every_kind() -> None:
    """The resolver itself: absolute, relative at any depth, inside functions, and the version exemption."""
    source = """
import relapse_risk.training.train
from relapse_risk.generator import run
from relapse_risk import __version__
from .. import config
from ...models.reasons import Reason
from .job import score_folder

def later():
    from relapse_risk.cli import app
"""
    found = imported_modules(source, "relapse_risk.serving.batch.command", is_package=False)
    assert [folder_of(name) for _, name in found] == [
        "training",
        "generator",
        None,
        "serving",
        "models",
        "serving",
        CLI,
    ]
    assert [name for _, name in found][3:6] == [
        "relapse_risk.serving.config",
        "relapse_risk.models.reasons.Reason",
        "relapse_risk.serving.batch.job.score_folder",
    ]
    # In a package's __init__, one dot is the package itself.
    assert imported_modules(
        "from .selection import Reason", "relapse_risk.models.reasons", is_package=True
    ) == [(1, "relapse_risk.models.reasons.selection.Reason")]


def test_every_package_folder_is_installed() -> None:
    """setuptools installs only the packages pyproject.toml lists: a new sub-package left out
    works in the checkout (editable install) and is missing from the wheel."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {package: ROOT / path for package, path in setuptools["package-dir"].items()}
    found = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((package, *relative)))

    assert sorted(found - set(setuptools["packages"])) == []
