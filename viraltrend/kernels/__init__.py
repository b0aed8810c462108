"""Numba kernels and the arrays they own: decayed counters, the clock, id tables, user signals."""

from __future__ import annotations

from viraltrend.kernels.clock import ACCEPTED, FUTURE, LATE, ClockStep, EventClock
from viraltrend.kernels.decay import DecayedCounters
from viraltrend.kernels.idset import SeenIds
from viraltrend.kernels.intern import Interner
from viraltrend.kernels.names import NameTable
from viraltrend.kernels.users import UserSignals, UserSketches

__all__ = [
    "ACCEPTED",
    "FUTURE",
    "LATE",
    "ClockStep",
    "DecayedCounters",
    "EventClock",
    "Interner",
    "NameTable",
    "SeenIds",
    "UserSignals",
    "UserSketches",
]
