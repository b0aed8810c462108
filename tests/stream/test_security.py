"""Mutual TLS and a SASL password that stays out of ``ps`` (issue 12, item 9)."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from viraltrend.cli import _parser, main
from viraltrend.config import load_config
from viraltrend.errors import ConfigError
from viraltrend.stream.clients import client_options
from viraltrend.stream.kafka_confluent import librdkafka_options

MTLS = {
    "VIRALTREND_KAFKA_SECURITY_PROTOCOL": "SSL",
    "VIRALTREND_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem",
    "VIRALTREND_KAFKA_SSL_CERTFILE": "/etc/kafka/client.pem",
    "VIRALTREND_KAFKA_SSL_KEYFILE": "/etc/kafka/client.key",
    "VIRALTREND_KAFKA_SSL_CHECK_HOSTNAME": "false",
}


def test_mutual_tls_options_reach_kafka_python_and_librdkafka():
    opts = client_options(load_config(None, environ=MTLS))
    assert opts == {
        "security_protocol": "SSL",
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_check_hostname": False,
    }
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):  # every kafka-python client knows them
        assert set(opts) <= set(client.DEFAULT_CONFIG), client.__name__
    assert librdkafka_options(opts) == {
        "security.protocol": "SSL",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": "/etc/kafka/client.key",
        "ssl.endpoint.identification.algorithm": "none",
    }


def test_hostname_checks_stay_on_unless_turned_off():
    assert "ssl_check_hostname" not in client_options(load_config(None, environ={}))


def test_the_sasl_password_comes_from_a_file(tmp_path):
    secret = tmp_path / "sasl.pw"
    secret.write_text("s3cret\n")
    env = {
        "VIRALTREND_KAFKA_SASL_MECHANISM": "PLAIN",
        "VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD_FILE": str(secret),
    }
    opts = client_options(load_config(None, environ=env))
    assert opts["sasl_plain_password"] == "s3cret"
    assert librdkafka_options(opts)["sasl.password"] == "s3cret"


def test_the_sasl_password_comes_from_the_environment():
    opts = client_options(load_config(None, environ={"VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD": "pw"}))
    assert opts["sasl_plain_password"] == "pw"


def test_a_password_given_two_ways_or_an_empty_file_is_refused(tmp_path):
    secret = tmp_path / "sasl.pw"
    secret.write_text("x")
    both = {
        "VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD": "pw",
        "VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD_FILE": str(secret),
    }
    with pytest.raises(ConfigError, match="both set"):
        client_options(load_config(None, environ=both))
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        client_options(load_config(None, environ={"VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD_FILE": str(secret)}))
    with pytest.raises(ConfigError, match="cannot read"):
        client_options(
            load_config(None, environ={"VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD_FILE": "/nonexistent/pw"})
        )


def test_run_has_file_and_tls_flags(tmp_path):
    args = _parser().parse_args(
        [
            "run",
            "--sasl-password-file",
            "/run/secrets/pw",
            "--ssl-certfile",
            "c.pem",
            "--ssl-keyfile",
            "k.pem",
            "--no-ssl-check-hostname",
        ]  # fmt: skip
    )
    assert (args.sasl_password_file, args.ssl_certfile, args.ssl_keyfile) == (
        "/run/secrets/pw",
        "c.pem",
        "k.pem",
    )
    assert args.ssl_check_hostname is False
    assert _parser().parse_args(["run"]).ssl_check_hostname is None  # the config decides


def test_a_password_on_the_command_line_is_refused_with_the_way_out(capsys):
    assert main(["run", "--sasl-password", "hunter2", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "--sasl-password-file" in err and "VIRALTREND_KAFKA_SASL_PLAIN_PASSWORD" in err
    assert "hunter2" not in err
