"""The rest of `relapse demo`: the quarter's whole job on the generated county.

After :mod:`relapse_risk.demo` has generated, validated and measured the
reference rankings, this runs exactly what an analyst and a data scientist
run, through the same command functions the CLI calls:

1. ``relapse train``: time-split training, registered as ``challenger``;
2. ``relapse promote``: moved to ``champion`` only if it passes the checks;
3. ``relapse score``: the latest month scored, visit lists per township;
4. ``relapse monitor``: the latest quarter against the training reference;

and ends with the command that starts the API on those results. MLflow runs
live in ``OUT/mlruns`` so the demo never touches a user's own store.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.rule import Rule

from relapse_risk.features.contract import format_month
from relapse_risk.features.policy import Policy, read_policy
from relapse_risk.features.stages import StageTimes
from relapse_risk.features.training_table import quarter_ends
from relapse_risk.monitoring.command import monitor_command
from relapse_risk.monitoring.monitor import MonitorOptions
from relapse_risk.serving.batch.command import run_score_command
from relapse_risk.training.commands import promote_command, train_command
from relapse_risk.training.config import TrainingSettings, default_tracking_uri

SCORES_FOLDER = "scores"
MONITORING_FOLDER = "monitoring"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineDemoResult:
    exit_codes: dict[str, int]
    scores: Path
    monitoring: Path
    tracking_uri: str

    @property
    def ok(self) -> bool:
        """Training and scoring must succeed; promotion may refuse and monitoring may alert."""
        return self.exit_codes.get("train") == 0 and self.exit_codes.get("score") == 0


def run_pipeline_demo(
    out: Path, folder: Path, truth: Path, console: Console, errors: Console, horizon: int = 6
) -> PipelineDemoResult:
    """Train, promote, score and monitor the county in ``folder``; outputs go under ``out``."""
    out = out.resolve()
    tracking_uri = default_tracking_uri(out)
    settings = TrainingSettings(horizon=horizon, work_dir=out, tracking_uri=tracking_uri)
    policy = read_policy(folder / "policy.json")
    codes: dict[str, int] = {}
    # Each step logs its own stages too; these lines bracket them, so the log shows which step they are of.
    stages = StageTimes(_log)

    console.print(Rule("Train: earlier months only, tested on the latest four quarter-ends"))
    with stages.stage("train"):
        codes["train"] = train_command(folder, settings, truth, console, errors)
    if codes["train"] != 0:
        return PipelineDemoResult(codes, out / SCORES_FOLDER, out / MONITORING_FOLDER, tracking_uri)

    console.print(Rule("Promote: challenger against the rule baseline and the current champion"))
    with stages.stage("promote"):
        codes["promote"] = promote_command(settings, folder, console, errors)
    # A refused first promotion leaves no champion; the demo still scores with the challenger
    # it just trained, and says so, rather than hiding the refusal.
    model_spec = "champion" if codes["promote"] == 0 else "challenger"
    if model_spec != "champion":
        console.print("[yellow]No champion: scoring with the challenger for the demo only.[/yellow]")

    latest = policy.data_end
    console.print(Rule(f"Score: every household as of {format_month(latest)}, visit lists per township"))
    scores = out / SCORES_FOLDER
    with stages.stage("score"):
        codes["score"] = run_score_command(
            data=folder,
            as_of=latest,
            model_spec=model_spec,
            out=scores,
            tracking_uri=tracking_uri,
            explain="visit_list",
            horizon=horizon,
            console=console,
            errors=errors,
        )

    reference_month = _training_reference_month(policy, horizon)
    console.print(
        Rule(
            f"Monitor: latest quarter ({format_month(latest)}) against the training reference "
            f"({format_month(reference_month)})"
        )
    )
    monitoring = out / MONITORING_FOLDER
    with stages.stage("monitor"):
        codes["monitor"] = monitor_command(
            MonitorOptions(
                reference=f"{folder}@{format_month(reference_month)}",
                current=f"{folder}@{format_month(latest)}",
                out=monitoring,
                model=model_spec,
                tracking_uri=tracking_uri,
                horizon=horizon,
            ),
            console,
            errors,
        )

    console.print(Rule("Serve"))
    console.print(
        "Start the API for the case-management system on these results "
        "(keys come from a file or RELAPSE_API_KEYS, never from code):\n"
        f"  MLFLOW_TRACKING_URI={tracking_uri} RELAPSE_API_KEYS=<your-key> \\\n"
        f"  relapse serve --policy {folder / 'policy.json'} --runs {scores} --port 3000",
        highlight=False,
        soft_wrap=True,
    )
    database = f"sqlite:///{out / 'workbench.db'}"
    listed = scores / "scores.parquet"
    county = str(pd.read_parquet(listed, columns=["county_code"]).iloc[0, 0]) if listed.exists() else "CODE"
    console.print(
        "And the staff workbench (docs/workbench.md), on a SQLite file, nothing to start:\n"
        f"  relapse outcomes import --run {scores} --db {database}\n"
        f"  relapse users add analyst --role county --area {county} --password-stdin --db {database}\n"
        f"  relapse web --db {database} --port 8000",
        highlight=False,
        soft_wrap=True,
    )
    return PipelineDemoResult(codes, scores, monitoring, tracking_uri)


def _training_reference_month(policy: Policy, horizon: int) -> dt.date:
    """The last quarter-end before the four test months: what the model was fitted on."""
    months = quarter_ends(policy, horizon)
    return months[-5] if len(months) >= 5 else policy.data_start
