"""Live metrics into MLflow: each version's sliding-window figures logged to the run that produced the version
(its serving run), with ``step`` = the version's matched pairs since start, so the MLflow UI charts them.

Metric keys per role: ``live_<role>_rmse``, ``_mae``, ``_bias``, ``_mape``, ``_matched`` (e.g.
``live_champion_rmse``). A worker thread logs; the loop only offers snapshots to a bounded queue, so MLflow being
slow or away never holds up the join (what it drops is counted and logged).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

FIELDS = ("rmse", "mae", "bias", "mape")
RUN_LOOKUP_RETRY_SECONDS = 60.0


def metrics_of(snapshot: Mapping[str, Any]) -> dict[str, list[Metric]]:
    """model_version -> the MLflow metrics of its entries in ``snapshot`` (window figures; step = pairs since
    start; timestamp = the snapshot's watermark)."""
    out: dict[str, list[Metric]] = {}
    timestamp = int(snapshot["watermark"]) or int(snapshot["published_at"])
    for entry in snapshot["versions"]:
        window, step = entry["window"], int(entry["since_start"]["count"])
        if not step:
            continue
        metrics = out.setdefault(entry["model_version"], [])
        role = entry["role"]
        for name in FIELDS:
            if window[name] is not None:
                metrics.append(Metric(f"live_{role}_{name}", float(window[name]), timestamp, step))
        metrics.append(Metric(f"live_{role}_matched", float(step), timestamp, step))
    return out


class LiveMetricsLogger(threading.Thread):
    """Logs offered snapshots to MLflow on its own thread.

    :param model_name: the registered model whose versions the snapshot names.
    """

    def __init__(self, tracking_uri: str, model_name: str) -> None:
        super().__init__(name="evaluator-mlflow", daemon=True)
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._model_name = model_name
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(maxsize=2)
        self._runs: dict[str, str | None] = {}
        self._lookup_failed_at: dict[str, float] = {}
        self.dropped = 0
        self.logged = 0

    def offer(self, snapshot: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait(snapshot)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning("MLflow is behind: %d live-metric logs dropped so far", self.dropped)

    def stop(self, timeout: float = 10.0) -> None:
        """Log what was offered, then end."""
        self._queue.put(None)
        self.join(timeout)

    def run(self) -> None:
        while True:
            snapshot = self._queue.get()
            if snapshot is None:
                return
            try:
                self.log(snapshot)
            except Exception:  # MLflow away or refusing: the next snapshot tries again
                logger.warning("logging live metrics to MLflow failed", exc_info=True)

    def run_id(self, version: str) -> str | None:
        """The run that produced ``version`` (cached; a failed lookup is retried after a minute)."""
        if version in self._runs:
            return self._runs[version]
        failed = self._lookup_failed_at.get(version)
        if failed is not None and time.monotonic() - failed < RUN_LOOKUP_RETRY_SECONDS:
            return None
        try:
            run_id = self._client.get_model_version(self._model_name, version).run_id or None
        except Exception as exc:
            logger.warning("no serving run for %s version %s: %s", self._model_name, version, exc)
            self._lookup_failed_at[version] = time.monotonic()
            return None
        self._runs[version] = run_id
        return run_id

    def log(self, snapshot: Mapping[str, Any]) -> None:
        for version, metrics in metrics_of(snapshot).items():
            run_id = self.run_id(version)
            if run_id is not None and metrics:
                self._client.log_batch(run_id, metrics=metrics)
                self.logged += 1
