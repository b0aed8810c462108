"""run_ticks' check of a sweep plan, read once per plan (``_plan_fits``), against the check it replaced."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from viraltrend.kernels.segment import SweepPlan, _plan_fits


def _reference(plan: SweepPlan, sweep_pos: int, capacity_users: int) -> bool:
    """The checks ``run_ticks`` ran on every call before."""
    return bool(
        all(a.dtype == np.int64 and a.flags.c_contiguous for a in plan[:6])
        and 0 <= sweep_pos <= plan.ticks.shape[0]
        and int(plan.released_off[-1]) == plan.released.shape[0]
        and int(plan.returning_off[-1]) == plan.returning.shape[0]
        and not (plan.released >= capacity_users).any()
        and not (plan.returning >= capacity_users).any()
    )


def _plan(released: list[list[int]], returning: list[list[int]], close: bool) -> SweepPlan:
    def flat(parts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        off = np.zeros(len(parts) + 1, np.int64)
        off[1:] = np.cumsum([len(p) for p in parts])
        values = np.array([x for p in parts for x in p], np.int64)
        return values, off

    rel, rel_off = flat(released)
    ret, ret_off = flat(returning)
    if not close:
        rel_off[-1] += 1  # an offset past its array: refused
    n = len(released)
    ticks = np.arange(n, dtype=np.int64) * 10_000
    return SweepPlan(ticks, ticks + 10_000, rel, rel_off, ret, ret_off, [0] * n)


sweeps = st.lists(st.lists(st.integers(0, 300), max_size=6), min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(
    released=sweeps,
    back=st.lists(st.lists(st.integers(0, 300), max_size=6), min_size=1, max_size=4),
    close=st.booleans(),
    calls=st.lists(st.tuples(st.integers(-1, 5), st.integers(0, 320)), min_size=1, max_size=6),
)
def test_plan_fits_as_the_full_check_at_every_call(
    released: list[list[int]], back: list[list[int]], close: bool, calls: list[tuple[int, int]]
) -> None:
    back = (back + [[]] * len(released))[: len(released)]
    plan = _plan(released, back, close)
    other = _plan([[0]], [[]], True)
    for pos, capacity in calls:  # the same plan at several calls: its capacity grows, its position moves
        assert _plan_fits(plan, pos, capacity) == _reference(plan, pos, capacity)
        assert _plan_fits(other, 0, capacity) == _reference(other, 0, capacity)  # the memo changes plans


def test_a_plan_of_another_dtype_is_refused() -> None:
    plan = _plan([[1, 2]], [[3]], True)
    plan = plan._replace(released=plan.released.astype(np.int32))
    assert not _plan_fits(plan, 0, 1000)
    assert not _reference(plan, 0, 1000)
