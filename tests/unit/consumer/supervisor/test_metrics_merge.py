"""The parent's /metrics: every worker's exposition relabelled worker="n", nothing summed, its own metrics first."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.metrics import ScorerMetrics
from consumer.supervisor.metrics import SupervisorMetrics, merge_expositions, render


def worker_text(scored: float, lag: float) -> str:
    registry = CollectorRegistry()
    Counter("housing_scorer_records_scored", "Predictions produced", ["model_version"],
            registry=registry).labels("3").inc(scored)
    Gauge("housing_scorer_consumer_lag", "lag", ["topic", "partition"], registry=registry).labels("t", "0").set(lag)
    Histogram("housing_scorer_batch_seconds", "batch", buckets=(0.1, 1.0), registry=registry).observe(0.5)
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_each_workers_samples_keep_their_values_under_a_worker_label() -> None:
    merged = render(CollectorRegistry(), {0: worker_text(10, 4), 1: worker_text(25, 7)}).decode()
    found = samples(merged)
    assert found[("housing_scorer_records_scored_total", frozenset({("model_version", "3"), ("worker", "0")}))] == 10
    assert found[("housing_scorer_records_scored_total", frozenset({("model_version", "3"), ("worker", "1")}))] == 25
    # Gauges are per worker, never added up or overwritten by the other worker's value.
    assert found[("housing_scorer_consumer_lag", frozenset({("topic", "t"), ("partition", "0"),
                                                             ("worker", "0")}))] == 4
    assert found[("housing_scorer_consumer_lag", frozenset({("topic", "t"), ("partition", "0"),
                                                             ("worker", "1")}))] == 7
    assert found[("housing_scorer_batch_seconds_bucket", frozenset({("le", "1.0"), ("worker", "1")}))] == 1
    # Every sample names its worker.
    assert all(dict(labels).get("worker") in {"0", "1"} for _, labels in found)


def test_one_help_and_type_per_family_whatever_the_number_of_workers() -> None:
    merged = render(CollectorRegistry(), {0: worker_text(1, 1), 1: worker_text(2, 2), 2: worker_text(3, 3)}).decode()
    assert merged.count("# TYPE housing_scorer_records_scored_total counter") == 1
    assert merged.count("# TYPE housing_scorer_batch_seconds histogram") == 1
    assert merged.count("# TYPE housing_scorer_consumer_lag gauge") == 1


def test_the_real_scorer_registry_round_trips_including_the_batch_histogram() -> None:
    import numpy as np

    metrics = ScorerMetrics()
    metrics.records_consumed.inc(5)
    metrics.end_to_end_seconds.observe_many(np.array([0.001, 0.3]))
    text = generate_latest(metrics.registry).decode()
    found = samples(render(CollectorRegistry(), {3: text}).decode())
    assert found[("housing_scorer_records_consumed_total", frozenset({("worker", "3")}))] == 5
    assert found[("housing_scorer_produce_to_prediction_seconds_count", frozenset({("worker", "3")}))] == 2
    assert len(found) == len(samples(text))  # nothing lost


def test_the_parents_own_metrics_come_with_the_workers() -> None:
    own = SupervisorMetrics(2)
    own.restarts.labels("1", "killed by SIGKILL").inc()
    found = samples(render(own.registry, {0: worker_text(1, 1)}).decode())
    assert found[("housing_supervisor_worker_restarts_total",
                  frozenset({("worker", "1"), ("reason", "killed by SIGKILL")}))] == 1
    assert found[("housing_supervisor_workers", frozenset())] == 2


def test_a_family_whose_type_differs_in_a_later_worker_is_not_mixed_in() -> None:
    registry = CollectorRegistry()
    Gauge("housing_scorer_consumer_lag", "lag now a counter-less gauge", registry=registry).set(1)
    other = CollectorRegistry()
    Counter("housing_scorer_consumer_lag", "lag as a counter", registry=other).inc(9)
    families = {f.name: f for f in merge_expositions({0: generate_latest(registry).decode(),
                                                      1: generate_latest(other).decode()})}
    lag = families["housing_scorer_consumer_lag"]
    assert lag.type == "gauge"
    assert {s.labels["worker"] for s in lag.samples} == {"0"}
