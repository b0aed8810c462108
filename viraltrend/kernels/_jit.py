"""``no_refcounts``: ``njit(cache=True)`` for leaf kernels that need no reference counts.

numba takes and drops a reference (an atomic increment and decrement) on each array a compiled
function receives, at every call; for small functions called per record or per segment these
atomics cost more than the work (perf22: ``NRT_incref`` + ``NRT_decref`` were a third of the
NDJSON scan's samples and ~17 % of the Taobao replay's).  ``_nrt=False`` (numba's option, not in its
type stubs) compiles a function without them.  It is safe only for a function that allocates no
array (numba refuses to compile one that does) and returns no array: it returns scalars or
nothing, so no reference it did not take can reach its caller.  The arithmetic is unchanged: the
same code gives the same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from numba import njit

__all__ = ["no_refcounts"]

_F = TypeVar("_F", bound=Callable[..., Any])


def no_refcounts(fn: _F) -> _F:
    """``njit(cache=True, _nrt=False)``: for functions that allocate no array and return scalars only."""
    return cast("_F", njit(cache=True, _nrt=False)(fn))  # type: ignore[call-overload]
