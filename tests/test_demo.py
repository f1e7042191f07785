"""`relapse demo` end to end on a small generated county: generate, validate, rank, compare."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from relapse_risk.generator.config import CountyConfig, TruthOptions
from relapse_risk.generator.run import generate
from relapse_risk.models.metrics import BASELINE, ORACLE
from rich.console import Console

from relapse_risk.demo import METRICS_FILE, DemoFolderError, run_demo

SETTINGS = {"households": 400, "seed": 3}


def small_county(folder: Path, truth: Path) -> None:
    config = CountyConfig(households=SETTINGS["households"], seed=SETTINGS["seed"], months=30)
    generate(config, folder, TruthOptions(simulations=20), truth_path=truth)


def refuse_to_generate(folder: Path, truth: Path) -> None:
    raise AssertionError("the county should have been reused")


@pytest.mark.slow
def test_demo_shows_baseline_and_oracle_at_the_last_four_labelled_quarter_ends(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    console = Console(record=True, width=120)
    result = run_demo(out, SETTINGS, small_county, console)

    assert result.truth.parent == result.folder.parent  # beside the dataset folder, not inside
    # 2021-01 .. 2023-06: quarter-ends from 2022-01 whose 6-month horizon fits, the last four.
    assert [f"{m:%Y-%m}" for m in sorted(result.per_month["as_of"].unique())] == [
        "2022-03",
        "2022-06",
        "2022-09",
        "2022-12",
    ]
    assert set(result.per_month["method"]) == {BASELINE, ORACLE}
    assert list(result.mean["method"]) == [BASELINE, ORACLE]
    # visit_share 0.05 = 1/20 of the eligible households, rounded up.
    assert list(result.per_month["k"]) == [-(-eligible // 20) for eligible in result.per_month["eligible"]]
    # The oracle knows the hidden state: it ranks at least as well as the thresholds on average.
    mean = result.mean.set_index("method")
    assert mean.loc[ORACLE, "average_precision"] > mean.loc[BASELINE, "average_precision"]
    text = console.export_text()
    assert "No rejects" in text and "Reference rankings" in text
    written = pd.read_csv(out / METRICS_FILE)
    assert len(written) == len(result.per_month) + 2

    again = run_demo(out, SETTINGS, refuse_to_generate, Console(record=True, width=120))
    pd.testing.assert_frame_equal(again.per_month, result.per_month)

    with pytest.raises(DemoFolderError, match="other settings"):
        run_demo(out, {**SETTINGS, "seed": 4}, refuse_to_generate, Console(record=True))
