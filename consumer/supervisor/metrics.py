"""The parent's /metrics: its own metrics plus every worker's exposition, each sample labelled ``worker="n"``.

Each worker keeps its own registry (``consumer.metrics.ScorerMetrics``) and serves it on its loopback admin
API; the parent scrapes them when it is scraped and relabels. Nothing is summed: counters, gauges and
histograms of different workers stay separate series (``sum without (worker)`` in PromQL adds them up), so a
gauge such as ``housing_scorer_consumer_lag`` keeps its meaning per worker and a restarted worker's counters
start from zero like any restarted process's (``rate()`` handles the reset). This is simpler than
prometheus_client's multiprocess mode, which needs a shared directory, a mode per gauge and would not cover
the scorer's custom batch histogram collector.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

WORKER_LABEL = "worker"


class SupervisorMetrics:
    """The parent's own metrics, on a registry of its own."""

    def __init__(self, workers: int) -> None:
        self.registry = CollectorRegistry()
        self.workers = Gauge("housing_supervisor_workers", "Scoring worker processes this parent runs",
                             registry=self.registry)
        self.workers.set(workers)
        self.worker_up = Gauge("housing_supervisor_worker_up", "1 while the worker's process runs, else 0",
                               [WORKER_LABEL], registry=self.registry)
        self.restarts = Counter("housing_supervisor_worker_restarts",
                                "Workers started again after they ended unexpectedly, by worker and how they ended",
                                [WORKER_LABEL, "reason"], registry=self.registry)
        self.scrape_failures = Counter("housing_supervisor_worker_scrape_failures",
                                       "Worker /metrics the parent could not read while it was scraped",
                                       [WORKER_LABEL], registry=self.registry)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge_expositions(expositions: Mapping[int, str]) -> list[Metric]:
    """The families of every worker's text exposition, each sample labelled with its worker index.

    A family keeps the help and type of the first worker that has it; a family of the same name but another
    type in a later worker (two versions of the scorer side by side) is left out rather than mixed.

    :param expositions: worker index -> the text its /metrics answered.
    """
    merged: dict[str, Metric] = {}
    for index in sorted(expositions):
        for family in text_string_to_metric_families(expositions[index]):
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            elif target.type != family.type:
                continue
            for sample in family.samples:
                target.samples.append(Sample(sample.name, {**sample.labels, WORKER_LABEL: str(index)},
                                             sample.value, sample.timestamp, sample.exemplar))
    return list(merged.values())


def render(own: CollectorRegistry, expositions: Mapping[int, str]) -> bytes:
    """The parent's /metrics body: its own registry, then the merged workers' families (text format 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merge_expositions(expositions)))
    return generate_latest(own) + generate_latest(registry)
