"""The `relapse` command: one subcommand per job a county analyst or data scientist runs."""

from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from .features.errors import ExitCode, MissingExtraError, RelapseRiskError, exit_code_lines

if TYPE_CHECKING:
    from .monitoring.monitor import MonitorOptions


class _ExitCodeGroup(TyperGroup):
    """Every subcommand's failures end in one exit code of :class:`ExitCode`, whoever raised them.

    An expected failure (:class:`RelapseRiskError`) that a subcommand did not
    word itself prints its message alone and exits CANNOT_RUN; anything else is
    a bug, so its traceback is printed and the exit code says UNEXPECTED. Here,
    in the command group rather than in ``main``, so that the installed
    ``relapse`` script and tests that invoke ``app`` behave the same.
    """

    def invoke(self, ctx: typer.Context) -> Any:  # noqa: ANN401 - whatever the subcommand returns
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # exit codes chosen by a subcommand, usage errors (BadParameter), --help
        except RelapseRiskError as exc:
            from rich.markup import escape

            from .console import error_console

            error_console().print(f"[bold red]Cannot run:[/bold red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(code=ExitCode.CANNOT_RUN) from None
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr, flush=True)
            raise typer.Exit(code=ExitCode.INTERRUPTED) from None
        except Exception:  # noqa: BLE001 - the point: a bug must never look like an expected failure
            print(traceback.format_exc(), file=sys.stderr, end="", flush=True)
            print(
                f"Unexpected error (exit {int(ExitCode.UNEXPECTED)}): this is a bug; "
                "please report it with the traceback above.",
                file=sys.stderr,
                flush=True,
            )
            raise typer.Exit(code=ExitCode.UNEXPECTED) from None


EXTRAS = {
    "serve": ("bentoml",),
    "train": ("optuna", "matplotlib", "shap"),
    "monitor": ("evidently",),
    "web": ("argon2", "uvicorn", "multipart"),
    "spark": ("pyspark",),
}
"""The modules each extra of pyproject.toml installs that some command imports."""


def _require_extras(command: str, *extras: str) -> None:
    """Say which extra to install before a command fails on an import deep inside a library.

    Checked without importing (a module's spec is enough), so the check costs
    nothing when the extra is there.
    """
    from importlib.util import find_spec

    for extra in extras:
        missing = [module for module in EXTRAS[extra] if find_spec(module) is None]
        if missing:
            raise MissingExtraError(
                f"`relapse {command}` needs the {extra} extra ({', '.join(missing)} is not installed): "
                f"pip install 'relapse-risk[{extra}]'"
            )


EXIT_CODES_HELP = "Exit codes:\n\n" + "\n".join(exit_code_lines())
"""The exit-code table under ``relapse --help``, made from :class:`ExitCode` so the two never differ."""

app = typer.Typer(
    cls=_ExitCodeGroup,
    epilog=EXIT_CODES_HELP,
    name="relapse",
    help=(
        "Early warning of households at risk of falling back into poverty (防止返贫监测).\n\n"
        "Typical quarter: `relapse validate DATA` checks a county's export, "
        "`relapse labels` audits what the rules say, and later jobs score and rank "
        "households for home visits."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _before_every_command(ctx: typer.Context) -> None:
    """Log the stages of the subcommand about to run to stderr, each line stamped with the time.

    Here, in the entry point, rather than at import: importing the package never
    touches a program's logging.
    """
    from .console import log_stages_to_stderr

    if ctx.invoked_subcommand:
        log_stages_to_stderr(ctx.invoked_subcommand)


@app.command()
def validate(
    data: str = typer.Argument(..., help="Dataset folder: policy.json and the contract's tables."),
    out: str = typer.Option("", "--out", help="Report folder [default: DATA-validation beside DATA]."),
) -> None:
    """Check a dataset folder against the data contract and write the rejects report.

    Exit 0 when the dataset is usable (rows that break a rule are rejected and
    reported), 2 when it cannot be used at all.
    """
    import logging
    from pathlib import Path

    from rich.markup import escape

    from .console import error_console, output_console
    from .features.dataset import DatasetError, load_dataset
    from .features.stages import StageTimes
    from .features.validation import (
        default_report_dir,
        summary_renderables,
        validation_summary,
        write_validation_report,
    )

    folder = Path(data)
    report_dir = Path(out) if out else default_report_dir(folder)
    if report_dir.resolve().is_relative_to(folder.resolve()):
        raise typer.BadParameter(
            "the report must not be written inside the dataset folder", param_hint="--out"
        )
    console, errors = output_console(), error_console()
    stages = StageTimes(logging.getLogger(__name__))
    try:
        with stages.stage("load and validate"), console.status(f"Checking {folder} ..."):
            dataset = load_dataset(folder)
    except DatasetError as exc:
        errors.print(f"[bold red]Dataset cannot be used:[/bold red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=2) from None
    with stages.stage("write the report"):
        summary = validation_summary(dataset)
        written = write_validation_report(dataset, summary, report_dir)
    for part in summary_renderables(summary, written):
        console.print(part)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; loopback unless proxied."),
    port: int = typer.Option(3000, "--port", min=1, max=65535, help="TCP port."),
    policy: str = typer.Option("", "--policy", help="policy.json for /score (env RELAPSE_POLICY_FILE)."),
    model: str = typer.Option(
        "", "--model", help="Model URI (env RELAPSE_MODEL_URI; default models:/relapse-risk@champion)."
    ),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (env MLFLOW_TRACKING_URI)."),
    runs: str = typer.Option("", "--runs", help="OUT folder(s) of `relapse score` (env RELAPSE_RUNS_DIR)."),
    request_log: str = typer.Option(
        "", "--request-log", help="JSON-lines request log (env RELAPSE_REQUEST_LOG)."
    ),
    api_keys_file: str = typer.Option(
        "", "--api-keys-file", help="API keys, one a line (env RELAPSE_API_KEYS_FILE or RELAPSE_API_KEYS)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes, each with its own model."),
) -> None:
    """Serve the case-management API (BentoML): /score, /visit_list, /household, /model_info.

    Keys come from RELAPSE_API_KEYS or a key file, never from the command line.
    Exit 2 when a setting would stop the server from starting, 5 when a worker
    could not load the model after the start and the server stopped.
    """
    _require_extras("serve", "serve")
    import os
    from pathlib import Path

    from .console import error_console, output_console
    from .serving.api.launch import (
        ServeOptions,
        ServeSettingsError,
        check_server_settings,
        exec_server,
        is_loopback,
        server_environment,
    )

    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        policy_file=Path(policy) if policy else None,
        model_uri=model or None,
        tracking_uri=tracking_uri or None,
        runs_dir=Path(runs) if runs else None,
        request_log=Path(request_log) if request_log else None,
        api_keys_file=Path(api_keys_file) if api_keys_file else None,
    )
    console, errors = output_console(), error_console()
    environment = server_environment(os.environ, options)
    try:
        settings = check_server_settings(environment)
    except ServeSettingsError as exc:
        errors.print(f"[bold red]Cannot serve:[/bold red] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    if not is_loopback(host):
        errors.print(
            f"[yellow]Listening on {host}: keys travel in clear text unless a TLS proxy is in front.[/yellow]"
        )
    console.print(
        f"Serving [bold]{settings.model_uri}[/bold] on http://{host}:{port} "
        f"(policy {settings.policy_file}, runs {settings.runs_dir or 'none'}, log {settings.request_log})",
        highlight=False,
    )
    exec_server(options, environment)


@app.command()
def score(
    data: str = typer.Option(..., "--data", help="Dataset folder to score (policy.json and the tables)."),
    as_of: str = typer.Option(..., "--as-of", help="Last month of data to use, YYYY-MM."),
    model: str = typer.Option(
        "champion", "--model", help="Registry alias (champion), version number (3) or models:/ URI."
    ),
    out: str = typer.Option(..., "--out", help="Run folder to write (replaced whole when the run succeeds)."),
    tracking_uri: str = typer.Option(
        "", "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlruns)."
    ),
    explain: str = typer.Option("visit_list", "--explain", help="Reasons for: visit_list, all or none."),
    horizon: int = typer.Option(0, "--horizon", help="Months ahead (0: the model's horizon, else 6)."),
    engine: str = typer.Option(
        "local", "--engine", help="local: one dataset folder; spark: a province, one run folder per county."
    ),
    spark_master: str = typer.Option(
        "", "--spark-master", help="Spark master URL (default: SPARK_MASTER, else local[*]); --engine spark."
    ),
) -> None:
    """Score every household at an as-of month; write scores, manifest and visit lists.

    Exit 0 on success, 2 when the dataset, model or output folder cannot be
    used (nothing is written then), 130 when interrupted (OUT is unchanged).
    With --engine spark, DATA is a province (docs/province.md) and OUT gets one
    run folder per county and province_summary.json; exit 6 when some counties failed.
    """
    from pathlib import Path

    from .console import error_console, output_console
    from .features.contract import parse_month
    from .serving.batch.command import run_score_command

    try:
        month = parse_month(as_of)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None
    if explain not in ("visit_list", "all", "none"):
        raise typer.BadParameter("expected visit_list, all or none", param_hint="--explain")
    if engine not in ("local", "spark"):
        raise typer.BadParameter("expected local or spark", param_hint="--engine")
    common = {
        "data": Path(data),
        "as_of": month,
        "model_spec": model,
        "out": Path(out),
        "tracking_uri": tracking_uri or None,
        "explain": explain,
        "horizon": horizon or None,
        "console": output_console(),
        "errors": error_console(),
    }
    if engine == "spark":
        _require_extras("score --engine spark", "spark")
        from .serving.province.command import run_province_score_command

        code = run_province_score_command(master=spark_master or None, **common)  # type: ignore[arg-type]
    else:
        code = run_score_command(**common)  # type: ignore[arg-type]
    raise typer.Exit(code=code)


@app.command()
def features(
    catalogue: bool = typer.Option(False, "--catalogue", help="Print the feature catalogue instead."),
    fmt: str = typer.Option("table", "--format", help="Catalogue format: table, csv or json."),
    data: str = typer.Option("", "--data", help="Dataset folder (policy.json and the tables)."),
    as_of: str = typer.Option("", "--as-of", help="As-of month, YYYY-MM: only data up to it is used."),
    out: str = typer.Option("", "--out", help="Feature table to write: FILE.parquet or FILE.csv."),
) -> None:
    """Build point-in-time household features at an as-of month, or print the feature catalogue.

    Exit 2 when the dataset cannot be used or the as-of month is outside it.
    """
    from pathlib import Path

    from .console import error_console, output_console
    from .features.catalogue import CATALOGUE_VERSION, catalogue_rich_table, catalogue_text

    console, errors = output_console(), error_console()
    if catalogue:
        if fmt == "table":
            console.print(catalogue_rich_table())
        elif fmt in ("csv", "json"):
            typer.echo(catalogue_text(fmt), nl=False)  # type: ignore[arg-type]
        else:
            raise typer.BadParameter("expected table, csv or json", param_hint="--format")
        return
    missing = [flag for flag, value in (("--data", data), ("--as-of", as_of), ("--out", out)) if not value]
    if missing:
        raise typer.BadParameter(f"give {', '.join(missing)} (or --catalogue)")

    from .features.contract import format_month, parse_month
    from .features.dataset import load_dataset
    from .features.history import build_features, write_feature_table

    try:
        month = parse_month(as_of)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None
    if Path(out).suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("write FILE.parquet or FILE.csv", param_hint="--out")
    try:
        with console.status(f"Loading {data} ..."):
            dataset = load_dataset(Path(data))
        with console.status(f"Building features at {format_month(month)} ..."):
            table = build_features(dataset, month)
    except RelapseRiskError as exc:  # a broken folder, an as-of month outside the data
        errors.print(f"[bold red]Cannot build features:[/bold red] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    write_feature_table(table, Path(out))
    console.print(
        f"Wrote {len(table):,} households x {table.shape[1] - 1} features "
        f"(catalogue {CATALOGUE_VERSION}, as of {format_month(month)}) to {out}",
        highlight=False,
    )
    if dataset.rejects:
        errors.print(
            f"[yellow]{len(dataset.rejects):,} rejected row(s) were left out; "
            f"run `relapse validate {data}` for the report.[/yellow]",
            highlight=False,
        )


@app.command()
def explain(
    model: str = typer.Option("", "--model", help="Model folder or MLflow URI (models:/NAME@champion)."),
    features: str = typer.Option("", "--features", help="Table from `relapse features`: .parquet or .csv."),
    household: Annotated[
        list[str] | None, typer.Option("--household", help="Household id; repeat for more.")
    ] = None,
    top: int = typer.Option(3, "--top", min=1, max=10, help="Reasons per household."),
    limit: int = typer.Option(20, "--limit", min=1, help="Households to print when none are named."),
    out: str = typer.Option("", "--out", help="Write all explained rows: FILE.csv (UTF-8, BOM) or .parquet."),
    reasons: bool = typer.Option(False, "--reasons", help="Print the reason codes and measures instead."),
) -> None:
    """Why a household's risk is high: its top reasons in Chinese and English, with the suggested measures."""
    from pathlib import Path

    import pandas as pd
    from rich.table import Table

    from .console import error_console, output_console

    console, errors = output_console(), error_console()
    if reasons:
        from .models.reasons import reason_catalogue

        table = Table(show_lines=True)
        for heading in ("code", "family", "measure", "措施", "evidence"):
            table.add_column(heading, overflow="fold")
        for row in reason_catalogue():
            table.add_row(row["code"], row["family"], row["measure"], row["measure_zh"], row["evidence"])
        console.print(table)
        return
    missing = [flag for flag, value in (("--model", model), ("--features", features)) if not value]
    if missing:
        raise typer.BadParameter(f"give {', '.join(missing)} (or --reasons)")
    if out and Path(out).suffix.lower() not in (".csv", ".parquet"):
        raise typer.BadParameter("write FILE.csv or FILE.parquet", param_hint="--out")

    from .models.explain import explain_households
    from .models.pyfunc import load_model_reference

    path = Path(features)
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("read FILE.parquet or FILE.csv", param_hint="--features")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"household_id": str}, encoding="utf-8-sig")
        with console.status(f"Loading model {model} ..."):
            risk_model = load_model_reference(model)
        explained = explain_households(risk_model, frame, household or (), top=top)
    except (OSError, RelapseRiskError) as exc:  # no such file or model, features that do not fit it
        errors.print(f"[bold red]Cannot explain:[/bold red] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    if out:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix.lower() == ".csv":
            explained.to_csv(target, index=False, encoding="utf-8-sig")
        else:
            explained.to_parquet(target, index=False)
    shown = explained if household else explained.head(limit)
    table = Table(show_lines=True)
    table.add_column("household", no_wrap=True, overflow="fold")
    table.add_column("risk", no_wrap=True, overflow="fold")
    for i in range(1, top + 1):
        table.add_column(f"reason {i}", overflow="fold")
    for _, row in shown.iterrows():
        cells = []
        for i in range(1, top + 1):
            text = row[f"reason_{i}_zh"]
            if text is None:
                cells.append("")
                continue
            english, measure = row[f"reason_{i}_en"], row[f"reason_{i}_measure_zh"]
            cells.append(f"{text}\n[dim]{english}[/dim]\n→ {measure}")
        table.add_row(str(row["household_id"]), f"{row['risk_score']:.3f}", *cells)
    console.print(table)
    if out:
        console.print(f"Wrote {len(explained):,} explained households to {out}", highlight=False)


@app.command()
def labels(
    data: str = typer.Option(..., "--data", help="Dataset folder (policy.json and the tables)."),
    as_of: str = typer.Option(..., "--as-of", help="As-of month t, YYYY-MM."),
    horizon: int = typer.Option(
        6, "--horizon", min=1, help="Months ahead H: label 1 when a rule fires in t+1 .. t+H."
    ),
    out: str = typer.Option(..., "--out", help="Labels of every household: FILE.parquet or FILE.csv."),
) -> None:
    """Write what the monitoring rules say about every household at an as-of month, for audit.

    Eligibility, the rule firing now, the margin to the line and the label
    (a rule fires within the horizon) with its lead time. Exit 2 when the
    dataset cannot be used or the as-of month is outside it; a horizon past
    the end of the data leaves the label empty with a warning.
    """
    from pathlib import Path

    from .console import error_console, output_console
    from .features.contract import parse_month
    from .labels_command import run_labels_command

    try:
        month = parse_month(as_of)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--as-of") from None
    code = run_labels_command(Path(data), month, horizon, Path(out), output_console(), error_console())
    raise typer.Exit(code=code)


@app.command()
def generate(
    out: str = typer.Option(..., "--out", help="Dataset folder to write (must be new or empty)."),
    households: int = typer.Option(20_000, "--households", min=1, help="Households in the county."),
    start: str = typer.Option("2021-01", "--start", help="First month of data, YYYY-MM."),
    months: int = typer.Option(48, "--months", min=1, max=240, help="Months of data."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed: the same seed writes the same bytes."),
    profile: str = typer.Option("hill_mixed", "--profile", help="hill_mixed, plains_wage or mountain_agri."),
    lockdown: str = typer.Option("", "--lockdown", help="Epidemic lockdown, e.g. 2022-04:2022-06."),
    lockdown_depth: float = typer.Option(
        0.0, "--lockdown-depth", min=0, max=1, help="Share of migrants kept home (0: the default 0.75)."
    ),
    crop_price: str = typer.Option(
        "", "--crop-price", help="Crop prices fall to a factor in a window, e.g. 2023-06:2023-11=0.5."
    ),
    line: Annotated[
        list[str] | None, typer.Option("--line", help="A year's monitoring line, e.g. 2023=8000; repeatable.")
    ] = None,
    line_jump: str = typer.Option("", "--line-jump", help="Raise every line from a year on, e.g. 2023:0.2."),
    disaster_year: int = typer.Option(0, "--disaster-year", help="Year of many village-wide disasters."),
    outage: str = typer.Option("", "--outage", help="Reporting outage window, e.g. 2023-01:2023-06."),
    outage_share: float = typer.Option(0.4, "--outage-share", min=0, max=1, help="Share of villages dark."),
    no_truth: bool = typer.Option(False, "--no-truth", help="Skip the oracle's truth file."),
    truth: str = typer.Option("", "--truth", help="Truth file [default: OUT.truth.parquet beside OUT]."),
    as_of: Annotated[
        list[str] | None,
        typer.Option("--as-of", help="Truth as-of month YYYY-MM; repeatable [default: last 4 quarter-ends]"),
    ] = None,
    simulations: int = typer.Option(200, "--simulations", min=1, help="Re-simulations per household."),
    horizon: int = typer.Option(6, "--horizon", min=1, max=24, help="Months ahead H of p_true."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes for the oracle."),
    chunk: int = typer.Option(100_000, "--chunk-households", min=1, help="Households simulated at once."),
    county_code: str = typer.Option("", "--county-code", help="6-digit county code [default: profile's]."),
    report: bool = typer.Option(
        True, "--report/--no-report", help="Compare with docs/calibration.md afterwards."
    ),
) -> None:
    """Generate a county's dataset folder (and the oracle's truth file beside it), then compare it with
    the published figures of docs/calibration.md. Exit 2 on bad options or an existing non-empty OUT."""
    from pathlib import Path

    from pydantic import ValidationError

    from .console import error_console, output_console
    from .generator.command import generate_command
    from .generator.config import (
        CountyConfig,
        Scenario,
        TruthOptions,
        parse_crop_price,
        parse_line_jump,
        parse_line_option,
        parse_month,
        parse_window,
    )

    try:
        scenario = Scenario(
            profile=profile,
            lockdown=parse_window(lockdown) if lockdown else None,
            lockdown_depth=lockdown_depth or None,
            crop_price=parse_crop_price(crop_price) if crop_price else None,
            line_changes=dict(parse_line_option(text) for text in line or ()),
            line_jump=parse_line_jump(line_jump) if line_jump else None,
            disaster_year=disaster_year or None,
            outage=parse_window(outage) if outage else None,
            outage_share=outage_share,
        )
        config = CountyConfig(
            households=households,
            start=start,
            months=months,
            seed=seed,
            scenario=scenario,
            chunk_households=chunk,
            county_code=county_code or None,
        )
        options = (
            None
            if no_truth
            else TruthOptions(
                as_of=tuple(parse_month(t) for t in as_of) if as_of else None,
                horizon=horizon,
                simulations=simulations,
                workers=workers,
            )
        )
    except (ValueError, ValidationError) as exc:
        raise typer.BadParameter(str(exc)) from None
    code = generate_command(
        config,
        Path(out),
        options,
        Path(truth) if truth else None,
        report,
        output_console(),
        error_console(),
    )
    raise typer.Exit(code=code)


@app.command()
def demo(
    out: str = typer.Option(..., "--out", help="Folder for the county, its truth file and the metrics."),
    households: int = typer.Option(
        20_000, "--households", min=100, help="Households in the generated county."
    ),
    seed: int = typer.Option(7, "--seed", min=0, help="Seed of the generated county."),
    reference_only: bool = typer.Option(
        False, "--reference-only", help="Stop after the rule baseline and oracle table (no model)."
    ),
) -> None:
    """The quarter's whole job on a generated county, end to end.

    Generates the county (OUT/county, truth beside it), validates it, shows the
    rule baseline next to the oracle, then trains, promotes, scores the latest
    month with visit lists (OUT/scores), monitors the latest quarter against the
    training reference (OUT/monitoring), and prints the command that starts the
    API. Exit 2 when OUT holds a county generated with other settings or a step
    cannot run.
    """
    if not reference_only:
        _require_extras("demo", "train", "monitor")  # before the county is generated
    from pathlib import Path

    from .console import error_console, output_console
    from .demo import DemoFolderError, run_demo
    from .features.dataset import DatasetError
    from .generator.config import CountyConfig, TruthOptions
    from .generator.run import generate

    def generate_county(folder: Path, truth: Path) -> None:
        generate(CountyConfig(households=households, seed=seed), folder, TruthOptions(), truth_path=truth)

    console, errors = output_console(), error_console()
    try:
        reference = run_demo(Path(out), {"households": households, "seed": seed}, generate_county, console)
    except (DemoFolderError, DatasetError) as exc:
        errors.print(f"[bold red]Demo cannot run:[/bold red] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    if reference_only:
        return
    from .pipeline_demo import run_pipeline_demo

    pipeline = run_pipeline_demo(Path(out), reference.folder, reference.truth, console, errors)
    if not pipeline.ok:
        raise typer.Exit(code=2)


def _training_settings(**overrides: object):  # noqa: ANN202 - TrainingSettings, imported lazily
    from .training.config import TrainingSettings

    return TrainingSettings(**{k: v for k, v in overrides.items() if v not in (None, "")})


@app.command()
def train(
    data: str = typer.Option(..., "--data", help="Dataset folder (policy.json and the tables)."),
    horizon: int = typer.Option(6, "--horizon", min=1, max=24, help="Months ahead H of the label."),
    tune: float = typer.Option(0.0, "--tune", min=0, help="Minutes of hyper-parameter search (0: none)."),
    truth: str = typer.Option("", "--truth", help="Oracle truth file (default: DATA.truth.parquet if any)."),
    seed: int = typer.Option(20240601, "--seed", help="Seed of every random choice."),
    threads: int = typer.Option(2, "--threads", min=1, help="LightGBM threads (at most the free cores)."),
    monthly_rows: bool = typer.Option(
        True,
        "--monthly-rows/--quarter-end-rows",
        help="Train and validate on every month-end (default), or on quarter-ends only like the test.",
    ),
    validation_months: int = typer.Option(
        1, "--validation-months", min=1, help="As-of months for early stopping and calibration."
    ),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: env or ./mlruns)."),
) -> None:
    """Train on earlier quarter-ends, test on the latest four, register the model as `challenger`.

    Exit 2 when the folder has too little history or too few positives to train honestly.
    """
    _require_extras("train", "train")
    from pathlib import Path

    from .console import error_console, output_console
    from .training.commands import train_command

    settings = _training_settings(
        horizon=horizon,
        tune_minutes=tune,
        seed=seed,
        threads=threads,
        monthly_training_rows=monthly_rows,
        validation_months=validation_months,
        tracking_uri=tracking_uri,
    )
    truth_path = Path(truth) if truth else None
    code = train_command(Path(data), settings, truth_path, output_console(), error_console())
    raise typer.Exit(code=code)


@app.command()
def evaluate(
    data: str = typer.Option(..., "--data", help="Any dataset folder that keeps the contract."),
    model: str = typer.Option("champion", "--model", help="Registry alias, version number or models:/ URI."),
    truth: str = typer.Option("", "--truth", help="Oracle truth file (default: DATA.truth.parquet if any)."),
    out: str = typer.Option("", "--out", help="JSON report (default: ./evaluation-<DATA name>.json)."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: env or ./mlruns)."),
    outcomes: str = typer.Option(
        "", "--outcomes", help="Export of `relapse outcomes export`: add the precision on visited households."
    ),
) -> None:
    """Headline metrics (docs/rules-and-labels.md) for model, rule baseline and oracle on the last labelled
    quarter-ends of the folder.

    Also the subgroup table (recall@k and false-positive rate by group, flagged below 0.8x overall).
    """
    _require_extras("evaluate", "train")
    from pathlib import Path

    from .console import error_console, output_console
    from .training.commands import evaluate_command

    folder = Path(data)
    target = Path(out) if out else Path.cwd() / f"evaluation-{folder.resolve().name}.json"
    code = evaluate_command(
        folder,
        _training_settings(tracking_uri=tracking_uri),
        model,
        Path(truth) if truth else None,
        target,
        output_console(),
        error_console(),
    )
    if outcomes and code == 0:
        from .training.visit_feedback import add_to_report, precision_table

        output_console().print(precision_table(add_to_report(target, Path(outcomes))))
    raise typer.Exit(code=code)


@app.command()
def promote(
    data: str = typer.Option(
        "", "--data", help="Folder to re-score both models on when their test months differ."
    ),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: env or ./mlruns)."),
) -> None:
    """Move `champion` to the challenger if it beats the baseline and the champion and passes the checks.

    Prints the comparison; exit 1 with the reasons when refused, 2 when it cannot be judged.
    """
    _require_extras("promote", "train")
    from pathlib import Path

    from .console import error_console, output_console
    from .training.commands import promote_command

    code = promote_command(
        _training_settings(tracking_uri=tracking_uri),
        Path(data) if data else None,
        output_console(),
        error_console(),
    )
    raise typer.Exit(code=code)


@app.command()
def monitor(
    reference: str = typer.Option(
        ..., "--reference", help="Dataset folder (DIR or DIR@YYYY-MM), scored run folder or request log."
    ),
    current: str = typer.Option(..., "--current", help="The same forms as --reference: what to check."),
    out: str = typer.Option(..., "--out", help="Folder for report.html and summary.json."),
    model: str = typer.Option(
        "", "--model", help="Alias, version, models:/ URI or model folder; none: skip (default: champion)."
    ),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: env or ./mlruns)."),
    horizon: int = typer.Option(6, "--horizon", min=1, max=24, help="Months ahead H of the labels."),
    thresholds: str = typer.Option("", "--thresholds", help="JSON file overriding monitoring thresholds."),
    mlflow_log: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log metrics and report to MLflow."),
    outcomes: str = typer.Option(
        "",
        "--outcomes",
        help="Export of `relapse outcomes export`: what the visits found, by township and reason.",
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local: one county; spark: provinces, each county by a Spark task."
    ),
    spark_master: str = typer.Option(
        "", "--spark-master", help="Spark master URL (default: SPARK_MASTER, else local[*]); --engine spark."
    ),
) -> None:
    """Drift, data quality, named scenarios and matured performance of CURRENT against REFERENCE.

    Writes OUT/report.html and OUT/summary.json. Exit 0 for ok and warning, 3 for alert,
    2 when monitoring could not run. With --engine spark, REFERENCE and CURRENT are
    province folders (one folder per county), OUT gets one folder per county and
    province_monitor.json; exit 6 when some counties failed and none alerted.
    """
    _require_extras("monitor", "monitor")
    from pathlib import Path

    from .console import error_console, output_console
    from .monitoring.command import monitor_command, read_thresholds
    from .monitoring.monitor import FAILED, MonitorOptions

    errors = error_console()
    try:
        levels = read_thresholds(Path(thresholds) if thresholds else None)
    except RelapseRiskError as exc:
        errors.print(f"[bold red]Monitoring could not run:[/bold red] {exc}", highlight=False)
        raise typer.Exit(code=FAILED) from None
    options = MonitorOptions(
        reference=reference,
        current=current,
        out=Path(out),
        model=model,
        tracking_uri=tracking_uri or None,
        horizon=horizon,
        log_to_mlflow=mlflow_log,
        thresholds=levels,
    )
    if engine == "spark":
        if outcomes:
            raise typer.BadParameter("--outcomes is for one county (--engine local)", param_hint="--outcomes")
        _require_extras("monitor --engine spark", "spark")
        raise typer.Exit(code=_monitor_province(options, spark_master or None))
    if engine != "local":
        raise typer.BadParameter("expected local or spark", param_hint="--engine")
    code = monitor_command(options, output_console(), errors)
    if outcomes and code != FAILED:
        from .monitoring.visit_feedback import visit_feedback_command

        feedback = visit_feedback_command(Path(outcomes), current, Path(out), output_console(), errors)
        code = code or feedback  # an alert (3) outranks an unreadable outcomes file
    raise typer.Exit(code=code)


def _monitor_province(options: MonitorOptions, master: str | None) -> int:
    """`relapse monitor --engine spark`: the province table on the console, the exit code."""
    from rich.markup import escape
    from rich.table import Table

    from .console import error_console, output_console
    from .monitoring.province import monitor_province, province_exit_code, write_province_monitor
    from .serving.province.spark import session_running, spark_master, spark_session

    owned = not session_running()
    spark = spark_session(spark_master(master), app_name="relapse-province-monitor")
    try:
        outcomes = monitor_province(spark, options)
    except RelapseRiskError as exc:
        error_console().print(f"[bold red]Monitoring could not run:[/bold red] {escape(str(exc))}")
        return ExitCode.CANNOT_RUN
    finally:
        if owned:
            spark.stop()
    path = write_province_monitor(outcomes, options)
    table = Table(title=f"Province monitoring: {options.current} against {options.reference}")
    for heading in ("county", "status", "alerts", "warnings", "reason"):
        table.add_column(heading, overflow="fold")
    for o in outcomes:
        table.add_row(
            o.county, o.status, o.alerts, o.warnings, escape(o.reason.splitlines()[0] if o.reason else "")
        )
    output_console().print(table)
    output_console().print(f"Province table: {path}", highlight=False)
    return int(province_exit_code(outcomes))


@app.command()
def outlook(
    run: str = typer.Option(..., "--run", help="OUT folder of `relapse score` to forecast from."),
    out: str = typer.Option(..., "--out", help="JSON file to write (replaced whole)."),
    previous: str = typer.Option("", "--previous", help="An earlier run folder: the change against it."),
    insurance: str = typer.Option(
        "", "--insurance", help="防贫保 trigger and payout, a .toml or .json file (docs/outlook.md)."
    ),
    data: str = typer.Option(
        "", "--data", help="Dataset folder for --insurance (default: the run's input folder)."
    ),
    claims_share: float = typer.Option(
        0.9, "--claims-share", min=0.01, max=1.0, help="Share of expected claims the insured base must hold."
    ),
) -> None:
    """Expected households reaching a rule, with 90 % intervals, by county, township, village and rule.

    With --previous, the change against an earlier run; with --insurance, the expected
    防贫保 claims and payout and the insured share they need. Exit 0 on success, 2 when
    a run folder, the trigger file or the dataset cannot be used.
    """
    from pathlib import Path

    from .console import output_console
    from .serving.outlook.command import run_outlook_command

    code = run_outlook_command(
        run=Path(run),
        out=Path(out),
        previous=Path(previous) if previous else None,
        insurance=Path(insurance) if insurance else None,
        data=Path(data) if data else None,
        claims_share=claims_share,
        console=output_console(),
    )
    raise typer.Exit(code=code)


@app.command()
def retrain(
    data: str = typer.Option(..., "--data", help="The fresh dataset folder monitoring was run on."),
    horizon: int = typer.Option(6, "--horizon", min=1, max=24, help="Months ahead H of the label."),
    seed: int = typer.Option(20240601, "--seed", help="Seed of every random choice."),
    threads: int = typer.Option(2, "--threads", min=1, help="LightGBM threads."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: env or ./mlruns)."),
) -> None:
    """Train on fresh data after a monitoring alert; register a `challenger`, never promote it.

    `relapse promote` decides afterwards. Exit 2 when the folder cannot be trained on.
    """
    _require_extras("retrain", "train")
    from pathlib import Path

    from .console import error_console, output_console
    from .training.commands import train_command

    settings = _training_settings(horizon=horizon, seed=seed, threads=threads, tracking_uri=tracking_uri)
    code = train_command(Path(data), settings, None, output_console(), error_console())
    raise typer.Exit(code=code)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="TCP port."),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store (default: env or ./mlruns)."),
) -> None:
    """Open the MLflow UI on the runs and registry that `relapse train` writes."""
    _require_extras("ui", "train")
    from .console import error_console, output_console
    from .training.commands import ui_command

    settings = _training_settings(tracking_uri=tracking_uri)
    code = ui_command(settings, host, port, output_console(), error_console())
    raise typer.Exit(code=code)


from .workbench_cli import outcomes_app, users_app, web  # noqa: E402 - the workbench's commands, after the others

app.command()(web)
app.add_typer(users_app, name="users")
app.add_typer(outcomes_app, name="outcomes")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
