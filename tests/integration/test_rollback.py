"""A rollback through the admin API moves the serving alias in the registry (audited) and is announced, so the
whole fleet converges on the version rolled back to and stays there: a scorer that starts later (a fresh
resolve), the running scorer's registry poll and /api/model/history all agree with the registry."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from consumer.kafka.control import publish_model_update
from consumer.models.loader import ModelLoader
from consumer.service import ScorerService
from tests.helpers import wait_for
from tests.integration.reload_support import AdminServer, client, move_alias, scorer_overrides, two_versions

pytestmark = pytest.mark.integration

KEY = "rollback-test-key"


def get(admin: AdminServer, path: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(admin.url + path, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_a_rollback_through_the_api_moves_the_alias_is_audited_and_sticks_fleet_wide(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    name, good, bad = two_versions(mlflow_tracking_uri, tmp_path)
    audit_path = tmp_path / "audit.jsonl"
    settings = settings_factory(stream_topics, **scorer_overrides(
        name, tmp_path / "v1" / "model.pkl", group_id, admin__api_key=KEY, admin__audit_log_path=str(audit_path)))
    service = ScorerService(settings)  # reload_interval is 300 s: the test polls by hand
    service.start()
    try:
        # The bad version is promoted and served.
        move_alias(mlflow_tracking_uri, name, "champion", bad)
        publish_model_update(settings, type="promoted", model_name=name, version=bad, alias="champion",
                             source="test")
        assert wait_for(lambda: service.state.models.current.version == bad, 20), service.state.last_reload

        with AdminServer(settings, service) as admin:
            status, answer = admin.post("/api/model/rollback", json.dumps({"version": good}).encode(),
                                        {"Content-Type": "application/json", "X-API-Key": KEY})
            assert status == 200, answer
            assert (answer["status"], answer["alias"], answer["version"], answer["previous_version"]) == (
                "rolled_back", "champion", good, bad)
            assert answer["announced"] is True
            event = answer["event"]
            assert (event["type"], event["version"], event["alias"], event["model_name"]) == (
                "rollback", good, "champion", name)

            # This scorer follows the announcement.
            assert wait_for(lambda: service.state.models.current.version == good, 20), service.state.last_reload
            assert service.state.last_reload is not None and service.state.last_reload.event_id == event["event_id"]

            # The registry says so: the alias points at the version rolled back to ...
            assert client(mlflow_tracking_uri).get_model_version_by_alias(name, "champion").version == good
            # ... so a scorer that starts now (it resolves the configured alias) serves it, not the bad one.
            assert ModelLoader(settings).resolve_configured().version == good

            # The audit trail has the rollback: in the file and as a tag on the version.
            [record] = [json.loads(line) for line in audit_path.read_text().splitlines()
                        if json.loads(line)["action"] == "rollback"]
            assert (record["who"], record["version"], record["alias"], record["result"], record["status"]) == (
                "admin", good, "champion", "ok", 200)
            assert record["event_id"] == event["event_id"] and bad in record["detail"]
            tags = client(mlflow_tracking_uri).get_model_version(name, good).tags
            assert any(json.loads(v)["action"] == "rollback" for k, v in tags.items() if k.startswith("audit."))

            # The history shows the version that actually serves.
            status, history = get(admin, "/api/model/history")
            assert status == 200
            champion = [p for p in history["timeline"] if p["target"] == "@champion"]
            assert (champion[-1]["version"], champion[-1]["to"]) == (good, None)

        # The registry poll agrees with the registry: nothing to do while the alias stays on the good version ...
        assert service.poller is not None
        assert service.poller.poll_once() is None and service.state.models.current.version == good
        # ... and when an operator moves the alias on (even back to the version rolled back from), it follows.
        move_alias(mlflow_tracking_uri, name, "champion", bad)
        again = service.poller.poll_once()
        assert again is not None and again.result(30).result == "loaded"
        assert service.state.models.current.version == bad
    finally:
        service.stop()
