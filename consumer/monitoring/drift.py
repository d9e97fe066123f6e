"""Drift monitoring: a batch hook that never slows the scoring thread.

``DriftMonitor`` is a ``BatchHook`` (``hook(result, handle)``, called by the scoring loop after each committed
batch; the admin API's /api/predict never feeds it: the window describes the stream). On the calling thread it
only appends to a buffer under a lock. It keeps the feature rows of the last ``DRIFT_WINDOW`` scored records
and, every few seconds when new rows arrived, computes the PSI of each feature against the serving version's
reference profile (``consumer.core.profile.psi_by_feature``) on its own thread. Results go to ``state.drift``
(read by /health and /api/model/drift) and to the ``housing_scorer_drift_psi{feature}`` gauge.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from typing import Any

from config.settings import Settings
from consumer.core.features import FeatureColumns, concat_columns, row_count, take_rows
from consumer.core.handle import ModelHandle
from consumer.core.profile import psi_by_feature
from consumer.core.scoring import BatchResult
from consumer.state import ScorerState
from consumer.workers import Worker

logger = logging.getLogger(__name__)


DRIFT_INTERVAL_SECONDS = 5.0
DRIFT_MIN_ROWS = 200
"""Below this many rows PSI is mostly sampling noise: no verdict yet (less when the window is smaller)."""


# --- drift ------------------------------------------------------------------------------------------------
class DriftMonitor(Worker):
    """Sliding window of recent feature rows; PSI against the serving version's reference profile."""

    def __init__(self, settings: Settings, state: ScorerState, *, interval: float = DRIFT_INTERVAL_SECONDS,
                 start: bool = True) -> None:
        super().__init__("drift-monitor")
        self.state = state
        self.window = settings.monitoring.drift_window
        self.threshold = settings.monitoring.alert_thresholds.get("drift_psi", 0.25)
        self.min_rows = min(DRIFT_MIN_ROWS, self.window)
        self.interval = interval
        self._lock = threading.Lock()
        self._batches: deque[FeatureColumns] = deque()
        self._rows = 0
        self._new_rows = 0
        self._seen = 0
        self.computed_at: float | None = None
        self.computed_version: str | None = None
        self.computed_rows = 0
        self.status = "warming_up"
        if start:
            self.start()

    def __call__(self, result: BatchResult, handle: ModelHandle) -> None:
        self.observe(result.features)

    def observe(self, features: FeatureColumns | None) -> None:
        """Add a batch's feature columns (cheap: a reference append, no copy)."""
        if features is None or (rows := row_count(features)) == 0:
            return
        with self._lock:
            self._batches.append(features)
            self._rows += rows
            self._new_rows += rows
            self._seen += rows
            # Drop whole old batches while the rest still fills the window.
            while self._batches and self._rows - row_count(self._batches[0]) >= self.window:
                self._rows -= row_count(self._batches.popleft())

    def compute(self) -> dict[str, float] | None:
        """PSI per feature over the window now (on the caller's thread); None when there is no verdict."""
        handle = self.state.models.current
        profile = handle.reference_profile if handle is not None else None
        with self._lock:
            batches = list(self._batches)
            self._new_rows = 0
        if handle is None or not profile:
            self.status = "no_reference_profile"
            return None
        rows = sum(row_count(batch) for batch in batches)
        if rows < self.min_rows:
            self.status = "warming_up"
            return None
        window = concat_columns(batches)
        window = take_rows(window, slice(max(0, rows - self.window), rows))  # the newest DRIFT_WINDOW rows
        values = psi_by_feature(profile, window)
        psi = {name: round(value, 6) for name, value in values.items() if math.isfinite(value)}
        self.state.drift = psi
        for name, value in psi.items():
            self.state.metrics.drift_psi.labels(feature=name).set(value)
        self.computed_at = time.time()
        self.computed_version = handle.version
        self.computed_rows = row_count(window)
        self.status = "ok"
        return psi

    def _run(self) -> None:
        while not self.sleep(self.interval):
            if self._new_rows == 0:
                continue
            try:
                self.compute()
            except Exception:  # a bad profile must not kill monitoring for good
                logger.exception("drift computation failed")

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready view for /api/model/drift."""
        psi = dict(self.state.drift)
        return {
            "enabled": True,
            "status": self.status,
            "window_size": self.window,
            "window_rows": self._rows,
            "rows_seen": self._seen,
            "min_rows": self.min_rows,
            "threshold": self.threshold,
            "psi": psi,
            "alerts": sorted(name for name, value in psi.items() if value > self.threshold),
            "computed_at": self.computed_at,
            "computed_rows": self.computed_rows,
            "model_version": self.computed_version,
        }

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
