"""What the scoring loop, the model reloader and the admin API share inside one scorer process.

The scoring thread reads ``models.current`` once per batch; the reloader replaces it; the admin API reads
everything for /health, /ready and /api/model/info. Each field is either immutable and swapped as a whole
or guarded by a lock, so no reader sees a half-made value.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from config.settings import Settings
from consumer.core.features import FeatureColumns
from consumer.core.handle import ModelHandle
from consumer.metrics import ScorerMetrics
from consumer.workers import Worker


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of one reload attempt (from an event, a poll, the API or start-up)."""

    result: str
    """``loaded``, ``failed``, ``ignored`` (duplicate, stale or already loaded) or ``started``."""
    version: str | None
    detail: str = ""
    event_id: str | None = None
    load_seconds: float | None = None
    at: float = field(default_factory=time.time)
    reason: str | None = None
    """Why a ``failed`` one failed, as a code (``consumer.errors.ModelError.reason``: ``signature_mismatch``,
    ``flavour_library_missing``, ``load_failed``, ``check_failed``, ``registry_unavailable``...)."""

    def as_dict(self) -> dict[str, Any]:
        return {"result": self.result, "version": self.version, "detail": self.detail, "event_id": self.event_id,
                "load_seconds": self.load_seconds, "at": self.at, "reason": self.reason}


class DriftWindow(Protocol):
    """What the admin API needs of the drift monitor (consumer.monitoring.drift.DriftMonitor)."""

    def observe(self, features: FeatureColumns | None) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class PredictionLog(Protocol):
    """What the admin API needs of the prediction logger (consumer.monitoring.prediction_log.PredictionLogger)."""

    def add(self, predictions: np.ndarray, handle: ModelHandle, processing_ms: float | None = None) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ShadowLoad:
    """The last shadow load: its ReloadResult, the alias asked for and the version the shadow serves now."""

    result: ReloadResult
    alias: str
    serving: str | None


@dataclass(frozen=True)
class CanaryRoute:
    """What the scoring thread needs for the canary, swapped as a whole: the handle and its share of keys."""

    handle: ModelHandle
    fraction: float


@dataclass(frozen=True)
class CanaryView:
    """The canary as the fleet set it and as this instance serves it (/api/canary, /api/model/info)."""

    alias: str
    fraction: float
    """The share of keys configured (CANARY_FRACTION, or the registry tag PUT /api/canary wrote)."""
    version: str | None = None
    """The version serving as canary here (None: none: off, the alias missing, rejected or not loadable)."""
    detail: str = ""
    """Why this instance serves no canary, or what it serves."""
    rejected: tuple[str, ...] = ()
    """Versions a gate rolled back: never canaried again while the alias names them."""
    at: float = field(default_factory=time.time)


class ModelHolder:
    """The current model handle, the one before it (for rollback), and the shadow model if any."""

    def __init__(self, initial: ModelHandle | None = None) -> None:
        self._lock = threading.Lock()
        self._current = initial
        self._previous: ModelHandle | None = None
        self._shadow: ModelHandle | None = None
        self._canary: CanaryRoute | None = None
        self._history: deque[ModelHandle] = deque(maxlen=10)

    @property
    def current(self) -> ModelHandle | None:
        return self._current  # one reference read: atomic

    @property
    def previous(self) -> ModelHandle | None:
        return self._previous

    @property
    def shadow(self) -> ModelHandle | None:
        return self._shadow

    def swap(self, new: ModelHandle) -> ModelHandle | None:
        """Make ``new`` current; the scoring thread picks it up at its next batch. Returns the old one."""
        with self._lock:
            old = self._current
            if old is not None and old.version != new.version:
                self._previous = old
                self._history.append(old)
            self._current = new
            return old

    def set_shadow(self, handle: ModelHandle | None) -> None:
        self._shadow = handle

    @property
    def canary(self) -> CanaryRoute | None:
        """The canary and its share, or None: the champion scores every key."""
        return self._canary  # one reference read: atomic

    def set_canary(self, route: CanaryRoute | None) -> None:
        self._canary = route

    def history(self) -> list[ModelHandle]:
        with self._lock:
            return list(self._history)


class ScorerState:
    """Shared, observable state of one scorer process."""

    def __init__(self, settings: Settings, *, metrics: ScorerMetrics | None = None,
                 model: ModelHandle | None = None) -> None:
        self.settings = settings
        self.instance_id = settings.scorer.instance_id
        self.metrics = metrics or ScorerMetrics()
        self.models = ModelHolder(model)
        self.started_at = time.time()
        self._lock = threading.Lock()
        self.assignment: frozenset[tuple[str, int]] = frozenset()
        self.assignment_received = False
        self.consumer_running = False
        self.kafka_connected = False
        self.kafka_error: str | None = None
        self.lag: dict[tuple[str, int], int] = {}
        self.last_reload: ReloadResult | None = None
        self.mlflow_reachable: bool | None = None
        self.counts = {"consumed": 0, "scored": 0, "dead_lettered": 0, "batches": 0}
        self.fatal_error: str | None = None
        self.drift: dict[str, float] = {}
        self.drift_monitor: DriftWindow | None = None
        self.prediction_logger: PredictionLog | None = None
        self.last_reload_failure: ReloadResult | None = None
        """The last champion load that failed for the version itself (not an unreachable registry)."""
        self.shadow_load: ShadowLoad | None = None
        self.shadow_mean_abs_difference: float | None = None
        self.canary_view = CanaryView(settings.canary.alias, settings.canary.fraction, detail="not resolved yet")
        self.workers: list[Worker] = []
        """The background threads (reloader, registry poll, control listener, monitors): /health names a dead one."""
        if model is not None:
            self.on_model_loaded(model)

    # --- written by the scoring loop ---------------------------------------------------------------
    def set_assignment(self, partitions: frozenset[tuple[str, int]]) -> None:
        self.assignment = partitions
        self.assignment_received = True
        self.metrics.assigned_partitions.set(len(partitions))

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """The lag of each assigned partition; the gauge series of a partition no longer in it is removed (it
        moved to another member, which reports it), so no stale lag outlives the assignment."""
        with self._lock:
            gone = self.lag.keys() - lag.keys()
            self.lag = dict(lag)
        for topic, partition in gone:
            self.metrics.consumer_lag.remove(topic, str(partition))  # a series never set: nothing to remove
        for (topic, partition), behind in lag.items():
            self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(behind)

    def add_counts(self, consumed: int, scored: int, dead_lettered: int) -> None:
        with self._lock:
            self.counts["consumed"] += consumed
            self.counts["scored"] += scored
            self.counts["dead_lettered"] += dead_lettered
            self.counts["batches"] += 1

    # --- written by the reloader -------------------------------------------------------------------
    def on_model_loaded(self, handle: ModelHandle) -> None:
        """Swap in a checked model and publish its version as a metric."""
        old = self.models.swap(handle)
        if old is not None:
            self.metrics.model_version.labels(name=old.name, stage=old.stage or "None").set(0)
        self.metrics.model_version.labels(name=handle.name, stage=handle.stage or "None").set(handle.version_number)

    def record_reload(self, result: ReloadResult) -> None:
        self.last_reload = result
        self.metrics.reloads.labels(result=result.result).inc()
        if result.result == "failed":
            self.metrics.reload_failures.labels(reason=result.reason or "load_failed").inc()
        if result.load_seconds is not None and result.result == "loaded":
            self.metrics.reload_seconds.observe(result.load_seconds)

    def set_mlflow_reachable(self, reachable: bool) -> None:
        self.mlflow_reachable = reachable
        self.metrics.mlflow_connection.set(1 if reachable else 0)

    # --- read by the admin API ---------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """A model is loaded, the consumer holds its assignment, and Kafka is not known to be away (``kafka_error``
        set while ``kafka_connected`` is False)."""
        return (self.models.current is not None and self.consumer_running and self.assignment_received
                and (self.kafka_connected or self.kafka_error is None))

    def total_lag(self) -> int:
        with self._lock:
            return sum(self.lag.values())

    def uptime_seconds(self) -> float:
        return time.time() - self.started_at
