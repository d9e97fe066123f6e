"""A real ``mlflow server`` process: SQLite backend store, local artifact store, loopback only.

Registry webhooks work on it out of the box (``webhook_env``): MLflow refuses webhook URLs that are plain
``http`` or resolve to a private address unless told otherwise, and the scorers' receivers listen on
``http://127.0.0.1``. Safe here because the server listens on loopback only; never set those two on a server
that accepts webhook registrations from untrusted users (they disable its SSRF protection).
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from config.mlflow import mlflow_answers
from stack.managed import ManagedProcess

logger = logging.getLogger(__name__)

WEBHOOK_CACHE_TTL_SECONDS = 2
"""MLflow caches each event's webhook list per worker (60 s by default): a webhook registered on a running
server would miss that long of deliveries. Two seconds is one more registry query per event, nothing locally."""


@dataclass
class LocalMlflow(ManagedProcess):
    """One tracking server whose database and artifacts live under ``home`` (``mlflow.pid``, ``logs/mlflow.log``)."""

    name: ClassVar[str] = "mlflow"
    title: ClassVar[str] = "the MLflow server"
    description: ClassVar[str] = "an MLflow server"
    port_hint: ClassVar[str] = "another port (MLFLOW_PORT or --mlflow-port)"
    stop_grace: ClassVar[float] = 20.0
    ready_interval: ClassVar[float] = 0.5

    port: int = 5000
    workers: int = 2
    webhook_cache_ttl: int = WEBHOOK_CACHE_TTL_SECONDS
    """``MLFLOW_WEBHOOK_CACHE_TTL`` of this server; 0: no cache, a webhook gets the very next event (tests)."""

    @property
    def webhook_key_file(self) -> Path:
        return self.home / "webhook-secret.key"

    def webhook_env(self, env: dict[str, str]) -> dict[str, str]:
        """What the server needs to deliver registry webhooks to a scorer on this machine (``env`` wins).

        - ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``: the
          receiver is ``http://127.0.0.1:<admin port>/api/webhooks/mlflow``.
        - ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``: MLflow encrypts webhook secrets in its database with this
          Fernet key, and without one each worker process makes up its own, so a worker other than the one
          that stored the webhook cannot decrypt its secret and the delivery fails. Kept in
          ``<home>/webhook-secret.key``, so a restarted server still reads the webhooks it stored.
        - ``MLFLOW_WEBHOOK_CACHE_TTL``: ``webhook_cache_ttl`` (see ``WEBHOOK_CACHE_TTL_SECONDS``).
        """
        if not env.get("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"):
            if not self.webhook_key_file.exists():
                self.home.mkdir(parents=True, exist_ok=True)
                key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # a Fernet key
                self.webhook_key_file.write_text(key)
                self.webhook_key_file.chmod(0o600)
            env = {**env, "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": self.webhook_key_file.read_text().strip()}
        defaults = {"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                    "MLFLOW_WEBHOOK_CACHE_TTL": str(self.webhook_cache_ttl)}
        return {**defaults, **env}

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def answers(self) -> bool:
        return mlflow_answers(self.tracking_uri)

    def start(self, *, timeout: float = 240.0) -> None:
        self.ensure_can_start()
        store = self.home / "mlflow"
        (store / "artifacts").mkdir(parents=True, exist_ok=True)
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        argv = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
        env = dict(os.environ)
        # The server process must not inherit a client-side URI pointing at itself or elsewhere.
        env.pop("MLFLOW_TRACKING_URI", None)
        env = self.webhook_env(env)
        process = self.launch(
            [*argv, "server",
             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
             "--artifacts-destination", str(store / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            ready=self.answers, timeout=timeout, env=env,
        )
        logger.info("MLflow server ready at %s (pid %d)", self.tracking_uri, process.pid)
