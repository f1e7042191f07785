"""What ``relapse generate`` does once its options are parsed: generate, compare (docs/calibration.md)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .calibration import calibration_report, render_report
from .config import CountyConfig, TruthOptions, format_month
from .run import GenerationResult, default_truth_path, generate


def describe(config: CountyConfig) -> str:
    scenario = config.scenario
    parts = [
        f"{config.households:,} households",
        f"{format_month(config.start)}..{format_month(config.end)}",
        f"seed {config.seed}",
        f"county {config.profile.name} ({config.profile.county_code})",
    ]
    if scenario.lockdown is not None:
        depth = f" keeping {scenario.lockdown_depth:.0%} of migrants home" if scenario.lockdown_depth else ""
        parts.append(f"lockdown {scenario.lockdown}{depth}")
    if scenario.line_jump is not None:
        parts.append(f"lines +{scenario.line_jump.share:.0%} from {scenario.line_jump.year}")
    if scenario.line_changes:
        parts.append("lines " + ", ".join(f"{y}={v:,.0f}" for y, v in sorted(scenario.line_changes.items())))
    if scenario.disaster_year is not None:
        parts.append(f"disaster year {scenario.disaster_year}")
    if scenario.crop_price is not None:
        parts.append(f"crop prices x{scenario.crop_price.factor:g} in {scenario.crop_price.window}")
    if scenario.outage is not None:
        parts.append(f"reporting outage {scenario.outage} in {scenario.outage_share:.0%} of villages")
    return ", ".join(parts)


def _summary(result: GenerationResult) -> Group:
    # The folder on a line of its own: a title wraps at the narrow table's width and would fold it.
    table = Table()
    table.add_column("table", overflow="fold")
    table.add_column("rows", justify="right", overflow="fold")
    for name, rows in result.rows.items():
        table.add_row(name, f"{rows:,}")
    return Group(Text(f"Wrote {result.folder} in {result.seconds:,.1f} s"), table)


def generate_command(
    config: CountyConfig,
    folder: Path,
    truth: TruthOptions | None,
    truth_path: Path | None,
    report: bool,
    console: Console,
    errors: Console,
) -> int:
    """Generate the county and print what was written and how it compares; returns the exit code."""
    if truth is not None and truth_path is None:
        truth_path = default_truth_path(folder)
    try:
        months = truth.months(config) if truth is not None else ()
    except ValueError as exc:
        errors.print(f"[bold red]Cannot generate:[/bold red] {exc}", highlight=False)
        return 2
    console.print(f"Generating {describe(config)}", highlight=False)
    try:
        with console.status("Simulating ...") as status:
            result = generate(config, folder, truth, truth_path, progress=lambda text: status.update(text))
    except (FileExistsError, ValueError) as exc:
        errors.print(f"[bold red]Cannot generate:[/bold red] {exc}", highlight=False)
        return 2
    console.print(_summary(result))
    if truth is not None:
        console.print(
            f"Truth: p_true of every household at {', '.join(format_month(m) for m in months)} "
            f"from {truth.simulations} re-simulations of the next {truth.horizon} months each, "
            f"written beside the folder to {result.truth}",
            highlight=False,
        )
    else:
        console.print("No truth file (--no-truth).")
    if report:
        with console.status("Comparing with docs/calibration.md ..."):
            figures = calibration_report(folder, horizon=truth.horizon if truth is not None else 6)
        console.print(render_report(figures))
    return 0
