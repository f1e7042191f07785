"""Where the `relapse` commands write: the two consoles and the timestamped stage lines.

Batch jobs run from cron and CI, where stdout is a file or a pipe. Rich would
then lay tables out for 80 columns and cut cells to "mod…" or "202…", and a
long job would print nothing until it ended. So every console of the command
line is made here:

- on a terminal, exactly as rich makes it (its width, its colours);
- elsewhere, :data:`PIPED_WIDTH` columns wide unless ``COLUMNS`` says otherwise,
  so every table fits, and without colour codes, which a log file would keep
  as escape sequences.

The stage lines are logged by the library code (``logging`` under
``relapse_risk``, see :class:`relapse_risk.features.stages.StageTimes`); the
command line alone decides that they go to stderr with a timestamp, once per
command, in :func:`log_stages_to_stderr`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from rich.console import Console

PIPED_WIDTH = 200
"""Columns of a console that is not a terminal: wide enough for every table the commands print."""

STAGE_LOGGER = "relapse_risk"
"""The logger every module of the package logs under (``logging.getLogger(__name__)``)."""

TIMESTAMP = "%Y-%m-%d %H:%M:%S"


def output_console(environ: Mapping[str, str] | None = None) -> Console:
    """The console for a command's results (stdout)."""
    return _console(stderr=False, environ=os.environ if environ is None else environ)


def error_console(environ: Mapping[str, str] | None = None) -> Console:
    """The console for "cannot run" messages and warnings (stderr); long messages are not wrapped."""
    return _console(stderr=True, environ=os.environ if environ is None else environ, soft_wrap=True)


def _console(*, stderr: bool, environ: Mapping[str, str], soft_wrap: bool = False) -> Console:
    console = Console(stderr=stderr, soft_wrap=soft_wrap, _environ=environ)
    if console.is_terminal:
        return console
    return Console(
        stderr=stderr,
        soft_wrap=soft_wrap,
        width=piped_width(environ),
        color_system=None,
        _environ=environ,
    )


def piped_width(environ: Mapping[str, str]) -> int:
    """``COLUMNS`` when it is set to a number, else :data:`PIPED_WIDTH`."""
    columns = environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is when the record is emitted, then flushes.

    Looked up late because the stream changes under a command: rich's live
    progress bar routes stderr above the bar while it runs, and a test runner
    swaps it per invocation. A handler holding the stream of the moment it was
    made would write under the bar, or into a closed test stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr


def log_stages_to_stderr(command: str, level: int = logging.INFO) -> logging.Handler:
    """Send the package's log lines to stderr as ``2026-12-06 15:40:01 score: load and validate started``.

    Called by the command line's entry point before a subcommand runs, never at
    import, so that a program importing the package keeps its own logging. A
    handler left by an earlier call in the same process (tests invoke the
    command line many times) is replaced, never added to, so no line appears twice.
    The lines do not propagate to the root logger, whose handlers (if any) belong
    to whoever embeds the package.
    """
    logger = logging.getLogger(STAGE_LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, _CurrentStderrHandler)]:
        logger.removeHandler(old)
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {command}: %(message)s", datefmt=TIMESTAMP))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
