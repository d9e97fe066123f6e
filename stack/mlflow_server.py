"""A real ``mlflow server`` process: SQLite backend store, local artifact store, loopback only."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from config.mlflow import mlflow_answers
from stack.processes import StackError, port_is_free, read_pid, start_process, stop_process, tail, wait_until

logger = logging.getLogger(__name__)


@dataclass
class LocalMlflow:
    """One tracking server whose database and artifacts live under ``home``."""

    home: Path
    port: int = 5000
    workers: int = 2

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "mlflow.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "mlflow.log"

    def running_pid(self) -> int | None:
        return read_pid(self.pid_file)

    def start(self, *, timeout: float = 240.0) -> None:
        if self.running_pid():
            raise StackError(f"an MLflow server started from {self.home} is already running")
        if not port_is_free(self.port):
            raise StackError(
                f"port {self.port} is already in use: stop what listens there, or choose another port "
                "(MLFLOW_PORT or --mlflow-port)"
            )
        store = self.home / "mlflow"
        (store / "artifacts").mkdir(parents=True, exist_ok=True)
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        argv = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
        env = dict(os.environ)
        # The server process must not inherit a client-side URI pointing at itself or elsewhere.
        env.pop("MLFLOW_TRACKING_URI", None)
        process = start_process(
            [*argv, "server",
             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
             "--artifacts-destination", str(store / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            log_file=self.log_file, pid_file=self.pid_file, env=env,
        )
        ready = wait_until(lambda: process.poll() is not None or mlflow_answers(self.tracking_uri), timeout, 0.5)
        if process.poll() is not None or not ready:
            self.stop()
            why = "exited" if process.poll() is not None else f"did not answer within {timeout:.0f}s"
            raise StackError(f"the MLflow server {why}; last lines of {self.log_file}:\n{tail(self.log_file)}")
        logger.info("MLflow server ready at %s (pid %d)", self.tracking_uri, process.pid)

    def stop(self, timeout: float = 20.0) -> bool:
        return stop_process(self.pid_file, timeout=timeout)
