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

:func:`growth_joint` (the joint growth test, ``detect.joint_growth_z``) centres its offsets on a
rounded mean, so its sums are not exact: it adds its terms in numpy's own order instead
(:func:`_pairwise`, numpy's pairwise summation of a contiguous row, after its identity ``+0.0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["COLUMNS", "change_array", "change_columns", "growth_joint", "ready", "verdicts"]

_F = NDArray[np.float64]

COLUMNS: Final = (
    "evidence", "evidence_lift", "change_s", "growth_z", "growth_z_slow", "fade_z", "recent_users",
    "recent_lift", "change_users",
)  # fmt: skip


@njit(cache=True)
def _argmax_row(stat: _F, i: int) -> int:
    """``np.argmax(stat[i])``: the first maximum, or the first NaN."""
    b = 0
    for q in range(1, stat.shape[1]):
        x, y = stat[i, q], stat[i, b]
        if x > y or (x != x and y == y):
            b = q
    return b


@njit(cache=True)
def _growth_row(bins: _F, i: int, usable: int, newest: int) -> float:
    """Trend of row ``i``'s ``usable`` bins ending at column ``newest``, as a z-score (0 under 4 bins).

    The score test for a log-linear trend in Poisson counts, ``j`` the bin and ``c_j`` its count:
    ``z = sum((j - mean j) c_j) / sqrt(mean c * sum((j - mean j)**2) + 1)``; the numpy reference is
    ``tests/kernels/reference.py``'s ``_growth``.
    """
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
        b = _argmax_row(stat, i)
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


@njit(cache=True)
def _block(a: _F, lo: int, n: int) -> float:
    """Numpy's ``pairwise_sum`` of ``a[lo:lo + n]`` for ``n <= 128`` (a leaf of its recursion).

    Under 8 terms one running sum; else eight running sums over the terms in steps of 8, combined
    as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the remainder one by one.
    """
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return float(res)


@njit(cache=True)
def _pairwise(a: _F, lo: int, n: int) -> float:
    """``a[lo:lo + n]``'s sum as numpy's ``add.reduce`` adds a contiguous float64 row (``pairwise_sum``).

    Up to 128 terms :func:`_block`; beyond, the two halves (split at a multiple of 8) summed so and
    added, left + right.  numpy recurses; this walks the same tree with a stack (a recursive
    function loaded from numba's cache crashes).
    """
    if n <= 128:
        return _block(a, lo, n)
    f_lo = np.empty(64, np.int64)  # frames: 64 levels hold any row (each halves it)
    f_n = np.empty(64, np.int64)
    f_state = np.zeros(64, np.int64)  # 0: expand the left half, 1: the right, 2: add the two
    vals = np.empty(64)
    top, nv = 0, 0
    f_lo[0], f_n[0], f_state[0] = lo, n, 0
    while top >= 0:
        x, size = f_lo[top], f_n[top]
        if size <= 128:
            vals[nv] = _block(a, x, size)
            nv += 1
            top -= 1
            continue
        n2 = size // 2
        n2 -= n2 % 8
        state = f_state[top]
        if state == 2:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
            continue
        f_state[top] = state + 1
        top += 1
        f_lo[top], f_n[top], f_state[top] = (x, n2, 0) if state == 0 else (x + n2, size - n2, 0)
    return float(vals[0])


@njit(cache=True)
def _reduce(a: _F) -> float:
    """Numpy's ``a.sum()`` of a contiguous float64 row: its identity ``+0.0`` plus the pairwise sum."""
    return 0.0 + _pairwise(a, 0, a.shape[0])


@njit(cache=True)
def _joint(
    stat: _F, zero: NDArray[np.int64], fine: _F, coarse: _F, now_ms: int, tick_ms: int, per: int, out: _F
) -> None:
    """Fill ``out`` (float64[m]); see :func:`growth_joint`."""
    m, k = fine.shape
    n = coarse.shape[1]
    tick = now_ms // tick_ms
    f0 = -(-(tick - k + 1) // per) * per  # first tick of the first coarse bin the fine ring holds whole
    nf = tick - f0 + 1
    c_now = tick // per
    last_c = f0 // per - 1  # the newest coarse bin before the fine ring's part
    col_last = n - 1 - (c_now - last_c)  # its column
    width = float(per)
    w = np.empty(k + n)
    t = np.empty(k + n)
    c = np.empty(k + n)
    buf = np.empty(k + n)
    for i in range(m):
        b = _argmax_row(stat, i)
        zero_ms = zero[i, b]
        ticks = min(max(np.int64(math.ceil((now_ms - zero_ms) / tick_ms)), 1), k)
        n_fine = min(max(ticks - 1, 0), nf)
        c_zero = (zero_ms // tick_ms) // per
        n_c = min(max(last_c - c_zero, 0), col_last + 1)
        for j in range(k):
            inside = j >= k - n_fine
            w[j] = 1.0 if inside else 0.0
            t[j] = float(j - (k - 1)) + 0.5
            c[j] = fine[i, j] * (1.0 if inside else 0.0)
        for j in range(n):
            inside = j <= col_last and j > col_last - n_c
            w[k + j] = width if inside else 0.0
            t[k + j] = float((c_now - (n - 1 - j)) * per) + per / 2.0 - float(tick)
            c[k + j] = coarse[i, j] * (1.0 if inside else 0.0)
        big_w = _reduce(w)
        for j in range(k + n):
            buf[j] = w[j] * t[j]
        tbar = _reduce(buf) / max(big_w, 1.0)
        for j in range(k + n):
            t[j] = t[j] - tbar if w[j] > 0.0 else 0.0  # the offsets from the weighted mean
            buf[j] = c[j] * t[j]
        score = _reduce(buf)
        for j in range(k + n):
            buf[j] = w[j] * (t[j] * t[j])
        var = _reduce(c) / max(big_w, 1.0) * _reduce(buf)
        out[i] = score / math.sqrt(var + 1.0) if n_fine + n_c >= 4 else 0.0


def growth_joint(
    stat: _F,
    zero: NDArray[np.int64],
    fine: _F,
    coarse: _F,
    *,
    now_ms: int,
    tick_ms: int,
    ticks_per_coarse: int,
) -> _F:
    """The growth test over both rings as one series since the change point, float64[m] (z-scores).

    ``stat``, ``zero`` (ms), ``fine`` and ``coarse`` as :meth:`~viraltrend.kernels.cusum.ChangeDetector.read`
    returns them; the change point is the largest statistic's (numpy's ``argmax``).  The coarse
    ring's whole bins after the change point's bin up to where the fine ring takes over (the first
    coarse bin the fine ring holds whole), then the fine ring's ticks from there on to the tick
    ending now (at most the whole ticks after the change point).  Each unit ``i`` has a width
    ``w_i`` (1 tick or ``ticks_per_coarse``), a centre ``t_i`` and a count ``c_i``; the score test
    for a log-linear trend in Poisson counts with exposures:
    ``z = sum(c_i (t_i - tbar)) / sqrt(N / W * sum(w_i (t_i - tbar)**2) + 1)`` with
    ``tbar = sum(w_i t_i) / W``, ``W = sum(w_i)``, ``N = sum(c_i)``; 0 while fewer than four units
    are usable.  The same bits as the numpy form it replaces (``tests/kernels/reference.py``'s
    ``growth_joint``): every sum in numpy's pairwise order (:func:`_pairwise`).

    >>> fine = np.zeros((2, 18)); fine[0, 6:] = [1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 6, 7]
    >>> coarse = np.zeros((2, 24)); coarse[0, -6:] = [2, 3, 4, 8, 16, 19]  # the newest 3 as the ticks above
    >>> fine[1, :] = 5.0; coarse[1, :] = 30.0; coarse[1, -1] = 25.0  # flat (the current bin 5 ticks in)
    >>> stat, zero = np.ones((2, 1)), np.full((2, 1), -10**9)  # changed long ago: every whole unit
    >>> kw = dict(now_ms=(6 * 100 + 4) * 10_000, tick_ms=10_000, ticks_per_coarse=6)
    >>> growth_joint(stat, zero, fine, coarse, **kw).round(2).tolist()
    [10.79, 0.0]
    """
    m = fine.shape[0]
    if stat.shape[0] != m or zero.shape != stat.shape or coarse.shape[0] != m or stat.shape[1] < 1:
        msg = f"growth_joint: shapes do not fit {(stat.shape, zero.shape, fine.shape, coarse.shape)}"
        raise ValueError(msg)
    if tick_ms < 1 or ticks_per_coarse < 1:
        msg = "growth_joint: need tick_ms >= 1 and ticks_per_coarse >= 1"
        raise ValueError(msg)
    out = np.empty(m, np.float64)
    _joint(
        np.ascontiguousarray(stat, np.float64), np.ascontiguousarray(zero, np.int64),
        np.ascontiguousarray(fine, np.float64), np.ascontiguousarray(coarse, np.float64),
        int(now_ms), int(tick_ms), int(ticks_per_coarse), out,
    )  # fmt: skip
    return out


@njit(cache=True)
def _nan_max(a: float, b: float) -> float:
    """As numpy's ``maximum``: NaN if either is NaN."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


@njit(cache=True)
def _ready(
    evidence_: _F, change_s_: _F, gz_: _F, gz_slow_: _F, fz_: _F, lift_: _F, change_users_: _F, users: _F,
    joint: _F, share: _F, long_share: _F, engaged: _F, probability: _F, flags: int, limits: _F, model: _F,
    out: NDArray[np.bool_],
) -> None:  # fmt: skip
    """Fill ``out`` (bool[m]); see :func:`ready` (``flags``: its bits, the limits in its order)."""
    use_joint, has_share, has_long = flags & 1 != 0, flags & 2 != 0, flags & 4 != 0
    long_floor, shape_free, has_p, has_engaged = (
        flags & 8 != 0,
        flags & 16 != 0,
        flags & 32 != 0,
        flags & 64 != 0,
    )
    fade, growth, sustain_s, share_min, floor, floor_age, bar = (
        limits[0], limits[1], limits[2], limits[3], limits[4], limits[5], limits[6],
    )  # fmt: skip
    max_age, min_users, min_change, min_lift, joint_z = (
        limits[7],
        limits[8],
        limits[9],
        limits[10],
        limits[11],
    )
    fast_p, min_change_s, max_users, grown_users, min_gz = model[0], model[1], model[2], model[3], model[4]
    max_change_s, recruit, min_engaged, gz_users, step_share = (
        model[5],
        model[6],
        model[7],
        model[8],
        model[9],
    )
    inf = np.inf
    for i in range(out.shape[0]):
        evidence, change_s, gz, gz_slow, fz = evidence_[i], change_s_[i], gz_[i], gz_slow_[i], fz_[i]
        lift, change_users = lift_[i], change_users_[i]
        sh = share[i] if has_share else inf
        fading = gz <= -fade or gz_slow <= -fade or fz <= -fade
        shaped = gz >= growth or gz_slow >= growth
        if use_joint:
            shaped = shaped or joint[i] >= joint_z
        sustained = change_s >= sustain_s
        if share_min > 0.0:  # a plateau that recruits no one is a level change
            shared = sh >= share_min
            if has_long:
                if long_floor and floor > 0.0:
                    shared = shared and (change_s < floor_age or long_share[i] >= floor)
                shared = shared or long_share[i] >= bar
            sustained = sustained and shared
        shaped = shaped or sustained
        if shape_free:
            shaped = True
        elif has_p:
            vouched = probability[i] >= fast_p and change_s >= min_change_s
            cap = max_users
            if grown_users > max_users and gz_slow >= min_gz:
                cap = grown_users
            vouched = vouched and change_users <= cap
            if max_change_s > 0.0:
                vouched = vouched and change_s <= max_change_s
            if recruit > 0.0:
                q = change_s / max(sustain_s, 1.0)
                if q > 1.0:  # numpy's minimum(q, 1.0): NaN stays NaN
                    q = 1.0
                vouched = vouched and sh >= recruit * q
            if min_engaged > 0.0 and has_engaged:  # none reported: inf, no test
                vouched = vouched and engaged[i] >= min_engaged
            need_z = min_gz
            if gz_users > 0.0 and min_gz > 0.0:
                need_z = min_gz * math.sqrt(_nan_max(change_users / gz_users, 1.0))
            shaped = shaped or (vouched and _nan_max(gz, gz_slow) >= need_z)
            if step_share > 0.0 and has_share:
                shaped = shaped or (change_s >= min_change_s and sh >= step_share)
        shaped = shaped and change_s <= max_age
        backed = users[i] >= min_users or change_users >= min_change
        out[i] = evidence >= 1.0 and backed and not fading and shaped and lift >= min_lift


READY_COLUMNS: Final = (
    "evidence", "change_s", "growth_z", "growth_z_slow", "fade_z", "recent_lift", "change_users",
)  # fmt: skip


def ready(
    cols: Mapping[str, _F], users: _F, probability: _F | None, limits: _F | tuple[float, ...],
    model: _F | tuple[float, ...], *, shape_free: bool, long_floor: bool, joint: bool,
) -> NDArray[np.bool_]:  # fmt: skip
    """:meth:`~viraltrend.detect.SequentialDetector.ready` in one compiled pass: bool[m].

    ``cols``: the detector's columns (:data:`READY_COLUMNS`, and where present ``growth_z_joint``,
    ``share_ratio``, ``sustain_share_ratio``, ``engaged_ratio``); ``users`` float64[m];
    ``probability`` the warm model's (None: the rule's verdict); ``limits`` :func:`verdicts`'
    twelve; ``model``: ``fast_track_probability``, ``min_change_s``, ``max_change_users``,
    ``grown_change_users``, ``min_growth_z``, ``max_change_s``, ``recruit_share_ratio``,
    ``min_engaged_ratio``, ``growth_z_users``, ``step_share_ratio``.  Comparisons, and the vouch's
    two bars computed as numpy did (one division and ``minimum``; one division, ``maximum``,
    ``sqrt`` and product): the same booleans (``tests/kernels/test_change.py`` against the numpy
    form, ``tests/kernels/reference.py``'s ``detector_ready``).
    """
    f = [np.ascontiguousarray(cols[n], np.float64) for n in READY_COLUMNS]
    m = f[0].shape[0]
    users = np.ascontiguousarray(users, np.float64)
    limits, model = np.asarray(limits, np.float64), np.asarray(model, np.float64)
    if any(a.shape != (m,) for a in (*f, users)) or limits.shape != (12,) or model.shape != (10,):
        msg = f"ready: need columns and users [m] (m = {m}), 12 limits and 10 model limits"
        raise ValueError(msg)
    use_joint = joint and limits[11] > 0.0 and "growth_z_joint" in cols
    flags = 0
    given = []  # the optional columns, each in its slot (users where absent: never read)
    for bit, (name, present) in enumerate((
        ("growth_z_joint", use_joint), ("share_ratio", "share_ratio" in cols),
        ("sustain_share_ratio", "sustain_share_ratio" in cols),
    )):  # fmt: skip
        given.append(np.ascontiguousarray(cols[name], np.float64) if present else users)
        flags |= (1 << bit) if present else 0
    has_engaged = "engaged_ratio" in cols
    engaged = np.ascontiguousarray(cols["engaged_ratio"], np.float64) if has_engaged else users
    p = users if probability is None else np.ascontiguousarray(probability, np.float64)
    if any(a.shape != (m,) for a in (*given, engaged, p)):
        msg = f"ready: every column and the probabilities need shape ({m},)"
        raise ValueError(msg)
    flags |= 8 * bool(long_floor) | 16 * bool(shape_free) | 32 * (probability is not None) | 64 * has_engaged
    out = np.empty(m, np.bool_)
    _ready(
        f[0], f[1], f[2], f[3], f[4], f[5], f[6], users, given[0], given[1], given[2], engaged, p, flags,
        limits, model, out,
    )  # fmt: skip
    return out
