"""A dataset cut back to an earlier month holds what the county's system held then, and keeps the contract."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from relapse_risk.features.loading import load_dataset
from relapse_risk.features.snapshot import snapshot_frames, write_snapshot

CUT = dt.date(2023, 6, 1)


@pytest.fixture(scope="module")
def full(small_county):
    return load_dataset(small_county.folder)


@pytest.fixture(scope="module")
def cut(full, tmp_path_factory):
    return load_dataset(write_snapshot(full, CUT, tmp_path_factory.mktemp("snapshot") / "county"))


def test_the_cut_folder_keeps_the_contract_and_ends_at_the_cut(cut) -> None:
    assert cut.policy.data_end == CUT
    assert max(cut.policy.monitoring_line) == 2023
    assert cut.total_rejects == 0


def test_rows_that_start_after_the_cut_are_gone_and_earlier_ones_kept(full, cut) -> None:
    income = cut.frame("income")
    assert pd.to_datetime(income["month"]).max() == pd.Timestamp(CUT)
    earlier = pd.to_datetime(full.frame("income")["month"]) <= pd.Timestamp(CUT)
    assert len(income) == int(earlier.sum())


def test_ends_after_the_cut_had_not_happened_yet(full) -> None:
    _, frames = snapshot_frames(full, CUT)
    members = full.frame("members").set_index("member_id")
    left_later = members.index[pd.to_datetime(members["left_month"]) > pd.Timestamp(CUT)]
    assert len(left_later) > 0
    kept = frames["members"].set_index("member_id").loc[left_later]
    assert kept["left_month"].isna().all()
    open_cases = frames["monitoring"]
    assert (pd.to_datetime(open_cases["eliminated_month"].dropna()) <= pd.Timestamp(CUT)).all()


def test_a_cut_outside_the_data_is_refused(full) -> None:
    with pytest.raises(ValueError, match="cannot cut at 2030-01"):
        snapshot_frames(full, dt.date(2030, 1, 1))
