"""Register the scorers' webhook receiver with an MLflow server (``housing-stack up --webhooks``).

MLflow then signs and POSTs each registry event the receiver acts on (``REGISTRY_EVENTS``) to
``/api/webhooks/mlflow`` of one scorer; that scorer publishes the mapped model-update event, and every scorer
of the fleet reads it from the control topic. The registry poll stays the safety net for a missed delivery.
The server must allow plain-http, loopback receivers: ``stack.mlflow_server.LocalMlflow.webhook_env``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.processes import StackError

REGISTRY_EVENTS: tuple[str, ...] = ("model_version_alias.created", "model_version_alias.deleted")
"""The MLflow events ``admin_api.webhooks.event_from_webhook`` turns into model-update events (the others it
answers ``ignored``; stage transitions send none at all)."""
WEBHOOK_NAME = "housing-scorer"
RECEIVER_PATH = "/api/webhooks/mlflow"


def receiver_url(host: str, port: int) -> str:
    """The admin API's receiver: ``http://127.0.0.1:5001/api/webhooks/mlflow``."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 (a bind-all address is no URL)
    return f"http://{shown}:{port}{RECEIVER_PATH}"


def stack_secret(secret_file: Path) -> str:
    """The webhook secret the local stack made up (once, kept in ``secret_file``, mode 0600)."""
    if secret_file.exists():
        kept = secret_file.read_text().strip()
        if kept:
            return kept
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(24)
    secret_file.write_text(made)
    secret_file.chmod(0o600)
    return made


@dataclass(frozen=True)
class Registered:
    webhook_id: str
    url: str
    events: tuple[str, ...]
    created: bool
    """False: a webhook of that name and URL existed and was updated (secret, events, status)."""

    def line(self) -> str:
        verb = "registered" if self.created else "updated"
        return f"webhook: {verb} {self.url} for {', '.join(self.events)} (id {self.webhook_id})"


def register_webhook(tracking_uri: str, url: str, secret: str, *, name: str = WEBHOOK_NAME,
                     events: tuple[str, ...] = REGISTRY_EVENTS) -> Registered:
    """Create the webhook, or update the one of this name and URL (idempotent: ``up --webhooks`` twice is one).

    :raises StackError: the server refused it (for example one without ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https``
        and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` for a receiver on this machine) or does not answer.
    """
    from mlflow.entities.webhook import WebhookEvent
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    wanted = [WebhookEvent(*event.split(".", 1)) for event in events]
    try:
        existing = _find(client, name, url)
        if existing is not None:
            updated = client.update_webhook(existing.webhook_id, events=list(wanted), secret=secret,
                                            status="ACTIVE")
            return Registered(str(updated.webhook_id), url, events, created=False)
        created = client.create_webhook(name=name, url=url, events=list(wanted), secret=secret,
                                        description="housing-stream-scorer: hot reload on alias changes")
    except MlflowException as exc:
        raise StackError(f"MLflow at {tracking_uri} did not register the webhook {url}: {exc.message}") from exc
    return Registered(str(created.webhook_id), url, events, created=True)


def _find(client: Any, name: str, url: str) -> Any:
    page_token = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=page_token)
        for webhook in page:
            if webhook.name == name and webhook.url == url:
                return webhook
        page_token = page.token
        if not page_token:
            return None
