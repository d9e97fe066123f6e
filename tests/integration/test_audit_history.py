"""Audit trail and model history against the real MLflow server and broker.

An alias change through the admin API leaves an audit record naming the key's *name* (in the ``housing.audit``
log, in AUDIT_LOG_PATH and as an ``audit.<time>`` tag on the version); refused calls are recorded too, counted
into one ``refused`` record per client per minute; and ``GET /api/model/history`` replays the control topic
into the sequence of events and the champion timeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from mlflow.tracking import MlflowClient

from admin_api.audit import audit_log_of
from config.settings import Settings
from tests.conftest import RegisteredModel
from tests.integration.conftest import AdminClientFactory

pytestmark = pytest.mark.integration

ALICE, BOB = "alice-" + uuid.uuid4().hex[:8], "bob-" + uuid.uuid4().hex[:8]


@pytest.fixture
def audit_settings(settings_factory: Callable[..., Settings], stream_topics: dict[str, str],
                   two_version_model: RegisteredModel, tmp_path: Path) -> Settings:
    return settings_factory(stream_topics, **{
        **two_version_model.settings_overrides(),
        "admin.api_keys": f"alice:{ALICE},bob:{BOB}",
        "admin.audit_log_path": str(tmp_path / "audit.jsonl"),
    })


@pytest.fixture
async def client(admin_client: AdminClientFactory, audit_settings: Settings) -> TestClient:
    return await admin_client(audit_settings)


def audit_lines(settings: Settings) -> list[dict[str, Any]]:
    path = Path(settings.admin.audit_log_path or "")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def audit_tags(settings: Settings, version: str) -> list[dict[str, Any]]:
    client = MlflowClient(settings.mlflow.tracking_uri, registry_uri=settings.mlflow.tracking_uri)
    tags = client.get_model_version(settings.model.name, version).tags
    return [json.loads(value) for key, value in sorted(tags.items()) if key.startswith("audit.")]


async def test_alias_changes_are_audited_with_the_key_name_and_replayed_as_history(
        client: TestClient, audit_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    name = audit_settings.model.name
    base = f"/api/mlflow/models/{name}/aliases/champion"
    with caplog.at_level(logging.INFO, logger="housing.audit"):
        response = await client.put(base, json={"version": "2"}, headers={"Authorization": f"Bearer {ALICE}"})
        assert response.status == 200, await response.text()
        refused = await client.put(base, json={"version": "1"}, headers={"X-API-Key": "not-a-key"})
        assert refused.status == 401
        response = await client.delete(base, headers={"X-API-Key": BOB})
        assert response.status == 200, await response.text()
        response = await client.put(base, json={"version": "1"}, headers={"X-API-Key": ALICE})
        assert response.status == 200, await response.text()
        missing = await client.put(base, json={"version": "99"}, headers={"X-API-Key": BOB})
        assert missing.status == 404
        # The refused call is only counted so far; its minute's record is written off the event loop, here now.
        await asyncio.to_thread(audit_log_of(client.server.app).flush_refusals, everything=True)

    # The audit log: who (the key's name, never the key), what, result, in order; the refusal last.
    lines = audit_lines(audit_settings)
    assert [(r["who"], r["action"], r.get("version"), r["result"]) for r in lines] == [
        ("alice", "alias.set", "2", "ok"),
        ("bob", "alias.delete", "2", "ok"),
        ("alice", "alias.set", "1", "ok"),
        ("bob", "alias.set", "99", "not_found"),
        ("unknown", "refused", None, "unauthorized"),
    ]
    refused = lines[-1]
    assert (refused["count"], refused["client"], refused["status"]) == (1, "127.0.0.1", 401)
    assert "PUT /api/mlflow/models/{name}/aliases/{alias} unauthorized x1" in refused["detail"]
    assert all(r["model_name"] == name and r["at"].endswith("Z") for r in lines)
    assert lines[0]["alias"] == "champion" and lines[0]["event_id"] and lines[0]["status"] == 200
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "housing.audit"]
    assert logged == lines
    assert ALICE not in caplog.text and BOB not in caplog.text

    # The version tags: each version carries its own changes (a refused call tags nothing). The module's model
    # is shared: the training-promotion test (run before this one in some random orders) tags it as well.
    api_tags = {version: [t for t in audit_tags(audit_settings, version) if not t["who"].startswith("training:")]
                for version in ("1", "2")}
    assert [(t["who"], t["action"]) for t in api_tags["2"]] == [("alice", "alias.set"), ("bob", "alias.delete")]
    assert [(t["who"], t["action"], t["version"]) for t in api_tags["1"]] == [("alice", "alias.set", "1")]

    # The history, from the control topic: the announced events and which version was champion when.
    response = await client.get("/api/model/history")
    assert response.status == 200, await response.text()
    history = await response.json()
    assert history["model_name"] == name and history["topic"] == audit_settings.topics.model_updates
    assert [(e["type"], e["version"], e["alias"], e["source"]) for e in history["events"]] == [
        ("promoted", "2", "champion", "admin_api"),
        ("reload", None, "champion", "admin_api"),
        ("promoted", "1", "champion", "admin_api"),
    ]
    events = history["events"]
    champion = [p for p in history["timeline"] if p["target"] == "@champion"]
    assert [(p["version"], p["from"], p["to"]) for p in champion] == [
        ("2", events[0]["issued_at"], events[1]["issued_at"]),
        ("1", events[2]["issued_at"], None),
    ]
    assert lines[0]["event_id"] == events[0]["event_id"]  # the audit record names the event it announced


async def test_a_training_promotion_is_audited_and_starts_a_production_period(
        client: TestClient, audit_settings: Settings, two_version_model: RegisteredModel) -> None:
    from training.announce import announce_promotion
    from training.register import TrainingResult

    name = audit_settings.model.name
    result = TrainingResult(
        model_name=name, version="2", model_uri=f"models:/{name}/2", run_id="r", best_kind="linear_regression",
        metrics={}, aliases=("champion",), stage="Production", promoted=True, parent_run_id="p",
        experiment_id="1", tracking_uri=two_version_model.tracking_uri, results=(), fallback_path="f",
        metadata_path="m", profile_path="p", trained_at="t", seconds=1.0)
    event = await asyncio.to_thread(announce_promotion, audit_settings, result)
    assert event is not None
    [line] = audit_lines(audit_settings)
    assert line["who"].startswith("training") and line["action"] == "promote" and line["version"] == "2"
    assert line["event_id"] == event.event_id and line["source"] == "training"
    promotions = [t for t in audit_tags(audit_settings, "2") if t["action"] == "promote"]
    assert [t["event_id"] for t in promotions][-1:] == [event.event_id]

    response = await client.get("/api/model/history")
    history = await response.json()
    assert [(e["type"], e["source"]) for e in history["events"]] == [("promoted", "training")]
    assert [(p["target"], p["version"], p["to"]) for p in history["timeline"]] == [
        ("@champion", "2", None), ("stage Production", "2", None)]
