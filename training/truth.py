"""Where a generated county keeps its oracle: beside the dataset folder, never inside it.

The generator writes ``<folder>.truth.parquet`` next to the folder (the oracle's
file of docs/rules-and-labels.md); a plain ``truth.parquet`` beside the folder is
accepted too. Real counties have no truth file, and every job that reads one
works without it.
"""

from __future__ import annotations

from pathlib import Path


def truth_candidates(folder: Path) -> list[Path]:
    folder = Path(folder)
    return [folder.parent / f"{folder.name}.truth.parquet", folder.parent / "truth.parquet"]


def find_truth(folder: Path) -> Path | None:
    """The truth file beside ``folder`` if there is one."""
    return next((path for path in truth_candidates(folder) if path.is_file()), None)
