"""Prediction logging to MLflow: the original API's prediction logging, sized for a stream.

``PredictionLogger`` is a ``BatchHook`` that never slows the scoring thread: on the calling thread it only adds
to a summary under a lock. Predictions are summarised (count, mean, std, min, max, model version, mean
processing time when known) every ``MLFLOW_BATCH_SIZE`` predictions and per model version, each summary spanning
at least ``MLFLOW_LOG_MIN_SECONDS`` (so at 35,000 predictions/s a scorer makes one MLflow call per interval, not
seven a second, each ~3 ms of the scorer's CPU and more of the tracking server's); summaries go through a
bounded queue to a worker that logs them to the ``MLFLOW_EXPERIMENT_NAME`` experiment. Layout: one long-lived
run per scorer instance (run name ``scorer-<instance id>``), each summary one step of its metrics. A full queue
drops the summary and counts it in ``housing_api_mlflow_logs_dropped_total``; scoring never waits for MLflow.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from config.mlflow import configure_mlflow_client
from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult
from consumer.state import ScorerState
from consumer.workers import Worker
from schemas.versions import version_number

logger = logging.getLogger(__name__)

LOG_QUEUE_SIZE = 100
LOG_RETRY_SECONDS = 30.0
"""After a failed MLflow call, summaries arriving within this time are dropped (counted) instead of each
waiting out MLflow's own retries: the queue stays bounded and the worker never falls far behind."""


@dataclass(frozen=True)
class PredictionSummary:
    """One logged batch of predictions, all made by one model version."""

    model_name: str
    model_version: str
    count: int
    mean: float
    std: float
    minimum: float
    maximum: float
    processing_time_ms_mean: float | None
    """Mean per-request processing time of the HTTP predictions in it; None for stream-only summaries."""
    first_at: float
    last_at: float

    def metrics(self) -> dict[str, float]:
        values = {
            "prediction_count": float(self.count),
            "prediction_mean": self.mean,
            "prediction_std": self.std,
            "prediction_min": self.minimum,
            "prediction_max": self.maximum,
            "model_version": float(version_number(self.model_version)),
            "batch_seconds": max(0.0, self.last_at - self.first_at),
        }
        if self.processing_time_ms_mean is not None:
            values["processing_time_ms_mean"] = self.processing_time_ms_mean
        return {k: v for k, v in values.items() if math.isfinite(v)}



class _Pending:
    """Running sums of the summary being filled."""

    def __init__(self, name: str, version: str, clock: Callable[[], float]) -> None:
        self.name = name
        self.version = version
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.processing_ms = 0.0
        self.processing_n = 0
        self.clock = clock
        self.first_at = clock()
        self.last_at = self.first_at

    def add(self, predictions: np.ndarray, processing_ms: float | None) -> None:
        finite = predictions[np.isfinite(predictions)]
        if finite.size:
            self.count += int(finite.size)
            self.total += float(finite.sum())
            self.total_sq += float(np.square(finite).sum())
            self.minimum = min(self.minimum, float(finite.min()))
            self.maximum = max(self.maximum, float(finite.max()))
        if processing_ms is not None:
            self.processing_ms += processing_ms
            self.processing_n += 1
        self.last_at = self.clock()

    def summary(self) -> PredictionSummary:
        mean = self.total / self.count
        variance = max(0.0, self.total_sq / self.count - mean * mean)
        return PredictionSummary(
            model_name=self.name, model_version=self.version, count=self.count, mean=mean,
            std=math.sqrt(variance), minimum=self.minimum, maximum=self.maximum,
            processing_time_ms_mean=self.processing_ms / self.processing_n if self.processing_n else None,
            first_at=self.first_at, last_at=self.last_at,
        )


class PredictionLogger(Worker):
    """Summarise predictions in batches and log them to MLflow from a worker thread."""

    def __init__(self, settings: Settings, state: ScorerState, *, client: Any = None,
                 queue_size: int = LOG_QUEUE_SIZE, start: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        """:param clock: wall-clock seconds (summaries' spans and timestamps); tests pass their own."""
        super().__init__("prediction-logger")
        self._clock = clock
        self.settings = settings
        self.state = state
        self.batch_size = settings.experiment.batch_size
        self.min_seconds = settings.experiment.min_seconds
        self.experiment_name = settings.experiment.name
        self._client = client
        self._lock = threading.Lock()
        self._pending: _Pending | None = None
        self._queue: queue.Queue[PredictionSummary] = queue.Queue(maxsize=queue_size)
        self._run_id: str | None = None
        self._step = 0
        self._failed_at: float | None = None
        self.logged_batches = 0
        self.logged_predictions = 0
        self.dropped = 0
        self.last_error: str | None = None
        if start:
            self.start()

    @property
    def run_id(self) -> str | None:
        return self._run_id

    # --- producer side (scoring thread, HTTP workers) ---------------------------------------------------
    def __call__(self, result: BatchResult, handle: ModelHandle) -> None:
        self.add(result.predictions, handle)

    def add(self, predictions: np.ndarray, handle: ModelHandle, processing_ms: float | None = None) -> bool:
        """Count predictions into the current summary; False if the logger is stopped."""
        if self.stopping:
            return False
        if len(predictions) == 0:
            return True
        with self._lock:
            pending = self._pending
            if pending is not None and (pending.version != handle.version or pending.name != handle.name):
                self._flush_locked()  # one summary never mixes model versions
                pending = None
            if pending is None:
                pending = self._pending = _Pending(handle.name, handle.version, self._clock)
            pending.add(np.asarray(predictions, dtype=np.float64), processing_ms)
            if self._due(pending, pending.last_at):
                self._flush_locked()
        return True

    def _due(self, pending: _Pending, now: float) -> bool:
        return pending.count >= self.batch_size and now - pending.first_at >= self.min_seconds

    def _flush_if_due(self) -> None:
        """A full summary whose interval ended with no prediction since (the stream slowed or stopped)."""
        with self._lock:
            pending = self._pending
            if pending is not None and self._due(pending, self._clock()):
                self._flush_locked()

    def flush(self) -> None:
        """Queue the partly filled summary now (at shutdown, and for tests)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None or pending.count == 0:
            return
        try:
            self._queue.put_nowait(pending.summary())
        except queue.Full:
            self._drop("the logging queue is full")

    def _drop(self, why: str) -> None:
        self.dropped += 1
        self.state.metrics.mlflow_logs_dropped.inc()
        if self.dropped == 1 or self.dropped % 100 == 0:
            logger.warning("prediction summary not logged to MLflow (%s); %d dropped so far", why, self.dropped)

    # --- worker -------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:  # imported now, not while the first summary is due: importing holds the GIL for ~1 s while scoring
            import mlflow.entities  # noqa: F401

            self._mlflow()
        except Exception as exc:  # the first summary tries again and reports it
            logger.debug("MLflow client not prepared: %s", exc)
        while not (self.stopping and self._queue.empty()):
            try:
                summary = self._queue.get(timeout=0.2)
            except queue.Empty:
                self._flush_if_due()
                continue
            try:
                self._log_one(summary)
            finally:
                self._queue.task_done()

    def _log_one(self, summary: PredictionSummary) -> None:
        if self._failed_at is not None and time.monotonic() - self._failed_at < LOG_RETRY_SECONDS:
            self._drop(f"MLflow failed recently: {self.last_error}")
            return
        try:
            self.log_summary(summary)
        except Exception as exc:
            self._failed_at = time.monotonic()
            self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            self._run_id = None  # look the run up again once MLflow is back
            self._drop(f"MLflow call failed: {self.last_error}")
            return
        self._failed_at = None
        self.last_error = None

    def _mlflow(self) -> Any:
        if self._client is None:
            configure_mlflow_client()
            from mlflow.tracking import MlflowClient  # deferred: importing MLflow holds the GIL for ~1 s

            uri = self.settings.mlflow.tracking_uri
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _ensure_run(self) -> str:
        if self._run_id is not None:
            return self._run_id
        from mlflow.exceptions import MlflowException

        client = self._mlflow()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(self.experiment_name)
            except MlflowException:  # another scorer created it just now
                experiment = client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
        instance = self.state.instance_id
        run = client.create_run(experiment_id, run_name=f"scorer-{instance}",
                                tags={"scorer.instance_id": instance, "model_name": self.settings.model.name,
                                      "kind": "prediction_log"})
        self._run_id = str(run.info.run_id)
        client.log_param(self._run_id, "batch_size", self.batch_size)
        return self._run_id

    def log_summary(self, summary: PredictionSummary) -> None:
        """Log one summary as the next step of this instance's run (blocking; the worker calls it)."""
        from mlflow.entities import Metric, RunTag

        run_id = self._ensure_run()
        timestamp = int(summary.last_at * 1000)
        metrics = [Metric(key, value, timestamp, self._step) for key, value in summary.metrics().items()]
        tags = [RunTag("model_version", summary.model_version)]
        self._mlflow().log_batch(run_id, metrics=metrics, tags=tags)
        self._step += 1
        self.logged_batches += 1
        self.logged_predictions += summary.count
        self.state.metrics.mlflow_batch_logs.inc()
        self.state.metrics.predictions_logged.inc(summary.count)

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued summary has been handled (logged or dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return self._queue.unfinished_tasks == 0

    def stop(self, timeout: float = 10.0) -> None:
        """Queue the partial summary, let the worker drain the queue (bounded), end the run."""
        self.flush()
        super().stop(timeout)
        if self._run_id is not None:
            try:
                self._mlflow().set_terminated(self._run_id)
            except Exception as exc:
                logger.warning("could not end the prediction-log run %s: %s", self._run_id, exc)
            self._run_id = None

    def describe(self) -> dict[str, Any]:
        return {"enabled": True, "experiment": self.experiment_name, "batch_size": self.batch_size,
                "run_id": self._run_id, "logged_batches": self.logged_batches,
                "logged_predictions": self.logged_predictions, "dropped": self.dropped,
                "queued": self._queue.qsize(), "last_error": self.last_error}
