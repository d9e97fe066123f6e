"""Two scorer processes (``python -m consumer --no-admin-api``) share the input topic; one promotion switches
both, and housing.scorer-status shows both on the new version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from consumer.kafka.control import publish_model_update
from consumer.kafka.topic_reader import read_fleet
from tests.conftest import PROJECT_ROOT
from tests.helpers import consume_all, keys_of, produce_records, wait_for
from tests.integration.reload_support import move_alias, scorer_overrides, two_versions

pytestmark = pytest.mark.integration


def scorer_env(settings: Settings, instance_id: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "MLFLOW_", "KAFKA_", "SCORER_"))},
        "PYTHONPATH": str(PROJECT_ROOT),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "MLFLOW_MODEL_NAME": settings.model.name,
        "MODEL_PATH": settings.model.fallback_path,
        "MLFLOW_RELOAD_INTERVAL": "300",
        "TOPIC_RECORDS": settings.topics.records,
        "TOPIC_PREDICTIONS": settings.topics.predictions,
        "TOPIC_DEAD_LETTER": settings.topics.dead_letter,
        "TOPIC_MODEL_UPDATES": settings.topics.model_updates,
        "TOPIC_SCORER_STATUS": settings.topics.scorer_status,
        "SCORER_GROUP_ID": settings.scorer.group_id,
        "SCORER_INSTANCE_ID": instance_id,
        "BATCH_MAX_WAIT_MS": "20",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_two_scorer_processes_both_switch(settings_factory: Any, stream_topics: dict[str, str],
                                          mlflow_tracking_uri: str, tmp_path: Path, group_id: str,
                                          processes: list[subprocess.Popen[bytes]]) -> None:
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path)
    settings = settings_factory(stream_topics, **scorer_overrides(name, tmp_path / "v1" / "model.pkl", group_id))
    instances = [f"fleet-a-{group_id[-8:]}", f"fleet-b-{group_id[-8:]}"]
    for instance in instances:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "consumer", "--no-admin-api"], cwd=PROJECT_ROOT,
            env=scorer_env(settings, instance), stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"{instance}.log", "wb")))  # noqa: SIM115 - closed with the process

    def fleet_on(version: str, result: str | None = None) -> bool:
        fleet = read_fleet(settings)
        return all(i in fleet and fleet[i].model_version == version
                   and (result is None or fleet[i].result == result) for i in instances)

    assert wait_for(lambda: fleet_on(v1, "started"), 45), read_fleet(settings)
    first = produce_records(settings, 300)
    move_alias(mlflow_tracking_uri, name, "champion", v2)
    event = publish_model_update(settings, type="promoted", model_name=name, version=v2, alias="champion",
                                 source="admin_api")
    assert wait_for(lambda: fleet_on(v2, "loaded"), 30), read_fleet(settings)
    fleet = read_fleet(settings)
    assert {fleet[i].event_id for i in instances} == {event.event_id}
    assert all(fleet[i].load_seconds and fleet[i].load_seconds > 0 for i in instances)
    second = produce_records(settings, 300, start=300)
    predictions = consume_all(settings.kafka.bootstrap_servers, settings.topics.predictions, expect=600,
                              timeout=60)
    keys = keys_of(predictions)
    assert sorted(keys) == sorted(first.good_keys + second.good_keys)
    later = {m.header_map["model_version"].decode() for m in predictions if m.key.decode() in
             set(second.good_keys)}
    assert later == {v2}
    # A clean stop says so on the status topic.
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process, instance in zip(processes, instances, strict=True):
        assert process.wait(40) == 0, (tmp_path / f"{instance}.log").read_text()[-3000:]
    assert wait_for(lambda: fleet_on(v2, "stopped"), 15), read_fleet(settings)
