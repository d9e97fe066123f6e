"""Settings precedence (defaults < file < env < flags) and bad values naming the setting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from config.settings import (
    DEFAULT_CONFIG_PATH,
    SettingsError,
    add_settings_arguments,
    load_settings,
    settings_from_args,
)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlflow_config.yaml"
    path.write_text(
        "mlflow:\n"
        "  tracking_uri: http://file:5000\n"
        "  model:\n"
        "    name: from_file\n"
        "    stage: Staging\n"
        "  experiment:\n"
        "    batch_size: 42\n"
        "scorer:\n"
        "  batch_max_records: 111\n"
    )
    return path


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    settings = load_settings(env={}, config_path=_empty(tmp_path))
    assert settings.model.name == "california_housing_best_model"
    assert settings.model.alias == "champion"
    assert settings.mlflow.tracking_uri == "http://127.0.0.1:5000"
    assert settings.admin.port == 5001
    assert settings.scorer.processing_guarantee == "exactly_once"
    assert settings.topics.records == "housing.records"
    assert settings.kafka.client_config() == {"bootstrap.servers": "127.0.0.1:9092"}


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


def test_file_overrides_defaults(config_file: Path) -> None:
    settings = load_settings(env={}, config_path=config_file)
    assert settings.mlflow.tracking_uri == "http://file:5000"
    assert settings.model.name == "from_file"
    assert settings.model.stage == "Staging"
    assert settings.experiment.batch_size == 42
    assert settings.scorer.batch_max_records == 111
    assert settings.sources["model.name"] == "file"


def test_env_overrides_file_and_flags_override_env(config_file: Path) -> None:
    env = {"MLFLOW_MODEL_NAME": "from_env", "MLFLOW_TRACKING_URI": "http://env:5000", "PORT": "6000"}
    settings = load_settings({"model.name": "from_flag"}, env=env, config_path=config_file)
    assert settings.model.name == "from_flag"
    assert settings.mlflow.tracking_uri == "http://env:5000"
    assert settings.admin.port == 6000
    assert settings.model.stage == "Staging"  # untouched by env: the file's value
    assert settings.sources["model.name"] == "flag"
    assert settings.sources["mlflow.tracking_uri"] == "env"


def test_cli_flags_reach_settings(config_file: Path) -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    args = parser.parse_args(["--config", str(config_file), "--batch-max-records", "7", "--shadow"])
    settings = settings_from_args(args, env={"BATCH_MAX_RECORDS": "99"})
    assert settings.scorer.batch_max_records == 7
    assert settings.scorer.shadow_enabled is True
    assert settings.model.name == "from_file"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MLFLOW_BATCH_SIZE": "ten"}, "MLFLOW_BATCH_SIZE"),
        ({"MLFLOW_BATCH_SIZE": "0"}, "MLFLOW_BATCH_SIZE"),
        ({"PORT": "70000"}, "PORT"),
        ({"MLFLOW_ENABLED": "perhaps"}, "MLFLOW_ENABLED"),
        ({"PROCESSING_GUARANTEE": "exactly_twice"}, "PROCESSING_GUARANTEE"),
        ({"MLFLOW_MODEL_STAGE": "Prod"}, "MLFLOW_MODEL_STAGE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"BATCH_MAX_WAIT_MS": "-1"}, "BATCH_MAX_WAIT_MS"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "KAFKA_SASL_MECHANISM"),
    ],
)
def test_bad_values_fail_naming_the_setting(tmp_path: Path, env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env=env, config_path=_empty(tmp_path))


def test_bad_value_in_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mlflow:\n  model:\n    reload_interval: soon\n")
    with pytest.raises(SettingsError, match="mlflow.model.reload_interval"):
        load_settings(env={}, config_path=path)


def test_misspelt_key_in_file_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("scorer:\n  batch_max_record: 50\nkafka:\n  bootstrap_servers: 'b:9092'\n")
    with pytest.raises(SettingsError, match=r"unknown key 'scorer.batch_max_record' "
                                            r"\(did you mean 'scorer.batch_max_records'\?\)"):
        load_settings(env={}, config_path=path)


def test_unknown_section_and_every_unknown_key_are_named(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("scorrer:\n  group_id: g\nadmin:\n  prot: 1\n  port: 5002\n")
    with pytest.raises(SettingsError, match=r"unknown keys 'scorrer'.*'admin.prot'"):
        load_settings(env={}, config_path=path)


def test_the_shipped_config_file_has_only_known_keys() -> None:
    settings = load_settings(env={}, config_path=DEFAULT_CONFIG_PATH)
    assert settings.sources["topics.records"] == "file"


def test_empty_section_is_not_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("mlflow:\n  monitoring:\nscorer:\n  group_id: g\n")
    assert load_settings(env={}, config_path=path).scorer.group_id == "g"


def test_admin_port_zero_asks_for_any_free_port_and_a_negative_one_is_refused() -> None:
    assert load_settings(env={"PORT": "0"}, config_path=None).admin.port == 0
    with pytest.raises(SettingsError, match="PORT"):
        load_settings(env={"PORT": "-1"}, config_path=None)


def test_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(env={"HOUSING_CONFIG": str(tmp_path / "nope.yaml")})


def test_security_settings_reach_client_config(tmp_path: Path) -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "scorer",
        "KAFKA_SASL_PASSWORD": "s3cret",
    }
    settings = load_settings(env=env, config_path=_empty(tmp_path))
    assert settings.kafka.client_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "scorer",
        "sasl.password": "s3cret",
    }
    assert settings.as_dict()["kafka.sasl_password"] == "***"


def test_replace_parses_values(tmp_path: Path) -> None:
    settings = load_settings(env={}, config_path=_empty(tmp_path)).replace(**{"scorer.batch_max_records": "12"})
    assert settings.scorer.batch_max_records == 12
    with pytest.raises(SettingsError):
        settings.replace(**{"scorer.batch_max_records": "many"})
