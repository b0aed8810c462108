"""The span parser of kafka-python fetches: the same values and offsets as kafka-python's own parser.

Record batches are built with kafka-python's ``MemoryRecordsBuilder`` (message format v2): keys,
headers, null and empty values, compacted gaps, several batches and a partial one at the end of a
fetch; compressed batches (kafka-python's parser, wrapped); corrupt ones.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from kafka import TopicPartition
from kafka import errors as kerr
from kafka.consumer.fetcher import Fetcher
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

from viraltrend.stream.kafka_fast import SpanRecords, spans_of

TP = TopicPartition("t", 0)


def batch(records: list[tuple[bytes | None, bytes | None, list]], *, offset: int, compression: int = 0,
          gap: int = 0) -> bytes:  # fmt: skip
    builder = MemoryRecordsBuilder(2, compression, 1 << 24, offset=offset)
    for i, (key, value, headers) in enumerate(records):
        if gap and i == len(records) // 2:
            builder.skip(gap)  # a compacted gap inside the batch
        assert builder.append(1_764_000_000_000 + i, key, value, headers) is not None
    builder.close()
    return bytes(builder.buffer())


def records(rng: random.Random, n: int) -> list[tuple[bytes | None, bytes | None, list]]:
    out = []
    for i in range(n):
        value = (
            None if rng.random() < 0.05 else bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        )
        key = None if rng.random() < 0.5 else f"k{i}".encode()
        headers = [("h", b"x" * rng.randrange(3))] if rng.random() < 0.3 else []
        out.append((key, value, headers))
    return out


def reference(buf: bytes, fetch_offset: int) -> tuple[list[bytes], list[int], int]:
    """kafka-python's own parse: values (None as b""), offsets and the next fetch offset."""
    part = Fetcher.PartitionRecords(fetch_offset, TP, MemoryRecords(buf))
    got = part.take()  # exhausts the iterator: the next fetch offset is past the last batch
    assert not part
    return [b"" if r.value is None else r.value for r in got], [r.offset for r in got], part.next_fetch_offset


def spans(buf: bytes, fetch_offset: int, n: int | None = None) -> tuple[list[bytes], list[int], int]:
    part = SpanRecords(fetch_offset, TP, MemoryRecords(buf))
    values: list[bytes] = []
    offsets: list[int] = []
    while part:
        got = part.take(n)
        if not got:
            break
        assert len(got) <= (n or len(got))
        v, o = spans_of(got)
        values += v
        offsets += o.tolist()
        assert part.next_fetch_offset == offsets[-1] + 1 or not part
    return values, offsets, part.next_fetch_offset


@pytest.mark.parametrize("seed", range(6))
def test_the_spans_are_kafka_pythons_values_and_offsets(seed):
    rng = random.Random(seed)
    bufs, offset = [], rng.randrange(0, 1000)
    for _ in range(rng.randrange(1, 5)):
        recs = records(rng, rng.randrange(1, 200))
        gap = rng.choice([0, 0, 3])
        bufs.append(batch(recs, offset=offset, gap=gap))
        offset += len(recs) + gap
    whole = b"".join(bufs)
    fetch = (
        whole + whole[-1 - rng.randrange(10, 60) :] if seed % 2 else whole
    )  # garbage tail: a partial batch
    if seed % 2:
        fetch = whole + bufs[0][: rng.randrange(20, len(bufs[0]) - 1)]
    start = rng.choice([None, 1])
    first = reference(fetch, 0)[1][0]
    fetch_offset = first if start is None else first + rng.randrange(0, 10)  # mid-batch: earlier ones dropped
    want = reference(fetch, fetch_offset)
    assert spans(fetch, fetch_offset) == want
    for n in (1, 7, 100, 10_000):
        assert spans(fetch, fetch_offset, n) == want


def test_a_compressed_batch_goes_through_kafka_pythons_parser_with_the_same_result():
    rng = random.Random(7)
    fetch = batch(records(rng, 50), offset=10) + batch(records(rng, 40), offset=60, compression=1)  # gzip
    want = reference(fetch, 10)
    assert spans(fetch, 10) == want
    assert spans(fetch, 10, 13) == want


def test_a_batch_that_fails_its_crc_is_a_corrupt_record_error():
    fetch = bytearray(batch(records(random.Random(3), 20), offset=0))
    fetch[-5] ^= 0xFF
    with pytest.raises(kerr.CorruptRecordError, match="crc"):
        spans(bytes(fetch), 0)


def test_a_fetch_holding_only_a_partial_batch_returns_nothing():
    full = batch(records(random.Random(4), 20), offset=0)
    assert spans(full[:-10], 0)[:2] == ([], [])


def test_poll_pads_chunks_so_that_kafka_python_counts_records():
    part = SpanRecords(0, TP, MemoryRecords(batch(records(random.Random(5), 30), offset=0)))
    got = part.take(12)
    assert len(got) == 12 and got[0] is not None and all(x is None for x in got[1:])
    values, offsets = spans_of(got)
    assert len(values) == 12 and np.array_equal(offsets, np.arange(12))
