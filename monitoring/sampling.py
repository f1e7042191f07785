"""Which households monitoring builds features for, when a county is large.

Feature and score drift compare distributions, and a seeded sample of a few tens
of thousands of households estimates them about as well as a million do, for a
small part of the cost of point-in-time features. The county-level checks of
:mod:`.quality` never use the sample: they aggregate every row in DuckDB.

Whole villages are drawn, not single households: the village features
(``village_households``, ``village_share_*``) are computed over every household
of a village, so a household's features in the sample equal its features in the
full county only when its whole village is in the sample.

Villages are taken in the order of a seeded hash of their code, up to the
household limit. The order of a village depends only on the seed and its own
code, so a county compared with its own past draws the same villages on both
sides (the comparison sees change over time, not the difference between two
samples), and another county draws its own villages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from relapse_risk.features.contract import TABLES
from relapse_risk.features.dataset import Dataset


@dataclass(frozen=True)
class VillageSample:
    """The villages whose households stand for the county in the drift checks."""

    seed: int
    limit: int
    """Most households the sample may hold (``max_rows_per_side``)."""
    households: int
    villages: int
    sampled_households: int
    sampled_villages: tuple[str, ...]

    @property
    def is_everything(self) -> bool:
        return self.sampled_households == self.households

    def describe(self) -> dict[str, object]:
        """The sample as it is written into ``summary.json``."""
        return {
            "unit": "village",
            "sampled": not self.is_everything,
            "households": self.households,
            "villages": self.villages,
            "sampled_households": self.sampled_households,
            "sampled_villages": len(self.sampled_villages),
            "limit": self.limit,
            "seed": self.seed,
        }


def village_rank(code: str, seed: int) -> bytes:
    """Sort key of a village: a hash of the seed and its code (stable across runs and datasets)."""
    return hashlib.sha256(f"{seed}:{code}".encode()).digest()


def choose_villages(codes: Sequence[str], sizes: Sequence[int], limit: int, seed: int) -> list[str]:
    """Villages in seeded hash order while their households add up to at most ``limit``.

    Every village when they all fit. At least one village otherwise, even when the first
    alone holds more than ``limit`` households (its features need all of them).
    """
    if sum(sizes) <= limit:
        return list(codes)
    order = sorted(range(len(codes)), key=lambda i: village_rank(codes[i], seed))
    within = np.cumsum(np.asarray(sizes, dtype=np.int64)[order]) <= limit
    taken = max(int(within.sum()), 1)  # the cumulative sum only grows: the kept ones are a prefix
    return [codes[i] for i in order[:taken]]


def village_sample(dataset: Dataset, limit: int, seed: int) -> VillageSample:
    """The villages of ``dataset`` drawn for at most ``limit`` households (see the module)."""
    rows = dataset.sql(
        "SELECT village_code, count(*) FROM households GROUP BY village_code ORDER BY village_code"
    ).fetchall()
    codes = [str(code) for code, _ in rows]
    sizes = [int(count) for _, count in rows]
    chosen = choose_villages(codes, sizes, limit, seed)
    size_of = dict(zip(codes, sizes, strict=True))
    return VillageSample(
        seed=seed,
        limit=limit,
        households=sum(sizes),
        villages=len(codes),
        sampled_households=sum(size_of[code] for code in chosen),
        sampled_villages=tuple(sorted(chosen)),
    )


@contextmanager
def sampled_dataset(dataset: Dataset, sample: VillageSample) -> Iterator[Dataset]:
    """``dataset`` restricted to the sampled villages, for as long as the context lasts.

    The restricted tables are temporary tables of a second DuckDB connection to the
    same database: they carry the contract's names, so every pipeline reads them
    unchanged, while the original connection still sees the full county. They are
    dropped when the context ends. The full dataset itself when the sample is everything.
    """
    if sample.is_everything:
        yield dataset
        return
    connection = dataset.connection.cursor()
    try:
        catalog, schema = connection.execute("SELECT current_database(), current_schema()").fetchall()[0]
        full = f'"{catalog}"."{schema}"'
        connection.execute(
            f"""CREATE TEMP TABLE households AS SELECT * FROM {full}.households
                WHERE village_code IN (SELECT unnest($villages::VARCHAR[]))""",
            {"villages": list(sample.sampled_villages)},
        )
        for table in TABLES:
            if table.name == "households":
                continue
            if table.household_column is not None:
                key, parent, target = table.household_column, "households", "household_id"
            else:  # tied to a household through its parent row (employment -> members, ...)
                link = table.foreign_keys[0]
                key, parent, target = link.column, link.table, link.target
            connection.execute(
                f'''CREATE TEMP TABLE {table.name} AS SELECT * FROM {full}.{table.name}
                    WHERE "{key}" IN (SELECT "{target}" FROM temp.main.{parent})'''
            )
        yield Dataset(
            policy=dataset.policy,
            connection=connection,
            source=dataset.source,
            fingerprint=dataset.fingerprint,
            input_files=dataset.input_files,
        )
    finally:
        connection.close()
