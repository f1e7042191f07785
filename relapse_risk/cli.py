"""The `relapse` command: one subcommand per job a county analyst or data scientist runs."""

from __future__ import annotations

import typer

app = typer.Typer(
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


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
