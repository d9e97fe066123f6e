"""docker-compose.yml cannot run here (no Docker engine): check it parses and agrees with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import SETTINGS, load_settings
from stack.kafka import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("topics", "trainer", "scorer", "producer")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def test_services_present(compose: dict[str, Any]) -> None:
    assert {"kafka", "mlflow", "topics", "trainer", "scorer", "producer"} <= set(compose["services"])
    assert compose["services"]["producer"]["profiles"] == ["producer"]


def test_app_environment_uses_only_known_settings(compose: dict[str, Any]) -> None:
    known = {spec.env for spec in SETTINGS if spec.env} | {"TOPIC_PARTITIONS"}
    for name in APP_SERVICES:
        env = compose["services"][name].get("environment", {})
        unknown = set(env) - known
        assert not unknown, f"service {name} sets unknown settings {unknown}"


def test_app_environment_values_are_valid_settings(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        env = {k: re.sub(r"\$\{[^}]*:-([^}]*)\}", r"\1", v) for k, v in env.items()}
        settings = load_settings(env=env)  # raises SettingsError on a bad value
        defaults = load_settings(env={})
        assert settings.topics == defaults.topics, "compose topics differ from the code's topic names"


def test_kafka_is_the_same_release_with_a_host_listener(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    assert "PLAINTEXT_HOST://localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "9092:9092" in kafka["ports"]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1  # exactly-once on one broker
    internal = compose["x-app-env"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert f"PLAINTEXT://{internal}" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_scorer_publishes_its_admin_port(compose: dict[str, Any]) -> None:
    scorer = compose["services"]["scorer"]
    port = scorer["environment"]["PORT"]
    assert f"{port}:{port}" in scorer["ports"]
    assert scorer["environment"]["HOST"] == "0.0.0.0"


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r'include = \[([^\]]*)\]', pyproject)
    assert packages
    for package in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert f"COPY {package} ./{package}" in dockerfile, package
