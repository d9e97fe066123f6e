"""The evaluator's Prometheus view, rendered from its latest snapshot at each scrape (a registry of its own).

Gauges per model version and role, ``window`` = ``sliding`` (the last EVALUATION_WINDOW_SECONDS) or
``since_start`` (since the version's first matched pair; it survives restarts through the checkpoint):
``housing_scorer_live_rmse``, ``_mae``, ``_bias``, ``_mape`` (percent), ``_matched`` (pairs) and
``housing_scorer_live_join_lag_seconds`` (mean observed_at - scored_at of the window's pairs). Counters, restored
from the checkpoint so they never go back: ``housing_scorer_live_unmatched_total{kind}``,
``housing_scorer_live_outcomes_dead_lettered_total{reason}``, ``housing_scorer_live_matched_total``,
``housing_scorer_live_bad_predictions_total``. Gauges: ``housing_scorer_live_pending{side}``,
``housing_scorer_live_watermark_seconds``, ``housing_scorer_live_input_lag{topic}`` and
``housing_scorer_live_checkpoint_bytes``; ``housing_scorer_live_checkpoints_total`` counts this process's commits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PER_VERSION = (("rmse", "RMSE of prediction vs. observed outcome"),
               ("mae", "mean absolute error"),
               ("bias", "mean error (prediction - actual)"),
               ("mape", "mean absolute percentage error (pairs with actual >= 1)"),
               ("matched", "matched prediction/outcome pairs"))


class EvaluatorMetrics(Collector):
    """Holds the latest snapshot and the process-level figures; renders them on collect."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._snapshot: Mapping[str, Any] | None = None
        self._lag: dict[str, int] = {}
        self._checkpoint_bytes = 0
        self.checkpoints = Counter("housing_scorer_live_checkpoints_total",
                                   "checkpoints committed by this evaluator process", registry=self.registry)
        self.registry.register(self)

    def update(self, snapshot: Mapping[str, Any], *, lag: Mapping[str, int], checkpoint_bytes: int) -> None:
        with self._lock:
            self._snapshot = snapshot
            self._lag = dict(lag)
            self._checkpoint_bytes = checkpoint_bytes

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot, lag, size = self._snapshot, dict(self._lag), self._checkpoint_bytes
        if snapshot is None:
            return
        labels = ["model_version", "role", "window"]
        families = {name: GaugeMetricFamily(f"housing_scorer_live_{name}", help_text, labels=labels)
                    for name, help_text in PER_VERSION}
        join_lag = GaugeMetricFamily("housing_scorer_live_join_lag_seconds",
                                     "mean time from prediction to its outcome, over the sliding window",
                                     labels=["model_version", "role"])
        for entry in snapshot["versions"]:
            for window in ("window", "since_start"):
                block = entry[window]
                label_values = [entry["model_version"], entry["role"], "sliding" if window == "window" else window]
                for name, _ in PER_VERSION:
                    value = block["count"] if name == "matched" else block[name]
                    if value is not None:
                        families[name].add_metric(label_values, float(value))
            delay = entry["window"]["mean_delay_seconds"]
            if delay is not None:
                join_lag.add_metric([entry["model_version"], entry["role"]], float(delay))
        yield from families.values()
        yield join_lag
        unmatched = CounterMetricFamily("housing_scorer_live_unmatched", "rows that fell out of the join, by kind",
                                        labels=["kind"])
        for kind, n in snapshot["unmatched"].items():
            unmatched.add_metric([kind], float(n))
        yield unmatched
        dead = CounterMetricFamily("housing_scorer_live_outcomes_dead_lettered",
                                   "outcomes sent to the outcomes dead-letter topic, by reason", labels=["reason"])
        for reason, n in snapshot["dead_lettered"].items():
            dead.add_metric([reason], float(n))
        yield dead
        yield CounterMetricFamily("housing_scorer_live_matched", "prediction/outcome pairs matched",
                                  value=float(snapshot["matched"]))
        yield CounterMetricFamily("housing_scorer_live_bad_predictions", "prediction messages that could not be read",
                                  value=float(snapshot["bad_predictions"]))
        pending = GaugeMetricFamily("housing_scorer_live_pending", "rows waiting for their other half",
                                    labels=["side"])
        for side, n in snapshot["pending"].items():
            pending.add_metric([side], float(n))
        yield pending
        yield GaugeMetricFamily("housing_scorer_live_watermark_seconds", "the join's clock (event time)",
                                value=snapshot["watermark"] / 1000.0)
        lag_family = GaugeMetricFamily("housing_scorer_live_input_lag", "messages not read yet, per input topic",
                                       labels=["topic"])
        for topic, n in lag.items():
            lag_family.add_metric([topic], float(n))
        yield lag_family
        yield GaugeMetricFamily("housing_scorer_live_checkpoint_bytes", "size of the last checkpoint", value=size)
