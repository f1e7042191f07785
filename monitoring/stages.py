"""Wall and CPU seconds of each stage of a monitoring run, for ``summary.json`` and the benchmark."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StageTimes:
    """Seconds per named stage; a stage entered twice adds up.

    CPU seconds are the process's (every DuckDB thread included), so CPU above wall
    means the stage ran on more than one core.
    """

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    def rounded(self) -> dict[str, dict[str, float]]:
        """``{stage: {"wall": s, "cpu": s}}`` to 0.01 s, in the order the stages first ran."""
        return {
            name: {"wall": round(self.wall[name], 2), "cpu": round(self.cpu[name], 2)} for name in self.wall
        }
