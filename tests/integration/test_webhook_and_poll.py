"""The safety nets and the other event sources: the registry poll catches an alias moved straight in
MLflow; the admin API's webhook receiver refuses bad signatures and turns a good delivery into a reload; an
event published while a scorer starts is not missed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from consumer import service as service_module
from consumer.kafka.control import publish_model_update
from consumer.kafka.topic_reader import end_offsets, read_fleet
from consumer.service import ScorerService
from schemas.control import ModelUpdateEvent
from tests.helpers import wait_for
from tests.integration.reload_support import (
    AdminServer,
    mlflow_delivery,
    move_alias,
    scorer_overrides,
    two_versions,
)

pytestmark = pytest.mark.integration

SECRET = "whsec-hot-reload-test"


def test_poll_catches_an_alias_moved_directly_with_mlflowclient(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path)
    settings = settings_factory(stream_topics, **scorer_overrides(name, tmp_path / "v1" / "model.pkl", group_id,
                                                                  model__reload_interval=1))
    service = ScorerService(settings)
    service.start()
    try:
        assert service.state.models.current.version == v1
        move_alias(mlflow_tracking_uri, name, "champion", v2)  # no event, no webhook
        assert wait_for(lambda: service.state.models.current.version == v2, 20), service.state.last_reload
        last = service.state.last_reload
        assert last is not None and last.result == "loaded" and last.event_id is None
        assert service.state.mlflow_reachable is True
        assert wait_for(lambda: read_fleet(settings)[settings.scorer.instance_id].model_version == v2, 10)
        assert service.listener is not None and service.listener.events_seen == 0
    finally:
        service.stop()


def test_webhook_bad_signature_refused_good_one_reloads(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path)
    settings = settings_factory(stream_topics, **scorer_overrides(name, tmp_path / "v1" / "model.pkl", group_id,
                                                                  admin__webhook_secret=SECRET))
    service = ScorerService(settings)
    service.start()
    try:
        with AdminServer(settings, service) as admin:
            move_alias(mlflow_tracking_uri, name, "champion", v2)
            payload = {"entity": "model_version_alias", "action": "created",
                       "timestamp": "2025-01-01T00:00:00+00:00",
                       "data": {"name": name, "alias": "champion", "version": v2}}
            before = end_offsets(settings, settings.topics.model_updates)
            body, headers = mlflow_delivery("not-the-secret", payload)
            status, answer = admin.post("/api/webhooks/mlflow", body, headers)
            assert status == 401, answer
            body, headers = mlflow_delivery(SECRET, payload, timestamp=time.time() - 3600)
            status, answer = admin.post("/api/webhooks/mlflow", body, headers)
            assert status == 401, answer
            assert end_offsets(settings, settings.topics.model_updates) == before  # nothing was published
            assert service.state.models.current.version == v1

            body, headers = mlflow_delivery(SECRET, payload)
            status, answer = admin.post("/api/webhooks/mlflow", body, headers)
            assert status == 202, answer
            event_id = answer["event"]["event_id"]
            assert wait_for(lambda: service.state.models.current.version == v2, 20), service.state.last_reload
            assert service.state.last_reload.event_id == event_id

            # The same delivery again (a replay inside the timestamp window): refused, nothing published.
            published = end_offsets(settings, settings.topics.model_updates)
            status, answer = admin.post("/api/webhooks/mlflow", body, headers)
            assert (status, answer["error"]) == (409, "webhook_replayed"), answer
            assert end_offsets(settings, settings.topics.model_updates) == published
    finally:
        service.stop()


def test_an_event_published_while_a_scorer_starts_is_not_missed(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path)
    settings = settings_factory(stream_topics, **scorer_overrides(name, tmp_path / "v1" / "model.pkl", group_id))
    published: list[ModelUpdateEvent] = []
    original = service_module.load_startup_model

    def load_then_promote(*args: Any, **kwargs: Any) -> Any:
        handle = original(*args, **kwargs)  # resolved and loaded v1 ...
        move_alias(mlflow_tracking_uri, name, "champion", v2)  # ... and meanwhile v2 is promoted and announced,
        published.append(publish_model_update(settings, type="promoted", model_name=name, version=v2,
                                              alias="champion", source="admin_api"))
        return handle  # before this scorer's listener exists

    monkeypatch.setattr(service_module, "load_startup_model", load_then_promote)
    service = ScorerService(settings)  # reload_interval is 300 s: only the event can switch it
    service.start()
    try:
        assert published, "the start-up hook did not run"
        assert wait_for(lambda: service.state.models.current.version == v2, 20), service.state.last_reload
        assert service.state.last_reload.event_id == published[0].event_id
    finally:
        service.stop()
