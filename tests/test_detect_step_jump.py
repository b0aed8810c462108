"""detect.step_jump_z: a change that rose as a step (faster than any ramp) is not ready by any path."""

from __future__ import annotations

import numpy as np

from viraltrend.config import load_config
from viraltrend.detect import SequentialDetector
from viraltrend.kernels.change import jump_tail as _jump_tail

KEY = "VIRALTREND_DETECT_STEP_JUMP_Z"


def _fed(key: str, per_tick: list[int]) -> dict[str, np.ndarray]:
    """The detector's columns after one product's new users per 10-s tick (quiet before)."""
    det = SequentialDetector(load_config(None, environ={KEY: key}), 2)
    mu = lambda s: np.full(s.shape[0], 0.0005)  # noqa: E731
    t = 10_000_000
    for k, n in enumerate(per_tick):
        det.update(t + k * 10_000, np.zeros(n, np.int64), mu)
    return det.read(t + (len(per_tick) - 1) * 10_000, np.array([0]), mu(np.zeros(1)), np.array([60.0]))


# A flash sale (market tuning seed 542, pa9d01449e0fba31b): a wishlist trickle of about one user a minute
# starts a change point half an hour before the sale; then 28 users in the sale's first tick, 5-8 a tick on.
TRICKLE = ([1] + [0] * 5) * 28
SALE = TRICKLE + [28, 5, 6, 7, 8]
# A ramp doubling every 60 s (the fastest organic doubling) after the same trickle: 1.12 x a tick.
RAMP = TRICKLE + [round(2 * 2 ** (k / 6)) for k in range(30)]


def test_the_step_is_measured_against_the_fastest_ramp():
    """The sale's first tick against the 30 s before it is 15 powers of ten beyond a 60-s doubling; the
    ramp's ticks never are; a burst whose change point is its jump has nothing before it to compare."""
    ratio = 2.0 ** (10.0 / 60.0)
    sale = np.array([[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 28]], np.float64)
    ramp = np.array([[round(2 * 2 ** (k / 6)) for k in range(18)]], np.float64)
    assert _jump_tail(sale, np.array([18]), np.array([17]), ratio, 3)[0] > 10.0
    assert _jump_tail(ramp, np.array([18]), np.array([17]), ratio, 3)[0] < 2.0
    assert _jump_tail(sale, np.array([1]), np.array([17]), ratio, 3)[0] == 0.0  # the span: the jump only


def test_a_step_after_a_trickle_is_not_ready_with_the_key():
    """Off, the sale's step reads as growth in the fine ring (growth z >= 4): ready.  At 6 it is refused,
    its label (what the online model learns from) still as without the key; the ramp is ready in both."""
    off, on = _fed("0", SALE), _fed("6", SALE)
    assert off["growth_z"][0] >= 4.0 and off["ready"][0] == 1.0
    assert on["step_jump"][0] >= 6.0
    assert on["ready"][0] == 0.0 and on["ready_label"][0] == 1.0
    assert "step_jump" not in off
    ramp = _fed("6", RAMP)
    assert ramp["ready"][0] == 1.0 and ramp["step_jump"][0] < 6.0


def test_the_vouch_refuses_a_step_too():
    """The verdict with the model's probability (the vouch and the step path) asks the same: the sale's
    columns with the key on are not ready whatever the probability; without the step they are."""
    det = SequentialDetector(load_config(None, environ={KEY: "6"}), 2)
    cols = _fed("6", SALE)
    p = np.array([0.99])
    assert not det.ready(cols, np.array([60.0]), p)[0]
    cols["step_jump"] = np.array([0.0])
    assert det.ready(cols, np.array([60.0]), p)[0]


def test_the_learnt_rows_gate_ignores_the_step():
    """``shape_free=True`` (the gate of the rows the online model learns from) drops every shape test,
    this one too: a refused step still teaches the model (model21: refusing its rows sent the model's
    weights elsewhere for hours)."""
    det = SequentialDetector(load_config(None, environ={KEY: "6"}), 2)
    cols = _fed("6", SALE)
    assert cols["step_jump"][0] >= 6.0
    assert not det.ready(cols, np.array([60.0]), None)[0]
    assert det.ready(cols, np.array([60.0]), None, shape_free=True)[0]
