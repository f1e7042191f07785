"""`relapse web`, `relapse users ...` and `relapse outcomes ...`: the staff workbench (docs/workbench.md).

Kept apart from cli.py so the workbench's commands read together; cli.py adds
them to the `relapse` command. Imports are lazy, as everywhere in the command
line: `relapse --help` must not load SQLAlchemy.
"""

from __future__ import annotations

import sys

import typer

DB_HELP = "Database URL: sqlite:///FILE or postgresql://USER@HOST/DB (env RELAPSE_WORKBENCH_DB; default sqlite:///workbench.db)."

users_app = typer.Typer(
    help="Staff accounts of the workbench: add, list, disable, enable.", no_args_is_help=True
)
outcomes_app = typer.Typer(
    help="The workbench's database: import a run's visit list, export the visit outcomes.",
    no_args_is_help=True,
)


def _require_web() -> None:
    from .cli import _require_extras

    _require_extras("web", "web")


def web(
    db: str = typer.Option("", "--db", help=DB_HELP),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; loopback unless behind a TLS proxy."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    secure_cookies: bool = typer.Option(
        False, "--secure-cookies/--no-secure-cookies", help="Mark cookies Secure (behind HTTPS)."
    ),
) -> None:
    """Serve the workbench for county and township staff: visit lists, household pages, visit outcomes.

    Migrates the database first. Import lists with `relapse outcomes import`, add staff with
    `relapse users add`.
    """
    _require_web()
    from .console import output_console
    from .serving.workbench.command import resolve_db_url, serve

    url = resolve_db_url(db)
    output_console().print(f"Workbench on http://{host}:{port} (database {_shown(url)})", highlight=False)
    serve(url, host, port, secure_cookies)


def _shown(url: str) -> str:
    """The URL without its password, for the console."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name: letters, digits and _.@- only."),
    role: str = typer.Option(..., "--role", help="county (sees the county) or township (sees one township)."),
    area: str = typer.Option(..., "--area", help="County code (6 digits) or township code (9 digits)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of standard input."
    ),
    db: str = typer.Option("", "--db", help=DB_HELP),
) -> None:
    """Add a staff account. The password comes from standard input, never from the command line."""
    _require_web()
    from .serving.workbench.command import add_user, resolve_db_url

    if not password_stdin:
        raise typer.BadParameter(
            "pass --password-stdin and the password on standard input", param_hint="--password-stdin"
        )
    password = sys.stdin.readline().rstrip("\r\n")
    add_user(resolve_db_url(db), name, role, area, password)
    typer.echo(f"Added {name} ({role} {area}).")


@users_app.command("list")
def users_list(db: str = typer.Option("", "--db", help=DB_HELP)) -> None:
    """Every account: role, area, active or disabled, locked until."""
    _require_web()
    from rich.table import Table

    from .console import output_console
    from .serving.workbench.command import list_users, resolve_db_url

    table = Table()
    for heading in ("user", "role", "area", "active", "locked until", "created"):
        table.add_column(heading)
    for user in list_users(resolve_db_url(db)):
        table.add_row(
            str(user["username"]),
            str(user["role"]),
            str(user["area"]),
            "yes" if user["active"] else "disabled",
            str(user["locked_until"]),
            str(user["created_at"]),
        )
    output_console().print(table)


@users_app.command("disable")
def users_disable(name: str = typer.Argument(...), db: str = typer.Option("", "--db", help=DB_HELP)) -> None:
    """Disable an account and end its sessions. Nothing is deleted: its visits keep its name."""
    _require_web()
    from .serving.workbench.command import resolve_db_url, set_active

    set_active(resolve_db_url(db), name, active=False)
    typer.echo(f"Disabled {name}.")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(...), db: str = typer.Option("", "--db", help=DB_HELP)) -> None:
    """Enable a disabled account again."""
    _require_web()
    from .serving.workbench.command import resolve_db_url, set_active

    set_active(resolve_db_url(db), name, active=True)
    typer.echo(f"Enabled {name}.")


@outcomes_app.command("import")
def outcomes_import(
    run: str = typer.Option(..., "--run", help="OUT folder of `relapse score`."),
    data: str = typer.Option("", "--data", help="The dataset folder it scored (default: the manifest's)."),
    listed_on: str = typer.Option(
        "", "--listed-on", help="Day the list was issued, YYYY-MM-DD (default: today)."
    ),
    db: str = typer.Option("", "--db", help=DB_HELP),
) -> None:
    """Add a run's visit list, with each listed household's facts, to the workbench's database.

    Importing the same run again changes nothing; another run for the same county and month is
    refused (exit 2).
    """
    _require_web()
    import datetime as dt
    from pathlib import Path

    from .serving.workbench.command import import_runs, resolve_db_url

    try:
        day = dt.date.fromisoformat(listed_on) if listed_on else None
    except ValueError:
        raise typer.BadParameter(
            f"{listed_on!r} is not a date YYYY-MM-DD", param_hint="--listed-on"
        ) from None
    result = import_runs(resolve_db_url(db), Path(run), Path(data) if data else None, day)
    verb = "Imported" if result.created else "Already imported, nothing changed:"
    typer.echo(f"{verb} county {result.county_code}, list of {result.as_of}: {result.households} households.")


@outcomes_app.command("export")
def outcomes_export(
    out: str = typer.Option(..., "--out", help="CSV file to write (UTF-8 with BOM)."),
    as_of: str = typer.Option(
        "", "--as-of", help="Only the lists of this month, YYYY-MM (default: every list)."
    ),
    db: str = typer.Option("", "--db", help=DB_HELP),
) -> None:
    """One row per listed household with its latest visit outcome; what `relapse monitor` and
    `relapse evaluate` read with --outcomes."""
    _require_web()
    from pathlib import Path

    from .serving.workbench.command import export_outcomes, resolve_db_url

    rows = export_outcomes(resolve_db_url(db), Path(out), as_of or None)
    typer.echo(f"Wrote {rows} rows to {out}.")
