r"""Feed an NDJSON file of engagement events into a Kafka topic, paced by the wall clock.

:class:`Feeder` is the traffic generator of ``viraltrend demo``: a background thread that
produces the lines of a file (e.g. the simulator's ``events.ndjson``) to the input topic at a
target rate, each keyed by its ``product_id`` as ``shared/contract/events.md`` recommends.
:func:`produce_file` sends a file as fast as it can, for tests and benchmarks.

Every non-blank line is sent with its bytes unchanged (a line's trailing ``\n``/``\r\n`` is
not part of the value).  The key is taken cheaply, by decoding only ``product_id`` with
msgspec; a line that is not JSON, or has no string ``product_id``, is sent with key ``None``,
so malformed input reaches the service's dead-letter path exactly as it would in
production.  Blank lines are not records (file replay skips them too) and are not sent.

**Event time versus wall time.**  The feeder paces by messages per second of wall time and
never looks at ``ts``.  A simulated file covers a day of event time, so 1M events fed at
20,000 msg/s play that day in 50 s: event time runs about 1,700 times faster than the clock.
Rate-based features keep their meaning (they are computed in event time), but a 5-minute
window of event time passes in a fraction of a second of the demo.

Examples
--------
.. code-block:: python

    feeder = Feeder(bootstrap, "engagement-events", "sim/events.ndjson", rate_per_s=20_000).start()
    ...  # feeder.sent, feeder.done; then feeder.stop(); feeder.join(10)
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Final

import msgspec
from kafka import KafkaProducer
from kafka import errors as kerr

from viraltrend.errors import InputError, StreamError
from viraltrend.stream.broker import _CREATE_HINT, _connect, _describe, topic_exists

__all__ = ["Feeder", "produce_file"]

log = logging.getLogger(__name__)

_TICK_S: Final = 0.05  # the pacing loop sends at most rate * _TICK_S messages per wake-up
_MIN_SLEEP_S: Final = 0.002
_MAX_BACKLOG_S: Final = 0.5  # when the producer falls further behind, pacing restarts (no bursts)
_LOOP_GAP_MS: Final = 1_000  # event time between the last event of a pass and the next pass
_TS_FIELD: Final = re.compile(rb'"ts":(\s*)(\d+)')
_EVENT_ID_FIELD: Final = re.compile(rb'("event_id":\s*"[^"\\]*)"')
_MAX_CHUNK: Final = 10_000  # stop() is noticed at least every this many messages
_PRODUCER_DEFAULTS: Final[dict[str, Any]] = {
    "acks": 1, "linger_ms": 5, "batch_size": 256 << 10, "compression_type": None,
    "allow_auto_create_topics": False, "bootstrap_timeout_ms": 10_000, "max_block_ms": 10_000,
}  # fmt: skip


class _Head(msgspec.Struct):
    """The two fields the feeder reads; every other field is skipped by the decoder."""

    product_id: str
    ts: Any = None


_DECODE_HEAD: Final = msgspec.json.Decoder(_Head).decode


def _head(value: bytes) -> tuple[bytes | None, int | None]:
    """``(key, ts)`` of one line: ``(None, None)`` unless it is JSON with a string ``product_id``."""
    try:
        head = _DECODE_HEAD(value)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return None, None
    ts = head.ts if type(head.ts) is int else None
    return head.product_id.encode("utf-8"), ts


class _Lines:
    """``(key, value)`` of each non-blank line from ``start_line``; with ``loop``, forever (see Feeder).

    Pass ``k >= 1`` adds ``k * shift_ms`` (the first pass's ``ts`` span plus 1 s) to ``ts``.
    """

    def __init__(self, path: Path, *, start_line: int = 0, loop: bool = False) -> None:
        self.path, self.start_line, self.loop = path, start_line, loop
        self.line = 0  #: 0-based index of the next physical line to read
        self.pass_index = 0  #: 0 for the first pass over the file, k for the k-th repeat
        self.shift_ms = 0  #: event time added per pass (known once the first pass ended)
        self._min_ts: int | None = None  # the first pass's range of ts
        self._max_ts: int | None = None

    def _track(self, ts: int | None) -> None:
        if ts is not None:
            self._min_ts = ts if self._min_ts is None else min(ts, self._min_ts)
            self._max_ts = ts if self._max_ts is None else max(ts, self._max_ts)

    def _shifted(self, value: bytes) -> bytes:
        k = self.pass_index
        delta = k * self.shift_ms
        value = _TS_FIELD.sub(lambda m: b'"ts":%s%d' % (m.group(1), int(m.group(2)) + delta), value, count=1)
        return _EVENT_ID_FIELD.sub(lambda m: m.group(1) + b'~%d"' % k, value, count=1)

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes]]:
        while True:
            yielded = 0
            with self.path.open("rb") as f:
                for i, raw in enumerate(f):
                    self.line = i + 1
                    value = raw.rstrip(b"\r\n")
                    if self.pass_index == 0 and i < self.start_line:
                        if self.loop:  # the span must cover the skipped lines too
                            self._track(_head(value)[1])
                        continue
                    if not value.strip():
                        continue
                    key, ts = _head(value)
                    if self.pass_index == 0:
                        if self.loop:
                            self._track(ts)
                    else:
                        value = self._shifted(value)
                    yielded += 1
                    yield key, value
            if not self.loop or (yielded == 0 and self.pass_index > 0):
                return
            if self.pass_index == 0 and self._min_ts is not None and self._max_ts is not None:
                self.shift_ms = self._max_ts - self._min_ts + _LOOP_GAP_MS
            self.pass_index += 1
            self.line = 0


def _check_path(events_path: str | Path) -> Path:
    path = Path(events_path)
    if not path.is_file():
        msg = f"events_path {str(events_path)!r} is not a file; pass an NDJSON file such as sim/events.ndjson"
        raise InputError(msg)
    return path


class _Producer:
    """A fast kafka-python producer (``acks=1``, large batches) that collects delivery failures."""

    def __init__(self, bootstrap: str, topic: str, *, check_topic: bool, **client_options: Any) -> None:
        if check_topic and not topic_exists(bootstrap, topic, **client_options):
            # Checked first: Tansu creates any topic a producer asks about, with default configs.
            msg = f"cannot feed topic {topic!r}: it does not exist on {bootstrap}; {_CREATE_HINT}"
            raise StreamError(msg)
        self.bootstrap_servers, self.topic = bootstrap, topic
        config = {**_PRODUCER_DEFAULTS, **client_options}
        self._producer: KafkaProducer = _connect(KafkaProducer, bootstrap, config)
        self._failed_count, self._first_failure = 0, ""
        self._lock = threading.Lock()

    def send(self, key: bytes | None, value: bytes) -> None:
        try:
            future = self._producer.send(self.topic, key=key, value=value)
        except kerr.KafkaError as exc:  # no metadata or no buffer space within max_block_ms
            msg = f"cannot send to topic {self.topic!r} on {self.bootstrap_servers}: {_describe(exc)}"
            raise StreamError(msg) from exc
        future.add_errback(self._failed)

    def _failed(self, exc: BaseException) -> None:  # on the producer's IO thread
        with self._lock:
            self._failed_count += 1
            self._first_failure = self._first_failure or _describe(exc)

    def raise_failures(self) -> None:
        with self._lock:
            count, first = self._failed_count, self._first_failure
            self._failed_count, self._first_failure = 0, ""
        if count:
            msg = f"{count} message(s) to topic {self.topic!r} failed; first: {first}"
            raise StreamError(msg)

    def flush(self, timeout_s: float) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except kerr.KafkaError as exc:
            where = self.bootstrap_servers
            msg = f"messages to {where} not acknowledged within {timeout_s:g} s: {_describe(exc)}"
            raise StreamError(msg) from exc
        self.raise_failures()

    def close(self, timeout_s: float) -> None:
        self._producer.close(timeout=timeout_s)


def produce_file(
    bootstrap_servers: str,
    topic: str,
    path: str | Path,
    *,
    limit: int | None = None,
    check_topic: bool = True,
    flush_timeout_s: float = 60.0,
    **client_options: Any,
) -> int:
    """Send the lines of the NDJSON file ``path`` to ``topic`` as fast as possible; return the count.

    Keys and values are those of :class:`Feeder` (whose other parameters these are); at most
    ``limit`` lines are sent.  Returns once every message is acknowledged, within
    ``flush_timeout_s`` (:class:`~viraltrend.errors.StreamError` if any failed).
    """
    if limit is not None and limit < 0:
        msg = f"limit must be >= 0 or None, got {limit}"
        raise ValueError(msg)
    lines = _Lines(_check_path(path))
    producer = _Producer(bootstrap_servers, topic, check_topic=check_topic, **client_options)
    sent = 0
    try:
        for key, value in islice(lines, limit):
            producer.send(key, value)
            sent += 1
            if sent % 65_536 == 0:
                producer.raise_failures()
        producer.flush(flush_timeout_s)
    finally:
        producer.close(flush_timeout_s)
    return sent


class Feeder:
    """Produce the lines of an NDJSON events file to a topic at a target rate, in a background thread.

    Message ``i`` (counted from :meth:`start`) is due ``i / rate_per_s`` seconds after the
    start; the thread wakes at most every 50 ms and sends whatever is due.  If the producer
    falls more than 0.5 s behind, pacing restarts from the current message rather than
    bursting to catch up.  See the module docstring for keys, garbage lines, and why event
    time runs much faster than the wall clock.

    Parameters
    ----------
    bootstrap_servers, topic : str
        ``host:port[,host:port...]`` and the input topic, which must exist.
    events_path : str or Path
        The NDJSON file, e.g. the simulator's ``events.ndjson``.
    rate_per_s : float
        Target messages per second of wall time, > 0.
    loop : bool
        At the end of the file, start again from its first line, with every ``ts`` moved
        forward by the file's time span (plus 1 s) per pass and ``~k`` appended to every
        ``event_id`` on pass ``k``, so the stream keeps going forward in event time (a plain
        repeat would be dropped as late and duplicate).  Truth files describe the first pass.
    start_line : int
        Skip this many physical lines of the file first (0-based index of the first line sent).
    check_topic : bool
        Check that ``topic`` exists at :meth:`start`.
    **client_options
        Passed to :class:`kafka.KafkaProducer`; the defaults are ``acks=1``,
        ``linger_ms=5``, ``batch_size=256 KiB``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        events_path: str | Path,
        *,
        rate_per_s: float,
        loop: bool = False,
        start_line: int = 0,
        check_topic: bool = True,
        **client_options: Any,
    ) -> None:
        if not (isinstance(rate_per_s, int | float) and math.isfinite(rate_per_s) and rate_per_s > 0):
            msg = f"rate_per_s must be a finite number > 0 messages per second, got {rate_per_s!r}"
            raise ValueError(msg)
        if isinstance(start_line, bool) or not isinstance(start_line, int) or start_line < 0:
            msg = f"start_line must be an integer >= 0, got {start_line!r}"
            raise ValueError(msg)
        self.bootstrap_servers, self.topic = bootstrap_servers, topic
        self.events_path = _check_path(events_path)
        self.rate_per_s = float(rate_per_s)
        self.loop, self.start_line, self.check_topic = loop, start_line, check_topic
        self._options = client_options
        self._lines = _Lines(self.events_path, start_line=start_line, loop=loop)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: _Producer | None = None
        self._error: BaseException | None = None
        self._sent = 0
        self._started_at: float | None = None  # monotonic clock
        self._ended_at: float | None = None

    @property
    def sent(self) -> int:
        """Messages handed to the producer so far (all delivered once done, unless :attr:`error`)."""
        return self._sent

    @property
    def done(self) -> bool:
        """True once the thread has ended: file sent (without ``loop``), stopped, or failed."""
        return self._thread is not None and not self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the thread, if any (also re-raised by :meth:`join`)."""
        return self._error

    @property
    def line(self) -> int:
        """Physical lines of the file read in the current pass (``start_line`` to resume from)."""
        return self._lines.line

    @property
    def pass_index(self) -> int:
        """0 during the first pass over the file, ``k`` during its ``k``-th repeat (``loop=True``)."""
        return self._lines.pass_index

    @property
    def elapsed_s(self) -> float:
        """Wall-clock seconds since :meth:`start` (until the thread ended, once it has)."""
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return end - self._started_at

    def start(self) -> Feeder:
        """Connect, check the topic, and start sending in a daemon thread; returns ``self``.

        Raises :class:`~viraltrend.errors.StreamError` at once if Kafka cannot be reached or the
        topic is missing, and :class:`RuntimeError` if the feeder was started before.
        """
        if self._thread is not None:
            msg = "this Feeder was already started; make a new one (start_line=feeder.line resumes)"
            raise RuntimeError(msg)
        options = {"check_topic": self.check_topic, **self._options}
        self._producer = _Producer(self.bootstrap_servers, self.topic, **options)
        name = f"viraltrend-feeder-{self.topic}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to stop after the message it is sending; returns at once (then :meth:`join`)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; return whether it did, re-raising the error that ended it."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.done

    def __enter__(self) -> Feeder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join(30.0)

    def _run(self) -> None:
        assert self._producer is not None
        producer = self._producer
        try:
            self._pace(producer, iter(self._lines))
            producer.flush(30.0)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by join()
            log.error("the feeder of topic %r failed after %d messages: %s", self.topic, self._sent, exc)
            self._error = exc
        finally:
            try:
                producer.close(5.0)
            except Exception:  # noqa: BLE001 - a close failure must not hide the real outcome
                log.warning("closing the feeder's producer failed", exc_info=True)
            self._ended_at = time.monotonic()

    def _pace(self, producer: _Producer, records: Iterator[tuple[bytes | None, bytes]]) -> None:
        rate = self.rate_per_s
        chunk = min(max(1, int(rate * _TICK_S)), _MAX_CHUNK)
        max_backlog = max(chunk, int(rate * _MAX_BACKLOG_S))
        t0 = time.monotonic()
        base = self._sent
        while not self._stop.is_set():
            elapsed = time.monotonic() - t0
            done_here = self._sent - base
            due = int(elapsed * rate) + 1 - done_here
            if due <= 0:
                wait = done_here / rate - elapsed
                self._stop.wait(min(max(wait, _MIN_SLEEP_S), _TICK_S))
                continue
            if due > max_backlog:  # behind schedule (slow broker, paused process): restart pacing
                t0 = time.monotonic() - done_here / rate
                due = chunk
            for _ in range(min(due, chunk)):
                record = next(records, None)
                if record is None:
                    return
                producer.send(*record)
                self._sent += 1
            producer.raise_failures()
