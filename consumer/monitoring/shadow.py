"""Shadow-scoring metrics: how far the challenger's predictions are from the champion's.

A BatchHook hands each committed batch's encoded predictions to a worker thread (the scoring thread never
waits: when the queue is full the batch is skipped and counted). The worker decodes them and observes the
mean absolute difference between ``prediction`` and ``shadow_prediction`` per batch
(``housing_scorer_shadow_abs_difference``); a batch scored while a shadow model was set but carrying no
shadow predictions counts as a shadow failure (``housing_scorer_shadow_failures``).

The shadow may be of another flavour than the champion (a custom pyfunc beside a scikit-learn pipeline): both
are handles scored on the same batch columns (``consumer.core.scoring.score_batch``), each building its own input.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence

import numpy as np

from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult
from consumer.state import ScorerState
from consumer.workers import Worker
from schemas.codecs import decode_prediction, registry_client
from schemas.errors import SchemaError

logger = logging.getLogger(__name__)


def mean_abs_difference(pairs: Sequence[tuple[float, float | None]]) -> float | None:
    """Mean |champion - shadow| over the rows that have a shadow prediction; None when none has."""
    values = [(p, s) for p, s in pairs if s is not None]
    if not values:
        return None
    array = np.asarray(values, dtype=np.float64)
    return float(np.mean(np.abs(array[:, 0] - array[:, 1])))


class ShadowMonitor(Worker):
    """The batch hook plus its worker; ``stop()`` ends the worker."""

    def __init__(self, state: ScorerState, *, schema_registry_url: str | None = None, max_pending: int = 64) -> None:
        super().__init__("shadow-monitor")
        self.state = state
        self._registry = registry_client(schema_registry_url)
        self._queue: queue.Queue[tuple[list[bytes], bool] | None] = queue.Queue(maxsize=max_pending)
        self.batches = 0
        self.skipped = 0
        self.last_difference: float | None = None

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)

    def _wake(self) -> None:
        try:
            self._queue.put(None, timeout=5.0)
        except queue.Full:
            pass

    def hook(self, result: BatchResult, handle: ModelHandle) -> None:
        """BatchHook: on the scoring thread, so it only queues."""
        if not result.scored:
            return
        expected = self.state.models.shadow is not None
        try:
            self._queue.put_nowait(([s.value for s in result.scored], expected))
        except queue.Full:
            self.skipped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            values, expected = item
            try:
                self._observe(values, expected)
            except Exception:
                logger.exception("shadow metrics failed for a batch")

    def _observe(self, values: list[bytes], expected: bool) -> None:
        pairs: list[tuple[float, float | None]] = []
        for value in values:
            try:
                decoded = decode_prediction(value, self._registry)
            except SchemaError:
                continue
            shadow = decoded.get("shadow_prediction")
            pairs.append((float(decoded["prediction"]), None if shadow is None else float(shadow)))
        difference = mean_abs_difference(pairs)
        metrics = self.state.metrics
        self.batches += 1
        if difference is None:
            if expected:
                metrics.shadow_failures.inc()
            return
        metrics.shadow_abs_diff.observe(difference)
        self.last_difference = difference
        self.state.shadow_mean_abs_difference = difference
