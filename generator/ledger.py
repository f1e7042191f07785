"""Savings and loans: how a household's cash holds up, seen through its loans.

The ledger follows the recorded run only. It reads each month's income,
bills and identifications, keeps a hidden savings balance, and runs the
household's loans: poverty micro-credit (interest due quarterly, principal
at maturity, sometimes extended), bank loans paid in instalments, and
informal loans from relatives taken when savings run out after a blow.
Overdue days grow when savings cannot meet what falls due, so they rise
before the rules fire when income weakens, and around maturity. Nothing here
feeds back into income or rigid spending, so the oracle does not need it to
know when a rule fires.
"""

from __future__ import annotations

import numpy as np

from . import codes as C
from .config import CountyConfig
from .dynamics import MonthResult
from .recording import TableRecorder
from .state import State

LOAN_SLOTS = 4
EMPTY = -1


class Ledger:
    def __init__(
        self, config: CountyConfig, state: State, rng: np.random.Generator, rec: TableRecorder
    ) -> None:
        self.config = config
        self.rng = rng
        self.rec = rec
        n = state.households
        shape = (n, LOAN_SLOTS)
        size = state.present.sum(axis=0)
        self.savings = size * 4000.0 * np.exp(rng.normal(0, 0.8, n)) * np.where(state.registered, 1.0, 2.0)
        self.smoothed_income = np.zeros(n)
        self.kind = np.full(shape, EMPTY, dtype=np.int8)
        self.sequence = np.zeros(shape, dtype=np.int64)
        self.issued = np.zeros(shape, dtype=np.int32)
        self.term = np.zeros(shape, dtype=np.int32)
        self.principal = np.zeros(shape)
        self.rate = np.zeros(shape)
        self.balance = np.zeros(shape)
        self.overdue = np.zeros(shape, dtype=np.int64)
        self.extended = np.zeros(shape, dtype=bool)
        self.next_sequence = np.ones(n, dtype=np.int64)
        self._opened: list[tuple[np.ndarray, ...]] = []
        self._closed: dict[int, int] = {}
        self._subsidies: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._seed_loans(state)

    # ------------------------------------------------------------------ opening and closing

    def _open(
        self,
        households: np.ndarray,
        kind: int,
        issued: np.ndarray,
        principal: np.ndarray,
        term: np.ndarray,
        rate: np.ndarray,
    ) -> np.ndarray:
        free = self.kind[households] == EMPTY
        can = free.any(axis=1) & (self.next_sequence[households] < 1000)
        h = households[can]
        slot = np.argmax(free[can], axis=1)
        issued, principal, term, rate = (
            np.broadcast_to(a, households.shape)[can] for a in (issued, principal, term, rate)
        )
        self.kind[h, slot] = kind
        self.sequence[h, slot] = self.next_sequence[h]
        self.next_sequence[h] += 1
        self.issued[h, slot] = issued
        self.term[h, slot] = term
        self.principal[h, slot] = principal
        self.rate[h, slot] = rate
        self.balance[h, slot] = principal
        self.overdue[h, slot] = 0
        self.extended[h, slot] = False
        loan = h * 1000 + self.sequence[h, slot]
        self._opened.append((loan, h, np.full(h.size, kind), issued, principal, term, rate))
        if kind == C.MICROCREDIT:
            self._subsidies.append((h, issued, issued + term - 1))
        return h

    def _close(self, h: np.ndarray, slot: np.ndarray, month: int) -> None:
        for loan in (h * 1000 + self.sequence[h, slot]).tolist():
            self._closed[loan] = month
        self.kind[h, slot] = EMPTY
        self.balance[h, slot] = 0
        self.overdue[h, slot] = 0

    def _seed_loans(self, state: State) -> None:
        """Loans already running at the first simulated month."""
        rng = self.rng
        n = state.households
        first = self.config.first_simulated
        productive = (state.livestock_target > 0) | state.business
        micro = state.registered & (rng.random(n) < np.where(productive, 0.35, 0.12))
        h = np.flatnonzero(micro)
        self._open(
            h,
            C.MICROCREDIT,
            first - rng.integers(0, 36, h.size),
            np.round(rng.uniform(30000, 50000, h.size), -3),
            np.where(rng.random(h.size) < 0.8, 36, 24),
            np.full(h.size, 0.0435),
        )
        bank = ~state.registered & (rng.random(n) < 0.12)
        h = np.flatnonzero(bank)
        self._open(
            h,
            C.BANK,
            first - rng.integers(0, 48, h.size),
            np.round(np.exp(rng.normal(np.log(80000), 0.5, h.size)), -3),
            np.where(rng.random(h.size) < 0.5, 36, 60),
            np.round(rng.uniform(0.045, 0.065, h.size), 4),
        )
        informal = rng.random(n) < 0.04
        h = np.flatnonzero(informal)
        self._open(
            h,
            C.INFORMAL,
            first - rng.integers(0, 12, h.size),
            np.round(rng.uniform(5000, 30000, h.size), -3),
            np.full(h.size, 24),
            np.zeros(h.size),
        )
        # Bank balances already paid down by the instalments before the first month.
        for slot in range(LOAN_SLOTS):
            bank_slot = self.kind[:, slot] == C.BANK
            age = first - self.issued[bank_slot, slot]
            self.balance[bank_slot, slot] = self._amortised_balance(
                self.principal[bank_slot, slot], self.rate[bank_slot, slot], self.term[bank_slot, slot], age
            )

    @staticmethod
    def _instalment(principal: np.ndarray, rate: np.ndarray, term: np.ndarray) -> np.ndarray:
        r = rate / 12
        with np.errstate(divide="ignore", invalid="ignore"):
            pay = np.where(
                r > 0, principal * r / (1 - (1 + r) ** (-term.astype(np.float64))), principal / term
            )
        return pay

    @classmethod
    def _amortised_balance(
        cls, principal: np.ndarray, rate: np.ndarray, term: np.ndarray, paid: np.ndarray
    ) -> np.ndarray:
        r = rate / 12
        pay = cls._instalment(principal, rate, term)
        paid = np.clip(paid, 0, term).astype(np.float64)
        grown = principal * (1 + r) ** paid
        with np.errstate(divide="ignore", invalid="ignore"):
            repaid = np.where(r > 0, pay * ((1 + r) ** paid - 1) / r, pay * paid)
        return np.maximum(np.round(grown - repaid, 2), 0.0)

    # ------------------------------------------------------------------ a month

    def step(self, state: State, month: int, result: MonthResult) -> None:
        rng = self.rng
        n = state.households
        price = (1 + self.config.dynamics.price_growth) ** ((month - 2021 * 12) / 12)
        income = result.income.sum(axis=0)
        self.smoothed_income = np.where(
            self.smoothed_income == 0, income, 0.9 * self.smoothed_income + 0.1 * income
        )
        consumption = np.maximum(result.size * 350.0 * price, 0.8 * self.smoothed_income)
        self.savings += income - consumption - result.rigid

        open_ = self.kind != EMPTY
        age = month - self.issued
        # bank loans: monthly instalments
        bank = open_ & (self.kind == C.BANK) & (age >= 1)
        due = np.where(bank, self._instalment(self.principal, self.rate, self.term), 0.0)
        due = np.minimum(due, self.balance * (1 + self.rate / 12))
        # micro-credit: interest each quarter (repaid by the subsidy later), principal at maturity
        micro = open_ & (self.kind == C.MICROCREDIT)
        interest = np.where(
            micro & (age > 0) & (age % 3 == 0) & (age < self.term), self.balance * self.rate / 4, 0.0
        )
        due += interest
        wanted = due.sum(axis=1)
        can_pay = self.savings >= wanted
        paid = open_ & (due > 0) & can_pay[:, None]
        self.savings -= np.where(can_pay, wanted, 0.0)
        bank_paid = paid & bank
        principal_part = np.where(bank_paid, due - self.balance * self.rate / 12, 0.0)
        self.balance = np.maximum(self.balance - principal_part, 0.0)
        missed = open_ & (due > 0) & ~can_pay[:, None]
        self.overdue = np.where(missed, self.overdue + 30, self.overdue)
        self.overdue = np.where(paid & (self.kind != C.MICROCREDIT), 0, self.overdue)
        self.overdue = np.where(paid & (interest > 0), 0, self.overdue)
        # principal of micro-credit and informal loans falls due at maturity; bank loans end when paid off
        lump = open_ & (self.kind != C.BANK) & (age >= self.term)
        if lump.any():
            h, slot = np.nonzero(lump)
            owed = self.balance[h, slot]
            cash = self.savings[h]
            repay = cash >= owed
            extend = (
                ~repay
                & (self.kind[h, slot] == C.MICROCREDIT)
                & ~self.extended[h, slot]
                & (cash >= 0.3 * owed)
                & (rng.random(h.size) < 0.6)
            )
            np.subtract.at(self.savings, h[repay], owed[repay])
            self.term[h[extend], slot[extend]] += 12
            self.extended[h[extend], slot[extend]] = True
            late = ~repay & ~extend
            self.overdue[h[late], slot[late]] += 30
            self._close(h[repay], slot[repay], month)
        finished = open_ & (self.kind == C.BANK) & (self.balance <= 1.0)
        if finished.any():
            h, slot = np.nonzero(finished)
            self._close(h, slot, month)
        np.minimum(self.overdue, 1080, out=self.overdue)

        # new loans: relatives lend when savings run out; micro-credit for farming, trade or a monitored case
        short = self.savings < -3000
        h = np.flatnonzero(short)
        borrowed = self._open(
            h,
            C.INFORMAL,
            np.full(h.size, month),
            np.round(-self.savings[h] + 5000, -3),
            np.full(h.size, 24),
            np.zeros(h.size),
        )
        self.savings[borrowed] += np.round(-self.savings[borrowed] + 5000, -3)
        no_micro = ~(self.kind == C.MICROCREDIT).any(axis=1)
        productive = (state.livestock_target > 0) | state.business
        industry_case = np.zeros(n, dtype=bool)
        industry_case[result.identified[result.identified_cause == C.C_INDUSTRY]] = True
        odds = np.where(industry_case, 0.5, np.where(state.registered & productive, 0.004, 0.0))
        new_micro = no_micro & (rng.random(n) < odds)
        h = np.flatnonzero(new_micro)
        principal = np.round(rng.uniform(30000, 50000, h.size), -3)
        issued = self._open(
            h,
            C.MICROCREDIT,
            np.full(h.size, month),
            principal,
            np.where(rng.random(h.size) < 0.8, 36, 24),
            np.full(h.size, 0.0435),
        )
        self.savings[issued] += 0.3 * principal[np.isin(h, issued)]
        new_bank = ~state.registered & (rng.random(n) < 0.001)
        h = np.flatnonzero(new_bank)
        principal = np.round(np.exp(rng.normal(np.log(80000), 0.5, h.size)), -3)
        issued = self._open(
            h,
            C.BANK,
            np.full(h.size, month),
            principal,
            np.where(rng.random(h.size) < 0.5, 36, 60),
            np.round(rng.uniform(0.045, 0.065, h.size), 4),
        )
        self.savings[issued] += 0.2 * principal[np.isin(h, issued)]

        if self.rec.tables_on:
            h, slot = np.nonzero(self.kind != EMPTY)
            self.rec.loan_status(
                month,
                h * 1000 + self.sequence[h, slot],
                np.round(self.balance[h, slot], 2),
                self.overdue[h, slot],
            )

    def finish(self) -> None:
        """Hand every loan (and the interest subsidy of each micro-credit) to the recorder."""
        for loan, h, kind, issued, principal, term, rate in self._opened:
            closed = np.array([self._closed.get(x, -1) for x in loan.tolist()], dtype=np.int32)
            self.rec.loan(loan, h, kind, issued, principal, term, rate, closed)
        for h, start, end in self._subsidies:
            open_end = np.where(end > self.config.end, -1, end)
            for_records = (open_end < 0) | (open_end >= self.config.start)
            for e in np.unique(open_end[for_records]):
                pick = for_records & (open_end == e)
                self.rec.measure_ended(
                    h[pick],
                    np.full(int(pick.sum()), C.M_MICROCREDIT_SUBSIDY),
                    start[pick],
                    int(e),
                    np.zeros(int(pick.sum())),
                )
