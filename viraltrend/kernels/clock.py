"""The event-time clock: late and future events, the watermark, and evaluation ticks.

Decisions (board evaluations, labels) happen at *ticks*, the multiples of ``tick_ms`` in event
time, never at batch boundaries, so a replay gives the same decisions however the stream was cut
into batches.  The watermark is the running maximum of the accepted event times, moved event by
event, in order.  For each event, with ``W`` the watermark just before it:

* ``ts > future_limit_ms``: status ``FUTURE`` (2), the watermark does not move;
* ``ts < W - allowed_lateness_ms``: status ``LATE`` (1), the watermark does not move;
* otherwise ``ACCEPTED`` (0).  If ``ts > W`` the watermark becomes ``ts`` and every tick
  ``T = k * tick_ms`` with ``W < T <= ts`` (``k`` in ``(W // tick_ms, ts // tick_ms]``) fires
  *before* this event: the evaluation at ``T`` sees the batch's events ``[0, i)``.
  The first event ever only sets the watermark.  When one event crosses more than
  ``max_ticks_per_gap`` ticks (a gap of days) only the first ``max_ticks_per_gap - 1`` and the
  last fire.

Future events: an event more than ``max_future_ms`` ahead of ``W`` is ``FUTURE`` and becomes the
*jump candidate*; the next such event within ``max_future_ms`` of the candidate confirms a real
jump in event time (a stream resuming after a gap) and is accepted.  Any normally accepted event
clears the candidate, so one absurd timestamp never drags the watermark into the future, and a
real gap costs one event.  Before the first event ever, the limit is the lower median of the
first batch plus ``max_future_ms`` (the only rule that looks at a batch as a whole; it matters
only when the very first events are absurd).  Everything else is decided event by event, so
statuses, ticks and watermark are the same however the stream is cut into batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError

__all__ = ["ACCEPTED", "FUTURE", "LATE", "ClockStep", "EventClock"]

ACCEPTED: Final = 0
LATE: Final = 1
FUTURE: Final = 2
_UNSET: Final = int(np.iinfo(np.int64).min)
_INT64_MAX: Final = int(np.iinfo(np.int64).max)
_MAX_ABS_TS_MS: Final = 2**53  # keeps ``watermark - lateness`` and the future limit inside int64


@njit(cache=True)
def _advance(
    ts_ms: NDArray[np.int64], watermark_ms: np.int64, jump_ms: np.int64, unset_ms: np.int64,
    lateness_ms: np.int64, max_future_ms: np.int64, first_limit_ms: np.int64, tick_ms: np.int64,
    max_ticks: np.int64,
) -> tuple[NDArray[np.int8], NDArray[np.int64], NDArray[np.int64], np.int64, np.int64]:  # fmt: skip
    """Run the clock over ``ts_ms`` int64[n], in order.

    Returns ``status`` int8[n] (0 accepted, 1 late, 2 future), ``tick_before`` int64[m] and
    ``tick_values`` int64[m] (the ticks and the index of the event they fire before, sorted), the
    watermark and the jump candidate after the batch (``unset_ms`` when none).  A first pass
    sets the statuses and counts the ticks, a second fills the preallocated tick arrays.
    """
    n = ts_ms.shape[0]
    status = np.zeros(n, np.int8)
    w = watermark_ms
    jump = jump_ms
    n_ticks = 0
    for i in range(n):
        t = ts_ms[i]
        if w == unset_ms:
            if t > first_limit_ms:
                status[i] = 2
            else:
                w = t
            continue
        if t > w + max_future_ms:
            if jump != unset_ms and abs(t - jump) <= max_future_ms:
                jump = unset_ms  # a second event confirms the jump in event time
            else:
                jump = t
                status[i] = 2
                continue
        elif t < w - lateness_ms:
            status[i] = 1
            continue
        else:
            jump = unset_ms
        if t > w:
            n_ticks += min(t // tick_ms - w // tick_ms, max_ticks)
            w = t
    tick_before = np.empty(n_ticks, np.int64)
    tick_values = np.empty(n_ticks, np.int64)
    w = watermark_ms
    j = 0
    for i in range(n):
        t = ts_ms[i]
        if status[i] != 0:
            continue
        if w == unset_ms:
            w = t
            continue
        if t <= w:
            continue
        k0 = w // tick_ms
        k1 = t // tick_ms
        crossed = k1 - k0
        head = crossed if crossed <= max_ticks else max_ticks - 1
        for q in range(1, head + 1):
            tick_before[j] = i
            tick_values[j] = (k0 + q) * tick_ms
            j += 1
        if crossed > max_ticks:
            tick_before[j] = i
            tick_values[j] = k1 * tick_ms
            j += 1
        w = t
    return status, tick_before, tick_values, w, jump


@dataclass(frozen=True, slots=True)
class ClockStep:
    """What :meth:`EventClock.advance` decided for one batch.

    Attributes
    ----------
    status : int8[n]
        Per event: ``ACCEPTED`` (0), ``LATE`` (1) or ``FUTURE`` (2).
    tick_before : int64[m]
        For each tick, the index of the event it fires before: evaluate on events ``[0, i)``.
    tick_ms_values : int64[m]
        The tick times, epoch ms, increasing (``tick_before`` is non-decreasing).
    future_limit_ms : int
        The future limit at the start of the batch (watermark + ``max_future_ms``).
    watermark_ms : int | None
        The watermark after the batch (None while no event has been accepted).
    """

    status: NDArray[np.int8]
    tick_before: NDArray[np.int64]
    tick_ms_values: NDArray[np.int64]
    future_limit_ms: int
    watermark_ms: int | None


def _int_in_range(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int after checking it is an int >= ``minimum`` (and <= 2**53)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise TypeError(msg)
    if not minimum <= int(value) <= _MAX_ABS_TS_MS:
        msg = f"{name} must be in [{minimum}, 2**53], got {value}"
        raise ValueError(msg)
    return int(value)


class EventClock:
    """Event-time watermark with allowed lateness, a future limit and evaluation ticks.

    Parameters
    ----------
    tick_ms : int
        Spacing of evaluation ticks, ms (> 0).
    allowed_lateness_ms : int
        Events older than the watermark by more than this are ``LATE`` (>= 0).
    max_future_ms : int
        Events newer than the watermark by more than this are ``FUTURE`` (>= 0) unless a second
        one confirms the jump (see the module docstring).
    max_ticks_per_gap : int
        Most ticks one event may fire (>= 1): the first ``max_ticks_per_gap - 1`` and the last.

    Examples
    --------
    >>> import numpy as np
    >>> clock = EventClock(tick_ms=1000, allowed_lateness_ms=500, max_future_ms=60_000)
    >>> step = clock.advance(np.array([100, 900, 2500, 1700, 2100], np.int64))
    >>> step.status.tolist(), step.tick_before.tolist(), step.tick_ms_values.tolist()
    ([0, 0, 0, 1, 0], [2, 2], [1000, 2000])
    >>> clock.watermark_ms
    2500
    """

    def __init__(
        self, *, tick_ms: int, allowed_lateness_ms: int, max_future_ms: int, max_ticks_per_gap: int = 360
    ) -> None:
        self.tick_ms = _int_in_range("tick_ms", tick_ms, 1)
        self.allowed_lateness_ms = _int_in_range("allowed_lateness_ms", allowed_lateness_ms, 0)
        self.max_future_ms = _int_in_range("max_future_ms", max_future_ms, 0)
        self.max_ticks_per_gap = _int_in_range("max_ticks_per_gap", max_ticks_per_gap, 1)
        self._watermark_ms = _UNSET
        self._jump_ms = _UNSET

    @property
    def watermark_ms(self) -> int | None:
        """The largest accepted event time so far, epoch ms (None before the first event)."""
        return None if self._watermark_ms == _UNSET else self._watermark_ms

    def future_limit_ms(self, ts_ms: NDArray[np.int64]) -> int:
        """The limit for the batch's first event: watermark + ``max_future_ms``.

        Before the first event ever: the lower median of ``ts_ms`` + ``max_future_ms`` (INT64 max
        for an empty batch).
        """
        base = self.watermark_ms
        if base is None and ts_ms.shape[0]:
            mid = (ts_ms.shape[0] - 1) // 2
            base = int(np.partition(ts_ms, mid)[mid])
        return _INT64_MAX if base is None else min(base + self.max_future_ms, _INT64_MAX)

    def advance(self, ts_ms: NDArray[np.int64]) -> ClockStep:
        """Classify a batch's events (int64[n], arrival order), move the watermark, return the ticks."""
        if not isinstance(ts_ms, np.ndarray) or ts_ms.dtype != np.int64 or ts_ms.ndim != 1:
            is_array = isinstance(ts_ms, np.ndarray)
            got = f"{ts_ms.dtype}{list(ts_ms.shape)}" if is_array else type(ts_ms).__name__
            msg = f"ts_ms must be a 1-D numpy array of int64, got {got}; convert with ts_ms.astype(np.int64)"
            raise TypeError(msg)
        ts_ms = np.ascontiguousarray(ts_ms)
        if ts_ms.shape[0] and max(-int(ts_ms.min()), int(ts_ms.max())) > _MAX_ABS_TS_MS:
            bad = ts_ms[(ts_ms < -_MAX_ABS_TS_MS) | (ts_ms > _MAX_ABS_TS_MS)][0]
            msg = f"ts_ms must be within +-2**53 epoch milliseconds, got {bad}"
            raise ValueError(msg)
        limit = self.future_limit_ms(ts_ms)
        status, tick_before, tick_values, watermark, jump = _advance(
            ts_ms, np.int64(self._watermark_ms), np.int64(self._jump_ms), np.int64(_UNSET),
            np.int64(self.allowed_lateness_ms), np.int64(self.max_future_ms), np.int64(limit),
            np.int64(self.tick_ms), np.int64(self.max_ticks_per_gap),
        )  # fmt: skip
        self._watermark_ms = int(watermark)
        self._jump_ms = int(jump)
        return ClockStep(status, tick_before, tick_values, limit, self.watermark_ms)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration and state as plain JSON-able data, for a checkpoint."""
        return {
            "tick_ms": self.tick_ms,
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "max_future_ms": self.max_future_ms,
            "max_ticks_per_gap": self.max_ticks_per_gap,
            "watermark_ms": self.watermark_ms,
            "jump_ms": None if self._jump_ms == _UNSET else self._jump_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventClock:
        """Rebuild a clock from :meth:`to_dict` output; CheckpointError if it does not fit."""
        keys = {
            "tick_ms",
            "allowed_lateness_ms",
            "max_future_ms",
            "max_ticks_per_gap",
            "watermark_ms",
            "jump_ms",
        }
        if set(data) != keys:
            msg = f"clock checkpoint must have keys {sorted(keys)}, got {sorted(data)}"
            raise CheckpointError(msg)
        try:
            clock = cls(**{k: data[k] for k in keys - {"watermark_ms", "jump_ms"}})
            if data["watermark_ms"] is not None:
                clock._watermark_ms = _int_in_range("watermark_ms", data["watermark_ms"], -_MAX_ABS_TS_MS)
            if data["jump_ms"] is not None:
                clock._jump_ms = _int_in_range("jump_ms", data["jump_ms"], -_MAX_ABS_TS_MS)
        except (TypeError, ValueError) as exc:
            msg = f"clock checkpoint is invalid: {exc}"
            raise CheckpointError(msg) from exc
        return clock
