"""Checkpoints in a changelog: a compacted Kafka topic, so any worker of the group can restore them.

:class:`ChangelogStore` is a :class:`~viraltrend.stream.checkpoint.StateStore` that keeps the
checkpoint of input partition ``p`` in partition ``p`` of a compacted topic with as many
partitions as the input topic (as Kafka Streams does).  A checkpoint is the blob of
:meth:`~viraltrend.stream.checkpoint.EncodedCheckpoint.to_blob` (npz + JSON + SHA-256 manifest,
never pickle), cut into chunks small enough for Kafka's message size limit.  With
``name = <input_topic>-<p>``, one save writes, in this order, each step flushed with
``acks="all"`` before the next:

1. the chunks, keyed ``<name>/<seq>/<i>`` (``seq`` grows by one per save);
2. a header keyed ``<name>``: JSON with ``format``, ``seq``, ``n_chunks``, ``total_bytes``, the
   SHA-256 of every chunk and of the whole blob, and the offsets;
3. tombstones (null values) for every other chunk key of ``name`` still live: the previous
   save's, and any a crashed save left behind.

A crash before step 2 completes leaves the previous header, whose chunks are untouched, as the
latest one; compaction eventually drops the old chunks and their tombstones.  :meth:`load` reads
the end of the partition (to the end offset *and* a poll that returns nothing: Tansu's end-offset
answer can lag), from far enough back to hold the latest header, all its chunks and the header
before it; it widens that window down to the log's start only when it must.  So a restore reads
about two checkpoints, however long the history (Tansu never compacts).  It takes the latest
header, gathers its chunks and verifies them.
A record with a null value under the header key ``<name>`` deletes the checkpoint: the partition
then starts fresh.  Create the topic with :func:`create_changelog_topic`.

**Fencing.**  A worker evicted from the group (paused, partitioned away) may still write a
checkpoint of a partition that another worker now owns.  Each save is stamped with an ``epoch``,
the consumer-group generation in which its writer got the partition (the coordinator bumps it
at every rebalance), in the header and in its chunk keys: ``seq`` lies in
``[epoch * 10**9, (epoch + 1) * 10**9)``, so writers of two epochs never share a key.  A load
ignores every header whose epoch is below one seen earlier in the partition: a superseded
writer's checkpoint is never restored, and a writer that sees a newer epoch's keys refuses to
save (:class:`FencedError`).  What is not fenced: a superseded writer's header when the window
read holds nothing newer before it (the newer owner never saved, or saved only before the
window): it is then a complete checkpoint with its own offsets, so the restore is still exact,
only older.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerr

from viraltrend.errors import CheckpointError, ConfigError, StreamError
from viraltrend.stream.broker import (
    INTERNAL_TOPIC_CONFIGS,
    _connect,
    _describe,
    create_topics,
    describe_topic,
)
from viraltrend.stream.checkpoint import (
    Arrays,
    ChainPolicy,
    Chains,
    EncodedCheckpoint,
    Fence,
    Loaded,
    _split_chain,
    apply_chain,
    decode_checkpoint,
    encode_checkpoint,
)

__all__ = ["HEADER_FORMAT", "SEQS_PER_EPOCH", "ChangelogStore", "FencedError", "create_changelog_topic"]

log = logging.getLogger(__name__)

#: ``format`` field of every header record.
HEADER_FORMAT: Final = "viraltrend-changelog-1"
_RESERVED: Final = frozenset(
    {"group_id", "enable_auto_commit", "key_deserializer", "value_deserializer", "key_serializer"}
    | {"value_serializer", "acks"}
)
_PRODUCER_KEYS: Final = frozenset(KafkaProducer.DEFAULT_CONFIG)
_CONSUMER_KEYS: Final = frozenset(KafkaConsumer.DEFAULT_CONFIG)
_REQUEST_OVERHEAD: Final = 64 * 1024  # record and request framing beyond a chunk's bytes
_CLOSE_TIMEOUT_S: Final = 5.0
_FIRST_WINDOW: Final = 64  # records read back from the end of a changelog partition at first
_SLACK: Final = 16  # records read beyond those known to be needed, when widening (doubles each time)
#: Saves stamped with ``epoch`` use ``seq`` in ``[epoch * SEQS_PER_EPOCH, (epoch + 1) * SEQS_PER_EPOCH)``.
SEQS_PER_EPOCH: Final = 1_000_000_000


class FencedError(StreamError):
    """A save refused: a writer of a later epoch (a newer owner of the partition) wrote there."""


def create_changelog_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    timeout_s: float = 10.0,
    **client_options: Any,
) -> bool:
    """Create the compacted changelog ``topic`` if it does not exist; return True if it was created.

    ``partitions`` must equal the input topic's partition count.  Retention is unlimited
    (``retention.ms=-1``, ``cleanup.policy=compact``): only compaction removes old records.
    An existing topic is left as it is (with a warning if its partition count differs).
    """
    created = create_topics(
        bootstrap_servers,
        {topic: partitions},
        compacted={topic},
        retention_ms=-1,
        configs=INTERNAL_TOPIC_CONFIGS,
        replication_factor=replication_factor,
        timeout_s=timeout_s,
        **client_options,
    )
    return topic in created


@dataclass(slots=True)
class _Scan:
    """What a read of one changelog partition found for one checkpoint name."""

    header: bytes | None = None  #: value of the latest header record (None: none, or a tombstone)
    header_offset: int = -1
    header_seq: int = -1  #: ``seq`` of the latest header, -1 if it has none or is unreadable
    epoch: int = 0  #: the largest epoch of any header read (a header below it is fenced)
    fenced: int = 0  #: headers ignored: written by a superseded writer after a newer one
    max_seq: int = -1  #: largest ``seq`` seen in any header or chunk key
    chunks: dict[str, bytes] = field(default_factory=dict)  #: live chunk values of ``header_seq``
    live: set[str] = field(default_factory=set)  #: chunk keys whose latest record is not a tombstone
    records: int = 0
    n_bytes: int = 0
    headers: list[tuple[int, int]] = field(default_factory=list)  #: (seq, n_chunks) of readable headers
    dead: set[str] = field(default_factory=set)  #: chunk keys whose latest record is a tombstone
    deleted: bool = False  #: the latest header record is a tombstone (the checkpoint was deleted)
    chain: list[tuple[int, int]] = field(default_factory=list)  #: (seq, n_chunks) of the parts before it
    #: SHA-256 of each chunk value, computed on a thread as the records arrive, by offset
    hashes: dict[int, Future[str]] = field(default_factory=dict)
    chunk_offsets: dict[str, int] = field(default_factory=dict)  #: offset of each value in ``chunks``

    def add(self, name: str, key: str, value: bytes | None, offset: int) -> None:
        """Take one record of the changelog partition, read in offset order."""
        prefix = name + "/"
        self.records += 1
        self.n_bytes += len(value) if value is not None else 0
        if key == name:
            if value is not None:
                epoch = _header_int(value, "epoch", 0)
                if epoch < self.epoch:  # a superseded writer's: never the latest checkpoint
                    self.fenced += 1
                    return
                self.epoch = epoch
            self.header, self.header_offset = value, offset
            self.deleted = value is None
            self.header_seq = -1 if value is None else _header_seq(value)
            self.max_seq = max(self.max_seq, self.header_seq)
            if value is not None and self.header_seq >= 0:
                self.headers.append((self.header_seq, _header_chunks(value)))
            self.chain = _header_chain(value) if value is not None else []
            keep = {q for q, _ in self.chain}
            # chunks of older saves are not needed any more (unless the chain holds them); keep their keys
            for old in [
                k
                for k in self.chunks
                if (q := _chunk_seq(k, prefix) or 0) < self.header_seq and q not in keep
            ]:
                del self.chunks[old]
                self._forget(old)
        elif key.startswith(prefix):
            seq = _chunk_seq(key, prefix)
            if seq is None:
                return
            self.max_seq = max(self.max_seq, seq)
            if value is None:
                self.live.discard(key)
                self.dead.add(key)
                self.chunks.pop(key, None)
                self._forget(key)
            else:
                self.live.add(key)
                self.dead.discard(key)
                self._forget(key)
                self.chunks[key] = value
                self.chunk_offsets[key] = offset

    def _forget(self, key: str) -> None:
        """Drop the hash of chunk ``key``'s older value (cancelled if not computed yet)."""
        offset = self.chunk_offsets.pop(key, None)
        future = self.hashes.pop(offset, None) if offset is not None else None
        if future is not None:
            future.cancel()

    def sha256(self, key: str) -> str:
        """SHA-256 (hex) of the value of chunk ``key``: the one computed on arrival, if any."""
        future = self.hashes.get(self.chunk_offsets.get(key, -1))
        if future is not None and not future.cancelled():
            return future.result()
        return hashlib.sha256(self.chunks[key]).hexdigest()

    def complete(self, name: str) -> bool:
        """Whether a read that began past the log's start saw all a load and the next save need.

        The latest header (not a tombstone) and every one of its chunks, and the header before
        it, whose chunks the next save tombstones unless a tombstone of theirs was seen.
        """
        if self.deleted or self.header is None or self.header_seq < 0 or len(self.headers) < 2:
            return False
        parts = [*self.chain, self.headers[-1]]
        return all(f"{name}/{q}/{i}" in self.chunks for q, n in parts for i in range(n))

    def finish(self, name: str) -> None:
        """Count the chunks of every header seen as live unless a tombstone of theirs was read.

        A save that stopped between its header and its tombstones left the previous chunks live,
        maybe before the window read.
        """
        for seq, n_chunks in self.headers[:-1]:
            for i in range(n_chunks):
                key = f"{name}/{seq}/{i}"
                if key not in self.dead:
                    self.live.add(key)


@dataclass(frozen=True, slots=True)
class _Known:
    """The state of a partition after this store's last read or save of it."""

    seq: int  #: the largest seq in use; the next save uses seq + 1
    live: frozenset[str]  #: chunk keys that are not tombstoned


def _chunk_seq(key: str, prefix: str) -> int | None:
    """``seq`` of chunk key ``<name>/<seq>/<i>`` (``prefix`` is ``<name>/``), None if malformed."""
    parts = key[len(prefix) :].split("/")
    if len(parts) != 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0])


def _data_offset(first_chunk: bytes) -> int:
    """Where the arrays start in a checkpoint blob (past magic, lengths, manifest, meta); 0 if unknown."""
    head = 8 + 24  # EncodedCheckpoint.to_blob(): magic, then three big-endian uint64 lengths
    if len(first_chunk) < head:
        return 0
    n_manifest = int.from_bytes(first_chunk[8:16], "big")
    n_meta = int.from_bytes(first_chunk[16:24], "big")
    return head + n_manifest + n_meta


def _aligned_buffer(total: int, data_offset: int) -> memoryview:
    """``total`` writable bytes whose byte ``data_offset`` lies at an address that is a multiple of 64.

    The arrays of a blob sit at multiples of 64 from its data part: so they are aligned in memory
    (numba compiles its kernels once, for aligned arrays, and the engine works in them).
    """
    raw = np.empty(total + 64, np.uint8)
    shift = -(raw.ctypes.data + data_offset) % 64
    return memoryview(raw[shift : shift + total].data)


def _sha256(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _header_int(value: bytes, key: str, default: int) -> int:
    """Integer field ``key`` of a header record's value (``default`` if unreadable or absent)."""
    try:
        got = json.loads(value).get(key)
    except (ValueError, AttributeError):
        return default
    return got if isinstance(got, int) and not isinstance(got, bool) else default


def _header_chain(value: bytes) -> list[tuple[int, int]]:
    """``(seq, n_chunks)`` of the parts a header's checkpoint is built on (its base and deltas)."""
    try:
        chain = json.loads(value).get("chain") or []
        return [(int(q["seq"]), max(int(q["n_chunks"]), 0)) for q in chain]
    except (ValueError, AttributeError, TypeError, KeyError):
        return []


def _header_chunks(value: bytes) -> int:
    return max(_header_int(value, "n_chunks", 0), 0)


def _header_seq(value: bytes) -> int:
    return _header_int(value, "seq", -1)


class ChangelogStore:
    """A :class:`~viraltrend.stream.checkpoint.StateStore` in a compacted Kafka topic.

    Parameters
    ----------
    bootstrap_servers : str
        ``host:port[,host:port...]`` of the Kafka cluster.
    topic : str
        The changelog topic (compacted, ``partitions`` partitions; see :func:`create_changelog_topic`).
    input_topic : str
        The topic whose partitions the checkpoints belong to; names them ``<input_topic>-<p>``.
    partitions : int
        Partition count of the input topic; the changelog topic must have exactly as many.
    max_chunk_bytes : int
        Largest chunk value; keep it below the broker's ``message.max.bytes`` (1 MB by default).
    load_timeout_s : float
        How long :meth:`load` may take to read a partition to its end before it gives up.
    poll_timeout_ms : int
        Wait of each poll while loading; the end is confirmed by one poll that returns nothing.
    flush_timeout_s : float
        How long :meth:`save` waits for the broker to acknowledge each step.
    connect_timeout_s : float
        How long to wait for the cluster when connecting.
    policy : ChainPolicy, optional
        When to write a delta and when a full checkpoint (compaction).
    reader : {"kafka-python", "confluent"}
        The client that reads the partition on :meth:`load` (librdkafka reads it faster).
    sparse : bool
        Store the arrays that are mostly one value sparse (checkpoint format 3): about a third of
        the bytes to write and read back at 1M products.  False writes format 2, which viraltrend
        before format 3 reads.
    **client_options
        Passed to kafka-python's producer and consumer where they apply (security, ...).

    Raises
    ------
    StreamError
        If the cluster cannot be reached or the topic does not exist.
    ConfigError
        If the topic's partition count differs from ``partitions``, or an option is invalid.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        input_topic: str,
        *,
        partitions: int,
        max_chunk_bytes: int = 900_000,
        load_timeout_s: float = 120.0,
        poll_timeout_ms: int = 300,
        flush_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        policy: ChainPolicy | None = None,
        reader: str = "kafka-python",
        sparse: bool = True,
        **client_options: Any,
    ) -> None:
        if reader not in ("kafka-python", "confluent"):
            msg = f"reader must be 'kafka-python' or 'confluent', got {reader!r}"
            raise ValueError(msg)
        self.reader = reader
        self.sparse = sparse
        if partitions < 1:
            msg = f"partitions must be >= 1, got {partitions}"
            raise ValueError(msg)
        if max_chunk_bytes < 1:
            msg = f"max_chunk_bytes must be >= 1, got {max_chunk_bytes}"
            raise ValueError(msg)
        reserved = _RESERVED & client_options.keys()
        if reserved:
            msg = f"ChangelogStore sets {sorted(reserved)} itself; remove them from the client options"
            raise ConfigError(msg)
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.input_topic = input_topic
        self.partitions = partitions
        self.max_chunk_bytes = max_chunk_bytes
        self.load_timeout_s = load_timeout_s
        self.poll_timeout_ms = poll_timeout_ms
        self.flush_timeout_s = flush_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._options = client_options
        #: Records read from the changelog by the last :meth:`load` (its restore lag).
        self.last_load_records = 0
        #: Bytes of record values read from the changelog by the last :meth:`load`.
        self.last_load_bytes = 0
        self._known: dict[int, _Known] = {}
        self.chains = Chains(policy)
        self._parts: dict[int, list[dict[str, Any]]] = {}  # partition -> the chain's parts written so far
        #: The last save: ``(seq in its chain, bytes)``, 0 for a full checkpoint.
        self.last_save: tuple[int, int] = (0, 0)
        #: Deltas applied by the last :meth:`load`.
        self.last_load_deltas = 0
        self._window: dict[int, int] = {}  # partition -> records read back from its end last time
        self._closed = False
        config: dict[str, Any] = {
            "acks": "all",
            "linger_ms": 5,
            "compression_type": None,
            "allow_auto_create_topics": False,
            "max_request_size": max(1_048_576, max_chunk_bytes + _REQUEST_OVERHEAD),
            "bootstrap_timeout_ms": int(connect_timeout_s * 1000),
            "max_block_ms": int(flush_timeout_s * 1000),
        }
        config.update({k: v for k, v in client_options.items() if k in _PRODUCER_KEYS})
        self._producer: KafkaProducer = _connect(KafkaProducer, bootstrap_servers, config)
        try:
            self._check_topic()
        except BaseException:
            self._producer.close(timeout=1)
            raise

    @property
    def describe(self) -> str:
        """``"changelog topic <topic> on <bootstrap servers>"``, for logs."""
        return f"changelog topic {self.topic} on {self.bootstrap_servers}"

    def name(self, partition: int) -> str:
        """Checkpoint name (header key) of input ``partition``: ``<input_topic>-<partition>``."""
        return f"{self.input_topic}-{partition}"

    # ------------------------------------------------------------------------------- save

    def save(
        self,
        partition: int,
        arrays: Arrays,
        meta: dict[str, Any],
        offsets: dict[int, int],
        *,
        epoch: int = 0,
        fence: Fence | None = None,
    ) -> int:
        """Write the checkpoint of input ``partition`` to changelog partition ``partition``.

        Returns after the broker acknowledged every record (``acks="all"``); returns the bytes
        written (chunks plus header).  If this store has not read or written that partition
        before, it first reads it (as :meth:`load` does) to learn which chunks to tombstone.
        ``epoch`` is the consumer-group generation in which the caller got the partition (see
        the module's *Fencing*); 0 for an unfenced writer.  ``fence`` is called after the chunks
        are acknowledged, right before the header (the write that makes the save visible);
        whatever it raises aborts the save (the chunks are tombstoned by the next one).

        Raises
        ------
        CheckpointError
            If an array has ``dtype=object``.
        StreamError
            If the broker does not acknowledge a record; the previous checkpoint then stays the
            latest one unless the header was written.
        FencedError
            If this store saw a save of a later epoch in that partition: a newer owner writes it.
        """
        self._check_partition(partition)
        if epoch < 0:
            msg = f"epoch must be >= 0, got {epoch}"
            raise ValueError(msg)
        known = self._known.get(partition)
        if known is None:
            scan = self._scan(partition)
            known = _Known(scan.max_seq, frozenset(scan.live))
        name = self.name(partition)
        seq = max(known.seq + 1, epoch * SEQS_PER_EPOCH)
        if epoch > 0 and seq >= (epoch + 1) * SEQS_PER_EPOCH:
            msg = (
                f"not saving the checkpoint of input partition {partition} with epoch {epoch}: "
                f"{self.describe} holds a save of epoch {seq // SEQS_PER_EPOCH}, a newer owner of "
                "the partition (this worker was evicted from the group)"
            )
            raise FencedError(msg)
        plan = self.chains.plan(partition, arrays, meta)
        parts = self._parts.get(partition, []) if plan.seq > 0 else []
        if plan.seq > 0 and not parts:  # no base written by this store: should not happen
            self.chains.forget(partition)
            plan = self.chains.plan(partition, arrays, meta)
        try:
            blob = encode_checkpoint(plan.arrays, plan.meta, offsets, sparse=self.sparse).to_blob()
            chunks = [blob[i : i + self.max_chunk_bytes] for i in range(0, len(blob), self.max_chunk_bytes)]
            keys = [f"{name}/{seq}/{i}" for i in range(len(chunks))]
            part = {
                "seq": seq,
                "n_chunks": len(chunks),
                "total_bytes": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(),
                "chunks": [hashlib.sha256(c).hexdigest() for c in chunks],
            }
            header = json.dumps(
                {
                    "format": HEADER_FORMAT,
                    "name": name,
                    "epoch": epoch,
                    **part,
                    "chain": parts,  # the base and the deltas before this one, oldest first
                    "offsets": {str(p): int(o) for p, o in offsets.items()},
                    "saved_at_ms": int(time.time() * 1000),
                },
                separators=(",", ":"),
            ).encode("utf-8")
            in_chain = {f"{name}/{q['seq']}/{i}" for q in parts for i in range(int(q["n_chunks"]))}
            stale = sorted(known.live - set(keys) - in_chain)
            # Until the tombstones are acknowledged, count this save's keys and the stale ones as live
            # and its seq as used (a failed send may still have reached the broker).
            self._known[partition] = _Known(seq, known.live | set(keys))
            self._send(partition, list(zip(keys, chunks, strict=True)), "chunks")
            if fence is not None:
                fence()
            self._send(partition, [(name, header)], "header")
            self._send(partition, [(key, None) for key in stale], "tombstones of the previous chunks")
        except BaseException:
            self.chains.forget(partition)
            self._parts.pop(partition, None)
            raise
        self._known[partition] = _Known(seq, frozenset(keys) | in_chain)
        self._parts[partition] = [*parts, part]
        self.chains.done(partition, plan)
        self.last_save = (plan.seq, len(blob) + len(header))
        return len(blob) + len(header)

    def _send(self, partition: int, records: list[tuple[str, bytes | None]], what: str) -> None:
        """Produce ``records`` to ``partition`` and wait until the broker acknowledged all of them."""
        if not records:
            return
        futures = []
        try:
            for key, value in records:
                futures.append(
                    self._producer.send(self.topic, key=key.encode("utf-8"), value=value, partition=partition)
                )
            self._producer.flush(timeout=self.flush_timeout_s)
        except kerr.KafkaError as exc:
            msg = (
                f"writing the checkpoint {what} to {self.describe}, partition {partition}, failed: "
                f"{_describe(exc)}; is the broker running?"
            )
            raise StreamError(msg) from exc
        failed = [f.exception for f in futures if f.failed()]
        if failed or not all(f.is_done for f in futures):
            reason = _describe(failed[0]) if failed else f"not acknowledged within {self.flush_timeout_s:g} s"
            msg = (
                f"writing the checkpoint {what} to {self.describe}, partition {partition}, failed: "
                f"{reason}; the previous checkpoint stays the latest one"
            )
            raise StreamError(msg)

    # ------------------------------------------------------------------------------- load

    def load(self, partition: int) -> Loaded | None:
        """Return the latest checkpoint of input ``partition``, or None if it has none.

        Reads changelog partition ``partition`` from the last complete checkpoint to its end
        (see :meth:`_scan`); sets
        :attr:`last_load_records` and :attr:`last_load_bytes`.

        Raises
        ------
        CheckpointError
            If the latest header is unreadable, a chunk is missing or does not match its SHA-256,
            or the checkpoint cannot be decoded.
        StreamError
            If the partition cannot be read to its end within ``load_timeout_s``.
        """
        self._check_partition(partition)
        self.last_load_records = self.last_load_bytes = self.last_load_deltas = 0
        self.chains.forget(partition)  # the next save writes a full checkpoint
        self._parts.pop(partition, None)
        scan = self._scan(partition)
        self._known[partition] = _Known(scan.max_seq, frozenset(scan.live))
        self.last_load_records, self.last_load_bytes = scan.records, scan.n_bytes
        if scan.fenced:
            log.warning(
                "%s, partition %d: ignored %d checkpoint(s) written by a superseded owner (epoch "
                "below %d) after a newer one",
                self.describe,
                partition,
                scan.fenced,
                scan.epoch,
            )
        if scan.header is None:
            return None
        where = f"changelog topic {self.topic!r} partition {partition} (key {self.name(partition)!r})"
        remedy = (
            f"To start input partition {partition} fresh, produce a record with key "
            f"{self.name(partition)!r} and a null value (a tombstone) to partition {partition} of "
            f"{self.topic!r}"
        )
        parts = self._assemble(
            scan, self.name(partition), where=f"{where} at offset {scan.header_offset}", remedy=remedy
        )
        loaded: list[tuple[Loaded, str]] = []
        for seq, blob in parts:
            part_where = f"{where}, seq {seq}"
            encoded = EncodedCheckpoint.from_blob(blob, where=part_where, remedy=remedy)
            # every byte was checked against the header's SHA-256 of its chunk: not hashed again
            got = decode_checkpoint(encoded, where=part_where, remedy=remedy, verified=True)
            _split_chain(got[1], part_where, remedy)
            loaded.append((got, part_where))
        self.last_load_deltas = len(loaded) - 1
        return apply_chain(loaded[0][0], loaded[1:], remedy=remedy)

    def _assemble(self, scan: _Scan, name: str, *, where: str, remedy: str) -> list[tuple[int, memoryview]]:
        """Check the header of ``scan`` (checkpoint ``name``) and the chunks of its chain.

        Returns ``(seq, blob)`` of the base and each delta on it, oldest first (one part when the
        checkpoint is full).
        """
        assert scan.header is not None
        try:
            header = json.loads(scan.header)
            if not isinstance(header, dict) or header.get("format") != HEADER_FORMAT:
                msg = f"format is not {HEADER_FORMAT!r}"
                raise ValueError(msg)
            if header["name"] != name:
                msg = f"it names checkpoint {header['name']!r}, not {name!r}"
                raise ValueError(msg)
            parts = [
                (
                    int(q["seq"]),
                    int(q["n_chunks"]),
                    int(q["total_bytes"]),
                    [str(c) for c in q["chunks"]],
                    str(q["sha256"]),
                )
                for q in [*(header.get("chain") or []), header]
            ]
        except (ValueError, TypeError, KeyError) as exc:
            msg = f"the checkpoint header in {where} is unreadable ({type(exc).__name__}: {exc}). {remedy}"
            raise CheckpointError(msg) from exc
        return [(seq, self._gather(scan, name, seq, n, total, shas, whole, where=where, remedy=remedy))
                for seq, n, total, shas, whole in parts]  # fmt: skip

    @staticmethod
    def _gather(
        scan: _Scan,
        name: str,
        seq: int,
        n_chunks: int,
        total: int,
        shas: list[str],
        whole: str,
        *,
        where: str,
        remedy: str,
    ) -> memoryview:
        """The blob of save ``seq`` from its chunks, each checked against the header's SHA-256.

        One pass over the bytes: each chunk's hash (mostly computed while the partition was read)
        is compared with the header's, and the chunk copied once into a buffer of the header's
        ``total_bytes``.  The SHA-256 of the whole blob (``whole``) is not computed again: the
        chunks' hashes, their count and ``total_bytes`` already fix every byte of it.
        """
        del whole
        if len(shas) != n_chunks:
            msg = (
                f"the checkpoint header in {where} lists {len(shas)} chunk checksums for {n_chunks} "
                f"chunks. {remedy}"
            )
            raise CheckpointError(msg)
        keys = [f"{name}/{seq}/{i}" for i in range(n_chunks)]
        for key, sha in zip(keys, shas, strict=True):
            if key not in scan.chunks:
                msg = (
                    f"chunk {key!r} of the checkpoint in {where} is missing (a lost or deleted record; "
                    f"{n_chunks} chunks expected). {remedy}"
                )
                raise CheckpointError(msg)
            if scan.sha256(key) != sha:
                msg = (
                    f"chunk {key!r} of the checkpoint in {where} does not match its SHA-256 in the "
                    f"header (corrupt or tampered); refusing to load it. {remedy}"
                )
                raise CheckpointError(msg)
        sizes = [len(scan.chunks[key]) for key in keys]
        if sum(sizes) != total:
            msg = (
                f"the chunks of the checkpoint in {where} add up to {sum(sizes)} bytes, not the header's "
                f"total_bytes={total}; refusing to load it. {remedy}"
            )
            raise CheckpointError(msg)
        view = _aligned_buffer(total, _data_offset(scan.chunks[keys[0]]))  # not zeroed: all written below
        pos = 0
        for key, size in zip(keys, sizes, strict=True):
            view[pos : pos + size] = scan.chunks.pop(key)  # the chunk's own bytes are freed
            pos += size
        return view

    def _scan(self, partition: int) -> _Scan:
        """Read changelog ``partition`` to its end from the last complete checkpoint of its name.

        Reads a window at the end of the partition, and widens it (see :meth:`_wider`, down to
        the log's start) until it holds the latest header, every chunk of that header and the
        header before it (see :meth:`_Scan.complete`): a load reads about one checkpoint, not the
        whole history (Tansu does not compact, and a real cluster compacts only eventually).
        A wider window reads only the records before the ones already read, never one twice.
        Each chunk's SHA-256 is computed on a thread as it arrives, while the read goes on.
        """
        name = self.name(partition)
        prefix = name + "/"
        tp = TopicPartition(self.topic, partition)
        consumer = self._consumer()
        hasher = ThreadPoolExecutor(1, thread_name_prefix="changelog-sha256")
        hashes: dict[int, Future[str]] = {}
        try:
            begin, end = self._bounds(consumer, tp)
            window = self._window.get(partition, _FIRST_WINDOW)
            records: list[tuple[str, bytes | None, int]] = []  # read so far, in offset order
            stop: int | None = None  # the first offset read so far (None: nothing read yet)
            slack = _SLACK
            while True:
                start = max(begin, end - window)
                if stop is None or start < stop:
                    read = self._read_confluent if self.reader == "confluent" else self._read
                    got = []
                    for key, value, offset in read(consumer, tp, start, end, stop):
                        if value is not None and key.startswith(prefix):
                            hashes[offset] = hasher.submit(_sha256, value)
                        got.append((key, value, offset))
                    records = got + records
                    stop = start
                scan = _Scan()
                for key, value, offset in records:
                    scan.add(name, key, value, offset)
                if start <= begin or scan.complete(name):
                    self._window[partition] = window
                    scan.finish(name)
                    scan.hashes = {o: hashes.pop(o) for o in scan.chunk_offsets.values() if o in hashes}
                    return scan
                window = self._wider(scan, name, window, slack)
                slack *= 2
        except kerr.KafkaError as exc:
            msg = f"reading {self.describe}, partition {partition}, failed: {_describe(exc)}"
            raise StreamError(msg) from exc
        finally:
            for future in hashes.values():  # chunks no load needs
                future.cancel()
            hasher.shutdown(wait=False)  # the thread computes the scan's remaining hashes, then ends
            consumer.close(autocommit=False)

    @staticmethod
    def _wider(scan: _Scan, name: str, window: int, slack: int) -> int:
        """The next window of :meth:`_scan` (records back from the end), after ``window`` was not enough.

        Once the latest header was read, the records still needed are known: its chunks (and its
        chain's) not read yet, then the header before it, which lies behind the tombstones of the
        save before.  So the window grows by the chunks missing plus ``slack`` records (doubled at
        each step by the caller), and reads few of the older saves' chunks; without a header yet,
        it grows four times.
        """
        if scan.header is None or scan.deleted or scan.header_seq < 0 or not scan.headers:
            return window * 4
        parts = [*scan.chain, scan.headers[-1]]
        missing = sum(f"{name}/{q}/{i}" not in scan.chunks for q, n in parts for i in range(n))
        return window + missing + slack

    def _consumer(self) -> KafkaConsumer:
        config: dict[str, Any] = {
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": max(16 * 1024 * 1024, self.max_chunk_bytes + _REQUEST_OVERHEAD),
            "fetch_max_wait_ms": 100,
        }
        config.update({k: v for k, v in self._options.items() if k in _CONSUMER_KEYS})
        consumer: KafkaConsumer = _connect(KafkaConsumer, self.bootstrap_servers, config)
        return consumer

    def _bounds(self, consumer: KafkaConsumer, tp: TopicPartition) -> tuple[int, int]:
        """The log start and end offsets of ``tp`` (0, 0 when the broker does not say)."""
        consumer.assign([tp])
        try:
            begin = int(consumer.beginning_offsets([tp], timeout_ms=5000).get(tp) or 0)
            end = int(consumer.end_offsets([tp], timeout_ms=5000).get(tp) or 0)
        except kerr.KafkaError as exc:  # read it all: the fetches' high watermark and an empty poll tell
            log.debug("offsets of %s unavailable: %s", tp, exc)
            return 0, 0
        return begin, end

    def _read(
        self, consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int, stop: int | None = None
    ) -> Iterator[tuple[str, bytes | None, int]]:
        """Yield ``(key, value, offset)`` of ``tp`` from offset ``start`` to its end, or to ``stop``.

        The end is reached when the position is at or past both ``end`` (the end offset asked
        at the start) and the high watermark of the latest fetch, *and* a poll returned nothing.
        With ``stop``, the records from offset ``stop`` on are not read (they were already).
        """
        if stop is not None and start >= stop:
            return
        consumer.seek(tp, start)
        deadline = time.monotonic() + self.load_timeout_s
        read = 0
        while True:
            batch = consumer.poll(timeout_ms=self.poll_timeout_ms).get(tp, [])
            for record in batch:
                if stop is not None and record.offset >= stop:
                    return
                key = record.key.decode("utf-8", "replace") if record.key is not None else ""
                yield key, record.value, record.offset
            read += len(batch)
            highwater = consumer.highwater(tp)
            position = consumer.position(tp, timeout_ms=1000)
            if stop is not None and position is not None and position >= stop:
                return
            if (
                not batch
                and highwater is not None
                and position is not None
                and position >= max(end, highwater)
            ):
                return
            if time.monotonic() > deadline:
                msg = (
                    f"could not read {self.describe}, partition {tp.partition}, to its end within "
                    f"{self.load_timeout_s:g} s (read {read} records from offset {start}, at offset "
                    f"{position}, end {max(end, highwater or 0)}); is the broker reachable? raise "
                    "load_timeout_s if the changelog is large"
                )
                raise StreamError(msg)

    def _read_confluent(
        self, consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int, stop: int | None = None
    ) -> Iterator[tuple[str, bytes | None, int]]:
        """:meth:`_read` with librdkafka (``reader="confluent"``): the same records, read faster.

        The end is reached as in :meth:`_read`: the position at or past both ``end`` and the
        high watermark, and a consume that returned nothing; or, with ``stop``, at ``stop``.
        ``consumer`` (kafka-python) only gave the bounds.
        """
        del consumer
        if stop is not None and start >= stop:
            return
        from confluent_kafka import Consumer, KafkaException
        from confluent_kafka import TopicPartition as RdPartition

        from viraltrend.stream.kafka_confluent import librdkafka_options

        secure = {k: v for k, v in self._options.items() if k.startswith(("security_", "sasl_", "ssl_"))}
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": f"{self.topic}.restore",  # never joined nor committed: assign() only
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": max(16 * 1024 * 1024, self.max_chunk_bytes + _REQUEST_OVERHEAD),
            "receive.message.max.bytes": 100 * 1024 * 1024,
            "queued.max.messages.kbytes": 1024 * 1024,
            "fetch.wait.max.ms": 100,
            **librdkafka_options(secure),
        }
        reader = Consumer(config)
        rd_tp = RdPartition(self.topic, tp.partition, start)
        deadline = time.monotonic() + self.load_timeout_s
        position, read = start, 0
        try:
            reader.assign([rd_tp])
            while True:
                messages = reader.consume(1000, timeout=self.poll_timeout_ms / 1000)
                for m in messages:
                    error = m.error()
                    if error is not None:
                        msg = f"reading {self.describe}, partition {tp.partition}, failed: {error.str()}"
                        raise StreamError(msg)
                    key, offset = m.key(), int(m.offset() or 0)
                    if stop is not None and offset >= stop:
                        return
                    yield key.decode("utf-8", "replace") if key is not None else "", m.value(), offset
                    position = offset + 1
                read += len(messages)
                if stop is not None and position >= stop:
                    return
                if not messages:
                    high = reader.get_watermark_offsets(rd_tp, timeout=5.0, cached=False)[1]
                    if position >= max(end, high):
                        return
                if time.monotonic() > deadline:
                    msg = (
                        f"could not read {self.describe}, partition {tp.partition}, to its end within "
                        f"{self.load_timeout_s:g} s (read {read} records from offset {start}, at offset "
                        f"{position}, end {end}); is the broker reachable? raise load_timeout_s if the "
                        "changelog is large"
                    )
                    raise StreamError(msg)
        except KafkaException as exc:
            msg = f"reading {self.describe}, partition {tp.partition}, failed: {exc}"
            raise StreamError(msg) from exc
        finally:
            reader.close()

    # ------------------------------------------------------------------------------- admin

    def _check_partition(self, partition: int) -> None:
        if self._closed:
            msg = f"the ChangelogStore for {self.topic!r} is closed"
            raise StreamError(msg)
        if not 0 <= partition < self.partitions:
            msg = f"partition must be in [0, {self.partitions}) for {self.describe}, got {partition}"
            raise ValueError(msg)

    def _check_topic(self) -> None:
        info = describe_topic(
            self.bootstrap_servers, self.topic, timeout_s=self.connect_timeout_s, **self._options
        )  # StreamError if it does not exist
        if info.partitions != self.partitions:
            msg = (
                f"changelog topic {self.topic!r} has {info.partitions} partitions but the input topic "
                f"{self.input_topic!r} has {self.partitions}; they must be equal (checkpoint of input "
                "partition p goes to changelog partition p). Use another changelog topic, or delete "
                "this one and create it again with create_changelog_topic()"
            )
            raise ConfigError(msg)
        policy = info.configs.get("cleanup.policy")  # Tansu reports it only when set at creation
        if policy is not None and "compact" not in policy:
            msg = (
                f"changelog topic {self.topic!r} has cleanup.policy={policy}: retention would delete "
                "checkpoints. Set cleanup.policy=compact on it, or create it with create_changelog_topic()"
            )
            raise ConfigError(msg)

    def close(self) -> None:
        """Close the producer; idempotent.

        Every :meth:`save` that returned was flushed already, so this waits at most a few seconds
        (records of a failed save may be dropped: that save did not count).
        """
        if not self._closed:
            self._closed = True
            self._producer.close(timeout=min(self.flush_timeout_s, _CLOSE_TIMEOUT_S))

    def __enter__(self) -> ChangelogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ChangelogStore({self.bootstrap_servers!r}, {self.topic!r}, {self.input_topic!r})"
