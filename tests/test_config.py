from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from viraltrend.config import Config, config_as_dict, load_config
from viraltrend.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_toml_equals_builtin_defaults():
    shipped = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    assert shipped == config_as_dict(Config(), mask_secrets=False)


def test_file_holds_only_the_keys_it_changes(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text("[board]\nsize = 5\n")
    cfg = load_config(p, environ={})
    assert cfg.board.size == 5
    assert cfg.board.promote_threshold == Config().board.promote_threshold


def test_environment_overrides_a_single_value(tmp_path):
    cfg = load_config(None, environ={"VIRALTREND_BOARD_SIZE": "7", "VIRALTREND_KAFKA_GROUP_ID": "123"})
    assert cfg.board.size == 7
    assert cfg.kafka.group_id == "123"


def test_every_problem_is_listed_with_file_and_dotted_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[decay]\nhalf_lives_s = [60, -5]\nhalf_life = 3\n[board]\nsize = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_config(p, environ={})
    text = str(err.value)
    assert f"{p}: decay.half_lives_s[1] must be > 0 seconds, got -5" in text
    assert "unknown key 'decay.half_life' (did you mean 'half_lives_s'?)" in text
    assert "board.size must be an integer" in text


def test_unknown_section_suggests_the_right_one(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[boards]\nsize = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'board'"):
        load_config(p, environ={})


def test_hysteresis_requires_demote_below_promote():
    with pytest.raises(ConfigError, match="demote_threshold"):
        load_config(
            None, environ={}, overrides={"board": {"demote_threshold": 0.9, "promote_threshold": 0.5}}
        )


def test_score_half_lives_must_be_counted(tmp_path):
    with pytest.raises(ConfigError, match="trend_half_life_s = 120 must be one of"):
        load_config(None, environ={}, overrides={"score": {"trend_half_life_s": 120.0}})


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_bad_environment_variable_is_an_error():
    with pytest.raises(ConfigError, match="VIRALTREND_NOPE_X"):
        load_config(None, environ={"VIRALTREND_NOPE_X": "1"})


def test_secrets_are_masked_when_logged():
    cfg = load_config(None, environ={"VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD": "hunter2"})
    assert config_as_dict(cfg)["kafka"]["sasl_plain_password"] == "***"
    assert cfg.kafka.sasl_plain_password == "hunter2"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().board.size = 3  # type: ignore[misc]


def test_a_choice_key_names_its_choices():
    with pytest.raises(ConfigError, match="kafka.client must be one of kafka-python, confluent"):
        load_config(None, environ={"VIRALTREND_KAFKA_CLIENT": "librdkafka"})
