"""The live "Deals of the day" board in the terminal, read from the output topic like any subscriber.

:class:`BoardWatcher` follows ``shared/contract/deals.md`` as a ranking service would: it reads
every partition of the deals topic from the start (no consumer group), takes the latest
``__board__`` snapshot and applies the ``promote``/``update``/``demote``/``block`` messages
that follow it.  :meth:`BoardWatcher.render` draws the board, the recent decisions with their
reasons and, given the simulator's ``truth.json``, which products are truly viral.

Partitions arrive in no set order relative to each other, so "follow" is judged by event
time: a snapshot at ``event_ts = T`` holds every decision made at ``T`` or before (the engine
publishes it after them); later decisions are applied on top, and kept to be re-applied if
the snapshot arrives after them.  One product's messages share a partition (they arrive in
order); different products' messages commute.
"""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kerr
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from viraltrend.errors import InputError, StreamError
from viraltrend.stream.broker import _CREATE_HINT, _connect, _describe, _unreachable

__all__ = ["BOARD_KEY", "BoardWatcher", "watch"]

#: Key of board snapshot messages (``deals.md``).
BOARD_KEY: Final = b"__board__"
_PRODUCT_ACTIONS: Final = ("promote", "update", "demote", "block")
_FEED_ACTIONS: Final = frozenset({"promote", "demote", "block"})
_COLOURS: Final = {"promote": "green", "update": "cyan", "demote": "yellow", "block": "red", "board": "blue"}
_ITEM_FIELDS: Final = ("rank", "product_id", "seller_id", "category", "score", "since_ts")
_MAX_SINCE_BOARD: Final = 200_000  # decisions kept for re-application after a late snapshot
_DECODE: Final = msgspec.json.Decoder().decode
_BITE: Final = 20_000  # most records consumed between two redraws


def _utc(ts_ms: int | None, fmt: str = "%H:%M:%S") -> str:
    return "-" if ts_ms is None else datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime(fmt)


def _minutes(ms: int) -> str:
    return f"{ms / 60_000:.0f}m" if abs(ms) < 36_000_000 else f"{ms / 3_600_000:.0f}h"  # minutes up to 10 h


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class BoardWatcher:
    """A subscriber of the deals topic that keeps the current board, recent decisions and counts.

    Parameters
    ----------
    bootstrap_servers, topic : str
        ``host:port[,host:port...]`` and the deals topic, which must exist.
    recent : int
        How many promote/demote/block decisions the feed keeps.
    connect_timeout_s : float
        Bounded wait for the first connection.
    **client_options
        Passed to :class:`kafka.KafkaConsumer` (security, fetch sizes, ...).
    """

    def __init__(
        self, bootstrap_servers: str, topic: str, *, recent: int = 12, connect_timeout_s: float = 10.0,
        **client_options: Any,
    ) -> None:  # fmt: skip
        if recent < 1:
            msg = f"recent must be >= 1, got {recent}"
            raise ValueError(msg)
        self.bootstrap_servers, self.topic, self.recent_size = bootstrap_servers, topic, recent
        config: dict[str, Any] = {
            "group_id": None, "enable_auto_commit": False, "auto_offset_reset": "earliest",
            "allow_auto_create_topics": False, "bootstrap_timeout_ms": int(connect_timeout_s * 1000),
            "fetch_max_wait_ms": 100, "max_poll_records": 10_000, **client_options,
        }  # fmt: skip
        self._consumer: KafkaConsumer = _connect(KafkaConsumer, bootstrap_servers, config)
        try:
            partitions = self._consumer.partitions_for_topic(topic)
        except kerr.KafkaError as exc:
            self._consumer.close()
            raise _unreachable(bootstrap_servers, exc) from exc
        if not partitions:
            self._consumer.close()
            msg = f"topic {topic!r} does not exist on {bootstrap_servers}; {_CREATE_HINT}"
            raise StreamError(msg)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self._board: dict[str, dict[str, Any]] = {}
        self._since_board: deque[dict[str, Any]] = deque(maxlen=_MAX_SINCE_BOARD)
        self._recent: list[tuple[int, int, dict[str, Any]]] = []  # (event_ts, arrival, message)
        self.counts: Counter[str] = Counter()  #: messages seen per action (``invalid`` for bad ones)
        self.messages = 0  #: messages consumed
        self.event_ts_ms: int | None = None  #: latest ``event_ts`` seen (event time of the board)
        self.board_ts_ms: int | None = None  #: ``event_ts`` of the snapshot the board is based on
        self.first_promoted: dict[str, int] = {}  #: product -> event time of its first promotion
        self.blocked: dict[str, list[str]] = {}  #: product -> reasons of its first block

    def poll(self, timeout_ms: int = 0, *, max_records: int = 100_000) -> int:
        """Consume what is there (waiting up to ``timeout_ms`` for the first records); return the count."""
        got, wait = 0, timeout_ms
        while got < max_records:
            try:
                polled = self._consumer.poll(timeout_ms=wait, max_records=max_records - got)
            except kerr.KafkaError as exc:
                msg = f"reading topic {self.topic!r} from {self.bootstrap_servers} failed: {_describe(exc)}"
                raise StreamError(msg) from exc
            records = [r for batch in polled.values() for r in batch]
            if not records:
                break
            for r in records:
                self.apply(r.key, r.value)
            got, wait = got + len(records), 0
        return got

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one message of the deals topic (raw key and value) to the state."""
        self.messages += 1
        try:
            msg = _DECODE(value or b"null")
        except msgspec.DecodeError:
            msg = None
        action = msg.get("action") if isinstance(msg, dict) else None
        if not isinstance(msg, dict) or not isinstance(action, str):
            self.counts["invalid"] += 1
            return
        self.counts[action] += 1
        ts = _int(msg.get("event_ts"))
        if ts is not None and (self.event_ts_ms is None or ts > self.event_ts_ms):
            self.event_ts_ms = ts
        if key == BOARD_KEY or action == "board":
            self._apply_board(msg, ts)
        elif action in _PRODUCT_ACTIONS and isinstance(msg.get("product_id"), str):
            if action in _FEED_ACTIONS:
                self._remember(msg, ts)
            if action == "promote" and ts is not None:
                self.first_promoted.setdefault(msg["product_id"], ts)
            elif action == "block":
                self.blocked.setdefault(msg["product_id"], [str(r) for r in msg.get("reasons") or []])
            if self.board_ts_ms is None or ts is None or ts > self.board_ts_ms:
                self._apply_product(msg, ts)
                self._since_board.append(msg)

    def _apply_board(self, msg: dict[str, Any], ts: int | None) -> None:
        if ts is not None and self.board_ts_ms is not None and ts < self.board_ts_ms:
            return  # an older snapshot than the one the board is built on
        items = msg["items"] if isinstance(msg.get("items"), list) else []
        good = [i for i in items if isinstance(i, dict) and isinstance(i.get("product_id"), str)]
        self._board = {i["product_id"]: {f: i.get(f) for f in _ITEM_FIELDS} for i in good}
        self.board_ts_ms = ts
        after = [m for m in self._since_board if ts is None or (_int(m.get("event_ts")) or 0) > ts]
        self._since_board = deque(after, maxlen=_MAX_SINCE_BOARD)
        for m in after:
            self._apply_product(m, _int(m.get("event_ts")))

    def _apply_product(self, msg: dict[str, Any], ts: int | None) -> None:
        pid, action = msg["product_id"], msg["action"]
        if action in ("demote", "block"):
            self._board.pop(pid, None)
            return
        row = self._board.setdefault(pid, {f: None for f in _ITEM_FIELDS} | {"product_id": pid})
        if action == "promote":  # entering now; an update of an unseen member leaves it unknown
            row["since_ts"] = ts
        for f in ("rank", "score", "seller_id", "category"):
            if f in msg:
                row[f] = msg[f]

    def _remember(self, msg: dict[str, Any], ts: int | None) -> None:
        bisect.insort(self._recent, (ts if ts is not None else -1, self.messages, msg), key=lambda r: r[:2])
        if len(self._recent) > self.recent_size:
            del self._recent[: len(self._recent) - self.recent_size]

    @property
    def board(self) -> list[dict[str, Any]]:
        """The current board, best first: ``rank, product_id, seller_id, category, score, since_ts`` dicts."""

        def order(row: dict[str, Any]) -> tuple[bool, int, float, str]:
            rank, score = _int(row["rank"]), _num(row["score"])
            return rank is None, rank or 0, -(score or 0.0), row["product_id"]

        return [dict(row) for row in sorted(self._board.values(), key=order)]

    @property
    def recent(self) -> list[dict[str, Any]]:
        """The latest promote/demote/block messages, newest (by event time) first."""
        return [m for _, _, m in reversed(self._recent)]

    def close(self) -> None:
        """Close the consumer (the state stays readable).  Idempotent."""
        self._consumer.close()

    def __enter__(self) -> BoardWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def header(self) -> str:
        """One line: event time, board size, messages per action."""
        kinds = (*_PRODUCT_ACTIONS, "board", "invalid")
        counts = "  ".join(f"{a} {self.counts[a]:,}" for a in kinds if self.counts[a]) or "none yet"
        when = _utc(self.event_ts_ms, "%Y-%m-%d %H:%M:%S UTC")
        return f"event time {when} | {len(self._board)} on board | {self.messages:,} msgs: {counts}"

    def render(self, truth: dict[str, Any] | None = None, *, extra_status: str | None = None) -> Group:
        """Draw a header line, the board table and the recent decisions panel, as one rich renderable.

        Given ``truth`` (the simulator's ``truth.json``), a column marks truly viral products (time
        since onset, in event time), attacks (lists under keys containing ``attack``, by
        ``product_id`` or ``seller_id``), one-off spikes and steady sellers.
        """
        now = self.event_ts_ms
        header = Text.assemble(("Deals of the day", "bold"), (f" ({self.topic})\n", "dim"), self.header())
        table = Table(pad_edge=False, show_edge=False, header_style="bold")
        for name in ("#", "product", "seller", "category", "score", "on board since"):
            table.add_column(name, justify="right" if name in ("#", "score") else "left", no_wrap=True)
        marks = _TruthMarks(truth) if truth is not None else None
        if marks is not None:
            table.add_column("truth", no_wrap=True)
            table.caption = marks.summary(set(self._board), now)
        for row in self.board:
            mark = [marks.mark(row["product_id"], row["seller_id"], now)] if marks is not None else []
            table.add_row(*self._cells(row), *mark)
        feed = Text("\n").join(_feed_line(m) for m in self.recent) or Text("no decisions yet", style="dim")
        feed.no_wrap, feed.overflow = True, "ellipsis"  # one line per decision, however narrow
        panel = Panel(feed, title="recent decisions", title_align="left")
        status = [Text(extra_status, style="dim")] if extra_status else []
        return Group(header, *status, table, panel)

    def _cells(self, row: dict[str, Any]) -> tuple[str, ...]:
        """Rank, product, seller, category, score and "since (for how long)" of a board row, as text."""
        since, now, score = _int(row["since_ts"]), self.event_ts_ms, _num(row["score"])
        held = f" ({_minutes(now - since)})" if since is not None and now is not None else ""
        rank = str(row["rank"] if row["rank"] is not None else "?")
        who = (row["product_id"], str(row["seller_id"] or "-"), str(row["category"] or "-"))
        return rank, *who, "-" if score is None else f"{score:.3f}", f"{_utc(since)}{held}"

    def summary(self, truth: dict[str, Any] | None = None, *, top: int = 10) -> str:
        """Summarise in plain text (for logs and pipes): the header, the top of the board, the truth tally."""
        marks = _TruthMarks(truth) if truth is not None else None
        lines = [self.header()]
        for row in self.board[:top]:
            mark = marks.mark(row["product_id"], row["seller_id"], self.event_ts_ms).plain if marks else ""
            rank, *cells, score, since = self._cells(row)
            who = " ".join(f"{c:<12}" for c in cells)
            lines.append(f"  {rank:>3} {who} {score:>5}  {since:<15} {mark}")
        if marks is not None:
            lines.append("  " + marks.summary(set(self._board), self.event_ts_ms))
        return "\n".join(line.rstrip() for line in lines)


def _feed_line(m: dict[str, Any]) -> Text:
    """One decision of the feed: event time, action (coloured), product, rank, score, reasons."""
    rank, score = _int(m.get("rank")), _num(m.get("score"))
    return Text.assemble(
        (f"{_utc(_int(m.get('event_ts')))} ", "dim"),
        (f"{m['action']:<8}", f"bold {_COLOURS.get(m['action'], 'white')}"),
        f"{m['product_id']} {'' if rank is None else f'#{rank} '}{'' if score is None else f'{score:.3f} '}",
        (" ".join(str(r) for r in m.get("reasons") or ()), "italic"),
    )


class _TruthMarks:
    """Labels from a simulator ``truth.json`` dict: viral (with onset), attack, spike, steady."""

    def __init__(self, truth: dict[str, Any]) -> None:
        self.by_product: dict[str, tuple[str, int | None]] = {}
        self.by_seller: dict[str, tuple[str, int | None]] = {}
        kinds = (("steady", "steady", ""), ("spike", "spikes", "ts"), ("viral", "viral", "onset_ts"))
        for kind, key, field in kinds:
            for item in truth.get(key) or ():
                if isinstance(item, dict) and isinstance(item.get("product_id"), str):
                    self.by_product[item["product_id"]] = (kind, _int(item.get(field)))
        for key, items in truth.items():
            for item in items if "attack" in key.lower() and isinstance(items, list) else ():
                if not isinstance(item, dict):
                    continue
                start = _int(item.get("onset_ts", item.get("start_ts", item.get("ts"))))
                pids = item.get("product_ids") or ([item["product_id"]] if "product_id" in item else [])
                for pid in pids:
                    self.by_product[str(pid)] = ("attack", start)
                if not pids and isinstance(item.get("seller_id"), str):
                    self.by_seller[item["seller_id"]] = ("attack", start)
        self.viral = {p for p, (k, _) in self.by_product.items() if k == "viral"}
        self.attacks = {p for p, (k, _) in self.by_product.items() if k == "attack"}

    def mark(self, product_id: str, seller_id: str | None, now_ms: int | None) -> Text:
        kind, onset = self.by_product.get(product_id) or self.by_seller.get(seller_id or "", ("", None))
        if not kind:
            return Text("")
        ahead = None if onset is None or now_ms is None else onset - now_ms
        when = "" if ahead is None else f" +{_minutes(-ahead)}" if ahead <= 0 else f" (in {_minutes(ahead)})"
        style = {"viral": "bold green", "attack": "bold red", "spike": "yellow", "steady": "dim"}[kind]
        return Text(f"{'ATTACK' if kind == 'attack' else kind}{when}", style=style)

    def summary(self, on_board: set[str], now_ms: int | None) -> str:
        started = {p for p in self.viral if now_ms is not None and (self.by_product[p][1] or 0) <= now_ms}
        text = f"viral on board {len(on_board & self.viral)} ({len(started)} of {len(self.viral)} started)"
        if self.attacks or self.by_seller:
            text += f", attacks on board {len(on_board & self.attacks)}"
        return text


def watch(
    bootstrap_servers: str,
    topic: str,
    *,
    duration_s: float | None = None,
    truth_path: str | Path | None = None,
    extra_status: Callable[[], str] | None = None,
    console: Console | None = None,
    refresh_per_second: float = 4.0,
    plain_interval_s: float = 5.0,
    should_stop: Callable[[], bool] | None = None,
    **client_options: Any,
) -> BoardWatcher:
    """Show the board of ``topic`` live until Ctrl-C, ``duration_s`` or ``should_stop()``; return the watcher.

    On a terminal: a rich ``Live`` display redrawn ``refresh_per_second`` times a second.  When
    the console is not a terminal (a pipe, a file, CI): a plain :meth:`BoardWatcher.summary`
    every ``plain_interval_s`` and the full board once at the end.  ``extra_status()`` adds
    the caller's own line (events fed, metrics URL; an exception shows in its place).  The
    watcher is closed on return (its state stays readable).
    """
    truth = None if truth_path is None else _load_truth(truth_path)
    console = console if console is not None else Console()
    deadline = None if duration_s is None else time.monotonic() + duration_s

    def status() -> str | None:
        try:
            return None if extra_status is None else extra_status()
        except Exception as exc:  # noqa: BLE001 - a broken status line must not stop the board
            return f"(status unavailable: {type(exc).__name__}: {exc})"

    def finished() -> bool:
        return (deadline is not None and time.monotonic() >= deadline) or bool(should_stop and should_stop())

    def draw() -> Group:
        return watcher.render(truth, extra_status=status())

    def show_plain() -> None:
        text = "\n  ".join(t for t in (watcher.summary(truth), status()) if t)
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    watcher = BoardWatcher(bootstrap_servers, topic, **client_options)
    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False) as live:
                period_s = 1.0 / refresh_per_second
                _loop(watcher, finished, lambda: live.update(draw(), refresh=True), period_s, 0.0)
                live.update(draw(), refresh=True)
        else:
            _loop(watcher, finished, show_plain, plain_interval_s, plain_interval_s)
            console.print(draw())
    finally:
        watcher.close()
    return watcher


def _load_truth(path: str | Path) -> dict[str, Any]:
    """Read the simulator's ``truth.json``; :class:`InputError` unless it is a JSON object."""
    try:
        truth = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        msg = f"truth_path {str(path)!r} is not a readable JSON file ({exc}); pass the simulator's truth.json"
        raise InputError(msg) from exc
    if not isinstance(truth, dict):
        msg = f"truth_path {str(path)!r} holds a JSON {type(truth).__name__}, not the object of a truth.json"
        raise InputError(msg)
    return truth


def _loop(
    w: BoardWatcher, done: Callable[[], bool], show: Callable[[], None], period_s: float, first_s: float
) -> None:
    """Consume in bounded bites; ``show()`` after ``first_s``, then every ``period_s``; stop on Ctrl-C."""
    next_show = time.monotonic() + first_s
    try:
        while not done():
            w.poll(int(max(min(next_show - time.monotonic(), 0.2), 0.0) * 1000), max_records=_BITE)
            if time.monotonic() >= next_show:
                show()
                next_show = time.monotonic() + period_s
    except KeyboardInterrupt:
        pass
