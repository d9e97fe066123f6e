"""BatchHistogram exports what a prometheus_client Histogram fed value by value would."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from consumer.metrics import LATENCY_BUCKETS, BatchHistogram


def test_batch_histogram_matches_a_histogram_observed_per_value() -> None:
    rng = np.random.default_rng(7)
    # Exact bucket edges too: "le" is inclusive.
    values = np.concatenate([rng.exponential(0.3, 5000), np.array(LATENCY_BUCKETS), np.zeros(3), [50.0]])
    batch_registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    batched = BatchHistogram("lat_seconds", "latency", LATENCY_BUCKETS, batch_registry)
    reference = Histogram("lat_seconds", "latency", buckets=LATENCY_BUCKETS, registry=reference_registry)
    for chunk in np.array_split(values, 7):
        batched.observe_many(chunk)
        for value in chunk:
            reference.observe(float(value))
    batched.observe_many(np.empty(0))

    for le in [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]:
        expected = reference_registry.get_sample_value("lat_seconds_bucket", {"le": le})
        assert batch_registry.get_sample_value("lat_seconds_bucket", {"le": le}) == expected, le
    assert batch_registry.get_sample_value("lat_seconds_count") == len(values)
    assert batch_registry.get_sample_value("lat_seconds_sum") == pytest.approx(
        reference_registry.get_sample_value("lat_seconds_sum"))
