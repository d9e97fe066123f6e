"""Prometheus metrics of one scorer process, on a registry of its own.

A registry per scorer (not the global default) lets tests run several scorers in one process. Names keep
the original API's (``housing_api_*``) and add the scorer's (``housing_scorer_*``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class BatchHistogram(Collector):
    """A Prometheus histogram fed a whole batch of values at once.

    ``Histogram.observe`` per record costs about a microsecond each on the scoring thread; this counts a
    batch into its buckets with one numpy call and exports the same ``_bucket``/``_count``/``_sum`` samples.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self._upper = np.array([*buckets, math.inf], dtype=np.float64)
        self._counts = np.zeros(len(self._upper), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        if not len(values):
            return
        # Bucket i counts values <= upper[i] (Prometheus "le"), cumulated at export.
        counts = np.bincount(np.searchsorted(self._upper, values, side="left"), minlength=len(self._upper))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts), self._sum
        buckets = [("+Inf" if math.isinf(upper) else repr(float(upper)), float(count))
                   for upper, count in zip(self._upper, cumulative, strict=True)]
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


class ScorerMetrics:
    """Every metric the scorer and its admin API export."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The original API's names.
        self.model_version = Gauge("housing_api_model_version", "Version of the model in use", ["name", "stage"],
                                   registry=r)
        self.mlflow_connection = Gauge("housing_api_mlflow_connection_status",
                                       "1 when the MLflow tracking server answers, else 0", registry=r)
        self.predictions_logged = Counter("housing_api_predictions_logged", "Predictions summarised to MLflow",
                                          registry=r)
        self.mlflow_batch_logs = Counter("housing_api_mlflow_batch_logs", "Prediction batches logged to MLflow",
                                         registry=r)
        self.mlflow_logs_dropped = Counter("housing_api_mlflow_logs_dropped",
                                           "Prediction batches not logged because the logging queue was full",
                                           registry=r)
        self.api_requests = Counter("housing_api_requests", "Admin API requests", ["method", "route", "status"],
                                    registry=r)
        self.api_predict_seconds = Histogram("housing_api_predict_seconds", "HTTP /api/predict latency",
                                             buckets=LATENCY_BUCKETS, registry=r)
        # The scorer's.
        self.records_consumed = Counter("housing_scorer_records_consumed", "Records read from the input topic",
                                        registry=r)
        self.records_scored = Counter("housing_scorer_records_scored", "Predictions produced",
                                      ["model_version"], registry=r)
        self.records_dead_lettered = Counter("housing_scorer_records_dead_lettered",
                                             "Records sent to the dead-letter topic", ["reason", "stage"], registry=r)
        self.batch_size = Histogram("housing_scorer_batch_size", "Records per scored batch", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.predict_seconds = Histogram("housing_scorer_predict_seconds", "Model predict time per batch",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.batch_seconds = Histogram("housing_scorer_batch_seconds",
                                       "Whole batch time: score, produce, commit", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.end_to_end_seconds = BatchHistogram("housing_scorer_produce_to_prediction_seconds",
                                                 "From the record's Kafka timestamp to its prediction being "
                                                 "committed", buckets=LATENCY_BUCKETS, registry=r)
        self.consumer_lag = Gauge("housing_scorer_consumer_lag", "Records behind the end of each partition",
                                  ["topic", "partition"], registry=r)
        self.transactions = Counter("housing_scorer_transactions", "Batch transactions by result", ["result"],
                                    registry=r)
        self.producer_replacements = Counter("housing_scorer_producer_replacements",
                                             "Transactional producers replaced by a new one, by reason", ["reason"],
                                             registry=r)
        self.reloads = Counter("housing_scorer_reloads", "Model reload attempts by result", ["result"], registry=r)
        self.reload_failures = Counter("housing_scorer_reload_failures",
                                       "Failed model reloads by reason (signature_mismatch, flavour_library_missing, "
                                       "load_failed, check_failed, registry_unavailable, ...)", ["reason"], registry=r)
        self.reload_seconds = Histogram("housing_scorer_reload_seconds", "Resolve + load + check time",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.shadow_abs_diff = Histogram("housing_scorer_shadow_abs_difference",
                                         "Mean absolute difference between champion and shadow per batch",
                                         buckets=(100, 1000, 5000, 10000, 25000, 50000, 100000, 250000),
                                         registry=r)
        self.shadow_failures = Counter("housing_scorer_shadow_failures", "Batches the shadow model failed on",
                                       registry=r)
        self.drift_psi = Gauge("housing_scorer_drift_psi", "Population stability index against the training profile",
                               ["feature"], registry=r)
        self.assigned_partitions = Gauge("housing_scorer_assigned_partitions", "Input partitions assigned",
                                         registry=r)
