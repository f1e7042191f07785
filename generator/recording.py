"""Turning simulated months into the contract's tables, written to Parquet as they fill.

The :class:`TableRecorder` receives what a month produced (income by source,
employment statuses, bills, events, identifications, ended support measures)
as integer-coded arrays and buffers them; :class:`DatasetWriter` appends them
to one Parquet file per table in row groups, so a county of a million
households never has to fit in memory. Recording decisions (which events a
department reports, the day of a bill) use the recorder's own random stream,
so they never disturb the simulated lives.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import codes as C
from .config import CountyConfig, month_date
from .state import State

EPOCH = dt.date(1970, 1, 1)

SCHEMAS: dict[str, pa.Schema] = {
    "households": pa.schema(
        [
            ("household_id", pa.string()),
            ("county_code", pa.string()),
            ("township_code", pa.string()),
            ("village_code", pa.string()),
            ("registered_poor", pa.bool_()),
            ("escape_year", pa.int64()),
            ("terrain", pa.string()),
            ("relocated", pa.bool_()),
            ("housing_safe", pa.bool_()),
            ("cultivated_land_mu", pa.float64()),
        ]
    ),
    "members": pa.schema(
        [
            ("member_id", pa.string()),
            ("household_id", pa.string()),
            ("birth_year", pa.int64()),
            ("sex", pa.string()),
            ("relation", pa.string()),
            ("education", pa.string()),
            ("labor_capacity", pa.string()),
            ("disability_grade", pa.int64()),
            ("chronic_disease", pa.bool_()),
            ("medical_insurance", pa.bool_()),
            ("joined_month", pa.date32()),
            ("left_month", pa.date32()),
        ]
    ),
    "income": pa.schema(
        [
            ("household_id", pa.string()),
            ("month", pa.date32()),
            ("source", pa.string()),
            ("amount", pa.float64()),
        ]
    ),
    "employment": pa.schema([("member_id", pa.string()), ("month", pa.date32()), ("status", pa.string())]),
    "expenses": pa.schema(
        [
            ("household_id", pa.string()),
            ("member_id", pa.string()),
            ("date", pa.date32()),
            ("category", pa.string()),
            ("amount", pa.float64()),
            ("reimbursed", pa.float64()),
        ]
    ),
    "events": pa.schema(
        [
            ("household_id", pa.string()),
            ("member_id", pa.string()),
            ("date", pa.date32()),
            ("kind", pa.string()),
            ("severity", pa.int64()),
            ("value", pa.float64()),
        ]
    ),
    "loans": pa.schema(
        [
            ("loan_id", pa.string()),
            ("household_id", pa.string()),
            ("kind", pa.string()),
            ("issued_month", pa.date32()),
            ("principal", pa.float64()),
            ("term_months", pa.int64()),
            ("annual_rate", pa.float64()),
        ]
    ),
    "loan_status": pa.schema(
        [
            ("loan_id", pa.string()),
            ("month", pa.date32()),
            ("balance", pa.float64()),
            ("overdue_days", pa.int64()),
        ]
    ),
    "assistance": pa.schema(
        [
            ("household_id", pa.string()),
            ("measure", pa.string()),
            ("start_month", pa.date32()),
            ("end_month", pa.date32()),
            ("monthly_amount", pa.float64()),
        ]
    ),
    "monitoring": pa.schema(
        [
            ("household_id", pa.string()),
            ("identified_month", pa.date32()),
            ("category", pa.string()),
            ("risk_type", pa.string()),
            ("primary_cause", pa.string()),
            ("eliminated_month", pa.date32()),
        ]
    ),
}
TABLE_NAMES = tuple(SCHEMAS)
FLUSH_ROWS = 2_000_000
LOAN_SEQUENCES = pa.array([f"{i:03d}" for i in range(1000)], type=pa.string())


def household_ids(first: int, count: int) -> list[str]:
    return [f"{i:08d}" for i in range(first + 1, first + count + 1)]


def month_days(month: int) -> int:
    """Days since 1970-01-01 of the first day of a month index."""
    return (month_date(month) - EPOCH).days


def months_to_date32(months: np.ndarray) -> pa.Array:
    """Month indices (-1 = null) to a date32 array of first days."""
    months = np.asarray(months, dtype=np.int64)
    years = months // 12
    calendar = months % 12 + 1
    as_dates = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (calendar - 1).astype(
        "timedelta64[M]"
    )
    days = as_dates.astype("datetime64[D]").astype(np.int64).astype(np.int32)
    return pa.array(days, type=pa.date32(), mask=months < 0)


def enum_array(codes: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    dictionary = pa.array(values, type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, dtype=np.int32)), dictionary).cast(
        pa.string()
    )


def id_array(index: np.ndarray, ids: pa.Array) -> pa.Array:
    """Strings ``ids[index]``; ``index < 0`` gives null."""
    index = np.asarray(index, dtype=np.int64)
    null = index < 0
    picked = pa.array(np.where(null, 0, index).astype(np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(picked, ids).cast(pa.string())


class DatasetWriter:
    """One Parquet file per contract table, appended in row groups."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = dict.fromkeys(TABLE_NAMES, 0)

    def write(self, table: str, columns: dict[str, pa.Array]) -> None:
        schema = SCHEMAS[table]
        batch = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
        if batch.num_rows == 0:
            return
        if table not in self._writers:
            self._writers[table] = pq.ParquetWriter(
                self.folder / f"{table}.parquet", schema, compression="zstd"
            )
        self._writers[table].write_table(batch, row_group_size=1_000_000)
        self.rows[table] += batch.num_rows

    def close(self) -> None:
        for table, schema in SCHEMAS.items():
            if table in self._writers:
                self._writers[table].close()
            else:
                pq.write_table(schema.empty_table(), self.folder / f"{table}.parquet", compression="zstd")
        self._writers.clear()


class _Buffer:
    """Column arrays appended month by month until flushed."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.rows = 0

    def add(self, **columns: np.ndarray) -> None:
        size = None
        for name, values in columns.items():
            values = np.asarray(values)
            size = values.shape[0]
            self.parts.setdefault(name, []).append(values)
        self.rows += size or 0

    def take(self) -> dict[str, np.ndarray]:
        out = {name: np.concatenate(parts) for name, parts in self.parts.items()}
        self.parts = {}
        self.rows = 0
        return out


class TableRecorder:
    """Records one chunk of households (global indices ``first ..``) into a :class:`DatasetWriter`."""

    def __init__(
        self,
        config: CountyConfig,
        writer: DatasetWriter,
        first: int,
        count: int,
        slots: int,
        rng: np.random.Generator,
    ) -> None:
        self.config = config
        self.writer = writer
        self.first = first
        self.count = count
        self.slots = slots
        self.rng = rng
        self.tables_on = False
        ids = household_ids(first, count)
        self.household_ids = pa.array(ids, type=pa.string())
        self.member_ids = pa.array([f"{h}{k:02d}" for h in ids for k in range(slots)], type=pa.string())
        self._buffers = {
            name: _Buffer() for name in ("income", "employment", "expenses", "events", "loan_status")
        }
        self._monitoring = _Buffer()
        self._eliminations = _Buffer()
        self._open_case = np.full(count, -1, dtype=np.int64)
        self._cases = 0
        self._assistance = _Buffer()
        self._members = _Buffer()
        self._loans = _Buffer()

    # ------------------------------------------------------------------ month tables

    def _days(self, month: int, n: int) -> np.ndarray:
        return month_days(month) + self.rng.integers(0, 28, n)

    def income(self, month: int, amounts: np.ndarray, reported: np.ndarray) -> None:
        """``amounts`` by (source, household); rows for the non-zero sources of reported households."""
        rows = reported & (amounts != 0)
        # A reported month with nothing at all still needs one row, or it would read as not reported.
        rows[C.WAGE_LOCAL] |= reported & ~rows.any(axis=0)
        source, h = np.divmod(np.flatnonzero(rows.T), amounts.shape[0])[::-1]
        self._buffers["income"].add(
            household=h.astype(np.int32),
            month=np.full(h.size, month, dtype=np.int32),
            source=source.astype(np.int8),
            amount=amounts[source, h],
        )
        self._flush_if_full("income")

    def employment(self, month: int, mask: np.ndarray, status: np.ndarray) -> None:
        """Statuses of the members in ``mask`` (slot-major, like the state)."""
        k, h = np.nonzero(mask)
        self._buffers["employment"].add(
            member=(h * self.slots + k).astype(np.int32),
            month=np.full(h.size, month, dtype=np.int32),
            status=status[k, h].astype(np.int8),
        )
        self._flush_if_full("employment")

    def expense(
        self,
        month: int,
        household: np.ndarray,
        slot: np.ndarray,
        category: int,
        amount: np.ndarray,
        reimbursed: np.ndarray,
    ) -> None:
        n = household.size
        slot = np.asarray(slot)
        self._buffers["expenses"].add(
            household=household.astype(np.int32),
            member=np.where(slot >= 0, household * self.slots + slot, -1).astype(np.int64),
            day=self._days(month, n).astype(np.int32),
            category=np.full(n, category, dtype=np.int8),
            amount=np.asarray(amount, dtype=np.float64),
            reimbursed=np.minimum(np.asarray(reimbursed, dtype=np.float64), amount),
        )
        self._flush_if_full("expenses")

    def event(
        self,
        month: int,
        household: np.ndarray,
        slot: np.ndarray,
        kind: int,
        severity: np.ndarray,
        value: np.ndarray | None = None,
    ) -> None:
        n = household.size
        reported = self.rng.random(n) < C.EVENT_REPORT_RATE[kind]
        slot = np.asarray(slot)
        values = np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64)
        self._buffers["events"].add(
            household=household[reported].astype(np.int32),
            member=np.where(slot >= 0, household * self.slots + slot, -1)[reported].astype(np.int64),
            day=self._days(month, n)[reported].astype(np.int32),
            kind=np.full(int(reported.sum()), kind, dtype=np.int8),
            severity=np.broadcast_to(np.asarray(severity, dtype=np.int8), (n,))[reported],
            value=values[reported],
        )
        self._flush_if_full("events")

    def loan_status(self, month: int, loan: np.ndarray, balance: np.ndarray, overdue: np.ndarray) -> None:
        self._buffers["loan_status"].add(
            loan=loan.astype(np.int64),
            month=np.full(loan.size, month, dtype=np.int32),
            balance=balance.astype(np.float64),
            overdue=overdue.astype(np.int64),
        )
        self._flush_if_full("loan_status")

    # ------------------------------------------------------------------ people, cases, support, loans

    def snapshot_members(self, state: State) -> None:
        """Everyone who is a member at the first recorded month, as they were then."""
        k, h = np.nonzero(state.present)
        self._add_members(h, k, state)

    def member_joined(self, month: int, household: np.ndarray, slot: np.ndarray, state: State) -> None:
        self._add_members(household, slot, state)

    def _add_members(self, h: np.ndarray, k: np.ndarray, state: State) -> None:
        self._members.add(
            h=h.astype(np.int32),
            k=k.astype(np.int32),
            birth_year=state.birth_year[k, h].astype(np.int64),
            sex=state.sex[k, h],
            relation=state.relation[k, h],
            education=state.education[k, h],
            capacity=state.capacity[k, h],
            disability=state.disability_certified[k, h].astype(np.int64),
            chronic=state.chronic[k, h],
            insured=state.insured[k, h],
            joined=state.joined[k, h],
        )

    def identified(
        self, month: int, household: np.ndarray, category: np.ndarray, risk: np.ndarray, cause: np.ndarray
    ) -> None:
        n = household.size
        case = np.arange(self._cases, self._cases + n)
        self._cases += n
        self._open_case[household] = case
        self._monitoring.add(
            household=household.astype(np.int32),
            identified=np.full(n, month, dtype=np.int32),
            category=category,
            risk=risk,
            cause=cause,
        )

    def eliminated(self, month: int, household: np.ndarray) -> None:
        case = self._open_case[household]
        self._open_case[household] = -1
        self._eliminations.add(case=case, month=np.full(case.size, month, dtype=np.int32))

    def measure_ended(
        self, household: np.ndarray, measure: np.ndarray, start: np.ndarray, end: int, amount: np.ndarray
    ) -> None:
        self._assistance.add(
            household=household.astype(np.int32),
            measure=np.asarray(measure, dtype=np.int8),
            start=np.asarray(start, dtype=np.int32),
            end=np.full(household.size, end, dtype=np.int32),
            amount=np.asarray(amount, dtype=np.float64),
        )

    def loan(
        self,
        loan: np.ndarray,
        household: np.ndarray,
        kind: np.ndarray,
        issued: np.ndarray,
        principal: np.ndarray,
        term: np.ndarray,
        rate: np.ndarray,
        closed: np.ndarray,
    ) -> None:
        """Loans of the chunk (``loan`` = household * 1000 + sequence); ``closed`` -1 while open."""
        self._loans.add(
            loan=loan.astype(np.int64),
            household=household.astype(np.int32),
            kind=kind.astype(np.int8),
            issued=issued.astype(np.int32),
            principal=principal.astype(np.float64),
            term=term.astype(np.int64),
            rate=rate.astype(np.float64),
            closed=closed.astype(np.int32),
        )

    # ------------------------------------------------------------------ output

    def _loan_ids(self, loan: np.ndarray) -> pa.Array:
        """Household id followed by the loan's three-digit sequence number within the household."""
        return pc.binary_join_element_wise(
            id_array(loan // 1000, self.household_ids), id_array(loan % 1000, LOAN_SEQUENCES), ""
        )

    def _flush_if_full(self, table: str) -> None:
        if self._buffers[table].rows >= FLUSH_ROWS:
            self._flush(table)

    def _flush(self, table: str) -> None:
        buffer = self._buffers[table]
        if buffer.rows == 0:
            return
        c = buffer.take()
        if table == "income":
            columns = {
                "household_id": id_array(c["household"], self.household_ids),
                "month": months_to_date32(c["month"]),
                "source": enum_array(c["source"], C.INCOME_SOURCES),
                "amount": pa.array(c["amount"]),
            }
        elif table == "employment":
            columns = {
                "member_id": id_array(c["member"], self.member_ids),
                "month": months_to_date32(c["month"]),
                "status": enum_array(c["status"], C.EMPLOYMENT_STATUSES),
            }
        elif table == "expenses":
            columns = {
                "household_id": id_array(c["household"], self.household_ids),
                "member_id": id_array(c["member"], self.member_ids),
                "date": pa.array(c["day"], type=pa.date32()),
                "category": enum_array(c["category"], C.EXPENSE_CATEGORIES),
                "amount": pa.array(c["amount"]),
                "reimbursed": pa.array(c["reimbursed"]),
            }
        elif table == "events":
            columns = {
                "household_id": id_array(c["household"], self.household_ids),
                "member_id": id_array(c["member"], self.member_ids),
                "date": pa.array(c["day"], type=pa.date32()),
                "kind": enum_array(c["kind"], C.EVENT_KINDS),
                "severity": pa.array(c["severity"].astype(np.int64)),
                "value": pa.array(c["value"], from_pandas=True),
            }
        else:  # loan_status
            columns = {
                "loan_id": self._loan_ids(c["loan"]),
                "month": months_to_date32(c["month"]),
                "balance": pa.array(c["balance"]),
                "overdue_days": pa.array(c["overdue"]),
            }
        self.writer.write(table, columns)

    def finish(self, state: State, households: dict[str, pa.Array]) -> None:
        """Write what is complete only at the end: households, members, cases, support, loans."""
        for table in self._buffers:
            self._flush(table)
        self.writer.write("households", households)
        self._write_members(state)
        self._write_monitoring()
        self._write_assistance(state)
        self._write_loans()

    def _write_members(self, state: State) -> None:
        c = self._members.take()
        h, k = c["h"], c["k"]
        left = state.left[k, h]
        self.writer.write(
            "members",
            {
                "member_id": id_array(h.astype(np.int64) * self.slots + k, self.member_ids),
                "household_id": id_array(h, self.household_ids),
                "birth_year": pa.array(c["birth_year"]),
                "sex": enum_array(c["sex"], C.SEXES),
                "relation": enum_array(c["relation"], C.RELATIONS),
                "education": enum_array(c["education"], C.EDUCATION_LEVELS),
                "labor_capacity": enum_array(c["capacity"], C.LABOR_CAPACITIES),
                "disability_grade": pa.array(c["disability"]),
                "chronic_disease": pa.array(c["chronic"]),
                "medical_insurance": pa.array(c["insured"]),
                "joined_month": months_to_date32(c["joined"]),
                "left_month": months_to_date32(left),
            },
        )

    def _write_monitoring(self) -> None:
        c = self._monitoring.take()
        if not c:
            return
        eliminated = np.full(c["household"].size, -1, dtype=np.int32)
        e = self._eliminations.take()
        if e:
            eliminated[e["case"]] = e["month"]
        self.writer.write(
            "monitoring",
            {
                "household_id": id_array(c["household"], self.household_ids),
                "identified_month": months_to_date32(c["identified"]),
                "category": enum_array(c["category"], C.MONITORING_CATEGORIES),
                "risk_type": enum_array(c["risk"], C.RISK_TYPES),
                "primary_cause": enum_array(c["cause"], C.PRIMARY_CAUSES),
                "eliminated_month": months_to_date32(eliminated),
            },
        )

    def _write_assistance(self, state: State) -> None:
        h, k = np.nonzero(state.measure_active)
        self.measure_ended(h, k, state.measure_start[h, k], -1, state.measure_amount[h, k])
        c = self._assistance.take()
        self.writer.write(
            "assistance",
            {
                "household_id": id_array(c["household"], self.household_ids),
                "measure": enum_array(c["measure"], C.ASSISTANCE_MEASURES),
                "start_month": months_to_date32(c["start"]),
                "end_month": months_to_date32(c["end"]),
                "monthly_amount": pa.array(np.round(c["amount"], 2)),
            },
        )

    def _write_loans(self) -> None:
        c = self._loans.take()
        if not c:
            return
        keep = (c["closed"] < 0) | (c["closed"] >= self.config.start)
        c = {name: values[keep] for name, values in c.items()}
        self.writer.write(
            "loans",
            {
                "loan_id": self._loan_ids(c["loan"]),
                "household_id": id_array(c["household"], self.household_ids),
                "kind": enum_array(c["kind"], C.LOAN_KINDS),
                "issued_month": months_to_date32(c["issued"]),
                "principal": pa.array(c["principal"]),
                "term_months": pa.array(c["term"]),
                "annual_rate": pa.array(c["rate"]),
            },
        )
