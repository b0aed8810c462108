"""Replay of event files: NDJSON (plain or gzip), contract CSV, Parquet and the Taobao CSV.

:class:`FileSource` reads its files one after the other, a bounded chunk at a time, and decodes
each chunk with :func:`~viraltrend.stream.decode.decode_records` (JSON lines) or
:func:`~viraltrend.stream.decode.decode_frame` (columns), so a file of any size is replayed in
constant memory and every bad record becomes a :class:`~viraltrend.events.Reject` with the file
path as ``source`` and its 1-based line (or row) number as ``offset``.

CSV files hold one record per physical line: a quoted field cannot span lines.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from viraltrend.errors import InputError
from viraltrend.events import EventBatch, LineSpans, Reject
from viraltrend.kernels.ndjson import line_ends
from viraltrend.stream.decode import COLUMNS, REQUIRED_COLUMNS, decode_frame, decode_records
from viraltrend.stream.sources import Source

if TYPE_CHECKING:  # polars is imported where CSV or Parquet is read: an NDJSON replay never needs it
    import polars as pl

__all__ = ["FORMATS", "MAX_LINE_BYTES", "TAOBAO_BEHAVIORS", "FileFormat", "FileSource"]

FileFormat = Literal["auto", "ndjson", "csv", "parquet", "taobao"]
FORMATS: Final = get_args(FileFormat)
#: Taobao UserBehavior ``behavior_type`` values and the contract event types they become.
TAOBAO_BEHAVIORS: Final = {"pv": "view", "fav": "like", "cart": "add_to_cart", "buy": "purchase"}
_TAOBAO_COLUMNS: Final = ("user_id", "product_id", "category", "type", "ts")  # item_id, category_id, ...
_SUFFIXES: Final = {
    ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv", ".parquet": "parquet",
}  # fmt: skip
_BOM: Final = b"\xef\xbb\xbf"
_READ_BYTES: Final = 1 << 22  # bytes read from a file at a time
_MAX_READ_BYTES: Final = 1 << 26  # at most, when NDJSON lines read ahead are short of a batch
_END: Final = "\x1e"  # sentinel field appended to every CSV line to detect ragged rows
#: Default longest line of a file (a contract event is well under 2 KiB).
MAX_LINE_BYTES: Final = 1 << 20
_KEPT_BYTES: Final = 1 << 16  # the start of an oversized line kept for its reject


class _Oversized(bytes):
    """The first bytes of a line longer than the limit.

    ``size`` is the line's full length and ``digest`` the SHA-256 of all its bytes, fed as they are read.
    """

    size: int
    digest: Any


class FileSource(Source):
    r"""Replay files of events in order, as batches of decoded records.

    Parameters
    ----------
    paths : sequence of str or Path
        Files to replay, one after the other.
    format : {"auto", "ndjson", "csv", "parquet", "taobao"}
        ``"auto"`` picks by extension: ``.ndjson``/``.jsonl``/``.json`` (optionally ``.gz``),
        ``.csv`` (optionally ``.gz``), ``.parquet``.  ``"taobao"`` is the headerless Taobao
        UserBehavior CSV (``user_id,item_id,category_id,behavior_type,timestamp`` in seconds).
    batch_size : int
        Most lines (or rows) read and decoded at once; bounds memory.
    max_line_bytes : int
        Longest line read (NDJSON and CSV): a longer one, with or without a line end, is
        rejected as ``oversized`` with its first bytes (at most 64 KiB) and its length, and never
        held whole in memory.

    Raises
    ------
    InputError
        A file does not exist, or its format cannot be told from its extension.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.ndjson"
    >>> _ = path.write_bytes(b'{"ts":1764253200123,"type":"like","product_id":"p","user_id":"u"}\n[]\n')
    >>> with FileSource([path]) as source:
    ...     batch, rejects = source.next_batch(10)
    ...     len(batch), [r.reason for r in rejects], source.snapshot(), source.exhausted
    (1, ['not_object'], {0: 2}, True)
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        format: FileFormat = "auto",
        batch_size: int = 100_000,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        if format not in FORMATS:
            msg = f"format must be one of {', '.join(FORMATS)}; got {format!r}"
            raise InputError(msg)
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        if max_line_bytes < 1:
            msg = f"max_line_bytes must be >= 1, got {max_line_bytes}"
            raise ValueError(msg)
        self.max_line_bytes = max_line_bytes
        self.paths = [Path(p) for p in paths]
        self.format = format
        self.batch_size = batch_size
        self._formats = [_format_of(path, format) for path in self.paths]
        self._total_bytes = sum(path.stat().st_size for path in self.paths)
        self._next_file = 0
        self._reader: _Reader | None = None
        self._done_bytes = 0
        self._consumed = 0

    def next_batch(self, max_events: int) -> tuple[EventBatch, list[Reject]]:
        """Read and decode at most ``min(max_events, batch_size)`` records of the current file.

        Valid events and rejects each keep file order.  A batch never spans two files.  An
        empty batch means the files are exhausted (or the chunk held only blank lines).
        """
        if max_events < 1:
            msg = f"max_events must be >= 1, got {max_events}"
            raise ValueError(msg)
        reader = self._current()
        if reader is None:
            return EventBatch.empty(), []
        batch, rejects, consumed = reader.read(min(max_events, self.batch_size))
        self._consumed += consumed
        return batch, rejects

    def snapshot(self) -> dict[int, int]:
        """``{0: n}``: the number of data lines or rows consumed so far, over all files.

        Blank lines count, CSV header lines do not; skipping ``n`` records resumes the replay.
        """
        return {0: self._consumed}

    @property
    def exhausted(self) -> bool:
        """True once the last record of the last file has been returned."""
        return self._current() is None

    @property
    def bytes_read(self) -> int:
        """Bytes of the files (as stored, compressed or not) read so far, for progress bars."""
        current = self._reader.position() if self._reader is not None else 0
        return self._done_bytes + current

    @property
    def total_bytes(self) -> int:
        """Total size of the files on disk."""
        return self._total_bytes

    def close(self) -> None:
        """Close the open file; the source is then exhausted.  Safe to call twice."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._next_file = len(self.paths)

    def _current(self) -> _Reader | None:
        """The reader with records left, opening the next files as needed; None at the end."""
        while True:
            if self._reader is not None:
                if not self._reader.at_end():
                    return self._reader
                self._done_bytes += self._reader.size
                self._reader.close()
                self._reader = None
            if self._next_file == len(self.paths):
                return None
            path, fmt = self.paths[self._next_file], self._formats[self._next_file]
            self._next_file += 1
            self._reader = (
                _ParquetReader(path) if fmt == "parquet" else _LineReader(path, fmt, self.max_line_bytes)
            )


def _format_of(path: Path, format: FileFormat) -> str:
    """Check that ``path`` is a file and return its concrete format."""
    if not path.exists():
        msg = f"input file '{path}' does not exist"
        raise InputError(msg)
    if not path.is_file():
        msg = f"input path '{path}' is not a file"
        raise InputError(msg)
    if format != "auto":
        return format
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if found is None or (found == "parquet" and len(suffixes) < len(path.suffixes)):  # no .parquet.gz
        known = ", ".join(sorted(_SUFFIXES))
        msg = (
            f"cannot tell the format of '{path}' from its extension (known: {known}, and .gz of "
            f"the JSON and CSV ones); pass --format with one of {', '.join(FORMATS[1:])}"
        )
        raise InputError(msg)
    return found


class _Reader(ABC):
    """One open file of a :class:`FileSource`; ``size`` is its size on disk in bytes."""

    size: int

    @abstractmethod
    def read(self, n: int) -> tuple[EventBatch, list[Reject], int]:
        """Decode up to ``n`` records: the valid events, the rejects, and the records consumed."""

    @abstractmethod
    def at_end(self) -> bool:
        """True when no record is left."""

    @abstractmethod
    def position(self) -> int:
        """Bytes of the file read so far (approximate: read-ahead counts)."""

    @abstractmethod
    def close(self) -> None:
        """Release the file."""


class _LineReader(_Reader):
    """NDJSON, contract CSV or Taobao CSV: lines of a plain or gzip file, a block at a time."""

    def __init__(self, path: Path, fmt: str, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path, self.fmt, self.source = path, fmt, str(path)
        self.max_line_bytes = max_line_bytes
        self._skip: _Oversized | None = None  # the start of an oversized line whose end is not read yet
        self._markers = 0  # _Oversized lines made and not yet read
        self.size = path.stat().st_size
        self._raw = path.open("rb")
        gzipped = self._raw.peek(2)[:2] == b"\x1f\x8b"
        self._stream: IO[bytes] = (
            gzip.GzipFile(fileobj=self._raw, mode="rb") if gzipped else self._raw  # type: ignore[assignment]
        )
        self._crlf = fmt != "ndjson"  # JSON takes the \r as white space; CSV must drop it
        self._pending: list[list[bytes] | LineSpans] = []  # whole lines read ahead, in pieces
        self._count = 0  # lines in _pending
        self._tail = b""  # the start of a line whose end is not read yet
        self._line_bytes = 0.0  # mean bytes per line of the last block queued as spans
        self._started = self._eof = False
        self._line = 0  # lines handed out so far, header included
        self._columns: tuple[str, ...] = _TAOBAO_COLUMNS if fmt == "taobao" else ()
        if fmt == "csv":
            try:
                self._columns = self._read_header()
            except InputError:
                self.close()
                raise

    def _fill(self, want: int = 0) -> None:
        """Read one block and split it into lines (C-level: read, join, split).

        ``want``: the lines still wanted by the caller.  NDJSON lines already read ahead as spans
        (the last pending piece) are read again with the block as one buffer, and the block is
        sized to hold about ``want`` lines at the last block's line length: a batch's lines are
        then one piece, scanned in place, never joined from several (the same lines either way).
        """
        size = _READ_BYTES
        merge = (
            not self._crlf
            and self._skip is None
            and self._pending
            and isinstance(self._pending[-1], LineSpans)
        )
        if merge and self._line_bytes:
            size = max(size, min(int(want * self._line_bytes * 1.05), _MAX_READ_BYTES))
        try:
            block = self._stream.read(size)
        except (OSError, EOFError, zlib.error) as exc:  # a damaged or truncated .gz
            msg = f"cannot read '{self.path}' after line {self._line + self._count}: {exc}"
            raise InputError(msg) from exc
        if not self._started:  # a UTF-8 byte order mark is not data
            self._started = True
            block = block.removeprefix(_BOM)
        if merge:  # the pending spans, their line ends and the tail are the end of their buffer
            ahead = self._pending.pop()
            self._count -= len(ahead)
            data = b"".join((memoryview(ahead.data)[int(ahead.start[0]) :], block))  # type: ignore[union-attr]
        else:
            data = self._tail + block
        if self._crlf:
            data = data.replace(b"\r\n", b"\n")
        elif self._skip is None and self._spans(data, eof=not block):
            return
        lines = data.split(b"\n")
        self._tail = lines.pop()
        if self._skip is not None:  # inside an oversized line: its bytes are counted, not kept
            if lines:
                self._skip.size += len(lines[0])
                self._skip.digest.update(lines[0])
                lines[0] = self._skip
                self._skip = None
            else:
                self._skip.size += len(self._tail)
                self._skip.digest.update(self._tail)
                self._tail = b""
        if len(self._tail) > self.max_line_bytes:  # a line too long, not ended yet: keep only its start
            self._skip = _Oversized(self._tail[:_KEPT_BYTES])
            self._skip.size = len(self._tail)
            self._skip.digest = hashlib.sha256(self._tail)
            self._markers += 1
            self._tail = b""
        if not block:
            self._eof = True
            if self._skip is not None:  # the file ends inside an oversized line
                lines.append(self._skip)
                self._skip = None
            if self._tail:  # a last line without a line end
                lines.append(self._tail.removesuffix(b"\r") if self._crlf else self._tail)
                self._tail = b""
        if lines:
            self._pending.append(lines)
            self._count += len(lines)

    def _spans(self, data: bytes, *, eof: bool) -> bool:
        r"""Queue the whole lines of ``data`` as spans (NDJSON), unless one is over the limit.

        The same lines as ``data.split(b"\n")`` with the last (unended) one kept as the tail, or
        at the end of the file taken as a line; False (nothing done) when a line or the tail is
        longer than ``max_line_bytes``: the list path then makes its rejects.
        """
        ends = line_ends(np.frombuffer(data, np.uint8))
        starts = np.empty_like(ends)
        starts[:1] = 0
        starts[1:] = ends[:-1] + 1
        last = int(ends[-1]) + 1 if ends.shape[0] else 0
        if len(data) - last > self.max_line_bytes or (
            ends.shape[0] and int((ends - starts).max()) > self.max_line_bytes
        ):
            return False
        self._tail = data[last:]
        if eof:
            self._eof = True
            if self._tail:  # a last line without a line end
                starts = np.append(starts, last)
                ends = np.append(ends, len(data))
                self._tail = b""
        if ends.shape[0]:
            self._pending.append(LineSpans(data, starts, ends))
            self._count += int(ends.shape[0])
            self._line_bytes = len(data) / ends.shape[0]
        return True

    def _take(self, n: int) -> list[list[bytes] | LineSpans]:
        """The pieces holding the next ``n`` lines (fewer at the end of the file)."""
        while self._count < n and not self._eof:
            self._fill(n - self._count)
        out: list[list[bytes] | LineSpans] = []
        left = n
        while left and self._pending:
            piece = self._pending[0]
            if len(piece) <= left:
                out.append(self._pending.pop(0))
            else:
                out.append(piece[:left])
                self._pending[0] = piece[left:]
            left -= len(out[-1])
        taken = n - left
        self._count -= taken
        self._line += taken
        return out

    def _lines(self, n: int) -> list[bytes]:
        """The next ``n`` lines (fewer at the end of the file), without their line ends."""
        return [line for piece in self._take(n) for line in piece]

    def _read_header(self) -> tuple[str, ...]:
        first = self._lines(1)
        if not first:
            return ()
        try:
            names = tuple(next(csv.reader([first[0].decode("utf-8")], strict=True)))
        except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
            msg = f"'{self.path}': the first line must be a CSV header naming the columns: {exc}"
            raise InputError(msg) from exc
        absent = [name for name in REQUIRED_COLUMNS if name not in names]
        if absent or len(set(names)) != len(names):
            msg = (
                f"'{self.path}': the CSV header must name each of {', '.join(REQUIRED_COLUMNS)} once "
                f"(optional: {', '.join(COLUMNS[4:])}); found {first[0][:120]!r}. "
                "A headerless Taobao UserBehavior file needs --format taobao"
            )
            raise InputError(msg)
        return names

    def read(self, n: int) -> tuple[EventBatch, list[Reject], int]:
        first = self._line + 1
        pieces = self._take(n)
        if self.fmt == "ndjson" and all(isinstance(piece, LineSpans) for piece in pieces):
            spans = LineSpans.concat(pieces)  # type: ignore[arg-type]
            offsets = np.arange(first, first + len(spans), dtype=np.int64)
            batch, rejects = decode_records(spans, offsets=offsets, source=self.source)
            return batch, rejects, len(spans)
        lines = [line for piece in pieces for line in piece]
        offsets = np.arange(first, first + len(lines), dtype=np.int64)
        oversized = self._oversized(lines, offsets)
        if self.fmt == "ndjson":
            batch, rejects = decode_records(lines, offsets=offsets, source=self.source)
        else:
            batch, rejects = self._decode_csv(lines, offsets)
        if oversized:
            rejects = sorted([*rejects, *oversized], key=attrgetter("offset"))
        return batch, rejects, len(lines)

    def _oversized(self, lines: list[bytes], offsets: NDArray[np.int64]) -> list[Reject]:
        """Rejects for the lines over the limit, which become blank lines (skipped) in ``lines``."""
        if not lines or (max(map(len, lines)) <= self.max_line_bytes and not self._markers):
            return []
        out = []
        for i, line in enumerate(lines):
            size = len(line)
            if isinstance(line, _Oversized):
                size, digest = line.size, line.digest.hexdigest()
                self._markers -= 1
            if size <= self.max_line_bytes:
                continue
            if not isinstance(line, _Oversized):
                digest = hashlib.sha256(line).hexdigest()
            detail = (
                f"line is {size} bytes, over the {self.max_line_bytes}-byte limit; "
                f"its first {min(size, _KEPT_BYTES)} bytes are kept"
            )
            kept = bytes(line[:_KEPT_BYTES])
            out.append(
                Reject(
                    kept,
                    "oversized",
                    detail,
                    self.source,
                    0,
                    int(offsets[i]),
                    full_size=size,
                    full_sha256=digest,
                )  # fmt: skip
            )
            lines[i] = b""
        return out

    def _decode_csv(self, lines: list[bytes], offsets: NDArray[np.int64]) -> tuple[EventBatch, list[Reject]]:
        frame, kept, bad = _parse_csv(lines, self._columns)
        taobao = self.fmt == "taobao"
        batch, rejects = decode_frame(
            frame,
            offsets=offsets if kept is None else offsets[kept],
            raw=lines if kept is None else [lines[i] for i in kept.tolist()],
            source=self.source,
            ts_scale=1000 if taobao else 1,
            type_names=TAOBAO_BEHAVIORS if taobao else None,
        )
        if bad:
            source = self.source
            rejects += [Reject(lines[i], why, detail, source, 0, int(offsets[i])) for i, why, detail in bad]
            rejects.sort(key=attrgetter("offset"))
        return batch, rejects

    def at_end(self) -> bool:
        while not self._count and not self._eof:
            self._fill()
        return not self._count

    def position(self) -> int:
        return self.size if self._raw.closed else self._raw.tell()

    def close(self) -> None:
        self._stream.close()
        self._raw.close()


def _parse_csv(
    lines: list[bytes], columns: tuple[str, ...]
) -> tuple[pl.DataFrame, NDArray[np.intp] | None, list[tuple[int, str, str]]]:
    """Split CSV lines into a frame of strings, where an empty field is null (absent).

    Returns the frame, the positions in ``lines`` of its rows (None: all lines, in order), and
    ``(position, reason, detail)`` for each line that is not a CSV row of ``len(columns)``
    fields.  Blank lines are skipped.  Fast path: one polars read, each line given a sentinel
    last field so that a short or long row, or a quote spanning lines, shows up; any surprise
    sends the whole chunk to the per-line path with Python's csv module.
    """
    import polars as pl  # lazy: see the imports

    schema = {name: pl.String for name in columns}
    if lines and all(map(bytes.strip, lines)):
        buffer = (f",{_END}\n".encode()).join(lines) + f",{_END}".encode()
        try:
            frame = pl.read_csv(
                buffer, has_header=False, schema={**schema, "__end": pl.String}, truncate_ragged_lines=True
            )
        except pl.exceptions.PolarsError:
            pass
        else:
            if frame.height == len(lines) and (frame.get_column("__end") == _END).fill_null(False).all():
                return _empty_as_null(frame.drop("__end")), None, []
    rows: list[list[str]] = []
    kept: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for pos, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            fields = next(csv.reader([line.decode("utf-8")], strict=True))
        except UnicodeDecodeError as exc:
            bad.append((pos, "bad_utf8", f"line is not UTF-8: {exc.reason} at byte {exc.start}"))
            continue
        except csv.Error as exc:
            bad.append((pos, "bad_json", f"not a valid CSV row: {exc}"))
            continue
        if len(fields) != len(columns):
            bad.append((pos, "bad_json", f"CSV row has {len(fields)} fields, expected {len(columns)}"))
            continue
        rows.append(fields)
        kept.append(pos)
    return _empty_as_null(pl.DataFrame(rows, schema=schema, orient="row")), np.asarray(kept, np.intp), bad


def _empty_as_null(frame: pl.DataFrame) -> pl.DataFrame:
    import polars as pl  # lazy: see the imports

    return frame.select(pl.when(pl.col(name) != "").then(pl.col(name)).alias(name) for name in frame.columns)


class _ParquetReader(_Reader):
    """A Parquet file with the contract's columns, read ``n`` rows at a time."""

    def __init__(self, path: Path) -> None:
        import polars as pl  # lazy: see the imports

        self.path, self.source = path, str(path)
        self.size = path.stat().st_size
        try:
            self._scan = pl.scan_parquet(path)
            names = self._scan.collect_schema().names()
            self._rows = int(self._scan.select(pl.len()).collect().item())
        except (pl.exceptions.PolarsError, OSError) as exc:
            msg = f"'{path}' is not a readable Parquet file: {exc}"
            raise InputError(msg) from exc
        absent = [name for name in REQUIRED_COLUMNS if name not in names]
        if absent:
            msg = f"'{path}': Parquet columns {absent} are required; found {names}"
            raise InputError(msg)
        self._columns = [name for name in COLUMNS if name in names]
        self._pos = 0

    def read(self, n: int) -> tuple[EventBatch, list[Reject], int]:
        import polars as pl  # lazy: see the imports

        try:
            frame = self._scan.slice(self._pos, n).select(self._columns).collect()
            offsets = np.arange(self._pos + 1, self._pos + 1 + frame.height, dtype=np.int64)
            batch, rejects = decode_frame(frame, offsets=offsets, source=self.source)
        except (pl.exceptions.PolarsError, OSError, InputError) as exc:
            msg = f"cannot read '{self.path}' after row {self._pos}: {exc}"
            raise InputError(msg) from exc
        self._pos += frame.height
        return batch, rejects, frame.height

    def at_end(self) -> bool:
        return self._pos >= self._rows

    def position(self) -> int:
        return self.size * self._pos // self._rows if self._rows else self.size

    def close(self) -> None:
        """Nothing stays open between reads."""
