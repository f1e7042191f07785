"""Expected failures, told apart from bugs, and the exit codes of the `relapse` command.

Every layer raises its own exceptions for a job that cannot run as asked: a
dataset folder that breaks the contract, too little history to train on, no
model in the registry, a setting the server cannot start with. They all derive
from :class:`RelapseRiskError`, so the command line can catch that one class,
print its message and exit :attr:`ExitCode.CANNOT_RUN`, and let anything else
(a bug in our code or a library's) print its traceback and exit
:attr:`ExitCode.UNEXPECTED`. Catching ``ValueError`` instead would also catch
every bug that happens to raise one, and hide it behind a one-line message.

Both live here, at the bottom of the import graph, because features imports
nothing of ours: models, training, serving and monitoring may all import
features, so one base class and one exit-code table serve every layer.
"""

from __future__ import annotations

from enum import IntEnum


class RelapseRiskError(Exception):
    """An expected failure: the inputs, settings or registry do not allow the job to run.

    The message is written for the person who ran the command: it names the
    file, setting or model and says what is wrong (and, where it can, what to
    run instead). Subclasses usually also derive from the built-in class that
    callers caught before this base existed (``ValueError``, ``LookupError``,
    ``RuntimeError``), so older ``except`` clauses keep working.
    """


class MonthOutsideDataError(RelapseRiskError, ValueError):
    """An as-of month outside the data's months, or one whose label runs past ``data_end``."""


class MissingExtraError(RelapseRiskError, ImportError):
    """A command needs an optional part of the package (an extra) that is not installed."""


class ExitCode(IntEnum):
    """The exit codes of every `relapse` subcommand (and of the API server), in one table.

    A scheduler or shell script branches on these, so each means one thing
    across every subcommand.
    """

    DONE = 0
    """The job ran (monitoring: status ok or warning)."""
    REFUSED = 1
    """The job ran and said no: `relapse promote` refused the challenger."""
    CANNOT_RUN = 2
    """An expected failure (:class:`RelapseRiskError`): bad data folder, too little history, no model,
    a bad setting. One message says why; nothing was written."""
    ALERT = 3
    """`relapse monitor` ran and found an alert: retrain or investigate."""
    UNEXPECTED = 4
    """A bug: anything that is not an expected failure. The traceback is printed."""
    WORKER_FAILED = 5
    """`relapse serve` (or `bentoml serve`) stopped because a worker could not load what it serves."""
    SOME_FAILED = 6
    """`relapse score` or `monitor` on a province (``--engine spark``): some counties failed, each named with
    its reason in the province summary; the other counties were written."""
    INTERRUPTED = 130
    """Ctrl-C (SIGINT), as shells report it: 128 + 2. Outputs are left as they were."""


def exit_code_lines() -> list[str]:
    """One ``code  meaning`` line per exit code, for ``relapse --help`` and the README."""
    return [f"{code.value:>3}  {_summary(code)}" for code in ExitCode]


_SUMMARIES = {
    ExitCode.DONE: "done (monitor: ok or warning)",
    ExitCode.REFUSED: "refused (promote: the challenger failed a check)",
    ExitCode.CANNOT_RUN: "cannot run: bad data, settings or model; one message, nothing written",
    ExitCode.ALERT: "monitor found an alert",
    ExitCode.UNEXPECTED: "unexpected error (a bug): the traceback is printed",
    ExitCode.WORKER_FAILED: "serve: a worker could not start, the server stopped",
    ExitCode.SOME_FAILED: "province: some counties failed (named in the summary); the others were written",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def _summary(code: ExitCode) -> str:
    return _SUMMARIES[code]
