"""Generate a county: simulate it chunk by chunk, write the dataset folder and the truth file beside it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import codes as C
from .config import CountyConfig, TruthOptions, format_month
from .dynamics import Simulator
from .layout import Layout, build_layout
from .ledger import Ledger
from .oracle import oracle_probabilities
from .population import initial_state
from .recording import DatasetWriter, TableRecorder, enum_array, months_to_date32
from .state import State

TRUTH_SCHEMA = pa.schema(
    [
        ("household_id", pa.string()),
        ("as_of", pa.date32()),
        ("p_true", pa.float64()),
        ("n_simulations", pa.int32()),
    ]
)


def default_truth_path(folder: Path) -> Path:
    """``<folder>.truth.parquet`` next to the dataset folder: beside it, never inside."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}.truth.parquet"


@dataclass(frozen=True)
class GenerationResult:
    folder: Path
    truth: Path | None
    households: int
    months: int
    as_of: tuple[str, ...]
    simulations: int
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)


def _household_columns(layout: Layout, state: State, rec: TableRecorder) -> dict[str, pa.Array]:
    village = state.village
    return {
        "household_id": rec.household_ids,
        "county_code": pa.array(np.full(state.households, layout.county_code)),
        "township_code": pa.array(
            [layout.township_codes[t] for t in layout.village_township[village].tolist()], type=pa.string()
        ),
        "village_code": pa.array([layout.village_codes[v] for v in village.tolist()], type=pa.string()),
        "registered_poor": pa.array(state.registered),
        "escape_year": pa.array(state.escape_year.astype(np.int64), mask=state.escape_year == 0),
        "terrain": enum_array(state.terrain, C.TERRAINS),
        "relocated": pa.array(state.relocated),
        "housing_safe": pa.array(state.housing_safe),
        "cultivated_land_mu": pa.array(np.round(state.land_mu.astype(np.float64), 1)),
    }


def _check_output(folder: Path, truth: Path | None) -> None:
    if truth is not None:
        folder_resolved = folder.resolve()
        if folder_resolved == truth.resolve().parent or folder_resolved in truth.resolve().parents:
            raise ValueError(
                f"truth file {truth} must be beside the dataset folder {folder}, never inside it"
            )
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} already exists and is not empty; choose a new --out folder")


def generate(
    config: CountyConfig,
    folder: Path,
    truth: TruthOptions | None = None,
    truth_path: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Simulate ``config`` and write its dataset folder (and, unless ``truth`` is None, its truth file).

    Deterministic for a config (seed and chunk size included).
    """
    started = time.perf_counter()
    folder = Path(folder)
    if truth is not None and truth_path is None:
        truth_path = default_truth_path(folder)
    _check_output(folder, truth_path if truth is not None else None)
    as_of = truth.months(config) if truth is not None else ()
    say = progress or (lambda _message: None)
    layout = build_layout(config)
    writer = DatasetWriter(folder)
    truth_parts: list[pa.Table] = []
    simulator = Simulator(config)
    for chunk, first in enumerate(range(0, config.households, config.chunk_households)):
        count = min(config.chunk_households, config.households - first)
        streams = np.random.SeedSequence([config.seed, 2, chunk]).spawn(4)
        init_rng, core_rng, record_rng, ledger_rng = (np.random.default_rng(s) for s in streams)
        state = initial_state(config, layout, first, count, init_rng)
        rec = TableRecorder(config, writer, first, count, config.member_slots, record_rng)
        ledger = Ledger(config, state, ledger_rng, rec)
        snapshots: dict[int, State] = {}
        for month in range(config.first_simulated, config.end + 1):
            rec.tables_on = month >= config.start
            if month == config.start:
                rec.snapshot_members(state)
            disasters = layout.disasters[:, month - config.first_simulated]
            result = simulator.step(state, month, core_rng, disasters, rec)
            ledger.step(state, month, result)
            if month in as_of:
                snapshots[month] = state.copy()
        ledger.finish()
        rec.finish(state, _household_columns(layout, state, rec))
        say(f"simulated households {first + 1:,}-{first + count:,} of {config.households:,}")
        if truth is not None:
            probabilities = oracle_probabilities(config, layout.village_terrain, snapshots, truth, chunk)
            for month, p in probabilities.items():
                truth_parts.append(
                    pa.Table.from_arrays(
                        [
                            rec.household_ids,
                            months_to_date32(np.full(count, month)),
                            pa.array(p),
                            pa.array(np.full(count, truth.simulations, dtype=np.int32)),
                        ],
                        schema=TRUTH_SCHEMA,
                    )
                )
            say(
                f"oracle: {truth.simulations} simulations x {len(as_of)} as-of months for the same households"
            )
        del snapshots
    writer.close()
    (folder / "policy.json").write_text(json.dumps(config.policy_json(), indent=2) + "\n", encoding="utf-8")
    if truth is not None and truth_path is not None:
        table = pa.concat_tables(truth_parts) if truth_parts else TRUTH_SCHEMA.empty_table()
        table = table.sort_by([("as_of", "ascending"), ("household_id", "ascending")])
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, truth_path, compression="zstd")
    return GenerationResult(
        folder=folder,
        truth=truth_path if truth is not None else None,
        households=config.households,
        months=config.months,
        as_of=tuple(format_month(m) for m in as_of),
        simulations=truth.simulations if truth is not None else 0,
        seconds=time.perf_counter() - started,
        rows=dict(writer.rows),
    )


__all__ = ["GenerationResult", "default_truth_path", "generate"]
