"""Wall and CPU seconds of the named stages of a long job, and a log line as each starts and ends.

One helper for every long job (feature building, batch scoring, monitoring,
training): the seconds go into manifests and summaries, and the log lines let
whoever reads a cron or CI log see which stage a run is in while it runs, not
only when it ends. It lives in ``features`` because that package is the bottom
of the import graph: every other package may use it, and it needs nothing but
the standard library.

The lines go to the logger the caller gives (its module's logger); with none,
nothing is logged, as for the API, which scores a few households a request and
must not fill its log with stage lines. Where logged lines end up, and with
what timestamp, is the command line's choice (relapse_risk/console.py), never
this module's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


@dataclass
class StageTimes:
    """Seconds per named stage; a stage entered twice adds up.

    CPU seconds are the process's (every DuckDB and LightGBM thread included), so
    CPU above wall means the stage ran on more than one core.
    """

    log: logging.Logger | None = None
    """Where the start and end lines go; None: nowhere."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Words for the log lines where a stage's name is a short key (``load``: ``load and validate``)."""
    level: int = logging.INFO
    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    _mark: tuple[float, float] = field(default_factory=_now, repr=False)
    """Where the next :meth:`lap` starts: the end of the last stage, or the creation."""

    @contextmanager
    def stage(self, name: str, *, quiet: bool = False) -> Iterator[None]:
        """Time the block as stage ``name``, logging ``<label> started`` and ``<label> done in N s``.

        ``quiet`` counts the block without the two lines: for the tail of a stage that
        was already announced, finished in another function (its time still adds up).
        A block that raises logs ``failed after N s``, so a log cut short says where.
        """
        label = self.labels.get(name, name)
        if not quiet:
            self._say("%s started", label)
        wall, cpu = _now()
        try:
            yield
        except BaseException:
            seconds = self._add(name, wall, cpu)
            if not quiet:
                self._say("%s failed after %.1f s", label, seconds)
            raise
        seconds = self._add(name, wall, cpu)
        if not quiet:
            self._say("%s done in %.1f s", label, seconds)

    def lap(self, name: str) -> None:
        """Stage ``name`` ran from the last lap (or the start) until now; log that it is done.

        For work that happens where a ``with`` block cannot reach, such as inside a
        generator the caller iterates: only the end of such a stage can be logged.
        """
        wall, cpu = self._mark
        seconds = self._add(name, wall, cpu)
        self._say("%s done in %.1f s", self.labels.get(name, name), seconds)

    def rounded(self) -> dict[str, dict[str, float]]:
        """``{stage: {"wall": s, "cpu": s}}`` to 0.01 s, in the order the stages first ran."""
        return {
            name: {"wall": round(self.wall[name], 2), "cpu": round(self.cpu[name], 2)} for name in self.wall
        }

    def _add(self, name: str, wall: float, cpu: float) -> float:
        """Add the time since ``wall``/``cpu`` to ``name``; it is also the next lap's start."""
        self._mark = _now()
        seconds = self._mark[0] - wall
        self.wall[name] = self.wall.get(name, 0.0) + seconds
        self.cpu[name] = self.cpu.get(name, 0.0) + self._mark[1] - cpu
        return seconds

    def _say(self, message: str, *args: object) -> None:
        if self.log is not None:
            self.log.log(self.level, message, *args)
