"""The stack's webhook registration and schema-registry pieces that need no server: which events, which URL,
which server environment, the kept secret and key, and the CLI's flags."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from mlflow.entities.webhook import WebhookEntity, WebhookEvent
from mlflow.webhooks.types import get_example_payload_for_event

from admin_api.webhooks import event_from_webhook
from stack.cli import build_parser
from stack.mlflow_server import LocalMlflow
from stack.schema_registry import CCOMPAT_PATH, LocalSchemaRegistry, registry_answers
from stack.webhooks import REGISTRY_EVENTS, receiver_url, stack_secret

REGISTRY_ENTITIES = {WebhookEntity.REGISTERED_MODEL, WebhookEntity.MODEL_VERSION, WebhookEntity.MODEL_VERSION_TAG,
                     WebhookEntity.MODEL_VERSION_ALIAS}


def delivery_body(event: WebhookEvent) -> dict[str, object]:
    """What MLflow sends for ``event`` (its own example payload)."""
    return {"entity": event.entity.value, "action": event.action.value, "timestamp": "2026-01-01T00:00:00+00:00",
            "data": dict(get_example_payload_for_event(event))}


def all_registry_events() -> list[WebhookEvent]:
    from mlflow.entities.webhook import VALID_ENTITY_ACTIONS

    return [WebhookEvent(entity, action) for entity in REGISTRY_ENTITIES for action in VALID_ENTITY_ACTIONS[entity]]


def test_the_registered_events_are_exactly_the_ones_the_receiver_acts_on() -> None:
    acted_on = {f"{e.entity.value}.{e.action.value}" for e in all_registry_events()
                if event_from_webhook(delivery_body(e)) is not None}
    assert set(REGISTRY_EVENTS) == acted_on == {"model_version_alias.created", "model_version_alias.deleted"}


@pytest.mark.parametrize(("host", "port", "url"), [
    ("127.0.0.1", 5001, "http://127.0.0.1:5001/api/webhooks/mlflow"),
    ("0.0.0.0", 5002, "http://127.0.0.1:5002/api/webhooks/mlflow"),
    ("scorer-0.scorers", 5001, "http://scorer-0.scorers:5001/api/webhooks/mlflow"),
])
def test_receiver_url(host: str, port: int, url: str) -> None:
    assert receiver_url(host, port) == url


def test_the_stack_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "stack" / "mlflow-webhook.secret"
    first = stack_secret(path)
    assert len(first) >= 32 and stack_secret(path) == first
    assert path.stat().st_mode & 0o077 == 0


def test_mlflow_server_env_allows_loopback_receivers_with_one_kept_encryption_key(tmp_path: Path) -> None:
    server = LocalMlflow(tmp_path / "mlflow")
    env = server.webhook_env({"PATH": "/bin"})
    assert env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"] == "http,https"
    assert env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "true"
    assert int(env["MLFLOW_WEBHOOK_CACHE_TTL"]) <= 5
    key = env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]
    assert len(base64.urlsafe_b64decode(key)) == 32  # a Fernet key
    # A restarted server (a new object, the same home) must decrypt the secrets stored before.
    assert LocalMlflow(tmp_path / "mlflow").webhook_env({})["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"] == key
    assert server.webhook_key_file.stat().st_mode & 0o077 == 0
    # What the operator set wins.
    mine = server.webhook_env({"MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "k", "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "https"})
    assert (mine["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"], mine["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"]) == ("k", "https")


def test_schema_registry_url_is_the_confluent_compatible_api(tmp_path: Path) -> None:
    registry = LocalSchemaRegistry(tmp_path, port=18181)
    assert registry.url == f"http://127.0.0.1:18181{CCOMPAT_PATH}" and CCOMPAT_PATH == "/apis/ccompat/v7"
    assert registry.pid_file == tmp_path / "schema-registry.pid"
    assert not registry_answers("http://127.0.0.1:9/apis/ccompat/v7", timeout=0.5)  # nothing listens on port 9


def test_cli_flags() -> None:
    args = build_parser().parse_args(["up", "--with-registry", "--registry-port", "18082", "--webhooks",
                                      "--webhook-url", "http://127.0.0.1:5001/api/webhooks/mlflow",
                                      "--webhook-url", "http://127.0.0.1:5002/api/webhooks/mlflow"])
    assert (args.with_registry, args.registry_port, args.webhooks) == (True, 18082, True)
    assert args.webhook_url == ["http://127.0.0.1:5001/api/webhooks/mlflow",
                                "http://127.0.0.1:5002/api/webhooks/mlflow"]
    plain = build_parser().parse_args(["up"])
    assert (plain.with_registry, plain.webhooks, plain.webhook_url) == (False, False, None)
