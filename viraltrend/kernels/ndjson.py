r"""A compiled scanner for plain contract events: NDJSON records to columns and id hashes, no ``str``.

:func:`scan` reads records (byte spans of one ``uint8`` buffer) and, for each record that is a
*plain* contract event, writes its numbers into columns, the byte spans of its ids, and the hashes
the engine keys on: FNV-1a 64 finalised (:func:`~viraltrend.kernels.hashtable.hash_ids`) for the
product and the user, and both hashes of :func:`~viraltrend.kernels.idset.hash_pairs` for the event
id.  An id's JSON text is its UTF-8 when it has no escape, so these are exactly the hashes of the
decoded strings.

A record is plain when it is one JSON object of known contract fields, each at most once, where

* every string is printable ASCII (``0x20..0x7E``) without a backslash, of the contract's length,
  not beginning ``__`` for the id fields; ``type`` is one of the contract's names;
* ``ts`` and ``quantity`` are plain integers in range (no sign, fraction or exponent);
* ``price`` is ``null`` or a plain non-negative decimal of at most 15 digits with no exponent
  (read as the exact quotient of two doubles, so correctly rounded, as msgspec reads it);
* optional fields may be ``null``; whitespace is JSON's.

Anything else (an unknown field, an escape, a non-ASCII byte, an exponent, a bad value...) is not
judged here: the record is marked :data:`FALLBACK` and the caller decodes it with msgspec, which
accepts or rejects it with its reason.  So the scanner only ever takes records msgspec takes, with
the same values; ``tests/kernels/test_ndjson.py`` checks that against msgspec on generated records.

Run under ``NUMBA_DISABLE_JIT=1`` the same code is the plain-Python reference.

The per-record grammar (:func:`_scan_one` and its helpers) is compiled with ``_nrt=False``: they
allocate nothing and return scalars, so they need no reference counts, and numba's atomic
increments and decrements of the buffer's and the columns' counts at each of a record's ~20 helper
calls were a third of the scan's time (perf22: the day's scan 0.79 -> 0.55 CPU s, the same columns).
"""

from __future__ import annotations

from typing import Final, TypeAlias

import numpy as np
from numba import njit
from numpy.typing import NDArray

from viraltrend.kernels._jit import no_refcounts
from viraltrend.kernels.hashtable import _FNV_OFFSET, _FNV_PRIME, _finish
from viraltrend.kernels.idset import _POLY_MUL, _splitmix

__all__ = ["BLANK", "FALLBACK", "ID_FIELDS", "OK", "ScanResult", "line_ends", "scan", "span_hashes"]

OK: Final = 0
BLANK: Final = 1  # empty or JSON white space only: not an event, no reject
FALLBACK: Final = 2  # not plain: decode with msgspec

#: The string fields kept as spans, in span-row order.
ID_FIELDS: Final = ("product_id", "user_id", "event_id", "seller_id", "category")

_KEYS: Final = (
    "ts", "type", "product_id", "user_id", "event_id", "seller_id",
    "category", "price", "quantity", "video_id", "creator_id",
)  # fmt: skip
_K_TS, _K_TYPE, _K_PRICE, _K_QTY = 0, 1, 7, 8
#: key index -> span row (-1: a string field not kept: video_id, creator_id)
_SPAN_ROW: Final = np.array([-1, -1, 0, 1, 2, 3, 4, -1, -1, -1, -1], np.int64)
#: key index -> longest string allowed (0: not a string field)
_MAX_LEN: Final = np.array([0, 0, 128, 128, 128, 128, 64, 0, 0, 128, 128], np.int64)
#: key index -> 1 when the value may not begin "__" (the id fields)
_NO_RESERVED: Final = np.array([0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1], np.int64)
#: Event types in code order: a ``type_code`` column indexes into this tuple (``viraltrend.events``
#: re-exports it; the kernels read it from here, so nothing below ``events`` imports it).
EVENT_TYPES: Final = ("view", "like", "comment", "share", "add_to_cart", "purchase")
_U8: TypeAlias = NDArray[np.uint8]
_I64: TypeAlias = NDArray[np.int64]


def _packed(words: tuple[str, ...]) -> tuple[_U8, _I64]:
    data = "".join(words).encode("ascii")
    ends = np.cumsum([len(w) for w in words]).astype(np.int64)
    return np.frombuffer(data, np.uint8).copy(), np.concatenate([[0], ends]).astype(np.int64)


_KEY_BYTES, _KEY_OFF = _packed(_KEYS)
_TYPE_BYTES, _TYPE_OFF = _packed(EVENT_TYPES)
_POW10: Final = np.array([10.0**k for k in range(23)], np.float64)  # exact doubles


@no_refcounts
def _ws(b: int) -> bool:
    return b == 0x20 or b == 0x0A or b == 0x0D or b == 0x09  # noqa: PLR1714 (compiled: no tuple)


@no_refcounts
def _skip_ws(buf: _U8, p: int, end: int) -> int:
    while p < end and _ws(buf[p]):
        p += 1
    return p


@no_refcounts
def _match(words: _U8, off: _I64, buf: _U8, a: int, b: int) -> int:
    """Index of the word equal to ``buf[a:b]``, or -1."""
    n = b - a
    for w in range(off.shape[0] - 1):
        if off[w + 1] - off[w] != n:
            continue
        same = True
        for j in range(n):
            if words[off[w] + j] != buf[a + j]:
                same = False
                break
        if same:
            return w
    return -1


@no_refcounts
def _key(buf: _U8, a: int, b: int) -> int:
    """Index in ``_KEYS`` of the field name ``buf[a:b]``, or -1: one guess by length and first byte."""
    n = b - a
    c = buf[a] if n > 0 else 0
    k = -1
    if n == 2:
        k = 0  # ts
    elif n == 4:
        k = 1  # type
    elif n == 5:
        k = 7  # price
    elif n == 7:
        k = 3  # user_id
    elif n == 8:
        k = 6 if c == 0x63 else 8 if c == 0x71 else 4 if c == 0x65 else 9  # c..., q..., e..., v...
    elif n == 9:
        k = 5  # seller_id
    elif n == 10:
        k = 2 if c == 0x70 else 10  # product_id, creator_id
    if k < 0:
        return -1
    off = _KEY_OFF[k]
    if _KEY_OFF[k + 1] - off != n:
        return -1
    for j in range(n):
        if _KEY_BYTES[off + j] != buf[a + j]:
            return -1
    return k


@no_refcounts
def _string_end(buf: _U8, p: int, end: int) -> int:
    """``buf[p]`` opens a string: the position of its closing quote, or -1 if it is not plain."""
    q = p + 1
    while q < end:
        b = buf[q]
        if b == 0x22:
            return q
        if b == 0x5C or b < 0x20 or b > 0x7E:  # an escape, a control character, non-ASCII
            return -1
        q += 1
    return -1


@no_refcounts
def _is_null(buf: _U8, p: int, end: int) -> bool:
    return (
        p + 4 <= end and buf[p] == 0x6E and buf[p + 1] == 0x75 and buf[p + 2] == 0x6C and buf[p + 3] == 0x6C
    )


@no_refcounts
def _digits_end(buf: _U8, p: int, end: int) -> int:
    while p < end and 0x30 <= buf[p] <= 0x39:
        p += 1
    return p


@no_refcounts
def _number_continues(buf: _U8, p: int, end: int) -> bool:
    """A digit run ending at ``p`` goes on as a fraction or an exponent (not a plain integer)."""
    return p < end and (buf[p] == 0x2E or buf[p] == 0x65 or buf[p] == 0x45)


@no_refcounts
def _plain_int(buf: _U8, p: int, end: int, max_digits: int) -> tuple[int, int]:
    """``(value, end)`` of a plain unsigned JSON integer at ``p``; end -1 if not plain."""
    q = _digits_end(buf, p, end)
    n = q - p
    if n == 0 or n > max_digits or (buf[p] == 0x30 and n > 1) or _number_continues(buf, q, end):
        return 0, -1
    v = 0
    for j in range(p, q):
        v = v * 10 + int(buf[j]) - 0x30
    return v, q


@no_refcounts
def _plain_price(buf: _U8, p: int, end: int) -> tuple[float, int]:
    """``(value, end)`` of a plain non-negative decimal at ``p``; end -1 if not plain."""
    q = _digits_end(buf, p, end)
    n_int = q - p
    if n_int == 0 or (buf[p] == 0x30 and n_int > 1):
        return 0.0, -1
    mant = 0
    for j in range(p, q):
        mant = mant * 10 + int(buf[j]) - 0x30
    n_frac = 0
    if q < end and buf[q] == 0x2E:
        r = _digits_end(buf, q + 1, end)
        n_frac = r - q - 1
        if n_frac == 0:
            return 0.0, -1
        for j in range(q + 1, r):
            mant = mant * 10 + int(buf[j]) - 0x30
        q = r
    if n_int + n_frac > 15 or (q < end and (buf[q] == 0x65 or buf[q] == 0x45)):
        return 0.0, -1
    return np.float64(mant) / _POW10[n_frac], q  # both exact: the quotient is correctly rounded


@no_refcounts
def _fnv(buf: _U8, a: int, b: int) -> np.uint64:
    h = np.uint64(_FNV_OFFSET)
    for j in range(a, b):
        h = (h ^ np.uint64(buf[j])) * np.uint64(_FNV_PRIME)
    return _finish(h)


@no_refcounts
def _poly(buf: _U8, a: int, b: int) -> np.uint64:
    h = np.uint64(0)
    for j in range(a, b):
        h = h * np.uint64(_POLY_MUL) + np.uint64(buf[j]) + np.uint64(1)
    return _splitmix(h + np.uint64(b - a))


@no_refcounts
def _scan_one(  # noqa: C901, PLR0911, PLR0912 (one record's grammar, flat)
    buf: _U8, p: int, end: int, i: int, ts: _I64, code: NDArray[np.int8], price: NDArray[np.float64],
    qty: _I64, start: _I64, stop: _I64,
) -> int:  # fmt: skip
    """Scan the record ``buf[p:end]`` into row ``i`` of the columns; its status."""
    p = _skip_ws(buf, p, end)
    if p == end:
        return BLANK
    if buf[p] != 0x7B:
        return FALLBACK
    seen = 0
    p = _skip_ws(buf, p + 1, end)
    if p < end and buf[p] == 0x7D:
        return FALLBACK  # {}: missing fields
    while True:
        if p >= end or buf[p] != 0x22:
            return FALLBACK
        q = _string_end(buf, p, end)
        if q < 0:
            return FALLBACK
        k = _key(buf, p + 1, q)
        if k < 0 or seen & (1 << k):
            return FALLBACK  # an unknown or repeated field
        seen |= 1 << k
        p = _skip_ws(buf, q + 1, end)
        if p >= end or buf[p] != 0x3A:
            return FALLBACK
        p = _skip_ws(buf, p + 1, end)
        if p >= end:
            return FALLBACK
        if k == _K_TS:
            v, q = _plain_int(buf, p, end, 13)
            if q < 0 or v < 946_684_800_000 or v > 4_102_444_800_000:
                return FALLBACK
            ts[i] = v
            p = q
        elif k == _K_QTY:
            if _is_null(buf, p, end):
                qty[i] = 1
                p += 4
            else:
                v, q = _plain_int(buf, p, end, 18)
                if q < 0 or v < 1:
                    return FALLBACK
                qty[i] = v
                p = q
        elif k == _K_PRICE:
            if _is_null(buf, p, end):
                price[i] = np.nan
                p += 4
            else:
                x, q = _plain_price(buf, p, end)
                if q < 0:
                    return FALLBACK
                price[i] = x
                p = q
        elif buf[p] == 0x22:  # a string field
            q = _string_end(buf, p, end)
            if q < 0:
                return FALLBACK
            a, b = p + 1, q
            if k == _K_TYPE:
                t = _match(_TYPE_BYTES, _TYPE_OFF, buf, a, b)
                if t < 0:
                    return FALLBACK
                code[i] = t
            else:
                n = b - a
                if n < 1 or n > _MAX_LEN[k]:
                    return FALLBACK
                if _NO_RESERVED[k] == 1 and n >= 2 and buf[a] == 0x5F and buf[a + 1] == 0x5F:
                    return FALLBACK  # reserved_id: msgspec's path names it
                row = _SPAN_ROW[k]
                if row >= 0:
                    start[row, i] = a
                    stop[row, i] = b
            p = q + 1
        elif _is_null(buf, p, end) and k != _K_TYPE and _SPAN_ROW[k] != 0 and _SPAN_ROW[k] != 1:
            p += 4  # an optional string given as null: absent
        else:
            return FALLBACK
        p = _skip_ws(buf, p, end)
        if p >= end:
            return FALLBACK
        if buf[p] == 0x2C:
            p = _skip_ws(buf, p + 1, end)
            continue
        if buf[p] != 0x7D:
            return FALLBACK
        p = _skip_ws(buf, p + 1, end)
        if p != end:
            return FALLBACK  # something after the object
        break
    need = (1 << _K_TS) | (1 << _K_TYPE) | (1 << 2) | (1 << 3)
    if seen & need != need:
        return FALLBACK  # missing_field: msgspec's path names it
    return OK


@njit(cache=True)
def _scan(
    buf: _U8, starts: _I64, ends: _I64
) -> tuple[
    NDArray[np.int8], _I64, NDArray[np.int8], NDArray[np.float64], _I64, _I64, _I64, NDArray[np.uint64]
]:
    n = starts.shape[0]
    status = np.empty(n, np.int8)
    ts = np.zeros(n, np.int64)
    code = np.zeros(n, np.int8)
    price = np.full(n, np.nan)
    qty = np.ones(n, np.int64)
    start = np.full((5, n), -1, np.int64)
    stop = np.full((5, n), -1, np.int64)
    hashes = np.zeros((4, n), np.uint64)  # product, user, event (both)
    for i in range(n):
        s = _scan_one(buf, starts[i], ends[i], i, ts, code, price, qty, start, stop)
        status[i] = s
        if s != OK:
            for row in range(5):
                start[row, i] = -1
                stop[row, i] = -1
            continue
        hashes[0, i] = _fnv(buf, start[0, i], stop[0, i])
        hashes[1, i] = _fnv(buf, start[1, i], stop[1, i])
        if start[2, i] >= 0:
            hashes[2, i] = _fnv(buf, start[2, i], stop[2, i])
            hashes[3, i] = _poly(buf, start[2, i], stop[2, i])
    return status, ts, code, price, qty, start, stop, hashes


@njit(cache=True)
def _span_hashes(
    buf: _U8, start: _I64, stop: _I64, pairs: bool
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    n = start.shape[0]
    h1 = np.zeros(n, np.uint64)
    h2 = np.zeros(n, np.uint64)
    for i in range(n):
        if start[i] >= 0:
            h1[i] = _fnv(buf, start[i], stop[i])
            if pairs:
                h2[i] = _poly(buf, start[i], stop[i])
    return h1, h2


def span_hashes(
    buf: _U8, start: _I64, stop: _I64, *, pairs: bool = False
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Hashes of the ids ``buf[start[i]:stop[i]]``: ``hash_ids``'s, and ``hash_pairs``'s second.

    The second only with ``pairs`` (zeros without); 0 for both where ``start[i] < 0`` (absent).
    """
    with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
        return _span_hashes(buf, np.ascontiguousarray(start), np.ascontiguousarray(stop), pairs)


class ScanResult:
    """What :func:`scan` found: per record a status, the columns, the id spans and the hashes.

    ``start``/``stop`` are ``int64[5, n]`` positions in the buffer, one row per :data:`ID_FIELDS`
    (-1: absent); ``hashes`` is ``uint64[4, n]``: product, user, and the event id's pair (0 when
    there is none).  Rows whose status is not :data:`OK` hold nothing.
    """

    __slots__ = ("code", "hashes", "price", "quantity", "start", "status", "stop", "ts")

    def __init__(self, buf: _U8, starts: _I64, ends: _I64) -> None:
        with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
            out = _scan(buf, starts, ends)
        self.status, self.ts, self.code, self.price, self.quantity, self.start, self.stop, self.hashes = out


@njit(cache=True)
def _line_ends_ref(buf: _U8) -> _I64:
    """:func:`_line_ends` byte by byte: the reference it is tested against."""
    n = 0
    for i in range(buf.shape[0]):
        n += buf[i] == 0x0A
    out = np.empty(n, np.int64)
    k = 0
    for i in range(buf.shape[0]):
        if buf[i] == 0x0A:
            out[k] = i
            k += 1
    return out


_LOW7: Final = np.uint64(0x7F7F7F7F7F7F7F7F)
_ONES: Final = np.uint64(0x0101010101010101)
_HIGHS: Final = np.uint64(0x8080808080808080)
_LFS: Final = np.uint64(0x0A0A0A0A0A0A0A0A)


@njit(cache=True)
def _line_ends(buf: _U8, head: int, words: NDArray[np.uint64]) -> _I64:
    """The line feeds of ``buf``, eight bytes at a time: ``words`` is ``buf[head:head + 8 m]`` as uint64.

    Counted per word exactly (``t`` holds 0x80 in each byte that is a line feed, its bytes summed by one
    multiplication), then found byte by byte only in the words that hold one (the classic zero-byte
    test, exact on whether a word holds any); the bytes before ``head`` and after the words one by one.
    """
    tail = head + 8 * words.shape[0]
    n = 0
    for j in range(head):
        n += buf[j] == 0x0A
    for q in range(words.shape[0]):
        x = words[q] ^ _LFS
        t = ~(((x & _LOW7) + _LOW7) | x | _LOW7)
        n += int(np.int64(((t >> np.uint64(7)) * _ONES) >> np.uint64(56)))
    for j in range(tail, buf.shape[0]):
        n += buf[j] == 0x0A
    out = np.empty(n, np.int64)
    k = 0
    for j in range(head):
        if buf[j] == 0x0A:
            out[k] = j
            k += 1
    for q in range(words.shape[0]):
        x = words[q] ^ _LFS
        if ((x - _ONES) & ~x & _HIGHS) != 0:
            b = head + 8 * q
            for j in range(b, b + 8):
                if buf[j] == 0x0A:
                    out[k] = j
                    k += 1
    for j in range(tail, buf.shape[0]):
        if buf[j] == 0x0A:
            out[k] = j
            k += 1
    return out


def line_ends(buf: _U8) -> _I64:
    r"""The positions of the line feeds (``\n``) in ``buf``, in order: ``bytes.split``'s cuts.

    >>> line_ends(np.frombuffer(b'{"a":1}\n\nx\n', np.uint8)).tolist()
    [7, 8, 10]
    """
    buf = np.ascontiguousarray(buf, np.uint8)
    head = min(-buf.ctypes.data % 8, buf.shape[0])  # the words start 8-byte aligned
    m = (buf.shape[0] - head) // 8
    words = buf[head : head + 8 * m].view(np.uint64)
    with np.errstate(over="ignore"):  # wrapping arithmetic, for runs with NUMBA_DISABLE_JIT=1
        return _line_ends(buf, head, words)


def scan(buf: _U8, starts: _I64, ends: _I64) -> ScanResult:
    """Scan the records ``buf[starts[i]:ends[i]]`` (see the module docstring)."""
    return ScanResult(buf, np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(ends, np.int64))
