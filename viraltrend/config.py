"""One typed, frozen configuration for every part of viraltrend, loaded from TOML.

The defaults live here, in the dataclasses (``config/default.toml`` is a commented copy,
checked against them by a test).  A user's file holds only the keys it changes; it is
layered over the defaults, then ``VIRALTREND_<SECTION>_<KEY>`` environment variables
override single values.  Every problem (unknown key, wrong type, out-of-range value) is
collected into one :class:`~viraltrend.errors.ConfigError` naming the file and dotted key.

Examples
--------
>>> cfg = load_config(None, environ={})
>>> cfg.decay.half_lives_s
(60.0, 300.0, 3600.0, 86400.0)
>>> cfg.board.size
20
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viraltrend.errors import ConfigError
from viraltrend.events import EVENT_TYPES

__all__ = [
    "BoardConfig",
    "CheckpointConfig",
    "Config",
    "DecayConfig",
    "DedupConfig",
    "DetectConfig",
    "KafkaConfig",
    "MetricsConfig",
    "ModelConfig",
    "ScoreConfig",
    "SignalsConfig",
    "StateConfig",
    "TrustConfig",
    "config_as_dict",
    "load_config",
]


def _gt0(default: Any) -> Any:
    return field(default=default, metadata={"min": 0.0, "strict": True})


def _ge0(default: Any) -> Any:
    return field(default=default, metadata={"min": 0.0})


def _unit(default: Any) -> Any:
    return field(default=default, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True, slots=True)
class DecayConfig:
    """Event-time decay and the event-time clock."""

    half_lives_s: tuple[float, ...] = _gt0((60.0, 300.0, 3600.0, 86400.0))
    allowed_lateness_s: float = _ge0(300.0)
    max_future_s: float = _gt0(3600.0)
    tick_s: float = _gt0(10.0)


@dataclass(frozen=True, slots=True)
class SignalsConfig:
    """Weight of each event type in a product's engagement signal."""

    view: float = _ge0(1.0)
    like: float = _ge0(2.0)
    comment: float = _ge0(3.0)
    share: float = _ge0(5.0)
    add_to_cart: float = _ge0(4.0)
    purchase: float = _ge0(8.0)

    def weights(self) -> tuple[float, ...]:
        """Weights in :data:`~viraltrend.events.EVENT_TYPES` order."""
        return tuple(float(getattr(self, name)) for name in EVENT_TYPES)


@dataclass(frozen=True, slots=True)
class ScoreConfig:
    """The trending score: which half-lives play which role, and the rule-based score's shape.

    Each ``*_half_life_s`` must be one of ``decay.half_lives_s``.
    """

    momentum_half_life_s: float = _gt0(60.0)
    trend_half_life_s: float = _gt0(300.0)
    baseline_half_life_s: float = _gt0(86400.0)

    lift_midpoint: float = _gt0(4.0)
    lift_steepness: float = _gt0(3.0)
    z_midpoint: float = _ge0(8.0)
    z_steepness: float = _gt0(0.5)
    min_baseline_per_hour: float = _gt0(2.0)
    global_baseline_factor: float = _ge0(1.0)


@dataclass(frozen=True, slots=True)
class BoardConfig:
    """The "Deals of the day" board: size, hysteresis, dwell, diversity caps, snapshots."""

    size: int = field(default=20, metadata={"min": 1})
    promote_threshold: float = _unit(0.8)
    demote_threshold: float = _unit(0.4)
    confirm_s: float = _ge0(240.0)
    min_momentum: float = _ge0(0.9)
    min_dwell_s: float = _ge0(600.0)
    block_hold_s: float = _ge0(3600.0)
    max_per_seller: int = field(default=3, metadata={"min": 1})
    max_per_category: int = field(default=6, metadata={"min": 1})
    replace_margin: float = _unit(0.05)
    update_min_score_delta: float = _unit(0.05)
    snapshot_interval_s: float = _gt0(60.0)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The online model (river) that learns from delayed labels which signals precede going viral.

    On by default: learnt online on the rows where only the detector's shape test waits
    (``rows = "evidence"``, ``label = "ready"``), it vouches for shapes the rule later calls a trend
    once the vouch held ``vouch_hold_s`` (see ``config/default.toml`` and benchmarks/RESULTS.md).
    ``positive_weight`` 0 balances the classes online; ``promote_probability`` is the model
    probability that scores exactly ``board.promote_threshold``.  ``confirm_s`` is the board's
    confirm wait for candidates the warm model scored with probability >=
    ``fast_track_probability`` (the rule keeps ``board.confirm_s``); it defaults to
    ``board.confirm_s`` because on the tuning seeds every shorter wait (30-210 s) let one-off
    spikes onto the board, for the model as for the rule.  ``features`` picks the input columns
    (``rates``: the rates alone; ``shape``: the detector's growth-shape columns with the rates);
    ``label_sustain`` > 0 makes the label an onset-phase one (see ``config/default.toml``);
    ``label = "ready"`` labels a row by the detector's own later verdict instead; ``rows =
    "evidence"`` learns only from the rows where the fast track decides;
    ``checkpoint`` is a model file (``viraltrend train --out``) to start warm from, "" for cold.
    """

    enabled: bool = True
    horizon_s: float = _gt0(1800.0)
    sample_every_s: float = _gt0(10.0)
    negative_rate: float = _unit(0.01)
    hint_lift: float = _ge0(3.0)
    label_min_events: float = _ge0(100.0)
    label_lift: float = _ge0(10.0)
    min_labels: int = field(default=200, metadata={"min": 1})
    learning_rate: float = _gt0(0.05)
    l2: float = _ge0(1e-4)
    buffer_capacity: int = field(default=50_000, metadata={"min": 1})
    positive_weight: float = _ge0(0.0)
    max_class_weight: float = _ge0(10.0)
    promote_probability: float = field(default=0.5, metadata={"min": 0.0, "max": 0.999, "strict": True})
    confirm_s: float = _ge0(240.0)
    fast_track_probability: float = _unit(0.5)
    min_change_s: float = _ge0(180.0)
    min_growth_z: float = 1.0
    max_change_users: float = _ge0(60.0)
    grown_change_users: float = _ge0(200.0)
    growth_z_users: float = _ge0(50.0)
    max_change_s: float = _ge0(1500.0)
    vouch_hold_s: float = _ge0(10.0)
    vouch_fresh_ratio: float = _ge0(0.5)
    vouch_fresh_evidence: float = _ge0(0.1)
    recruit_share_ratio: float = _ge0(0.5)
    min_engaged_ratio: float = _ge0(0.25)
    step_share_ratio: float = _ge0(9.0)
    features: str = field(default="shape", metadata={"choices": ("shape", "rates")})
    label_sustain: float = _ge0(0.0)
    label: str = field(default="ready", metadata={"choices": ("gain", "ready")})
    rows: str = field(default="evidence", metadata={"choices": ("touched", "evidence")})
    checkpoint: str = ""


@dataclass(frozen=True, slots=True)
class DedupConfig:
    """Dropping repeated ``event_id`` values."""

    enabled: bool = True
    window_s: float = _gt0(600.0)


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Per-product state: eviction of cold products."""

    evict_every_s: float = _gt0(3600.0)
    evict_below: float = _ge0(0.05)
    initial_capacity: int = field(default=4096, metadata={"min": 16})
    max_veterans: int = field(default=4_000_000, metadata={"min": 2})
    max_products: int = field(default=10_000_000, metadata={"min": 16})


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """The trust guard: per-user caps, fake-engagement thresholds, blocklists (see viraltrend.trust)."""

    cap_window_s: float = _ge0(3600.0)
    fresh_window_s: float = _gt0(600.0)
    min_unique_users: float = _ge0(12.0)
    max_fresh_share: float = _unit(0.8)
    min_conversion_ratio: float = _ge0(0.2)
    lockstep_similarity: float = _unit(0.5)
    lockstep_z: float = _ge0(1.0)
    lockstep_evidence: float = _ge0(4.0)
    co_audience_evidence: float = _gt0(6.0)
    co_audience_lift: float = _ge0(5.0)
    co_audience_light_evidence: float = _ge0(6.0)
    co_audience_light_lift: float = _ge0(2.5)
    hold_light_evidence: float = _ge0(2.0)
    hold_light_low_lift: float = _ge0(1.5)
    hold_light_low_evidence: float = _ge0(1.0)
    hold_light_low_users: int = field(default=80, metadata={"min": 0})
    hold_light_low_refuse: float = _ge0(3.0)
    board_seller_union_evidence: float = _ge0(6.0)
    board_seller_union_s: float = _ge0(3600.0)
    hold_seller_lift: float = _ge0(2.0)
    chance_heavy_users: float = _ge0(16.0)
    seller_overlap_similarity: float = _unit(0.3)
    dense_block_density: float = _ge0(0.5)
    dense_block_memory_s: float = _ge0(21600.0)
    uniform_max_dispersion: float = _ge0(1.6)
    uniform_catalogue_overdispersion: float = _ge0(0.5)
    uniform_min_events: float = _ge0(5.0)
    uniform_min_users: int = field(default=30, metadata={"min": 2})
    uniform_confirm_users: int = field(default=36, metadata={"min": 0})
    activity_cells: int = field(default=262144, metadata={"min": 1})
    hold_max_s: float = _ge0(300.0)
    hold_sampled_users: int = field(default=50, metadata={"min": 0})
    hold_sibling_s: float = _ge0(1800.0)
    hold_evidence: float = _ge0(2.0)
    hold_evidence_s: float = _ge0(1800.0)
    vouch_confirm_users: int = field(default=30, metadata={"min": 0})
    vouch_confirm_s: float = _ge0(900.0)
    vouch_confirm_evidence: float = _ge0(1.0)
    max_events_per_user: float = _gt0(5.0)
    recycled_contrast: float = _gt0(3.0)
    max_fresh_share_any: float = _unit(0.6)
    min_conversion_ratio_any: float = _ge0(0.1)
    conversion_wait_s: float = _ge0(300.0)
    no_conversion_expected_buys: float = _ge0(3.0)
    blind_buyer_share: float = _unit(0.15)
    blind_buyer_contrast: float = _ge0(3.0)
    blind_min_buyers: int = field(default=5, metadata={"min": 1})
    audience_memory_s: float = _ge0(86400.0)
    audience_memory_size: int = field(default=2048, metadata={"min": 1})
    audience_sample: int = field(default=256, metadata={"min": 8, "max": 4096})
    max_sketched: int = field(default=256, metadata={"min": 1})
    blocked_sellers: tuple[str, ...] = ()
    blocked_products: tuple[str, ...] = ()
    blocked_sellers_file: str = ""
    blocked_products_file: str = ""
    blocklist_topic: str = ""


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """The live service's topics and client settings."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client: str = field(default="kafka-python", metadata={"choices": ("kafka-python", "confluent")})
    input_topic: str = "engagement-events"
    output_topic: str = "deals-of-the-day"
    dlq_topic: str = "engagement-events.dlq"
    group_id: str = "viraltrend"
    candidates_topic: str = ""  # "" -> "<group_id>.candidates" (see viraltrend.merge)
    create_topics: bool = True
    partitions: int = field(default=3, metadata={"min": 1})
    max_batch_events: int = field(default=50_000, metadata={"min": 1})
    poll_timeout_ms: int = field(default=200, metadata={"min": 1})
    # the group session: a worker that answers no heartbeat for this long loses its partitions
    session_timeout_ms: int = field(default=6000, metadata={"min": 2000})
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_plain_username: str = ""
    sasl_plain_password: str = ""
    sasl_plain_password_file: str = ""  # a file holding the SASL password (kept out of ``ps``)
    ssl_cafile: str = ""
    ssl_certfile: str = ""  # client certificate (PEM) for mutual TLS
    ssl_keyfile: str = ""  # its private key (PEM)
    ssl_check_hostname: bool = True
    # the producer's largest message; dead letters are truncated (size and SHA-256 kept) to fit it
    max_message_bytes: int = field(default=1_048_576, metadata={"min": 512})


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    host: str = "127.0.0.1"
    port: int = field(default=9108, metadata={"min": 0, "max": 65535})


@dataclass(frozen=True, slots=True)
class CheckpointConfig:
    """Where and how often state is checkpointed (wall-clock interval).

    ``store = "changelog"`` keeps checkpoints in a compacted Kafka topic (``changelog_topic``,
    default ``<group_id>.state``), so a worker on any machine can restore any partition;
    ``"local"`` keeps them under ``dir`` (one machine only).  With ``incremental``, a checkpoint
    writes only the blocks of rows changed since the one before (a delta); a full one is written
    after ``max_deltas`` deltas or once the deltas add up to ``max_chain_ratio`` of the full one.
    With ``background``, the service writes checkpoints on a writer thread and commits their
    offsets once they are durable.
    """

    store: str = field(default="changelog", metadata={"choices": ("changelog", "local")})
    changelog_topic: str = ""
    dir: str = "checkpoints"
    interval_s: float = _gt0(10.0)
    incremental: bool = True
    max_deltas: int = field(default=30, metadata={"min": 1})
    max_chain_ratio: float = _gt0(0.5)
    background: bool = True


@dataclass(frozen=True, slots=True)
class DetectConfig:
    """When a trending product may be promoted: the sequential change test (see viraltrend.detect)."""

    method: str = field(default="sequential", metadata={"choices": ("sequential", "confirm")})
    false_alarms_per_day: float = _gt0(1.0)
    lifts: tuple[float, ...] = field(default=(3.0, 10.0, 30.0, 100.0), metadata={"min": 1.0, "strict": True})
    window_ticks: int = field(default=18, metadata={"min": 4, "max": 360})
    ticks_per_slow_bin: int = field(default=6, metadata={"min": 1, "max": 8640})
    slow_bins: int = field(default=24, metadata={"min": 4, "max": 1440})
    growth_z: float = _ge0(4.0)
    joint_growth_z: float = _ge0(4.0)
    fade_z: float = _ge0(2.0)
    sustain_s: float = _ge0(1500.0)
    sustain_min_share_ratio: float = _ge0(2.0)
    sustain_share_half_life_s: float = _ge0(3600.0)
    sustain_share_long_ratio: float = _ge0(4.0)
    sustain_share_long_floor: float = _ge0(2.0)
    sustain_share_long_floor_age_s: float = _ge0(3600.0)
    max_change_age_s: float = _ge0(10800.0)
    min_score: float = _unit(0.4)
    min_recent_lift: float = _ge0(3.0)
    min_change_users: float = _ge0(16.0)
    baseline_floor_users_per_h: float = _gt0(0.5)
    prior_factor: float = _ge0(1.0)


@dataclass(frozen=True, slots=True)
class Config:
    """Every knob of viraltrend, one section per part."""

    decay: DecayConfig = field(default_factory=DecayConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    board: BoardConfig = field(default_factory=BoardConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    state: StateConfig = field(default_factory=StateConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


_SECRET_KEYS = {"sasl_plain_password"}


def config_as_dict(cfg: Config, *, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
    """Return the config as nested plain data (for logging once, secrets masked)."""
    out: dict[str, dict[str, Any]] = {}
    for sec in dataclasses.fields(cfg):
        section = getattr(cfg, sec.name)
        values = {}
        for f in dataclasses.fields(section):
            v = getattr(section, f.name)
            if mask_secrets and f.name in _SECRET_KEYS and v:
                v = "***"
            values[f.name] = list(v) if isinstance(v, tuple) else v
        out[sec.name] = values
    return out


def _check_value(key: str, hint: Any, value: Any, meta: Mapping[str, Any], problems: list[str]) -> Any:
    """Coerce ``value`` to the field type ``hint`` or record a problem; returns the coerced value."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            problems.append(f"{key} must be a list of {item_type.__name__}, got {type(value).__name__}")
            return None
        items = [_check_value(f"{key}[{i}]", item_type, v, meta, problems) for i, v in enumerate(value)]
        if item_type is float and not items and meta:
            problems.append(f"{key} must not be empty")
        return tuple(items)
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{key} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{key} must be a number, got {value!r}")
            return value
        value = float(value)
        if not math.isfinite(value):
            problems.append(f"{key} must be finite, got {value}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key} must be an integer, got {value!r}")
            return value
    elif hint is str:
        if not isinstance(value, str):
            problems.append(f"{key} must be a string, got {value!r}")
        elif "choices" in meta and value not in meta["choices"]:
            problems.append(f"{key} must be one of {', '.join(meta['choices'])}; got {value!r}")
        return value
    lo, hi = meta.get("min"), meta.get("max")
    unit = " seconds" if key.split("[")[0].endswith("_s") else ""
    if lo is not None and (value <= lo if meta.get("strict") else value < lo):
        op = ">" if meta.get("strict") else ">="
        problems.append(f"{key} must be {op} {lo:g}{unit}, got {value}")
    if hi is not None and value > hi:
        problems.append(f"{key} must be <= {hi:g}{unit}, got {value}")
    return value


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(choices)})"


def _build(overrides: Mapping[str, Any], origin: Mapping[str, str], problems: list[str]) -> Config:
    sections: dict[str, Any] = {}
    top_hints = typing.get_type_hints(Config)
    for name in overrides:
        if name not in top_hints:
            problems.append(
                f"{origin.get(name, '')}unknown section '{name}'{_did_you_mean(name, list(top_hints))}"
            )
    for sec_name, sec_type in top_hints.items():
        given = overrides.get(sec_name, {})
        if not isinstance(given, Mapping):
            problems.append(f"{origin.get(sec_name, '')}'{sec_name}' must be a table ([{sec_name}])")
            given = {}
        hints = typing.get_type_hints(sec_type)
        fields = {f.name: f for f in dataclasses.fields(sec_type)}
        kwargs = {}
        for key, value in given.items():
            dotted = f"{sec_name}.{key}"
            where = origin.get(dotted, "")
            if key not in fields:
                problems.append(f"{where}unknown key '{dotted}'{_did_you_mean(key, list(fields))}")
                continue
            before = len(problems)
            coerced = _check_value(dotted, hints[key], value, fields[key].metadata, problems)
            for i in range(before, len(problems)):
                problems[i] = where + problems[i]
            kwargs[key] = coerced
        sections[sec_name] = sec_type(**kwargs)
    cfg = Config(**sections)
    if cfg.board.demote_threshold > cfg.board.promote_threshold:
        problems.append(
            f"board.demote_threshold ({cfg.board.demote_threshold}) must be <= "
            f"board.promote_threshold ({cfg.board.promote_threshold}): hysteresis needs a lower exit bar"
        )
    if cfg.decay.half_lives_s and list(cfg.decay.half_lives_s) != sorted(cfg.decay.half_lives_s):
        problems.append(f"decay.half_lives_s must be increasing, got {list(cfg.decay.half_lives_s)}")
    for role in ("momentum_half_life_s", "trend_half_life_s", "baseline_half_life_s"):
        value = getattr(cfg.score, role)
        if value not in cfg.decay.half_lives_s:
            problems.append(
                f"score.{role} = {value:g} must be one of decay.half_lives_s {list(cfg.decay.half_lives_s)}"
            )
    hl_share = cfg.detect.sustain_share_half_life_s
    if hl_share > 0.0 and hl_share not in cfg.decay.half_lives_s:
        problems.append(
            f"detect.sustain_share_half_life_s = {hl_share:g} must be 0 or one of decay.half_lives_s "
            f"{list(cfg.decay.half_lives_s)}"
        )
    if not cfg.score.momentum_half_life_s <= cfg.score.trend_half_life_s < cfg.score.baseline_half_life_s:
        problems.append("score half-lives must satisfy momentum <= trend < baseline")
    if len(cfg.decay.half_lives_s) < 2:
        problems.append("decay.half_lives_s needs at least 2 half-lives (a short one and a baseline)")
    if 0.0 < cfg.model.max_class_weight < 1.0:
        problems.append(
            f"model.max_class_weight must be 0 (the built-in 100) or >= 1, got {cfg.model.max_class_weight:g}"
        )
    return cfg


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge(into: dict[str, Any], new: Mapping[str, Any], origin: dict[str, str], where: str) -> None:
    for sec, values in new.items():
        origin.setdefault(sec, where)
        if isinstance(values, Mapping) and isinstance(into.get(sec, {}), dict):
            into.setdefault(sec, {})
            for k, v in values.items():
                into[sec][k] = v
                origin[f"{sec}.{k}"] = where
        else:
            into[sec] = values


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Load the config: defaults, then the TOML file at ``path``, then environment, then ``overrides``.

    Parameters
    ----------
    path
        A TOML file holding only the keys it changes, or None for the defaults alone.
    environ
        Environment to read ``VIRALTREND_<SECTION>_<KEY>`` overrides from (default ``os.environ``).
    overrides
        Values from command-line flags, ``{"kafka": {"group_id": "x"}}``; applied last.

    Raises
    ------
    ConfigError
        Listing every problem, each with the file and dotted key.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    problems: list[str] = []
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"config file {p} does not exist; pass an existing TOML file (see config/default.toml)"
            raise ConfigError(msg) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f"{p}: not valid TOML: {exc}"
            raise ConfigError(msg) from exc
        _merge(merged, data, origin, f"{p}: ")
    sections = typing.get_type_hints(Config)
    for var, raw in sorted(environ.items()):
        if not var.startswith("VIRALTREND_") or var in ("VIRALTREND_CONFIG",):
            continue
        rest = var[len("VIRALTREND_") :].lower()
        sec = next((s for s in sections if rest.startswith(s + "_")), None)
        if sec is None:
            problems.append(
                f"environment {var}: no config section matches; sections are {', '.join(sections)}"
            )
            continue
        key = rest[len(sec) + 1 :]
        hint = typing.get_type_hints(sections[sec]).get(key) if isinstance(sections[sec], type) else None
        value = raw if hint is str else _parse_env_value(raw)
        _merge(merged, {sec: {key: value}}, origin, f"environment {var}: ")
    if overrides:
        _merge(merged, overrides, origin, "command line: ")
    cfg = _build(merged, origin, problems)
    if problems:
        msg = "invalid configuration:\n  " + "\n  ".join(problems)
        raise ConfigError(msg)
    return cfg
