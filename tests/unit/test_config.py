"""``load_settings``: defaults, ``LEDGERFLOW_*`` overrides, and when a service counts as external."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.config import (
    DEFAULT_HTTP,
    DEFAULT_KAFKA,
    DEFAULT_REDIS,
    Settings,
    load_settings,
    metrics_address,
)


def test_empty_environment_gives_the_local_stack_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({})
    assert (s.kafka_bootstrap, s.redis_url, s.http) == (
        "127.0.0.1:19092",
        "redis://127.0.0.1:16379/0",
        "127.0.0.1:8700",
    )
    assert (s.kafka_external, s.redis_external) == (False, False)
    assert s.state_dir == tmp_path / ".ledgerflow"
    assert s.topic_prefix == "" and s.jwks == ""
    assert s.jwks_location == str(tmp_path / ".ledgerflow" / "jwks.json")


def test_every_variable_overrides_its_setting(tmp_path: Path) -> None:
    s = load_settings(
        {
            "LEDGERFLOW_KAFKA_BOOTSTRAP": "kafka:9092",
            "LEDGERFLOW_REDIS_URL": "redis://cache:6379/2",
            "LEDGERFLOW_HTTP": "0.0.0.0:9000",
            "LEDGERFLOW_STATE_DIR": str(tmp_path / "st"),
            "LEDGERFLOW_JWKS": "https://idp.example/jwks.json",
            "LEDGERFLOW_TOPIC_PREFIX": "stage.",
        }
    )
    assert s.kafka_bootstrap == "kafka:9092"
    assert s.redis_url == "redis://cache:6379/2"
    assert (s.http_host, s.http_port) == ("0.0.0.0", 9000)
    assert s.state_dir == tmp_path / "st"
    assert s.jwks_location == "https://idp.example/jwks.json"
    assert s.topic("conversation.events") == "stage.conversation.events"


def test_kafka_elsewhere_is_external_and_redis_left_alone_is_not() -> None:
    s = load_settings({"LEDGERFLOW_KAFKA_BOOTSTRAP": "broker-1:9092,broker-2:9092"})
    assert (s.kafka_external, s.redis_external) == (True, False)


def test_redis_elsewhere_is_external_and_kafka_left_alone_is_not() -> None:
    s = load_settings({"LEDGERFLOW_REDIS_URL": "redis://10.0.0.5:6379/0"})
    assert (s.kafka_external, s.redis_external) == (False, True)


def test_explicitly_set_addresses_are_external_even_when_they_equal_the_defaults() -> None:
    # Someone already runs the services there (the shared dev stack): `stack up` must start nothing.
    s = load_settings({"LEDGERFLOW_KAFKA_BOOTSTRAP": DEFAULT_KAFKA, "LEDGERFLOW_REDIS_URL": DEFAULT_REDIS})
    assert (s.kafka_external, s.redis_external) == (True, True)
    assert (s.kafka_bootstrap, s.redis_url) == (DEFAULT_KAFKA, DEFAULT_REDIS)


def test_empty_variables_fall_back_to_defaults_and_are_not_external() -> None:
    s = load_settings({"LEDGERFLOW_KAFKA_BOOTSTRAP": "", "LEDGERFLOW_REDIS_URL": "", "LEDGERFLOW_HTTP": ""})
    assert (s.kafka_bootstrap, s.redis_url, s.http) == (DEFAULT_KAFKA, DEFAULT_REDIS, DEFAULT_HTTP)
    assert (s.kafka_external, s.redis_external) == (False, False)


def test_relative_and_home_state_dirs_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings({"LEDGERFLOW_STATE_DIR": "rel/dir"}).state_dir == tmp_path / "rel" / "dir"
    assert load_settings({"LEDGERFLOW_STATE_DIR": "~/lf"}).state_dir == tmp_path / "home" / "lf"


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERFLOW_TOPIC_PREFIX", "from-env.")
    assert load_settings().topic_prefix == "from-env."


def test_topic_without_prefix_is_the_base_name() -> None:
    assert Settings().topic("policy.rules") == "policy.rules"


def test_overrides_ignore_none_and_keep_other_fields() -> None:
    base = Settings(topic_prefix="a.")
    changed = base.with_overrides(topic_prefix="b.", redis_url=None)
    assert changed.topic_prefix == "b." and changed.redis_url == base.redis_url
    assert base.topic_prefix == "a."  # frozen: the original is untouched


def test_a_state_dir_with_a_local_redis_cluster_defaults_to_the_cluster_client(tmp_path: Path) -> None:
    plain = load_settings({"LEDGERFLOW_STATE_DIR": str(tmp_path), "LEDGERFLOW_REDIS_PORT": "17000"})
    assert plain.redis_url == "redis://127.0.0.1:17000/0"
    (tmp_path / "redis-1").mkdir()  # what `stack up --redis-cluster` leaves
    cluster = load_settings({"LEDGERFLOW_STATE_DIR": str(tmp_path), "LEDGERFLOW_REDIS_PORT": "17000"})
    assert cluster.redis_url == "redis+cluster://127.0.0.1:17000/0"
    given = load_settings({"LEDGERFLOW_STATE_DIR": str(tmp_path), "LEDGERFLOW_REDIS_URL": "redis://h:1/0"})
    assert given.redis_url == "redis://h:1/0"  # an explicit URL wins


@pytest.mark.parametrize("port", ["²", "٨٠٨٠", "8O80", "-1", "65536"])
def test_a_port_that_is_not_ascii_digits_is_one_line_naming_the_variable(port: str) -> None:
    """A "²" passes str.isdigit() and then fails int(): it must be the same one-line error as any
    other bad port, and Arabic-Indic digits are not a port either."""
    with pytest.raises(ValueError, match="^LEDGERFLOW_KAFKA_PORT=.* is not a port number"):
        load_settings({"LEDGERFLOW_KAFKA_PORT": port})
    with pytest.raises(ValueError, match="^LEDGERFLOW_HTTP=.* is not HOST:PORT"):
        load_settings({"LEDGERFLOW_HTTP": f"127.0.0.1:{port}"})


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "127.0.0.1",
        "127.0.0.1:",
        ":8701",
        "127.0.0.1:abc",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "h:²",
        "h:-1",
    ],
)
def test_a_worker_metrics_address_that_is_not_host_port_or_off_is_refused_up_front(value: str) -> None:
    with pytest.raises(
        ValueError, match=r"^LEDGERFLOW_WORKER_METRICS=.* is not HOST:PORT \(port 1-65535\) or off"
    ):
        load_settings({"LEDGERFLOW_WORKER_METRICS": value})


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("", None),
        ("off", None),
        ("OFF", None),
        (" none ", None),
        ("127.0.0.1:8701", "127.0.0.1:8701"),
        ("[::1]:9", "[::1]:9"),
    ],
)
def test_a_worker_metrics_address_or_off_is_accepted(value: str, address: str | None) -> None:
    load_settings({"LEDGERFLOW_WORKER_METRICS": value})
    assert metrics_address(value, "LEDGERFLOW_WORKER_METRICS") == address
