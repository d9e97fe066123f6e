"""The canary's health besides its accuracy, from the topics the evaluator reads: failures, non-finite
predictions and prediction drift per model version, over the same sliding window as the live stats. Pure.

Where each signal comes from (no scorer change: both are already on topics):

- **Failures and non-finite predictions**: the scorers' dead letters (``housing.records.dlq``). A record the
  model failed on (``predict_failed``) or predicted NaN/inf for (``non_finite_prediction``) is dead-lettered at
  stage ``predict`` with the ``model_version`` header of the model that failed (``consumer.core.scoring``);
  dead letters of other stages (bad input, output too large) are no fault of the model and are not counted.
  The dead letter names the version, not the role: its failures count against that version (a canary is never
  the champion's version).
- **Prediction drift**: the predictions themselves (``housing.predictions``, read for the join anyway): a
  histogram of each (version, role)'s predictions on log-spaced bins, and the population stability index of the
  canary's against the champion's over the window, on ten bins holding a tenth of the champion's predictions
  each (``drift_psi``). The scorers' feature-drift monitor (``consumer.monitoring.drift``) is not used: it
  describes the champion's inputs on one scorer, is on no topic, and says nothing about the canary's outputs.

Time: a prediction counts at its ``scored_at``, a dead letter at its Kafka timestamp (written when it was
scored), both in the buckets of ``EVALUATION_BUCKET_SECONDS`` of the ``EVALUATION_WINDOW_SECONDS`` window.
The state (the buckets and the dead-letter topic's positions) goes into the evaluator's checkpoint, so a restart
counts every prediction and dead letter once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from consumer.evaluation.gates import Health, prediction_psi

BINS_PER_DECADE: Final = 50
"""Histogram resolution: log10(1 + |prediction|) in steps of 1/50 (about 4.7 % wide); coarsened for the PSI."""
PSI_BINS: Final = 10
FAILURE_REASONS: Final = ("predict_failed", "non_finite_prediction")
NON_FINITE: Final = "non_finite_prediction"


def value_bin(value: float) -> int:
    """The fine bin of a prediction: >= 0 for values >= 0, < 0 for negative ones (mirrored)."""
    k = int(math.log10(1.0 + abs(value)) * BINS_PER_DECADE)
    return k if value >= 0 else -1 - k


def drift_psi(canary: Mapping[int, int], champion: Mapping[int, int], groups: int = PSI_BINS) -> float | None:
    """PSI of two fine histograms, on (up to) ``groups`` bins cut at the champion's quantiles; None when either
    is empty. Canary mass beyond the champion's range lands in the first or last bin."""
    if not sum(canary.values()) or not sum(champion.values()):
        return None
    total = sum(champion.values())
    cuts: list[int] = []  # the last fine bin of each group but the last
    running = 0
    bins = sorted(set(canary) | set(champion))
    for b in bins:
        running += champion.get(b, 0)
        if running >= total * (len(cuts) + 1) / groups and len(cuts) < groups - 1:
            cuts.append(b)
    canary_groups = [0] * (len(cuts) + 1)
    champion_groups = [0] * (len(cuts) + 1)
    group = 0
    for b in bins:
        while group < len(cuts) and b > cuts[group]:
            group += 1
        canary_groups[group] += canary.get(b, 0)
        champion_groups[group] += champion.get(b, 0)
    return prediction_psi(canary_groups, champion_groups)


K = TypeVar("K", int, str)
"""A histogram's fine bin or a failure's reason."""


def _drop_before(series: dict[int, Counter[K]], first: int) -> None:
    for bucket in [b for b in series if b < first]:
        del series[bucket]


class HealthStats:
    """Per (version, role) prediction histograms and per version predict-stage failures, in time buckets.

    :param window_ms/bucket_ms: the evaluation window and bucket (``EVALUATION_WINDOW_SECONDS``, ``..._BUCKET_``).
    """

    def __init__(self, window_ms: int, bucket_ms: int) -> None:
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self.histograms: dict[tuple[str, str], dict[int, Counter[int]]] = {}
        """(version, role) -> bucket -> fine bin -> predictions."""
        self.failures: dict[str, dict[int, Counter[str]]] = {}
        """version -> bucket -> reason -> dead letters."""
        self.dead_letter_offsets: dict[int, int] = {}
        """partition -> the next offset to read of the dead-letter topic (checkpointed)."""

    def add_prediction(self, version: str, role: str, value: float, at_ms: int) -> None:
        if not math.isfinite(value):
            return
        buckets = self.histograms.setdefault((version, role), {})
        buckets.setdefault(at_ms // self.bucket_ms, Counter())[value_bin(value)] += 1

    def add_dead_letter(self, headers: Iterable[tuple[str, bytes | None]], at_ms: int) -> bool:
        """Count a scorer's dead letter if it is a model's failure (a failure reason, which only the predict stage
        gives, and the version that failed); True when counted."""
        found = {name: (value or b"").decode("utf-8", "replace") for name, value in headers}
        version, reason = found.get("model_version"), found.get("dlq.reason")
        if not version or reason not in FAILURE_REASONS:
            return False
        self.failures.setdefault(version, {}).setdefault(at_ms // self.bucket_ms, Counter())[reason] += 1
        return True

    def _first_bucket(self, now_ms: int) -> int:
        return (now_ms - self.window_ms) // self.bucket_ms + 1

    def prune(self, now_ms: int) -> None:
        """Forget the buckets that left the window ending at ``now_ms`` (memory stays bounded)."""
        first = self._first_bucket(now_ms)
        for histogram in self.histograms.values():
            _drop_before(histogram, first)
        for failures in self.failures.values():
            _drop_before(failures, first)
        self.histograms = {k: v for k, v in self.histograms.items() if v}
        self.failures = {k: v for k, v in self.failures.items() if v}

    def _in_window(self, series: Mapping[int, Counter[K]], now_ms: int) -> Counter[K]:
        """The sum of a series' buckets within the window ending at ``now_ms``."""
        first = self._first_bucket(now_ms)
        out: Counter[K] = Counter()
        for bucket, counts in series.items():
            if bucket >= first:
                out.update(counts)
        return out

    def health(self, canary_version: str, champion_version: str, now_ms: int) -> Health:
        """The canary's health over the window ending at ``now_ms`` (the gate decides what is enough)."""
        canary = self._in_window(self.histograms.get((canary_version, "canary"), {}), now_ms)
        champion = self._in_window(self.histograms.get((champion_version, "champion"), {}), now_ms)
        failed = self._in_window(self.failures.get(canary_version, {}), now_ms)
        scored, failures = sum(canary.values()), sum(failed.values())
        attempts = scored + failures
        return Health(error_rate=failures / attempts if attempts else None, non_finite=failed[NON_FINITE],
                      drift_psi=drift_psi(canary, champion), records=attempts,
                      champion_records=sum(champion.values()))

    # --- checkpoint -----------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "histograms": [[v, r, {str(b): dict(c) for b, c in buckets.items()}]
                           for (v, r), buckets in sorted(self.histograms.items())],
            "failures": {v: {str(b): dict(c) for b, c in buckets.items()} for v, buckets in self.failures.items()},
            "dead_letter_offsets": {str(p): o for p, o in self.dead_letter_offsets.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.histograms = {(str(v), str(r)): {int(b): Counter({int(k): int(n) for k, n in c.items()})
                                              for b, c in buckets.items()}
                           for v, r, buckets in state.get("histograms", [])}
        self.failures = {str(v): {int(b): Counter({str(k): int(n) for k, n in c.items()}) for b, c in buckets.items()}
                         for v, buckets in state.get("failures", {}).items()}
        self.dead_letter_offsets = {int(p): int(o) for p, o in state.get("dead_letter_offsets", {}).items()}


def histogram_of(values: Sequence[float]) -> Counter[int]:
    """The fine histogram of some predictions (tests, tools)."""
    return Counter(value_bin(v) for v in values if math.isfinite(v))
