"""Health and readiness of the scorer as the admin API reports them (/health, /ready).

``health_report`` and ``readiness_report`` are pure over the shared state. ``HealthMonitor`` holds what they
cannot read from the state at request time: MLflow's reachability (probed in the background, so /health
never waits on MLflow), how long Kafka has been unreachable, and the dead-letter counts of the last minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from admin_api.host import ScoringService
from config.mlflow import mlflow_answers
from config.settings import Settings
from consumer.state import ScorerState
from consumer.workers import Worker

logger = logging.getLogger(__name__)

KAFKA_UNHEALTHY_SECONDS: Final = 60.0
"""Kafka unreachable for longer than this makes the scorer unhealthy (shorter: degraded)."""
HEALTH_REFRESH_SECONDS: Final = 5.0
ERROR_RATE_WINDOW_SECONDS: Final = 60.0
ERROR_RATE_MIN_RECORDS: Final = 100
"""Fewer records than this in the window: no error-rate verdict (a handful of bad records is not a trend)."""
WORKER_ROLES: Final = {
    "model-reloader": "model-update events, registry polls and API reloads are no longer answered",
    "registry-poller": "the registry is no longer polled",
    "control-listener": "model-update events on the control topic are no longer read",
    "prediction-logger": "prediction summaries are no longer logged to MLflow",
    "drift-monitor": "drift is no longer computed",
    "shadow-monitor": "shadow predictions are no longer compared",
}
"""What stops with each background worker (``state.workers``), for the /health reason."""


class HealthMonitor:
    """Refreshes the cached facts /health needs (MLflow reachability, Kafka outage, DLQ rate) in the background.

    /health itself never calls MLflow: it reads what this monitor found at most ``interval`` seconds ago.
    """

    def __init__(self, settings: Settings, state: ScorerState, *, interval: float = HEALTH_REFRESH_SECONDS,
                 service: ScoringService | None = None) -> None:
        self.settings = settings
        self.state = state
        self.service = service
        self.interval = interval
        self.kafka_down_since: float | None = None
        self._samples: deque[tuple[float, int, int]] = deque()
        self.refreshed_at: float | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("health refresh failed")
            await asyncio.sleep(self.interval)

    async def refresh(self) -> None:
        if self.settings.mlflow.enabled:
            reachable = await asyncio.to_thread(mlflow_answers, self.settings.mlflow.tracking_uri, 2.0,
                                                local_store_answers=True)
            self.state.set_mlflow_reachable(reachable)
        self.observe(time.monotonic())
        self.refreshed_at = time.time()

    def observe(self, now: float) -> None:
        """Note Kafka's connection and the counters (called every refresh)."""
        state = self.state
        if self.consumer_expected and not state.kafka_connected:
            self.kafka_down_since = self.kafka_down_since or now
        else:
            self.kafka_down_since = None
        counts = state.counts
        self._samples.append((now, counts["consumed"], counts["dead_lettered"]))
        while self._samples and now - self._samples[0][0] > ERROR_RATE_WINDOW_SECONDS:
            self._samples.popleft()

    @property
    def consumer_expected(self) -> bool:
        """A scoring loop should be running (False when the API runs alone, e.g. in tests)."""
        return self.service is not None or self.state.consumer_running

    def error_rate_percent(self) -> float | None:
        """Dead-lettered / consumed over the last minute, in percent; None without enough records."""
        if len(self._samples) < 2:
            return None
        _, consumed0, dead0 = self._samples[0]
        _, consumed1, dead1 = self._samples[-1]
        consumed = consumed1 - consumed0
        if consumed < ERROR_RATE_MIN_RECORDS:
            return None
        return round(100.0 * (dead1 - dead0) / consumed, 3)

    def report(self, now: float | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /health."""
        return health_report(self.settings, self.state, kafka_down_for=self._kafka_down_for(now),
                             consumer_expected=self.consumer_expected, error_rate=self.error_rate_percent())

    def _kafka_down_for(self, now: float | None) -> float | None:
        if self.kafka_down_since is None:
            return None
        return (now if now is not None else time.monotonic()) - self.kafka_down_since


def _connection_label(reachable: bool | None, enabled: bool) -> str:
    if not enabled:
        return "disabled"
    if reachable is None:
        return "unknown"
    return "healthy" if reachable else "unhealthy"


def health_report(settings: Settings, state: ScorerState, *, kafka_down_for: float | None,
                  consumer_expected: bool, error_rate: float | None) -> tuple[int, dict[str, Any]]:
    """The /health verdict (pure over the state): healthy, degraded (200) or unhealthy (503), with reasons."""
    thresholds = settings.monitoring.alert_thresholds
    handle = state.models.current
    unhealthy: list[str] = []
    degraded: list[str] = []
    if handle is None:
        unhealthy.append("no model is loaded")
    if state.fatal_error:
        unhealthy.append(f"the scoring loop stopped: {state.fatal_error}")
    workers = worker_states(state.workers)
    unhealthy.extend(f"background worker {name} is no longer alive: {WORKER_ROLES.get(name, 'its work stopped')}; "
                     "restart the scorer" for name, verdict in workers.items() if verdict == "dead")
    if kafka_down_for is not None:
        message = f"Kafka unreachable for {kafka_down_for:.0f}s: {state.kafka_error or 'no connection'}"
        (unhealthy if kafka_down_for >= KAFKA_UNHEALTHY_SECONDS else degraded).append(message)
    if handle is not None and handle.source == "fallback":
        degraded.append(f"serving the fallback model file {handle.uri}, not the registry")
    if settings.mlflow.enabled and state.mlflow_reachable is False:
        degraded.append(f"MLflow at {settings.mlflow.tracking_uri} is unreachable")
    last = state.last_reload
    if last is not None and last.result == "failed":
        why = f" ({last.reason})" if last.reason else ""
        degraded.append(f"the last model reload failed{why}: {last.detail}")
    drift_limit = thresholds.get("drift_psi")
    drifting = {k: v for k, v in state.drift.items() if drift_limit is not None and v > drift_limit}
    if drifting:
        worst = max(drifting, key=lambda k: drifting[k])
        degraded.append(f"feature drift: PSI of {worst} is {drifting[worst]:.3f} (> {drift_limit}); "
                        f"{len(drifting)} feature(s) above the threshold")
    error_limit = thresholds.get("error_rate_percent")
    if error_rate is not None and error_limit is not None and error_rate > error_limit:
        degraded.append(f"dead-letter rate {error_rate:.2f}% over the last minute (> {error_limit}%)")
    status = "unhealthy" if unhealthy else ("degraded" if degraded else "healthy")
    mlflow_label = _connection_label(state.mlflow_reachable, settings.mlflow.enabled)
    if not consumer_expected:
        kafka_label = "not_running"
    elif kafka_down_for is not None or not state.kafka_connected:
        kafka_label = "disconnected"
    else:
        kafka_label = "connected"
    body = {
        "status": status,
        "model_loaded": handle is not None,
        "model_version": handle.version if handle else None,
        "model_name": handle.name if handle else settings.model.name,
        "model_source": handle.source if handle else None,
        "mlflow_connection": mlflow_label,
        "registry_access": mlflow_label if handle is None or handle.source == "registry" or mlflow_label != "healthy"
        else "degraded",
        "kafka_connection": kafka_label,
        "kafka_error": state.kafka_error,
        "consumer_lag": state.total_lag(),
        "assigned_partitions": len(state.assignment),
        "last_reload": last.as_dict() if last is not None else None,
        "error_rate_percent": error_rate,
        "drift_alerts": sorted(drifting),
        "uptime_seconds": round(state.uptime_seconds(), 1),
        "instance_id": state.instance_id,
        "workers": workers,
        "reasons": unhealthy + degraded,
    }
    return (503 if unhealthy else 200), body


def worker_states(workers: Iterable[Worker]) -> dict[str, str]:
    """``{name: alive | dead | stopped | not_started}``: dead is a started thread that ended unasked."""
    states: dict[str, str] = {}
    for worker in workers:
        if worker.alive:
            states[worker.name] = "alive"
        elif not worker.started:
            states[worker.name] = "not_started"
        else:
            states[worker.name] = "stopped" if worker.stopping else "dead"
    return states


def liveness_report(state: ScorerState) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /live: 503 only for what a restart cures, a stopped scoring loop or a dead worker.

    Unlike /health it ignores Kafka and MLflow outages: the scorer waits them out and resumes by itself, and
    restarting every scorer of a fleet during a broker outage would only add start-ups that fail.
    """
    dead = sorted(name for name, verdict in worker_states(state.workers).items() if verdict == "dead")
    reasons = [f"the scoring loop stopped: {state.fatal_error}"] if state.fatal_error else []
    reasons.extend(f"background worker {name} is no longer alive" for name in dead)
    return (503 if reasons else 200), {"alive": not reasons, "reasons": reasons}


def readiness_report(state: ScorerState) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /ready: 200 once a model is loaded and the consumer holds its assignment."""
    handle = state.models.current
    body = {"ready": state.ready, "model_loaded": handle is not None,
            "model_version": handle.version if handle else None,
            "consumer_running": state.consumer_running, "assignment_received": state.assignment_received,
            "assigned_partitions": len(state.assignment)}
    return (200 if state.ready else 503), body
