"""MLflow webhooks delivered by the live ``mlflow server``: MLflow signs and POSTs, the scorer reloads.

The session's server runs with ``LocalMlflow.webhook_env`` (plain http, loopback receivers, one secret
encryption key for all workers) and no webhook cache (``webhook_cache_ttl=0``), so a webhook registered by a
test gets the very next alias move. A webhook is registered for the registry events the receiver maps
(``stack.webhooks.REGISTRY_EVENTS``) with the same function ``housing-stack up --webhooks`` uses, the alias is
moved with MlflowClient (not through the admin API) and the registry poll is set to an hour, so only the
delivery can make the scorer switch: the event on the control topic says ``source: webhook`` and the reload
names that event.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consumer.kafka.topic_reader import read_model_updates
from consumer.service import ScorerService
from schemas.control import ModelUpdateEvent
from stack.webhooks import RECEIVER_PATH, REGISTRY_EVENTS, register_webhook
from tests.conftest import EXTERNAL_MLFLOW
from tests.helpers import wait_for
from tests.integration.reload_support import AdminServer, client, scorer_overrides, two_versions

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(EXTERNAL_MLFLOW), reason="needs the project's own MLflow server, started "
                                                                 "with webhook delivery to loopback allowed")]

SECRET = "whsec-live-delivery-test"
POLL_OFF = 3600
"""model.reload_interval in these tests: no poll within a test's lifetime."""


@pytest.fixture
def webhook_names(mlflow_tracking_uri: str) -> Iterator[list[str]]:
    """Names of the webhooks a test registers; deleted afterwards, so later tests' alias moves are not sent to
    a receiver that is gone."""
    names: list[str] = []
    yield names
    mlflow_client = client(mlflow_tracking_uri)
    for webhook in mlflow_client.list_webhooks(max_results=100):
        if webhook.name in names:
            mlflow_client.delete_webhook(webhook.webhook_id)


def webhook_events(settings: Any, model_name: str) -> list[ModelUpdateEvent]:
    return [e for e in read_model_updates(settings) if e.model_name == model_name]


def test_alias_moved_in_mlflow_reloads_the_scorer_from_the_delivery(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str, webhook_names: list[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consumer")
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path)
    audit_file = tmp_path / "audit.jsonl"
    settings = settings_factory(stream_topics, **scorer_overrides(
        name, tmp_path / "v1" / "model.pkl", group_id, admin__webhook_secret=SECRET,
        model__reload_interval=POLL_OFF, admin__audit_log_path=str(audit_file)))
    service = ScorerService(settings)
    service.start()
    try:
        with AdminServer(settings, service) as admin:
            assert service.state.models.current.version == v1
            webhook_names.append(f"live-{uuid.uuid4().hex[:8]}")
            registered = register_webhook(mlflow_tracking_uri, admin.url + RECEIVER_PATH, SECRET,
                                          name=webhook_names[-1])
            assert registered.created and registered.events == REGISTRY_EVENTS

            client(mlflow_tracking_uri).set_registered_model_alias(name, "champion", v2)  # MLflow only

            assert wait_for(lambda: service.state.models.current.version == v2, 60), service.state.last_reload
            events = webhook_events(settings, name)
            assert [(e.type, e.version, e.alias, e.source) for e in events] == [("promoted", v2, "champion",
                                                                               "webhook")]
            last = service.state.last_reload
            assert last is not None and (last.result, last.event_id) == ("loaded", events[0].event_id)
            assert any("now serving" in r.getMessage() and "from webhook" in r.getMessage() for r in caplog.records)
            assert wait_for(lambda: webhook_audit(audit_file), 10)
            assert [(r["who"], r["status"], r["event_id"]) for r in webhook_audit(audit_file)] == [
                ("mlflow-webhook", 202, events[0].event_id)]

            # The other mapped event: the alias deleted -> a reload of @champion, which is gone, so the scorer
            # keeps v2 and reports why.
            client(mlflow_tracking_uri).delete_registered_model_alias(name, "champion")
            assert wait_for(lambda: len(webhook_events(settings, name)) == 2, 60)
            deleted = webhook_events(settings, name)[1]
            assert (deleted.type, deleted.alias, deleted.source) == ("reload", "champion", "webhook")
            assert wait_for(lambda: service.state.last_reload.event_id == deleted.event_id, 30)
            assert service.state.last_reload.result == "failed", service.state.last_reload
            assert service.state.models.current.version == v2
            assert service.listener is not None and service.listener.events_seen == 2
    finally:
        service.stop()


def test_a_delivery_signed_with_another_secret_changes_nothing(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str, webhook_names: list[str]) -> None:
    name, v1, v2 = two_versions(mlflow_tracking_uri, tmp_path)
    audit_file = tmp_path / "audit.jsonl"
    settings = settings_factory(stream_topics, **scorer_overrides(
        name, tmp_path / "v1" / "model.pkl", group_id, admin__webhook_secret=SECRET,
        model__reload_interval=POLL_OFF, admin__audit_log_path=str(audit_file)))
    service = ScorerService(settings)
    service.start()
    try:
        with AdminServer(settings, service) as admin:
            webhook_names.append(f"wrong-secret-{uuid.uuid4().hex[:8]}")
            register_webhook(mlflow_tracking_uri, admin.url + RECEIVER_PATH, "not-the-secret",
                             name=webhook_names[-1])
            client(mlflow_tracking_uri).set_registered_model_alias(name, "champion", v2)

            # "Nothing happened" means something only once the delivery has arrived: its refusal is audited.
            assert wait_for(lambda: webhook_audit(audit_file), 60), "MLflow's delivery never reached the scorer"
            [refused] = webhook_audit(audit_file)
            assert (refused["status"], refused["result"]) == (401, "webhook_rejected"), refused
            assert webhook_events(settings, name) == []
            assert service.state.models.current.version == v1
    finally:
        service.stop()


def webhook_audit(audit_file: Path) -> list[dict[str, Any]]:
    """The audit records of webhook calls so far."""
    if not audit_file.exists():
        return []
    records = [json.loads(line) for line in audit_file.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("action") == "webhook"]
