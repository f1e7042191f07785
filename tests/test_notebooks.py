"""Both notebooks run top to bottom on a small generated county and its training run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # "python3" is the kernel ipykernel registers for the interpreter running the tests,
    # so the notebook sees this environment's packages without installing a kernelspec.
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode, kind: str) -> list[object]:
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    return [output for cell in code for output in cell.outputs if output.output_type == kind]


@pytest.mark.slow
def test_the_exploration_notebook_runs_on_a_dataset_folder(small_county, monkeypatch) -> None:
    monkeypatch.setenv("RELAPSE_DATA", str(small_county.folder))
    notebook = run_notebook("explore_dataset.ipynb")
    images = [o for o in outputs(notebook, "display_data") if "image/png" in o.data]
    assert len(images) == 3
    printed = "".join(o.get("text", "") for o in outputs(notebook, "stream"))
    assert str(small_county.folder) in printed


@pytest.mark.slow
def test_the_run_notebook_shows_a_registered_run_and_its_figures(trained_small_county, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_small_county.tracking_uri)
    monkeypatch.setenv("RELAPSE_MODEL_ALIAS", "challenger")
    notebook = run_notebook("training_run.ipynb")
    images = [o for o in outputs(notebook, "display_data") if "image/png" in o.data]
    assert len(images) == 5
    tables = "".join(o.data.get("text/html", "") for o in outputs(notebook, "execute_result"))
    assert "rule_baseline" in tables and "oracle" in tables and "mountain" in tables


@pytest.mark.parametrize("name", ["explore_dataset.ipynb", "training_run.ipynb"])
def test_notebooks_are_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
