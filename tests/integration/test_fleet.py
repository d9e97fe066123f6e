"""Two scorer processes (``python -m consumer --no-admin-api``) share the input topic; one promotion switches
both, and housing.scorer-status shows both on the new version. The fleet view forgets: a clean stop removes an
instance (tombstone), a killed one (no tombstone, no more heartbeats) turns ``stale`` in /api/fleet."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from consumer.kafka.control import publish_model_update
from consumer.kafka.topic_reader import read_fleet
from consumer.state import ScorerState
from schemas.clock import now_ms
from tests.conftest import PROJECT_ROOT, RegisteredModel
from tests.helpers import committed_total, eventually, keys_of, produce_records, read_to_end, scorer_env, wait_for
from tests.integration.reload_support import move_alias, scorer_overrides, two_versions

pytestmark = pytest.mark.integration


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
    bootstrap = settings.kafka.bootstrap_servers
    # Every input committed, each with its prediction in one transaction: the topic holds all there will be.
    assert wait_for(lambda: committed_total(bootstrap, settings.scorer.group_id, settings.topics.records, 3) >= 600,
                    60), committed_total(bootstrap, settings.scorer.group_id, settings.topics.records, 3)
    predictions = read_to_end(bootstrap, settings.topics.predictions)
    keys = keys_of(predictions)
    assert sorted(keys) == sorted(first.good_keys + second.good_keys)
    later = {m.header_map["model_version"].decode() for m in predictions if m.key.decode() in
             set(second.good_keys)}
    assert later == {v2}
    # A clean stop leaves the fleet view: each instance's tombstone is acknowledged before its process exits.
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process, instance in zip(processes, instances, strict=True):
        assert process.wait(40) == 0, (tmp_path / f"{instance}.log").read_text()[-3000:]
    fleet = read_fleet(settings)
    assert not set(instances) & set(fleet), fleet


async def test_a_stopped_scorer_leaves_the_fleet_and_a_killed_one_turns_stale(
        settings_factory: Any, stream_topics: dict[str, str], registered_model: RegisteredModel, tmp_path: Path,
        group_id: str, processes: list[subprocess.Popen[bytes]], aiohttp_client: Any) -> None:
    """Issue 12, item 6: without tombstones and heartbeats, restarts and kills pile up as ``serving`` forever."""
    heartbeat, stale_after = 1.0, 3.0
    settings = settings_factory(stream_topics, **{**registered_model.settings_overrides(), "mlflow.enabled": False,
                                                  "scorer.group_id": group_id,
                                                  "scorer.heartbeat_seconds": heartbeat,
                                                  "admin.fleet_stale_after": stale_after})
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, state=ScorerState(settings)))
    clean, killed = f"clean-{group_id[-8:]}", f"killed-{group_id[-8:]}"
    for instance in (clean, killed):
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "consumer", "--no-admin-api"], cwd=PROJECT_ROOT,
            env=scorer_env(settings, instance, MLFLOW_ENABLED="false", SCORER_HEARTBEAT_SECONDS=str(heartbeat)),
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{instance}.log", "wb")))  # noqa: SIM115
    logs = {instance: tmp_path / f"{instance}.log" for instance in (clean, killed)}

    async def fleet(state: str | None = None) -> dict[str, dict[str, Any]]:
        response = await client.get("/api/fleet", params={"state": state} if state else {})
        assert response.status == 200, await response.text()
        return {s["instance_id"]: s for s in (await response.json())["instances"]}

    async def both_listed() -> bool:
        return {clean, killed} <= set(await fleet())

    assert await eventually(both_listed, 60), (await fleet(), logs[killed].read_text()[-3000:])

    # A clean stop: the instance is gone from the view as soon as its process has exited.
    processes[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(processes[0].wait, 40) == 0, logs[clean].read_text()[-3000:]
    assert clean not in await fleet(), await fleet()

    # Alive and beating, the other stays serving well past stale_after since its last result ("started").
    async def started_long_ago() -> bool:
        return now_ms() - (await fleet())[killed]["at"] > (stale_after + 1) * 1000

    assert await eventually(started_long_ago, 30)
    alive = (await fleet())[killed]
    assert (alive["state"], alive["result"]) == ("serving", "started"), alive
    assert killed in await fleet("serving")

    # Killed: no tombstone, no heartbeat; it stays listed, as stale, with its last result.
    processes[1].kill()
    await asyncio.to_thread(processes[1].wait, 30)

    async def turned_stale() -> bool:
        return killed in await fleet("stale")

    assert await eventually(turned_stale, stale_after + 10), await fleet()
    gone = (await fleet())[killed]
    assert (gone["state"], gone["result"]) == ("stale", "started") and gone["age_seconds"] > stale_after
    assert killed not in await fleet("serving")
