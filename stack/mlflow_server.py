"""A real ``mlflow server`` process: SQLite backend store, local artifact store, loopback only."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from config.mlflow import mlflow_answers
from stack.managed import ManagedProcess

logger = logging.getLogger(__name__)


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
        process = self.launch(
            [*argv, "server",
             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
             "--artifacts-destination", str(store / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            ready=self.answers, timeout=timeout, env=env,
        )
        logger.info("MLflow server ready at %s (pid %d)", self.tracking_uri, process.pid)
