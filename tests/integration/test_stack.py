"""housing-stack against real processes: up, reuse, status, down, busy ports, external broker, topics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from stack.processes import free_port, pid_alive, port_is_free
from tests.helpers import unused_port

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "stack.cli"]


def run_cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI"}}
    env.update(extra)
    return env


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Env for a private stack on free ports; always brought down afterwards."""
    env = clean_env(HOUSING_STACK_DIR=str(tmp_path / "stack"), TOPIC_PARTITIONS="4")
    env.update(free_ports())
    yield env
    run_cli("down", env=env)


def free_ports() -> dict[str, str]:
    return {"KAFKA_PORT": str(free_port()), "KAFKA_CONTROLLER_PORT": str(free_port()), "MLFLOW_PORT": str(free_port())}


def up_on_free_ports(env: dict[str, str], attempts: int = 4) -> subprocess.CompletedProcess[str]:
    """``housing-stack up``, again on other free ports when one it was given was taken before its process bound
    it (the free-port race); ``env`` is updated to the ports that worked."""
    for _ in range(attempts - 1):
        up = run_cli("up", env=env)
        if up.returncode == 0 or "already in use" not in up.stderr.lower():
            return up
        run_cli("down", env=env)
        env.update(free_ports())
    return run_cli("up", env=env)


def test_up_status_reuse_down(stack_env: dict[str, str]) -> None:
    up = up_on_free_ports(stack_env)
    assert up.returncode == 0, up.stderr
    assert "kafka: started" in up.stdout and "mlflow: started" in up.stdout
    home = Path(stack_env["HOUSING_STACK_DIR"])
    kafka_pid = int((home / "kafka" / "kafka.pid").read_text())
    mlflow_pid = int((home / "mlflow" / "mlflow.pid").read_text())
    assert pid_alive(kafka_pid) and pid_alive(mlflow_pid)

    bootstrap = f"127.0.0.1:{stack_env['KAFKA_PORT']}"
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    partitions = {name: len(topics[name].partitions) for name in topics if name.startswith("housing.")}
    assert partitions == {
        "housing.records": 4,
        "housing.predictions": 4,
        "housing.records.dlq": 4,
        "housing.model-updates": 1,
        "housing.scorer-status": 1,
        "housing.outcomes": 4,
        "housing.outcomes.dlq": 4,
        "housing.evaluation": 1,
        "housing.evaluator-checkpoints": 1,
    }

    again = run_cli("up", env=stack_env)
    assert again.returncode == 0, again.stderr
    assert "reused" in again.stdout
    assert int((home / "kafka" / "kafka.pid").read_text()) == kafka_pid

    status = run_cli("status", env=stack_env)
    assert status.returncode == 0
    assert bootstrap in status.stdout and "healthy" in status.stdout

    down = run_cli("down", env=stack_env)
    assert down.returncode == 0
    assert not pid_alive(kafka_pid) and not pid_alive(mlflow_pid)
    assert port_is_free(int(stack_env["KAFKA_PORT"])) and port_is_free(int(stack_env["MLFLOW_PORT"]))
    status_after = run_cli("status", env=stack_env)
    assert status_after.returncode == 1 and "DOWN" in status_after.stdout


def test_busy_port_is_a_clear_error_and_leaves_nothing_running(stack_env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(stack_env["KAFKA_PORT"])))
        squatter.listen()
        result = run_cli("up", env=stack_env, timeout=120)
    assert result.returncode != 0
    assert f"port {stack_env['KAFKA_PORT']} is already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    home = Path(stack_env["HOUSING_STACK_DIR"])
    assert not (home / "kafka" / "kafka.pid").exists() and not (home / "mlflow" / "mlflow.pid").exists()


def test_external_broker_is_used_and_nothing_started(kafka_bootstrap: str, mlflow_tracking_uri: str,
                                                     tmp_path: Path) -> None:
    env = clean_env(HOUSING_STACK_DIR=str(tmp_path / "stack"), KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                    MLFLOW_TRACKING_URI=mlflow_tracking_uri)
    result = run_cli("up", env=env)
    assert result.returncode == 0, result.stderr
    assert f"using external broker {kafka_bootstrap}" in result.stdout
    assert "using external server" in result.stdout
    assert not (tmp_path / "stack" / "kafka" / "kafka.pid").exists()
    assert not (tmp_path / "stack" / "mlflow" / "mlflow.pid").exists()


def test_external_broker_that_does_not_answer_fails_clearly(tmp_path: Path) -> None:
    with unused_port() as port:  # held: nothing can listen there meanwhile
        env = clean_env(HOUSING_STACK_DIR=str(tmp_path / "stack"), KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}")
        result = run_cli("up", env=env, timeout=60)
    assert result.returncode == 1
    assert "does not answer" in result.stderr and "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_message_round_trips_through_the_broker(kafka_bootstrap: str, topic_factory, group_id: str) -> None:
    topic = topic_factory(partitions=2)
    payload = uuid.uuid4().hex.encode()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"k", value=payload)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group_id,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        received = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received = message
                break
        assert received is not None, "no message within 30 s"
        assert received.value() == payload and received.key() == b"k"
    finally:
        consumer.close()
