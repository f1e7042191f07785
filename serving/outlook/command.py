"""`relapse outlook` on the console: the county's expected threshold crossings, its townships, and 防贫保."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from relapse_risk.features.contract import parse_month
from relapse_risk.features.errors import ExitCode
from relapse_risk.features.loading import load_dataset
from relapse_risk.features.triggers import read_trigger
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .counts import Outlook, read_run, run_outlook
from .insurance import DEFAULT_CLAIMS_SHARE, estimate_claims

TOWNSHIPS_SHOWN = 12


def run_outlook_command(
    *,
    run: Path,
    out: Path,
    previous: Path | None = None,
    insurance: Path | None = None,
    data: Path | None = None,
    claims_share: float = DEFAULT_CLAIMS_SHARE,
    console: Console,
) -> int:
    """Write OUT (JSON) and print the outlook; expected failures raise and the CLI words them."""
    current = read_run(run)
    outlook = run_outlook(current, read_run(previous) if previous is not None else None)
    if insurance is not None:
        trigger = read_trigger(insurance)
        folder = data or Path(str(_input_folder(current.manifest)))
        dataset = load_dataset(folder)
        horizon = int(str(current.manifest.get("horizon_months") or 6))
        estimate = estimate_claims(
            dataset, trigger, parse_month(current.as_of), horizon, claims_share=claims_share
        )
        outlook.document["insurance"] = estimate.document
    _write_json(out, outlook.document)
    print_outlook(outlook, console)
    console.print(f"Written: {escape(str(out))}")
    return ExitCode.DONE


def _input_folder(manifest: dict[str, object]) -> object:
    described = manifest.get("input")
    return described.get("folder", "") if isinstance(described, dict) else ""


def _write_json(path: Path, document: dict[str, object]) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp"
    ) as f:
        json.dump(document, f, indent=2, ensure_ascii=False, allow_nan=False)
        staged = Path(f.name)
    os.replace(staged, path)


def _interval(described: dict[str, object]) -> str:
    return f"{described['expected']:,.0f}  [{described['low']:,.0f}, {described['high']:,.0f}]"


def print_outlook(outlook: Outlook, console: Console) -> None:
    document = outlook.document
    county = document["county"]
    interval = document["interval"]
    assert isinstance(county, dict) and isinstance(interval, dict)
    codes = ", ".join(county.get("codes", [])) or "county"
    console.print(
        f"[bold]Outlook of county {escape(codes)} at {document['as_of']}[/bold]: households "
        f"expected to reach a rule within {document['horizon_months']} months (90 % interval)"
    )
    console.print(
        f"  expected {_interval(county)} among {county['households']:,} scored households; "
        f"{county['triggered_now']:,} reach a rule now, {county['under_monitoring']:,} are under monitoring"
    )
    if "by_rule" in county:
        console.print("  by first rule: " + ", ".join(f"{k} {v:,.0f}" for k, v in county["by_rule"].items()))
    if "change" in county:
        change = county["change"]
        console.print(
            f"  change since {document['previous']['as_of']}: {change['change']:+,.0f} "  # type: ignore[index]
            f"[{change['low']:+,.0f}, {change['high']:+,.0f}]"
        )
    console.print(
        f"  interval: chance plus calibration drift ({interval['widening']} x the model's relative "
        f"count error {interval['relative_error']:.3f}); measured coverage of matured quarter-ends: "
        f"{interval['measured_coverage']:.0%} (docs/outlook.md)"
    )
    townships = document["townships"]
    assert isinstance(townships, dict)
    table = Table(title="Townships, most expected first", show_lines=False)
    for column in ("township", "scored", "expected", "90 % interval", "reach a rule now", "change"):
        table.add_column(column, justify="left" if column == "township" else "right")
    ranked = sorted(townships.items(), key=lambda item: -float(item[1]["expected"]))
    for code, described in ranked[:TOWNSHIPS_SHOWN]:
        change = described.get("change")
        table.add_row(
            code,
            f"{described['households']:,}",
            f"{described['expected']:,.1f}",
            f"[{described['low']:,.0f}, {described['high']:,.0f}]",
            f"{described['triggered_now']:,}",
            f"{change['change']:+,.1f}" if change else "",
        )
    console.print(table)
    if len(ranked) > TOWNSHIPS_SHOWN:
        console.print(f"  ... and {len(ranked) - TOWNSHIPS_SHOWN} more townships in the JSON")
    insurance = document.get("insurance")
    if isinstance(insurance, dict):
        claims, payout, test = insurance["expected_claims"], insurance["expected_payout"], insurance["test"]
        console.print(
            f"[bold]防贫保[/bold] ({escape(insurance['describes'])}, "
            f"{insurance['trigger']['payout']:,.0f} yuan a claim): expected claims {_interval(claims)} "
            f"among {insurance['households']:,} households, payout "
            f"{payout['expected']:,.0f} yuan [{payout['low']:,.0f}, {payout['high']:,.0f}]; the riskiest "
            f"{insurance['insured_share']:.1%} of households hold {insurance['claims_share']:.0%} "
            "of the expected claims"
        )
        tested = "; ".join(
            f"{t['as_of']}: {t['observed_claims']} claims, expected {t['expected_claims']:,.1f}"
            for t in test["quarters"]
        )
        console.print(
            f"  tested on held-out quarters: {tested} (relative error {test['relative_error']:.3f})"
        )
    for note in outlook.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
