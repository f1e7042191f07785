"""The oracle: p_true(h, t) = P(a rule fires for h in t+1 .. t+H | full hidden state at t).

Estimated by copying each household's complete state at ``t`` (hidden parts,
the pending official cases and the income and expense windows included)
``n`` times and running the same :class:`~.dynamics.Simulator` forward with
fresh random draws, village-wide disasters drawn anew for every copy of a
village; a lockdown or reporting outage that begins after the as-of month is
not foreseen (:func:`foreseeable`). A future month counts as triggered by the
rules of docs/rules-and-labels.md on what the dataset would show: months before ``data_start``
are not in the dataset, so they are left out of the windows exactly as the
evaluator will.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from .config import CountyConfig, TruthOptions
from .dynamics import Simulator
from .layout import draw_disasters
from .rules import evaluate_state
from .state import MEMBER_FIELDS, RING, State


@dataclass(frozen=True)
class _Task:
    config: CountyConfig
    village_terrain: np.ndarray
    state: State
    as_of: int
    horizon: int
    simulations: int
    seed: tuple[int, ...]


def compact_members(state: State, free_slots: int = 1) -> State:
    """The same households with their present members in the first slots and few slots to spare.

    People who left before the as-of month can no longer change anything, so
    their slots go; ``free_slots`` stay free in the largest household for
    newcomers of the next months. Fewer slots make every member-level step
    of the re-simulation cheaper.
    """
    order = np.argsort(~state.present, axis=0, kind="stable")
    keep = min(int(state.present.sum(axis=0).max()) + free_slots, state.slots)
    out = state.copy()
    for name in MEMBER_FIELDS:
        packed = np.take_along_axis(getattr(state, name), order, axis=0)[:keep]
        setattr(out, name, np.ascontiguousarray(packed))
    out.used = out.present.copy()
    holders = np.flatnonzero(state.post_slot >= 0)
    new_position = np.argsort(order, axis=0)
    slot = new_position[state.post_slot[holders].astype(np.intp), holders]
    out.post_slot[holders] = np.where(slot < keep, slot, -1).astype(np.int8)
    return out


def resimulate(
    config: CountyConfig,
    village_terrain: np.ndarray,
    state: State,
    as_of: int,
    horizon: int,
    simulations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Share of ``simulations`` futures in which a rule fires for each household of ``state``."""
    n = state.households
    copies = state.repeat(simulations)
    villages, village_of_household = np.unique(state.village, return_inverse=True)
    replica = np.tile(np.arange(simulations), n)
    copies.village = (np.repeat(village_of_household, simulations) * simulations + replica).astype(np.int32)
    terrain_of_key = np.repeat(village_terrain[villages], simulations)
    simulator = Simulator(config)
    fired = np.zeros(copies.households, dtype=bool)
    for month in range(as_of + 1, as_of + horizon + 1):
        disasters = draw_disasters(rng, terrain_of_key, month, config)
        result = simulator.step(copies, month, rng, disasters, None)
        outcome = result.outcome
        if month - (RING - 1) < config.start:
            outcome = evaluate_state(
                copies,
                month,
                result.size,
                simulator.lines[month // 12],
                config.rules,
                first_visible=config.start,
            )
        fired |= outcome.triggered
    return fired.reshape(n, simulations).mean(axis=1)


def foreseeable(config: CountyConfig, as_of: int) -> CountyConfig:
    """The county as known at ``as_of``: a lockdown or reporting outage that has not begun is unknown.

    Like the village disasters, which every re-simulation draws anew, a county-wide shock still to
    come is no part of the state at ``as_of``; one already under way runs its announced course.
    """
    scenario = config.scenario
    unknown = {
        name: None
        for name in ("lockdown", "outage")
        if getattr(scenario, name) is not None and getattr(scenario, name).first > as_of
    }
    if not unknown:
        return config
    return config.model_copy(update={"scenario": scenario.model_copy(update=unknown)})


def _run(task: _Task) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(list(task.seed)))
    return resimulate(
        task.config, task.village_terrain, task.state, task.as_of, task.horizon, task.simulations, rng
    )


def oracle_probabilities(
    config: CountyConfig,
    village_terrain: np.ndarray,
    snapshots: dict[int, State],
    options: TruthOptions,
    chunk: int,
) -> dict[int, np.ndarray]:
    """p_true of every household of a chunk at each as-of month (keys of ``snapshots``)."""
    per_batch = max(1, options.batch_replicas // options.simulations)
    tasks: list[tuple[int, np.ndarray, _Task]] = []
    for as_of, state in sorted(snapshots.items()):
        # batches of households of like size need few member slots each
        by_size = np.argsort(state.present.sum(axis=0), kind="stable")
        for b, lo in enumerate(range(0, state.households, per_batch)):
            rows = by_size[lo : lo + per_batch]
            task = _Task(
                config=foreseeable(config, as_of),
                village_terrain=village_terrain,
                state=compact_members(state.take(rows)),
                as_of=as_of,
                horizon=options.horizon,
                simulations=options.simulations,
                seed=(config.seed, 3, chunk, as_of, b),
            )
            tasks.append((as_of, rows, task))
    result = {as_of: np.empty(state.households) for as_of, state in snapshots.items()}
    if options.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=options.workers, mp_context=get_context("fork")) as pool:
            outputs = list(pool.map(_run, [task for *_, task in tasks]))
    else:
        outputs = [_run(task) for *_, task in tasks]
    for (as_of, rows, _), p in zip(tasks, outputs, strict=True):
        result[as_of][rows] = p
    return result
