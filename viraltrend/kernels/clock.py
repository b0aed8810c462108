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

Future events and jumps: an event more than ``max_future_ms`` ahead of ``W`` is ``FUTURE``.  It
opens a *jump candidate* (its ``ts``), and the events after it vote: a far event within
``max_future_ms`` of the candidate votes *for* it; any other event (accepted, late, or a far event
elsewhere) votes *against*.  The watermark jumps (that event is accepted, the candidate cleared)
only when the candidate has ``jump_quorum`` votes for, counting the one that opened it, and they
are more than twice the votes against: a clear majority of the events since it opened.  When the
votes against catch up with the votes for, the candidate is dropped (a far event that disagrees
then opens its own).  So a handful of absurd timestamps among normal traffic never move the
watermark, each is rejected as ``FUTURE``; a stream that really resumes after a gap (a restart
days later) costs ``jump_quorum - 1`` events.  ``jump_quorum = 1`` accepts any jump at once.

Before the first event ever, the limit is the lower median of the first batch plus
``max_future_ms`` (the only rule that looks at a batch as a whole; it matters only when the very
first events are absurd).  Everything else is decided event by event, so statuses, ticks and
watermark are the same however the stream is cut into batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.errors import CheckpointError

__all__ = ["ACCEPTED", "DEFAULT_JUMP_QUORUM", "FUTURE", "LATE", "ClockStep", "EventClock"]

ACCEPTED: Final = 0
LATE: Final = 1
FUTURE: Final = 2
_UNSET: Final = int(np.iinfo(np.int64).min)
_INT64_MAX: Final = int(np.iinfo(np.int64).max)
_MAX_ABS_TS_MS: Final = 2**53  # keeps ``watermark - lateness`` and the future limit inside int64
#: Votes a jump in event time needs (see the module docstring).
DEFAULT_JUMP_QUORUM: Final = 16


@njit(cache=True)
def _advance(
    ts_ms: NDArray[np.int64], watermark_ms: np.int64, jump: NDArray[np.int64], unset_ms: np.int64,
    lateness_ms: np.int64, max_future_ms: np.int64, first_limit_ms: np.int64, tick_ms: np.int64,
    max_ticks: np.int64, quorum: np.int64, watermarks: NDArray[np.int64],
) -> tuple[NDArray[np.int8], NDArray[np.int64], NDArray[np.int64], np.int64]:  # fmt: skip
    """Run the clock over ``ts_ms`` int64[n], in order.

    ``jump`` int64[3] is the jump candidate (``ts`` or ``unset_ms``), its votes for and against;
    it is updated in place.  When ``watermarks`` has n entries, it receives the watermark after
    each event (``unset_ms`` while none).  Returns ``status`` int8[n] (0 accepted, 1 late,
    2 future), ``tick_before`` int64[m] and ``tick_values`` int64[m] (the ticks and the index of
    the event they fire before, sorted) and the watermark after the batch.  A first pass sets
    the statuses and counts the ticks, a second fills the preallocated tick arrays.
    """
    n = ts_ms.shape[0]
    status = np.zeros(n, np.int8)
    keep = watermarks.shape[0] == n
    w = watermark_ms
    cand, votes_for, votes_against = jump[0], jump[1], jump[2]
    n_ticks = 0
    for i in range(n):
        t = ts_ms[i]
        if w == unset_ms:
            if t > first_limit_ms:
                status[i] = 2
            else:
                w = t
            if keep:
                watermarks[i] = w
            continue
        far = t > w + max_future_ms
        if far and cand != unset_ms and abs(t - cand) <= max_future_ms:
            votes_for += 1
            if votes_for >= quorum and votes_for > 2 * votes_against:
                cand, votes_for, votes_against = unset_ms, 0, 0  # confirmed: the watermark jumps
            else:
                status[i] = 2
        elif far:
            if cand != unset_ms:
                votes_against += 1
            if cand == unset_ms or votes_against >= votes_for:
                cand, votes_for, votes_against = t, 1, 0  # this event opens a candidate of its own
            if quorum > 1:
                status[i] = 2
            else:
                cand, votes_for, votes_against = unset_ms, 0, 0
        else:
            if cand != unset_ms:
                votes_against += 1
                if votes_against >= votes_for:
                    cand, votes_for, votes_against = unset_ms, 0, 0
            if t < w - lateness_ms:
                status[i] = 1
        if status[i] == 0 and t > w:
            n_ticks += min(t // tick_ms - w // tick_ms, max_ticks)
            w = t
        if keep:
            watermarks[i] = w
    jump[0], jump[1], jump[2] = cand, votes_for, votes_against
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
    return status, tick_before, tick_values, w


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
    watermarks : int64[n] or None
        With ``advance(..., watermarks=True)``: the watermark after each event (the int64
        minimum while none); None otherwise.
    """

    status: NDArray[np.int8]
    tick_before: NDArray[np.int64]
    tick_ms_values: NDArray[np.int64]
    future_limit_ms: int
    watermark_ms: int | None
    watermarks: NDArray[np.int64] | None = None


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
        Events newer than the watermark by more than this are ``FUTURE`` (>= 0) unless a clear
        majority of the events after them confirm the jump (see the module docstring).
    max_ticks_per_gap : int
        Most ticks one event may fire (>= 1): the first ``max_ticks_per_gap - 1`` and the last.
    jump_quorum : int
        Votes for a jump in event time needed before the watermark makes it (>= 1; 1 accepts any
        jump at once).

    Examples
    --------
    >>> import numpy as np
    >>> clock = EventClock(tick_ms=1000, allowed_lateness_ms=500, max_future_ms=60_000)
    >>> step = clock.advance(np.array([100, 900, 2500, 1700, 2100], np.int64))
    >>> step.status.tolist(), step.tick_before.tolist(), step.tick_ms_values.tolist()
    ([0, 0, 0, 1, 0], [2, 2], [1000, 2000])
    >>> clock.watermark_ms
    2500
    >>> year = 365 * 86_400_000  # two absurd timestamps among normal events: rejected, no jump
    >>> clock.advance(np.array([2600, year, year + 1, 2700, 2800], np.int64)).status.tolist()
    [0, 2, 2, 0, 0]
    >>> clock.watermark_ms
    2800
    """

    def __init__(
        self,
        *,
        tick_ms: int,
        allowed_lateness_ms: int,
        max_future_ms: int,
        max_ticks_per_gap: int = 360,
        jump_quorum: int = DEFAULT_JUMP_QUORUM,
    ) -> None:
        self.tick_ms = _int_in_range("tick_ms", tick_ms, 1)
        self.allowed_lateness_ms = _int_in_range("allowed_lateness_ms", allowed_lateness_ms, 0)
        self.max_future_ms = _int_in_range("max_future_ms", max_future_ms, 0)
        self.max_ticks_per_gap = _int_in_range("max_ticks_per_gap", max_ticks_per_gap, 1)
        self.jump_quorum = _int_in_range("jump_quorum", jump_quorum, 1)
        self._watermark_ms = _UNSET
        self._jump = np.array([_UNSET, 0, 0], np.int64)  # candidate ts, votes for, votes against

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

    def advance(self, ts_ms: NDArray[np.int64], *, watermarks: bool = False) -> ClockStep:
        """Classify a batch's events (int64[n], arrival order), move the watermark, return the ticks.

        With ``watermarks=True`` the step also holds the watermark after each event.
        """
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
        after = np.empty(ts_ms.shape[0] if watermarks else 0, np.int64)
        status, tick_before, tick_values, watermark = _advance(
            ts_ms, np.int64(self._watermark_ms), self._jump, np.int64(_UNSET),
            np.int64(self.allowed_lateness_ms), np.int64(self.max_future_ms), np.int64(limit),
            np.int64(self.tick_ms), np.int64(self.max_ticks_per_gap), np.int64(self.jump_quorum), after,
        )  # fmt: skip
        self._watermark_ms = int(watermark)
        return ClockStep(
            status, tick_before, tick_values, limit, self.watermark_ms, after if watermarks else None
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration and state as plain JSON-able data, for a checkpoint."""
        cand, votes_for, votes_against = (int(x) for x in self._jump)
        return {
            "tick_ms": self.tick_ms,
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "max_future_ms": self.max_future_ms,
            "max_ticks_per_gap": self.max_ticks_per_gap,
            "jump_quorum": self.jump_quorum,
            "watermark_ms": self.watermark_ms,
            "jump_ms": None if cand == _UNSET else cand,
            "jump_votes": [votes_for, votes_against],
        }

    def to_state(self, *, copy: bool = True) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """:meth:`to_dict` as a part of the engine's checkpoint (:mod:`viraltrend.stateful`)."""
        return {}, {"clock": self.to_dict()}

    def load_state(self, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> EventClock:
        """:meth:`from_dict` of ``meta["clock"]``."""
        return type(self).from_dict(meta["clock"])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventClock:
        """Rebuild a clock from :meth:`to_dict` output; CheckpointError if it does not fit.

        Checkpoints written before ``jump_quorum`` existed (no ``jump_quorum``/``jump_votes``)
        load with the default quorum and a pending candidate's one vote.
        """
        settings = {"tick_ms", "allowed_lateness_ms", "max_future_ms", "max_ticks_per_gap"}
        keys = settings | {"jump_quorum", "watermark_ms", "jump_ms", "jump_votes"}
        older = settings | {"watermark_ms", "jump_ms"}
        if set(data) not in (keys, older):
            msg = f"clock checkpoint must have keys {sorted(keys)}, got {sorted(data)}"
            raise CheckpointError(msg)
        try:
            quorum = data.get("jump_quorum", DEFAULT_JUMP_QUORUM)
            clock = cls(**{k: data[k] for k in settings}, jump_quorum=quorum)
            if data["watermark_ms"] is not None:
                clock._watermark_ms = _int_in_range("watermark_ms", data["watermark_ms"], -_MAX_ABS_TS_MS)
            if data["jump_ms"] is not None:
                votes = data.get("jump_votes", [1, 0])
                if not isinstance(votes, list | tuple) or len(votes) != 2:
                    msg = f"jump_votes must be [for, against], got {votes!r}"
                    raise ValueError(msg)
                clock._jump[:] = (
                    _int_in_range("jump_ms", data["jump_ms"], -_MAX_ABS_TS_MS),
                    _int_in_range("jump_votes[0]", votes[0], 1),
                    _int_in_range("jump_votes[1]", votes[1], 0),
                )
        except (TypeError, ValueError) as exc:
            msg = f"clock checkpoint is invalid: {exc}"
            raise CheckpointError(msg) from exc
        return clock
