"""The shape of a change: :meth:`~viraltrend.detect.SequentialDetector.read`'s columns in one loop.

Given what :meth:`~viraltrend.kernels.cusum.ChangeDetector.read` returns for ``m`` candidates
(statistics, change points and the two rings of new-user counts), :func:`change_columns` computes
the detector's nine feature columns (:data:`COLUMNS`) in one compiled pass instead of ~60 numpy
calls on small arrays: the Python ticks that evaluate the board's products call it once each.

**The same bits as the numpy form** (``tests/kernels/reference.py``'s ``change_columns``, the code
it replaces).  The only sums are over the rings' counts, which are whole numbers (``uint8`` and
``uint16`` bins), times 0/1 masks or the growth test's offsets (multiples of 0.5): every partial
sum is an exact double, so the order of the additions (numpy's pairwise sum, this loop's running
one) cannot change a result; numpy's reduction starts from its identity ``+0.0``, and so does
this one (a sum that is exactly zero is ``+0.0`` in both, whatever its terms' signs).  Every
other step is one IEEE operation done in the same order (``sqrt`` and ``/`` are correctly rounded
in both), and ``argmax`` keeps numpy's first maximum (the first NaN, if any).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["COLUMNS", "change_array", "change_columns", "verdicts"]

_F = NDArray[np.float64]

COLUMNS: Final = (
    "evidence", "evidence_lift", "change_s", "growth_z", "growth_z_slow", "fade_z", "recent_users",
    "recent_lift", "change_users",
)  # fmt: skip


@njit(cache=True)
def _growth_row(bins: _F, i: int, usable: int, newest: int) -> float:
    """``detect._growth`` of row ``i`` (its ``usable`` bins ending at column ``newest``)."""
    u = min(usable, newest + 1)
    n = float(max(u, 1))
    centre = newest - (u - 1) / 2.0
    total = score = squares = 0.0
    for j in range(bins.shape[1]):
        inside = j > newest - u and j <= newest
        dev = float(j) - centre if inside else 0.0
        v = bins[i, j]
        total += v * (1.0 if inside else 0.0)
        score += dev * v
        squares += dev * dev
    var = (total / n) * squares
    return score / math.sqrt(var + 1.0) if u >= 4 else 0.0


@njit(cache=True, error_model="numpy")
def _columns(
    stat: _F, zero: NDArray[np.int64], fine: _F, coarse: _F, mu: _F, lifts: _F, now_ms: int, tick_ms: int,
    per: int, h: float, fade_ticks: int, out: _F,
) -> None:  # fmt: skip
    """Fill ``out`` (float64[9, m], :data:`COLUMNS` order); see :func:`change_columns`."""
    m, k = fine.shape
    n_slow = coarse.shape[1]
    tick = now_ms // tick_ms
    complete = 1 if tick % per == per - 1 else 0
    newest = n_slow - 2 + complete
    c_now = tick // per
    for i in range(m):
        b = 0
        for q in range(1, stat.shape[1]):
            x, y = stat[i, q], stat[i, b]
            if x > y or (x != x and y == y):  # numpy's argmax: the first maximum, or the first NaN
                b = q
        since = now_ms - zero[i, b]
        ticks = min(max(np.int64(math.ceil(since / tick_ms)), 1), k)
        c_zero = (zero[i, b] // tick_ms) // per
        slow = min(max(c_now - c_zero - 1 + complete, 0), newest + 1)
        last = before = window = 0.0
        n_before = 0
        for j in range(k):
            v = fine[i, j]
            if j >= k - fade_ticks:
                last += v
            inb = j >= k - ticks and j < k - fade_ticks
            n_before += 1 if inb else 0
            before += v * (1.0 if inb else 0.0)
            window += v * (1.0 if j >= k - ticks else 0.0)
        expected = before / max(n_before, 1) * fade_ticks
        c_since = min(max(c_now - c_zero + 1, 1), n_slow)
        in_coarse = 0.0
        for j in range(n_slow):
            in_coarse += coarse[i, j] * (1.0 if j >= n_slow - c_since else 0.0)
        out[0, i] = stat[i, b] / h
        out[1, i] = lifts[b]
        out[2, i] = since / 1000.0
        out[3, i] = _growth_row(fine, i, max(ticks - 1, 0), k - 1)
        out[4, i] = _growth_row(coarse, i, slow, newest)
        out[5, i] = (last - expected) / math.sqrt(expected + 1.0) if n_before >= fade_ticks else 0.0
        out[6, i] = last
        out[7, i] = window / (mu[i] * float(ticks) * float(tick_ms) / 1000.0)
        out[8, i] = window if since <= k * tick_ms else in_coarse


def change_columns(
    stat: _F, zero: NDArray[np.int64], fine: _F, coarse: _F, mu: _F, lifts: _F, *, now_ms: int, tick_ms: int,
    ticks_per_coarse: int, h: float, fade_ticks: int,
) -> dict[str, _F]:  # fmt: skip
    """The detector's columns of ``m`` candidates, float64[m] each, keyed by :data:`COLUMNS`.

    ``stat`` float64[m, n_lifts] and ``zero`` int64[m, n_lifts] (change points, ms), ``fine``
    float64[m, n_bins] and ``coarse`` float64[m, n_coarse] (whole counts, oldest first) as
    :meth:`~viraltrend.kernels.cusum.ChangeDetector.read` returns them; ``mu`` float64[m] the
    baselines, ``lifts`` float64[n_lifts]; ``h`` the alarm threshold; ``fade_ticks`` the ticks
    of ``fade_z``'s recent window.  The columns are the rows of :func:`change_array`'s result.
    """
    out = change_array(
        stat, zero, fine, coarse, mu, lifts, now_ms=now_ms, tick_ms=tick_ms,
        ticks_per_coarse=ticks_per_coarse, h=h, fade_ticks=fade_ticks,
    )  # fmt: skip
    return dict(zip(COLUMNS, out, strict=True))


def change_array(
    stat: _F, zero: NDArray[np.int64], fine: _F, coarse: _F, mu: _F, lifts: _F, *, now_ms: int, tick_ms: int,
    ticks_per_coarse: int, h: float, fade_ticks: int,
) -> _F:  # fmt: skip
    """:func:`change_columns` as one float64[9, m] array (rows in :data:`COLUMNS` order)."""
    m = fine.shape[0]
    if stat.shape[0] != m or zero.shape != stat.shape or coarse.shape[0] != m or mu.shape != (m,):
        shapes = (stat.shape, zero.shape, fine.shape, coarse.shape, mu.shape)
        msg = f"change_columns: shapes do not fit {shapes}"
        raise ValueError(msg)
    if lifts.shape[0] != stat.shape[1] or tick_ms < 1 or ticks_per_coarse < 1 or coarse.shape[1] < 2:
        msg = "change_columns: need a lift per statistic, tick_ms >= 1, ticks_per_coarse >= 1, 2+ coarse bins"
        raise ValueError(msg)
    out = np.empty((len(COLUMNS), m), np.float64)
    _columns(
        np.ascontiguousarray(stat, np.float64), np.ascontiguousarray(zero, np.int64),
        np.ascontiguousarray(fine, np.float64), np.ascontiguousarray(coarse, np.float64),
        np.ascontiguousarray(mu, np.float64), np.ascontiguousarray(lifts, np.float64),
        int(now_ms), int(tick_ms), int(ticks_per_coarse), float(h), int(fade_ticks), out,
    )  # fmt: skip
    return out


@njit(cache=True)
def _verdicts(
    cols: _F, share: _F, long_share: _F, users: _F, joint: _F, share_test: bool, long_test: bool, limits: _F,
    ready: NDArray[np.bool_], label: NDArray[np.bool_],
) -> None:  # fmt: skip
    """Fill ``ready`` and ``label`` (bool[m]); see :func:`verdicts` (``limits`` in its order)."""
    (
        fade,
        growth,
        sustain_s,
        share_min,
        floor,
        floor_age,
        bar,
        max_age,
        min_users,
        min_change,
        min_lift,
        joint_z,
    ) = limits
    for i in range(cols.shape[1]):
        evidence, change_s, gz, gz_slow, fz = cols[0, i], cols[2, i], cols[3, i], cols[4, i], cols[5, i]
        fading = gz <= -fade or gz_slow <= -fade or fz <= -fade
        shaped_label = gz >= growth or gz_slow >= growth
        shaped = shaped_label or (joint_z > 0.0 and joint[i] >= joint_z)
        sustained = change_s >= sustain_s
        sustained_label = sustained
        if share_test:
            shared = shared_label = share[i] >= share_min
            if long_test:
                if floor > 0.0:
                    shared = shared and (change_s < floor_age or long_share[i] >= floor)
                shared = shared or long_share[i] >= bar
                shared_label = shared_label or long_share[i] >= bar
            sustained = sustained and shared
            sustained_label = sustained_label and shared_label
        young = change_s <= max_age
        backed = users[i] >= min_users or cols[8, i] >= min_change
        ok = evidence >= 1.0 and backed and not fading and cols[7, i] >= min_lift
        ready[i] = ok and (shaped or sustained) and young
        label[i] = ok and (shaped_label or sustained_label) and young


def verdicts(
    cols: _F,
    users: _F,
    share: _F | None,
    long_share: _F | None,
    limits: tuple[float, ...],
    *,
    share_test: bool,
    joint: _F | None = None,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The detector's verdict without the model, and its label (without the long floor and the joint test).

    :meth:`~viraltrend.detect.SequentialDetector.ready` (``probability`` None, ``shape_free``
    False) as is, and with ``long_floor`` and ``joint`` False (the label), for
    :func:`change_columns`' ``cols`` (float64[9, m]), ``users`` (float64[m]), the shares per view
    over the catalogue's (``share``, None: not reported, as ``inf``) and the longer window's
    (``long_share``, None: not asked).
    ``limits``: ``fade_z``, ``growth_z``, ``sustain_s``, ``sustain_min_share_ratio``,
    ``sustain_share_long_floor``, its age, the long ratio's bar, ``max_change_age_s``,
    ``trust.min_unique_users``, ``min_change_users``, ``min_recent_lift``, ``joint_growth_z`` (0:
    off); ``share_test``: ``sustain_min_share_ratio > 0``; ``joint``: the joint growth z (float64[m],
    None: not read).  Comparisons only: the same booleans as numpy's.
    """
    m = cols.shape[1]
    if cols.shape[0] != len(COLUMNS) or users.shape != (m,) or len(limits) != 12:
        msg = f"verdicts: need columns [9, m], users [m] and 12 limits, got {cols.shape}, {users.shape}"
        raise ValueError(msg)
    inf = np.full(m, np.inf)
    ready, label = np.empty(m, np.bool_), np.empty(m, np.bool_)
    share = inf if share is None else np.ascontiguousarray(share, np.float64)
    _verdicts(
        np.ascontiguousarray(cols, np.float64), share,
        inf if long_share is None else np.ascontiguousarray(long_share, np.float64),
        np.ascontiguousarray(users, np.float64),
        np.full(m, -np.inf) if joint is None else np.ascontiguousarray(joint, np.float64),
        share_test, long_share is not None,
        np.asarray(limits, np.float64), ready, label,
    )  # fmt: skip
    return ready, label
