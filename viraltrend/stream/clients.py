"""Client options (security) and topic preparation of ``viraltrend run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from viraltrend.config import Config
from viraltrend.errors import ConfigError, StreamError

__all__ = ["client_options", "prepare_topics"]


def client_options(cfg: Config) -> dict[str, Any]:
    """Security options of both Kafka clients from ``[kafka]`` (only the ones that are set).

    kafka-python names (``ssl_certfile``, ...); :func:`~viraltrend.stream.kafka_confluent.librdkafka_options`
    renames them for librdkafka.  The SASL password comes from ``kafka.sasl_plain_password_file``
    (a file, trailing newline dropped) or ``kafka.sasl_plain_password`` (set it with
    ``VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD``), never from a command-line flag that ``ps`` shows.

    Raises
    ------
    ConfigError
        The password file cannot be read or is empty, or the password is given both ways.
    """
    k = cfg.kafka
    opts: dict[str, Any] = {}
    if k.security_protocol != "PLAINTEXT":
        opts["security_protocol"] = k.security_protocol
    if k.sasl_mechanism:
        opts["sasl_mechanism"] = k.sasl_mechanism
    if k.sasl_plain_username:
        opts["sasl_plain_username"] = k.sasl_plain_username
    password = _sasl_password(k.sasl_plain_password, k.sasl_plain_password_file)
    if password:
        opts["sasl_plain_password"] = password
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(k, key):
            opts[key] = getattr(k, key)
    if not k.ssl_check_hostname:
        opts["ssl_check_hostname"] = False
    return opts


def _sasl_password(inline: str, path: str) -> str:
    if not path:
        return inline
    if inline:
        msg = (
            "kafka.sasl_plain_password and kafka.sasl_plain_password_file are both set; "
            "give the SASL password one way (the file, or VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD)"
        )
        raise ConfigError(msg)
    try:
        password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"kafka.sasl_plain_password_file: cannot read {path}: {exc}; give a file holding the password"
        raise ConfigError(msg) from exc
    if not password:
        msg = f"kafka.sasl_plain_password_file: {path} is empty; it must hold the SASL password"
        raise ConfigError(msg)
    return password


def prepare_topics(cfg: Config, options: dict[str, Any]) -> None:
    """Create the topics (when allowed) or check that they exist; StreamError says what is wrong."""
    from viraltrend.stream.broker import create_topics, topic_exists

    k = cfg.kafka
    if k.create_topics:
        extra = {cfg.trust.blocklist_topic: 1} if cfg.trust.blocklist_topic else {}
        create_topics(
            k.bootstrap_servers,
            {k.input_topic: k.partitions, k.output_topic: 1, k.dlq_topic: 1, **extra},
            compacted=frozenset({k.output_topic, cfg.trust.blocklist_topic} - {""}),
            **options,
        )
        return
    missing = [
        t
        for t in (k.input_topic, k.output_topic, k.dlq_topic)
        if not topic_exists(k.bootstrap_servers, t, **options)
    ]
    if missing:
        msg = (
            f"topic(s) {', '.join(missing)} do not exist on {k.bootstrap_servers}; create them or pass "
            "--create-topics (kafka.create_topics = true)"
        )
        raise StreamError(msg)
