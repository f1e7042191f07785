"""A server that cannot serve exits, instead of BentoML starting its failing workers forever.

BentoML 1.4 runs the workers under a process manager (circus) that starts a
worker again whenever it exits. A worker whose start-up fails (the service's
``__init__`` raises, uvicorn exits with code 3) was therefore started again
and again: 16 failed start-ups in 90 s with no champion in the registry, the
port open, ``/readyz`` never 200, and nothing exiting, so neither the operator
nor a supervisor (systemd, Docker, Kubernetes) learnt that it was broken.

Two guards, both wired in serving/api/service.py, both in the server itself so
that ``bentoml serve`` of a built Bento has them as well as ``relapse serve``:

- :func:`check_before_workers` is the service's deployment hook, which
  BentoML runs once in the server's main process before it spawns any worker.
  It checks what ``relapse serve`` checks (settings, keys, policy, the model's
  entry in the registry, looked up but not loaded) and, when the server could
  not serve, prints one line and exits with :data:`EXIT_CANNOT_SERVE`.
- A worker's start-up can still fail after that check: the registry entry is
  there but its files cannot be loaded, or the alias moved in between. The
  hook therefore gives the workers the main process's id
  (:data:`SERVER_PID_VARIABLE`) and handles :data:`WORKER_FAILED_SIGNAL`; a
  worker whose start-up failed sends it (:func:`stop_server_after_failed_start`)
  and the main process stops the whole server as on SIGTERM (each worker
  stops its scoring process) and then exits with :data:`EXIT_WORKER_FAILED`.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Mapping, MutableMapping
from types import FrameType

from relapse_risk.features.errors import ExitCode

from .household_scorer import SERVE_ANOTHER_MODEL
from .launch import ServeSettingsError, check_server_settings

SERVER_PID_VARIABLE = "RELAPSE_SERVER_PID"
"""Set by the deployment hook to the server's main process id; the workers inherit it."""
WORKER_FAILED_SIGNAL = signal.SIGUSR2
"""The process manager handles HUP, QUIT, INT, TERM and WINCH itself; this one is free."""
EXIT_CANNOT_SERVE = ExitCode.CANNOT_RUN
"""As ``relapse serve``: a setting or the model would stop the server (the CLI's "cannot run")."""
EXIT_WORKER_FAILED = ExitCode.WORKER_FAILED
"""A worker could not load what it serves; its own code, so a supervisor can tell it from a bad setting."""


def check_before_workers(environ: MutableMapping[str, str]) -> None:
    """Exit with one line unless the server can start; then arrange for a failing worker to stop it.

    Runs in the server's main process before any worker exists. ``environ`` is
    the process's environment, which the workers inherit (the process manager
    copies it when it creates them, after this hook).
    """
    try:
        check_server_settings(environ, use_instead=SERVE_ANOTHER_MODEL)
    except ServeSettingsError as exc:
        print(f"Cannot serve: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CANNOT_SERVE) from None
    _stop_when_a_worker_fails(environ)


def _stop_when_a_worker_fails(environ: MutableMapping[str, str]) -> None:
    environ[SERVER_PID_VARIABLE] = str(os.getpid())
    failed = threading.Event()

    def stop_server(signum: int, frame: FrameType | None) -> None:
        if failed.is_set():
            return  # every worker that fails says so; the server stops once
        failed.set()
        print(
            "Cannot serve: a worker could not start (its log line above says why); stopping the server",
            file=sys.stderr,
            flush=True,
        )
        # The process manager's own SIGTERM handler: it stops every worker and then its loop.
        signal.raise_signal(signal.SIGTERM)

    def exit_as_failed() -> None:
        # BentoML's command returns normally once the process manager has stopped, and would exit
        # with 0; the exit handlers run last, after every worker has been stopped.
        if failed.is_set():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_WORKER_FAILED)

    signal.signal(WORKER_FAILED_SIGNAL, stop_server)
    atexit.register(exit_as_failed)


def stop_server_after_failed_start(environ: Mapping[str, str]) -> bool:
    """Ask the server's main process to stop (from a worker whose start-up failed).

    False, and nothing sent, unless the main process recorded its id and is
    this process's parent: a service instance made anywhere else (a test, a
    notebook) never signals a process it does not belong to.
    """
    recorded = environ.get(SERVER_PID_VARIABLE, "")
    if not recorded.isdigit() or int(recorded) != os.getppid():
        return False
    os.kill(int(recorded), WORKER_FAILED_SIGNAL)
    return True
